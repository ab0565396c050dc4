//! The openraft type configuration of Grove's metadata group ([`TypeConfig`]) and the values
//! that travel in its log: [`WriteBatch`] (the payload of a normal entry: the
//! [`ClientRequest`]s the leader gathered into it, each a [`Command`] with the [`RequestId`]
//! that deduplicates retries), [`Verdict`] (what the apply step decided for one request) and
//! [`GroveNode`] (how a member is reached).
//!
//! Encoding: log entries, Raft messages and snapshots' metadata are encoded with bincode's
//! serde adapter ([`encode`] / [`decode`], through `grove_rpc::codec`, the one place that calls
//! bincode). bincode cannot decode self-describing values such as `serde_json::Value` or
//! internally tagged enums, both of which a [`Command`] contains, so a request carries its
//! command as JSON text inside the binary envelope; the JSON form is the one the single-node
//! store already writes.
//!
//! Invariants: a [`RequestId`] is unique per logical write (a client id that no other writer
//! uses, and a serial it never reuses); retries of one write reuse its id.

use std::fmt;
use std::io::Cursor;

use grove_rpc::RpcError;
use serde::{Deserialize, Serialize};

use super::runtime::SeededRuntime;
use crate::metadata::{Command, MetadataError};

/// The id openraft knows a member by.
pub type RaftNodeId = u64;

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
/// process), `serial` counts its writes.
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
    #[serde(with = "command_as_json")]
    pub command: Command,
    /// The leader term the writer observed, if it fences its write with it: the state
    /// machine refuses the command (changing nothing) when the entry was appended by the
    /// leader of another term.
    pub term: Option<u64>,
}

impl ClientRequest {
    /// An unfenced request.
    pub fn new(id: RequestId, command: Command) -> Self {
        ClientRequest {
            id,
            command,
            term: None,
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

mod command_as_json {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::metadata::Command;

    pub fn serialize<S: Serializer>(command: &Command, serializer: S) -> Result<S::Ok, S::Error> {
        let text = serde_json::to_string(command).map_err(serde::ser::Error::custom)?;
        serializer.serialize_str(&text)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Command, D::Error> {
        let text = String::deserialize(deserializer)?;
        serde_json::from_str(&text).map_err(serde::de::Error::custom)
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
            id: RequestId {
                client: 3,
                serial: 9,
            },
            command: Command::CreateTask {
                task: TaskRecord {
                    id: "t1".into(),
                    task_type: "index".into(),
                    data_source: "wiki".into(),
                    spec: serde_json::json!({"nested": [1, "two", {"three": null}]}),
                    state: TaskState::Running,
                    error: None,
                    created_ms: 1,
                    started_ms: None,
                    ended_ms: None,
                    report: None,
                },
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
}
