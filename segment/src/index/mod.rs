//! The incremental index: rows accumulate in memory, rolled up on (truncated `__time`,
//! dimensions), until a limit says persist.
//!
//! Layout: every row is a fixed-width key of `u64` words in one flat arena — the truncated time,
//! one word per dimension (a dictionary id for strings, the value's bits for numbers) and, when
//! there are numeric dimensions, null-mask words — plus columnar aggregation state per metric. With
//! roll-up a `hashbrown::HashTable` of row numbers finds the row a key already has; without it every
//! input row is a new row. String values get ids in arrival order; a multi-value row's id list is
//! interned as a "combo" whose word has the top bit set, so a dimension is always one word.
//!
//! [`IncrementalIndex::to_columns`] sorts a snapshot of the rows by (time, dimension values) and
//! returns [`SegmentColumns`]; it does not consume the index, so the index stays queryable (and can
//! keep growing) while a snapshot is persisted or queried.
//!
//! Limits: the caller enforces maxRowsInMemory / maxBytesInMemory (across all the indexes it holds)
//! with [`IncrementalIndex::len`] and [`IncrementalIndex::bytes`]; [`IncrementalIndex::is_full`]
//! says the index reached its own capacity (row numbers and dictionary offsets are 32-bit) and must
//! be persisted whatever the limits say. The byte figure is an estimate of what
//! the index holds (keys, aggregation state, dictionaries, hash table), not allocator truth.
//!
//! Metric inputs follow Druid's default-value mode for now: a null or missing input adds nothing
//! to a sum and counts as 0 for min/max; the stored metric is never null.

use hashbrown::HashTable;
use rustc_hash::{FxBuildHasher, FxHasher};
use std::hash::{BuildHasher, Hasher};

use crate::columns::{
    DimensionColumn, DimensionData, MetricColumn, MetricData, SegmentColumns, StringRows,
};
use crate::row::{InputRow, RowLayout, Value};
use crate::schema::{MetricKind, Schema, ValueType};
use crate::sketch::HllSketch;

mod order;
mod strings;

pub(crate) use order::SortKeys;

use strings::{COMBO_BIT, StringDictionary, StringPlan, encode_string};

/// Why a row could not be added; the caller reports it as a parse error at the row's position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError(pub String);

pub struct IncrementalIndex {
    schema: Schema,
    dimensions: Vec<DimensionIndexer>,
    /// Slot in [`InputRow::values`] of each dimension (the layout puts dimension `d` in slot `d`).
    metric_slots: Vec<Option<usize>>,
    /// Words per row: time, one per dimension, then null-mask words.
    stride: usize,
    keys: Vec<u64>,
    table: HashTable<u32>,
    metrics: Vec<MetricState>,
    rows: usize,
    dictionary_bytes: u64,
    sketch_bytes: u64,
    /// Scratch for building one row's key without allocating.
    scratch: Vec<u64>,
    scratch_ids: Vec<u32>,
    scratch_strings: Vec<String>,
}

enum DimensionIndexer {
    String(StringDictionary),
    Long,
    Double,
}

enum MetricState {
    Long {
        kind: MetricKind,
        values: Vec<i64>,
    },
    Double {
        kind: MetricKind,
        values: Vec<f64>,
    },
    Sketch {
        lg_k: u8,
        utf16le: bool,
        values: Vec<HllSketch>,
    },
}

