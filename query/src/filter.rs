//! Filters over a segment: a [`Filter`] evaluated into the bitmap of matching rows within a row
//! range.
//!
//! Leaves are compiled with `grove-segment`'s [`RowMatcher`] (so ingestion-time and query-time
//! filters share one definition of what matches), but evaluated per *dictionary value*, not per
//! row, on string columns: each id is classified true / false / unknown once, then rows are found
//! through the per-value bitmaps (few ids) or one pass over the id column (many ids). Exact-match
//! leaves (`selector`, `equals` on strings, `in`) look their values up in the dictionary instead
//! of classifying every entry, so a 10,000-value `in` costs 10,000 dictionary searches, not a
//! pass over a large dictionary with a 10,000-way compare. Numeric and `__time` leaves scan the
//! range.
//!
//! Three-valued logic as in Druid's SQL-compatible mode: each node yields its *true* rows and,
//! only when a `not` above needs them, its *unknown* rows (comparisons against null); `not`
//! keeps unknown rows out of its result.

use std::ops::Range;
use std::sync::OnceLock;

use roaring::{MultiOps, RoaringBitmap};

use grove_segment::filter::{Filter, RowMatcher};
use grove_segment::format::{Segment, StringColumn};
use grove_segment::row::{InputRow, RowLayout, Value};

use crate::column::{Column, IdCursor, TIME_COLUMN};
use crate::error::{QueryError, Result};

/// Above this many matching ids (and more than 1/16 of the dictionary), a string leaf scans the
/// id column instead of unioning per-value bitmaps.
const BITMAP_UNION_MAX_IDS: usize = 64;

/// A filter prepared once per query: leaves compiled, exact-match values sorted and deduplicated,
/// so running it on many segments repeats no per-query work.
#[derive(Clone, Debug)]
pub enum PreparedFilter {
    Const(bool),
    And(Vec<PreparedFilter>),
    Or(Vec<PreparedFilter>),
    Not(Box<PreparedFilter>),
    Leaf(Box<Leaf>),
}

#[derive(Clone, Debug)]
pub struct Leaf {
    field: String,
    filter: Filter,
    /// Compiled on first use for exact leaves (string columns never need it), up front otherwise.
    matcher: OnceLock<RowMatcher>,
    /// For leaves that match exact strings only (`selector`, `in`, `null`): the strings, sorted
    /// and unique, and the verdict on null.
    exact: Option<(Vec<String>, Option<bool>)>,
}

impl Leaf {
    fn matcher(&self) -> Result<&RowMatcher> {
        if let Some(m) = self.matcher.get() {
            return Ok(m);
        }
        let layout = RowLayout {
            fields: if self.field == TIME_COLUMN {
                Vec::new()
            } else {
                vec![self.field.clone()]
            },
            metric_slots: Vec::new(),
        };
        let compiled = self
            .filter
            .compile(&layout)
            .map_err(|e| QueryError::bad(e.to_string()))?;
        Ok(self.matcher.get_or_init(|| compiled))
    }
}

impl PreparedFilter {
    pub fn new(filter: &Filter) -> Result<PreparedFilter> {
        Ok(match filter {
            Filter::True => PreparedFilter::Const(true),
            Filter::False => PreparedFilter::Const(false),
            Filter::And { fields } => PreparedFilter::And(
                fields
                    .iter()
                    .map(PreparedFilter::new)
                    .collect::<Result<_>>()?,
            ),
            Filter::Or { fields } => PreparedFilter::Or(
                fields
                    .iter()
                    .map(PreparedFilter::new)
                    .collect::<Result<_>>()?,
            ),
            Filter::Not { field } => PreparedFilter::Not(Box::new(PreparedFilter::new(field)?)),
            Filter::ColumnComparison { .. } | Filter::Expression { .. } => {
                return Err(QueryError::internal(
                    "columnComparison and expression filters reach segments only as virtual \
                     columns (virtual_columns::lower)",
                ));
            }
            Filter::Javascript(_) | Filter::Spatial(_) => {
                return Err(QueryError::unsupported(
                    "javascript and spatial filters are not supported by Grove",
                ));
            }
            leaf if leaf.extraction_fn().is_some() => {
                return Err(QueryError::internal(format!(
                    "extractionFn on '{}' reaches segments only as a virtual column",
                    leaf.leaf_column().unwrap_or_default()
                )));
            }
            leaf => {
                let exact = exact_values(leaf).map(|(mut v, on_null)| {
                    v.sort_unstable();
                    v.dedup();
                    (v.into_iter().map(str::to_string).collect(), on_null)
                });
                let prepared = Leaf {
                    field: leaf.leaf_column().expect("a leaf").to_string(),
                    filter: leaf.clone(),
                    matcher: OnceLock::new(),
                    exact,
                };
                if prepared.exact.is_none() {
                    // Surface bad patterns and numbers now, not on the first segment.
                    prepared.matcher()?;
                }
                PreparedFilter::Leaf(Box::new(prepared))
            }
        })
    }

