//! Aggregators: their query-level definition ([`AggDef`], resolved from the JSON model), the
//! mergeable value one group holds ([`AggValue`], what per-segment engines emit and the merge
//! combines associatively), and the per-segment accumulators ([`Acc`]) that fold rows into
//! column-wise state in batches.
//!
//! Null handling follows Druid's SQL-compatible mode: `count` counts rows; sums, mins, maxes and
//! first/last over no non-null input are null. Numeric aggregators read long and double columns
//! (metrics, dimensions, `__time`) and convert between them as Druid does; reading a string column
//! numerically is refused with a clear error. Sketch aggregators build or merge DataSketches HLL
//! sketches (`lgK` 12 by default, as Druid).

use std::cmp::Ordering;

use roaring::RoaringBitmap;

use grove_segment::filter::Filter;
use grove_segment::format::BLOCK_ROWS;
use grove_segment::sketch::{HllSketch, HllType};

use crate::column::{Column, IdCursor, LongCursor, double_json};
use crate::error::{QueryError, Result};
use crate::model::Aggregator;

/// Druid's default `lgK` for HLL sketches.
pub const DEFAULT_LG_K: u8 = 12;

#[derive(Clone, Debug, PartialEq)]
pub enum AggKind {
    Count,
    LongSum,
    LongMin,
    LongMax,
    DoubleSum,
    DoubleMin,
    DoubleMax,
    LongFirst,
    LongLast,
    DoubleFirst,
    DoubleLast,
    StringFirst {
        max_bytes: usize,
    },
    StringLast {
        max_bytes: usize,
    },
    /// Distinct values of `fields` (each field's values counted separately, or value tuples with
    /// `by_row`).
    Distinct {
        fields: Vec<String>,
        by_row: bool,
        round: bool,
        lg_k: u8,
        finalize: bool,
        /// Strings hash as UTF-16LE (`stringEncoding: utf16le`, Druid's default for
        /// HLLSketchBuild) rather than UTF-8.
        utf16le: bool,
        /// Register width of the sketch when it is returned unfinalized (`tgtHllType`).
        target: HllType,
    },
    /// Union of stored sketches.
    SketchMerge {
        round: bool,
        lg_k: u8,
        finalize: bool,
        target: HllType,
    },
}

/// One aggregator of a query, flattened: filtered aggregators become a filter on the inner one.
#[derive(Clone, Debug, PartialEq)]
pub struct AggDef {
    pub name: String,
    pub kind: AggKind,
    /// The input column (none for `count` and `Distinct`).
    pub field: Option<String>,
    pub filter: Option<Filter>,
}

impl AggDef {
    pub fn resolve(aggregators: &[Aggregator]) -> Result<Vec<AggDef>> {
        let mut out: Vec<AggDef> = Vec::with_capacity(aggregators.len());
        for a in aggregators {
            let def = AggDef::from_model(a, None)?;
            if out.iter().any(|d| d.name == def.name) {
                return Err(QueryError::bad(format!(
                    "duplicate aggregator name '{}'",
                    def.name
                )));
            }
            out.push(def);
        }
        Ok(out)
    }