impl IncrementalIndex {
    /// An empty index for `schema`; rows must come in the slots of `RowLayout::new(schema, ..)`.
    pub fn new(schema: &Schema) -> IncrementalIndex {
        let layout = RowLayout::new(schema, &[]);
        let dimensions = schema
            .dimensions
            .iter()
            .map(|d| match d.value_type {
                ValueType::String => {
                    DimensionIndexer::String(StringDictionary::new(d.multi_value_handling))
                }
                ValueType::Long => DimensionIndexer::Long,
                ValueType::Double => DimensionIndexer::Double,
            })
            .collect::<Vec<_>>();
        let numeric = dimensions
            .iter()
            .filter(|d| !matches!(d, DimensionIndexer::String(_)))
            .count();
        let null_words = if numeric == 0 {
            0
        } else {
            schema.dimensions.len().div_ceil(64)
        };
        let stride = 1 + schema.dimensions.len() + null_words;
        let metrics = schema
            .metrics
            .iter()
            .map(|m| match m.kind {
                MetricKind::HllSketch { lg_k, utf16le } => MetricState::Sketch {
                    lg_k,
                    utf16le,
                    values: Vec::new(),
                },
                kind if kind.storage() == crate::schema::MetricStorage::Double => {
                    MetricState::Double {
                        kind,
                        values: Vec::new(),
                    }
                }
                kind => MetricState::Long {
                    kind,
                    values: Vec::new(),
                },
            })
            .collect();
        IncrementalIndex {
            schema: schema.clone(),
            dimensions,
            metric_slots: layout.metric_slots,
            stride,
            keys: Vec::new(),
            table: HashTable::new(),
            metrics,
            rows: 0,
            dictionary_bytes: 0,
            sketch_bytes: 0,
            scratch: vec![0; stride],
            scratch_ids: Vec::new(),
            scratch_strings: Vec::new(),
        }
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Rows held (after roll-up).
    pub fn len(&self) -> usize {
        self.rows
    }

    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Estimated bytes held.
    pub fn bytes(&self) -> u64 {
        let per_row_metrics: u64 = self
            .metrics
            .iter()
            .map(|m| match m {
                MetricState::Sketch { .. } => 0,
                _ => 8,
            })
            .sum();
        self.keys.len() as u64 * 8
            + self.rows as u64 * (per_row_metrics + if self.schema.rollup { 12 } else { 0 })
            + self.dictionary_bytes
            + self.sketch_bytes
    }

    /// Whether the index reached its own capacity: 2^31 rows, or 2^31 bytes of dictionary text
    /// (row numbers and dictionary offsets are 32-bit). Persist it before adding more.
    pub fn is_full(&self) -> bool {
        const CAPACITY: u64 = 1 << 31;
        self.rows as u64 >= CAPACITY || self.dictionary_bytes >= CAPACITY
    }

    /// Adds one input row: truncates its time, encodes its dimensions, and either folds it into
    /// the row with the same key (roll-up) or appends a new row. On error nothing is changed.
    pub fn add(&mut self, row: &InputRow) -> Result<(), RowError> {
        // Everything fallible runs before anything (dictionaries included) changes.
        self.check_metric_inputs(row)?;
        let time = self.schema.query_granularity.truncate(row.timestamp_ms);
        let mut key = std::mem::take(&mut self.scratch);
        if let Err(e) = self.encode_key(time, row, &mut key) {
            self.scratch = key;
            return Err(e);
        }
        let row_id = if self.schema.rollup {
            let hash = hash_key(&key);
            let keys = &self.keys;
            let stride = self.stride;
            match self.table.find(hash, |&r| {
                let start = r as usize * stride;
                keys[start..start + stride] == key[..]
            }) {
                Some(&r) => Some(r as usize),
                None => {
                    let r = self.push_row(&key);
                    let (keys, stride) = (&self.keys, self.stride);
                    self.table.insert_unique(hash, r as u32, |&other| {
                        let start = other as usize * stride;
                        hash_key(&keys[start..start + stride])
                    });
                    None
                }
            }
        } else {
            self.push_row(&key);
            None
        };
        self.scratch = key;
        let target = row_id.unwrap_or(self.rows - 1);
        self.aggregate(target, row, row_id.is_none());
        Ok(())
    }

    fn push_row(&mut self, key: &[u64]) -> usize {
        self.keys.extend_from_slice(key);
        for metric in &mut self.metrics {
            match metric {
                MetricState::Long { kind, values } => values.push(initial_long(*kind)),
                MetricState::Double { kind, values } => values.push(initial_double(*kind)),
                MetricState::Sketch { lg_k, values, .. } => values.push(HllSketch::new(*lg_k)),
            }
        }
        self.rows += 1;
        self.rows - 1
    }

    /// Numeric dimensions are converted first (they can fail); strings are interned only after,
    /// so a failing row adds nothing to the dictionaries.
    fn encode_key(&mut self, time: i64, row: &InputRow, key: &mut [u64]) -> Result<(), RowError> {
        key[0] = time as u64;
        let null_base = 1 + self.dimensions.len();
        for word in &mut key[null_base..] {
            *word = 0;
        }
        for (d, dimension) in self.dimensions.iter().enumerate() {
            let value = row.values.get(d).unwrap_or(&Value::Null);
            let name = &self.schema.dimensions[d].name;
            let converted = match dimension {
                DimensionIndexer::String(_) => continue,
                DimensionIndexer::Long => to_long(value, name)?.map(|v| v as u64),
                DimensionIndexer::Double => to_double(value, name)?.map(canonical_bits),
            };
            match converted {
                Some(bits) => key[1 + d] = bits,
                None => {
                    key[1 + d] = 0;
                    key[null_base + d / 64] |= 1 << (d % 64);
                }
            }
        }
        for (d, dimension) in self.dimensions.iter_mut().enumerate() {
            if let DimensionIndexer::String(dict) = dimension {
                let value = row.values.get(d).unwrap_or(&Value::Null);
                key[1 + d] = encode_string(
                    dict,
                    value,
                    &mut self.dictionary_bytes,
                    &mut self.scratch_ids,
                    &mut self.scratch_strings,
                );
            }
        }
        Ok(())
    }

    fn check_metric_inputs(&self, row: &InputRow) -> Result<(), RowError> {
        for (m, metric) in self.metrics.iter().enumerate() {
            let Some(slot) = self.metric_slots[m] else {
                continue;
            };
            let value = row.values.get(slot).unwrap_or(&Value::Null);
            let field = self.schema.metrics[m].field_name.as_deref().unwrap_or("");
            match metric {
                MetricState::Long { .. } => {
                    to_long(value, field)?;
                }
                MetricState::Double { .. } => {
                    to_double(value, field)?;
                }
                MetricState::Sketch { .. } => {}
            }
        }
        Ok(())
    }

    fn aggregate(&mut self, target: usize, row: &InputRow, new_row: bool) {
        for (m, metric) in self.metrics.iter_mut().enumerate() {
            let value = self.metric_slots[m].and_then(|s| row.values.get(s));
            match metric {
                MetricState::Long { kind, values } => {
                    let input = if *kind == MetricKind::Count {
                        1
                    } else {
                        value
                            .and_then(|v| to_long(v, "").ok().flatten())
                            .unwrap_or(0)
                    };
                    let slot = &mut values[target];
                    *slot = combine_long(*kind, *slot, input);
                }
                MetricState::Double { kind, values } => {
                    let input = value
                        .and_then(|v| to_double(v, "").ok().flatten())
                        .unwrap_or(0.0);
                    let slot = &mut values[target];
                    *slot = combine_double(*kind, *slot, input);
                }
                MetricState::Sketch {
                    values, utf16le, ..
                } => {
                    let sketch = &mut values[target];
                    match value {
                        Some(Value::String(s)) => sketch.update_str_as(s, *utf16le),
                        Some(Value::Long(v)) => sketch.update_i64(*v),
                        Some(Value::Double(v)) => sketch.update_f64(*v),
                        Some(Value::Strings(list)) => {
                            for s in list {
                                sketch.update_str_as(s, *utf16le);
                            }
                        }
                        Some(Value::Null) | None => {}
                    }
                }
            }
        }
        if new_row {
            // New rows start empty sketches: account for their memory once.
            for metric in &self.metrics {
                if let MetricState::Sketch { lg_k, .. } = metric {
                    self.sketch_bytes += sketch_bytes_estimate(*lg_k);
                }
            }
        }
    }

    /// A sorted snapshot of the rows as segment columns. The index is unchanged.
    pub fn to_columns(&self) -> SegmentColumns {
        let rows = self.rows;
        let dims = self.dimensions.len();
        // Per dimension, how to order and emit it: string dimensions rank a key word directly;
        // numeric dimensions rank their values once, up front.
        let mut numeric_rank_columns: Vec<Option<Vec<u64>>> = Vec::with_capacity(dims);
        let mut emitters: Vec<Emitter> = Vec::with_capacity(dims);
        for (d, dimension) in self.dimensions.iter().enumerate() {
            match dimension {
                DimensionIndexer::String(dict) => {
                    numeric_rank_columns.push(None);
                    emitters.push(Emitter::String(StringPlan::new(dict)));
                }
                DimensionIndexer::Long | DimensionIndexer::Double => {
                    let is_double = matches!(dimension, DimensionIndexer::Double);
                    let null_word = 1 + dims + d / 64;
                    let bit = 1u64 << (d % 64);
                    let values: Vec<Option<u64>> = (0..rows)
                        .map(|r| {
                            let base = r * self.stride;
                            (self.keys[base + null_word] & bit == 0)
                                .then_some(self.keys[base + 1 + d])
                        })
                        .collect();
                    numeric_rank_columns.push(Some(numeric_ranks(&values, is_double)));
                    emitters.push(Emitter::Numeric { values, is_double });
                }
            }
        }
        let times: Vec<i64> = (0..rows)
            .map(|r| self.keys[r * self.stride] as i64)
            .collect();
        // Row by row, so each wide key is read once.
        let sort_keys = SortKeys::new(&times, dims, self.schema.time_position, |r, ranks| {
            let words = &self.keys[r * self.stride + 1..][..dims];
            for (d, rank) in ranks.iter_mut().enumerate() {
                *rank = match (&emitters[d], &numeric_rank_columns[d]) {
                    (Emitter::String(plan), _) => plan.order_rank(words[d]),
                    (_, Some(column)) => column[r],
                    (_, None) => 0,
                };
            }
        });
        drop(numeric_rank_columns);
        let order = sort_keys.stable_order();
        drop(sort_keys);
        let time = order.iter().map(|&r| times[r as usize]).collect();
        // One pass over the rows in sorted order, reading each key once (rows are wide; reading
        // them once per dimension would miss the cache once per dimension per row).
        let mut sorted_words: Vec<Vec<u64>> = vec![Vec::with_capacity(rows); dims];
        for &r in &order {
            let key = &self.keys[r as usize * self.stride + 1..][..dims];
            for (column, &word) in sorted_words.iter_mut().zip(key) {
                column.push(word);
            }
        }
        let dimensions = emitters
            .into_iter()
            .zip(sorted_words)
            .enumerate()
            .map(|(d, (emitter, words))| DimensionColumn {
                name: self.schema.dimensions[d].name.clone(),
                data: emitter.emit(&order, &words),
            })
            .collect();
        let metrics = self
            .metrics
            .iter()
            .zip(&self.schema.metrics)
            .map(|(state, schema)| MetricColumn {
                name: schema.name.clone(),
                kind: schema.kind,
                data: match state {
                    MetricState::Long { values, .. } => {
                        MetricData::Long(order.iter().map(|&r| values[r as usize]).collect())
                    }
                    MetricState::Double { values, .. } => {
                        MetricData::Double(order.iter().map(|&r| values[r as usize]).collect())
                    }
                    MetricState::Sketch { values, .. } => MetricData::Sketch(
                        order
                            .iter()
                            .map(|&r| values[r as usize].to_bytes())
                            .collect(),
                    ),
                },
            })
            .collect();
        let columns = SegmentColumns {
            time,
            dimensions,
            metrics,
        };
        debug_assert_eq!(columns.validate(self.schema.time_sorted()), Ok(()));
        columns
    }
}

fn hash_key(key: &[u64]) -> u64 {
    let mut hasher = FxBuildHasher.build_hasher();
    for &word in key {
        hasher.write_u64(word);
    }
    let h: FxHasher = hasher;
    // Fx leaves low bits weak for small integers; mix before hashbrown takes its top 7 bits.
    let x = h.finish();
    (x ^ (x >> 29)).wrapping_mul(0xbf58_476d_1ce4_e5b9)
}

fn canonical_bits(v: f64) -> u64 {
    if v == 0.0 {
        0.0f64.to_bits()
    } else if v.is_nan() {
        f64::NAN.to_bits()
    } else {
        v.to_bits()
    }
}

/// Converts an input value for a long column; `Ok(None)` is null.
pub fn to_long(value: &Value, field: &str) -> Result<Option<i64>, RowError> {
    match value {
        Value::Null => Ok(None),
        Value::Long(v) => Ok(Some(*v)),
        Value::Double(v) if v.is_finite() => Ok(Some(*v as i64)),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => s
            .trim()
            .parse::<i64>()
            .ok()
            .or_else(|| {
                s.trim()
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite())
                    .map(|f| f as i64)
            })
            .map(Some)
            .ok_or_else(|| RowError(format!("cannot parse '{s}' as a long for field '{field}'"))),
        Value::Double(v) => Err(RowError(format!(
            "cannot store {v} as a long for field '{field}'"
        ))),
        Value::Strings(_) => Err(RowError(format!(
            "field '{field}' holds a list where a single long is expected"
        ))),
    }
}

