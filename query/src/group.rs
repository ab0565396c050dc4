//! The grouping engine behind timeseries, topN and groupBy: one segment's rows, selected by
//! intervals and filter, folded into groups keyed by (time bucket, dimension values), each holding
//! one [`AggValue`] per aggregator, emitted as a serializable [`Partial`] that
//! [`crate::partial`] merges by hash with other segments' (and in-memory indexes') partials: the
//! one merge path historicals and brokers share.
//!
//! Per segment: when rows are sorted by time (the default order), each interval and each time
//! bucket is a contiguous row range found by binary search (no per-row bucketing). A segment
//! sorted by dimensions first (`forceSegmentSortByTime: false`) takes one pass per interval over
//! all its rows (or its filter's rows) and buckets each row by its timestamp, unless its data lies
//! in one bucket of an interval that covers it, when it is one range like a time-sorted bucket.
//! The filter becomes a bitmap once per interval; rows are then processed in batches of up to
//! 1,024 ids: a group index per row (dense slots indexed by the dimensions' dictionary ids in
//! mixed radix when their product is small, else a hash table over fixed-width key words —
//! dictionary ids and number bits — with multi-value rows exploded into one entry per value),
//! then each aggregator folds the batch column-wise. Dictionary ids become strings only once per
//! group kept, in dictionary order, when the segment's partial is emitted.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::ops::Range;

use hashbrown::HashTable;
use roaring::RoaringBitmap;

use grove_segment::filter::Filter;
use grove_segment::format::{LongColumn, Segment, StringColumn};
use grove_segment::time::{Granularity, Interval};

use crate::QueryControl;
use crate::aggregate::{Acc, AggDef, AggKind, AggValue, SKIP_ROW};
use crate::column::{Column, IdCursor, LongCursor};
use crate::error::{QueryError, Result};
use crate::filter::{PreparedFilter, filter_rows};
use crate::granularity::QueryGranularity;
use crate::partial::{self, AggColumn, Partial};

/// The bucket key of granularity `all`.
pub const ALL_BUCKET: i64 = i64::MIN;

/// A dimension value in a group key. Orders nulls first, then numbers, then strings.
#[derive(Clone, Debug)]
pub enum KeyValue {
    Null,
    Long(i64),
    Double(f64),
    String(String),
}

impl KeyValue {
    fn rank(&self) -> u8 {
        match self {
            KeyValue::Null => 0,
            KeyValue::Long(_) | KeyValue::Double(_) => 1,
            KeyValue::String(_) => 2,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            KeyValue::Long(v) => Some(*v as f64),
            KeyValue::Double(v) => Some(*v),
            KeyValue::String(s) => s.trim().parse().ok(),
            KeyValue::Null => None,
        }
    }
}

impl PartialEq for KeyValue {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == std::cmp::Ordering::Equal
    }
}

impl Eq for KeyValue {}

