//! Writes [`SegmentColumns`] as a segment file: checks the columns against the metadata, then
//! encodes and writes one column at a time (so at most one encoded column is in memory), then
//! the footer directory and the trailer. [`write_segment`] writes to a temporary file in the
//! target directory, fsyncs it and renames it into place, so a reader never sees a partial file.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use roaring::RoaringBitmap;

use super::footer::{
    self, BLOB_ALIGN, BlobCompression, BlobEntry, ColumnType, Encoding, Footer, Part,
};
use super::{Compression, SegmentMeta, TIME_COLUMN, WriteOptions};
use super::{doubles, longs, sketches, strings};
use crate::columns::{DimensionData, MetricData, SegmentColumns, StringRows};
use crate::error::{Result, SegmentError};

/// Writes the segment to `path` atomically (temp file in the same directory, fsync, rename) and
/// returns its size in bytes.
pub fn write_segment(
    path: &Path,
    meta: &SegmentMeta,
    columns: &SegmentColumns,
    options: &WriteOptions,
) -> Result<u64> {
    static TEMP_COUNTER: AtomicU64 = AtomicU64::new(0);
    check_columns(meta, columns)?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path.file_name().ok_or_else(|| {
        SegmentError::Schema(format!("segment path {} has no file name", path.display()))
    })?;
    let temp = dir.join(format!(
        ".{}.tmp-{}-{}",
        file_name.to_string_lossy(),
        std::process::id(),
        TEMP_COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let file = File::create(&temp).map_err(|e| SegmentError::io(&temp, e))?;
        let mut out = BufWriter::with_capacity(1 << 20, file);
        let bytes = write_checked(&mut out, meta, columns, options, &temp)?;
        let file = out
            .into_inner()
            .map_err(|e| SegmentError::io(&temp, e.into_error()))?;
        file.sync_all().map_err(|e| SegmentError::io(&temp, e))?;
        std::fs::rename(&temp, path).map_err(|e| SegmentError::io(path, e))?;
        // Make the rename durable; not every platform can open a directory, so best effort.
        if let Ok(d) = File::open(&dir) {
            let _ = d.sync_all();
        }
        Ok(bytes)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    result
}

/// Writes the segment to `out` and returns the bytes written.
pub fn write_segment_to(
    out: &mut impl Write,
    meta: &SegmentMeta,
    columns: &SegmentColumns,
    options: &WriteOptions,
) -> Result<u64> {
    check_columns(meta, columns)?;
    let target = PathBuf::from(format!("<segment {}>", meta.id));
    write_checked(out, meta, columns, options, &target)
}

/// The columns must satisfy their own invariants and match the metadata: names, types and order
/// of the schema, the row count and the time range.
fn check_columns(meta: &SegmentMeta, columns: &SegmentColumns) -> Result<()> {
    meta.schema.validate().map_err(SegmentError::Schema)?;
    columns
        .validate(meta.schema.time_sorted())
        .map_err(SegmentError::Schema)?;
    let schema = &meta.schema;
    let mismatch = |m: String| Err(SegmentError::Schema(format!("segment {}: {m}", meta.id)));
    if columns.num_rows() >= u32::MAX as usize {
        return mismatch(format!(
            "{} rows: a segment holds fewer than 2^32 (rows are 32-bit in bitmaps)",
            columns.num_rows()
        ));
    }
    if meta.num_rows != columns.num_rows() as u64 {
        return mismatch(format!(
            "metadata says {} rows, columns have {}",
            meta.num_rows,
            columns.num_rows()
        ));
    }
    let (first, last) = columns.time_bounds();
    if (meta.time_min_ms, meta.time_max_ms) != (first, last) {
        return mismatch(format!(
            "metadata time range {}..{} does not match the rows' {first}..{last}",
            meta.time_min_ms, meta.time_max_ms
        ));
    }
    columns.check_schema(schema).or_else(mismatch)
}

/// One encoded part of a column, before compression.
struct Encoded {
    part: Part,
    encoding: Encoding,
    bytes: Vec<u8>,
}

fn encoded(part: Part, encoding: Encoding, fill: impl FnOnce(&mut Vec<u8>)) -> Encoded {
    let mut bytes = Vec::new();
    fill(&mut bytes);
    Encoded {
        part,
        encoding,
        bytes,
    }
}

fn nulls_part(nulls: &RoaringBitmap) -> Encoded {
    encoded(Part::Nulls, Encoding::Roaring, |out| {
        // Writing into a Vec cannot fail.
        let _ = nulls.serialize_into(out);
    })
}

struct BlobWriter<'w, W: Write> {
    out: &'w mut W,
    target: &'w Path,
    position: u64,
    compression: Compression,
    entries: Vec<BlobEntry>,
}

impl<W: Write> BlobWriter<'_, W> {
    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out
            .write_all(bytes)
            .map_err(|e| SegmentError::io(self.target, e))?;
        self.position += bytes.len() as u64;
        Ok(())
    }

    fn blob(&mut self, column: &str, column_type: ColumnType, part: Encoded) -> Result<()> {
        let padding =
            (self.position as usize).next_multiple_of(BLOB_ALIGN) - self.position as usize;
        self.write(&[0u8; BLOB_ALIGN][..padding])?;
        let uncompressed_length = part.bytes.len() as u64;
        let compressed = match self.compression {
            Compression::None => None,
            Compression::Zstd { level } => Some(
                zstd::bulk::compress(&part.bytes, level)
                    .map_err(|e| SegmentError::io(self.target, e))?,
            )
            .filter(|c| c.len() < part.bytes.len()),
        };
        let (stored, compression) = match &compressed {
            Some(c) => (c.as_slice(), BlobCompression::Zstd),
            None => (part.bytes.as_slice(), BlobCompression::None),
        };
        self.entries.push(BlobEntry {
            column: column.to_string(),
            part: part.part,
            column_type,
            encoding: part.encoding,
            compression,
            offset: self.position,
            length: stored.len() as u64,
            uncompressed_length,
            crc32: crc32fast::hash(stored),
        });
        self.write(stored)
    }
}