    /// The rows of `segment` within `rows` that pass this filter.
    pub fn rows(&self, segment: &Segment, rows: Range<u32>) -> Result<RoaringBitmap> {
        let mut all = RoaringBitmap::new();
        all.insert_range(rows.clone());
        let ctx = Ctx {
            segment,
            rows,
            all: &all,
        };
        Ok(ctx.eval(self, false)?.0)
    }
}

/// The rows a filter selects, split by the dictionary id of one string dimension: the
/// matching ids (ascending), whose rows are read from the column's bitmap index in place.
pub struct IdRows<'a> {
    column: StringColumn<'a>,
    pub ids: Vec<u32>,
    /// The column leads the segment's sort order: each id's rows are one contiguous run.
    sorted: bool,
}

impl IdRows<'_> {
    /// Calls `f` with the rows of `id` within `rows`, ascending.
    pub fn for_each_row(&self, id: u32, rows: Range<u32>, f: impl FnMut(u32)) -> Result<()> {
        Ok(self.column.for_each_bitmap_row(id, rows, f)?)
    }

    /// Whether each id's rows are one contiguous run ([`IdRows::run`]).
    pub fn in_runs(&self) -> bool {
        self.sorted
    }

    /// The rows of `id` within `rows` as one range, when the column leads the segment's sort
    /// order; `None` otherwise.
    pub fn run(&self, id: u32, rows: &Range<u32>) -> Result<Option<Range<u32>>> {
        if !self.sorted {
            return Ok(None);
        }
        let Some(run) = self.column.sorted_run(id)? else {
            return Ok(None);
        };
        let start = run.start.max(rows.start);
        Ok(Some(start..run.end.min(rows.end).max(start)))
    }
}

impl PreparedFilter {
    /// The column of an exact-match leaf (`selector`, `in`, `null`) when this filter is one.
    pub fn exact_field(&self) -> Option<&str> {
        match self {
            PreparedFilter::Leaf(leaf) if leaf.exact.is_some() => Some(&leaf.field),
            _ => None,
        }
    }

    /// For an exact-match leaf on a single-value string column with bitmap indexes that picks
    /// few ids (see [`PreparedFilter::exact_field`]): its matching ids, whose rows come
    /// straight from the per-value bitmaps: no union, and a grouping on the same column never
    /// reads its ids. `None` when the filter or the column has another shape (use
    /// [`PreparedFilter::rows`]).
    pub fn id_rows<'a>(&self, segment: &'a Segment) -> Result<Option<IdRows<'a>>> {
        let PreparedFilter::Leaf(leaf) = self else {
            return Ok(None);
        };
        let Some((values, on_null)) = &leaf.exact else {
            return Ok(None);
        };
        let Column::String(column) = Column::of(segment, &leaf.field)? else {
            return Ok(None);
        };
        if column.is_multi_value() || !column.has_bitmaps() {
            return Ok(None);
        }
        let ids = exact_ids(column, values, *on_null)?;
        if !few_ids(ids.len(), column.dictionary_len()) {
            return Ok(None);
        }
        // Rows sort by the first dimension when time does not come first.
        let schema = &segment.meta().schema;
        let sorted = !schema.time_sorted()
            && schema
                .dimensions
                .first()
                .is_some_and(|d| d.name == leaf.field);
        Ok(Some(IdRows {
            column,
            ids,
            sorted,
        }))
    }
}