    fn from_model(a: &Aggregator, outer_name: Option<&str>) -> Result<AggDef> {
        let name = outer_name.unwrap_or(a.name()).to_string();
        let field = |f: &String| Some(f.clone());
        // `fieldName`, or an `expression` that `Query::parse` turned into a virtual column.
        let input = |f: &String, expression: &Option<String>| -> Result<Option<String>> {
            match (f.is_empty(), expression) {
                (false, _) => Ok(Some(f.clone())),
                (true, Some(_)) => Err(QueryError::internal(format!(
                    "aggregator '{name}': its expression was not lowered to a virtual column"
                ))),
                (true, None) => Err(QueryError::bad(format!(
                    "aggregator '{name}' needs a fieldName or an expression"
                ))),
            }
        };
        let time_column = |t: &Option<String>| -> Result<()> {
            match t.as_deref() {
                None | Some("__time") => Ok(()),
                Some(other) => Err(QueryError::unsupported(format!(
                    "aggregator '{name}': timeColumn '{other}' (only __time)"
                ))),
            }
        };
        let (kind, field) = match a {
            Aggregator::Count { .. } => (AggKind::Count, None),
            Aggregator::LongSum {
                field_name,
                expression,
                ..
            } => (AggKind::LongSum, input(field_name, expression)?),
            Aggregator::LongMin {
                field_name,
                expression,
                ..
            } => (AggKind::LongMin, input(field_name, expression)?),
            Aggregator::LongMax {
                field_name,
                expression,
                ..
            } => (AggKind::LongMax, input(field_name, expression)?),
            Aggregator::DoubleSum {
                field_name,
                expression,
                ..
            } => (AggKind::DoubleSum, input(field_name, expression)?),
            Aggregator::DoubleMin {
                field_name,
                expression,
                ..
            } => (AggKind::DoubleMin, input(field_name, expression)?),
            Aggregator::DoubleMax {
                field_name,
                expression,
                ..
            } => (AggKind::DoubleMax, input(field_name, expression)?),
            Aggregator::LongFirst {
                field_name,
                time_column: t,
                ..
            } => {
                time_column(t)?;
                (AggKind::LongFirst, field(field_name))
            }
            Aggregator::LongLast {
                field_name,
                time_column: t,
                ..
            } => {
                time_column(t)?;
                (AggKind::LongLast, field(field_name))
            }
            Aggregator::DoubleFirst {
                field_name,
                time_column: t,
                ..
            } => {
                time_column(t)?;
                (AggKind::DoubleFirst, field(field_name))
            }
            Aggregator::DoubleLast {
                field_name,
                time_column: t,
                ..
            } => {
                time_column(t)?;
                (AggKind::DoubleLast, field(field_name))
            }
            Aggregator::StringFirst {
                field_name,
                time_column: t,
                max_string_bytes,
                ..
            } => {
                time_column(t)?;
                let max_bytes = max_string_bytes.unwrap_or(1024);
                (AggKind::StringFirst { max_bytes }, field(field_name))
            }
            Aggregator::StringLast {
                field_name,
                time_column: t,
                max_string_bytes,
                ..
            } => {
                time_column(t)?;
                let max_bytes = max_string_bytes.unwrap_or(1024);
                (AggKind::StringLast { max_bytes }, field(field_name))
            }
            Aggregator::Cardinality {
                fields,
                by_row,
                round,
                ..
            } => {
                if fields.is_empty() {
                    return Err(QueryError::bad(format!(
                        "cardinality aggregator '{name}' has no fields"
                    )));
                }
                (
                    AggKind::Distinct {
                        fields: fields.iter().map(|f| f.dimension.clone()).collect(),
                        by_row: *by_row,
                        round: *round,
                        lg_k: DEFAULT_LG_K,
                        finalize: true,
                        utf16le: false,
                        target: HllType::Hll4,
                    },
                    None,
                )
            }
            Aggregator::HllSketchBuild {
                field_name,
                lg_k,
                round,
                should_finalize,
                tgt_hll_type,
                string_encoding,
                ..
            } => (
                AggKind::Distinct {
                    fields: vec![field_name.clone()],
                    by_row: false,
                    round: *round,
                    lg_k: check_lg_k(&name, *lg_k)?,
                    finalize: should_finalize.unwrap_or(true),
                    utf16le: match string_encoding.as_deref() {
                        None => true,
                        Some(e) if e.eq_ignore_ascii_case("utf16le") => true,
                        Some(e) if e.eq_ignore_ascii_case("utf8") => false,
                        Some(e) => {
                            return Err(QueryError::bad(format!(
                                "aggregator '{name}': stringEncoding '{e}' (utf16le or utf8)"
                            )));
                        }
                    },
                    target: hll_type(&name, tgt_hll_type.as_deref())?,
                },
                None,
            ),
            Aggregator::HyperUnique {
                field_name, round, ..
            } => (
                AggKind::SketchMerge {
                    round: *round,
                    lg_k: DEFAULT_LG_K,
                    finalize: true,
                    target: HllType::Hll4,
                },
                field(field_name),
            ),
            Aggregator::HllSketchMerge {
                field_name,
                lg_k,
                round,
                should_finalize,
                tgt_hll_type,
                ..
            } => (
                AggKind::SketchMerge {
                    round: *round,
                    lg_k: check_lg_k(&name, *lg_k)?,
                    finalize: should_finalize.unwrap_or(true),
                    target: hll_type(&name, tgt_hll_type.as_deref())?,
                },
                field(field_name),
            ),
            Aggregator::Filtered {
                filter, aggregator, ..
            } => {
                let mut inner = AggDef::from_model(aggregator, Some(&name))?;
                inner.filter = Some(match inner.filter.take() {
                    None => filter.clone(),
                    Some(f) => Filter::And {
                        fields: vec![filter.clone(), f],
                    },
                });
                return Ok(inner);
            }
        };
        Ok(AggDef {
            name,
            kind,
            field,
            filter: None,
        })
    }

    /// The value of this aggregator over no rows.
    pub fn empty(&self) -> AggValue {
        match &self.kind {
            AggKind::Count => AggValue::Long(Some(0)),
            AggKind::LongSum | AggKind::LongMin | AggKind::LongMax => AggValue::Long(None),
            AggKind::DoubleSum | AggKind::DoubleMin | AggKind::DoubleMax => AggValue::Double(None),
            AggKind::LongFirst | AggKind::LongLast => AggValue::TimedLong(None),
            AggKind::DoubleFirst | AggKind::DoubleLast => AggValue::TimedDouble(None),
            AggKind::StringFirst { .. } | AggKind::StringLast { .. } => AggValue::TimedString(None),
            AggKind::Distinct { .. } | AggKind::SketchMerge { .. } => AggValue::Sketch(None),
        }
    }

    /// Combines `other` into `into` (associative and commutative).
    pub fn combine(&self, into: &mut AggValue, other: AggValue) {
        use AggValue as V;
        let first = matches!(
            self.kind,
            AggKind::LongFirst | AggKind::DoubleFirst | AggKind::StringFirst { .. }
        );
        match (into, other) {
            (V::Long(a), V::Long(b)) => {
                *a = combine_opt(*a, b, |x, y| match self.kind {
                    AggKind::LongMin => x.min(y),
                    AggKind::LongMax => x.max(y),
                    _ => x.wrapping_add(y),
                })
            }
            (V::Double(a), V::Double(b)) => {
                *a = combine_opt(*a, b, |x, y| match self.kind {
                    AggKind::DoubleMin => x.min(y),
                    AggKind::DoubleMax => x.max(y),
                    _ => x + y,
                })
            }
            (V::TimedLong(a), V::TimedLong(b)) => combine_timed(a, b, first),
            (V::TimedDouble(a), V::TimedDouble(b)) => combine_timed(a, b, first),
            (V::TimedString(a), V::TimedString(b)) => combine_timed(a, b, first),
            (V::Sketch(a), V::Sketch(b)) => match (a.as_mut(), b) {
                (_, None) => {}
                (None, Some(b)) => *a = Some(b),
                (Some(x), Some(y)) => x.merge(&y),
            },
            (a, b) => unreachable!("aggregator {} combined {a:?} with {b:?}", self.name),
        }
    }

