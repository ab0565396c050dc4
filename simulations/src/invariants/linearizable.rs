//! Linearizable metadata operations. Source: Herlihy & Wing, "Linearizability" (1990): every
//! operation appears to take effect at one instant between its invocation and its
//! completion, in an order a sequential execution of the specification accepts.
//!
//! Raft fixes the order of writes: the log, whose entries are batches of requests applied
//! whole. The check uses it as the witness order (as Jepsen's checkers do for logs with known
//! order): a write's position is (log index, place in the batch) of its request id's first
//! application. It verifies that
//! - every acknowledged write got the verdict the sequential model gives at its position;
//! - real time is respected: a write acknowledged before another was invoked sits at a
//!   lower position;
//! - every read returned the model's value after some entry between the entries of the writes
//!   acknowledged before it was invoked and of the writes invoked before it completed (a
//!   member applies an entry under its state lock, so no read sees part of a batch).
//!
//! Writes without an answer may or may not have taken effect; both are accepted.

use grove_raft::replicated::RequestId;

use super::Violation;
use super::oracle::Oracle;
use crate::history::{Op, Outcome, Position, Request};

const NAME: &str = "linearizable metadata";

/// A write that reached the log: its request id, first position, invocation and (if
/// answered) completion.
struct Placed {
    id: RequestId,
    position: Position,
    invoked: std::time::Duration,
    acked: Option<std::time::Duration>,
}

