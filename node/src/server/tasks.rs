//! The task runner: a submitted batch ingestion task is recorded RUNNING in the metadata store,
//! run on a blocking thread with `grove_segment::ingest::run_batch` into local deep storage, and
//! ends in one of two ways: its segments are pulled into the segment cache and opened, published
//! (one command that also marks it SUCCESS) and served at once, or it is marked FAILED with the error and the parse report.
//!
//! Before it runs, a task locks the time chunks its `granularitySpec.intervals` cover; a chunk
//! another running task holds fails it. Its locks are released by the command that ends it.
//!
//! After a publish the loaded segments that the new version fully overshadows are marked unused
//! and unloaded (the coordinator's duty, done inline while everything runs in one process).

use std::collections::BTreeMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use grove_raft::metadata::{
    Command, MetadataError, SegmentRecord, TaskRecord, TaskReport, TaskState,
};
use grove_segment::SegmentError;
use grove_segment::format::WriteOptions;
use grove_segment::ingest::{BatchOptions, BatchResult, run_batch};
use grove_segment::input::ParseReport;
use grove_segment::spec::{TaskSpec, parse_task};
use grove_segment::time::{Interval, format_iso};

use super::{ApiError, Node, Slot, now_ms};

/// How many `_<n>` suffixes are tried to make a generated task id unique.
const TASK_ID_ATTEMPTS_MAX: u32 = 1_000;

/// Parses and records a task, then starts it on a blocking thread. Returns the task id at once.
/// A spec that does not parse or validate is a 400 naming the problem.
pub fn submit(node: &Arc<Node>, body: &str) -> Result<String, ApiError> {
    let spec = parse_task(body).map_err(|e| ApiError::invalid_input(e.to_string()))?;
    if let Some(id) = &spec.id {
        check_task_id(id).map_err(ApiError::invalid_input)?;
    }
    let spec_json: serde_json::Value =
        serde_json::from_str(body).map_err(|e| ApiError::malformed(e.to_string()))?;
    let slot = Slot::take(&node.tasks_running, node.config.tasks_running_max).ok_or_else(|| {
        ApiError::capacity(format!(
            "{} ingestion tasks are already running (the limit, tasks_running_max); submit again \
             when one has ended",
            node.config.tasks_running_max
        ))
    })?;
    let created_ms = now_ms();
    let data_source = spec.spec.data_schema.data_source.clone();
    let mut record = TaskRecord {
        id: String::new(),
        task_type: spec.task_type.name().to_owned(),
        data_source: data_source.clone(),
        spec: spec_json,
        state: TaskState::Running,
        error: None,
        created_ms,
        started_ms: Some(created_ms),
        ended_ms: None,
        report: None,
    };
    let base_id = spec.id.clone().unwrap_or_else(|| {
        format!(
            "{}_{}_{}",
            record.task_type,
            data_source,
            format_iso(created_ms)
        )
    });
    for attempt in 1..=TASK_ID_ATTEMPTS_MAX {
        record.id = match attempt {
            1 => base_id.clone(),
            n => format!("{base_id}_{n}"),
        };
        match node.store.apply(Command::CreateTask {
            task: record.clone(),
        }) {
            Ok(()) => break,
            // A generated id may collide with a task submitted in the same millisecond.
            Err(MetadataError::TaskExists(_))
                if spec.id.is_none() && attempt < TASK_ID_ATTEMPTS_MAX => {}
            Err(e) => return Err(e.into()),
        }
    }
    let id = record.id.clone();
    // The slot moves to the task's thread (as the count it holds), which gives it back when
    // the task ends.
    std::mem::forget(slot);
    let node = node.clone();
    tokio::task::spawn_blocking(move || {
        let _slot = Slot(&node.tasks_running);
        let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(&node, &record, &spec)));
        if outcome.is_err() {
            finish_failed(&node, record, "the task panicked".into(), None);
        }
    });
    Ok(id)
}

