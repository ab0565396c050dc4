//! Typed access to one segment column by name, and cursors that read values of increasing rows
//! without decoding a bit-packed block more than once.
//!
//! A name resolves to a dimension first, then a metric, then `__time`; a name the segment does
//! not have is [`Column::Missing`] (every row null), as in Druid.

use roaring::RoaringBitmap;

use grove_segment::format::{
    BLOCK_ROWS, DimensionReader, DoubleColumn, LongColumn, MetricReader, Segment, SketchColumn,
    StringColumn,
};
use grove_segment::row::{Value, format_double};

use crate::error::Result;

pub const TIME_COLUMN: &str = "__time";

/// One column of a segment.
#[derive(Clone, Copy, Debug)]
pub enum Column<'a> {
    String(StringColumn<'a>),
    /// A long dimension (with nulls), long metric or `__time` (without).
    Long {
        values: LongColumn<'a>,
        nulls: Option<&'a RoaringBitmap>,
    },
    Double {
        values: DoubleColumn<'a>,
        nulls: Option<&'a RoaringBitmap>,
    },
    Sketch(SketchColumn<'a>),
    Missing,
}

impl<'a> Column<'a> {
    pub fn of(segment: &'a Segment, name: &str) -> Result<Column<'a>> {
        if let Some(d) = segment.dimension(name)? {
            return Ok(match d {
                DimensionReader::String(s) => Column::String(s),
                DimensionReader::Long { values, nulls } => Column::Long {
                    values,
                    nulls: Some(nulls).filter(|n| !n.is_empty()),
                },
                DimensionReader::Double { values, nulls } => Column::Double {
                    values,
                    nulls: Some(nulls).filter(|n| !n.is_empty()),
                },
            });
        }
        if let Some(m) = segment.metric(name)? {
            return Ok(match m {
                MetricReader::Long(values) => Column::Long {
                    values,
                    nulls: None,
                },
                MetricReader::Double(values) => Column::Double {
                    values,
                    nulls: None,
                },
                MetricReader::Sketch(s) => Column::Sketch(s),
            });
        }
        if name == TIME_COLUMN {
            return Ok(Column::Long {
                values: segment.time()?,
                nulls: None,
            });
        }
        Ok(Column::Missing)
    }

    /// A cursor reading this column's values as [`Value`]s (strings as text, multi-value rows as
    /// lists), for scans and filters that need the generic form.
    pub fn values(self) -> ValueCursor<'a> {
        ValueCursor {
            column: self,
            longs: match self {
                Column::Long { values, .. } => Some(LongCursor::new(values)),
                _ => None,
            },
            ids: Vec::new(),
        }
    }
}

/// Reads a long column at increasing (or repeated) rows, decoding each 1024-row block once.
pub struct LongCursor<'a> {
    column: LongColumn<'a>,
    block: usize,
    buf: Box<[i64; BLOCK_ROWS]>,
    /// Read single values instead of decoding blocks (few rows per block).
    sparse: bool,
}

/// Whether `rows` (ascending, or ascending runs) are so spread out that reading single values
/// beats decoding the 1,024-row blocks they fall in.
pub fn is_sparse(rows: &[u32]) -> bool {
    let (Some(&first), Some(&last)) = (rows.first(), rows.last()) else {
        return false;
    };
    let (lo, hi) = if first <= last {
        (first, last)
    } else {
        // Runs (rows grouped by dictionary id): the span of the whole batch.
        let lo = rows.iter().copied().min().unwrap_or(first);
        let hi = rows.iter().copied().max().unwrap_or(last);
        (lo, hi)
    };
    (hi - lo) as usize > rows.len() * SPARSE_SPREAD
}

/// Rows per selected row above which a batch counts as sparse.
const SPARSE_SPREAD: usize = 64;

impl<'a> LongCursor<'a> {
    pub fn new(column: LongColumn<'a>) -> LongCursor<'a> {
        LongCursor {
            column,
            block: usize::MAX,
            buf: Box::new([0; BLOCK_ROWS]),
            sparse: false,
        }
    }

    /// Switches between block decoding (dense rows) and single-value reads (sparse rows).
    pub fn set_sparse(&mut self, sparse: bool) {
        self.sparse = sparse;
    }

    #[inline]
    pub fn get(&mut self, row: u32) -> i64 {
        let row = row as usize;
        if self.sparse && row / BLOCK_ROWS != self.block {
            return self.column.get(row);
        }
        let b = row / BLOCK_ROWS;
        if b != self.block {
            self.column.decode_block(b, &mut self.buf);
            self.block = b;
        }
        self.buf[row % BLOCK_ROWS]
    }
}

impl LongCursor<'_> {
    /// Folds the values of the contiguous rows `rows` with `op`, block by block.
    pub fn fold_range(
        &mut self,
        rows: std::ops::Range<u32>,
        init: i64,
        op: fn(i64, i64) -> i64,
    ) -> i64 {
        let mut acc = init;
        let mut row = rows.start as usize;
        let end = rows.end as usize;
        while row < end {
            let b = row / BLOCK_ROWS;
            let from = row % BLOCK_ROWS;
            let to = (end - b * BLOCK_ROWS).min(BLOCK_ROWS);
            let stretch = b * BLOCK_ROWS + from..b * BLOCK_ROWS + to;
            row = stretch.end;
            // A short stretch of a block not decoded yet: its values read in place.
            if b != self.block
                && to - from < IN_PLACE_ROWS
                && let Some(folded) = self.column.fold_in_block(stretch, acc, op)
            {
                acc = folded;
                continue;
            }
            if b != self.block {
                self.column.decode_block(b, &mut self.buf);
                self.block = b;
            }
            acc = self.buf[from..to].iter().fold(acc, |a, &v| op(a, v));
        }
        acc
    }

