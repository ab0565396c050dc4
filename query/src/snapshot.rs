//! Querying an in-memory incremental index: its sorted snapshot laid out as an in-memory segment,
//! so real-time rows go through the same per-segment engines and the same merge as segments on
//! disk (one code path; the snapshot costs one pass over the index's rows).

use grove_segment::format::{Segment, SegmentMeta, WriteOptions, write_segment_to};
use grove_segment::id::SegmentId;
use grove_segment::index::IncrementalIndex;

use crate::error::Result;

/// A queryable segment holding what `index` holds now, named `id`.
pub fn index_snapshot(index: &IncrementalIndex, id: SegmentId) -> Result<Segment> {
    let columns = index.to_columns();
    let (time_min_ms, time_max_ms) = columns.time_bounds();
    let meta = SegmentMeta {
        id,
        schema: index.schema().clone(),
        num_rows: columns.num_rows() as u64,
        time_min_ms,
        time_max_ms,
    };
    let mut bytes = Vec::new();
    write_segment_to(&mut bytes, &meta, &columns, &WriteOptions::default())?;
    let name = meta.id.to_string();
    Ok(Segment::from_bytes(bytes, &name)?)
}
