//! [`Segment`]: an opened segment file (memory-mapped, or bytes in memory) and the column readers
//! it hands out.
//!
//! Opening parses the fixed parts and the footer (see [`super::footer`]) and matches the blobs
//! to the schema's columns. Nothing else is read until used: a blob's crc32 is verified (and a
//! zstd blob decompressed) on first use and the result cached in a `OnceLock`; a column's
//! cross-part structure is validated on first use and cached the same way. Column readers borrow
//! from the segment, so they are free to create per query.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use memmap2::Mmap;
use roaring::RoaringBitmap;

use super::footer::{BlobCompression, BlobEntry, ColumnType, Encoding, Layout, LayoutError, Part};
use super::{
    DoubleColumn, LongColumn, Names, SegmentMeta, SketchColumn, StringColumn, TIME_COLUMN,
    ValueCoupons,
};
use crate::columns::{DimensionColumn, SegmentColumns};
use crate::error::{Result, SegmentError};
use crate::schema::{DimensionSchema, MetricStorage, Schema, ValueType};

/// A string, long or double dimension.
#[derive(Clone, Copy, Debug)]
pub enum DimensionReader<'a> {
    String(StringColumn<'a>),
    Long {
        values: LongColumn<'a>,
        /// Null rows (their `values` slot holds 0).
        nulls: &'a RoaringBitmap,
    },
    Double {
        values: DoubleColumn<'a>,
        nulls: &'a RoaringBitmap,
    },
}

/// A metric column, typed by its storage.
#[derive(Clone, Copy, Debug)]
pub enum MetricReader<'a> {
    Long(LongColumn<'a>),
    Double(DoubleColumn<'a>),
    Sketch(SketchColumn<'a>),
}

enum Backing {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(map) => map,
            Backing::Owned(bytes) => bytes,
        }
    }
}

struct BlobSlot {
    entry: BlobEntry,
    /// Set once the checksum passed: `None` to read in place, or the decompressed bytes.
    verified: OnceLock<Option<Box<[u8]>>>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Time,
    LongDimension,
    DoubleDimension,
    StringDimension { bitmaps: bool },
    LongMetric,
    DoubleMetric,
    SketchMetric,
}

impl Kind {
    fn column_type(self) -> ColumnType {
        match self {
            Kind::Time | Kind::LongDimension | Kind::LongMetric => ColumnType::Long,
            Kind::DoubleDimension | Kind::DoubleMetric => ColumnType::Double,
            Kind::StringDimension { .. } => ColumnType::String,
            Kind::SketchMetric => ColumnType::Sketch,
        }
    }

    /// The encoding of `part` in this kind of column and whether it is required; `None` when
    /// the part does not belong here.
    fn part(self, part: Part) -> Option<(Encoding, bool)> {
        use Part::*;
        match (self, part) {
            (Kind::Time | Kind::LongDimension | Kind::LongMetric, Values) => {
                Some((Encoding::Longs, true))
            }
            (Kind::DoubleDimension | Kind::DoubleMetric, Values) => Some((Encoding::Doubles, true)),
            (Kind::LongDimension | Kind::DoubleDimension, Nulls) => Some((Encoding::Roaring, true)),
            (Kind::StringDimension { .. }, Dictionary) => Some((Encoding::FrontCoded, true)),
            (Kind::StringDimension { .. }, Ids) => Some((Encoding::BitPacked, true)),
            (Kind::StringDimension { .. }, Offsets) => Some((Encoding::Longs, false)),
            (Kind::StringDimension { bitmaps: true }, Bitmaps) => {
                Some((Encoding::RoaringList, true))
            }
            (Kind::SketchMetric, Values) => Some((Encoding::Bytes, true)),
            (Kind::SketchMetric, Offsets) => Some((Encoding::Longs, true)),
            _ => None,
        }
    }
}

