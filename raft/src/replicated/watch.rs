//! Watch streams: the changes a member applies to segments, rules, assignments and membership,
//! in log order, for brokers and historicals to follow ([`super::RaftNode::watch`] here, the
//! `raft.watch` streaming method remotely, [`watch_remote`]).
//!
//! Each applied entry that changes a watched table records one [`ChangeEvent`] (its log
//! index and its [`Change`]s, one per accepted request of the entry's batch that changed a
//! watched table, in apply order) in the member's [`ChangeLog`], under the same lock and in the
//! same step as the apply, so events and state never disagree. The log keeps the last
//! [`CHANGES_RETAINED_MAX`] events; it is not replicated state (it is rebuilt by replaying
//! the log after a restart and restarts empty after a snapshot is installed), but every member
//! derives the same events from the same entries, so log indexes identify an event on any
//! member.
//!
//! A subscriber names the first index it wants (`from_index`; 0 for everything, the group's
//! first membership included) and gets every event of the kinds it asked for from there, in
//! index order, exactly once (an event carries only the changes of those kinds). If some of those events are no longer retained here, it first
//! gets a [`WatchItem::Resync`]: the current full state of its tables and the index that
//! state is as of; events continue after it. To resume after a disconnect, subscribe again
//! (to any member) from [`WatchItem::resume_from`] of the last item received.
//!
//! Invariants: events are recorded in apply order with strictly increasing indexes; every
//! event with an index at or above [`ChangeLog::retained_from`] is in the log.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, RwLock};

use futures::Stream;
use futures::stream::StreamExt;
use grove_rpc::codec::bincode::serde::Compat;
use grove_rpc::{Deadline, NodeId, RpcError, StreamMethod, Transport, TransportExt};
use grove_segment::id::SegmentId;
use openraft::{Membership, RaftMetrics};
use serde::{Deserialize, Serialize};

use super::state_machine::MachineState;
use super::tables::MemoryTables;
use super::types::{GroveNode, RaftNodeId};
use crate::metadata::{Command, NodeRecord, RulesRecord, SegmentAssignment, SegmentRecord};

/// How many change events a member keeps for subscribers that resume.
pub const CHANGES_RETAINED_MAX: usize = 10_000;

/// What a subscriber can watch.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum WatchKind {
    Segments,
    Rules,
    Assignments,
    /// The nodes table and the Raft group's own membership.
    Membership,
}

/// One change to a watched table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum Change {
    /// Segments published (used).
    SegmentsPublished { segments: Vec<SegmentRecord> },
    /// Segments of `data_source` marked unused.
    SegmentsUnused {
        data_source: String,
        ids: Vec<SegmentId>,
    },
    /// A datasource's (or the default's) rules, as stored after the change.
    RulesSet { rules: RulesRecord },
    /// These segments' node sets now are as listed (empty: unassigned).
    AssignmentsReplaced { assignments: Vec<SegmentAssignment> },
    /// A node registered or changed.
    NodePut { node: NodeRecord },
    /// A node unregistered; it is also gone from every assignment (so this is an assignments
    /// change as well).
    NodeRemoved { id: String },
    /// The Raft group's membership changed.
    RaftMembership {
        voters: Vec<RaftNodeId>,
        learners: Vec<RaftNodeId>,
    },
}

impl Change {
    /// The kinds a subscriber must watch to see this change.
    pub fn kinds(&self) -> &'static [WatchKind] {
        match self {
            Change::SegmentsPublished { .. } | Change::SegmentsUnused { .. } => {
                &[WatchKind::Segments]
            }
            Change::RulesSet { .. } => &[WatchKind::Rules],
            Change::AssignmentsReplaced { .. } => &[WatchKind::Assignments],
            Change::NodePut { .. } | Change::RaftMembership { .. } => &[WatchKind::Membership],
            Change::NodeRemoved { .. } => &[WatchKind::Membership, WatchKind::Assignments],
        }
    }

    /// The watched change an accepted `command` made to `tables` (read after the apply).
    pub fn of_command(command: &Command, tables: &MemoryTables) -> Option<Change> {
        Some(match command {
            Command::PublishSegments { segments, .. }
            | Command::PublishSegmentsWithOffsets { segments, .. } => Change::SegmentsPublished {
                segments: segments.clone(),
            },
            Command::MarkSegmentsUnused { data_source, ids } => Change::SegmentsUnused {
                data_source: data_source.clone(),
                ids: ids.clone(),
            },
            Command::SetRules { data_source, .. } => Change::RulesSet {
                rules: tables.cluster().rules(data_source)?,
            },
            Command::ReplaceAssignments { assignments } => Change::AssignmentsReplaced {
                assignments: assignments.clone(),
            },
            Command::PutNode { node } => Change::NodePut { node: node.clone() },
            Command::RemoveNode { id } => Change::NodeRemoved { id: id.clone() },
            Command::CreateTask { .. }
            | Command::UpdateTask { .. }
            | Command::AcquireTaskLock { .. }
            | Command::ReleaseTaskLock { .. }
            | Command::SetDynamicConfig { .. }
            | Command::SubmitSupervisor { .. }
            | Command::SetSupervisorState { .. } => return None,
        })
    }

    pub fn of_membership(membership: &Membership<RaftNodeId, GroveNode>) -> Change {
        Change::RaftMembership {
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
        }
    }
}

