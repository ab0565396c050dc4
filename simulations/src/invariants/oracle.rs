//! The sequential model of the metadata: the committed sequence (every entry some member
//! applied, by index) replayed from an empty state through the production apply step
//! (`MachineState::apply_entry`, the function every replica runs), as the brief allows: the
//! model is the specification. An entry is a batch of requests applied whole, in log order,
//! so a request's place in the sequence is its [`Position`] (log index, place in the batch).
//! The model yields the verdict at each position, the position at which each request was
//! first applied, and the stored offsets of each datasource after each entry (a member
//! applies an entry under its state lock, so reads see states between entries only).

use std::collections::BTreeMap;

use grove_raft::metadata::Command;
use grove_raft::replicated::RequestId;
use grove_raft::replicated::Verdict;
use grove_raft::replicated::state_machine::MachineState;

use super::Violation;
use crate::history::{Applied, Position};

/// Offsets of one datasource by partition (`None`: none stored).
pub type Offsets = Option<BTreeMap<u32, i64>>;

pub struct Oracle {
    /// The model's verdict for each request of the committed sequence.
    pub verdicts: BTreeMap<Position, Verdict>,
    /// Position of each request's first application.
    pub first_position: BTreeMap<RequestId, Position>,
    /// Per datasource: the offsets after each entry (by log index) where they changed.
    pub offsets: BTreeMap<String, Vec<(u64, Offsets)>>,
    pub state: MachineState,
    pub last_index: Option<u64>,
}

impl Oracle {
    /// Replays `committed`; a gap in it or a verdict the model does not reproduce is a
    /// state-machine-safety violation.
    pub fn replay(committed: &BTreeMap<u64, Applied>) -> (Oracle, Vec<Violation>) {
        let mut violations = Vec::new();
        let mut oracle = Oracle {
            verdicts: BTreeMap::new(),
            first_position: BTreeMap::new(),
            offsets: BTreeMap::new(),
            state: MachineState::default(),
            last_index: None,
        };
        for (&index, applied) in committed {
            let expected = oracle.last_index.map_or(0, |last| last + 1);
            if index != expected {
                violations.push(Violation::new(
                    "state machine safety",
                    format!("no member applied index {expected} (the next applied is {index})"),
                ));
            }
            oracle.last_index = Some(index);
            let verdicts = oracle.state.apply_entry(&applied.entry);
            let requests = applied.requests().count();
            if verdicts.len() != requests || applied.verdicts.len() != requests {
                violations.push(Violation::new(
                    "state machine safety",
                    format!(
                        "entry {} holds {requests} requests: member {} decided {} verdicts, the \
                         sequential model {}",
                        applied.entry.log_id,
                        applied.by,
                        applied.verdicts.len(),
                        verdicts.len()
                    ),
                ));
            }
            for (slot, (decided, model)) in applied.verdicts.iter().zip(&verdicts).enumerate() {
                if decided != model {
                    violations.push(Violation::new(
                        "state machine safety",
                        format!(
                            "entry {} request {slot}: member {} decided {decided:?}, the \
                             sequential model {model:?}",
                            applied.entry.log_id, applied.by
                        ),
                    ));
                }
            }
            // The datasources whose offsets an accepted publish of this entry moved.
            let mut moved = Vec::new();
            for ((slot, id, command), verdict) in applied.requests().zip(&verdicts) {
                oracle.first_position.entry(*id).or_insert((index, slot));
                if let Command::PublishSegmentsWithOffsets { task_id, .. } = command
                    && verdict.result.is_ok()
                    && !verdict.duplicate
                {
                    let data_source = oracle
                        .state
                        .tables
                        .task(task_id)
                        .map(|task| task.data_source)
                        .unwrap_or_default();
                    if !moved.contains(&data_source) {
                        moved.push(data_source);
                    }
                }
                oracle.verdicts.insert((index, slot), verdict.clone());
            }
            for data_source in moved {
                let now = oracle.offsets_now(&data_source);
                oracle
                    .offsets
                    .entry(data_source)
                    .or_default()
                    .push((index, now));
            }
        }
        (oracle, violations)
    }

    fn offsets_now(&self, data_source: &str) -> Offsets {
        self.state
            .tables
            .stream_offsets(data_source)
            .map(|offsets| offsets.partitions)
    }

    /// The offsets of `data_source` after the entry at `index` (`None` index: before any).
    pub fn offsets_at(&self, data_source: &str, index: Option<u64>) -> Offsets {
        let changes = self.offsets.get(data_source)?;
        let index = index?;
        changes
            .iter()
            .rev()
            .find(|(at, _)| *at <= index)
            .and_then(|(_, offsets)| offsets.clone())
    }

    /// The lowest index at or above `floor` and below `ceiling` (no bound if `None`) after
    /// which the offsets of `data_source` are `value`, if there is one (`Some(None)`: before
    /// the first entry).
    pub fn first_index_with(
        &self,
        data_source: &str,
        value: &Offsets,
        floor: Option<u64>,
        ceiling: Option<u64>,
    ) -> Option<Option<u64>> {
        let below = |index: Option<u64>| match (index, ceiling) {
            (_, None) | (None, Some(_)) => true,
            (Some(index), Some(ceiling)) => index < ceiling,
        };
        if !below(floor) {
            return None;
        }
        if self.offsets_at(data_source, floor) == *value {
            return Some(floor);
        }
        self.offsets
            .get(data_source)?
            .iter()
            .filter(|(at, _)| Some(*at) > floor)
            .take_while(|(at, _)| below(Some(*at)))
            .find(|(_, offsets)| offsets == value)
            .map(|(at, _)| Some(*at))
    }

    /// Every value the offsets of `data_source` take at indexes in `[low, high]`.
    pub fn offsets_between(
        &self,
        data_source: &str,
        low: Option<u64>,
        high: Option<u64>,
    ) -> Vec<Offsets> {
        let mut values = vec![self.offsets_at(data_source, low)];
        if let (Some(changes), Some(high)) = (self.offsets.get(data_source), high) {
            for (at, offsets) in changes {
                if low.is_none_or(|low| *at > low) && *at <= high {
                    values.push(offsets.clone());
                }
            }
        }
        values
    }
}
