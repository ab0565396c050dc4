//! The openraft type configuration of Grove's metadata group ([`TypeConfig`]) and the values
//! that travel in its log: [`WriteBatch`] (the payload of a normal entry: the
//! [`ClientRequest`]s the leader gathered into it, each a [`Command`] with the [`RequestId`]
//! that deduplicates retries), [`Verdict`] (what the apply step decided for one request) and
//! [`GroveNode`] (how a member is reached).
//!
//! Encoding: log entries, Raft messages and snapshots' metadata are encoded with bincode's
//! serde adapter ([`encode`] / [`decode`], through `grove_rpc::codec`, the one place that calls
//! bincode). A [`Command`] is native bincode (externally tagged, fields in order); only its
//! free-form JSON fields (specs, rules, load specs) and datasource schemas are carried as JSON
//! text inside it (`crate::metadata::json_text`), since bincode cannot decode values that
//! need `deserialize_any`.
//!
//! Invariants: a [`RequestId`] is unique per logical write (a client id that no other writer
//! uses — a member draws a random one per process start — and a serial it never reuses);
//! retries of one write reuse its id and its command, which [`ClientRequest::digest`] checks.

use std::fmt;
use std::io::Cursor;

use grove_rpc::RpcError;
use serde::{Deserialize, Serialize};

use super::runtime::SeededRuntime;
use crate::metadata::{Command, MetadataError};

/// The id openraft knows a member by.
pub type RaftNodeId = u64;

/// The largest request (its log encoding) a member proposes. A larger one is refused before
/// it reaches the log (`MetadataError::CommandTooLarge`): openraft 0.9 gives an append call one
/// heartbeat interval and re-sends one that does not complete forever, so an entry must cross
/// the network well within it. A call carries at most `max_payload_entries` (8) entries.
pub const COMMAND_BYTES_MAX: usize = 1 << 20;

openraft::declare_raft_types!(
    /// Grove's metadata group: `u64` ids, [`WriteBatch`] entries answered by one [`Verdict`]
    /// per request, in-memory snapshot buffers, the seeded runtime.
    pub TypeConfig:
        D = WriteBatch,
        R = Vec<Verdict>,
        NodeId = RaftNodeId,
        Node = GroveNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        Responder = openraft::impls::OneshotResponder<TypeConfig>,
        AsyncRuntime = SeededRuntime,
);

/// A member as membership entries record it: the `grove-rpc` node name it is called by and,
/// for QUIC, the UDP address it listens on (empty on the in-memory network).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroveNode {
    pub name: String,
    pub address: String,
}

impl GroveNode {
    pub fn new(name: impl Into<String>, address: impl Into<String>) -> Self {
        GroveNode {
            name: name.into(),
            address: address.into(),
        }
    }
}

impl fmt::Display for GroveNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.address.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}@{}", self.name, self.address)
        }
    }
}

/// Identifies one logical write across retries: `client` names the writer (unique per writer
/// process: drawn at random when a member starts), `serial` counts its writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RequestId {
    pub client: u64,
    pub serial: u64,
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}/{}", self.client, self.serial)
    }
}

/// The payload of a normal log entry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClientRequest {
    pub id: RequestId,
    pub command: Command,
    /// The leader term the writer observed, if it fences its write with it: the state
    /// machine refuses the command (changing nothing) when the entry was appended by the
    /// leader of another term.
    pub term: Option<u64>,
    /// The proposing leader's clock (ms since the epoch) when it put the request in an entry;
    /// 0 until then. The state machine's clock, which times how long request ids are
    /// remembered, is the greatest of these applied (`super::tables::RequestLog`).
    pub proposed_ms: i64,
}

impl ClientRequest {
    /// An unfenced request.
    pub fn new(id: RequestId, command: Command) -> Self {
        ClientRequest {
            id,
            command,
            term: None,
            proposed_ms: 0,
        }
    }