/// The changes one log entry made (never empty), in apply order, and the entry's index.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeEvent {
    pub index: u64,
    pub changes: Vec<Change>,
}

/// The full state of the watched tables, as of a log index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchState {
    /// Used segments, by datasource then id (if segments are watched).
    pub segments: Option<Vec<SegmentRecord>>,
    /// Every rules record (if rules are watched).
    pub rules: Option<Vec<RulesRecord>>,
    /// Every assignment (if assignments are watched).
    pub assignments: Option<Vec<SegmentAssignment>>,
    /// Registered nodes, and the group's voters and learners (if membership is watched).
    pub nodes: Option<Vec<NodeRecord>>,
    pub raft_membership: Option<Change>,
}

/// What a subscriber receives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum WatchItem {
    /// The events after the requested index are gone: here is the full state as of `index`;
    /// events continue after it.
    Resync {
        index: u64,
        state: Box<WatchState>,
    },
    Change(ChangeEvent),
}

impl WatchItem {
    /// The `from_index` that resumes a subscription after this item.
    pub fn resume_from(&self) -> u64 {
        match self {
            WatchItem::Resync { index, .. } => index + 1,
            WatchItem::Change(event) => event.index + 1,
        }
    }
}

/// The retained change events of one member.
#[derive(Clone, Debug, Default)]
pub struct ChangeLog {
    events: VecDeque<ChangeEvent>,
    /// Every event at this index or later is retained.
    retained_from: u64,
}

impl ChangeLog {
    /// An empty log of a state restored as of `index` (events up to it are not known).
    pub fn restored_at(index: u64) -> Self {
        ChangeLog {
            events: VecDeque::new(),
            retained_from: index + 1,
        }
    }

    pub fn retained_from(&self) -> u64 {
        self.retained_from
    }

    /// Records the changes of entry `index`, forgetting the oldest event past the bound.
    pub fn record(&mut self, index: u64, changes: Vec<Change>) {
        debug_assert!(
            self.events.back().is_none_or(|last| last.index < index) && index >= self.retained_from,
            "change at {index} recorded out of order"
        );
        debug_assert!(!changes.is_empty(), "an event without changes at {index}");
        if self.events.len() == CHANGES_RETAINED_MAX
            && let Some(oldest) = self.events.pop_front()
        {
            self.retained_from = oldest.index + 1;
        }
        self.events.push_back(ChangeEvent { index, changes });
    }

    /// The retained events from `index` on, with only the changes of the `kinds` asked for
    /// (events left without any are skipped), in index order.
    fn from(&self, index: u64, kinds: &BTreeSet<WatchKind>) -> Vec<ChangeEvent> {
        let start = self.events.partition_point(|e| e.index < index);
        self.events
            .range(start..)
            .filter_map(|event| {
                let changes: Vec<Change> = event
                    .changes
                    .iter()
                    .filter(|change| change.kinds().iter().any(|k| kinds.contains(k)))
                    .cloned()
                    .collect();
                (!changes.is_empty()).then_some(ChangeEvent {
                    index: event.index,
                    changes,
                })
            })
            .collect()
    }
}

/// The state of the `kinds` tables in `machine`.
fn watch_state(machine: &MachineState, kinds: &BTreeSet<WatchKind>) -> WatchState {
    let tables = &machine.tables;
    let cluster = tables.cluster();
    let has = |kind| kinds.contains(&kind);
    WatchState {
        segments: has(WatchKind::Segments).then(|| {
            tables
                .data_sources()
                .iter()
                .flat_map(|ds| tables.used_segments(&ds.name))
                .collect()
        }),
        rules: has(WatchKind::Rules).then(|| cluster.all_rules()),
        assignments: has(WatchKind::Assignments).then(|| cluster.assignments()),
        nodes: has(WatchKind::Membership).then(|| cluster.nodes()),
        raft_membership: has(WatchKind::Membership)
            .then(|| Change::of_membership(machine.membership.membership())),
    }
}

/// A subscription's position.
struct Cursor {
    state: Arc<RwLock<MachineState>>,
    metrics: tokio::sync::watch::Receiver<RaftMetrics<RaftNodeId, GroveNode>>,
    kinds: BTreeSet<WatchKind>,
    /// The next index to deliver from.
    next: u64,
    pending: VecDeque<WatchItem>,
}