fn write_checked(
    out: &mut impl Write,
    meta: &SegmentMeta,
    columns: &SegmentColumns,
    options: &WriteOptions,
    target: &Path,
) -> Result<u64> {
    let mut w = BlobWriter {
        out,
        target,
        position: 0,
        compression: options.compression,
        entries: Vec::new(),
    };
    w.write(&footer::header())?;
    w.blob(
        TIME_COLUMN,
        ColumnType::Long,
        encoded(Part::Values, Encoding::Longs, |o| {
            longs::encode_longs(&columns.time, o)
        }),
    )?;
    for (column, dim) in columns.dimensions.iter().zip(&meta.schema.dimensions) {
        let name = column.name.as_str();
        match &column.data {
            DimensionData::Long { values, nulls } => {
                w.blob(
                    name,
                    ColumnType::Long,
                    encoded(Part::Values, Encoding::Longs, |o| {
                        longs::encode_longs(values, o)
                    }),
                )?;
                w.blob(name, ColumnType::Long, nulls_part(nulls))?;
            }
            DimensionData::Double { values, nulls } => {
                w.blob(
                    name,
                    ColumnType::Double,
                    encoded(Part::Values, Encoding::Doubles, |o| {
                        doubles::encode_doubles(values, o)
                    }),
                )?;
                w.blob(name, ColumnType::Double, nulls_part(nulls))?;
            }
            DimensionData::String { dictionary, rows } => {
                for part in
                    encode_string_column(dictionary, rows, columns.num_rows(), dim.bitmap_index)
                {
                    w.blob(name, ColumnType::String, part)?;
                }
            }
        }
    }
    for column in &columns.metrics {
        let name = column.name.as_str();
        match &column.data {
            MetricData::Long(values) => w.blob(
                name,
                ColumnType::Long,
                encoded(Part::Values, Encoding::Longs, |o| {
                    longs::encode_longs(values, o)
                }),
            )?,
            MetricData::Double(values) => w.blob(
                name,
                ColumnType::Double,
                encoded(Part::Values, Encoding::Doubles, |o| {
                    doubles::encode_doubles(values, o)
                }),
            )?,
            MetricData::Sketch(values) => {
                let (offsets, bytes) = sketches::encode_sketches(values);
                w.blob(
                    name,
                    ColumnType::Sketch,
                    encoded(Part::Values, Encoding::Bytes, |o| *o = bytes),
                )?;
                w.blob(
                    name,
                    ColumnType::Sketch,
                    encoded(Part::Offsets, Encoding::Longs, |o| *o = offsets),
                )?;
            }
        }
    }
    let footer = Footer {
        meta: meta.clone(),
        blobs: std::mem::take(&mut w.entries),
    };
    let footer_bytes = serde_json::to_vec(&footer).map_err(|e| {
        SegmentError::Schema(format!(
            "segment {}: cannot encode the footer: {e}",
            meta.id
        ))
    })?;
    let footer_offset = w.position;
    w.write(&footer_bytes)?;
    w.write(&footer::trailer(footer_offset, &footer_bytes))?;
    w.out.flush().map_err(|e| SegmentError::io(target, e))?;
    Ok(w.position)
}