/// The rows of `segment` within `rows` that pass `filter` (prepares it first; prefer
/// [`PreparedFilter`] when running one filter on many segments).
pub fn filter_rows(segment: &Segment, filter: &Filter, rows: Range<u32>) -> Result<RoaringBitmap> {
    PreparedFilter::new(filter)?.rows(segment, rows)
}

struct Ctx<'a> {
    segment: &'a Segment,
    rows: Range<u32>,
    all: &'a RoaringBitmap,
}

/// True rows, and unknown rows when asked for (else empty).
type Outcome = (RoaringBitmap, RoaringBitmap);

impl Ctx<'_> {
    fn eval(&self, filter: &PreparedFilter, want_unknown: bool) -> Result<Outcome> {
        Ok(match filter {
            PreparedFilter::Const(true) => (self.all.clone(), RoaringBitmap::new()),
            PreparedFilter::Const(false) => (RoaringBitmap::new(), RoaringBitmap::new()),
            PreparedFilter::Not(field) => {
                let (t, u) = self.eval(field, true)?;
                let mut out = self.all - &t;
                out -= &u;
                (out, u)
            }
            PreparedFilter::And(fields) => {
                if fields.is_empty() {
                    return Ok((self.all.clone(), RoaringBitmap::new()));
                }
                let mut t = self.all.clone();
                // Rows true-or-unknown in every child; unknown = that minus all-true.
                let mut t_or_u = want_unknown.then(|| self.all.clone());
                for f in fields {
                    let (ft, fu) = self.eval(f, want_unknown)?;
                    if let Some(tu) = t_or_u.as_mut() {
                        *tu &= &(&ft | &fu);
                    }
                    t &= &ft;
                    if t.is_empty() && !want_unknown {
                        break;
                    }
                }
                let u = t_or_u.map(|tu| tu - &t).unwrap_or_default();
                (t, u)
            }
            PreparedFilter::Or(fields) => {
                let mut t = RoaringBitmap::new();
                let mut u = RoaringBitmap::new();
                for f in fields {
                    let (ft, fu) = self.eval(f, want_unknown)?;
                    t |= &ft;
                    u |= &fu;
                }
                u -= &t;
                (t, u)
            }
            PreparedFilter::Leaf(leaf) => self.leaf(leaf, want_unknown)?,
        })
    }

    fn leaf(&self, leaf: &Leaf, want_unknown: bool) -> Result<Outcome> {
        let field = leaf.field.as_str();
        let column = Column::of(self.segment, field)?;
        if let (Some((values, on_null)), Column::String(s)) = (&leaf.exact, column) {
            return self.string_leaf(s, Verdicts::Exact(values), *on_null, want_unknown);
        }
        let mut probe = Probe::new(leaf.matcher()?);
        let on_null = probe.eval_value(Value::Null);
        match column {
            Column::Missing => Ok(match on_null {
                Some(true) => (self.all.clone(), RoaringBitmap::new()),
                Some(false) => (RoaringBitmap::new(), RoaringBitmap::new()),
                None => (RoaringBitmap::new(), self.all.clone()),
            }),
            Column::Sketch(_) => Err(QueryError::bad(format!(
                "cannot filter on '{field}': it is a sketch column"
            ))),
            Column::String(s) => {
                self.string_leaf(s, Verdicts::Probe(&mut probe), on_null, want_unknown)
            }
            Column::Long { values, nulls } => {
                let mut cursor = crate::column::LongCursor::new(values);
                let (mut t, mut u) = (RoaringBitmap::new(), RoaringBitmap::new());
                for row in self.rows.clone() {
                    let verdict = if nulls.is_some_and(|n| n.contains(row)) {
                        on_null
                    } else {
                        probe.eval_value(Value::Long(cursor.get(row)))
                    };
                    push(&mut t, &mut u, row, verdict, want_unknown);
                }
                Ok((t, u))
            }
            Column::Double { values, nulls } => {
                let (mut t, mut u) = (RoaringBitmap::new(), RoaringBitmap::new());
                for row in self.rows.clone() {
                    let verdict = if nulls.is_some_and(|n| n.contains(row)) {
                        on_null
                    } else {
                        probe.eval_value(Value::Double(values.get(row as usize)))
                    };
                    push(&mut t, &mut u, row, verdict, want_unknown);
                }
                Ok((t, u))
            }
        }
    }

    fn string_leaf(
        &self,
        column: StringColumn<'_>,
        verdicts: Verdicts<'_, '_>,
        on_null: Option<bool>,
        want_unknown: bool,
    ) -> Result<Outcome> {
        let dict_len = column.dictionary_len();
        // Classify ids: 0 false, 1 true, 2 unknown.
        let class = match verdicts {
            Verdicts::Exact(values) => exact_classes(column, values, on_null)?,
            Verdicts::Probe(probe) => {
                let mut class = vec![0u8; dict_len];
                column.for_each_value(|id, text| {
                    let verdict = match text {
                        None => on_null,
                        Some(t) => probe.eval_text(t),
                    };
                    class[id as usize] = verdict_class(verdict);
                })?;
                class
            }
        };
        let true_ids = true_ids(&class);
        if column.is_multi_value() {
            let empty_class = verdict_class(on_null);
            let (mut t, mut u) = (RoaringBitmap::new(), RoaringBitmap::new());
            let mut ids = Vec::new();
            for row in self.rows.clone() {
                column.row_ids(row as usize, &mut ids);
                let c = if ids.is_empty() {
                    empty_class
                } else if ids.iter().any(|&id| class[id as usize] == 1) {
                    1
                } else {
                    0
                };
                push(&mut t, &mut u, row, class_verdict(c), want_unknown);
            }
            return Ok((t, u));
        }
        if column.has_bitmaps() && few_ids(true_ids.len(), dict_len) {
            let bitmaps = true_ids
                .iter()
                .map(|&id| column.bitmap(id))
                .collect::<grove_segment::Result<Vec<_>>>()?;
            let mut t = bitmaps.union();
            t &= self.all;
            let mut u = RoaringBitmap::new();
            if want_unknown && column.has_null() && class[0] == 2 {
                u = column.bitmap(0)? & self.all;
            }
            return Ok((t, u));
        }
        let (mut t, mut u) = (RoaringBitmap::new(), RoaringBitmap::new());
        let mut cursor = IdCursor::new(column);
        for row in self.rows.clone() {
            let c = class[cursor.get(row)? as usize];
            push(&mut t, &mut u, row, class_verdict(c), want_unknown);
        }
        Ok((t, u))
    }
}

