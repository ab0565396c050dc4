//! Linearizable metadata operations. Source: Herlihy & Wing, "Linearizability" (1990): every
//! operation appears to take effect at one instant between its invocation and its
//! completion, in an order a sequential execution of the specification accepts.
//!
//! Raft fixes the order of writes: the log. The check uses it as the witness order (as
//! Jepsen's checkers do for logs with known order) and verifies that
//! - every acknowledged write got the verdict the sequential model gives at its index (the
//!   index of its request id's first application);
//! - real time is respected: a write acknowledged before another was invoked sits at a
//!   lower index;
//! - every read returned the model's value at some index between the writes acknowledged
//!   before it was invoked and the writes invoked before it completed.
//!
//! Writes without an answer may or may not have taken effect; both are accepted.

use grove_raft::replicated::RequestId;

use super::Violation;
use super::oracle::Oracle;
use crate::history::{Op, Outcome, Request};

const NAME: &str = "linearizable metadata";

/// A write that reached the log: its request id, first index, invocation and (if answered)
/// completion.
struct Placed {
    id: RequestId,
    index: u64,
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
        let Some(&index) = oracle.first_index.get(id) else {
            continue;
        };
        let acked = match &op.outcome {
            Outcome::Acked(result) => {
                let model = &oracle.verdicts[&index].result;
                if model != result {
                    violations.push(Violation::new(
                        NAME,
                        format!(
                            "request {id} at index {index}: the client was told {result:?}, the \
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
            index,
            invoked: op.invoked,
            acked,
        });
    }
    for later in &placed {
        if let Some(earlier) = placed.iter().find(|earlier| {
            earlier.acked.is_some_and(|acked| acked < later.invoked) && earlier.index >= later.index
        }) {
            violations.push(Violation::new(
                NAME,
                format!(
                    "request {} was acknowledged before request {} was invoked, yet sits at index \
                     {} ≥ {}",
                    earlier.id, later.id, earlier.index, later.index
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
            .map(|w| w.index)
            .max();
        let high = placed
            .iter()
            .filter(|w| w.invoked < completed)
            .map(|w| w.index)
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
