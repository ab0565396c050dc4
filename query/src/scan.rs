//! The scan query: rows as they are stored, each a batch per segment, bounded before they are
//! written.
//!
//! Bounds ([`crate::QueryLimits`], each a resource-limit error naming it and how to raise it):
//! - **rows**: a scan returns at most `maxScanRows` rows (context; default
//!   `scan_rows_max`, 1,000,000). Rows are counted before any is written, so a scan over
//!   millions of rows without a limit fails at once instead of building its answer.
//! - **ordering**: a time-ordered scan keeps its offset + limit best rows (at most the row
//!   bound + 1 past its offset, which may not pass the row bound) in a heap as rows stream
//!   past. Past `maxRowsQueuedForOrdering` (Druid's name and default, 100,000), where Druid
//!   merges its time-sorted segments, it is refused as Druid refuses it when a time chunk has
//!   more segments than `maxSegmentPartitionsOrderedInMemory` (default 50), in Druid's words.
//! - **bytes**: the answer is written straight to its JSON text (keys in the order a JSON map
//!   would sort them, so it is the text the tree would give) and stops as soon as it passes
//!   `result_bytes_max`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;

use grove_segment::format::Segment;
use grove_segment::row::Value;

use crate::column::{Column, LongCursor, TIME_COLUMN, value_json};
use crate::error::{QueryError, Result, thousands};
use crate::filter::PreparedFilter;
use crate::model::{self, ScanOrder};
use crate::result::QueryResult;
use crate::run::{matching_rows, segments_of};
use crate::{QueryControl, SegmentProvider};

pub(crate) fn scan(
    q: &model::Scan,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<QueryResult> {
    let compacted = match q.result_format.as_deref() {
        None | Some("list") => false,
        Some("compactedList") => true,
        Some(other) => {
            return Err(QueryError::bad(format!(
                "scan resultFormat '{other}' (list or compactedList)"
            )));
        }
    };
    let limits = control.limits();
    let rows_max = q.context.max_scan_rows.unwrap_or(limits.scan_rows_max);
    let segments = segments_of(provider, &q.data_source.0, &q.intervals.0);
    let columns = if q.columns.is_empty() {
        default_columns(&segments)
    } else {
        q.columns.clone()
    };
    let order = q.order.unwrap_or(ScanOrder::None);
    let offset = q.offset.unwrap_or(0);
    let limit = q.limit.unwrap_or(u64::MAX);
    let filter = q.filter.as_ref().map(PreparedFilter::new).transpose()?;
    // One row past the bound is enough to know it is passed.
    let taken = limit.min(rows_max.saturating_add(1));
    let picked = if order == ScanOrder::None {
        pick_in_storage_order(q, &segments, filter.as_ref(), offset, taken, control)?
    } else {
        if offset > rows_max {
            return Err(QueryError::resource_limit(format!(
                "a time-ordered Scan query holds its offset's rows to order them: an offset of \
                 {} is more than maxScanRows ({}); lower the offset or raise maxScanRows in the \
                 query context",
                thousands(offset),
                thousands(rows_max)
            )));
        }
        let picked = pick_in_time_order(q, &segments, filter.as_ref(), offset + taken, control)?;
        picked[offset.min(picked.len() as u64) as usize..].to_vec()
    };
    if picked.len() as u64 > rows_max {
        return Err(too_many_rows(rows_max));
    }
    write_batches(
        &segments,
        &columns,
        &picked,
        compacted,
        limits.result_bytes_max,
        control,
    )
    .map(QueryResult::Text)
}

/// The `taken` matching rows after the first `offset` as (segment, row), segments in time
/// order, rows in storage order; the skipped rows are counted, not held.
fn pick_in_storage_order(
    q: &model::Scan,
    segments: &[Arc<Segment>],
    filter: Option<&PreparedFilter>,
    mut offset: u64,
    taken: u64,
    control: &dyn QueryControl,
) -> Result<Vec<(usize, u32)>> {
    let mut picked = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let left = taken - picked.len() as u64;
        if left == 0 {
            break;
        }
        control.check()?;
        let rows = matching_rows(segment, &q.intervals.0, filter)?;
        let skipped = offset.min(rows.len() as u64);
        offset -= skipped;
        picked.extend(
            rows.into_iter()
                .skip(skipped as usize)
                .take(left as usize)
                .map(|r| (i, r)),
        );
    }
    Ok(picked)
}