/// Classes (0 false, 1 true, 2 unknown) of every id of `column` for an exact-match leaf:
/// `values` (sorted, unique) are true, null gets `on_null`, the rest false.
fn exact_classes(
    column: StringColumn<'_>,
    values: &[String],
    on_null: Option<bool>,
) -> Result<Vec<u8>> {
    let dict_len = column.dictionary_len();
    let mut class = vec![0u8; dict_len];
    if lookups_are_cheaper(values.len(), dict_len) {
        // Few values: binary-search each in the dictionary.
        for v in values {
            if let Some(id) = column.lookup(v) {
                class[id as usize] = 1;
            }
        }
    } else {
        // Many values: one merge-join of two sorted lists.
        let mut next = 0;
        column.for_each_value(|id, text| {
            let Some(text) = text else { return };
            while next < values.len() && values[next].as_str() < text {
                next += 1;
            }
            if next < values.len() && values[next] == text {
                class[id as usize] = 1;
            }
        })?;
    }
    if column.has_null() {
        class[0] = verdict_class(on_null);
    }
    Ok(class)
}

/// Whether `values` binary searches (log₂ of the dictionary each) cost less than one pass
/// over a `dict_len`-value dictionary.
fn lookups_are_cheaper(values: usize, dict_len: usize) -> bool {
    let log_dict = usize::BITS - dict_len.leading_zeros();
    values.saturating_mul(log_dict as usize) <= dict_len
}

