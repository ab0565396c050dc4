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
//! index order, exactly once (an event carries only the changes of those kinds). If some of
//! those events are no longer retained here, it first gets a resync: the full state of its
//! tables as of one index, in [`WatchItem::Resync`] parts of at most [`RESYNC_ROWS_MAX`] rows
//! each (so no item outgrows a frame, whatever the tables hold), the last one flagged; events
//! continue after that index. The parts are read from a copy of the tables taken when the
//! resync starts (chunked maps: the copy shares their rows), so they add up to one state even
//! while writes go on. To resume after a disconnect, subscribe again (to any member) from
//! [`WatchItem::resume_from`] of the last item received (a resync cut off before its last
//! part starts over).
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

/// Most rows (segments, rules, assignments and nodes together) in one part of a resync: a
/// part of segment rows is ~0.5 MB of JSON, well under the transport's frame limit.
pub const RESYNC_ROWS_MAX: usize = 1_000;

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

/// Rows of the watched tables as of a log index: one part of a resync. Every watched kind is
/// `Some` in every part (possibly empty); the parts of one resync, in order, hold each
/// table's rows once, in key order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchState {
    /// Used segments, by datasource then id (if segments are watched).
    pub segments: Option<Vec<SegmentRecord>>,
    /// Rules records, by datasource (if rules are watched).
    pub rules: Option<Vec<RulesRecord>>,
    /// Assignments, by segment id (if assignments are watched).
    pub assignments: Option<Vec<SegmentAssignment>>,
    /// Registered nodes, by id, and the group's voters and learners (if membership is
    /// watched).
    pub nodes: Option<Vec<NodeRecord>>,
    pub raft_membership: Option<Change>,
}

impl WatchState {
    fn rows(&self) -> usize {
        self.segments.as_ref().map_or(0, Vec::len)
            + self.rules.as_ref().map_or(0, Vec::len)
            + self.assignments.as_ref().map_or(0, Vec::len)
            + self.nodes.as_ref().map_or(0, Vec::len)
    }

    /// Adds `part`'s rows (a later part of the same resync) to these.
    pub fn extend(&mut self, part: WatchState) {
        fn join<T>(into: &mut Option<Vec<T>>, rows: Option<Vec<T>>) {
            if let Some(rows) = rows {
                into.get_or_insert_with(Vec::new).extend(rows);
            }
        }
        join(&mut self.segments, part.segments);
        join(&mut self.rules, part.rules);
        join(&mut self.assignments, part.assignments);
        join(&mut self.nodes, part.nodes);
        if part.raft_membership.is_some() {
            self.raft_membership = part.raft_membership;
        }
    }
}

/// What a subscriber receives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "type")]
pub enum WatchItem {
    /// The events after the requested index are gone: the full state as of `index` comes in
    /// parts (see [`WatchState`]); the one with `last` completes it, and events continue
    /// after `index`.
    Resync {
        index: u64,
        part: Box<WatchState>,
        last: bool,
    },
    Change(ChangeEvent),
}

