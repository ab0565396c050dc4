//! The apply step: how a [`Command`] changes the tables. Every replica of the metadata group
//! runs it over its [`Tables`], so they accept and refuse the same commands.
//!
//! A command is a transaction: [`apply`] reads and validates everything it needs first (reads
//! may fail: a refusal or a storage error) and writes only once the command is accepted, and
//! a write cannot fail ([`Tables`]' writes return nothing), so an error never leaves part of a
//! command applied. The cluster tables' changes follow the same rule inside each method
//! (`super::cluster`): validate, then change. A test runs every command against tables whose
//! reads fail at each position in turn and checks that nothing was written.

use std::collections::BTreeSet;

use grove_segment::schema::Schema;

use super::cluster::{ClusterTables, TaskLock};
use super::{
    Command, DataSourceRecord, MetadataError, Result, SegmentRecord, StreamOffsets, TaskRecord,
    TaskReport, TaskState,
};

/// The tables a command reads and writes. Reads may fail; writes cannot (a store whose
/// writes can fail stages them and makes the whole command durable at once, as the replicated
/// store does through its log), so a command that passed its checks is applied whole.
pub trait Tables {
    fn task(&self, id: &str) -> Result<Option<TaskRecord>>;
    fn put_task(&mut self, task: &TaskRecord);
    /// The segment of `data_source` whose id prints as `id`.
    fn segment(&self, data_source: &str, id: &str) -> Result<Option<SegmentRecord>>;
    fn put_segment(&mut self, segment: &SegmentRecord);
    fn put_data_source(&mut self, data_source: &DataSourceRecord);
    fn offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>>;
    fn put_offsets(&mut self, data_source: &str, offsets: &StreamOffsets);
    /// Locks, rules, config, supervisors, nodes, assignments and the audit log (each change
    /// validates before it changes anything).
    fn cluster_mut(&mut self) -> &mut ClusterTables;
}

/// Applies `command` to `tables`: everything or, with an error saying why, nothing.
pub fn apply(tables: &mut dyn Tables, command: &Command) -> Result<()> {
    match command {
        Command::CreateTask { task } => {
            check_task_fields(task)?;
            if tables.task(&task.id)?.is_some() {
                return Err(MetadataError::TaskExists(task.id.clone()));
            }
            tables.put_task(task);
            Ok(())
        }
        Command::UpdateTask { task } => {
            let stored = running_task(tables, &task.id)?;
            if (&stored.task_type, &stored.data_source, stored.created_ms)
                != (&task.task_type, &task.data_source, task.created_ms)
            {
                return Err(MetadataError::Refused(format!(
                    "task '{}': an update may not change its type, datasource or creation time",
                    task.id
                )));
            }
            tables.put_task(task);
            if task.state.is_finished() {
                tables.cluster_mut().release_task_locks(&task.id);
            }
            Ok(())
        }
        Command::PublishSegments {
            task_id,
            segments,
            schema,
            report,
            ended_ms,
        } => publish(tables, task_id, segments, schema, report, *ended_ms),
        Command::PublishSegmentsWithOffsets {
            task_id,
            segments,
            schema,
            report,
            ended_ms,
            start_offsets,
            end_offsets,
        } => {
            let task = running_task(tables, task_id)?;
            let stored = tables.offsets(&task.data_source)?;
            let moved = move_offsets(&task, stored, start_offsets, end_offsets)?;
            publish(tables, task_id, segments, schema, report, *ended_ms)?;
            tables.put_offsets(&task.data_source, &moved);
            Ok(())
        }
        Command::MarkSegmentsUnused { data_source, ids } => {
            let mut changed = Vec::with_capacity(ids.len());
            for id in ids {
                let text = id.to_string();
                let stored = (id.data_source == *data_source)
                    .then(|| tables.segment(data_source, &text))
                    .transpose()?
                    .flatten();
                let Some(mut segment) = stored else {
                    return Err(MetadataError::UnknownSegment(text));
                };
                if segment.used {
                    segment.used = false;
                    changed.push(segment);
                }
            }
            for segment in &changed {
                tables.put_segment(segment);
            }
            Ok(())
        }
        Command::AcquireTaskLock {
            task_id,
            data_source,
            interval,
            version,
            acquired_ms,
        } => {
            let task = running_task(tables, task_id)?;
            if task.data_source != *data_source {
                return Err(MetadataError::Refused(format!(
                    "task '{task_id}' of datasource '{}' cannot lock datasource '{data_source}'",
                    task.data_source
                )));
            }
            tables.cluster_mut().acquire_lock(TaskLock {
                task_id: task_id.clone(),
                data_source: data_source.clone(),
                interval: *interval,
                version: version.clone(),
                acquired_ms: *acquired_ms,
            })
        }
        Command::ReleaseTaskLock {
            task_id,
            data_source,
            interval,
        } => tables
            .cluster_mut()
            .release_lock(task_id, data_source, *interval),
        Command::SetRules {
            data_source,
            rules,
            audit,
            changed_ms,
        } => tables
            .cluster_mut()
            .set_rules(data_source, rules, audit, *changed_ms),
        Command::SetDynamicConfig {
            name,
            value,
            expected_version,
            audit,
            changed_ms,
        } => tables
            .cluster_mut()
            .set_config(name, value, *expected_version, audit, *changed_ms),
        Command::SubmitSupervisor {
            id,
            spec,
            audit,
            changed_ms,
        } => tables
            .cluster_mut()
            .submit_supervisor(id, spec, audit, *changed_ms),
        Command::SetSupervisorState {
            id,
            state,
            audit,
            changed_ms,
        } => tables
            .cluster_mut()
            .set_supervisor_state(id, *state, audit, *changed_ms),
        Command::PutNode { node } => tables.cluster_mut().put_node(node),
        Command::RemoveNode { id } => tables.cluster_mut().remove_node(id),
        Command::ReplaceAssignments { assignments } => {
            // Which segments are used is read first: the cluster tables are borrowed
            // mutably below.
            let mut used = BTreeSet::new();
            for assignment in assignments {
                let id = &assignment.segment;
                if tables
                    .segment(&id.data_source, &id.to_string())?
                    .is_some_and(|s| s.used)
                {
                    used.insert(id.to_string());
                }
            }
            tables
                .cluster_mut()
                .replace_assignments(assignments, |id| Ok(used.contains(&id.to_string())))
        }
    }
}