/// Converts an input value for a double column; `Ok(None)` is null.
pub fn to_double(value: &Value, field: &str) -> Result<Option<f64>, RowError> {
    match value {
        Value::Null => Ok(None),
        Value::Long(v) => Ok(Some(*v as f64)),
        Value::Double(v) => Ok(Some(*v)),
        Value::String(s) if s.is_empty() => Ok(None),
        Value::String(s) => s.trim().parse::<f64>().map(Some).map_err(|_| {
            RowError(format!(
                "cannot parse '{s}' as a double for field '{field}'"
            ))
        }),
        Value::Strings(_) => Err(RowError(format!(
            "field '{field}' holds a list where a single double is expected"
        ))),
    }
}

fn initial_long(kind: MetricKind) -> i64 {
    match kind {
        MetricKind::LongMin => i64::MAX,
        MetricKind::LongMax => i64::MIN,
        _ => 0,
    }
}

fn initial_double(kind: MetricKind) -> f64 {
    match kind {
        MetricKind::DoubleMin => f64::INFINITY,
        MetricKind::DoubleMax => f64::NEG_INFINITY,
        _ => 0.0,
    }
}

/// Folds `input` into `acc` for an ingestion aggregator (`count` adds one per input row, so its
/// input here is 1; when combining partial counts use [`MetricKind::combining`]).
#[inline]
pub fn combine_long(kind: MetricKind, acc: i64, input: i64) -> i64 {
    match kind {
        MetricKind::Count | MetricKind::LongSum => acc.wrapping_add(input),
        MetricKind::LongMin => acc.min(input),
        MetricKind::LongMax => acc.max(input),
        _ => acc,
    }
}