struct ColumnSlot {
    name: String,
    kind: Kind,
    /// Blob index per [`Part::index`].
    parts: [Option<usize>; 6],
    /// Set once the column's structure was validated.
    checked: OnceLock<()>,
    nulls: OnceLock<RoaringBitmap>,
    /// String columns: the sketch coupon of every dictionary value, computed on first use.
    coupons: OnceLock<ValueCoupons>,
}

/// Columns computed from a segment's own (a query's virtual columns): [`Segment::derived`] builds
/// them on first use and serves them as dimensions, ahead of the segment's columns of the same
/// name.
pub trait DerivedColumns: Send + Sync {
    /// The names of the derived columns.
    fn names(&self) -> &[String];
    /// Computes every derived column over `base`, one per name, in [`DerivedColumns::names`]
    /// order. An error is reported on each use of a derived column.
    fn build(&self, base: &Segment) -> std::result::Result<Vec<DimensionColumn>, String>;
}

/// The derived part of a segment made by [`Segment::derived`].
struct Derived {
    base: Arc<Segment>,
    columns: Arc<dyn DerivedColumns>,
    /// The derived columns laid out as a segment of their own (with `base`'s `__time`).
    built: OnceLock<std::result::Result<Segment, String>>,
}

/// An opened segment. `Send + Sync`; share it behind an `Arc`.
pub struct Segment {
    /// The segment id, for messages.
    name: String,
    backing: Backing,
    meta: SegmentMeta,
    num_rows: usize,
    blobs: Vec<BlobSlot>,
    /// `__time`, then dimensions, then metrics, in schema order.
    columns: Vec<ColumnSlot>,
    /// Set for a segment made by [`Segment::derived`]: every read goes to the derived columns
    /// or to the base segment, and the fields above are empty.
    derived: Option<Box<Derived>>,
}

impl std::fmt::Debug for Segment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Segment")
            .field("id", &self.name)
            .field("num_rows", &self.num_rows)
            .field("file_bytes", &self.file_bytes())
            .finish()
    }
}

fn layout_error(segment: &str, error: LayoutError) -> SegmentError {
    match error {
        LayoutError::Corrupt(column, message) => SegmentError::Corrupt {
            segment: segment.to_string(),
            column,
            message,
        },
        LayoutError::UnsupportedVersion(found) => SegmentError::UnsupportedVersion {
            segment: segment.to_string(),
            found,
            supported: match (super::FORMAT_VERSION_OLDEST_READ, super::FORMAT_VERSION) {
                (oldest, newest) if oldest == newest => newest.to_string(),
                (oldest, newest) => format!("{oldest} to {newest}"),
            },
        },
    }
}

impl Segment {
    /// Memory-maps the segment file at `path` and checks its header, trailer and footer.
    pub fn open(path: &Path) -> Result<Segment> {
        let file = File::open(path).map_err(|e| SegmentError::io(path, e))?;
        let len = file
            .metadata()
            .map_err(|e| SegmentError::io(path, e))?
            .len();
        let backing = if len == 0 {
            // An empty file cannot be mapped; let the layout check report it.
            Backing::Owned(Vec::new())
        } else {
            // SAFETY: segment files are immutable: written under a temporary name, fsynced and
            // renamed into place, never modified or truncated while a reader may map them.
            let map = unsafe { Mmap::map(&file) }.map_err(|e| SegmentError::io(path, e))?;
            Backing::Mapped(map)
        };
        Segment::from_backing(backing, &path.display().to_string())
    }

    /// A segment from bytes in memory (tests, transfers); `name` labels errors until the footer
    /// gives the segment id.
    pub fn from_bytes(bytes: Vec<u8>, name: &str) -> Result<Segment> {
        Segment::from_backing(Backing::Owned(bytes), name)
    }

