//! Metadata records for tests: a datasource schema, a RUNNING task, a used segment and a publish
//! command. Shared by the crate's unit tests (through `#[path]`) and its integration tests.

#![allow(dead_code)]

use grove_raft::metadata::{Command, SegmentRecord, TaskRecord, TaskReport, TaskState};
use grove_segment::id::SegmentId;
use grove_segment::schema::{DimensionSchema, MetricKind, MetricSchema, Schema};
use grove_segment::time::{Granularity, Interval, MS_PER_DAY};

/// 2024-01-01, day 0 of the segments below.
pub const DAY0: i64 = 19_723 * MS_PER_DAY;

/// Datasource `ds`: one string dimension, a count, hourly roll-up in day segments.
pub fn schema(ds: &str) -> Schema {
    Schema {
        data_source: ds.into(),
        dimensions: vec![DimensionSchema::string("page")],
        metrics: vec![MetricSchema {
            name: "count".into(),
            field_name: None,
            kind: MetricKind::Count,
        }],
        query_granularity: Granularity::HOUR,
        segment_granularity: Granularity::DAY,
        rollup: true,
        time_position: 0,
    }
}

/// RUNNING task `id` of datasource `ds`, created and started at 1,000 ms.
pub fn task(id: &str, ds: &str) -> TaskRecord {
    TaskRecord {
        id: id.into(),
        task_type: "index_parallel".into(),
        data_source: ds.into(),
        spec: serde_json::json!({"type": "index_parallel", "id": id, "dataSource": ds}),
        state: TaskState::Running,
        error: None,
        created_ms: 1_000,
        started_ms: Some(1_000),
        ended_ms: None,
        report: None,
    }
}

/// A used segment of `ds` on day `day`, the only partition of its set.
pub fn segment(ds: &str, day: i64, version: &str, partition: u32) -> SegmentRecord {
    let start = DAY0 + day * MS_PER_DAY;
    SegmentRecord {
        id: SegmentId::new(
            ds,
            None,
            Interval::new(start, start + MS_PER_DAY),
            version,
            partition,
        ),
        core_partitions: 1,
        load_spec: serde_json::json!({"type": "local", "path": format!("/deep/{ds}/{day}/{version}/{partition}")}),
        num_rows: 10,
        size_bytes: 100,
        used: true,
        created_ms: 2_000,
    }
}

/// Task `task_id` publishing `segments` of `ds` (20 rows processed), ending at 3,000 ms.
pub fn publish(task_id: &str, ds: &str, segments: Vec<SegmentRecord>) -> Command {
    Command::PublishSegments {
        task_id: task_id.into(),
        report: TaskReport {
            processed: 20,
            segments: segments.len() as u64,
            ..TaskReport::default()
        },
        segments,
        schema: schema(ds),
        ended_ms: 3_000,
    }
}