impl WatchItem {
    /// The `from_index` that resumes a subscription after this item; `None` after a resync
    /// part that is not the last (resume from where that resync began).
    pub fn resume_from(&self) -> Option<u64> {
        match self {
            WatchItem::Resync {
                index, last: true, ..
            } => Some(index + 1),
            WatchItem::Resync { .. } => None,
            WatchItem::Change(event) => Some(event.index + 1),
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

/// Where a resync has got to: the tables as of its index (a copy sharing their rows), and
/// the last key sent of the table it is on.
struct Resync {
    index: u64,
    tables: MemoryTables,
    membership: Change,
    kinds: BTreeSet<WatchKind>,
    /// Which table: 0 segments, 1 rules, 2 assignments, 3 nodes, 4 done.
    table: usize,
    after_segment: Option<(String, String)>,
    after_key: Option<String>,
}

impl Resync {
    /// The next part; `None` once the last was given.
    fn next_part(&mut self) -> Option<WatchItem> {
        if self.table > 4 {
            return None;
        }
        let has = |kind| self.kinds.contains(&kind);
        let mut part = WatchState {
            segments: has(WatchKind::Segments).then(Vec::new),
            rules: has(WatchKind::Rules).then(Vec::new),
            assignments: has(WatchKind::Assignments).then(Vec::new),
            nodes: has(WatchKind::Membership).then(Vec::new),
            raft_membership: has(WatchKind::Membership).then(|| self.membership.clone()),
        };
        while self.table < 4 {
            let room = RESYNC_ROWS_MAX - part.rows();
            if room == 0 {
                break;
            }
            let cluster = self.tables.cluster();
            let done = match self.table {
                0 => match &mut part.segments {
                    Some(rows) => {
                        let (found, last) = self
                            .tables
                            .used_segments_after(self.after_segment.as_ref(), room);
                        let done = last.is_none();
                        rows.extend(found);
                        self.after_segment = last;
                        done
                    }
                    None => true,
                },
                1 => match &mut part.rules {
                    Some(rows) => {
                        let found = cluster.rules_after(self.after_key.as_ref(), room);
                        self.after_key = found.last().map(|r| r.data_source.clone());
                        let done = found.len() < room;
                        rows.extend(found);
                        done
                    }
                    None => true,
                },
                2 => match &mut part.assignments {
                    Some(rows) => {
                        let found = cluster.assignments_after(self.after_key.as_ref(), room);
                        self.after_key = found.last().map(|a| a.segment.to_string());
                        let done = found.len() < room;
                        rows.extend(found);
                        done
                    }
                    None => true,
                },
                _ => match &mut part.nodes {
                    Some(rows) => {
                        let found = cluster.nodes_after(self.after_key.as_ref(), room);
                        self.after_key = found.last().map(|n| n.id.clone());
                        let done = found.len() < room;
                        rows.extend(found);
                        done
                    }
                    None => true,
                },
            };
            if done {
                self.table += 1;
                self.after_key = None;
            }
        }
        let last = self.table == 4;
        // The next call ends it.
        if last {
            self.table = 5;
        }
        Some(WatchItem::Resync {
            index: self.index,
            part: Box::new(part),
            last,
        })
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
    /// A resync being sent in parts.
    resync: Option<Resync>,
}

impl Cursor {
    /// Moves what is applied from `next` on into `pending`: the retained events, or, if
    /// events are missing, starts a resync.
    fn collect(&mut self) {
        let machine = self.state.read().expect("state lock");
        let Some(applied) = machine.last_applied.map(|l| l.index) else {
            return;
        };
        if applied < self.next {
            return;
        }
        if self.next < machine.changes.retained_from() {
            self.resync = Some(Resync {
                index: applied,
                // A copy sharing the chunks of the large tables: cheap, and consistent.
                tables: machine.tables.clone(),
                membership: Change::of_membership(machine.membership.membership()),
                kinds: self.kinds.clone(),
                table: 0,
                after_segment: None,
                after_key: None,
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
        resync: None,
    };
    futures::stream::unfold(cursor, |mut cursor| async move {
        loop {
            if let Some(item) = cursor.pending.pop_front() {
                return Some((item, cursor));
            }
            if let Some(resync) = &mut cursor.resync {
                match resync.next_part() {
                    Some(part) => return Some((part, cursor)),
                    None => cursor.resync = None,
                }
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
    fn a_resync_comes_in_bounded_parts_that_add_up_to_the_tables() {
        use crate::metadata::apply::{Tables, apply};
        use crate::metadata::{AuditInfo, Command};
        let mut tables = MemoryTables::default();
        let mut task = crate::replicated::types::running_task("t", serde_json::json!({}));
        task.data_source = "wiki".into();
        tables.put_task(&task);
        // 2,500 segments, every fifth unused.
        let segment = |partition: u32| SegmentRecord {
            id: SegmentId::new(
                "wiki",
                None,
                grove_segment::time::Interval::new(0, 86_400_000),
                "v1",
                partition,
            ),
            core_partitions: 1,
            load_spec: serde_json::json!({"type": "local"}),
            num_rows: 1,
            size_bytes: 1,
            used: !partition.is_multiple_of(5),
            created_ms: 0,
        };
        for partition in 0..2_500 {
            tables.put_segment(&segment(partition));
        }
        for id in ["h1", "h2"] {
            let node = NodeRecord {
                id: id.into(),
                address: "10.0.0.1:1".into(),
                roles: ["historical".to_string()].into(),
                tier: "_default_tier".into(),
                capacity_bytes: 1,
                version: "0".into(),
            };
            apply(&mut tables, &Command::PutNode { node }).unwrap();
        }
        for ds in ["a", "b", "wiki"] {
            let rules = Command::SetRules {
                data_source: ds.into(),
                rules: vec![serde_json::json!({"type": "loadForever"})],
                audit: AuditInfo::default(),
                changed_ms: 0,
            };
            apply(&mut tables, &rules).unwrap();
        }
        let assignments = (1..2_500)
            .filter(|p: &u32| !p.is_multiple_of(5))
            .take(1_200)
            .map(|p| SegmentAssignment {
                segment: segment(p).id,
                nodes: ["h1".to_string()].into(),
            })
            .collect();
        apply(&mut tables, &Command::ReplaceAssignments { assignments }).unwrap();

        let kinds: BTreeSet<WatchKind> = [
            WatchKind::Segments,
            WatchKind::Rules,
            WatchKind::Assignments,
            WatchKind::Membership,
        ]
        .into();
        let membership = Change::RaftMembership {
            voters: vec![1],
            learners: vec![],
        };
        let mut resync = Resync {
            index: 9,
            tables: tables.clone(),
            membership: membership.clone(),
            kinds,
            table: 0,
            after_segment: None,
            after_key: None,
        };
        let mut whole = WatchState::default();
        let mut parts = 0;
        while let Some(item) = resync.next_part() {
            let WatchItem::Resync { index, part, last } = item else {
                panic!("{item:?}");
            };
            assert_eq!(index, 9);
            assert!(part.rows() <= RESYNC_ROWS_MAX, "{} rows", part.rows());
            whole.extend(*part);
            parts += 1;
            if last {
                assert!(resync.next_part().is_none());
                break;
            }
        }
        // 2,000 used segments, 3 rules, 1,200 assignments, 2 nodes: at least 4 parts.
        assert!(parts >= 4, "{parts} parts");
        assert_eq!(whole.segments.unwrap(), tables.used_segments("wiki"));
        assert_eq!(whole.rules.unwrap(), tables.cluster().all_rules());
        assert_eq!(whole.assignments.unwrap(), tables.cluster().assignments());
        assert_eq!(whole.nodes.unwrap(), tables.cluster().nodes());
        assert_eq!(whole.raft_membership, Some(membership));
    }

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
