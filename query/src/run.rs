//! Running each native query type: find the segments, run the per-segment engine, merge, finish.

use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use grove_segment::format::Segment;
use grove_segment::time::{Granularity, Interval, format_iso};

use crate::aggregate::{AggDef, compare_numbers};
use crate::column::{Column, TIME_COLUMN};
use crate::error::{QueryError, Result};
use crate::filter::PreparedFilter;
use crate::finalize::{finish_row, having_passes, key_json, sort_rows, timestamp};
use crate::granularity::QueryGranularity;
use crate::group::{
    ALL_BUCKET, GroupKey, GroupSpec, Grouped, KeyValue, TopGroups, group_segment, merge_grouped,
    row_range,
};
use crate::model::{self, MAX_GROUPS_DEFAULT, Ordering, Query, TopNMetric};
use crate::partial::{GroupRef, Merged, Merger, finish_merge};
use crate::result::{EventTable, QueryResult};
use crate::{QueryControl, SegmentProvider};

/// The fewest groups each segment keeps for a topN ranked by an aggregator (Druid's default
/// `minTopNThreshold`, which the query context may raise): like Druid's, the answer is exact
/// unless a value outside one segment's best 1,000 would have made the merged top.
const TOP_N_SEGMENT_MIN: usize = 1000;

/// How many bytes the merged groups of one query may take unless its context says otherwise
/// (`maxMergingDictionarySize`).
pub const MERGE_BYTES_DEFAULT: usize = 1 << 30;

/// A boolean context flag, as Druid reads them (JSON booleans or their text).
fn context_bool(context: &model::QueryContext, key: &str) -> Option<bool> {
    match context.other.get(key)? {
        Json::Bool(b) => Some(*b),
        Json::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// The bytes the merged groups may take: context `maxMergingDictionarySize`, or the default.
pub(crate) fn max_merge_bytes(context: &model::QueryContext) -> Result<usize> {
    match context.other.get("maxMergingDictionarySize") {
        None | Some(Json::Null) => Ok(MERGE_BYTES_DEFAULT),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_str()?.trim().parse().ok())
            .map(|n| n as usize)
            .ok_or_else(|| {
                QueryError::bad(format!(
                    "context maxMergingDictionarySize must be a number of bytes, got {v}"
                ))
            }),
    }
}

/// Most empty buckets a timeseries fills in; beyond this only buckets with rows are returned.
const FILL_BUCKETS_MAX: usize = 100_000;

pub fn run(
    query: &Query,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<QueryResult> {
    let nested = match query {
        Query::Scan(q) => q.data_source.1.is_some(),
        Query::Search(q) => q.data_source.1.is_some(),
        Query::TimeBoundary(q) => q.data_source.1.is_some(),
        Query::SegmentMetadata(q) => q.data_source.1.is_some(),
        Query::DataSourceMetadata(q) => q.data_source.1.is_some(),
        Query::GroupBy(_) | Query::Timeseries(_) | Query::TopN(_) => false,
    };
    if nested {
        return Err(QueryError::unsupported(
            "a query datasource under this query type (groupBy, timeseries and topN take one)",
        ));
    }
    let json = match query {
        Query::GroupBy(q) => return group_by(q, provider, control),
        Query::Timeseries(q) => timeseries(q, provider, control),
        Query::TopN(q) => top_n(q, provider, control),
        Query::Scan(q) => return crate::scan::scan(q, provider, control),
        Query::Search(q) => search(q, provider, control),
        Query::TimeBoundary(q) => time_boundary(q, provider, control),
        Query::SegmentMetadata(q) => segment_metadata(q, provider, control),
        Query::DataSourceMetadata(q) => data_source_metadata(q, provider, control),
    };
    json.map(QueryResult::Json)
}

/// The segments of a query, in time order (then by id, for a stable order).
pub(crate) fn segments_of(
    provider: &dyn SegmentProvider,
    data_source: &str,
    intervals: &[Interval],
) -> Vec<Arc<Segment>> {
    let mut segments = provider.segments(data_source, intervals);
    segments.sort_by(|a, b| {
        let (x, y) = (&a.meta().id, &b.meta().id);
        x.interval
            .cmp(&y.interval)
            .then_with(|| x.to_string().cmp(&y.to_string()))
    });
    segments
}

/// The union of the segments' intervals, if any.
fn span(segments: &[Arc<Segment>]) -> Option<Interval> {
    let start = segments
        .iter()
        .map(|s| s.meta().id.interval.start_ms)
        .min()?;
    let end = segments.iter().map(|s| s.meta().id.interval.end_ms).max()?;
    Some(Interval::new(start, end))
}

/// The timestamp Druid gives granularity `all` results: the query's start, or the data's start
/// when that is later.
pub(crate) fn all_timestamp(intervals: &[Interval], segments: &[Arc<Segment>]) -> i64 {
    let query_start = intervals
        .first()
        .map_or(Interval::ETERNITY.start_ms, |i| i.start_ms);
    span(segments).map_or(query_start, |s| s.start_ms.max(query_start))
}

fn bucket_timestamp(bucket: i64, all_ts: i64) -> Json {
    Json::String(bucket_text(bucket, all_ts))
}

fn bucket_text(bucket: i64, all_ts: i64) -> String {
    format_iso(if bucket == ALL_BUCKET { all_ts } else { bucket })
}

pub(crate) struct Grouping<'q> {
    pub(crate) data_source: &'q str,
    /// The inner query of a query datasource.
    pub(crate) inner: Option<&'q Query>,
    pub(crate) intervals: &'q [Interval],
    pub(crate) granularity: QueryGranularity,
    pub(crate) filter: Option<&'q grove_segment::filter::Filter>,
    /// Input columns (of the inner query's rows, for a query datasource).
    pub(crate) dimensions: Vec<String>,
    pub(crate) max_groups: u64,
    /// Bytes the merged groups may take (context `maxMergingDictionarySize`).
    pub(crate) max_bytes: usize,
    pub(crate) top: Option<TopGroups>,
}

impl<'q> Grouping<'q> {
    /// Grouping by `dimensions` with no group limit and no topN pruning.
    pub(crate) fn new(
        data_source: &'q model::DataSource,
        intervals: &'q model::Intervals,
        granularity: &QueryGranularity,
        filter: Option<&'q grove_segment::filter::Filter>,
        dimensions: Vec<String>,
    ) -> Grouping<'q> {
        Grouping {
            data_source: &data_source.0,
            inner: data_source.1.as_deref(),
            intervals: &intervals.0,
            granularity: granularity.clone(),
            filter,
            dimensions,
            max_groups: u64::MAX,
            max_bytes: usize::MAX,
            top: None,
        }
    }
}