/// The parts of a string column: dictionary, ids, offsets (multi-value) and bitmaps (if asked).
fn encode_string_column(
    dictionary: &[Option<String>],
    rows: &StringRows,
    num_rows: usize,
    bitmap_index: bool,
) -> Vec<Encoded> {
    let has_null = dictionary.first().is_some_and(|v| v.is_none());
    let strings = dictionary
        .iter()
        .skip(has_null as usize)
        .map(|v| v.as_deref().unwrap_or(""));
    let width = strings::id_width(dictionary.len());
    let mut parts = vec![encoded(Part::Dictionary, Encoding::FrontCoded, |o| {
        super::dictionary::encode_dictionary(strings, has_null, o)
    })];
    match rows {
        StringRows::Single(ids) => {
            parts.push(encoded(Part::Ids, Encoding::BitPacked, |o| {
                strings::encode_ids(ids, width, o)
            }));
        }
        StringRows::Multi { offsets, ids } => {
            parts.push(encoded(Part::Ids, Encoding::BitPacked, |o| {
                strings::encode_ids(ids, width, o)
            }));
            let offsets: Vec<i64> = offsets.iter().map(|&o| o as i64).collect();
            parts.push(encoded(Part::Offsets, Encoding::Longs, |o| {
                longs::encode_longs(&offsets, o)
            }));
        }
    }
    if bitmap_index {
        parts.push(encoded(Part::Bitmaps, Encoding::RoaringList, |o| {
            encode_bitmap_index(dictionary.len(), rows, num_rows, has_null, o)
        }));
    }
    parts
}

/// One bitmap per id, built by a counting sort of (id, row) so that each bitmap is built from
/// sorted rows and serialized at once. An empty multi-value row goes to the null bitmap when
/// there is one.
fn encode_bitmap_index(
    dictionary_len: usize,
    rows: &StringRows,
    num_rows: usize,
    has_null: bool,
    out: &mut Vec<u8>,
) {
    let visit = |f: &mut dyn FnMut(u32, u32)| {
        for row in 0..num_rows {
            let ids = rows.row(row);
            if ids.is_empty() && has_null {
                f(0, row as u32);
            }
            for &id in ids {
                f(id, row as u32);
            }
        }
    };
    let mut starts = vec![0usize; dictionary_len + 1];
    visit(&mut |id, _| starts[id as usize + 1] += 1);
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut fill = starts.clone();
    let mut sorted_rows = vec![0u32; starts[dictionary_len]];
    visit(&mut |id, row| {
        sorted_rows[fill[id as usize]] = row;
        fill[id as usize] += 1;
    });
    drop(fill);
    let bitmaps = (0..dictionary_len).map(|id| {
        let rows = &sorted_rows[starts[id]..starts[id + 1]];
        // Rows were visited in increasing order; a row holding an id twice appears twice.
        let mut previous = None;
        let unique = rows
            .iter()
            .copied()
            .filter(move |&r| previous.replace(r) != Some(r));
        RoaringBitmap::from_sorted_iter(unique).unwrap_or_else(|_| rows.iter().copied().collect())
    });
    super::bitmaps::encode_bitmaps(dictionary_len, bitmaps, out);
}
