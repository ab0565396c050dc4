//! The metadata store: datasources, segments, tasks and stream offsets, changed only by
//! [`Command`]s.
//!
//! Main types: [`MetadataStore`] (the interface every store implements: one `apply` for
//! commands, and reads), [`Command`] (a transaction, serializable so it can be a Raft log entry),
//! the records ([`DataSourceRecord`], [`SegmentRecord`], [`TaskRecord`], [`StreamOffsets`]).
//!
//! The one store is the replicated one ([`crate::replicated`]; a single-member group for
//! `grove serve` and `grove quickstart`): its Raft state machine calls [`apply::apply`] over
//! [`crate::replicated::MemoryTables`] for each committed [`Command`]; its
//! [`MetadataStore::apply`] carries the command to the leader and returns once it is applied
//! there, and its reads wait for this member to catch up with the leader's read index. Because `apply` reads only the stored state and the command (timestamps are fields of
//! the command, never read from a clock), every replica reaches the same state and the same
//! verdict; a refused command (an unknown task, a task that already ended) changes nothing.
//!
//! Invariants kept by [`apply::apply`]:
//! - a task id is created once; a task that ended (SUCCESS or FAILED) never changes again;
//! - segments are published only by a RUNNING task of their datasource, in the same transaction
//!   that marks the task SUCCESS and records the datasource's latest schema; an id is published
//!   once;
//! - a stream publish moves the datasource's offsets only from the offsets stored (start equals
//!   stored, partition by partition), in the same transaction as its segments, so at most one
//!   publish per offset range succeeds;
//! - reads list records in key order (datasource name, segment id, task id).

pub mod apply;
pub mod cluster;
pub mod json_text;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;

use grove_segment::id::SegmentId;
use grove_segment::schema::Schema;
use grove_segment::time::Interval;
use serde::{Deserialize, Serialize};

pub use cluster::{
    AUDIT_CONFIG, AUDIT_ENTRIES_MAX_DEFAULT, AUDIT_RETENTION_MS_DEFAULT, AuditEntry, AuditInfo,
    ClusterTables, ConfigRecord, DEFAULT_RULES, NodeRecord, RulesRecord, SegmentAssignment,
    SupervisorRecord, SupervisorState, TaskLock,
};

/// A datasource: its name and the schema of its most recently published segments.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DataSourceRecord {
    pub name: String,
    #[serde(with = "json_text")]
    pub schema: Schema,
    /// When segments were last published into it (ms since epoch, from the command).
    pub updated_ms: i64,
}

/// A published segment, as Druid's segment table row.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SegmentRecord {
    /// Datasource, namespace, interval, version and partition.
    pub id: SegmentId,
    /// How many partitions make this segment's partition set complete.
    pub core_partitions: u32,
    /// Where the segment lives in deep storage (Druid's `loadSpec`).
    #[serde(with = "json_text")]
    pub load_spec: serde_json::Value,
    pub num_rows: u64,
    pub size_bytes: u64,
    /// `false` once overshadowed or dropped; unused segments are not served.
    pub used: bool,
    /// When it was published (ms since epoch, from the command).
    pub created_ms: i64,
}

impl SegmentRecord {
    /// The segment id in Druid's text form (the table key within its datasource).
    pub fn id_text(&self) -> String {
        self.id.to_string()
    }
}

/// A task's state, as Druid names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TaskState {
    Running,
    Success,
    Failed,
}

impl TaskState {
    pub fn name(&self) -> &'static str {
        match self {
            TaskState::Running => "RUNNING",
            TaskState::Success => "SUCCESS",
            TaskState::Failed => "FAILED",
        }
    }

    pub fn is_finished(&self) -> bool {
        !matches!(self, TaskState::Running)
    }
}

/// What an ingestion task made of its input (Druid's row stats and unparseable events).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskReport {
    pub processed: u64,
    pub unparseable: u64,
    pub thrown_away: u64,
    /// The first parse errors, with their positions, in input order.
    pub parse_errors: Vec<String>,
    pub segments: u64,
}

/// An ingestion task.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TaskRecord {
    pub id: String,
    /// `index_parallel` or `index`.
    pub task_type: String,
    pub data_source: String,
    /// The task JSON as submitted.
    #[serde(with = "json_text")]
    pub spec: serde_json::Value,
    pub state: TaskState,
    /// Why it failed.
    pub error: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub report: Option<TaskReport>,
}