#[inline]
pub fn combine_double(kind: MetricKind, acc: f64, input: f64) -> f64 {
    match kind {
        MetricKind::DoubleSum => acc + input,
        MetricKind::DoubleMin => acc.min(input),
        MetricKind::DoubleMax => acc.max(input),
        _ => acc,
    }
}

fn sketch_bytes_estimate(lg_k: u8) -> u64 {
    // Sketches are held with one byte per register (see `crate::sketch`) plus a small header.
    (1u64 << lg_k) + 64
}

/// Ranks for numeric dimension values: nulls first (rank 0), then ascending values.
pub(crate) fn numeric_ranks(values: &[Option<u64>], is_double: bool) -> Vec<u64> {
    let order_code = |bits: u64| -> u64 {
        if is_double {
            // IEEE total order as an unsigned integer.
            let signed = bits as i64;
            (signed ^ (((signed >> 63) as u64) >> 1) as i64) as u64 ^ (1 << 63)
        } else {
            bits ^ (1 << 63)
        }
    };
    let mut distinct: Vec<u64> = values.iter().flatten().map(|&b| order_code(b)).collect();
    distinct.sort_unstable();
    distinct.dedup();
    values
        .iter()
        .map(|v| match v {
            None => 0,
            Some(bits) => {
                let code = order_code(*bits);
                distinct.binary_search(&code).map_or(0, |i| i as u64 + 1)
            }
        })
        .collect()
}