/// Groups every segment of the query and merges the results by hash, in partitions.
pub(crate) fn group_all(
    g: &Grouping<'_>,
    aggs: &[AggDef],
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<(Merged, Vec<Arc<Segment>>)> {
    if let Some(inner) = g.inner {
        return crate::nested::group_nested(inner, g, aggs, provider, control);
    }
    let segments = segments_of(provider, g.data_source, g.intervals);
    let filter = g.filter.map(PreparedFilter::new).transpose()?;
    let spec = GroupSpec {
        intervals: g.intervals,
        granularity: g.granularity.clone(),
        filter: filter.as_ref(),
        dimensions: &g.dimensions,
        aggregators: aggs,
        max_groups: g.max_groups,
        top: g.top,
    };
    let threads = control.parallelism().clamp(1, segments.len().max(1));
    // A few partitions per thread, so the final merge spreads evenly over the threads.
    let partitions = if threads <= 1 { 1 } else { threads * 4 };
    let group_some = |part: &[Arc<Segment>]| -> Result<Merger<'_>> {
        let mut merger = Merger::new(aggs, partitions, g.max_groups, g.max_bytes);
        for segment in part {
            control.check()?;
            merger.add(group_segment(segment, &spec, control)?)?;
        }
        Ok(merger)
    };
    let mergers = if threads <= 1 {
        vec![group_some(&segments)?]
    } else {
        // Contiguous shares of the (time-ordered) segments, one per thread; merging is
        // associative, so the answer does not depend on how they are cut.
        let share = segments.len().div_ceil(threads);
        let group_some = &group_some;
        let parts: Vec<Result<Merger<'_>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = segments
                .chunks(share)
                .map(|part| scope.spawn(move || group_some(part)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(QueryError::internal("a query thread panicked")))
                })
                .collect()
        });
        parts.into_iter().collect::<Result<Vec<_>>>()?
    };
    let merged = finish_merge(mergers, aggs, threads, control)?;
    Ok((merged, segments))
}

fn check_names<'a>(names: impl Iterator<Item = &'a str>) -> Result<()> {
    let mut seen: Vec<&str> = Vec::new();
    for n in names {
        if seen.contains(&n) {
            return Err(QueryError::bad(format!(
                "output name '{n}' is used twice (dimensions, aggregators and post-aggregators \
                 need distinct names)"
            )));
        }
        seen.push(n);
    }
    Ok(())
}