/// Where a datasource's stream ingestion stands: the stream (a Kafka topic) and, per
/// partition, the next offset to read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StreamOffsets {
    pub stream: String,
    /// Serialized as `[[partition, offset], ...]`: a command is an internally tagged enum,
    /// and serde cannot read integer map keys back through one.
    #[serde(with = "partition_pairs")]
    pub partitions: BTreeMap<u32, i64>,
}

mod partition_pairs {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(map: &BTreeMap<u32, i64>, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<u32, i64>, D::Error> {
        let pairs = Vec::<(u32, i64)>::deserialize(d)?;
        let count = pairs.len();
        let map: BTreeMap<u32, i64> = pairs.into_iter().collect();
        if map.len() != count {
            return Err(serde::de::Error::custom("a partition is listed twice"));
        }
        Ok(map)
    }
}

/// One transaction on the metadata: applied atomically or not at all.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
///
/// Serialized externally tagged (a binary log entry names its variant by index; see
/// [`json_text`] for the fields that stay JSON text inside it).
#[serde(rename_all = "camelCase")]
pub enum Command {
    /// Records a new task; its id must be unused.
    CreateTask { task: TaskRecord },
    /// Replaces a RUNNING task's record (state, times, error, report); its id, type and
    /// datasource must stay the same.
    UpdateTask { task: TaskRecord },
    /// Publishes a RUNNING task's segments, records `schema` as its datasource's latest, and
    /// marks the task SUCCESS with `report`, all at once.
    PublishSegments {
        task_id: String,
        segments: Vec<SegmentRecord>,
        #[serde(with = "json_text")]
        schema: Schema,
        report: TaskReport,
        ended_ms: i64,
    },
    /// Publishes a stream task's segments (as [`Command::PublishSegments`] does) and moves its
    /// datasource's stored offsets from `start_offsets` to `end_offsets`, all at once — only
    /// if, for every partition in `start_offsets` that has a stored offset, the stored offset
    /// equals the start (a partition never stored accepts any start). This is the exactly-once
    /// check: a replica of the same task, or a stale retry, finds the offsets already moved
    /// and is refused with nothing changed.
    PublishSegmentsWithOffsets {
        task_id: String,
        segments: Vec<SegmentRecord>,
        #[serde(with = "json_text")]
        schema: Schema,
        report: TaskReport,
        ended_ms: i64,
        start_offsets: StreamOffsets,
        end_offsets: StreamOffsets,
    },
    /// Marks used segments of `data_source` unused (overshadowed or dropped).
    MarkSegmentsUnused {
        data_source: String,
        ids: Vec<SegmentId>,
    },
    /// Locks `interval` of `data_source` for RUNNING task `task_id`; refused if another
    /// task holds an overlapping interval. Locks go with the task's end.
    AcquireTaskLock {
        task_id: String,
        data_source: String,
        interval: Interval,
        version: String,
        acquired_ms: i64,
    },
    /// Releases `task_id`'s lock on exactly `interval` of `data_source`.
    ReleaseTaskLock {
        task_id: String,
        data_source: String,
        interval: Interval,
    },
    /// Replaces the rules of `data_source` ([`DEFAULT_RULES`] for the default), audited.
    SetRules {
        data_source: String,
        #[serde(with = "json_text")]
        rules: Vec<serde_json::Value>,
        audit: AuditInfo,
        changed_ms: i64,
    },
    /// Sets dynamic config `name` to `value` (a JSON object), audited; with
    /// `expected_version`, only if the stored version is that (0: never set).
    SetDynamicConfig {
        name: String,
        #[serde(with = "json_text")]
        value: serde_json::Value,
        expected_version: Option<u64>,
        audit: AuditInfo,
        changed_ms: i64,
    },
    /// Creates supervisor `id` (RUNNING) or replaces its spec, audited.
    SubmitSupervisor {
        id: String,
        #[serde(with = "json_text")]
        spec: serde_json::Value,
        audit: AuditInfo,
        changed_ms: i64,
    },
    /// Suspends, resumes or terminates supervisor `id`, audited.
    SetSupervisorState {
        id: String,
        state: SupervisorState,
        audit: AuditInfo,
        changed_ms: i64,
    },
    /// Registers a node of the cluster, or replaces its record.
    PutNode { node: NodeRecord },
    /// Unregisters node `id` and removes it from every assignment.
    RemoveNode { id: String },
    /// Replaces the node sets of the listed segments at once (an empty set unassigns).
    ReplaceAssignments { assignments: Vec<SegmentAssignment> },
}

/// Why a command was refused or a read failed. Serializable, so a refusal decided by the Raft
/// leader's apply step reaches a client on another node unchanged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum MetadataError {
    #[error("unknown task '{0}'")]
    UnknownTask(String),
    #[error("task '{0}' already exists")]
    TaskExists(String),
    #[error("unknown segment '{0}'")]
    UnknownSegment(String),
    /// A command that does not fit the stored state; the message says why.
    #[error("refused: {0}")]
    Refused(String),
    /// The storage below failed (I/O, a record that does not decode).
    #[error("metadata storage: {0}")]
    Storage(String),
    /// A write fenced with the leader term its issuer observed was committed under another
    /// term (leadership changed in between); nothing changed.
    #[error(
        "stale leader term: the write observed term {observed} but was committed in term {committed}"
    )]
    StaleTerm { observed: u64, committed: u64 },
    /// The metadata group could not commit or confirm in time (no leader, no quorum, or this
    /// member stopped); nothing is known to have changed. Retrying later may succeed.
    #[error("metadata unavailable: {0}")]
    Unavailable(String),
    /// A request id that was applied before with a different command (a writer reused an id);
    /// nothing changed.
    #[error("request id {id} was already used for a different command; nothing changed")]
    RequestIdReused { id: String },
    /// A command whose log encoding is over the group's limit; it was not proposed.
    #[error(
        "a command of {bytes} bytes exceeds the metadata log's maximum of {max} bytes; split it (for example, publish fewer segments per command)"
    )]
    CommandTooLarge { bytes: u64, max: u64 },
    /// A retry arrived after the group stopped remembering its request id: the first attempt
    /// may or may not have been applied. Nothing changed now; read the state to find out.
    #[error("outcome unknown: {0}")]
    OutcomeUnknown(String),
}