    fn from_backing(backing: Backing, fallback_name: &str) -> Result<Segment> {
        let layout = Layout::parse(backing.bytes()).map_err(|e| layout_error(fallback_name, e))?;
        let meta = layout.footer.meta;
        let name = meta.id.to_string();
        let bad_footer = |message: String| SegmentError::Corrupt {
            segment: name.clone(),
            column: "(footer)".to_string(),
            message,
        };
        meta.schema
            .validate()
            .map_err(|m| bad_footer(format!("invalid schema: {m}")))?;
        let num_rows = usize::try_from(meta.num_rows)
            .ok()
            .filter(|&n| n < u32::MAX as usize)
            .ok_or_else(|| {
                bad_footer(format!(
                    "{} rows is more than a segment holds",
                    meta.num_rows
                ))
            })?;
        let mut columns = vec![slot(TIME_COLUMN, Kind::Time)];
        for dim in &meta.schema.dimensions {
            let kind = match dim.value_type {
                ValueType::String => Kind::StringDimension {
                    bitmaps: dim.bitmap_index,
                },
                ValueType::Long => Kind::LongDimension,
                ValueType::Double => Kind::DoubleDimension,
            };
            columns.push(slot(&dim.name, kind));
        }
        for metric in &meta.schema.metrics {
            let kind = match metric.kind.storage() {
                MetricStorage::Long => Kind::LongMetric,
                MetricStorage::Double => Kind::DoubleMetric,
                MetricStorage::Sketch => Kind::SketchMetric,
            };
            columns.push(slot(&metric.name, kind));
        }
        let blobs: Vec<BlobSlot> = layout
            .footer
            .blobs
            .into_iter()
            .map(|entry| BlobSlot {
                entry,
                verified: OnceLock::new(),
            })
            .collect();
        for (index, blob) in blobs.iter().enumerate() {
            let entry = &blob.entry;
            let corrupt = |message: String| SegmentError::Corrupt {
                segment: name.clone(),
                column: entry.column.clone(),
                message,
            };
            let column = columns
                .iter_mut()
                .find(|c| c.name == entry.column)
                .ok_or_else(|| corrupt("blob of a column the schema does not have".to_string()))?;
            let expected = column.kind.part(entry.part);
            if expected.map(|(encoding, _)| encoding) != Some(entry.encoding)
                || entry.column_type != column.kind.column_type()
            {
                return Err(corrupt(format!(
                    "{} blob typed {:?}/{:?} does not fit a {:?} column",
                    entry.part.name(),
                    entry.column_type,
                    entry.encoding,
                    column.kind
                )));
            }
            if column.parts[entry.part.index()].replace(index).is_some() {
                return Err(corrupt(format!("two {} blobs", entry.part.name())));
            }
        }
        for column in &columns {
            for part in Part::ALL {
                if column.kind.part(part).is_some_and(|(_, required)| required)
                    && column.parts[part.index()].is_none()
                {
                    return Err(SegmentError::Corrupt {
                        segment: name.clone(),
                        column: column.name.clone(),
                        message: format!("no {} blob", part.name()),
                    });
                }
            }
        }
        Ok(Segment {
            name,
            backing,
            meta,
            num_rows,
            blobs,
            columns,
            derived: None,
        })
    }

    /// `base` with `columns` added: a derived column is read as a dimension (shadowing a column
    /// of `base` with its name) and built on its first use; every other read goes to `base`.
    pub fn derived(base: Arc<Segment>, columns: Arc<dyn DerivedColumns>) -> Segment {
        Segment {
            name: base.name.clone(),
            backing: Backing::Owned(Vec::new()),
            meta: base.meta.clone(),
            num_rows: base.num_rows,
            blobs: Vec::new(),
            columns: Vec::new(),
            derived: Some(Box::new(Derived {
                base,
                columns,
                built: OnceLock::new(),
            })),
        }
    }

    /// The derived columns as a segment, built on first use.
    fn built(derived: &Derived) -> Result<&Segment> {
        let built = derived.built.get_or_init(|| {
            let dimensions = derived.columns.build(&derived.base)?;
            build_derived(&derived.base, derived.columns.names(), dimensions)
        });
        built.as_ref().map_err(|e| SegmentError::Derived(e.clone()))
    }

