//! No acknowledged write is lost. Source: Raft's Leader Completeness (§5.4, Figure 3) seen
//! from the client: once a write is answered it is committed, so it is in the sequence every
//! member applies and its effect is in the final state — through crashes that lose unsynced
//! disk writes, torn writes and leader changes.
//!
//! Checked after the liveness phase: every answered write's request id was applied (at some
//! position), an accepted task creation left its task, an accepted publish left its segments,
//! and every member's final tables equal the sequential model's.

use std::collections::BTreeMap;

use grove_raft::metadata::Command;

use super::Violation;
use super::oracle::Oracle;
use crate::history::{Op, Outcome, Request};

const NAME: &str = "no acknowledged write lost";

/// `finals`: per member, the digest of its final tables and the index it applied up to.
pub fn check(
    ops: &[Op],
    oracle: &Oracle,
    finals: &BTreeMap<u64, (u64, Option<u64>)>,
    model_digest: u64,
) -> Vec<Violation> {
    let mut violations = Vec::new();
    for op in ops {
        let (Request::Write { id, command }, Outcome::Acked(result)) = (&op.request, &op.outcome)
        else {
            continue;
        };
        if !oracle.first_position.contains_key(id) {
            violations.push(Violation::new(
                NAME,
                format!("request {id} was answered {result:?} but no member applied it"),
            ));
            continue;
        }
        if result.is_err() {
            continue;
        }
        let tables = &oracle.state.tables;
        match command.as_ref() {
            Command::CreateTask { task } if tables.task(&task.id).is_err() => {
                violations.push(Violation::new(
                    NAME,
                    format!("task {} was created (request {id}) and is gone", task.id),
                ));
            }
            Command::PublishSegmentsWithOffsets {
                segments, schema, ..
            } => {
                let used = tables.used_segments(&schema.data_source);
                for segment in segments {
                    if !used.iter().any(|u| u.id == segment.id) {
                        violations.push(Violation::new(
                            NAME,
                            format!(
                                "segment {} was published (request {id}) and is gone",
                                segment.id
                            ),
                        ));
                    }
                }
            }
            _ => {}
        }
    }
    for (member, (digest, index)) in finals {
        if *digest != model_digest || *index != oracle.last_index {
            violations.push(Violation::new(
                NAME,
                format!(
                    "member {member} ends at index {index:?} with tables {digest:016x}; the model \
                     ends at {:?} with {model_digest:016x}",
                    oracle.last_index
                ),
            ));
        }
    }
    violations
}