/// A task id names the task's scratch directory, so it must be a plain file name (Druid's
/// rules for ids: not empty, no `/`, not starting with `.`, no control characters).
fn check_task_id(id: &str) -> Result<(), String> {
    let why = if id.is_empty() {
        "must not be empty"
    } else if id.len() > 255 {
        "must be at most 255 bytes"
    } else if id.starts_with('.') {
        "must not start with '.'"
    } else if id.contains(['/', '\\']) {
        "must not contain '/' or '\\'"
    } else if id.chars().any(char::is_control) {
        "must not contain control characters"
    } else {
        return Ok(());
    };
    Err(format!("task id '{id}' {why}"))
}

/// Runs one task to its end and records how it ended.
fn run(node: &Node, record: &TaskRecord, spec: &TaskSpec) {
    let version = node.next_version();
    if let Err(error) = lock_intervals(node, record, spec, &version) {
        return finish_failed(node, record.clone(), error, None);
    }
    let work_dir = node.tasks_dir.join(&record.id);
    let options = BatchOptions {
        work_dir: work_dir.clone(),
        version,
        write: WriteOptions::default(),
        // A task uses the cores it has: pieces of a large file and time chunks in parallel.
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        split_bytes_min: grove_segment::ingest::SPLIT_BYTES_MIN,
    };
    let outcome = run_batch(&spec.spec, node.deep_storage.as_ref(), &options);
    let _ = std::fs::remove_dir_all(&work_dir);
    match outcome {
        Ok(result) if result.segments.is_empty() => {
            let error = format!("no rows were ingested: {}", result.report.summary());
            let report = task_report(&result.report, 0);
            finish_failed(node, record.clone(), error, Some(report));
        }
        Ok(result) => publish(node, record, result),
        Err(e) => {
            let report = match &e {
                SegmentError::TooManyParseErrors(report) => Some(task_report(report, 0)),
                _ => None,
            };
            finish_failed(node, record.clone(), e.to_string(), report);
        }
    }
}

/// Locks the time chunks the task's `granularitySpec.intervals` cover (widened to whole
/// segment-granularity buckets, as Druid locks them) for the task, with its segment version.
/// A task without intervals takes no lock. The locks go with the task's end (its publish or
/// its failure), in the same metadata command.
fn lock_intervals(
    node: &Node,
    record: &TaskRecord,
    spec: &TaskSpec,
    version: &str,
) -> Result<(), String> {
    let granularity = &spec.spec.data_schema.granularity_spec;
    for interval in granularity.intervals.iter().flatten() {
        if interval.start_ms >= interval.end_ms {
            continue;
        }
        let first = granularity.segment_granularity.bucket(interval.start_ms);
        let last = granularity.segment_granularity.bucket(interval.end_ms - 1);
        let command = Command::AcquireTaskLock {
            task_id: record.id.clone(),
            data_source: record.data_source.clone(),
            interval: Interval::new(first.start_ms, last.end_ms),
            version: version.to_owned(),
            acquired_ms: now_ms(),
        };
        node.store
            .apply(command)
            .map_err(|e| format!("locking {interval}: {e}"))?;
    }
    Ok(())
}

/// Publishes a finished ingestion's segments, loads them, and retires what they overshadow.
fn publish(node: &Node, record: &TaskRecord, result: BatchResult) {
    let created_ms = now_ms();
    let mut segments = Vec::with_capacity(result.segments.len());
    for built in &result.segments {
        let load_spec = match serde_json::to_value(&built.load_spec) {
            Ok(value) => value,
            Err(e) => {
                let error = format!("segment {}: load spec: {e}", built.meta.id);
                return finish_failed(node, record.clone(), error, None);
            }
        };
        segments.push(SegmentRecord {
            id: built.meta.id.clone(),
            core_partitions: built.core_partitions,
            load_spec,
            num_rows: built.meta.num_rows,
            size_bytes: built.bytes,
            used: true,
            created_ms,
        });
    }
    let report = task_report(&result.report, segments.len() as u64);
    let command = Command::PublishSegments {
        task_id: record.id.clone(),
        segments: segments.clone(),
        schema: result.segments[0].meta.schema.clone(),
        report: report.clone(),
        ended_ms: created_ms,
    };
    // Open every segment before publishing, so they are queryable the moment the task reads as
    // SUCCESS (serving them after the publish is one in-memory step).
    let mut opened = Vec::with_capacity(segments.len());
    for segment in &segments {
        match node.segments.open(segment) {
            Ok(s) => opened.push((segment.clone(), s)),
            Err(e) => {
                let error = format!("segment {}: {e}", segment.id);
                return finish_failed(node, record.clone(), error, Some(report));
            }
        }
    }
    if let Err(e) = node.store.apply(command) {
        let error = format!("publishing segments: {e}");
        return finish_failed(node, record.clone(), error, Some(report));
    }
    if let Err(e) = node.segments.serve(opened) {
        eprintln!("warning: task {}: not serving its segments: {e}", record.id);
    }
    retire_overshadowed(node);
}