    pub fn meta(&self) -> &SegmentMeta {
        &self.meta
    }

    /// The segment id as text.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Size of the file (or bytes) backing the segment.
    pub fn file_bytes(&self) -> u64 {
        match &self.derived {
            Some(d) => d.base.file_bytes(),
            None => self.backing.bytes().len() as u64,
        }
    }

    /// The footer directory: every blob with its column, part, encoding and sizes.
    pub fn blobs(&self) -> Box<dyn Iterator<Item = &BlobEntry> + '_> {
        match &self.derived {
            Some(d) => d.base.blobs(),
            None => Box::new(self.blobs.iter().map(|b| &b.entry)),
        }
    }

    /// Verifies every blob's checksum and every column's structure now rather than on first use.
    pub fn verify(&self) -> Result<()> {
        if let Some(d) = &self.derived {
            return d.base.verify();
        }
        for index in 0..self.blobs.len() {
            self.blob(index)?;
        }
        for column in &self.columns {
            self.checked(column)?;
        }
        Ok(())
    }

    fn names<'a>(&'a self, column: &'a ColumnSlot) -> Names<'a> {
        Names {
            segment: &self.name,
            column: &column.name,
        }
    }

    /// The bytes of blob `index`, checksum verified (and decompressed) on first use.
    fn blob(&self, index: usize) -> Result<&[u8]> {
        let slot = &self.blobs[index];
        let entry = &slot.entry;
        // The layout check made every blob lie inside the file.
        let stored = &self.backing.bytes()[entry.offset as usize..][..entry.length as usize];
        let verified = match slot.verified.get() {
            Some(v) => v,
            None => {
                let corrupt = |message: String| SegmentError::Corrupt {
                    segment: self.name.clone(),
                    column: entry.column.clone(),
                    message: format!("{} blob: {message}", entry.part.name()),
                };
                if crc32fast::hash(stored) != entry.crc32 {
                    return Err(corrupt("checksum mismatch".to_string()));
                }
                let value = match entry.compression {
                    BlobCompression::None => None,
                    BlobCompression::Zstd => {
                        Some(decompress(stored, entry.uncompressed_length).map_err(corrupt)?)
                    }
                };
                slot.verified.get_or_init(|| value)
            }
        };
        Ok(verified.as_deref().unwrap_or(stored))
    }

    fn part(&self, column: &ColumnSlot, part: Part) -> Result<Option<&[u8]>> {
        column.parts[part.index()]
            .map(|index| self.blob(index))
            .transpose()
    }

    fn required(&self, column: &ColumnSlot, part: Part) -> Result<&[u8]> {
        self.part(column, part)?.ok_or_else(|| {
            self.names(column)
                .corrupt(format!("no {} blob", part.name()))
        })
    }

    /// A values part must hold exactly one value per row.
    fn check_row_count(&self, names: &Names<'_>, values: usize) -> Result<()> {
        if values != self.num_rows {
            return Err(names.corrupt(format!("{values} values for {} rows", self.num_rows)));
        }
        Ok(())
    }

    fn long_values<'a>(&'a self, column: &'a ColumnSlot) -> Result<LongColumn<'a>> {
        let names = self.names(column);
        let values = LongColumn::parse(self.required(column, Part::Values)?)
            .map_err(|m| names.corrupt(m))?;
        self.check_row_count(&names, values.len())?;
        Ok(values)
    }

    fn double_values<'a>(&'a self, column: &'a ColumnSlot) -> Result<DoubleColumn<'a>> {
        let names = self.names(column);
        let values = DoubleColumn::parse(self.required(column, Part::Values)?)
            .map_err(|m| names.corrupt(m))?;
        self.check_row_count(&names, values.len())?;
        Ok(values)
    }

    fn string_column<'a>(&'a self, column: &'a ColumnSlot) -> Result<StringColumn<'a>> {
        let names = self.names(column);
        StringColumn::new(
            names,
            self.num_rows,
            self.required(column, Part::Dictionary)?,
            self.required(column, Part::Ids)?,
            self.part(column, Part::Offsets)?,
            self.part(column, Part::Bitmaps)?,
        )
        .map(|c| c.with_coupon_cache(&column.coupons))
        .map_err(|m| names.corrupt(m))
    }

    fn sketch_column<'a>(&'a self, column: &'a ColumnSlot) -> Result<SketchColumn<'a>> {
        let names = self.names(column);
        SketchColumn::new(
            self.num_rows,
            self.required(column, Part::Offsets)?,
            self.required(column, Part::Values)?,
        )
        .map_err(|m| names.corrupt(m))
    }

    fn nulls<'a>(&'a self, column: &'a ColumnSlot) -> Result<&'a RoaringBitmap> {
        if let Some(nulls) = column.nulls.get() {
            return Ok(nulls);
        }
        let names = self.names(column);
        let bytes = self.required(column, Part::Nulls)?;
        let nulls = RoaringBitmap::deserialize_from(bytes)
            .map_err(|e| names.corrupt(format!("nulls: {e}")))?;
        if nulls.serialized_size() != bytes.len() {
            return Err(names.corrupt("nulls: bitmap does not fill its blob"));
        }
        if nulls.max().is_some_and(|max| max as usize >= self.num_rows) {
            return Err(names.corrupt("nulls: row beyond the segment's rows"));
        }
        Ok(column.nulls.get_or_init(|| nulls))
    }

    /// Validates the column's structure once (cached).
    fn checked(&self, column: &ColumnSlot) -> Result<()> {
        if column.checked.get().is_some() {
            return Ok(());
        }
        let names = self.names(column);
        match column.kind {
            Kind::Time | Kind::LongMetric => {
                self.long_values(column)?;
            }
            Kind::DoubleMetric => {
                self.double_values(column)?;
            }
            Kind::LongDimension => {
                self.long_values(column)?;
                self.nulls(column)?;
            }
            Kind::DoubleDimension => {
                self.double_values(column)?;
                self.nulls(column)?;
            }
            Kind::StringDimension { .. } => {
                self.string_column(column)?
                    .validate()
                    .map_err(|m| names.corrupt(m))?;
            }
            Kind::SketchMetric => {
                self.sketch_column(column)?
                    .validate()
                    .map_err(|m| names.corrupt(m))?;
            }
        }
        let _ = column.checked.set(());
        Ok(())
    }

    fn column(&self, index: usize) -> Result<&ColumnSlot> {
        let column = &self.columns[index];
        self.checked(column)?;
        Ok(column)
    }

    /// `__time`.
    pub fn time(&self) -> Result<LongColumn<'_>> {
        if let Some(d) = &self.derived {
            return d.base.time();
        }
        let column = self.column(0)?;
        self.long_values(column)
    }

    /// The dimension `name`, or `None` when the schema has no such dimension.
    pub fn dimension(&self, name: &str) -> Result<Option<DimensionReader<'_>>> {
        if let Some(d) = &self.derived {
            if d.columns.names().iter().any(|n| n == name) {
                return Segment::built(d)?.dimension(name);
            }
            return d.base.dimension(name);
        }
        let Some(index) = self.meta.schema.dimension_index(name) else {
            return Ok(None);
        };
        let column = self.column(1 + index)?;
        let reader = match column.kind {
            Kind::StringDimension { .. } => DimensionReader::String(self.string_column(column)?),
            Kind::LongDimension => DimensionReader::Long {
                values: self.long_values(column)?,
                nulls: self.nulls(column)?,
            },
            _ => DimensionReader::Double {
                values: self.double_values(column)?,
                nulls: self.nulls(column)?,
            },
        };
        Ok(Some(reader))
    }

    /// The metric `name`, or `None` when the schema has no such metric.
    pub fn metric(&self, name: &str) -> Result<Option<MetricReader<'_>>> {
        if let Some(d) = &self.derived {
            if d.columns.names().iter().any(|n| n == name) {
                return Ok(None);
            }
            return d.base.metric(name);
        }
        let Some(index) = self.meta.schema.metric_index(name) else {
            return Ok(None);
        };
        let column = self.column(1 + self.meta.schema.dimensions.len() + index)?;
        let reader = match column.kind {
            Kind::LongMetric => MetricReader::Long(self.long_values(column)?),
            Kind::DoubleMetric => MetricReader::Double(self.double_values(column)?),
            _ => MetricReader::Sketch(self.sketch_column(column)?),
        };
        Ok(Some(reader))
    }
}