    /// What a retry must repeat: a stable 64-bit hash (xxHash64) of the command and the
    /// fencing term in their log encoding. The id and the proposal time are left out.
    pub fn digest(&self) -> u64 {
        match encode(&(&self.command, self.term)) {
            Ok(bytes) => twox_hash::XxHash64::oneshot(0, &bytes),
            // A command that does not encode never reached the log (it is checked before it
            // is proposed); the digest of nothing keeps apply total.
            Err(_) => twox_hash::XxHash64::oneshot(0, &[]),
        }
    }
}

impl fmt::Display for ClientRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "request {}", self.id)
    }
}

/// The payload of a normal log entry: the writes the leader gathered while its earlier
/// entries were being written (`super::batcher`), applied in order, each on its own (a
/// refused request changes nothing and does not affect the others). Never empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WriteBatch {
    pub requests: Vec<ClientRequest>,
}

impl fmt::Display for WriteBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.requests.as_slice() {
            [one] => write!(f, "{one}"),
            requests => write!(f, "{} requests", requests.len()),
        }
    }
}

/// What the apply step decided for one request. `duplicate` is true when the request id had
/// been applied before and this is the remembered verdict of that first application.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub result: Result<(), MetadataError>,
    pub duplicate: bool,
}

impl Verdict {
    /// The verdict of an entry that carries no command (blank or membership).
    pub fn accepted() -> Self {
        Verdict {
            result: Ok(()),
            duplicate: false,
        }
    }
}

/// Encodes `value` for the log and the wire (bincode's serde adapter, in `grove_rpc::codec`).
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<bytes::Bytes, RpcError> {
    grove_rpc::codec::encode_serde(value)
}

/// Decodes what [`encode`] wrote; every byte must be used.
pub fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    grove_rpc::codec::decode_serde(bytes)
}