pub type Result<T, E = MetadataError> = std::result::Result<T, E>;

/// The metadata store interface: commands in, ordered reads out. Implementation:
/// [`crate::replicated::ReplicatedMetadataStore`] (a member of the metadata group). Calls
/// block; async callers run them on a blocking thread.
pub trait MetadataStore: Send + Sync {
    /// Applies one command atomically (see [`apply::apply`] for the rules). A refused command
    /// changes nothing and returns why.
    fn apply(&self, command: Command) -> Result<()>;

    /// Every datasource with published segments, by name.
    fn data_sources(&self) -> Result<Vec<DataSourceRecord>>;

    /// The used segments of `data_source`, by segment id; empty for an unknown datasource.
    fn used_segments(&self, data_source: &str) -> Result<Vec<SegmentRecord>>;

    /// One task; [`MetadataError::UnknownTask`] if there is none with that id.
    fn task(&self, id: &str) -> Result<TaskRecord>;

    /// Every task, by id.
    fn tasks(&self) -> Result<Vec<TaskRecord>>;

    /// The stored stream offsets of `data_source` (none before its first stream publish).
    fn stream_offsets(&self, data_source: &str) -> Result<Option<StreamOffsets>>;

    /// The rules set for `data_source` ([`DEFAULT_RULES`] for the default), if any.
    fn rules(&self, data_source: &str) -> Result<Option<RulesRecord>>;

    /// Every rules record, by datasource.
    fn all_rules(&self) -> Result<Vec<RulesRecord>>;

    /// The audit entries of `audit_type` (`rules`, `config`, `supervisor`) for `key` (every
    /// key if `None`), oldest first.
    fn audit(&self, audit_type: &str, key: Option<&str>) -> Result<Vec<AuditEntry>>;

    /// The used segments of every datasource, by datasource then segment id.
    fn all_used_segments(&self) -> Result<Vec<SegmentRecord>> {
        let mut out = Vec::new();
        for ds in self.data_sources()? {
            out.extend(self.used_segments(&ds.name)?);
        }
        Ok(out)
    }
}