impl Cursor {
    /// Moves what is applied from `next` on into `pending`: a resync if events are missing,
    /// then the retained events.
    fn collect(&mut self) {
        let machine = self.state.read().expect("state lock");
        let Some(applied) = machine.last_applied.map(|l| l.index) else {
            return;
        };
        if applied < self.next {
            return;
        }
        if self.next < machine.changes.retained_from() {
            self.pending.push_back(WatchItem::Resync {
                index: applied,
                state: Box::new(watch_state(&machine, &self.kinds)),
            });
            self.next = applied + 1;
            return;
        }
        let events = machine.changes.from(self.next, &self.kinds);
        drop(machine);
        self.pending
            .extend(events.into_iter().map(WatchItem::Change));
        // Events not watched move the cursor too: nothing up to `applied` is missing.
        self.next = applied + 1;
    }
}

/// The stream behind [`super::RaftNode::watch`]; ends when the member stops.
pub(crate) fn watch_stream(
    state: Arc<RwLock<MachineState>>,
    metrics: tokio::sync::watch::Receiver<RaftMetrics<RaftNodeId, GroveNode>>,
    from_index: u64,
    kinds: BTreeSet<WatchKind>,
) -> impl Stream<Item = WatchItem> + Send + 'static {
    let cursor = Cursor {
        state,
        metrics,
        kinds,
        next: from_index,
        pending: VecDeque::new(),
    };
    futures::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(item) = cursor.pending.pop_front() {
                return Some((item, cursor));
            }
            // Mark the current metrics seen before reading, so an apply after the read
            // wakes the wait below.
            cursor.metrics.borrow_and_update();
            cursor.collect();
            if cursor.pending.is_empty() && cursor.metrics.changed().await.is_err() {
                return None;
            }
        }
    })
}

/// `raft.watch`: a member's change events from an index. Items are [`WatchItem`]s as JSON
/// text (they carry free-form JSON, which bincode cannot decode).
pub struct Watch;
impl StreamMethod for Watch {
    const NAME: &'static str = "raft.watch";
    type Request = Compat<WatchRequest>;
    type Item = String;
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WatchRequest {
    pub from_index: u64,
    pub kinds: Vec<WatchKind>,
}

/// Subscribes to member `peer`'s changes over `transport` until `deadline` (resume with a new
/// subscription from the last index received). A transport error is the last item.
pub fn watch_remote(
    transport: &dyn Transport,
    peer: &NodeId,
    from_index: u64,
    kinds: &[WatchKind],
    deadline: Deadline,
) -> impl Stream<Item = Result<WatchItem, RpcError>> + Send + 'static + use<> {
    let request = Compat(WatchRequest {
        from_index,
        kinds: kinds.to_vec(),
    });
    transport
        .stream::<Watch>(peer, &request, deadline)
        .map(|item| {
            item.and_then(|text| {
                serde_json::from_str(&text).map_err(|e| RpcError::Malformed {
                    reason: format!("an undecodable watch item: {e}"),
                })
            })
        })
}

/// Serves [`Watch`] from a member's stream.
pub(crate) fn encode_item(item: WatchItem) -> Result<String, RpcError> {
    serde_json::to_string(&item).map_err(|e| RpcError::Malformed {
        reason: format!("a watch item: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entrys_event_keeps_only_the_watched_kinds_and_skips_an_entry_left_empty() {
        let unused = Change::SegmentsUnused {
            data_source: "wiki".into(),
            ids: Vec::new(),
        };
        let rules = Change::RulesSet {
            rules: RulesRecord {
                data_source: "wiki".into(),
                rules: Vec::new(),
                version: 1,
                updated_ms: 0,
            },
        };
        let removed = Change::NodeRemoved { id: "h1".into() };
        let mut log = ChangeLog::default();
        // One entry whose batch changed segments and rules, then one that removed a node.
        log.record(4, vec![unused.clone(), rules.clone()]);
        log.record(5, vec![removed.clone()]);
        let of = |kinds: &[WatchKind], from: u64| log.from(from, &kinds.iter().copied().collect());
        assert_eq!(
            of(&[WatchKind::Rules], 0),
            [ChangeEvent {
                index: 4,
                changes: vec![rules.clone()]
            }]
        );
        assert_eq!(
            of(&[WatchKind::Segments, WatchKind::Assignments], 0),
            [
                ChangeEvent {
                    index: 4,
                    changes: vec![unused.clone()]
                },
                ChangeEvent {
                    index: 5,
                    changes: vec![removed.clone()]
                }
            ]
        );
        assert_eq!(
            of(&[WatchKind::Rules, WatchKind::Segments], 0)[0].changes,
            [unused, rules],
            "apply order within the entry"
        );
        assert!(of(&[WatchKind::Rules], 5).is_empty());
    }
}