/// The first `wanted` matching rows in time order (ties by segment, then row; descending
/// reverses all three), kept in a heap of at most `wanted` rows as the rows stream past, so
/// its memory is bounded by the row bound whatever the number of matching rows. Past
/// `maxRowsQueuedForOrdering`, where Druid merges time-sorted segments instead, the query is
/// refused as Druid refuses it when a time chunk has more segments than
/// `maxSegmentPartitionsOrderedInMemory`.
fn pick_in_time_order(
    q: &model::Scan,
    segments: &[Arc<Segment>],
    filter: Option<&PreparedFilter>,
    wanted: u64,
    control: &dyn QueryControl,
) -> Result<Vec<(usize, u32)>> {
    let descending = q.order == Some(ScanOrder::Descending);
    let limits = control.limits();
    let queued_max = q
        .context
        .max_rows_queued_for_ordering
        .unwrap_or(limits.rows_queued_for_ordering_max);
    let asked = q
        .offset
        .unwrap_or(0)
        .saturating_add(q.limit.unwrap_or(u64::MAX));
    if asked > queued_max {
        let partitions_max = q
            .context
            .max_segment_partitions_ordered_in_memory
            .unwrap_or(SEGMENT_PARTITIONS_ORDERED_MAX);
        let per_chunk = partitions_per_time_chunk(segments);
        if per_chunk > partitions_max {
            let asked = match q.limit {
                Some(limit) => format!("a row limit of {}", thousands(limit)),
                None => "no row limit".to_string(),
            };
            return Err(QueryError::resource_limit(format!(
                "Time ordering is not supported for a Scan query with {per_chunk} segments per \
                 time chunk and {asked}. Try reducing the query limit below \
                 maxRowsQueuedForOrdering (currently {}), or compacting to fewer segments per \
                 time chunk, or raising maxSegmentPartitionsOrderedInMemory (currently {}) \
                 above the number of segments per time chunk.",
                thousands(queued_max),
                thousands(partitions_max)
            )));
        }
    }
    let wanted = wanted.min(usize::MAX as u64) as usize;
    if wanted == 0 {
        return Ok(Vec::new());
    }
    // A heap of the best rows so far whose top is the first to give way (`Reverse`d for a
    // descending scan, whose best rows are the latest).
    let mut earliest: BinaryHeap<(i64, usize, u32)> = BinaryHeap::new();
    let mut latest: BinaryHeap<Reverse<(i64, usize, u32)>> = BinaryHeap::new();
    for (i, segment) in segments.iter().enumerate() {
        control.check()?;
        let rows = matching_rows(segment, &q.intervals.0, filter)?;
        let mut time = LongCursor::new(segment.time()?);
        for (n, row) in rows.into_iter().enumerate() {
            let key = (time.get(row), i, row);
            if descending {
                keep_best(&mut latest, Reverse(key), wanted);
            } else {
                keep_best(&mut earliest, key, wanted);
            }
            if n % 65_536 == 65_535 {
                control.check()?;
            }
        }
    }
    let keys: Vec<(i64, usize, u32)> = if descending {
        latest
            .into_sorted_vec()
            .into_iter()
            .map(|Reverse(key)| key)
            .collect()
    } else {
        earliest.into_sorted_vec()
    };
    Ok(keys.into_iter().map(|(_, i, r)| (i, r)).collect())
}

/// Druid's default `maxSegmentPartitionsOrderedInMemory`.
const SEGMENT_PARTITIONS_ORDERED_MAX: u64 = 50;

/// The most segments any one time chunk (segment interval) of `segments` has.
fn partitions_per_time_chunk(segments: &[Arc<Segment>]) -> u64 {
    let mut intervals: Vec<_> = segments.iter().map(|s| s.meta().id.interval).collect();
    intervals.sort_unstable();
    intervals
        .chunk_by(|a, b| a == b)
        .map(|chunk| chunk.len() as u64)
        .max()
        .unwrap_or(0)
}

fn too_many_rows(rows_max: u64) -> QueryError {
    QueryError::resource_limit(format!(
        "Scan query returns more than {} rows (maxScanRows): add a limit, narrow its intervals \
         or filter, or raise maxScanRows in the query context",
        thousands(rows_max)
    ))
}

