//! State Machine Safety. Source: Raft (Ongaro & Ousterhout, §5.4.3, Figure 3): "if a server
//! has applied a log entry at a given index to its state machine, no other server will ever
//! apply a different log entry for the same index". Checked as every entry is applied (the
//! members' apply hooks): each member applies indexes in order with no gap (a snapshot moves
//! it forward), and the entry and its verdicts (one per request of its batch) at an index
//! are the same on every member — so every member's applied sequence is a prefix of one
//! sequence. At the end, every member's tables
//! equal the sequential model's ([`super::oracle`]) at the same index.

use grove_raft::replicated::ApplyEvent;

use super::Violation;
use crate::history::{Applied, Recorder, encode_entry};

const NAME: &str = "state machine safety";

/// Called from member `member`'s apply hook.
pub fn on_event(recorder: &mut Recorder, member: u64, event: ApplyEvent<'_>) {
    match event {
        ApplyEvent::Applied { entry, verdicts } => {
            let log_id = entry.log_id;
            let last = recorder.applied.get(&member).copied().flatten();
            let expected = last.map_or(0, |last| last.index + 1);
            if log_id.index != expected {
                recorder.violate(Violation::new(
                    NAME,
                    format!(
                        "member {member} applied {log_id} after {}",
                        last.map_or("nothing".into(), |l| l.to_string())
                    ),
                ));
            }
            recorder.applied.insert(member, Some(log_id));
            let bytes = encode_entry(entry);
            let digest = crate::rng::fnv1a(&bytes);
            recorder.event(Some(member), "apply", digest, log_id.to_string());
            match recorder.committed.get(&log_id.index) {
                Some(first) => {
                    if first.bytes != bytes {
                        let detail = format!(
                            "member {member} applied {log_id} at index {}, member {} applied {}",
                            log_id.index, first.by, first.entry.log_id
                        );
                        recorder.violate(Violation::new(NAME, detail));
                    } else if first.verdicts != verdicts {
                        let detail = format!(
                            "entry {log_id}: member {member} decided {verdicts:?}, member {} \
                             decided {:?}",
                            first.by, first.verdicts
                        );
                        recorder.violate(Violation::new(NAME, detail));
                    }
                }
                None => {
                    recorder.committed.insert(
                        log_id.index,
                        Applied {
                            entry: entry.clone(),
                            bytes,
                            verdicts: verdicts.to_vec(),
                            by: member,
                        },
                    );
                }
            }
        }
        ApplyEvent::Installed { meta } | ApplyEvent::Loaded { meta } => {
            let kind = match event {
                ApplyEvent::Installed { .. } => "snapshot-in",
                _ => "snapshot-load",
            };
            let index = meta.last_log_id.map_or(0, |l| l.index);
            recorder.event(Some(member), kind, index, meta.snapshot_id.clone());
            if let Some(last) = meta.last_log_id
                && let Some(first) = recorder.committed.get(&last.index)
                && first.entry.log_id != last
            {
                let detail = format!(
                    "member {member} took a snapshot up to {last}, but {} was applied at index {}",
                    first.entry.log_id, last.index
                );
                recorder.violate(Violation::new(NAME, detail));
            }
            recorder.applied.insert(member, meta.last_log_id);
        }
    }
}