impl PartialOrd for KeyValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for KeyValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        use KeyValue::*;
        match (self, other) {
            (Long(a), Long(b)) => a.cmp(b),
            (Double(a), Double(b)) => a.total_cmp(b),
            (Long(a), Double(b)) => (*a as f64).total_cmp(b),
            (Double(a), Long(b)) => a.total_cmp(&(*b as f64)),
            (String(a), String(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// A group: its time bucket start (or [`ALL_BUCKET`]) and dimension values.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct GroupKey {
    pub bucket: i64,
    pub dims: Vec<KeyValue>,
}

/// Groups and their aggregate values, ordered by key.
pub type Grouped = BTreeMap<GroupKey, Vec<AggValue>>;

/// Merges `other` into `into`.
///
/// Both sides are ordered by key: when `other` is not much smaller than `into`, one linear
/// merge of the two sequences and a bulk rebuild of the map cost O(n + m) key comparisons
/// instead of a tree search per key of `other`.
pub fn merge_grouped(into: &mut Grouped, other: Grouped, aggs: &[AggDef]) {
    let combine = |existing: &mut Vec<AggValue>, values: Vec<AggValue>| {
        for ((def, a), b) in aggs.iter().zip(existing.iter_mut()).zip(values) {
            def.combine(a, b);
        }
    };
    if other.len().saturating_mul(LINEAR_MERGE_RATIO) < into.len() {
        for (key, values) in other {
            match into.get_mut(&key) {
                None => {
                    into.insert(key, values);
                }
                Some(existing) => combine(existing, values),
            }
        }
        return;
    }
    let mut left = std::mem::take(into).into_iter().peekable();
    let mut right = other.into_iter().peekable();
    let mut merged = Vec::with_capacity(left.len() + right.len());
    loop {
        let order = match (left.peek(), right.peek()) {
            (Some((a, _)), Some((b, _))) => a.cmp(b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => break,
        };
        match order {
            std::cmp::Ordering::Less => merged.extend(left.next()),
            std::cmp::Ordering::Greater => merged.extend(right.next()),
            std::cmp::Ordering::Equal => {
                let (key, mut values) = left.next().expect("peeked");
                let (_, more) = right.next().expect("peeked");
                combine(&mut values, more);
                merged.push((key, values));
            }
        }
    }
    // Sorted input: `BTreeMap` builds it in one pass.
    *into = merged.into_iter().collect();
}

/// `merge_grouped` searches `into` per key of `other` only when `other` is this many times
/// smaller; otherwise it merges the two ordered sequences.
const LINEAR_MERGE_RATIO: usize = 8;

/// What to group one segment by.
pub struct GroupSpec<'q> {
    pub intervals: &'q [Interval],
    pub granularity: QueryGranularity,
    pub filter: Option<&'q PreparedFilter>,
    /// Input column of each grouping dimension.
    pub dimensions: &'q [String],
    pub aggregators: &'q [AggDef],
    pub max_groups: u64,
    /// topN: keep only the best groups of each bucket (an approximation across segments, as
    /// Druid's topN: each segment contributes its best `keep`).
    pub top: Option<TopGroups>,
}

/// The rows of `time` (sorted) within `interval`.
pub fn row_range(time: &LongColumn<'_>, interval: Interval) -> Range<u32> {
    row_range_in(time, 0..time.len() as u32, interval)
}

/// The rows of `rows` (a range of rows sorted by `time`) within `interval`.
fn row_range_in(time: &LongColumn<'_>, rows: Range<u32>, interval: Interval) -> Range<u32> {
    let lo = lower_bound(time, rows.clone(), interval.start_ms);
    let hi = lower_bound(time, rows, interval.end_ms);
    lo as u32..hi.max(lo) as u32
}

/// The first row of `rows` (a range of rows sorted by `time`) whose time is at least `target`
/// (`rows.end` when none is).
fn lower_bound(time: &LongColumn<'_>, rows: Range<u32>, target: i64) -> usize {
    let (mut lo, mut hi) = (rows.start as usize, rows.end as usize);
    while lo < hi {
        let mid = (lo + hi) / 2;
        if time.get(mid) < target {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// How grouping dimensions read a segment.
enum DimReader<'a> {
    /// Dictionary ids of a single-value string column.
    Ids(Box<IdCursor<'a>>, StringColumn<'a>),
    /// A multi-value string column (rows exploded per value; an empty row is one null value).
    Multi(StringColumn<'a>),
    Long(LongCursor<'a>, Option<&'a RoaringBitmap>),
    Double(
        grove_segment::format::DoubleColumn<'a>,
        Option<&'a RoaringBitmap>,
    ),
    Missing,
}

impl DimReader<'_> {
    /// Key words per value.
    fn width(&self) -> usize {
        match self {
            DimReader::Ids(..) | DimReader::Multi(_) | DimReader::Missing => 1,
            DimReader::Long(..) | DimReader::Double(..) => 2,
        }
    }
}

const NULL_WORD: u64 = u64::MAX;

/// Groups one segment.
pub fn group_segment(
    segment: &Segment,
    spec: &GroupSpec<'_>,
    control: &dyn QueryControl,
) -> Result<Partial> {
    let n = segment.num_rows();
    if n == 0 {
        return Ok(Partial::new(spec.aggregators));
    }
    let time = segment.time()?;
    let meta = segment.meta();
    let data = Interval::new(meta.time_min_ms, meta.time_max_ms.saturating_add(1));

    let mut dims = Vec::with_capacity(spec.dimensions.len());
    for name in spec.dimensions {
        dims.push(match Column::of(segment, name)? {
            Column::String(s) if s.is_multi_value() => DimReader::Multi(s),
            Column::String(s) => DimReader::Ids(Box::new(IdCursor::new(s)), s),
            Column::Long { values, nulls } => DimReader::Long(LongCursor::new(values), nulls),
            Column::Double { values, nulls } => DimReader::Double(values, nulls),
            Column::Missing => DimReader::Missing,
            Column::Sketch(_) => {
                return Err(QueryError::bad(format!(
                    "cannot group on '{name}': it is a sketch column"
                )));
            }
        });
    }
    let key_width = 1 + dims.iter().map(DimReader::width).sum::<usize>();
    // Dense grouping: every dimension a single-value string column and the product of their
    // dictionary sizes small: the group slot of a row is its ids in mixed radix.
    let dense: Option<Vec<usize>> = {
        let mut strides = Vec::with_capacity(dims.len());
        let mut product: usize = 1;
        let mut ok = true;
        for d in &dims {
            match d {
                DimReader::Ids(_, s) => {
                    strides.push(product);
                    product = product.saturating_mul(s.dictionary_len().max(1));
                }
                _ => ok = false,
            }
        }
        (ok && product <= DENSE_SLOTS_MAX).then(|| {
            strides.push(product);
            strides
        })
    };

    let time_sorted = meta.schema.time_sorted();
    // Filtered aggregators' rows: only within the rows the query's intervals cover.
    let covered = if !time_sorted {
        let any = spec.intervals.iter().any(|i| i.overlaps(&data));
        0..if any { n as u32 } else { 0 }
    } else {
        let ranges: Vec<Range<u32>> = spec
            .intervals
            .iter()
            .filter(|i| i.overlaps(&data))
            .map(|i| {
                row_range(
                    &time,
                    Interval::new(i.start_ms.max(data.start_ms), i.end_ms.min(data.end_ms)),
                )
            })
            .filter(|r| !r.is_empty())
            .collect();
        let start = ranges.iter().map(|r| r.start).min().unwrap_or(0);
        let end = ranges.iter().map(|r| r.end).max().unwrap_or(0);
        start..end.max(start)
    };
    let filter_for = |f: &Filter| filter_rows(segment, f, covered.clone());
    let mut accs = spec
        .aggregators
        .iter()
        .map(|def| Acc::new(def, segment, &filter_for))
        .collect::<Result<Vec<_>>>()?;
    let needs_time = spec.aggregators.iter().any(|d| {
        matches!(
            d.kind,
            AggKind::LongFirst
                | AggKind::LongLast
                | AggKind::DoubleFirst
                | AggKind::DoubleLast
                | AggKind::StringFirst { .. }
                | AggKind::StringLast { .. }
        )
    });
    let mut time_cursor = LongCursor::new(time);

    let mut table = GroupTable::new(key_width);
    // Dense slots of the current bucket -> group index (u32::MAX: none yet), and the slots used,
    // to reset them when the bucket changes.
    let mut slots: Vec<u32> = match &dense {
        Some(strides) => vec![u32::MAX; *strides.last().expect("product")],
        None => Vec::new(),
    };
    let mut touched: Vec<u32> = Vec::new();

    let mut batch_rows: Vec<u32> = Vec::with_capacity(BATCH);
    let mut batch_ids: Vec<u32> = Vec::with_capacity(BATCH);
    let mut pair_rows: Vec<u32> = Vec::with_capacity(BATCH);
    let mut pair_groups: Vec<u32> = Vec::with_capacity(BATCH);
    let mut times: Vec<i64> = Vec::with_capacity(BATCH);
    let mut key = vec![0u64; key_width];
    let mut multi_ids: Vec<Vec<u32>> = vec![Vec::new(); dims.len()];
    let mut ids: Vec<u32> = vec![0; dims.len()];
    let mut row_buckets: Vec<Option<(i64, usize)>> = Vec::with_capacity(BATCH);

    // An exact filter's rows by dictionary id, its values looked up once per segment: for
    // narrowing to one value's run below and for handing rows over by id.
    let id_rows = match spec.filter {
        Some(f)
            if f.exact_field().is_some_and(|field| {
                !time_sorted || spec.dimensions.iter().any(|d| d.as_str() == field)
            }) =>
        {
            f.id_rows(segment)?
        }
        _ => None,
    };
    // An exact filter on the leading sort column that matches one value: only that value's
    // run of rows can pass (in time order within when time sorts second).
    let lead_run: Option<Range<u32>> = match &id_rows {
        Some(by) if by.in_runs() && by.ids.len() <= 1 => Some(match by.ids.first() {
            Some(&id) => by.run(id, &(0..n as u32))?.unwrap_or(0..0),
            None => 0..0,
        }),
        _ => None,
    };
    // The passes over rows in time order: one per bucket.
    let ranged = |range: Range<u32>| -> Vec<Pass> {
        buckets(&time, &spec.granularity, range)
            .into_iter()
            .map(|(bucket, rows)| Pass::Range { bucket, rows })
            .collect()
    };

    for interval in spec.intervals {
        if !interval.overlaps(&data) {
            continue;
        }
        let clipped = Interval::new(
            interval.start_ms.max(data.start_ms),
            interval.end_ms.min(data.end_ms),
        );
        // The rows to visit and how each finds its bucket.
        let (range, passes) = if time_sorted {
            let range = row_range(&time, clipped);
            (range.clone(), ranged(range))
        } else if let (Some(run), 1) = (&lead_run, meta.schema.time_position) {
            let range = row_range_in(&time, run.clone(), clipped);
            (range.clone(), ranged(range))
        } else {
            let all = lead_run.clone().unwrap_or(0..n as u32);
            let pass = match one_bucket(&spec.granularity, clipped, data) {
                Some(bucket) => Pass::Range {
                    bucket,
                    rows: all.clone(),
                },
                None => Pass::PerRow(RowBuckets::new(&spec.granularity, clipped)),
            };
            (all, vec![pass])
        };
        if range.is_empty() {
            continue;
        }
        // Dense slots per bucket when rows carry their own bucket: one block of slots each.
        let dense_now = match (&dense, &passes[..]) {
            (Some(strides), [Pass::PerRow(rb)]) => {
                let product = *strides.last().expect("product");
                rb.count()
                    .and_then(|nb| nb.checked_mul(product))
                    .filter(|&need| need <= DENSE_SLOTS_MAX)
                    .map(|need| {
                        if slots.len() < need {
                            slots.resize(need, u32::MAX);
                        }
                        strides
                    })
            }
            (d, _) => d.as_ref(),
        };
        // An exact-match filter on a grouped dimension hands over its rows by id: the ids of
        // that dimension are then known without reading the column. Dense grouping only, and no
        // first/last aggregators (rows then arrive by id, not in time order; each group still
        // sees its rows in order, so sums add up exactly as in row order).
        let by_id = match (spec.filter, dense_now) {
            (Some(f), Some(_)) if !needs_time => {
                match f
                    .exact_field()
                    .and_then(|field| spec.dimensions.iter().position(|d| d.as_str() == field))
                {
                    Some(k) => id_rows.as_ref().map(|by| (k, by)),
                    None => None,
                }
            }
            _ => None,
        };
        let selected = match (&by_id, spec.filter) {
            (None, Some(f)) => Some(f.rows(segment, range.clone())?),
            _ => None,
        };
        control.check()?;
        for pass in &passes {
            for t in touched.drain(..) {
                slots[t as usize] = u32::MAX;
            }
            let (bucketing, rows) = match pass {
                Pass::Range { bucket, rows } => (Bucketing::Const(*bucket), rows.clone()),
                Pass::PerRow(rb) => (Bucketing::PerRow(rb), range.clone()),
            };
            // Each id's rows one contiguous run (the filtered column leads the sort order), the
            // grouping on that column alone, every aggregator folding ranges, and each run in
            // one bucket or sorted by time within: groups come from whole runs (sub-runs per
            // bucket, by binary search), and aggregators fold them without touching single rows.
            let by_runs = match &by_id {
                Some((0, by)) if by.in_runs() && dims.len() == 1 => {
                    let runs_bucket = match &bucketing {
                        Bucketing::Const(_) => true,
                        Bucketing::PerRow(_) => meta.schema.time_position == 1,
                    };
                    (runs_bucket && accs.iter().all(Acc::folds_ranges)).then_some(by)
                }
                _ => None,
            };
            // No dimensions and no filter: aggregators that can fold a contiguous range at once
            // do so; the rest go through batches below.
            let mut batched: Vec<usize> = (0..accs.len()).collect();
            if let (true, None, Bucketing::Const(bucket)) =
                (dims.is_empty(), spec.filter, &bucketing)
            {
                key[0] = *bucket as u64;
                let g = table.intern(&key);
                // Batched aggregators of this bucket land in the same group.
                slots[0] = g;
                touched.push(0);
                let mut rest = Vec::new();
                for (i, acc) in accs.iter_mut().enumerate() {
                    acc.reserve(table.len());
                    if !acc.add_range(rows.clone(), g)? {
                        rest.push(i);
                    }
                }
                batched = rest;
                if batched.is_empty() {
                    continue;
                }
            }
            // No dimensions and no filter, rows bucketed one by one (not in time order), every
            // aggregator folding plainly: each batch's buckets become group numbers in one pass
            // and the aggregators read the batch's values block-wise.
            if let (true, None, Bucketing::PerRow(rb), Some(_)) =
                (dims.is_empty(), spec.filter, &bucketing, dense_now)
                && rb.count().is_some()
                && accs.iter().all(Acc::folds_ranges)
            {
                let starts = rb.starts.as_deref().expect("numbered buckets");
                let mut start = rows.start;
                while start < rows.end {
                    let end = (start + BATCH as u32).min(rows.end);
                    // Times, then bucket numbers, then groups: three tight loops.
                    times.clear();
                    time_cursor.extend_range(start..end, &mut times);
                    pair_groups.clear();
                    rb.numbers(&times, &mut pair_groups);
                    for number in pair_groups.iter_mut().filter(|n| **n != SKIP_ROW) {
                        let slot = &mut slots[*number as usize];
                        if *slot == u32::MAX {
                            *slot = table.len() as u32;
                            touched.push(*number);
                            key[0] = starts[*number as usize] as u64;
                            table.push_unchecked(&key);
                        }
                        *number = *slot;
                    }
                    for acc in accs.iter_mut() {
                        acc.reserve(table.len());
                        acc.add_consecutive(start, &pair_groups)?;
                    }
                    control.check()?;
                    start = end;
                }
                continue;
            }
            // `known`: the ids of one dimension for the batch's rows, when the filter gave them.
            let mut emit = |batch: &[u32], known: Option<(usize, &[u32])>| -> Result<()> {
                pair_rows.clear();
                pair_groups.clear();
                let sparse = crate::column::is_sparse(batch);
                for d in dims.iter_mut() {
                    match d {
                        DimReader::Ids(c, _) => c.set_sparse(sparse),
                        DimReader::Long(c, _) => c.set_sparse(sparse),
                        _ => {}
                    }
                }
                time_cursor.set_sparse(sparse);
                if let Bucketing::PerRow(rb) = &bucketing {
                    row_buckets.clear();
                    row_buckets.extend(batch.iter().map(|&r| rb.bucket(time_cursor.get(r))));
                }
                match dense_now {
                    Some(strides) => {
                        let product = *strides.last().expect("product");
                        for (i, &r) in batch.iter().enumerate() {
                            let (bucket, bucket_index) = match &bucketing {
                                Bucketing::Const(b) => (*b, 0),
                                Bucketing::PerRow(_) => match row_buckets[i] {
                                    Some(b) => b,
                                    None => continue,
                                },
                            };
                            let mut slot = bucket_index * product;
                            for (k, d) in dims.iter_mut().enumerate() {
                                if let DimReader::Ids(c, _) = d {
                                    let id = match known {
                                        Some((kd, ids)) if kd == k => ids[i],
                                        _ => c.get(r)?,
                                    };
                                    ids[k] = id;
                                    slot += id as usize * strides[k];
                                }
                            }
                            let g = &mut slots[slot];
                            if *g == u32::MAX {
                                *g = table.len() as u32;
                                touched.push(slot as u32);
                                key[0] = bucket as u64;
                                for (k, id) in ids.iter().enumerate() {
                                    key[1 + k] = *id as u64;
                                }
                                table.push_unchecked(&key);
                            }
                            pair_rows.push(r);
                            pair_groups.push(*g);
                        }
                    }
                    None => {
                        debug_assert!(
                            known.is_none(),
                            "ids are handed over to dense grouping only"
                        );
                        for (i, &r) in batch.iter().enumerate() {
                            key[0] = match &bucketing {
                                Bucketing::Const(b) => *b as u64,
                                Bucketing::PerRow(_) => match row_buckets[i] {
                                    Some((b, _)) => b as u64,
                                    None => continue,
                                },
                            };
                            explode(&mut dims, r, &mut key, 1, &mut multi_ids, &mut |k| {
                                pair_rows.push(r);
                                pair_groups.push(table.intern(k));
                            })?;
                        }
                    }
                }
                if table.len() as u64 > spec.max_groups {
                    return Err(too_many_groups(spec.max_groups));
                }
                if needs_time {
                    times.clear();
                    times.extend(pair_rows.iter().map(|&r| time_cursor.get(r)));
                }
                for &i in &batched {
                    accs[i].reserve(table.len());
                    accs[i].add(&pair_rows, &pair_groups, &times)?;
                }
                control.check()
            };
            if let Some(by) = by_runs {
                for (n, &id) in by.ids.iter().enumerate() {
                    let Some(run) = by.run(id, &rows)? else {
                        continue;
                    };
                    if run.is_empty() {
                        continue;
                    }
                    let parts = match &bucketing {
                        Bucketing::Const(b) => vec![(*b, run)],
                        Bucketing::PerRow(rb) => {
                            let within = row_range_in(&time, run, rb.interval);
                            buckets(&time, &spec.granularity, within)
                        }
                    };
                    for (bucket, part) in parts.into_iter().filter(|(_, p)| !p.is_empty()) {
                        // Ids are distinct and a run's buckets too: every group here is new.
                        key[0] = bucket as u64;
                        key[1] = u64::from(id);
                        let g = table.len() as u32;
                        table.push_unchecked(&key);
                        for acc in accs.iter_mut() {
                            acc.reserve(table.len());
                            acc.add_range(part.clone(), g)?;
                        }
                    }
                    if table.len() as u64 > spec.max_groups {
                        return Err(too_many_groups(spec.max_groups));
                    }
                    if n % 256 == 255 {
                        control.check()?;
                    }
                }
                continue;
            }
            match (&selected, &by_id) {
                (_, Some((k, by))) => {
                    batch_rows.clear();
                    batch_ids.clear();
                    for &id in &by.ids {
                        // Rows are gathered a whole id at a time, then emitted in batches.
                        by.for_each_row(id, rows.clone(), |r| {
                            batch_rows.push(r);
                            batch_ids.push(id);
                        })?;
                        if batch_rows.len() >= BATCH {
                            for (chunk, chunk_ids) in
                                batch_rows.chunks(BATCH).zip(batch_ids.chunks(BATCH))
                            {
                                emit(chunk, Some((*k, chunk_ids)))?;
                            }
                            batch_rows.clear();
                            batch_ids.clear();
                        }
                    }
                    if !batch_rows.is_empty() {
                        emit(&batch_rows, Some((*k, &batch_ids)))?;
                    }
                }
                (None, None) => {
                    let mut start = rows.start;
                    while start < rows.end {
                        let end = (start + BATCH as u32).min(rows.end);
                        batch_rows.clear();
                        batch_rows.extend(start..end);
                        emit(&batch_rows, None)?;
                        start = end;
                    }
                }
                (Some(bitmap), None) => {
                    batch_rows.clear();
                    for r in bitmap.range(rows.clone()) {
                        batch_rows.push(r);
                        if batch_rows.len() == BATCH {
                            emit(&batch_rows, None)?;
                            batch_rows.clear();
                        }
                    }
                    if !batch_rows.is_empty() {
                        emit(&batch_rows, None)?;
                    }
                }
            }
        }
    }

    emit_partial(&table, &dims, &mut accs, spec, &data)
}

/// The segment's groups as a [`Partial`]: duplicate keys (a bucket reached from two intervals)
/// combined, topN's pruning applied, then the keys encoded (strings decoded in dictionary
/// order, only for the groups kept).
fn emit_partial(
    table: &GroupTable,
    dims: &[DimReader<'_>],
    accs: &mut [Acc<'_>],
    spec: &GroupSpec<'_>,
    data: &Interval,
) -> Result<Partial> {
    let n = table.len();
    let mut columns = accs
        .iter_mut()
        .map(|a| a.take_column(n))
        .collect::<Result<Vec<AggColumn>>>()?;
    // Sorted by key words: ids ascend within a bucket, so strings decode in dictionary order.
    let mut order: Vec<u32> = sorted_groups(table);
    // Dense slots start afresh for each interval's passes, so a bucket reached from two
    // intervals holds two groups: combine them before anything ranks them.
    if spec.intervals.iter().filter(|i| i.overlaps(data)).count() > 1 {
        let mut kept = 0;
        for i in 0..order.len() {
            let g = order[i] as usize;
            if kept > 0 && table.key(order[kept - 1] as usize) == table.key(g) {
                let at = order[kept - 1] as usize;
                for (column, def) in columns.iter_mut().zip(spec.aggregators) {
                    column.combine_within(at, g, def);
                }
            } else {
                order[kept] = order[i];
                kept += 1;
            }
        }
        order.truncate(kept);
    }
    // Pruned only when that saves much: with at most a few times `keep` groups, the segment
    // sends them all and the topN stays exact at about the same cost.
    if let Some(top) = &spec.top
        && order.len() > top.keep.saturating_mul(TOP_EXACT_FACTOR)
    {
        let def = &spec.aggregators[top.aggregator];
        order = top_groups(table, &order, &columns[top.aggregator], def, top);
    }
    // String values of the kept groups, per string dimension, decoded in one ordered pass.
    let mut texts: Vec<Option<(Vec<u8>, Vec<u32>)>> = Vec::with_capacity(dims.len());
    let mut w = 1;
    let mut ids: Vec<u32> = Vec::with_capacity(order.len());
    for d in dims {
        texts.push(match d {
            DimReader::Ids(_, s) | DimReader::Multi(s) => {
                ids.clear();
                ids.extend(
                    order
                        .iter()
                        .map(|&g| table.key(g as usize)[w])
                        .map(|word| if word == NULL_WORD { 0 } else { word as u32 }),
                );
                let mut bytes = Vec::new();
                let mut ends = Vec::with_capacity(ids.len());
                s.values_of(&ids, |value| {
                    if let Some(v) = value {
                        bytes.extend_from_slice(v);
                    }
                    ends.push(bytes.len() as u32);
                })?;
                Some((bytes, ends))
            }
            _ => None,
        });
        w += d.width();
    }
    let mut keys = Vec::with_capacity(order.len() * (9 + 13 * dims.len()));
    let mut ends = Vec::with_capacity(order.len());
    for (pos, &g) in order.iter().enumerate() {
        let words = table.key(g as usize);
        partial::push_bucket(&mut keys, words[0] as i64);
        let mut w = 1;
        for (d, text) in dims.iter().zip(&texts) {
            match d {
                DimReader::Ids(_, s) | DimReader::Multi(s) => {
                    let (bytes, text_ends) = text.as_ref().expect("decoded strings");
                    let null = words[w] == NULL_WORD || (s.has_null() && words[w] == 0);
                    if null {
                        partial::push_null(&mut keys);
                    } else {
                        let from = if pos == 0 {
                            0
                        } else {
                            text_ends[pos - 1] as usize
                        };
                        partial::push_str(&mut keys, &bytes[from..text_ends[pos] as usize]);
                    }
                }
                DimReader::Long(..) => match words[w] {
                    0 => partial::push_null(&mut keys),
                    _ => partial::push_long(&mut keys, words[w + 1] as i64),
                },
                DimReader::Double(..) => match words[w] {
                    0 => partial::push_null(&mut keys),
                    _ => partial::push_double(&mut keys, f64::from_bits(words[w + 1])),
                },
                DimReader::Missing => partial::push_null(&mut keys),
            }
            w += d.width();
        }
        ends.push(keys.len() as u32);
    }
    let columns = columns.iter_mut().map(|c| c.gather(&order)).collect();
    Ok(Partial::from_parts(keys, ends, columns))
}

/// The error of a query past its group limit (context `maxResults`).
pub(crate) fn too_many_groups(max: u64) -> QueryError {
    QueryError::resource_limit(format!(
        "the query builds more than {max} groups (context maxResults); narrow it or raise the limit"
    ))
}

/// Most dense group slots (product of dictionary sizes) before grouping falls back to hashing.
const DENSE_SLOTS_MAX: usize = 1 << 22;

/// The groups of `table` in key-word order. Keys of two words (a bucket and one id) sort as
/// one packed integer when every group has the same bucket.
fn sorted_groups(table: &GroupTable) -> Vec<u32> {
    let n = table.len();
    if n == 0 {
        return Vec::new();
    }
    if table.width == 2 {
        let first = table.key(0)[0];
        if (0..n).all(|g| table.key(g)[0] == first && table.key(g)[1] <= u64::from(u32::MAX)) {
            let mut packed: Vec<u64> = (0..n).map(|g| (table.key(g)[1] << 32) | g as u64).collect();
            if !packed.is_sorted() {
                packed.sort_unstable();
            }
            return packed.into_iter().map(|p| p as u32).collect();
        }
        let mut order: Vec<u32> = (0..n as u32).collect();
        order.sort_unstable_by_key(|&g| {
            let k = table.key(g as usize);
            (k[0], k[1])
        });
        return order;
    }
    let mut order: Vec<u32> = (0..n as u32).collect();
    if !order.is_sorted_by(|&a, &b| table.key(a as usize) <= table.key(b as usize)) {
        order.sort_unstable_by(|&a, &b| table.key(a as usize).cmp(table.key(b as usize)));
    }
    order
}

/// A segment prunes topN groups only when it has more than this many times `keep`.
const TOP_EXACT_FACTOR: usize = 4;

/// Keep only the best groups of each bucket by one aggregator (topN's per-segment pruning).
#[derive(Clone, Copy, Debug)]
pub struct TopGroups {
    pub aggregator: usize,
    pub descending: bool,
    pub keep: usize,
}

/// The groups of `order` among the `top.keep` best of their bucket by `column`, in the order
/// of `order`. Columns that are not plain numbers are not pruned.
fn top_groups(
    table: &GroupTable,
    order: &[u32],
    column: &AggColumn,
    def: &AggDef,
    top: &TopGroups,
) -> Vec<u32> {
    if matches!(column, AggColumn::Values(_)) {
        return order.to_vec();
    }
    // (bucket, rank value, position in `order`)
    let mut ranked: Vec<(i64, f64, u32)> = order
        .iter()
        .enumerate()
        .map(|(pos, &g)| {
            let v = column.number(g as usize, def).unwrap_or(f64::NEG_INFINITY);
            (
                table.key(g as usize)[0] as i64,
                if top.descending { -v } else { v },
                pos as u32,
            )
        })
        .collect();
    // Per bucket: select the best `keep` without sorting the rest.
    ranked.sort_by_key(|r| r.0);
    let better = |a: &(i64, f64, u32), b: &(i64, f64, u32)| a.1.total_cmp(&b.1).then(a.2.cmp(&b.2));
    let mut kept = Vec::new();
    let mut start = 0;
    while start < ranked.len() {
        let b = ranked[start].0;
        let end = start + ranked[start..].iter().take_while(|r| r.0 == b).count();
        let bucket = &mut ranked[start..end];
        if bucket.len() > top.keep {
            bucket.select_nth_unstable_by(top.keep - 1, better);
        }
        kept.extend(bucket.iter().take(top.keep).map(|r| r.2));
        start = end;
    }
    kept.sort_unstable();
    kept.into_iter().map(|pos| order[pos as usize]).collect()
}

const BATCH: usize = 1024;

/// Writes the key words of row `r` from dimension `dims[0]` on into `key[at..]`, calling `f`
/// once per combination of values (more than once only for multi-value rows).
fn explode(
    dims: &mut [DimReader<'_>],
    r: u32,
    key: &mut [u64],
    at: usize,
    multi_ids: &mut [Vec<u32>],
    f: &mut dyn FnMut(&[u64]),
) -> Result<()> {
    let Some((first, rest)) = dims.split_first_mut() else {
        f(key);
        return Ok(());
    };
    let (ids, more_ids) = multi_ids
        .split_first_mut()
        .expect("one id list per dimension");
    let width = first.width();
    match first {
        DimReader::Ids(c, _) => {
            key[at] = c.get(r)? as u64;
        }
        DimReader::Missing => key[at] = NULL_WORD,
        DimReader::Long(c, nulls) => {
            if nulls.is_some_and(|n| n.contains(r)) {
                key[at] = 0;
                key[at + 1] = 0;
            } else {
                key[at] = 1;
                key[at + 1] = c.get(r) as u64;
            }
        }
        DimReader::Double(c, nulls) => {
            if nulls.is_some_and(|n| n.contains(r)) {
                key[at] = 0;
                key[at + 1] = 0;
            } else {
                key[at] = 1;
                key[at + 1] = c.get(r as usize).to_bits();
            }
        }
        DimReader::Multi(s) => {
            s.row_ids(r as usize, ids);
            if ids.is_empty() {
                key[at] = NULL_WORD;
                return explode(rest, r, key, at + width, more_ids, f);
            }
            let list = std::mem::take(ids);
            for &id in &list {
                key[at] = id as u64;
                explode(rest, r, key, at + width, more_ids, f)?;
            }
            *ids = list;
            return Ok(());
        }
    }
    explode(rest, r, key, at + width, more_ids, f)
}

/// One pass of the grouping loop over a segment's rows.
enum Pass {
    /// A contiguous row range whose rows all fall in one bucket.
    Range { bucket: i64, rows: Range<u32> },
    /// Rows in any time order: each row's bucket comes from its timestamp, and rows outside the
    /// interval are skipped.
    PerRow(RowBuckets),
}

/// Where the rows of one batch take their bucket from.
enum Bucketing<'a> {
    Const(i64),
    PerRow(&'a RowBuckets),
}

/// Most buckets numbered for dense grouping by (bucket, dimension ids); beyond this (a fine
/// granularity over a long interval) rows group by hashing their bucket start.
const NUMBERED_BUCKETS_MAX: usize = 1 << 16;

/// The buckets of one interval for rows that are not in time order.
struct RowBuckets {
    interval: Interval,
    granularity: QueryGranularity,
    /// The starts of the buckets covering `interval`, when there are few enough to number.
    starts: Option<Vec<i64>>,
    /// Fixed-length UTC buckets: a row's bucket number is a multiplication by the period's
    /// reciprocal (corrected by one step where rounding lands on a neighbour), not a search.
    period_ms: Option<i64>,
    /// `2^64 / period_ms`, rounded down: `(d * reciprocal) >> 64` is `d / period_ms` or one less.
    reciprocal: u64,
}

impl RowBuckets {
    fn new(granularity: &QueryGranularity, interval: Interval) -> RowBuckets {
        let starts = if granularity.base == Granularity::All {
            Some(vec![ALL_BUCKET])
        } else {
            let mut starts = Vec::new();
            let mut start = granularity.truncate(interval.start_ms);
            while start < interval.end_ms && starts.len() <= NUMBERED_BUCKETS_MAX {
                starts.push(start);
                start = granularity.next(start);
            }
            (starts.len() <= NUMBERED_BUCKETS_MAX).then_some(starts)
        };
        let period_ms = match (granularity.base, &granularity.zone) {
            (Granularity::Fixed { period_ms, .. }, None) => Some(period_ms),
            (Granularity::None, _) => Some(1),
            _ => None,
        };
        RowBuckets {
            interval,
            granularity: granularity.clone(),
            starts,
            period_ms,
            reciprocal: period_ms.map_or(0, |p| (u128::from(u64::MAX) / p.max(1) as u128) as u64),
        }
    }

    /// How many buckets there are, when they are numbered.
    fn count(&self) -> Option<usize> {
        self.starts.as_ref().map(Vec::len)
    }

    /// The bucket numbers of rows at `times` ([`SKIP_ROW`] outside the interval), appended to
    /// `out`: [`RowBuckets::bucket`]'s arithmetic with everything about the buckets read once.
    /// Panics if the buckets are not numbered ([`RowBuckets::count`] is `None`).
    fn numbers(&self, times: &[i64], out: &mut Vec<u32>) {
        let starts = self.starts.as_deref().expect("numbered buckets");
        let (lo, hi) = (self.interval.start_ms, self.interval.end_ms);
        let outside = move |t: i64| t < lo || t >= hi;
        match (starts.len(), self.period_ms) {
            (1, _) => out.extend(times.iter().map(|&t| if outside(t) { SKIP_ROW } else { 0 })),
            (_, Some(_)) => out.extend(times.iter().map(|&t| {
                if outside(t) {
                    SKIP_ROW
                } else {
                    fixed_number(starts, self.reciprocal, t) as u32
                }
            })),
            _ => out.extend(
                times
                    .iter()
                    .map(|&t| self.bucket(t).map_or(SKIP_ROW, |(_, i)| i as u32)),
            ),
        }
    }

    /// The bucket (its key and, when numbered, its number) of a row at `ms`; `None` outside the
    /// interval.
    #[inline]
    fn bucket(&self, ms: i64) -> Option<(i64, usize)> {
        if !self.interval.contains(ms) {
            return None;
        }
        Some(match &self.starts {
            Some(starts) if starts.len() == 1 => (starts[0], 0),
            Some(starts) => {
                let i = match self.period_ms {
                    Some(_) => fixed_number(starts, self.reciprocal, ms),
                    None => starts.partition_point(|&s| s <= ms) - 1,
                };
                (starts[i], i)
            }
            None => (self.granularity.truncate(ms), 0),
        })
    }
}

/// The number of the fixed-period bucket holding `t` (at or after `starts[0]`, before the end
/// of the last bucket): an integer division per row costs more than the rest of bucketing, so
/// the quotient comes from a multiply-high by the period's reciprocal, which is exact or one
/// short, and one comparison corrects it.
#[inline]
fn fixed_number(starts: &[i64], reciprocal: u64, t: i64) -> usize {
    let last = starts.len() - 1;
    let d = (t - starts[0]) as u64;
    let i = (((u128::from(d) * u128::from(reciprocal)) >> 64) as usize).min(last);
    i + usize::from(i < last && starts[i + 1] <= t)
}

/// The one bucket of a segment's data (`data`, its time range) when `interval` covers it all and
/// it falls in a single bucket of `granularity`.
fn one_bucket(granularity: &QueryGranularity, interval: Interval, data: Interval) -> Option<i64> {
    if !interval.contains_interval(&data) {
        return None;
    }
    if granularity.base == Granularity::All {
        return Some(ALL_BUCKET);
    }
    let first = granularity.truncate(data.start_ms);
    (granularity.truncate(data.end_ms - 1) == first).then_some(first)
}

/// The time buckets of `granularity` within `range` (rows sorted by time) and their row ranges
/// (non-empty only).
fn buckets(
    time: &LongColumn<'_>,
    granularity: &QueryGranularity,
    range: Range<u32>,
) -> Vec<(i64, Range<u32>)> {
    let mut out = Vec::new();
    match granularity.base {
        Granularity::All => out.push((ALL_BUCKET, range)),
        Granularity::None => {
            // One bucket per distinct timestamp: runs of equal values.
            let mut cursor = LongCursor::new(*time);
            let mut start = range.start;
            while start < range.end {
                let t = cursor.get(start);
                let end = (lower_bound(time, range.clone(), t.saturating_add(1)) as u32)
                    .clamp(start + 1, range.end);
                out.push((t, start..end));
                start = end;
            }
        }
        _ => {
            let g = granularity;
            let mut lo = range.start;
            while lo < range.end {
                let b = g.truncate(time.get(lo as usize));
                let hi =
                    (lower_bound(time, range.clone(), g.next(b)) as u32).clamp(lo + 1, range.end);
                out.push((b, lo..hi));
                lo = hi;
            }
        }
    }
    out
}

/// Group keys of a fixed number of `u64` words, interned to dense indexes.
struct GroupTable {
    width: usize,
    keys: Vec<u64>,
    table: HashTable<u32>,
    hasher: rustc_hash::FxBuildHasher,
}

impl GroupTable {
    fn new(width: usize) -> GroupTable {
        GroupTable {
            width,
            keys: Vec::new(),
            table: HashTable::new(),
            hasher: rustc_hash::FxBuildHasher,
        }
    }

    fn len(&self) -> usize {
        self.keys.len() / self.width
    }

    fn key(&self, g: usize) -> &[u64] {
        &self.keys[g * self.width..(g + 1) * self.width]
    }

    fn hash(&self, key: &[u64]) -> u64 {
        self.hasher.hash_one(key)
    }

    /// Appends a key known to be new (dense path: the table is not used for lookups).
    fn push_unchecked(&mut self, key: &[u64]) {
        self.keys.extend_from_slice(key);
    }

    #[inline]
    fn intern(&mut self, key: &[u64]) -> u32 {
        let hash = self.hash(key);
        let (keys, width) = (&self.keys, self.width);
        let eq = |&g: &u32| &keys[g as usize * width..(g as usize + 1) * width] == key;
        if let Some(&g) = self.table.find(hash, eq) {
            return g;
        }
        let g = self.len() as u32;
        self.keys.extend_from_slice(key);
        let (keys, hasher) = (&self.keys, self.hasher);
        self.table.insert_unique(hash, g, |&g| {
            hasher.hash_one(&keys[g as usize * width..(g as usize + 1) * width])
        });
        g
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Aggregator;

    /// Numbered fixed-period buckets (found by a multiplication and a one-step correction) equal
    /// integer division, at and around every boundary and at odd spots between.
    #[test]
    fn numbered_buckets_equal_division() {
        for (granularity, start, end) in [
            (
                Granularity::HOUR,
                1_717_200_000_123,
                1_717_200_000_123 + 3 * 86_400_000,
            ),
            (Granularity::DAY, -86_400_000 * 40 + 7, 86_400_000 * 400),
            (Granularity::MINUTE, 0, 3_600_000 * 5 + 1),
        ] {
            let g = QueryGranularity {
                base: granularity,
                zone: None,
            };
            let buckets = RowBuckets::new(&g, Interval::new(start, end));
            let starts = buckets.starts.clone().expect("numbered");
            let p = match granularity {
                Granularity::Fixed { period_ms, .. } => period_ms,
                _ => unreachable!(),
            };
            let mut probes = vec![start, end - 1];
            for &s in &starts {
                probes.extend([s - 1, s, s + 1, s + p / 2, s + p - 1]);
            }
            for &ms in probes.iter().filter(|&&ms| start <= ms && ms < end) {
                let i = ((ms - starts[0]) / p) as usize;
                assert_eq!(buckets.bucket(ms), Some((starts[i], i)), "{ms}");
            }
            let mut numbers = Vec::new();
            buckets.numbers(&probes, &mut numbers);
            for (&ms, &number) in probes.iter().zip(&numbers) {
                let expected = buckets.bucket(ms).map_or(SKIP_ROW, |(_, i)| i as u32);
                assert_eq!(number, expected, "{ms}");
            }
            assert_eq!(buckets.bucket(end), None);
            assert_eq!(buckets.bucket(start - 1), None);
        }
    }

    fn grouped(keys: impl Iterator<Item = u32>, value: i64) -> Grouped {
        keys.map(|k| {
            (
                GroupKey {
                    bucket: i64::from(k % 3),
                    dims: vec![KeyValue::String(format!("k{k:04}"))],
                },
                vec![AggValue::Long(Some(value + i64::from(k)))],
            )
        })
        .collect()
    }

    /// Both merge strategies (a search per key when one side is much smaller, a linear merge
    /// otherwise) give the sums of every shared key and keep every other key.
    #[test]
    fn merges_of_any_relative_size_sum_shared_keys() {
        let aggs = AggDef::resolve(&[serde_json::from_value::<Aggregator>(
            serde_json::json!({"type": "longSum", "name": "n", "fieldName": "n"}),
        )
        .unwrap()])
        .unwrap();
        for (left, right) in [
            (0..1000, 990..1010),
            (0..100, 50..150),
            (0..10, 0..0),
            (5..6, 0..2000),
        ] {
            let mut into = grouped(left.clone(), 0);
            merge_grouped(&mut into, grouped(right.clone(), 1_000_000), &aggs);
            let expected: Vec<(GroupKey, i64)> = {
                let mut all: BTreeMap<GroupKey, i64> = BTreeMap::new();
                for (g, v) in grouped(left.clone(), 0)
                    .into_iter()
                    .chain(grouped(right.clone(), 1_000_000))
                {
                    let AggValue::Long(Some(n)) = v[0] else {
                        unreachable!()
                    };
                    *all.entry(g).or_default() += n;
                }
                all.into_iter().collect()
            };
            let got: Vec<(GroupKey, i64)> = into
                .into_iter()
                .map(|(g, v)| match v[0] {
                    AggValue::Long(Some(n)) => (g, n),
                    ref other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(got, expected, "{left:?} + {right:?}");
        }
    }
}