/// Lays derived `dimensions` out as a segment of their own, with `base`'s `__time`.
fn build_derived(
    base: &Segment,
    names: &[String],
    dimensions: Vec<DimensionColumn>,
) -> std::result::Result<Segment, String> {
    if dimensions.len() != names.len() || dimensions.iter().zip(names).any(|(d, n)| d.name != *n) {
        return Err("derived columns do not match their names".to_string());
    }
    let base_meta = base.meta();
    let time = base.time().map_err(|e| e.to_string())?.to_vec();
    let schema = Schema {
        data_source: base_meta.schema.data_source.clone(),
        dimensions: dimensions
            .iter()
            .map(|d| {
                let mut schema = match d.data.value_type() {
                    ValueType::String => DimensionSchema::string(&d.name),
                    ValueType::Long => DimensionSchema::long(&d.name),
                    ValueType::Double => DimensionSchema::double(&d.name),
                };
                // Derived columns are read by value, never through per-value bitmaps.
                schema.bitmap_index = false;
                schema
            })
            .collect(),
        metrics: Vec::new(),
        query_granularity: base_meta.schema.query_granularity,
        segment_granularity: base_meta.schema.segment_granularity,
        rollup: false,
        // Rows keep the base segment's order: `__time` need not be sorted.
        time_position: if base_meta.schema.time_sorted() {
            0
        } else {
            dimensions.len()
        },
    };
    let meta = SegmentMeta {
        id: base_meta.id.clone(),
        schema,
        num_rows: base_meta.num_rows,
        time_min_ms: base_meta.time_min_ms,
        time_max_ms: base_meta.time_max_ms,
    };
    let columns = SegmentColumns {
        time,
        dimensions,
        metrics: Vec::new(),
    };
    let mut bytes = Vec::new();
    super::write_segment_to(&mut bytes, &meta, &columns, &super::WriteOptions::default())
        .map_err(|e| e.to_string())?;
    Segment::from_bytes(bytes, base.name()).map_err(|e| e.to_string())
}

fn slot(name: &str, kind: Kind) -> ColumnSlot {
    ColumnSlot {
        name: name.to_string(),
        kind,
        parts: [None; 6],
        checked: OnceLock::new(),
        nulls: OnceLock::new(),
        coupons: OnceLock::new(),
    }
}

/// Decompresses a zstd blob that must inflate to exactly `expected` bytes.
fn decompress(stored: &[u8], expected: u64) -> Result<Box<[u8]>, String> {
    let expected_len = usize::try_from(expected)
        .map_err(|_| format!("uncompressed length {expected} too large"))?;
    // Grow as data arrives rather than trusting the declared length for the allocation.
    let mut out = Vec::with_capacity(expected_len.min(64 << 20));
    let decoder =
        zstd::stream::read::Decoder::with_buffer(stored).map_err(|e| format!("zstd: {e}"))?;
    decoder
        .take(expected.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| format!("zstd: {e}"))?;
    if out.len() as u64 != expected {
        return Err(format!(
            "inflates to {} bytes, the footer says {expected}",
            out.len()
        ));
    }
    Ok(out.into_boxed_slice())
}
