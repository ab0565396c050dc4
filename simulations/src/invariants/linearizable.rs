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

use std::time::Duration;

use grove_raft::replicated::RequestId;

use super::Violation;
use super::oracle::{Offsets, Oracle};
use crate::history::{Op, Outcome, Position, Request};

const NAME: &str = "linearizable metadata";

/// A write that reached the log: its request id, first position, invocation and (if
/// answered) completion.
struct Placed {
    id: RequestId,
    position: Position,
    invoked: Duration,
    acked: Option<Duration>,
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
    violations.extend(check_reads(ops, &placed, oracle));
    violations
}

/// A read that returned, as the check places it.
struct Read<'a> {
    client: u64,
    data_source: &'a str,
    value: &'a Offsets,
    invoked: Duration,
    completed: Duration,
}

/// Reads against the writes and against each other. The log fixes the writes' order, so a
/// linearization is a choice of one log index per read (the read saw the state after that
/// entry; `None`: before the first) such that
/// - a write acknowledged before the read was invoked is at or below it;
/// - a write invoked after the read completed is above it;
/// - a read that completed before another was invoked is at or below that one's index
///   (Wing & Gong's real-time order between reads: read A saw W, a later read B must too);
/// - the model's offsets of the datasource at the index are what the read returned.
///
/// Taking reads in invocation order (every read that precedes one in real time was invoked
/// first) and giving each the lowest index it can have is exact: the only constraint a read
/// passes on is a floor for the reads after it, and the lowest index is the lowest floor.
/// Writes that never reached the log took no effect and constrain nothing.
fn check_reads(ops: &[Op], placed: &[Placed], oracle: &Oracle) -> Vec<Violation> {
    let mut reads: Vec<Read<'_>> = ops
        .iter()
        .filter_map(|op| match (&op.request, &op.outcome, op.completed) {
            (Request::ReadOffsets { data_source }, Outcome::Read(value), Some(completed)) => {
                Some(Read {
                    client: op.client,
                    data_source,
                    value,
                    invoked: op.invoked,
                    completed,
                })
            }
            _ => None,
        })
        .collect();
    reads.sort_by_key(|read| (read.invoked, read.completed));
    let mut violations = Vec::new();
    // Each read placed so far: when it completed and the index it got.
    let mut done: Vec<(Duration, Option<u64>)> = Vec::new();
    for read in &reads {
        let acked_before = placed
            .iter()
            .filter(|w| w.acked.is_some_and(|acked| acked < read.invoked))
            .map(|w| Some(w.position.0))
            .max()
            .unwrap_or(None);
        let reads_before = done
            .iter()
            .filter(|(completed, _)| *completed < read.invoked)
            .map(|(_, index)| *index)
            .max()
            .unwrap_or(None);
        let floor = acked_before.max(reads_before);
        // Strictly below every write invoked after the read completed.
        let ceiling = placed
            .iter()
            .filter(|w| w.invoked > read.completed)
            .map(|w| w.position.0)
            .min();
        match oracle.first_index_with(read.data_source, read.value, floor, ceiling) {
            Some(index) => done.push((read.completed, index)),
            None => {
                let why = if reads_before > acked_before {
                    "a read that completed before it was invoked saw"
                } else {
                    "a write acknowledged before it was invoked sits at"
                };
                violations.push(Violation::new(
                    NAME,
                    format!(
                        "client {} read offsets {:?} of {} between {:?} and {:?}, but {why} \
                         index {floor:?} and the model's offsets of {} are {:?} from there \
                         up to below index {ceiling:?}",
                        read.client,
                        read.value,
                        read.data_source,
                        read.invoked,
                        read.completed,
                        read.data_source,
                        oracle.offsets_between(
                            read.data_source,
                            floor,
                            ceiling.and_then(|c| c.checked_sub(1)).or(oracle.last_index)
                        ),
                    ),
                ));
                // Keep checking the rest as if it had seen the floor.
                done.push((read.completed, floor));
            }
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
    fn a_later_read_that_misses_what_an_earlier_read_saw_is_caught() {
        let create = create_task("t1", "ds0", 0);
        let publish = publish("t1", "ds0", 0, offsets(&[(0, 0)]), offsets(&[(0, 3)]), 5);
        let committed = committed(&[create.clone(), publish.clone()]);
        let (oracle, _) = Oracle::replay(&committed);
        // The publish is in flight from 6 to 100; read A (10-12) sees it, read B (20-22),
        // invoked after A completed, does not: each read alone fits the publish's window.
        let history = |b_value| {
            vec![
                write(0, &create, 0, 5),
                write(1, &publish, 6, 100),
                read(Some(offsets(&[(0, 3)])), 10, 12),
                read(b_value, 20, 22),
            ]
        };
        assert!(check(&history(Some(offsets(&[(0, 3)]))), &oracle).is_empty());
        let stale = check(&history(None), &oracle);
        assert_eq!(stale.len(), 1, "{stale:?}");
        assert!(
            stale[0].detail.contains("a read that completed"),
            "{stale:?}"
        );
        // Overlapping reads may disagree: either may linearize first.
        let overlapping = vec![
            write(0, &create, 0, 5),
            write(1, &publish, 6, 100),
            read(Some(offsets(&[(0, 3)])), 10, 30),
            read(None, 20, 22),
        ];
        assert!(check(&overlapping, &oracle).is_empty());
        // A read that completed before the publish was invoked cannot have seen it.
        let early = vec![
            write(0, &create, 0, 5),
            read(Some(offsets(&[(0, 3)])), 5, 6),
            write(1, &publish, 7, 100),
        ];
        assert_eq!(check(&early, &oracle).len(), 1);
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