    /// The finished value as Druid's JSON prints it.
    pub fn finalize(&self, value: &AggValue) -> serde_json::Value {
        match value {
            AggValue::Long(v) => v.map(Into::into).unwrap_or(serde_json::Value::Null),
            AggValue::Double(v) => v.map(double_json).unwrap_or(serde_json::Value::Null),
            AggValue::TimedLong(v) => v
                .as_ref()
                .and_then(|(_, x)| x.map(Into::into))
                .unwrap_or(serde_json::Value::Null),
            AggValue::TimedDouble(v) => v
                .as_ref()
                .and_then(|(_, x)| x.map(double_json))
                .unwrap_or(serde_json::Value::Null),
            AggValue::TimedString(v) => v
                .as_ref()
                .and_then(|(_, x)| x.clone().map(serde_json::Value::String))
                .unwrap_or(serde_json::Value::Null),
            AggValue::Sketch(s) => {
                let (round, finalize, target) = match self.kind {
                    AggKind::Distinct {
                        round,
                        finalize,
                        target,
                        ..
                    }
                    | AggKind::SketchMerge {
                        round,
                        finalize,
                        target,
                        ..
                    } => (round, finalize, target),
                    _ => (false, true, HllType::Hll4),
                };
                let estimate = s.as_ref().map_or(0.0, |s| s.estimate());
                if !finalize {
                    // Druid prints an unfinalized sketch as its base64 bytes.
                    let bytes = s
                        .as_ref()
                        .map(|s| s.to_bytes_as(target))
                        .unwrap_or_default();
                    return serde_json::Value::String(base64(&bytes));
                }
                if round {
                    (estimate.round() as i64).into()
                } else {
                    double_json(estimate)
                }
            }
        }
    }

    /// The finished value as a number (for post-aggregators, having and ordering).
    pub fn numeric(&self, value: &AggValue) -> Option<f64> {
        match self.finalize(value) {
            serde_json::Value::Number(n) => n.as_f64(),
            _ => None,
        }
    }
}

/// Druid's `tgtHllType` (HLL_4 by default).
fn hll_type(name: &str, t: Option<&str>) -> Result<HllType> {
    match t.map(str::to_ascii_uppercase).as_deref() {
        None | Some("HLL_4") => Ok(HllType::Hll4),
        Some("HLL_6") => Ok(HllType::Hll6),
        Some("HLL_8") => Ok(HllType::Hll8),
        Some(other) => Err(QueryError::bad(format!(
            "aggregator '{name}': tgtHllType '{other}' (HLL_4, HLL_6 or HLL_8)"
        ))),
    }
}

fn check_lg_k(name: &str, lg_k: Option<u8>) -> Result<u8> {
    match lg_k {
        None => Ok(DEFAULT_LG_K),
        Some(k) if (4..=21).contains(&k) => Ok(k),
        Some(k) => Err(QueryError::bad(format!(
            "aggregator '{name}': lgK {k} is out of range 4..21"
        ))),
    }
}

fn combine_opt<T: Copy>(a: Option<T>, b: Option<T>, f: impl Fn(T, T) -> T) -> Option<T> {
    match (a, b) {
        (Some(x), Some(y)) => Some(f(x, y)),
        (x, None) => x,
        (None, y) => y,
    }
}

fn combine_timed<T>(a: &mut Option<(i64, T)>, b: Option<(i64, T)>, first: bool) {
    if let Some((tb, vb)) = b {
        let replace = match a {
            None => true,
            Some((ta, _)) => {
                if first {
                    tb < *ta
                } else {
                    tb > *ta
                }
            }
        };
        if replace {
            *a = Some((tb, vb));
        }
    }
}