fn timeseries(
    q: &model::Timeseries,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<Json> {
    let aggs = AggDef::resolve(&q.aggregations)?;
    check_names(
        aggs.iter()
            .map(|a| a.name.as_str())
            .chain(q.post_aggregations.iter().map(|p| p.name())),
    )?;
    let grouping = Grouping {
        max_groups: q.context.max_results.unwrap_or(MAX_GROUPS_DEFAULT),
        ..Grouping::new(
            &q.data_source,
            &q.intervals,
            &q.granularity,
            q.filter.as_ref(),
            Vec::new(),
        )
    };
    let (merged, segments) = group_all(&grouping, &aggs, provider, control)?;
    let mut merged = merged.into_grouped();
    if !q.context.skip_empty_buckets.unwrap_or(false)
        && let Some(span) = span(&segments)
    {
        fill_buckets(&mut merged, &q.granularity, &q.intervals.0, span, &aggs);
    }
    let all_ts = all_timestamp(&q.intervals.0, &segments);
    let mut out = Vec::with_capacity(merged.len());
    for (key, values) in merged {
        let mut result = Map::new();
        finish_row(&mut result, &aggs, &values, &q.post_aggregations)?;
        out.push(json!({"timestamp": bucket_timestamp(key.bucket, all_ts), "result": result}));
    }
    if q.descending {
        out.reverse();
    }
    if let Some(limit) = q.limit {
        out.truncate(limit);
    }
    Ok(Json::Array(out))
}

/// Adds empty groups for the buckets of `granularity` within the query intervals and the data's
/// span that have no rows (Druid's timeseries returns them, with zero counts and null sums).
fn fill_buckets(
    merged: &mut Grouped,
    granularity: &QueryGranularity,
    intervals: &[Interval],
    span: Interval,
    aggs: &[AggDef],
) {
    let empty = || aggs.iter().map(AggDef::empty).collect::<Vec<_>>();
    match granularity.base {
        Granularity::All => {
            if merged.is_empty() && intervals.iter().any(|i| i.overlaps(&span)) {
                merged.insert(
                    GroupKey {
                        bucket: ALL_BUCKET,
                        dims: Vec::new(),
                    },
                    empty(),
                );
            }
        }
        Granularity::None => {}
        _ => {
            let g = granularity;
            let mut filled = 0;
            for i in intervals {
                if !i.overlaps(&span) {
                    continue;
                }
                let clipped =
                    Interval::new(i.start_ms.max(span.start_ms), i.end_ms.min(span.end_ms));
                let mut b = g.truncate(clipped.start_ms);
                while b < clipped.end_ms && filled < FILL_BUCKETS_MAX {
                    merged
                        .entry(GroupKey {
                            bucket: b,
                            dims: Vec::new(),
                        })
                        .or_insert_with(empty);
                    filled += 1;
                    b = g.next(b);
                }
            }
        }
    }
}

fn top_n(
    q: &model::TopN,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<Json> {
    let aggs = AggDef::resolve(&q.aggregations)?;
    check_names(
        std::iter::once(q.dimension.output_name.as_str())
            .chain(aggs.iter().map(|a| a.name.as_str()))
            .chain(q.post_aggregations.iter().map(|p| p.name())),
    )?;
    let mut metric = &q.metric;
    let mut inverted = false;
    while let TopNMetric::Inverted(inner) = metric {
        inverted = !inverted;
        metric = inner;
    }
    if let TopNMetric::Numeric(name) = metric
        && !aggs.iter().any(|a| &a.name == name)
        && !q.post_aggregations.iter().any(|p| p.name() == name)
    {
        return Err(QueryError::bad(format!(
            "topN metric '{name}' is not an aggregator or post-aggregator of the query"
        )));
    }
    if q.threshold == 0 {
        return Err(QueryError::bad("topN threshold must be at least 1"));
    }
    let ranked_by = match metric {
        TopNMetric::Numeric(name) => aggs.iter().position(|a| &a.name == name),
        _ => None,
    };
    // Exact unless asked otherwise: each segment keeps every group, so nothing is pruned
    // before the segments (and the intervals within each) are combined.
    let approximate = context_bool(&q.context, "useApproximateTopN").unwrap_or(true);
    let grouping = Grouping {
        top: ranked_by.filter(|_| approximate).map(|i| TopGroups {
            aggregator: i,
            descending: !inverted,
            keep: q.threshold.max(
                q.context
                    .min_top_n_threshold
                    .map_or(TOP_N_SEGMENT_MIN, |k| k as usize),
            ),
        }),
        max_groups: q.context.max_results.unwrap_or(MAX_GROUPS_DEFAULT),
        max_bytes: max_merge_bytes(&q.context)?,
        ..Grouping::new(
            &q.data_source,
            &q.intervals,
            &q.granularity,
            q.filter.as_ref(),
            vec![q.dimension.dimension.clone()],
        )
    };
    let (mut merged, segments) = group_all(&grouping, &aggs, provider, control)?;
    // Per bucket, only the groups that can make the threshold (ties at its edge included)
    // become rows; the rest are never finalized.
    let mut refs = merged.refs();
    refs.sort_unstable_by_key(|&r| merged.bucket(r));
    let mut chosen: Vec<GroupRef> = Vec::new();
    let mut start = 0;
    while start < refs.len() {
        let b = merged.bucket(refs[start]);
        let end = start
            + refs[start..]
                .iter()
                .take_while(|&&r| merged.bucket(r) == b)
                .count();
        let bucket = refs[start..end].to_vec();
        match ranked_by {
            Some(a) => {
                let def = &aggs[a];
                let by = |x: GroupRef, y: GroupRef| {
                    let (u, v) = (merged.number(x, a, def), merged.number(y, a, def));
                    if inverted {
                        compare_numbers(u, v)
                    } else {
                        compare_numbers(v, u)
                    }
                };
                chosen.extend(merged.candidates(bucket, q.threshold, by));
            }
            None => chosen.extend(bucket),
        }
        start = end;
    }
    merged.sort_by_key(&mut chosen);
    // Groups become rows one at a time (ranked by a post-aggregator, every group is a
    // candidate: a million groups must not become a million rows at once).
    let merged = chosen.into_iter().map(|r| {
        (
            crate::partial::group_key(merged.key(r)),
            merged.take_values(r),
        )
    });
    let all_ts = all_timestamp(&q.intervals.0, &segments);
    let mut out = Vec::new();
    let mut bucket_rows: Vec<Map<String, Json>> = Vec::new();
    let mut current: Option<i64> = None;
    let mut flush = |bucket: Option<i64>, rows: &mut Vec<Map<String, Json>>| {
        if let Some(b) = bucket
            && !rows.is_empty()
        {
            rank_top_n(rows, metric, inverted, &q.dimension.output_name);
            rows.truncate(q.threshold);
            out.push(json!({
                "timestamp": bucket_timestamp(b, all_ts),
                "result": std::mem::take(rows),
            }));
        }
        rows.clear();
    };
    for (key, values) in merged {
        if current != Some(key.bucket) {
            flush(current, &mut bucket_rows);
            current = Some(key.bucket);
        }
        let value = key_json(key.dims[0].clone(), q.dimension.output_type);
        if let TopNMetric::Dimension {
            previous_stop: Some(stop),
            ..
        } = metric
        {
            let past = match &value {
                Json::String(s) => s.as_str() > stop.as_str(),
                _ => false,
            };
            if past == inverted {
                continue;
            }
        }
        let mut row = Map::new();
        row.insert(q.dimension.output_name.clone(), value);
        finish_row(&mut row, &aggs, &values, &q.post_aggregations)?;
        bucket_rows.push(row);
        // The ranking is a total order (ties go by dimension value), so cutting to the
        // threshold as rows arrive keeps what ranking them all would.
        if bucket_rows.len() >= 2 * q.threshold.max(512) {
            rank_top_n(&mut bucket_rows, metric, inverted, &q.dimension.output_name);
            bucket_rows.truncate(q.threshold);
            control.check()?;
        }
    }
    flush(current, &mut bucket_rows);
    Ok(Json::Array(out))
}

fn rank_top_n(rows: &mut [Map<String, Json>], metric: &TopNMetric, inverted: bool, dim: &str) {
    let null = Json::Null;
    match metric {
        TopNMetric::Numeric(name) => rows.sort_by(|a, b| {
            let x = a.get(name).and_then(Json::as_f64);
            let y = b.get(name).and_then(Json::as_f64);
            let ord = compare_numbers(x, y);
            let ord = if inverted { ord } else { ord.reverse() };
            // Ties: by dimension value, for a deterministic answer.
            ord.then_with(|| {
                crate::finalize::compare_json(
                    a.get(dim).unwrap_or(&null),
                    b.get(dim).unwrap_or(&null),
                    Ordering::Lexicographic,
                )
            })
        }),
        TopNMetric::Dimension { ordering, .. } => rows.sort_by(|a, b| {
            let ord = crate::finalize::compare_json(
                a.get(dim).unwrap_or(&null),
                b.get(dim).unwrap_or(&null),
                *ordering,
            );
            if inverted { ord.reverse() } else { ord }
        }),
        TopNMetric::Inverted(_) => unreachable!("unwrapped by the caller"),
    }
}

fn group_by(
    q: &model::GroupBy,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<QueryResult> {
    let aggs = AggDef::resolve(&q.aggregations)?;
    check_names(
        q.dimensions
            .iter()
            .map(|d| d.output_name.as_str())
            .chain(aggs.iter().map(|a| a.name.as_str()))
            .chain(q.post_aggregations.iter().map(|p| p.name())),
    )?;
    let grouping = Grouping {
        max_groups: q.context.max_results.unwrap_or(MAX_GROUPS_DEFAULT),
        max_bytes: max_merge_bytes(&q.context)?,
        ..Grouping::new(
            &q.data_source,
            &q.intervals,
            &q.granularity,
            q.filter.as_ref(),
            q.dimensions.iter().map(|d| d.dimension.clone()).collect(),
        )
    };
    let (merged, segments) = group_all(&grouping, &aggs, provider, control)?;
    let all_ts = all_timestamp(&q.intervals.0, &segments);
    if let Some(kind) = q
        .limit_spec
        .as_ref()
        .and_then(|l| l.kind.as_deref())
        .filter(|k| *k != "default")
    {
        return Err(QueryError::unsupported(format!("limitSpec type '{kind}'")));
    }
    let (offset, limit) = q
        .limit_spec
        .as_ref()
        .map_or((0, None), |l| (l.offset.unwrap_or(0), l.limit));
    // Rows that need no map of their own (nothing reads a row by name before it is written):
    // a table of values, written out without a map per row. Rows come in key order; with a
    // limit only the first `offset + limit` keys are picked (a selection, then a sort of those).
    if q.subtotals_spec.is_none()
        && q.having.is_none()
        && q.post_aggregations.is_empty()
        && q.limit_spec.as_ref().is_none_or(|l| l.columns.is_empty())
    {
        let mut merged = merged;
        let columns = q
            .dimensions
            .iter()
            .map(|d| d.output_name.clone())
            .chain(aggs.iter().map(|a| a.name.clone()))
            .collect();
        let mut refs = merged.refs();
        if let Some(n) = limit {
            refs = merged.candidates(refs, offset.saturating_add(n), |a, b| {
                crate::partial::compare_keys(merged.key(a), merged.key(b))
            });
        }
        merged.sort_by_key(&mut refs);
        let end = limit.map_or(refs.len(), |n| offset.saturating_add(n).min(refs.len()));
        let mut table = EventTable::new(columns);
        for (n, &r) in refs[offset.min(end)..end].iter().enumerate() {
            if n % 1024 == 1023 {
                control.check()?;
            }
            let values = merged.take_values(r);
            let key = merged.key(r);
            let dims = q
                .dimensions
                .iter()
                .zip(crate::partial::key_dims(key))
                .map(|(d, v)| key_json(v.to_owned(), d.output_type));
            let bucket = crate::partial::key_bucket(key);
            let metrics = aggs.iter().zip(&values).map(|(def, v)| def.finalize(v));
            table.push(bucket, |b| bucket_text(b, all_ts), dims.chain(metrics));
        }
        return Ok(QueryResult::Events(table));
    }
    // Ordered by an aggregator first, with a limit and nothing that drops rows before it:
    // only the groups that can make the limit in their bucket (ties at its edge included)
    // become rows, and the usual sort below orders them.
    let ranked_by = q
        .limit_spec
        .as_ref()
        .filter(|l| l.limit.is_some() && q.having.is_none() && q.subtotals_spec.is_none())
        .and_then(|l| l.columns.first())
        .and_then(|c| {
            let a = aggs.iter().position(|a| a.name == c.dimension)?;
            let shadowed = q.post_aggregations.iter().any(|p| p.name() == c.dimension);
            (!shadowed).then_some((a, c.descending))
        });
    let merged: Grouped = match (ranked_by, limit) {
        (Some((a, descending)), Some(n)) => {
            let mut merged = merged;
            let def = &aggs[a];
            let by = |x: GroupRef, y: GroupRef| {
                let (u, v) = (merged.number(x, a, def), merged.number(y, a, def));
                if descending {
                    compare_numbers(v, u)
                } else {
                    compare_numbers(u, v)
                }
            };
            let mut refs = merged.refs();
            refs.sort_unstable_by_key(|&r| merged.bucket(r));
            // Rows before the limit's end: buckets in time order, each cut to what it can add.
            let mut need = offset.saturating_add(n);
            let mut chosen = Vec::new();
            let mut start = 0;
            while start < refs.len() && need > 0 {
                let b = merged.bucket(refs[start]);
                let end = start
                    + refs[start..]
                        .iter()
                        .take_while(|&&r| merged.bucket(r) == b)
                        .count();
                chosen.extend(merged.candidates(refs[start..end].to_vec(), need, by));
                need = need.saturating_sub(end - start);
                start = end;
            }
            merged.sort_by_key(&mut chosen);
            chosen
                .into_iter()
                .map(|r| {
                    (
                        crate::partial::group_key(merged.key(r)),
                        merged.take_values(r),
                    )
                })
                .collect()
        }
        _ => merged.into_grouped(),
    };
    let subtotals: Vec<Option<Vec<usize>>> = match &q.subtotals_spec {
        None => vec![None],
        Some(specs) => specs
            .iter()
            .map(|names| {
                names
                    .iter()
                    .map(|n| {
                        q.dimensions.iter().position(|d| &d.output_name == n).ok_or_else(|| {
                            QueryError::bad(format!(
                                "subtotalsSpec names '{n}', which is not a dimension of the query"
                            ))
                        })
                    })
                    .collect::<Result<Vec<_>>>()
                    .map(Some)
            })
            .collect::<Result<_>>()?,
    };
    let metric_names: Vec<&str> = aggs
        .iter()
        .map(|a| a.name.as_str())
        .chain(q.post_aggregations.iter().map(|p| p.name()))
        .collect();
    let mut out = Vec::new();
    let mut merged = Some(merged);
    let last = subtotals.len().saturating_sub(1);
    for (n, subset) in subtotals.into_iter().enumerate() {
        // The last use of the merged groups takes them; earlier subtotals re-key a view.
        let source = if n == last {
            merged.take().unwrap_or_default()
        } else {
            merged.clone().unwrap_or_default()
        };
        let grouped = match &subset {
            None => source,
            Some(keep) => {
                let mut regrouped = Grouped::new();
                for (key, values) in &source {
                    let dims = (0..key.dims.len())
                        .map(|i| {
                            if keep.contains(&i) {
                                key.dims[i].clone()
                            } else {
                                KeyValue::Null
                            }
                        })
                        .collect();
                    let mut one = Grouped::new();
                    one.insert(
                        GroupKey {
                            bucket: key.bucket,
                            dims,
                        },
                        values.clone(),
                    );
                    merge_grouped(&mut regrouped, one, &aggs);
                }
                regrouped
            }
        };
        let mut rows: Vec<(i64, Map<String, Json>)> = Vec::with_capacity(grouped.len());
        for (key, values) in grouped {
            control.check()?;
            let mut event = Map::new();
            for (i, (d, v)) in q.dimensions.iter().zip(&key.dims).enumerate() {
                if subset.as_ref().is_none_or(|keep| keep.contains(&i)) {
                    event.insert(d.output_name.clone(), key_json(v.clone(), d.output_type));
                }
            }
            finish_row(&mut event, &aggs, &values, &q.post_aggregations)?;
            if let Some(h) = &q.having
                && !having_passes(h, &event)?
            {
                continue;
            }
            rows.push((key.bucket, event));
        }
        if let Some(limit) = q.limit_spec.as_ref().filter(|l| !l.columns.is_empty()) {
            // Rows stay in time order across buckets unless granularity is all.
            let mut sorted: Vec<Map<String, Json>> = Vec::with_capacity(rows.len());
            let mut buckets: Vec<i64> = Vec::with_capacity(rows.len());
            let mut start = 0;
            while start < rows.len() {
                let b = rows[start].0;
                let end = start + rows[start..].iter().take_while(|r| r.0 == b).count();
                let mut chunk: Vec<Map<String, Json>> =
                    rows[start..end].iter().map(|r| r.1.clone()).collect();
                sort_rows(&mut chunk, &limit.columns, &metric_names);
                buckets.extend(std::iter::repeat_n(b, chunk.len()));
                sorted.extend(chunk);
                start = end;
            }
            rows = buckets.into_iter().zip(sorted).collect();
        }
        rows.drain(..offset.min(rows.len()));
        if let Some(n) = limit {
            rows.truncate(n);
        }
        // Rows of one bucket are adjacent: format each bucket's timestamp once.
        let mut stamp: Option<(i64, Json)> = None;
        for (bucket, event) in rows {
            let timestamp = match &stamp {
                Some((b, text)) if *b == bucket => text.clone(),
                _ => stamp
                    .insert((bucket, bucket_timestamp(bucket, all_ts)))
                    .1
                    .clone(),
            };
            out.push(json!({
                "version": "v1",
                "timestamp": timestamp,
                "event": event,
            }));
        }
    }
    Ok(QueryResult::Json(Json::Array(out)))
}

/// The rows of `segment` within `intervals` that pass `filter`, ascending per interval (ascending
/// overall when its rows are not in time order: each row's timestamp is checked instead).
pub(crate) fn matching_rows(
    segment: &Segment,
    intervals: &[Interval],
    filter: Option<&PreparedFilter>,
) -> Result<Vec<u32>> {
    let time = segment.time()?;
    let mut out = Vec::new();
    if !segment.meta().schema.time_sorted() {
        let all = 0..segment.num_rows() as u32;
        let mut cursor = crate::column::LongCursor::new(time);
        let mut keep = |r: u32| {
            let t = cursor.get(r);
            intervals.iter().any(|i| i.contains(t))
        };
        match filter {
            None => out.extend(all.filter(|&r| keep(r))),
            Some(f) => out.extend(f.rows(segment, all)?.iter().filter(|&r| keep(r))),
        }
        return Ok(out);
    }
    for i in intervals {
        let range = row_range(&time, *i);
        if range.is_empty() {
            continue;
        }
        match filter {
            None => out.extend(range),
            Some(f) => out.extend(f.rows(segment, range)?.iter()),
        }
    }
    Ok(out)
}

fn search(
    q: &model::Search,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<Json> {
    let segments = segments_of(provider, &q.data_source.0, &q.intervals.0);
    let dims: Vec<String> = if q.search_dimensions.is_empty() {
        let mut names = Vec::new();
        for s in &segments {
            for d in &s.meta().schema.dimensions {
                if d.value_type == grove_segment::schema::ValueType::String
                    && !names.contains(&d.name)
                {
                    names.push(d.name.clone());
                }
            }
        }
        names
    } else {
        q.search_dimensions
            .iter()
            .map(|d| d.dimension.clone())
            .collect()
    };
    let matcher = SearchMatcher::new(&q.query)?;
    let count = AggDef::resolve(&[model::Aggregator::Count {
        name: "count".into(),
    }])?;
    // (bucket, dimension, value) -> count
    let mut hits: std::collections::BTreeMap<(i64, String, String), i64> = Default::default();
    for dim in &dims {
        let grouping = Grouping::new(
            &q.data_source,
            &q.intervals,
            &q.granularity,
            q.filter.as_ref(),
            vec![dim.clone()],
        );
        let (merged, _) = group_all(&grouping, &count, provider, control)?;
        let merged = merged.into_grouped();
        for (key, values) in merged {
            let text = match &key.dims[0] {
                KeyValue::Null => continue,
                KeyValue::String(s) => s.clone(),
                KeyValue::Long(v) => v.to_string(),
                KeyValue::Double(v) => grove_segment::row::format_double(*v),
            };
            if matcher.matches(&text) {
                let n = count[0].numeric(&values[0]).unwrap_or(0.0) as i64;
                *hits.entry((key.bucket, dim.clone(), text)).or_default() += n;
            }
        }
    }
    let all_ts = all_timestamp(&q.intervals.0, &segments);
    let ordering = q
        .sort
        .as_ref()
        .map_or(Ordering::Lexicographic, |s| s.ordering);
    let mut out = Vec::new();
    let mut current: Option<i64> = None;
    let mut rows: Vec<(String, String, i64)> = Vec::new();
    let mut flush = |bucket: Option<i64>, rows: &mut Vec<(String, String, i64)>| {
        if let Some(b) = bucket {
            rows.sort_by(|a, b| {
                crate::finalize::compare_json(
                    &Json::String(a.1.clone()),
                    &Json::String(b.1.clone()),
                    ordering,
                )
                .then_with(|| a.0.cmp(&b.0))
            });
            rows.truncate(q.limit);
            let result: Vec<Json> = rows
                .drain(..)
                .map(|(d, v, n)| json!({"dimension": d, "value": v, "count": n}))
                .collect();
            out.push(json!({"timestamp": bucket_timestamp(b, all_ts), "result": result}));
        }
        rows.clear();
    };
    for ((bucket, dim, value), n) in hits {
        if current != Some(bucket) {
            flush(current, &mut rows);
            current = Some(bucket);
        }
        rows.push((dim, value, n));
    }
    flush(current, &mut rows);
    Ok(Json::Array(out))
}

enum SearchMatcher {
    Contains(String, bool),
    Fragment(Vec<String>, bool),
    Regex(regex::Regex),
}

impl SearchMatcher {
    fn new(spec: &model::SearchSpec) -> Result<SearchMatcher> {
        Ok(match spec {
            model::SearchSpec::Contains {
                value,
                case_sensitive,
            } => SearchMatcher::Contains(fold(value, *case_sensitive), *case_sensitive),
            model::SearchSpec::InsensitiveContains { value } => {
                SearchMatcher::Contains(value.to_lowercase(), false)
            }
            model::SearchSpec::Fragment {
                values,
                case_sensitive,
            } => SearchMatcher::Fragment(
                values.iter().map(|v| fold(v, *case_sensitive)).collect(),
                *case_sensitive,
            ),
            model::SearchSpec::Regex { pattern } => SearchMatcher::Regex(
                regex::Regex::new(pattern)
                    .map_err(|e| QueryError::bad(format!("search regex '{pattern}': {e}")))?,
            ),
        })
    }

    fn matches(&self, value: &str) -> bool {
        match self {
            SearchMatcher::Contains(needle, cs) => fold(value, *cs).contains(needle.as_str()),
            SearchMatcher::Fragment(needles, cs) => {
                let v = fold(value, *cs);
                needles.iter().all(|n| v.contains(n.as_str()))
            }
            SearchMatcher::Regex(r) => r.is_match(value),
        }
    }
}

fn fold(s: &str, case_sensitive: bool) -> String {
    if case_sensitive {
        s.to_string()
    } else {
        s.to_lowercase()
    }
}

fn time_boundary(
    q: &model::TimeBoundary,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<Json> {
    let segments = segments_of(provider, &q.data_source.0, &q.intervals.0);
    let filter = q.filter.as_ref().map(PreparedFilter::new).transpose()?;
    let (mut min, mut max): (Option<i64>, Option<i64>) = (None, None);
    for segment in &segments {
        control.check()?;
        let time = segment.time()?;
        if !segment.meta().schema.time_sorted() {
            let mut cursor = crate::column::LongCursor::new(time);
            for r in matching_rows(segment, &q.intervals.0, filter.as_ref())? {
                let t = cursor.get(r);
                min = Some(min.map_or(t, |m| m.min(t)));
                max = Some(max.map_or(t, |m| m.max(t)));
            }
            continue;
        }
        for i in &q.intervals.0 {
            let range = row_range(&time, *i);
            if range.is_empty() {
                continue;
            }
            let (first, last) = match &filter {
                None => (Some(range.start), Some(range.end - 1)),
                Some(f) => {
                    let rows = f.rows(segment, range)?;
                    (rows.min(), rows.max())
                }
            };
            if let (Some(a), Some(b)) = (first, last) {
                let (ta, tb) = (time.get(a as usize), time.get(b as usize));
                min = Some(min.map_or(ta, |m| m.min(ta)));
                max = Some(max.map_or(tb, |m| m.max(tb)));
            }
        }
    }
    let (Some(min), Some(max)) = (min, max) else {
        return Ok(Json::Array(Vec::new()));
    };
    Ok(match q.bound.as_deref() {
        None => {
            json!([{"timestamp": timestamp(min), "result": {"minTime": timestamp(min), "maxTime": timestamp(max)}}])
        }
        Some("minTime") => {
            json!([{"timestamp": timestamp(min), "result": {"minTime": timestamp(min)}}])
        }
        Some("maxTime") => {
            json!([{"timestamp": timestamp(max), "result": {"maxTime": timestamp(max)}}])
        }
        Some(other) => {
            return Err(QueryError::bad(format!(
                "timeBoundary bound '{other}' (minTime or maxTime)"
            )));
        }
    })
}

fn data_source_metadata(
    q: &model::DataSourceMetadata,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<Json> {
    control.check()?;
    let segments = segments_of(provider, &q.data_source.0, &[Interval::ETERNITY]);
    let max = segments
        .iter()
        .filter(|s| s.num_rows() > 0)
        .map(|s| s.meta().time_max_ms)
        .max();
    Ok(match max {
        None => json!([]),
        Some(m) => {
            json!([{"timestamp": timestamp(m), "result": {"maxIngestedEventTime": timestamp(m)}}])
        }
    })
}

fn segment_metadata(
    q: &model::SegmentMetadata,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<Json> {
    let analyses: Vec<String> = q
        .analysis_types
        .clone()
        .unwrap_or_else(|| vec!["cardinality".into(), "interval".into(), "minmax".into()]);
    let wants = |a: &str| analyses.iter().any(|x| x.eq_ignore_ascii_case(a));
    let include: Option<Vec<String>> = match &q.to_include {
        None => None,
        Some(v) => match v.get("type").and_then(Json::as_str) {
            Some("all") => None,
            Some("none") => Some(Vec::new()),
            Some("list") => Some(
                v.get("columns")
                    .and_then(Json::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|c| c.as_str().map(String::from))
                            .collect()
                    })
                    .unwrap_or_default(),
            ),
            _ => return Err(QueryError::bad("toInclude type must be all, none or list")),
        },
    };
    let segments = segments_of(provider, &q.data_source.0, &q.intervals.0);
    let mut out = Vec::new();
    for segment in &segments {
        control.check()?;
        let meta = segment.meta();
        let schema = &meta.schema;
        let mut columns = Map::new();
        let mut names = vec![TIME_COLUMN.to_string()];
        names.extend(schema.dimensions.iter().map(|d| d.name.clone()));
        names.extend(schema.metrics.iter().map(|m| m.name.clone()));
        for name in names {
            if include.as_ref().is_some_and(|l| !l.contains(&name)) {
                continue;
            }
            let column = Column::of(segment, &name)?;
            let (kind, multi, cardinality, min, max, has_nulls) = match column {
                Column::String(s) => {
                    let mut first = None;
                    let mut last = None;
                    s.for_each_value(|_, v| {
                        if let Some(v) = v {
                            if first.is_none() {
                                first = Some(v.to_string());
                            }
                            last = Some(v.to_string());
                        }
                    })?;
                    (
                        "STRING",
                        s.is_multi_value(),
                        Json::from(s.dictionary_len() - s.has_null() as usize),
                        first.map_or(Json::Null, Json::String),
                        last.map_or(Json::Null, Json::String),
                        s.has_null(),
                    )
                }
                Column::Long { nulls, .. } => (
                    "LONG",
                    false,
                    Json::Null,
                    Json::Null,
                    Json::Null,
                    nulls.is_some(),
                ),
                Column::Double { nulls, .. } => (
                    "DOUBLE",
                    false,
                    Json::Null,
                    Json::Null,
                    Json::Null,
                    nulls.is_some(),
                ),
                Column::Sketch(_) => (
                    "COMPLEX<HLLSketch>",
                    false,
                    Json::Null,
                    Json::Null,
                    Json::Null,
                    false,
                ),
                Column::Missing => continue,
            };
            let mut c = Map::new();
            c.insert("typeSignature".into(), json!(kind));
            c.insert(
                "type".into(),
                json!(if kind.starts_with("COMPLEX") {
                    "HLLSketch"
                } else {
                    kind
                }),
            );
            c.insert("hasMultipleValues".into(), json!(multi));
            c.insert("hasNulls".into(), json!(has_nulls));
            c.insert("size".into(), json!(0));
            c.insert(
                "cardinality".into(),
                if wants("cardinality") {
                    cardinality
                } else {
                    Json::Null
                },
            );
            c.insert(
                "minValue".into(),
                if wants("minmax") { min } else { Json::Null },
            );
            c.insert(
                "maxValue".into(),
                if wants("minmax") { max } else { Json::Null },
            );
            c.insert("errorMessage".into(), Json::Null);
            columns.insert(name, Json::Object(c));
        }
        let mut entry = Map::new();
        entry.insert("id".into(), json!(meta.id.to_string()));
        entry.insert(
            "intervals".into(),
            if wants("interval") {
                json!([meta.id.interval.to_string()])
            } else {
                Json::Null
            },
        );
        entry.insert("columns".into(), Json::Object(columns));
        entry.insert("size".into(), json!(segment.file_bytes()));
        entry.insert("numRows".into(), json!(segment.num_rows()));
        entry.insert(
            "aggregators".into(),
            if wants("aggregators") {
                Json::Object(
                    schema
                        .metrics
                        .iter()
                        .map(|m| (m.name.clone(), metric_aggregator_json(m)))
                        .collect(),
                )
            } else {
                Json::Null
            },
        );
        entry.insert("timestampSpec".into(), Json::Null);
        entry.insert(
            "queryGranularity".into(),
            if wants("queryGranularity") {
                serde_json::to_value(schema.query_granularity).unwrap_or(Json::Null)
            } else {
                Json::Null
            },
        );
        entry.insert(
            "rollup".into(),
            if wants("rollup") {
                json!(schema.rollup)
            } else {
                Json::Null
            },
        );
        out.push(Json::Object(entry));
    }
    if q.merge && out.len() > 1 {
        out = vec![merge_metadata(out)];
    }
    Ok(Json::Array(out))
}

fn metric_aggregator_json(m: &grove_segment::schema::MetricSchema) -> Json {
    use grove_segment::schema::MetricKind as K;
    let kind = match m.kind {
        K::Count => "count",
        K::LongSum => "longSum",
        K::LongMin => "longMin",
        K::LongMax => "longMax",
        K::DoubleSum => "doubleSum",
        K::DoubleMin => "doubleMin",
        K::DoubleMax => "doubleMax",
        K::HllSketch { lg_k, .. } => {
            return json!({"type": "HLLSketchMerge", "name": m.name, "fieldName": m.name, "lgK": lg_k});
        }
    };
    // Stored metrics are re-aggregated by their combining aggregator over the metric column.
    let kind = if kind == "count" { "longSum" } else { kind };
    json!({"type": kind, "name": m.name, "fieldName": m.name})
}

/// Druid's `merge: true`: one entry for all segments, cardinalities as the maximum (an
/// estimate, as in Druid), sizes and row counts summed.
fn merge_metadata(entries: Vec<Json>) -> Json {
    let mut merged = entries[0].clone();
    let mut rows = 0u64;
    let mut size = 0u64;
    let mut intervals = Vec::new();
    for e in &entries {
        rows += e["numRows"].as_u64().unwrap_or(0);
        size += e["size"].as_u64().unwrap_or(0);
        if let Some(a) = e["intervals"].as_array() {
            intervals.extend(a.iter().cloned());
        }
        if let (Some(into), Some(cols)) =
            (merged["columns"].as_object_mut(), e["columns"].as_object())
        {
            for (name, c) in cols {
                let slot = into.entry(name.clone()).or_insert_with(|| c.clone());
                if let (Some(a), Some(b)) =
                    (slot["cardinality"].as_u64(), c["cardinality"].as_u64())
                {
                    slot["cardinality"] = json!(a.max(b));
                }
                for (key, pick_min) in [("minValue", true), ("maxValue", false)] {
                    if let (Some(a), Some(b)) = (slot[key].as_str(), c[key].as_str()) {
                        let better = if pick_min { b < a } else { b > a };
                        if better {
                            slot[key] = json!(b);
                        }
                    }
                }
            }
        }
    }
    merged["id"] = json!("merged");
    merged["numRows"] = json!(rows);
    merged["size"] = json!(size);
    if merged["intervals"].is_array() {
        merged["intervals"] = Json::Array(intervals);
    }
    merged
}