/// Publishes a RUNNING task's segments, records its datasource's schema and marks it SUCCESS;
/// checks everything before the first write.
fn publish(
    tables: &mut dyn Tables,
    task_id: &str,
    segments: &[SegmentRecord],
    schema: &Schema,
    report: &TaskReport,
    ended_ms: i64,
) -> Result<()> {
    let mut task = running_task(tables, task_id)?;
    let refuse = |why: String| MetadataError::Refused(format!("task '{task_id}': {why}"));
    if segments.is_empty() {
        return Err(refuse("publishes no segments".into()));
    }
    if schema.data_source != task.data_source {
        return Err(refuse(format!(
            "schema of datasource '{}' does not match the task's datasource '{}'",
            schema.data_source, task.data_source
        )));
    }
    let mut seen = BTreeSet::new();
    for segment in segments {
        let id = segment.id_text();
        if segment.id.data_source != task.data_source {
            return Err(refuse(format!(
                "segment '{id}' is not in the task's datasource '{}'",
                task.data_source
            )));
        }
        if !segment.used {
            return Err(refuse(format!("segment '{id}' is published unused")));
        }
        if tables.segment(&task.data_source, &id)?.is_some() || !seen.insert(id.clone()) {
            return Err(refuse(format!("segment '{id}' is already published")));
        }
    }
    for segment in segments {
        tables.put_segment(segment);
    }
    tables.put_data_source(&DataSourceRecord {
        name: task.data_source.clone(),
        schema: schema.clone(),
        updated_ms: ended_ms,
    });
    task.state = TaskState::Success;
    task.error = None;
    task.ended_ms = Some(ended_ms);
    task.report = Some(report.clone());
    tables.put_task(&task);
    tables.cluster_mut().release_task_locks(task_id);
    Ok(())
}

/// The offsets stored after a stream publish from `start` to `end`, if `start` continues from
/// `stored` (the exactly-once check) and `end` is a forward move of the same partitions.
fn move_offsets(
    task: &TaskRecord,
    stored: Option<StreamOffsets>,
    start: &StreamOffsets,
    end: &StreamOffsets,
) -> Result<StreamOffsets> {
    let refuse = |why: String| {
        MetadataError::Refused(format!(
            "task '{}': offsets of datasource '{}': {why}",
            task.id, task.data_source
        ))
    };
    if start.stream.is_empty() || start.stream != end.stream {
        return Err(refuse(format!(
            "start stream '{}' and end stream '{}' must be the same, non-empty stream",
            start.stream, end.stream
        )));
    }
    if start.partitions.is_empty() || !start.partitions.keys().eq(end.partitions.keys()) {
        return Err(refuse(
            "start and end must name the same, non-empty set of partitions".into(),
        ));
    }
    for (partition, from) in &start.partitions {
        let to = end.partitions[partition];
        if to < *from {
            return Err(refuse(format!(
                "partition {partition} would move back from {from} to {to}"
            )));
        }
    }
    let mut moved = match stored {
        Some(stored) if stored.stream != start.stream => {
            return Err(refuse(format!(
                "stored offsets are of stream '{}', the task read stream '{}'",
                stored.stream, start.stream
            )));
        }
        Some(stored) => stored,
        None => StreamOffsets {
            stream: start.stream.clone(),
            partitions: Default::default(),
        },
    };
    for (partition, from) in &start.partitions {
        if let Some(at) = moved.partitions.get(partition)
            && at != from
        {
            return Err(refuse(format!(
                "partition {partition} is stored at {at}, the task started at {from} (a stale or duplicate publish)"
            )));
        }
    }
    for (partition, to) in &end.partitions {
        moved.partitions.insert(*partition, *to);
    }
    Ok(moved)
}

/// The stored task `id`, which must still be running.
fn running_task(tables: &dyn Tables, id: &str) -> Result<TaskRecord> {
    let task = tables
        .task(id)?
        .ok_or_else(|| MetadataError::UnknownTask(id.to_owned()))?;
    if task.state.is_finished() {
        return Err(MetadataError::Refused(format!(
            "task '{id}' already ended with {}",
            task.state.name()
        )));
    }
    Ok(task)
}

/// What a new task record must look like: names usable as keys, and a RUNNING state.
fn check_task_fields(task: &TaskRecord) -> Result<()> {
    let refuse = |why: &str| MetadataError::Refused(format!("task '{}': {why}", task.id));
    if task.id.is_empty() {
        return Err(MetadataError::Refused("a task id must not be empty".into()));
    }
    if task.data_source.is_empty() || task.data_source.contains('\0') {
        return Err(refuse(
            "its datasource name is empty or contains a NUL character",
        ));
    }
    if task.state != TaskState::Running {
        return Err(refuse("a new task must be RUNNING"));
    }
    Ok(())
}
