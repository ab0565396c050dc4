//! Column data of a sorted, rolled-up set of rows: what the index and the merger produce, what the
//! segment writer lays out on disk and what a segment reader can materialize back.
//!
//! Invariants (checked by [`SegmentColumns::validate`]):
//! - every column has `time.len()` rows; rows are sorted by (`__time`, dimensions in schema order),
//!   with `__time` first unless the schema places it later (`Schema::time_position`);
//! - a string dictionary is sorted ascending by bytes, unique, with `None` (null) first if present;
//! - every id is below the dictionary's length; multi-value offsets are non-decreasing, start at 0
//!   and end at `ids.len()`.

use roaring::RoaringBitmap;

use crate::schema::{MetricKind, MetricStorage, Schema, ValueType};

#[derive(Clone, Debug, PartialEq, Default)]
pub struct SegmentColumns {
    /// `__time` of each row, ms since the epoch.
    pub time: Vec<i64>,
    /// One per schema dimension, in schema order.
    pub dimensions: Vec<DimensionColumn>,
    /// One per schema metric, in schema order.
    pub metrics: Vec<MetricColumn>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct DimensionColumn {
    pub name: String,
    pub data: DimensionData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum DimensionData {
    String {
        /// Sorted, unique; `None` (null) first when any row is null.
        dictionary: Vec<Option<String>>,
        rows: StringRows,
    },
    Long {
        values: Vec<i64>,
        /// Rows whose value is null (their slot in `values` holds 0).
        nulls: RoaringBitmap,
    },
    Double {
        values: Vec<f64>,
        nulls: RoaringBitmap,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum StringRows {
    /// One dictionary id per row.
    Single(Vec<u32>),
    /// Row `r` holds `ids[offsets[r]..offsets[r + 1]]`; an empty row is null.
    Multi { offsets: Vec<u32>, ids: Vec<u32> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct MetricColumn {
    pub name: String,
    pub kind: MetricKind,
    pub data: MetricData,
}

#[derive(Clone, Debug, PartialEq)]
pub enum MetricData {
    Long(Vec<i64>),
    Double(Vec<f64>),
    /// One serialized HLL sketch per row (see `crate::sketch`).
    Sketch(Vec<Vec<u8>>),
}

impl DimensionData {
    /// A long (or, with `is_double`, double) column from each row's value bits; `None` is null.
    pub fn numeric(bits: impl Iterator<Item = Option<u64>>, is_double: bool) -> DimensionData {
        let mut nulls = RoaringBitmap::new();
        let mut raw = Vec::with_capacity(bits.size_hint().0);
        for (row, value) in bits.enumerate() {
            if value.is_none() {
                nulls.insert(row as u32);
            }
            raw.push(value.unwrap_or(0));
        }
        if is_double {
            DimensionData::Double {
                values: raw.into_iter().map(f64::from_bits).collect(),
                nulls,
            }
        } else {
            DimensionData::Long {
                values: raw.into_iter().map(|b| b as i64).collect(),
                nulls,
            }
        }
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            DimensionData::String { .. } => ValueType::String,
            DimensionData::Long { .. } => ValueType::Long,
            DimensionData::Double { .. } => ValueType::Double,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            DimensionData::String {
                rows: StringRows::Single(ids),
                ..
            } => ids.len(),
            DimensionData::String {
                rows: StringRows::Multi { offsets, .. },
                ..
            } => offsets.len().saturating_sub(1),
            DimensionData::Long { values, .. } => values.len(),
            DimensionData::Double { values, .. } => values.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl MetricData {
    pub fn len(&self) -> usize {
        match self {
            MetricData::Long(v) => v.len(),
            MetricData::Double(v) => v.len(),
            MetricData::Sketch(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl StringRows {
    /// The ids of row `row`.
    pub fn row(&self, row: usize) -> &[u32] {
        match self {
            StringRows::Single(ids) => std::slice::from_ref(&ids[row]),
            StringRows::Multi { offsets, ids } => {
                &ids[offsets[row] as usize..offsets[row + 1] as usize]
            }
        }
    }
}

impl SegmentColumns {
    /// No rows, laid out as `schema` says.
    pub fn empty(schema: &Schema) -> SegmentColumns {
        let dimensions = schema
            .dimensions
            .iter()
            .map(|d| DimensionColumn {
                name: d.name.clone(),
                data: match d.value_type {
                    ValueType::String => DimensionData::String {
                        dictionary: Vec::new(),
                        rows: StringRows::Single(Vec::new()),
                    },
                    ValueType::Long => DimensionData::Long {
                        values: Vec::new(),
                        nulls: RoaringBitmap::new(),
                    },
                    ValueType::Double => DimensionData::Double {
                        values: Vec::new(),
                        nulls: RoaringBitmap::new(),
                    },
                },
            })
            .collect();
        let metrics = schema
            .metrics
            .iter()
            .map(|m| MetricColumn {
                name: m.name.clone(),
                kind: m.kind,
                data: match m.kind.storage() {
                    MetricStorage::Long => MetricData::Long(Vec::new()),
                    MetricStorage::Double => MetricData::Double(Vec::new()),
                    MetricStorage::Sketch => MetricData::Sketch(Vec::new()),
                },
            })
            .collect();
        SegmentColumns {
            time: Vec::new(),
            dimensions,
            metrics,
        }
    }

    pub fn num_rows(&self) -> usize {
        self.time.len()
    }

    /// Rows `start..end` as their own columns, with string dictionaries compacted to the values
    /// those rows use.
    pub fn slice(&self, start: usize, end: usize) -> SegmentColumns {
        let range = start..end;
        let nulls_in = |nulls: &RoaringBitmap| -> RoaringBitmap {
            nulls
                .iter()
                .filter(|&r| range.contains(&(r as usize)))
                .map(|r| r - start as u32)
                .collect()
        };
        let dimensions = self
            .dimensions
            .iter()
            .map(|dim| DimensionColumn {
                name: dim.name.clone(),
                data: match &dim.data {
                    DimensionData::String { dictionary, rows } => {
                        slice_strings(dictionary, rows, start, end)
                    }
                    DimensionData::Long { values, nulls } => DimensionData::Long {
                        values: values[range.clone()].to_vec(),
                        nulls: nulls_in(nulls),
                    },
                    DimensionData::Double { values, nulls } => DimensionData::Double {
                        values: values[range.clone()].to_vec(),
                        nulls: nulls_in(nulls),
                    },
                },
            })
            .collect();
        let metrics = self
            .metrics
            .iter()
            .map(|metric| MetricColumn {
                name: metric.name.clone(),
                kind: metric.kind,
                data: match &metric.data {
                    MetricData::Long(v) => MetricData::Long(v[range.clone()].to_vec()),
                    MetricData::Double(v) => MetricData::Double(v[range.clone()].to_vec()),
                    MetricData::Sketch(v) => MetricData::Sketch(v[range.clone()].to_vec()),
                },
            })
            .collect();
        SegmentColumns {
            time: self.time[range.clone()].to_vec(),
            dimensions,
            metrics,
        }
    }

    /// Checks the columns are laid out as `schema` says: dimension names, types and order;
    /// metric names, kinds, storage and order.
    pub fn check_schema(&self, schema: &Schema) -> Result<(), String> {
        if self.dimensions.len() != schema.dimensions.len() {
            return Err(format!(
                "{} dimension columns for {} schema dimensions",
                self.dimensions.len(),
                schema.dimensions.len()
            ));
        }
        for (column, dim) in self.dimensions.iter().zip(&schema.dimensions) {
            if column.name != dim.name || column.data.value_type() != dim.value_type {
                return Err(format!(
                    "dimension column {} ({:?}) where the schema has {} ({:?})",
                    column.name,
                    column.data.value_type(),
                    dim.name,
                    dim.value_type
                ));
            }
        }
        if self.metrics.len() != schema.metrics.len() {
            return Err(format!(
                "{} metric columns for {} schema metrics",
                self.metrics.len(),
                schema.metrics.len()
            ));
        }
        for (column, metric) in self.metrics.iter().zip(&schema.metrics) {
            let storage = match &column.data {
                MetricData::Long(_) => MetricStorage::Long,
                MetricData::Double(_) => MetricStorage::Double,
                MetricData::Sketch(_) => MetricStorage::Sketch,
            };
            if column.name != metric.name || column.kind != metric.kind {
                return Err(format!(
                    "metric column {} ({:?}) where the schema has {} ({:?})",
                    column.name, column.kind, metric.name, metric.kind
                ));
            }
            if storage != metric.kind.storage() {
                return Err(format!(
                    "metric column {} stores {storage:?} values where {:?} stores {:?}",
                    column.name,
                    metric.kind,
                    metric.kind.storage()
                ));
            }
        }
        Ok(())
    }

    /// The smallest and largest `__time`; `(0, 0)` when there are no rows.
    pub fn time_bounds(&self) -> (i64, i64) {
        let min = self.time.iter().copied().min();
        let max = self.time.iter().copied().max();
        (min.unwrap_or(0), max.unwrap_or(0))
    }

    /// Checks the invariants in the module documentation (row order only as far as `__time`
    /// when `time_sorted`); the message names the column at fault.
    pub fn validate(&self, time_sorted: bool) -> Result<(), String> {
        let rows = self.time.len();
        if time_sorted && self.time.windows(2).any(|w| w[0] > w[1]) {
            return Err("column __time: rows are not sorted by time".into());
        }
        for dim in &self.dimensions {
            if dim.data.len() != rows {
                return Err(format!(
                    "column {}: {} rows, expected {rows}",
                    dim.name,
                    dim.data.len()
                ));
            }
            if let DimensionData::String {
                dictionary,
                rows: string_rows,
            } = &dim.data
            {
                if dictionary.iter().skip(1).any(|v| v.is_none()) {
                    return Err(format!(
                        "column {}: null is not first in the dictionary",
                        dim.name
                    ));
                }
                if dictionary.windows(2).any(|w| w[0] >= w[1]) {
                    return Err(format!(
                        "column {}: dictionary is not sorted and unique",
                        dim.name
                    ));
                }
                let ids: &[u32] = match string_rows {
                    StringRows::Single(ids) => ids,
                    StringRows::Multi { offsets, ids } => {
                        let ordered = offsets.first() == Some(&0)
                            && offsets.windows(2).all(|w| w[0] <= w[1])
                            && offsets.last().map(|&o| o as usize) == Some(ids.len());
                        if !ordered {
                            return Err(format!("column {}: bad multi-value offsets", dim.name));
                        }
                        ids
                    }
                };
                if ids.iter().any(|&id| id as usize >= dictionary.len()) {
                    return Err(format!("column {}: id outside the dictionary", dim.name));
                }
            }
        }
        for metric in &self.metrics {
            if metric.data.len() != rows {
                return Err(format!(
                    "column {}: {} rows, expected {rows}",
                    metric.name,
                    metric.data.len()
                ));
            }
        }
        Ok(())
    }
}

fn slice_strings(
    dictionary: &[Option<String>],
    rows: &StringRows,
    start: usize,
    end: usize,
) -> DimensionData {
    let mut used = vec![false; dictionary.len()];
    for r in start..end {
        for &id in rows.row(r) {
            used[id as usize] = true;
        }
    }
    let mut remap = vec![0u32; dictionary.len()];
    let mut compact = Vec::new();
    for (id, value) in dictionary.iter().enumerate() {
        if used[id] {
            remap[id] = compact.len() as u32;
            compact.push(value.clone());
        }
    }
    let rows = match rows {
        StringRows::Single(ids) => StringRows::Single(
            ids[start..end]
                .iter()
                .map(|&id| remap[id as usize])
                .collect(),
        ),
        StringRows::Multi { offsets, ids } => {
            let base = offsets[start];
            StringRows::Multi {
                offsets: offsets[start..=end].iter().map(|&o| o - base).collect(),
                ids: ids[base as usize..offsets[end] as usize]
                    .iter()
                    .map(|&id| remap[id as usize])
                    .collect(),
            }
        }
    };
    DimensionData::String {
        dictionary: compact,
        rows,
    }
}