/// The ids an exact-match leaf accepts, ascending: looked up one by one when there are few
/// values (no per-dictionary work), else through [`exact_classes`].
fn exact_ids(
    column: StringColumn<'_>,
    values: &[String],
    on_null: Option<bool>,
) -> Result<Vec<u32>> {
    if !lookups_are_cheaper(values.len(), column.dictionary_len()) {
        return Ok(true_ids(&exact_classes(column, values, on_null)?));
    }
    // Values are sorted and the dictionary too, so ids come out ascending; null (0) goes first.
    let mut ids = column.lookup_sorted(values);
    if column.has_null() && on_null == Some(true) {
        ids.insert(0, 0);
    }
    Ok(ids)
}

/// The ids classed true, ascending.
fn true_ids(class: &[u8]) -> Vec<u32> {
    (0..class.len() as u32)
        .filter(|&id| class[id as usize] == 1)
        .collect()
}

/// Whether `count` matching ids of a `dict_len`-value dictionary are few enough to read their
/// bitmaps rather than scan the id column.
fn few_ids(count: usize, dict_len: usize) -> bool {
    count <= BITMAP_UNION_MAX_IDS || count * 16 <= dict_len
}

/// How a string leaf classifies dictionary values.
enum Verdicts<'v, 'p> {
    /// Exactly these strings (sorted) match.
    Exact(&'v [String]),
    /// Ask the leaf's matcher about each value.
    Probe(&'v mut Probe<'p>),
}

/// Evaluates a one-field leaf matcher on single values.
struct Probe<'m> {
    matcher: &'m RowMatcher,
    row: InputRow,
}

impl<'m> Probe<'m> {
    fn new(matcher: &'m RowMatcher) -> Probe<'m> {
        Probe {
            matcher,
            row: InputRow {
                timestamp_ms: 0,
                values: vec![Value::Null],
            },
        }
    }

    #[inline]
    fn eval_value(&mut self, value: Value) -> Option<bool> {
        if let Value::Long(ts) = value {
            // A `__time` leaf reads the row timestamp; a long column leaf reads the slot.
            self.row.timestamp_ms = ts;
        }
        self.row.values[0] = value;
        self.matcher.eval(&self.row)
    }

    #[inline]
    fn eval_text(&mut self, text: &str) -> Option<bool> {
        self.row.values[0].set_str(text);
        self.matcher.eval(&self.row)
    }
}

fn verdict_class(v: Option<bool>) -> u8 {
    match v {
        Some(false) => 0,
        Some(true) => 1,
        None => 2,
    }
}

fn class_verdict(c: u8) -> Option<bool> {
    match c {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

#[inline]
fn push(t: &mut RoaringBitmap, u: &mut RoaringBitmap, row: u32, v: Option<bool>, want_u: bool) {
    match v {
        Some(true) => {
            let _ = t.try_push(row);
        }
        None if want_u => {
            let _ = u.try_push(row);
        }
        _ => {}
    }
}

/// For leaves that match exact strings only: the strings, and the leaf's verdict on null
/// (as the row matcher gives it).
fn exact_values(filter: &Filter) -> Option<(Vec<&str>, Option<bool>)> {
    match filter {
        Filter::Selector { value: None, .. } | Filter::Null { .. } => {
            Some((Vec::new(), Some(true)))
        }
        Filter::Selector { value: Some(v), .. } => Some((vec![v.as_str()], None)),
        Filter::In { values, .. } => {
            let has_null = values.iter().any(Option::is_none);
            Some((
                values.iter().flatten().map(String::as_str).collect(),
                has_null.then_some(true),
            ))
        }
        _ => None,
    }
}
