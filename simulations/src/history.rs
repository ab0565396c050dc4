//! What the run observed: the client history (every operation with its invocation and
//! completion in virtual time), every entry members applied, and the trace. One
//! [`Recorder`] per run, shared by the members' apply hooks, the clients and the driver.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_raft::metadata::{Command, MetadataError};
use grove_raft::replicated::{RequestId, TypeConfig, Verdict};
use openraft::{Entry, EntryPayload, LogId};

use crate::invariants::Violation;
use crate::trace::{Trace, Who};

/// What a client asked.
#[derive(Clone, Debug)]
pub enum Request {
    Write {
        id: RequestId,
        command: Box<Command>,
    },
    /// A linearizable read of a datasource's stored offsets.
    ReadOffsets { data_source: String },
}

/// How it ended.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Still running when the safety phase ended.
    Pending,
    /// A write's verdict (its first application's result).
    Acked(Result<(), MetadataError>),
    /// A read's answer: the offsets by partition, `None` if none are stored.
    Read(Option<BTreeMap<u32, i64>>),
    /// No answer: a write may or may not have been applied; a read is ignored.
    Unknown(String),
}

#[derive(Clone, Debug)]
pub struct Op {
    pub client: u64,
    pub request: Request,
    pub invoked: Duration,
    pub completed: Option<Duration>,
    pub outcome: Outcome,
}

/// Where a request sits in the committed sequence: its entry's log index, then its place in
/// that entry's batch. Entries apply whole, in log order, so this is the sequential order.
pub type Position = (u64, usize);

/// One entry as first applied by some member.
#[derive(Clone, Debug)]
pub struct Applied {
    pub entry: Entry<TypeConfig>,
    /// The entry's log encoding.
    pub bytes: Vec<u8>,
    /// One verdict per request of the entry's batch, in batch order (none for blank and
    /// membership entries).
    pub verdicts: Vec<Verdict>,
    pub by: u64,
}

impl Applied {
    /// The entry's requests with their place in the batch (none for blank and membership
    /// entries).
    pub fn requests(&self) -> impl Iterator<Item = (usize, &RequestId, &Command)> {
        let requests = match &self.entry.payload {
            EntryPayload::Normal(batch) => batch.requests.as_slice(),
            _ => &[],
        };
        requests
            .iter()
            .enumerate()
            .map(|(slot, request)| (slot, &request.id, &request.command))
    }
}

pub struct Recorder {
    pub start: tokio::time::Instant,
    pub trace: Trace,
    pub ops: Vec<Op>,
    /// Every applied entry by index, as the first member that applied it saw it.
    pub committed: BTreeMap<u64, Applied>,
    /// Per member, the last index it applied (or loaded/installed a snapshot up to).
    pub applied: BTreeMap<u64, Option<LogId<u64>>>,
    /// Per member, the greatest vote it has shown.
    pub votes: BTreeMap<u64, openraft::Vote<u64>>,
    pub violations: Vec<Violation>,
}

pub type Shared = Arc<Mutex<Recorder>>;

impl Recorder {
    pub fn new(verbose: bool) -> Shared {
        let mut trace = Trace::default();
        trace.verbose = verbose;
        Arc::new(Mutex::new(Recorder {
            start: tokio::time::Instant::now(),
            trace,
            ops: Vec::new(),
            committed: BTreeMap::new(),
            applied: BTreeMap::new(),
            votes: BTreeMap::new(),
            violations: Vec::new(),
        }))
    }

    /// Virtual time since the run started.
    pub fn now(&self) -> Duration {
        tokio::time::Instant::now() - self.start
    }

    /// Virtual time of the last event (the runtime may be gone).
    pub fn now_or_last(&self) -> Duration {
        self.trace
            .tail()
            .last()
            .map_or(Duration::ZERO, |event| event.at)
    }

    pub fn event(&mut self, who: Who, kind: &'static str, digest: u64, detail: String) {
        let at = self.now();
        self.trace.record(at, who, kind, digest, detail);
    }

    pub fn violate(&mut self, violation: Violation) {
        let digest = crate::rng::fnv1a(violation.detail.as_bytes());
        self.event(None, "VIOLATION", digest, violation.to_string());
        self.violations.push(violation);
    }

    /// Starts an operation; returns its number.
    pub fn invoke(&mut self, client: u64, request: Request) -> usize {
        let digest = match &request {
            Request::Write { id, .. } => id.client.rotate_left(32) ^ id.serial,
            Request::ReadOffsets { data_source } => crate::rng::fnv1a(data_source.as_bytes()),
        };
        self.event(None, "invoke", digest ^ client, String::new());
        let op = Op {
            client,
            request,
            invoked: self.now(),
            completed: None,
            outcome: Outcome::Pending,
        };
        self.ops.push(op);
        self.ops.len() - 1
    }

    pub fn complete(&mut self, op: usize, outcome: Outcome) {
        let digest = crate::rng::fnv1a(format!("{outcome:?}").as_bytes());
        self.event(None, "complete", digest ^ op as u64, String::new());
        let now = self.now();
        let op = &mut self.ops[op];
        op.completed = Some(now);
        op.outcome = outcome;
    }
}

/// An entry's log encoding (what members store), for comparisons and digests.
pub fn encode_entry(entry: &Entry<TypeConfig>) -> Vec<u8> {
    grove_raft::replicated::types::encode(entry)
        .map(|bytes| bytes.to_vec())
        .unwrap_or_default()
}