pub fn check(ops: &[Op], oracle: &Oracle) -> Vec<Violation> {
    let mut violations = Vec::new();
    let mut placed = Vec::new();
    for op in ops {
        let Request::Write { id, .. } = &op.request else {
            continue;
        };
        let Some(&position) = oracle.first_position.get(id) else {
            continue;
        };
        let acked = match &op.outcome {
            Outcome::Acked(result) => {
                let model = &oracle.verdicts[&position].result;
                if model != result {
                    violations.push(Violation::new(
                        NAME,
                        format!(
                            "request {id} at position {position:?}: the client was told {result:?}, the \
                             sequential model decides {model:?}"
                        ),
                    ));
                }
                op.completed
            }
            _ => None,
        };
        placed.push(Placed {
            id: *id,
            position,
            invoked: op.invoked,
            acked,
        });
    }
    for later in &placed {
        if let Some(earlier) = placed.iter().find(|earlier| {
            earlier.acked.is_some_and(|acked| acked < later.invoked)
                && earlier.position >= later.position
        }) {
            violations.push(Violation::new(
                NAME,
                format!(
                    "request {} was acknowledged before request {} was invoked, yet sits at \
                     position {:?} ≥ {:?}",
                    earlier.id, later.id, earlier.position, later.position
                ),
            ));
        }
    }
    for op in ops {
        let (Request::ReadOffsets { data_source }, Outcome::Read(value), Some(completed)) =
            (&op.request, &op.outcome, op.completed)
        else {
            continue;
        };
        let low = placed
            .iter()
            .filter(|w| w.acked.is_some_and(|acked| acked < op.invoked))
            .map(|w| w.position.0)
            .max();
        let high = placed
            .iter()
            .filter(|w| w.invoked < completed)
            .map(|w| w.position.0)
            .max();
        let possible = oracle.offsets_between(data_source, low, high);
        if !possible.contains(value) {
            violations.push(Violation::new(
                NAME,
                format!(
                    "client {} read offsets {value:?} of {data_source} between {:?} and {:?}; \
                     the model allows only {possible:?} (indexes {low:?}..={high:?})",
                    op.client, op.invoked, completed
                ),
            ));
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use grove_raft::metadata::Command;
    use grove_raft::replicated::state_machine::MachineState;
    use grove_raft::replicated::{ClientRequest, RequestId, WriteBatch};
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};

    use super::*;
    use crate::history::Applied;
    use crate::invariants::offsets_cas;
    use crate::workload::{create_task, publish};

    fn id(serial: u64) -> RequestId {
        RequestId { client: 1, serial }
    }

    /// The committed sequence of `commands`, one entry each (request ids 0, 1, …), with the
    /// verdicts the apply step gives.
    fn committed(commands: &[Command]) -> BTreeMap<u64, Applied> {
        let entries: Vec<&[Command]> = commands.chunks(1).collect();
        committed_batches(&entries)
    }

    /// The committed sequence of `batches`, one entry each, request ids numbered across them
    /// (0, 1, …), with the verdicts the apply step gives.
    fn committed_batches(batches: &[&[Command]]) -> BTreeMap<u64, Applied> {
        let mut machine = MachineState::default();
        let mut serial = 0;
        batches
            .iter()
            .enumerate()
            .map(|(index, commands)| {
                let requests = commands
                    .iter()
                    .map(|command| {
                        serial += 1;
                        ClientRequest::new(id(serial - 1), command.clone())
                    })
                    .collect();
                let entry = Entry {
                    log_id: LogId::new(CommittedLeaderId::new(1, 1), index as u64),
                    payload: EntryPayload::Normal(WriteBatch { requests }),
                };
                let verdicts = machine.apply_entry(&entry);
                let applied = Applied {
                    bytes: crate::history::encode_entry(&entry),
                    entry,
                    verdicts,
                    by: 1,
                };
                (index as u64, applied)
            })
            .collect()
    }

    fn ms(ms: u64) -> Duration {
        Duration::from_millis(ms)
    }

    fn offsets(pairs: &[(u32, i64)]) -> BTreeMap<u32, i64> {
        pairs.iter().copied().collect()
    }

    fn write(serial: u64, command: &Command, invoked: u64, acked: u64) -> Op {
        Op {
            client: 1,
            request: Request::Write {
                id: id(serial),
                command: Box::new(command.clone()),
            },
            invoked: ms(invoked),
            completed: Some(ms(acked)),
            outcome: Outcome::Acked(Ok(())),
        }
    }

    fn read(value: Option<BTreeMap<u32, i64>>, invoked: u64, completed: u64) -> Op {
        Op {
            client: 2,
            request: Request::ReadOffsets {
                data_source: "ds0".into(),
            },
            invoked: ms(invoked),
            completed: Some(ms(completed)),
            outcome: Outcome::Read(value),
        }
    }

    #[test]
    fn a_stale_read_after_an_acknowledged_publish_is_caught() {
        let create = create_task("t1", "ds0", 0);
        let publish = publish("t1", "ds0", 0, offsets(&[(0, 0)]), offsets(&[(0, 3)]), 5);
        let committed = committed(&[create.clone(), publish.clone()]);
        let (oracle, replay) = Oracle::replay(&committed);
        assert!(replay.is_empty(), "{replay:?}");
        let history = |read_value| {
            vec![
                write(0, &create, 0, 5),
                write(1, &publish, 6, 10),
                read(read_value, 20, 30),
            ]
        };
        assert!(check(&history(Some(offsets(&[(0, 3)]))), &oracle).is_empty());
        let stale = check(&history(None), &oracle);
        assert_eq!(stale.len(), 1, "{stale:?}");
        // A read concurrent with the publish may see either value.
        let concurrent = vec![
            write(0, &create, 0, 5),
            write(1, &publish, 6, 10),
            read(None, 7, 9),
        ];
        assert!(check(&concurrent, &oracle).is_empty());
        // Real-time order: the publish acknowledged before the create was invoked.
        let reordered = vec![write(0, &create, 20, 25), write(1, &publish, 6, 10)];
        assert_eq!(check(&reordered, &oracle).len(), 1);
    }

    #[test]
    fn an_accepted_publish_that_skips_offsets_is_a_gap() {
        let chain = [
            create_task("t1", "ds0", 0),
            publish("t1", "ds0", 0, offsets(&[(0, 0)]), offsets(&[(0, 3)]), 1),
            create_task("t2", "ds0", 2),
            publish("t2", "ds0", 1, offsets(&[(0, 3)]), offsets(&[(0, 5)]), 3),
        ];
        let committed_chain = committed(&chain);
        let (oracle, _) = Oracle::replay(&committed_chain);
        assert!(offsets_cas::check(&committed_chain, &oracle).is_empty());
        // A partition never stored accepts any start (the apply rule), so a first publish from 2
        // is accepted; against the workload's origin 0 it is a gap.
        let gap = [
            create_task("t1", "ds0", 0),
            publish("t1", "ds0", 0, offsets(&[(0, 2)]), offsets(&[(0, 3)]), 1),
        ];
        let committed_gap = committed(&gap);
        let (oracle, _) = Oracle::replay(&committed_gap);
        let violations = offsets_cas::check(&committed_gap, &oracle);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].detail.contains("gap"));
    }

    #[test]
    fn batched_entries_order_requests_by_place_and_reads_see_whole_entries() {
        let create1 = create_task("t1", "ds0", 0);
        let create2 = create_task("t2", "ds0", 0);
        let first = publish("t1", "ds0", 0, offsets(&[(0, 0)]), offsets(&[(0, 3)]), 1);
        let second = publish("t2", "ds0", 1, offsets(&[(0, 3)]), offsets(&[(0, 7)]), 2);
        // Entry 0: both creates; entry 1: both publishes, in that order.
        let batches: [&[Command]; 2] = [
            &[create1.clone(), create2.clone()],
            &[first.clone(), second.clone()],
        ];
        let committed = committed_batches(&batches);
        let (oracle, replay) = Oracle::replay(&committed);
        assert!(replay.is_empty(), "{replay:?}");
        assert_eq!(oracle.first_position[&id(3)], (1, 1));
        assert!(offsets_cas::check(&committed, &oracle).is_empty());
        let history = |read_value| {
            vec![
                write(0, &create1, 0, 5),
                write(1, &create2, 1, 5),
                write(2, &first, 6, 10),
                write(3, &second, 7, 10),
                read(read_value, 20, 30),
            ]
        };
        let fresh = check(&history(Some(offsets(&[(0, 7)]))), &oracle);
        assert!(fresh.is_empty(), "{fresh:?}");
        // The state between the two publishes of one entry is never visible.
        let torn = check(&history(Some(offsets(&[(0, 3)]))), &oracle);
        assert_eq!(torn.len(), 1, "{torn:?}");
        // A read concurrent with the batch sees the state before or after the whole entry.
        let mut concurrent = history(None);
        concurrent[4] = read(None, 8, 9);
        assert!(check(&concurrent, &oracle).is_empty());
        concurrent[4] = read(Some(offsets(&[(0, 7)])), 8, 9);
        assert!(check(&concurrent, &oracle).is_empty());
        concurrent[4] = read(Some(offsets(&[(0, 3)])), 8, 9);
        assert_eq!(check(&concurrent, &oracle).len(), 1);
        // Real-time order inside one entry: the second publish acknowledged before the first
        // was invoked, yet placed after it.
        let reordered = vec![
            write(0, &create1, 0, 5),
            write(1, &create2, 1, 5),
            write(2, &first, 20, 25),
            write(3, &second, 6, 10),
        ];
        assert_eq!(check(&reordered, &oracle).len(), 1);
        // The client told Ok for the request at the batch's second place, which the model
        // refuses (the same offsets published twice).
        let replayed = publish("t2", "ds0", 1, offsets(&[(0, 0)]), offsets(&[(0, 3)]), 2);
        let batches: [&[Command]; 2] = [
            &[create1.clone(), create2.clone()],
            &[first.clone(), replayed.clone()],
        ];
        let committed = committed_batches(&batches);
        let (oracle, _) = Oracle::replay(&committed);
        assert!(oracle.verdicts[&(1, 0)].result.is_ok());
        assert!(oracle.verdicts[&(1, 1)].result.is_err());
        let told_ok = vec![
            write(0, &create1, 0, 5),
            write(1, &create2, 1, 5),
            write(2, &first, 6, 10),
            write(3, &replayed, 7, 10),
        ];
        let violations = check(&told_ok, &oracle);
        assert_eq!(violations.len(), 1, "{violations:?}");
        assert!(violations[0].detail.contains("(1, 1)"), "{violations:?}");
    }

    #[test]
    fn a_member_verdict_the_model_does_not_give_in_a_batch_is_caught() {
        let create = create_task("t1", "ds0", 0);
        let first = publish("t1", "ds0", 0, offsets(&[(0, 0)]), offsets(&[(0, 3)]), 1);
        let batches: [&[Command]; 1] = [&[create, first]];
        let mut committed = committed_batches(&batches);
        let applied = committed.get_mut(&0).expect("entry 0");
        applied.verdicts[1].duplicate = !applied.verdicts[1].duplicate;
        let (_, replay) = Oracle::replay(&committed);
        assert_eq!(replay.len(), 1, "{replay:?}");
        assert!(replay[0].detail.contains("request 1"), "{replay:?}");
        // A verdict missing altogether.
        let applied = committed.get_mut(&0).expect("entry 0");
        applied.verdicts.pop();
        let (_, replay) = Oracle::replay(&committed);
        assert_eq!(replay.len(), 1, "{replay:?}");
    }
}