    /// Appends the values of the contiguous rows `rows` to `out`, a decoded block at a time.
    pub fn extend_range(&mut self, rows: std::ops::Range<u32>, out: &mut Vec<i64>) {
        let mut row = rows.start as usize;
        let end = rows.end as usize;
        while row < end {
            let b = row / BLOCK_ROWS;
            if b != self.block {
                self.column.decode_block(b, &mut self.buf);
                self.block = b;
            }
            let from = row % BLOCK_ROWS;
            let to = (end - b * BLOCK_ROWS).min(BLOCK_ROWS);
            out.extend_from_slice(&self.buf[from..to]);
            row = b * BLOCK_ROWS + to;
        }
    }
}

/// Rows of a block below which [`LongCursor::fold_range`] reads values in place rather than
/// decoding the block.
const IN_PLACE_ROWS: usize = 192;

/// Reads a single-value string column's dictionary ids at increasing rows, block by block.
pub struct IdCursor<'a> {
    column: StringColumn<'a>,
    block: usize,
    buf: Vec<u32>,
    sparse: bool,
    one: Vec<u32>,
}

impl<'a> IdCursor<'a> {
    pub fn new(column: StringColumn<'a>) -> IdCursor<'a> {
        IdCursor {
            column,
            block: usize::MAX,
            buf: vec![0; BLOCK_ROWS],
            sparse: false,
            one: Vec::with_capacity(1),
        }
    }

    /// Switches between block decoding (dense rows) and single-id reads (sparse rows).
    pub fn set_sparse(&mut self, sparse: bool) {
        self.sparse = sparse;
    }

    #[inline]
    pub fn get(&mut self, row: u32) -> Result<u32> {
        let row = row as usize;
        if self.sparse && row / BLOCK_ROWS != self.block {
            self.column.row_ids(row, &mut self.one);
            return Ok(self.one[0]);
        }
        let b = row / BLOCK_ROWS;
        if b != self.block {
            let start = b * BLOCK_ROWS;
            let n = (self.column.num_rows() - start).min(BLOCK_ROWS);
            self.column.decode_ids(start, &mut self.buf[..n])?;
            self.block = b;
        }
        Ok(self.buf[row % BLOCK_ROWS])
    }
}

/// Reads any column's values as [`Value`]s.
pub struct ValueCursor<'a> {
    column: Column<'a>,
    longs: Option<LongCursor<'a>>,
    ids: Vec<u32>,
}

impl ValueCursor<'_> {
    /// Writes row `row`'s value into `out`, reusing its buffers.
    pub fn read(&mut self, row: u32, out: &mut Value) -> Result<()> {
        match self.column {
            Column::Missing | Column::Sketch(_) => *out = Value::Null,
            Column::String(s) => {
                s.row_ids(row as usize, &mut self.ids);
                if s.is_multi_value() {
                    let mut list = match std::mem::take(out) {
                        Value::Strings(mut l) => {
                            l.clear();
                            l
                        }
                        _ => Vec::new(),
                    };
                    for &id in &self.ids {
                        if let Some(v) = s.value(id)? {
                            list.push(v.into_owned());
                        }
                    }
                    *out = Value::Strings(list);
                } else {
                    match s.value(self.ids[0])? {
                        None => *out = Value::Null,
                        Some(v) => out.set_str(&v),
                    }
                }
            }
            Column::Long { nulls, .. } => {
                if nulls.is_some_and(|n| n.contains(row)) {
                    *out = Value::Null;
                } else if let Some(c) = self.longs.as_mut() {
                    *out = Value::Long(c.get(row));
                }
            }
            Column::Double { values, nulls } => {
                *out = if nulls.is_some_and(|n| n.contains(row)) {
                    Value::Null
                } else {
                    Value::Double(values.get(row as usize))
                };
            }
        }
        Ok(())
    }
}

/// A [`Value`] as Druid's JSON prints it in scan and search results (longs as integers, doubles
/// as floats, multi-value rows as arrays, null as null).
pub fn value_json(value: &Value) -> serde_json::Value {
    match value {
        Value::Null => serde_json::Value::Null,
        Value::String(s) => serde_json::Value::String(s.clone()),
        Value::Strings(l) if l.is_empty() => serde_json::Value::Null,
        Value::Strings(l) => serde_json::Value::Array(
            l.iter()
                .map(|s| serde_json::Value::String(s.clone()))
                .collect(),
        ),
        Value::Long(v) => (*v).into(),
        Value::Double(v) => double_json(*v),
    }
}

/// A double as JSON; NaN and infinities (which JSON cannot hold) as Druid's text for them.
pub fn double_json(v: f64) -> serde_json::Value {
    serde_json::Number::from_f64(v)
        .map(serde_json::Value::Number)
        .unwrap_or_else(|| serde_json::Value::String(format_double(v)))
}