/// Standard base64 with padding (for unfinalized sketches).
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (b[0] as u32) << 16 | (b[1] as u32) << 8 | b[2] as u32;
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One group's mergeable aggregate value (serializable: partial results carry them).
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub enum AggValue {
    Long(Option<i64>),
    Double(Option<f64>),
    /// first/last: the time of the chosen row and its value.
    TimedLong(Option<(i64, Option<i64>)>),
    TimedDouble(Option<(i64, Option<f64>)>),
    TimedString(Option<(i64, Option<String>)>),
    Sketch(#[serde(with = "crate::partial::sketch_bytes")] Option<Box<HllSketch>>),
}

/// Where an accumulator reads its input in one segment.
enum Input<'a> {
    None,
    Long(LongCursor<'a>, Option<&'a RoaringBitmap>),
    Double(
        grove_segment::format::DoubleColumn<'a>,
        Option<&'a RoaringBitmap>,
    ),
    /// Distinct counting of one single-value string column: ids collected per group.
    Ids(IdCursor<'a>),
    /// Distinct counting (or string first/last) through generic values.
    Values(Vec<crate::column::ValueCursor<'a>>),
    Sketch(grove_segment::format::SketchColumn<'a>),
    Missing,
}

/// Column-wise state of one aggregator over the groups of one segment bucket.
enum State {
    Long(Vec<i64>, Vec<bool>),
    Double(Vec<f64>, Vec<bool>),
    TimedLong(Vec<Option<(i64, Option<i64>)>>),
    TimedDouble(Vec<Option<(i64, Option<f64>)>>),
    TimedString(Vec<Option<(i64, Option<String>)>>),
    Ids(IdSets),
    Sketch(Vec<Option<Box<HllSketch>>>),
}

/// The dictionary ids each group has seen (distinct counting of one string column): a bitset per
/// group while that stays small (one bit per dictionary entry per group), roaring bitmaps past it.
enum IdSets {
    Bits { words: usize, bits: Vec<u64> },
    Roaring(Vec<RoaringBitmap>),
}

/// A group's distinct count uses the column's cached value coupons once it holds more than one
/// in this many dictionary ids (computing them decodes the whole dictionary once per segment);
/// fewer ids decode and hash their own strings.
const COUPONS_WHEN_ONE_IN: usize = 64;

/// Most bitset words (8 bytes each) before [`IdSets`] switches to roaring bitmaps.
const ID_BITSET_WORDS_MAX: usize = 1 << 21;

impl IdSets {
    fn new(dictionary_len: usize) -> IdSets {
        IdSets::Bits {
            words: dictionary_len.div_ceil(64).max(1),
            bits: Vec::new(),
        }
    }

    fn reserve(&mut self, groups: usize) {
        match self {
            IdSets::Bits { words, bits } if groups * *words <= ID_BITSET_WORDS_MAX => {
                bits.resize(groups * *words, 0);
            }
            IdSets::Bits { words, bits } => {
                let words = *words;
                let mut sets: Vec<RoaringBitmap> = bits
                    .chunks(words)
                    .map(|group| {
                        RoaringBitmap::from_sorted_iter(set_bits(group))
                            .expect("bits come out in order")
                    })
                    .collect();
                sets.resize_with(groups, RoaringBitmap::new);
                *self = IdSets::Roaring(sets);
            }
            IdSets::Roaring(v) => v.resize_with(groups, RoaringBitmap::new),
        }
    }

    #[inline]
    fn insert(&mut self, g: usize, id: u32) {
        match self {
            IdSets::Bits { words, bits } => {
                bits[g * *words + (id / 64) as usize] |= 1 << (id % 64);
            }
            IdSets::Roaring(v) => {
                v[g].insert(id);
            }
        }
    }

    /// Adds every id of `ids` to group `g`.
    fn insert_all(&mut self, g: usize, ids: &[u32]) {
        match self {
            IdSets::Bits { words, bits } => {
                let group = &mut bits[g * *words..(g + 1) * *words];
                for &id in ids {
                    group[(id / 64) as usize] |= 1 << (id % 64);
                }
            }
            IdSets::Roaring(v) => v[g].extend(ids.iter().copied()),
        }
    }

    /// How many ids group `g` holds.
    fn count(&self, g: usize) -> u64 {
        match self {
            IdSets::Bits { words, bits } => bits[g * *words..(g + 1) * *words]
                .iter()
                .map(|w| u64::from(w.count_ones()))
                .sum(),
            IdSets::Roaring(v) => v[g].len(),
        }
    }

    /// Calls `f` with group `g`'s ids in ascending order, emptying the group.
    fn drain(&mut self, g: usize, mut f: impl FnMut(u32) -> Result<()>) -> Result<()> {
        match self {
            IdSets::Bits { words, bits } => {
                let group = &mut bits[g * *words..(g + 1) * *words];
                for id in set_bits(group) {
                    f(id)?;
                }
                group.fill(0);
            }
            IdSets::Roaring(v) => {
                for id in std::mem::take(&mut v[g]) {
                    f(id)?;
                }
            }
        }
        Ok(())
    }
}

/// The positions of the set bits of `words`, ascending.
fn set_bits(words: &[u64]) -> impl Iterator<Item = u32> + '_ {
    words.iter().enumerate().flat_map(|(w, &word)| {
        let mut rest = word;
        std::iter::from_fn(move || {
            (rest != 0).then(|| {
                let bit = rest.trailing_zeros();
                rest &= rest - 1;
                w as u32 * 64 + bit
            })
        })
    })
}

/// One aggregator's per-segment accumulator.
pub struct Acc<'a> {
    pub def: &'a AggDef,
    input: Input<'a>,
    /// Rows passing a filtered aggregator's filter.
    filter: Option<RoaringBitmap>,
    state: State,
    /// For `Ids` inputs: the column, to turn ids into strings at the end.
    ids_column: Option<grove_segment::format::StringColumn<'a>>,
    scratch_long: Vec<i64>,
    scratch_valid: Vec<bool>,
    /// Rows whose input is null (first/last only).
    scratch_null: Vec<bool>,
    scratch_double: Vec<f64>,
    value: grove_segment::row::Value,
}

impl<'a> Acc<'a> {
    /// Binds `def` to `segment`'s columns. `filter_rows` computes a filtered aggregator's rows.
    pub fn new(
        def: &'a AggDef,
        segment: &'a grove_segment::format::Segment,
        filter_rows: &dyn Fn(&Filter) -> Result<RoaringBitmap>,
    ) -> Result<Acc<'a>> {
        let column = match &def.field {
            Some(f) => Column::of(segment, f)?,
            None => Column::Missing,
        };
        let numeric_input = |column: Column<'a>| -> Result<Input<'a>> {
            Ok(match column {
                Column::Long { values, nulls } => Input::Long(LongCursor::new(values), nulls),
                Column::Double { values, nulls } => Input::Double(values, nulls),
                Column::Missing => Input::Missing,
                Column::String(_) | Column::Sketch(_) => {
                    return Err(QueryError::bad(format!(
                        "aggregator '{}' reads '{}' as a number, but it is a {} column",
                        def.name,
                        def.field.as_deref().unwrap_or(""),
                        if matches!(column, Column::String(_)) {
                            "string"
                        } else {
                            "sketch"
                        }
                    )));
                }
            })
        };
        let mut ids_column = None;
        let (input, state) = match &def.kind {
            AggKind::Count => (Input::None, State::Long(Vec::new(), Vec::new())),
            AggKind::LongSum | AggKind::LongMin | AggKind::LongMax => {
                (numeric_input(column)?, State::Long(Vec::new(), Vec::new()))
            }
            AggKind::DoubleSum | AggKind::DoubleMin | AggKind::DoubleMax => (
                numeric_input(column)?,
                State::Double(Vec::new(), Vec::new()),
            ),
            AggKind::LongFirst | AggKind::LongLast => {
                (numeric_input(column)?, State::TimedLong(Vec::new()))
            }
            AggKind::DoubleFirst | AggKind::DoubleLast => {
                (numeric_input(column)?, State::TimedDouble(Vec::new()))
            }
            AggKind::StringFirst { .. } | AggKind::StringLast { .. } => (
                Input::Values(vec![column.values()]),
                State::TimedString(Vec::new()),
            ),
            AggKind::Distinct { fields, .. } => {
                let columns = fields
                    .iter()
                    .map(|f| Column::of(segment, f))
                    .collect::<Result<Vec<_>>>()?;
                match columns.as_slice() {
                    [Column::String(s)] if !s.is_multi_value() => {
                        ids_column = Some(*s);
                        (
                            Input::Ids(IdCursor::new(*s)),
                            State::Ids(IdSets::new(s.dictionary_len())),
                        )
                    }
                    _ => {
                        if columns.iter().any(|c| matches!(c, Column::Sketch(_))) {
                            return Err(QueryError::bad(format!(
                                "aggregator '{}' counts distinct values of a sketch column; \
                                 use HLLSketchMerge or hyperUnique to merge stored sketches",
                                def.name
                            )));
                        }
                        (
                            Input::Values(columns.into_iter().map(Column::values).collect()),
                            State::Sketch(Vec::new()),
                        )
                    }
                }
            }
            AggKind::SketchMerge { .. } => match column {
                Column::Sketch(s) => (Input::Sketch(s), State::Sketch(Vec::new())),
                Column::Missing => (Input::Missing, State::Sketch(Vec::new())),
                _ => {
                    return Err(QueryError::bad(format!(
                        "aggregator '{}' merges sketches, but '{}' is not a sketch column \
                         (use HLLSketchBuild or cardinality to count distinct values)",
                        def.name,
                        def.field.as_deref().unwrap_or("")
                    )));
                }
            },
        };
        let filter = def.filter.as_ref().map(filter_rows).transpose()?;
        Ok(Acc {
            def,
            input,
            filter,
            state,
            ids_column,
            scratch_long: Vec::new(),
            scratch_valid: Vec::new(),
            scratch_null: Vec::new(),
            scratch_double: Vec::new(),
            value: grove_segment::row::Value::Null,
        })
    }

    /// Makes room for `groups` groups.
    pub fn reserve(&mut self, groups: usize) {
        let def = self.def;
        match &mut self.state {
            State::Long(v, seen) => {
                let init = match def.kind {
                    AggKind::LongMin => i64::MAX,
                    AggKind::LongMax => i64::MIN,
                    _ => 0,
                };
                v.resize(groups, init);
                seen.resize(groups, false);
            }
            State::Double(v, seen) => {
                let init = match def.kind {
                    AggKind::DoubleMin => f64::INFINITY,
                    AggKind::DoubleMax => f64::NEG_INFINITY,
                    _ => 0.0,
                };
                v.resize(groups, init);
                seen.resize(groups, false);
            }
            State::TimedLong(v) => v.resize(groups, None),
            State::TimedDouble(v) => v.resize(groups, None),
            State::TimedString(v) => v.resize(groups, None),
            State::Ids(v) => v.reserve(groups),
            State::Sketch(v) => v.resize_with(groups, || None),
        }
    }

    /// Folds rows `rows` (ascending) into groups `groups` (same length). `times` holds the rows'
    /// `__time` when the aggregator needs it (first/last).
    pub fn add(&mut self, rows: &[u32], groups: &[u32], times: &[i64]) -> Result<()> {
        let n = rows.len();
        self.scratch_valid.clear();
        self.scratch_valid.resize(n, true);
        if let Some(f) = &self.filter {
            for (i, r) in rows.iter().enumerate() {
                self.scratch_valid[i] = f.contains(*r);
            }
        }
        let first = matches!(
            self.def.kind,
            AggKind::LongFirst | AggKind::DoubleFirst | AggKind::StringFirst { .. }
        );
        // First/last pick a row by time even when its value is null (the result is then null);
        // every other aggregator skips null inputs.
        let timed = matches!(self.state, State::TimedLong(_) | State::TimedDouble(_));
        self.scratch_null.clear();
        self.scratch_null.resize(n, false);
        let valid = &mut self.scratch_valid;
        let null = &mut self.scratch_null;
        let sparse = crate::column::is_sparse(rows);
        match &mut self.input {
            Input::None => {}
            Input::Missing => null.fill(true),
            Input::Long(cursor, nulls) => {
                cursor.set_sparse(sparse);
                self.scratch_long.clear();
                for (i, &r) in rows.iter().enumerate() {
                    if nulls.is_some_and(|n| n.contains(r)) {
                        null[i] = true;
                    }
                    self.scratch_long.push(cursor.get(r));
                }
                if matches!(self.state, State::Double(..) | State::TimedDouble(..)) {
                    self.scratch_double.clear();
                    self.scratch_double
                        .extend(self.scratch_long.iter().map(|&v| v as f64));
                }
            }
            Input::Double(column, nulls) => {
                self.scratch_double.clear();
                if nulls.is_none() && n > 0 && rows.windows(2).all(|w| w[1] == w[0] + 1) {
                    // Consecutive rows: one copy out of the column.
                    self.scratch_double.resize(n, 0.0);
                    column.decode(rows[0] as usize, &mut self.scratch_double);
                } else {
                    for (i, &r) in rows.iter().enumerate() {
                        if nulls.is_some_and(|n| n.contains(r)) {
                            null[i] = true;
                        }
                        self.scratch_double.push(column.get(r as usize));
                    }
                }
                if matches!(self.state, State::Long(..) | State::TimedLong(..)) {
                    self.scratch_long.clear();
                    self.scratch_long
                        .extend(self.scratch_double.iter().map(|&v| v as i64));
                }
            }
            Input::Ids(cursor) => {
                cursor.set_sparse(sparse);
                if let State::Ids(sets) = &mut self.state {
                    for i in 0..n {
                        if valid[i] {
                            sets.insert(groups[i] as usize, cursor.get(rows[i])?);
                        }
                    }
                }
                return Ok(());
            }
            Input::Values(cursors) => {
                return add_values(
                    self.def,
                    &mut self.state,
                    cursors,
                    &mut self.value,
                    rows,
                    groups,
                    times,
                    valid,
                    first,
                );
            }
            Input::Sketch(column) => {
                if let State::Sketch(sketches) = &mut self.state {
                    let lg_k = match self.def.kind {
                        AggKind::SketchMerge { lg_k, .. } => lg_k,
                        _ => DEFAULT_LG_K,
                    };
                    for i in 0..n {
                        if !valid[i] {
                            continue;
                        }
                        let bytes = column.get(rows[i] as usize);
                        if bytes.is_empty() {
                            continue;
                        }
                        let sketch = HllSketch::from_bytes(bytes)?;
                        let slot = &mut sketches[groups[i] as usize];
                        match slot {
                            None => {
                                let mut s = HllSketch::new(lg_k);
                                s.merge(&sketch);
                                *slot = Some(Box::new(s));
                            }
                            Some(s) => s.merge(&sketch),
                        }
                    }
                }
                return Ok(());
            }
        }
        if !timed {
            for (v, n) in self.scratch_valid.iter_mut().zip(&self.scratch_null) {
                *v &= !*n;
            }
        }
        let valid = &self.scratch_valid;
        let null = &self.scratch_null;
        let ok = |i: usize, _: u32| valid[i];
        match &mut self.state {
            State::Long(v, seen) => {
                let vals = &self.scratch_long;
                match self.def.kind {
                    AggKind::Count => {
                        for i in 0..n {
                            let g = groups[i] as usize;
                            v[g] += valid[i] as i64;
                            seen[g] = true;
                        }
                    }
                    AggKind::LongSum => fold_groups(v, seen, vals, groups, ok, i64::wrapping_add),
                    AggKind::LongMin => fold_groups(v, seen, vals, groups, ok, i64::min),
                    _ => fold_groups(v, seen, vals, groups, ok, i64::max),
                }
            }
            State::Double(v, seen) => {
                let vals = &self.scratch_double;
                match self.def.kind {
                    AggKind::DoubleMin => fold_groups(v, seen, vals, groups, ok, f64::min),
                    AggKind::DoubleMax => fold_groups(v, seen, vals, groups, ok, f64::max),
                    _ => fold_groups(v, seen, vals, groups, ok, |a, b| a + b),
                }
            }
            State::TimedLong(v) => {
                for i in 0..n {
                    if valid[i] {
                        let value = (!null[i]).then_some(self.scratch_long[i]);
                        combine_timed(&mut v[groups[i] as usize], Some((times[i], value)), first);
                    }
                }
            }
            State::TimedDouble(v) => {
                for i in 0..n {
                    if valid[i] {
                        let value = (!null[i]).then_some(self.scratch_double[i]);
                        combine_timed(&mut v[groups[i] as usize], Some((times[i], value)), first);
                    }
                }
            }
            State::TimedString(_) | State::Ids(_) | State::Sketch(_) => {}
        }
        Ok(())
    }

    /// Whether [`Acc::add_range`] folds contiguous ranges for this aggregator (it returns
    /// `false`, adding nothing, when it does not).
    pub fn folds_ranges(&self) -> bool {
        self.filter.is_none()
            && match (&self.state, &self.input) {
                (State::Long(..), Input::None) => self.def.kind == AggKind::Count,
                (State::Long(..), Input::Long(_, None))
                | (State::Double(..), Input::Double(_, None))
                | (State::Ids(_), Input::Ids(_)) => true,
                _ => false,
            }
    }

    /// Folds the consecutive rows `start..start + groups.len()`, row `start + i` into group
    /// `groups[i]` ([`SKIP_ROW`]: none), reading values block-wise with no per-row lookups. Only
    /// for aggregators that fold ranges ([`Acc::folds_ranges`]); an error otherwise.
    pub fn add_consecutive(&mut self, start: u32, groups: &[u32]) -> Result<()> {
        if !self.folds_ranges() {
            return Err(QueryError::internal(format!(
                "aggregator '{}' cannot fold consecutive rows",
                self.def.name
            )));
        }
        let keep = |_: usize, g: u32| g != SKIP_ROW;
        let n = groups.len();
        match (&mut self.state, &mut self.input) {
            (State::Long(v, seen), Input::None) => {
                for &g in groups.iter().filter(|&&g| g != SKIP_ROW) {
                    v[g as usize] += 1;
                    seen[g as usize] = true;
                }
            }
            (State::Long(v, seen), Input::Long(cursor, _)) => {
                self.scratch_long.clear();
                cursor.extend_range(start..start + n as u32, &mut self.scratch_long);
                let vals = &self.scratch_long;
                match self.def.kind {
                    AggKind::LongMin => fold_groups(v, seen, vals, groups, keep, i64::min),
                    AggKind::LongMax => fold_groups(v, seen, vals, groups, keep, i64::max),
                    _ => fold_groups(v, seen, vals, groups, keep, i64::wrapping_add),
                }
            }
            (State::Double(v, seen), Input::Double(column, _)) => {
                self.scratch_double.clear();
                self.scratch_double.resize(n, 0.0);
                column.decode(start as usize, &mut self.scratch_double);
                let vals = &self.scratch_double;
                match self.def.kind {
                    AggKind::DoubleMin => fold_groups(v, seen, vals, groups, keep, f64::min),
                    AggKind::DoubleMax => fold_groups(v, seen, vals, groups, keep, f64::max),
                    _ => fold_groups(v, seen, vals, groups, keep, |a, b| a + b),
                }
            }
            (State::Ids(sets), Input::Ids(cursor)) => {
                cursor.set_sparse(false);
                for (i, &g) in groups.iter().enumerate() {
                    if g != SKIP_ROW {
                        sets.insert(g as usize, cursor.get(start + i as u32)?);
                    }
                }
            }
            _ => unreachable!("folds_ranges admits only the shapes above"),
        }
        Ok(())
    }

    /// Folds the contiguous rows `rows` into group `g` in one pass when this aggregator can
    /// (count, and sums/mins/maxes over a column without nulls, unfiltered); `false` when the
    /// rows must go through [`Acc::add`].
    pub fn add_range(&mut self, rows: std::ops::Range<u32>, g: u32) -> Result<bool> {
        if self.filter.is_some() || rows.is_empty() {
            return Ok(self.filter.is_none());
        }
        let g = g as usize;
        let kind = &self.def.kind;
        match (&mut self.state, &mut self.input) {
            (State::Long(v, seen), Input::None) if *kind == AggKind::Count => {
                v[g] += rows.len() as i64;
                seen[g] = true;
            }
            (State::Long(v, seen), Input::Long(cursor, None)) => {
                let (init, op): (i64, fn(i64, i64) -> i64) = match kind {
                    AggKind::LongMin => (i64::MAX, i64::min),
                    AggKind::LongMax => (i64::MIN, i64::max),
                    _ => (0, i64::wrapping_add),
                };
                let folded = cursor.fold_range(rows, init, op);
                v[g] = if seen[g] { op(v[g], folded) } else { folded };
                seen[g] = true;
            }
            (State::Double(v, seen), Input::Double(column, None)) => {
                let op: fn(f64, f64) -> f64 = match kind {
                    AggKind::DoubleMin => f64::min,
                    AggKind::DoubleMax => f64::max,
                    _ => |a, b| a + b,
                };
                // Chunk by chunk through a stack buffer: no allocation, no zero fill.
                let mut chunk = [0.0f64; 256];
                let mut folded: Option<f64> = None;
                let (mut start, end) = (rows.start as usize, rows.end as usize);
                while start < end {
                    let n = (end - start).min(chunk.len());
                    let values = &mut chunk[..n];
                    column.decode(start, values);
                    let part = match kind {
                        AggKind::DoubleMin => values.iter().copied().fold(f64::INFINITY, f64::min),
                        AggKind::DoubleMax => {
                            values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                        }
                        _ => pairwise_sum(values),
                    };
                    folded = Some(folded.map_or(part, |f| op(f, part)));
                    start += n;
                }
                let folded = folded.expect("rows are not empty");
                v[g] = if seen[g] { op(v[g], folded) } else { folded };
                seen[g] = true;
            }
            (State::Ids(sets), Input::Ids(_)) => {
                // Distinct ids of a contiguous range: decode the ids block by block.
                let column = self.ids_column.expect("ids input has its column");
                let mut buf = vec![0u32; BLOCK_ROWS];
                let mut start = rows.start as usize;
                let end = rows.end as usize;
                while start < end {
                    let n = (end - start).min(BLOCK_ROWS);
                    column.decode_ids(start, &mut buf[..n])?;
                    sets.insert_all(g, &buf[..n]);
                    start += n;
                }
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Group `g`'s value as a number without taking it: `None` when this aggregator's value is
    /// not a plain number (sketches, first/last), `Some(None)` for null.
    pub fn peek(&self, g: usize) -> Option<Option<f64>> {
        match &self.state {
            State::Long(v, seen) => {
                Some((seen[g] || self.def.kind == AggKind::Count).then_some(v[g] as f64))
            }
            State::Double(v, seen) => Some(seen[g].then_some(v[g])),
            _ => None,
        }
    }

    /// The values of groups `0..groups` as a column, taken out of the state.
    pub fn take_column(&mut self, groups: usize) -> Result<crate::partial::AggColumn> {
        use crate::partial::AggColumn;
        self.reserve(groups);
        let count = self.def.kind == AggKind::Count;
        Ok(match &mut self.state {
            State::Long(v, seen) => AggColumn::Long(
                v.iter()
                    .zip(seen.iter())
                    .map(|(&x, &s)| (s || count).then_some(x))
                    .collect(),
            ),
            State::Double(v, seen) => AggColumn::Double(
                v.iter()
                    .zip(seen.iter())
                    .map(|(&x, &s)| s.then_some(x))
                    .collect(),
            ),
            _ => AggColumn::Values((0..groups).map(|g| self.take(g)).collect::<Result<_>>()?),
        })
    }

    /// The value of group `g`, taking it out of the state.
    pub fn take(&mut self, g: usize) -> Result<AggValue> {
        Ok(match &mut self.state {
            State::Long(v, seen) => AggValue::Long(if seen[g] || self.def.kind == AggKind::Count {
                Some(v[g])
            } else {
                None
            }),
            State::Double(v, seen) => AggValue::Double(seen[g].then_some(v[g])),
            State::TimedLong(v) => AggValue::TimedLong(v[g].take()),
            State::TimedDouble(v) => AggValue::TimedDouble(v[g].take()),
            State::TimedString(v) => AggValue::TimedString(v[g].take()),
            State::Sketch(v) => AggValue::Sketch(v[g].take()),
            State::Ids(v) => {
                let (lg_k, utf16le) = match self.def.kind {
                    AggKind::Distinct { lg_k, utf16le, .. } => (lg_k, utf16le),
                    _ => (DEFAULT_LG_K, false),
                };
                let mut sketch = HllSketch::new(lg_k);
                let column = self.ids_column.expect("ids input has its column");
                // Null is not a value: distinct counts skip it, as in Druid (it has no coupon).
                // The cached coupons hash UTF-8; UTF-16LE strings are hashed here.
                if !utf16le && v.count(g) as usize * COUPONS_WHEN_ONE_IN > column.dictionary_len() {
                    // A good part of the dictionary: its coupons, hashed once per segment.
                    let coupons = column.value_coupons()?;
                    v.drain(g, |id| {
                        if let Some(coupon) = coupons.get(id) {
                            sketch.update_coupon(coupon);
                        }
                        Ok(())
                    })?;
                } else {
                    let mut buf = String::new();
                    v.drain(g, |id| {
                        if column.value_into(id, &mut buf)? {
                            sketch.update_str_as(&buf, utf16le);
                        }
                        Ok(())
                    })?;
                }
                AggValue::Sketch(Some(Box::new(sketch)))
            }
        })
    }
}

#[allow(clippy::too_many_arguments)]
fn add_values(
    def: &AggDef,
    state: &mut State,
    cursors: &mut [crate::column::ValueCursor<'_>],
    value: &mut grove_segment::row::Value,
    rows: &[u32],
    groups: &[u32],
    times: &[i64],
    valid: &[bool],
    first: bool,
) -> Result<()> {
    use grove_segment::row::Value;
    let (lg_k, by_row, utf16le) = match &def.kind {
        AggKind::Distinct {
            lg_k,
            by_row,
            utf16le,
            ..
        } => (*lg_k, *by_row, *utf16le),
        _ => (DEFAULT_LG_K, false, false),
    };
    let mut tuple = String::new();
    for i in 0..rows.len() {
        if !valid[i] {
            continue;
        }
        let g = groups[i] as usize;
        match state {
            State::TimedString(v) => {
                cursors[0].read(rows[i], value)?;
                let max_bytes = match def.kind {
                    AggKind::StringFirst { max_bytes } | AggKind::StringLast { max_bytes } => {
                        max_bytes
                    }
                    _ => usize::MAX,
                };
                let text = text_of(value).map(|t| truncate_bytes(&t, max_bytes).to_string());
                combine_timed(&mut v[g], Some((times[i], text)), first);
            }
            State::Sketch(v) => {
                let sketch = v[g].get_or_insert_with(|| Box::new(HllSketch::new(lg_k)));
                tuple.clear();
                for (k, cursor) in cursors.iter_mut().enumerate() {
                    cursor.read(rows[i], value)?;
                    if by_row {
                        if k > 0 {
                            tuple.push('\u{1}');
                        }
                        if let Some(t) = text_of(value) {
                            tuple.push_str(&t);
                        }
                        continue;
                    }
                    match value {
                        Value::Null => {}
                        Value::String(s) => sketch.update_str_as(s, utf16le),
                        Value::Strings(l) => {
                            l.iter().for_each(|s| sketch.update_str_as(s, utf16le))
                        }
                        Value::Long(n) => sketch.update_i64(*n),
                        Value::Double(d) => sketch.update_f64(*d),
                    }
                }
                if by_row && !tuple.is_empty() {
                    sketch.update_str_as(&tuple, utf16le);
                }
            }
            _ => unreachable!("value inputs feed string first/last and distinct counts"),
        }
    }
    Ok(())
}

/// The text of a value (a multi-value row joined as Druid prints it in first/last: its first
/// value).
fn text_of(value: &grove_segment::row::Value) -> Option<String> {
    use grove_segment::row::Value;
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        Value::Strings(l) => l.first().cloned(),
        Value::Long(n) => Some(n.to_string()),
        Value::Double(d) => Some(grove_segment::row::format_double(*d)),
    }
}

fn truncate_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Sums with eight independent accumulators (vectorizes; rounding differs from a serial sum only
/// in the last bits, as any parallel sum's does).
fn pairwise_sum(values: &[f64]) -> f64 {
    let mut lanes = [0.0f64; 8];
    let chunks = values.chunks_exact(8);
    let tail = chunks.remainder();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum::<f64>() + tail.iter().sum::<f64>()
}

/// Orders two optional numbers with nulls first.
pub fn compare_numbers(a: Option<f64>, b: Option<f64>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(x), Some(y)) => x.total_cmp(&y),
    }
}

/// A row that belongs to no group in [`Acc::add_consecutive`].
pub const SKIP_ROW: u32 = u32::MAX;

/// Folds value `i` into group `groups[i]` with `op` where `keep(i, groups[i])` (one monomorphic
/// loop per operator: no call through a function pointer per row).
#[inline]
fn fold_groups<T: Copy>(
    v: &mut [T],
    seen: &mut [bool],
    vals: &[T],
    groups: &[u32],
    keep: impl Fn(usize, u32) -> bool,
    op: impl Fn(T, T) -> T,
) {
    for (i, (&g, &value)) in groups.iter().zip(vals).enumerate() {
        if keep(i, g) {
            let g = g as usize;
            v[g] = op(v[g], value);
            seen[g] = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_sets_keep_their_ids_when_they_switch_to_roaring() {
        fn take(sets: &mut IdSets, g: usize) -> Vec<u32> {
            let mut ids = Vec::new();
            sets.drain(g, |id| {
                ids.push(id);
                Ok(())
            })
            .unwrap();
            ids
        }
        let mut sets = IdSets::new(1_000_000);
        sets.reserve(2);
        sets.insert(0, 5);
        sets.insert_all(0, &[999_999, 5]);
        sets.insert(1, 64);
        assert!(matches!(sets, IdSets::Bits { .. }));
        assert_eq!(sets.count(0), 2);
        // 1,000 groups of 15,625 words each is past the bitset budget.
        sets.reserve(1_000);
        assert!(matches!(sets, IdSets::Roaring(_)));
        sets.insert_all(999, &[7, 7]);
        assert_eq!(sets.count(999), 1);
        assert_eq!(take(&mut sets, 0), vec![5, 999_999]);
        assert_eq!(take(&mut sets, 1), vec![64]);
        assert_eq!(take(&mut sets, 999), vec![7]);
        assert!(take(&mut sets, 0).is_empty());
        let mut small = IdSets::new(100);
        small.reserve(1);
        small.insert(0, 63);
        small.insert(0, 0);
        assert_eq!(take(&mut small, 0), vec![0, 63]);
        assert_eq!(small.count(0), 0);
        assert!(take(&mut small, 0).is_empty());
    }
}