/// Adds `key` to `heap` (the `wanted` smallest keys so far) if it belongs there.
fn keep_best<K: Ord>(heap: &mut BinaryHeap<K>, key: K, wanted: usize) {
    if heap.len() < wanted {
        heap.push(key);
    } else if heap.peek().is_some_and(|top| key < *top) {
        heap.pop();
        heap.push(key);
    }
}

/// The columns a scan returns by default: `__time`, dimensions, metrics of every segment.
fn default_columns(segments: &[Arc<Segment>]) -> Vec<String> {
    let mut out = vec![TIME_COLUMN.to_string()];
    for s in segments {
        let schema = &s.meta().schema;
        for name in schema
            .dimensions
            .iter()
            .map(|d| &d.name)
            .chain(schema.metrics.iter().map(|m| &m.name))
        {
            if !out.contains(name) {
                out.push(name.clone());
            }
        }
    }
    out
}

/// The answer's JSON text: consecutive rows of one segment form one batch, as Druid's do. The
/// text is what `serde_json` writes for the same tree (object keys sorted, one key per name).
fn write_batches(
    segments: &[Arc<Segment>],
    columns: &[String],
    picked: &[(usize, u32)],
    compacted: bool,
    bytes_max: u64,
    control: &dyn QueryControl,
) -> Result<String> {
    // An event object's keys, sorted and unique, with the column each takes its value from.
    let mut keyed: Vec<(String, usize)> = columns
        .iter()
        .enumerate()
        .map(|(i, name)| (json_text(&serde_json::Value::from(name.as_str())), i))
        .collect();
    keyed.sort_by(|a, b| columns[a.1].cmp(&columns[b.1]));
    keyed.dedup_by(|later, earlier| columns[later.1] == columns[earlier.1]);
    let columns_text = json_text(&serde_json::Value::from(columns.to_vec()));
    let too_large = || {
        QueryError::resource_limit(format!(
            "the query's result is larger than {} bytes (the server's result-bytes-max): add a \
             limit, select fewer columns or narrow its intervals or filter, or raise \
             --result-bytes-max",
            thousands(bytes_max)
        ))
    };
    let mut out: Vec<u8> = Vec::new();
    out.push(b'[');
    let mut value = Value::Null;
    let mut cells: Vec<serde_json::Value> = Vec::with_capacity(columns.len());
    let mut start = 0;
    while start < picked.len() {
        control.check()?;
        let seg = picked[start].0;
        let end = start + picked[start..].iter().take_while(|p| p.0 == seg).count();
        let segment = &segments[seg];
        let mut cursors = columns
            .iter()
            .map(|c| Column::of(segment, c).map(|col| (col, col.values())))
            .collect::<Result<Vec<_>>>()?;
        if start > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"columns\":");
        out.extend_from_slice(columns_text.as_bytes());
        out.extend_from_slice(b",\"events\":[");
        for (n, &(_, row)) in picked[start..end].iter().enumerate() {
            cells.clear();
            for (column, cursor) in cursors.iter_mut() {
                cells.push(match column {
                    Column::Sketch(s) => serde_json::Value::String(hex(s.get(row as usize))),
                    _ => {
                        cursor.read(row, &mut value)?;
                        value_json(&value)
                    }
                });
            }
            if n > 0 {
                out.push(b',');
            }
            if compacted {
                write_json(
                    &mut out,
                    &serde_json::Value::Array(std::mem::take(&mut cells)),
                );
            } else {
                out.push(b'{');
                for (k, (key, column)) in keyed.iter().enumerate() {
                    if k > 0 {
                        out.push(b',');
                    }
                    out.extend_from_slice(key.as_bytes());
                    out.push(b':');
                    write_json(&mut out, &cells[*column]);
                }
                out.push(b'}');
            }
            if out.len() as u64 > bytes_max {
                return Err(too_large());
            }
        }
        out.extend_from_slice(b"],\"segmentId\":");
        write_json(&mut out, &segment.meta().id.to_string().into());
        out.push(b'}');
        start = end;
    }
    out.push(b']');
    if out.len() as u64 > bytes_max {
        return Err(too_large());
    }
    Ok(String::from_utf8(out).expect("JSON text is UTF-8"))
}

fn json_text(value: &serde_json::Value) -> String {
    value.to_string()
}

fn write_json(out: &mut Vec<u8>, value: &serde_json::Value) {
    serde_json::to_writer(out, value).expect("JSON values write to memory");
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