/// A RUNNING `index` task of datasource `wiki` with `spec` (unit tests).
#[cfg(test)]
pub(crate) fn running_task(id: &str, spec: serde_json::Value) -> crate::metadata::TaskRecord {
    crate::metadata::TaskRecord {
        id: id.into(),
        task_type: "index".into(),
        data_source: "wiki".into(),
        spec,
        state: crate::metadata::TaskState::Running,
        error: None,
        created_ms: 1,
        started_ms: None,
        ended_ms: None,
        report: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{TaskRecord, TaskState};

    #[test]
    fn a_request_with_free_form_json_round_trips_through_the_binary_encoding() {
        let request = ClientRequest {
            term: Some(4),
            proposed_ms: 17,
            id: RequestId {
                client: 3,
                serial: 9,
            },
            command: Command::CreateTask {
                task: running_task(
                    "t1",
                    serde_json::json!({"nested": [1, "two", {"three": null}]}),
                ),
            },
        };
        let bytes = encode(&request).unwrap();
        assert_eq!(decode::<ClientRequest>(&bytes).unwrap(), request);
        // Stream offsets (integer-keyed maps) inside the internally tagged command.
        let offsets = |at: i64| crate::metadata::StreamOffsets {
            stream: "edits".into(),
            partitions: [(0, at), (7, at + 1)].into(),
        };
        let stream = ClientRequest {
            term: None,
            proposed_ms: 0,
            id: request.id,
            command: Command::PublishSegmentsWithOffsets {
                task_id: "t1".into(),
                segments: Vec::new(),
                schema: grove_segment::schema::Schema {
                    data_source: "wiki".into(),
                    dimensions: Vec::new(),
                    metrics: Vec::new(),
                    query_granularity: grove_segment::time::Granularity::named("hour").unwrap(),
                    segment_granularity: grove_segment::time::Granularity::named("day").unwrap(),
                    rollup: false,
                    time_position: 0,
                },
                report: Default::default(),
                ended_ms: 5,
                start_offsets: offsets(10),
                end_offsets: offsets(20),
            },
        };
        assert_eq!(
            decode::<ClientRequest>(&encode(&stream).unwrap()).unwrap(),
            stream
        );
        let verdict = Verdict {
            result: Err(MetadataError::TaskExists("t1".into())),
            duplicate: true,
        };
        assert_eq!(
            decode::<Verdict>(&encode(&verdict).unwrap()).unwrap(),
            verdict
        );
        assert!(decode::<ClientRequest>(&bytes[..bytes.len() - 1]).is_err());
    }

    use crate::metadata::{
        AuditInfo, NodeRecord, SegmentAssignment, SegmentRecord, StreamOffsets, SupervisorState,
        TaskReport,
    };
    use grove_segment::id::SegmentId;
    use grove_segment::schema::{DimensionSchema, MetricKind, MetricSchema, Schema};
    use grove_segment::time::{Granularity, Interval};

    fn interval() -> Interval {
        Interval::parse("2024-01-01T00:00:00Z/2024-01-02T00:00:00Z").unwrap()
    }

    fn segment() -> SegmentRecord {
        SegmentRecord {
            id: SegmentId {
                data_source: "wiki".into(),
                namespace: Some("ns".into()),
                interval: interval(),
                version: "v1".into(),
                partition: 3,
            },
            core_partitions: 4,
            load_spec: serde_json::json!({"type": "local", "path": "/deep/s.bin", "n": [1.5, null]}),
            num_rows: 10,
            size_bytes: 99,
            used: true,
            created_ms: -5,
        }
    }

    fn schema() -> Schema {
        Schema {
            data_source: "wiki".into(),
            dimensions: vec![DimensionSchema::string("page"), DimensionSchema::double("d")],
            metrics: vec![
                MetricSchema {
                    name: "count".into(),
                    field_name: None,
                    kind: MetricKind::Count,
                },
                MetricSchema {
                    name: "users".into(),
                    field_name: Some("user".into()),
                    kind: MetricKind::HllSketch { lg_k: 12, utf16le: false },
                },
            ],
            query_granularity: serde_json::from_value(serde_json::json!(
                {"type": "period", "period": "PT1H", "timeZone": "UTC", "origin": "2024-01-01T00:30:00Z"}
            ))
            .unwrap(),
            segment_granularity: Granularity::named("day").unwrap(),
            rollup: true,
            time_position: 0,
        }
    }

    fn task(state: TaskState) -> TaskRecord {
        TaskRecord {
            id: "t1".into(),
            task_type: "index_parallel".into(),
            data_source: "wiki".into(),
            spec: serde_json::json!({"spec": {"ioConfig": {"type": "index_parallel"}}}),
            state,
            error: Some("why".into()),
            created_ms: 1,
            started_ms: Some(2),
            ended_ms: None,
            report: Some(TaskReport {
                processed: 5,
                unparseable: 1,
                thrown_away: 0,
                parse_errors: vec!["line 3: bad".into()],
                segments: 1,
            }),
        }
    }

    fn audit() -> AuditInfo {
        AuditInfo {
            author: "ops".into(),
            comment: "because".into(),
        }
    }

    /// One command of every variant (the match makes a new variant fail to compile here
    /// until it is added).
    fn every_command() -> Vec<Command> {
        let offsets = |at: i64| StreamOffsets {
            stream: "edits".into(),
            partitions: [(0, at), (7, at + 1)].into(),
        };
        let commands = vec![
            Command::CreateTask {
                task: task(TaskState::Running),
            },
            Command::UpdateTask {
                task: task(TaskState::Failed),
            },
            Command::PublishSegments {
                task_id: "t1".into(),
                segments: vec![segment(), segment()],
                schema: schema(),
                report: TaskReport::default(),
                ended_ms: 7,
            },
            Command::PublishSegmentsWithOffsets {
                task_id: "t2".into(),
                segments: vec![segment()],
                schema: schema(),
                report: TaskReport::default(),
                ended_ms: 8,
                start_offsets: offsets(10),
                end_offsets: offsets(20),
            },
            Command::MarkSegmentsUnused {
                data_source: "wiki".into(),
                ids: vec![segment().id],
            },
            Command::AcquireTaskLock {
                task_id: "t1".into(),
                data_source: "wiki".into(),
                interval: interval(),
                version: "v1".into(),
                acquired_ms: 3,
            },
            Command::ReleaseTaskLock {
                task_id: "t1".into(),
                data_source: "wiki".into(),
                interval: interval(),
            },
            Command::SetRules {
                data_source: "_default".into(),
                rules: vec![
                    serde_json::json!({"type": "loadForever", "tieredReplicants": {"_default_tier": 2}}),
                ],
                audit: audit(),
                changed_ms: 4,
            },
            Command::SetDynamicConfig {
                name: "coordinator".into(),
                value: serde_json::json!({"maxSegmentsToMove": 100}),
                expected_version: Some(0),
                audit: audit(),
                changed_ms: 5,
            },
            Command::SubmitSupervisor {
                id: "kafka-wiki".into(),
                spec: serde_json::json!({"type": "kafka", "ioConfig": {"topic": "edits"}}),
                audit: audit(),
                changed_ms: 6,
            },
            Command::SetSupervisorState {
                id: "kafka-wiki".into(),
                state: SupervisorState::Suspended,
                audit: audit(),
                changed_ms: 7,
            },
            Command::PutNode {
                node: NodeRecord {
                    id: "h1".into(),
                    address: "10.0.0.1:8083".into(),
                    roles: ["broker".to_string(), "historical".to_string()].into(),
                    tier: "_default_tier".into(),
                    capacity_bytes: 1 << 40,
                    version: "0.1.0".into(),
                },
            },
            Command::RemoveNode { id: "h1".into() },
            Command::ReplaceAssignments {
                assignments: vec![SegmentAssignment {
                    segment: segment().id,
                    nodes: ["h1".to_string(), "h2".to_string()].into(),
                }],
            },
        ];
        for command in &commands {
            match command {
                Command::CreateTask { .. }
                | Command::UpdateTask { .. }
                | Command::PublishSegments { .. }
                | Command::PublishSegmentsWithOffsets { .. }
                | Command::MarkSegmentsUnused { .. }
                | Command::AcquireTaskLock { .. }
                | Command::ReleaseTaskLock { .. }
                | Command::SetRules { .. }
                | Command::SetDynamicConfig { .. }
                | Command::SubmitSupervisor { .. }
                | Command::SetSupervisorState { .. }
                | Command::PutNode { .. }
                | Command::RemoveNode { .. }
                | Command::ReplaceAssignments { .. } => {}
            }
        }
        commands
    }

    #[test]
    fn every_command_round_trips_and_every_truncation_or_corruption_is_an_error() {
        for (serial, command) in every_command().into_iter().enumerate() {
            let request = ClientRequest {
                id: RequestId {
                    client: 1,
                    serial: serial as u64,
                },
                command,
                term: Some(2),
                proposed_ms: 3,
            };
            let bytes = encode(&request).unwrap();
            assert_eq!(decode::<ClientRequest>(&bytes).unwrap(), request);
            for cut in 0..bytes.len() {
                assert!(
                    decode::<ClientRequest>(&bytes[..cut]).is_err(),
                    "{:?} cut at {cut} decoded",
                    request.command
                );
            }
            // Flipped bytes either fail or decode to something else; they never panic.
            for at in 0..bytes.len() {
                let mut bad = bytes.to_vec();
                bad[at] ^= 0xff;
                let _ = decode::<ClientRequest>(&bad);
            }
        }
        let huge_claim = [0u8, 0, 0, 0xfc, 0xff, 0xff, 0xff, 0xff];
        assert!(decode::<ClientRequest>(&huge_claim).is_err());
    }

    #[test]
    fn records_keep_their_json_shape_while_binary_carries_json_text() {
        let json = serde_json::to_value(segment()).unwrap();
        assert_eq!(json["loadSpec"]["type"], "local", "{json}");
        let json = serde_json::to_value(task(TaskState::Running)).unwrap();
        assert_eq!(json["spec"]["spec"]["ioConfig"]["type"], "index_parallel");
        let record = crate::metadata::DataSourceRecord {
            name: "wiki".into(),
            schema: schema(),
            updated_ms: 1,
        };
        let json = serde_json::to_value(&record).unwrap();
        assert_eq!(
            json["schema"]["queryGranularity"]["period"], "PT1H",
            "{json}"
        );
        let back: crate::metadata::DataSourceRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back, record);
        assert_eq!(
            decode::<crate::metadata::DataSourceRecord>(&encode(&record).unwrap()).unwrap(),
            record
        );
    }
}