enum Emitter {
    String(StringPlan),
    Numeric {
        values: Vec<Option<u64>>,
        is_double: bool,
    },
}

impl Emitter {
    /// `words[i]` is the key word of the `i`-th row in sorted order, which is row `order[i]`.
    fn emit(self, order: &[u32], words: &[u64]) -> DimensionData {
        match self {
            Emitter::String(plan) => {
                let rows = if plan.multi {
                    let mut offsets = Vec::with_capacity(order.len() + 1);
                    let mut ids = Vec::with_capacity(order.len());
                    offsets.push(0u32);
                    for &word in words {
                        if word & COMBO_BIT != 0 {
                            ids.extend_from_slice(&plan.combo_output[(word & !COMBO_BIT) as usize]);
                        } else if Some(word as u32) != plan.null_id {
                            ids.push(plan.output_id[word as usize]);
                        }
                        offsets.push(ids.len() as u32);
                    }
                    StringRows::Multi { offsets, ids }
                } else {
                    StringRows::Single(
                        words
                            .iter()
                            .map(|&word| {
                                if Some(word as u32) == plan.null_id {
                                    0
                                } else {
                                    plan.output_id[word as usize]
                                }
                            })
                            .collect(),
                    )
                };
                DimensionData::String {
                    dictionary: plan.dictionary,
                    rows,
                }
            }
            Emitter::Numeric { values, is_double } => {
                DimensionData::numeric(order.iter().map(|&r| values[r as usize]), is_double)
            }
        }
    }
}