/// Marks the loaded segments that newer versions fully overshadow unused, and unloads them.
fn retire_overshadowed(node: &Node) {
    let mut by_data_source: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for id in node.segments.overshadowed() {
        by_data_source
            .entry(id.data_source.clone())
            .or_default()
            .push(id);
    }
    for (data_source, ids) in by_data_source {
        let command = Command::MarkSegmentsUnused {
            data_source: data_source.clone(),
            ids: ids.clone(),
        };
        match node.store.apply(command) {
            Ok(()) => ids.iter().for_each(|id| node.segments.unload(id)),
            Err(e) => {
                eprintln!("warning: marking overshadowed segments of {data_source} unused: {e}")
            }
        }
    }
}

fn finish_failed(node: &Node, mut record: TaskRecord, error: String, report: Option<TaskReport>) {
    record.state = TaskState::Failed;
    record.error = Some(error);
    record.ended_ms = Some(now_ms());
    record.report = report;
    if let Err(e) = node.store.apply(Command::UpdateTask {
        task: record.clone(),
    }) {
        eprintln!("warning: task {}: recording its failure: {e}", record.id);
    }
}

fn task_report(report: &ParseReport, segments: u64) -> TaskReport {
    TaskReport {
        processed: report.processed,
        unparseable: report.unparseable,
        thrown_away: report.thrown_away,
        parse_errors: report.errors.iter().map(ToString::to_string).collect(),
        segments,
    }
}

/// Marks tasks a previous process left RUNNING as FAILED: their work died with it.
pub fn fail_interrupted(node: &Node) -> Result<(), MetadataError> {
    for task in node.store.tasks()? {
        if task.state == TaskState::Running {
            let error = "the server stopped while the task was running; submit it again".into();
            finish_failed(node, task, error, None);
        }
    }
    Ok(())
}

/// Druid's task status object (`/task/{id}/status`'s `status` and the `/tasks` entries).
pub fn status_json(task: &TaskRecord, host: &str) -> serde_json::Value {
    let duration_ms = match (task.started_ms, task.ended_ms) {
        (Some(start), Some(end)) => end - start,
        _ => -1,
    };
    let (host, port) = host.rsplit_once(':').unwrap_or((host, "-1"));
    serde_json::json!({
        "id": task.id,
        "groupId": task.id,
        "type": task.task_type,
        "createdTime": format_iso(task.created_ms),
        "queueInsertionTime": format_iso(task.created_ms),
        "statusCode": task.state.name(),
        "status": task.state.name(),
        "runnerStatusCode": if task.state.is_finished() { "NONE" } else { "RUNNING" },
        "duration": duration_ms,
        "location": {"host": host, "port": port.parse::<i64>().unwrap_or(-1), "tlsPort": -1},
        "dataSource": task.data_source,
        "errorMsg": task.error,
    })
}

/// Druid's task report (`/task/{id}/reports`): row stats, parse errors, segments published.
pub fn report_json(task: &TaskRecord) -> serde_json::Value {
    let report = task.report.clone().unwrap_or_default();
    let state = match task.state {
        TaskState::Running => "BUILD_SEGMENTS",
        TaskState::Success | TaskState::Failed => "COMPLETED",
    };
    serde_json::json!({
        "ingestionStatsAndErrors": {
            "type": "ingestionStatsAndErrors",
            "taskId": task.id,
            "payload": {
                "ingestionState": state,
                "unparseableEvents": {"buildSegments": report.parse_errors},
                "rowStats": {"buildSegments": {
                    "processed": report.processed,
                    "processedWithError": 0,
                    "thrownAway": report.thrown_away,
                    "unparseable": report.unparseable,
                }},
                "errorMsg": task.error,
                "segmentsPublished": report.segments,
            }
        }
    })
}
