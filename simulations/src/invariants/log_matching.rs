//! Log Matching. Source: Raft (Ongaro & Ousterhout, §5.3, Figure 3): "if two logs contain an
//! entry with the same index and term, then the logs are identical in all entries up through
//! the given index". With openraft's leader ids, "term" is the log id's leader id (term, node).
//!
//! Checked on every member's log as its disk holds it (the page cache view: what the member
//! would read), at the end of the run, pairwise over the indexes both logs still hold.

use std::collections::BTreeMap;

use openraft::LogId;

use super::Violation;

/// One member's log: index → (log id, encoded entry).
pub type Log = BTreeMap<u64, (LogId<u64>, Vec<u8>)>;

pub fn check(logs: &BTreeMap<u64, Log>) -> Vec<Violation> {
    let mut violations = Vec::new();
    let members: Vec<_> = logs.keys().copied().collect();
    for (i, &a) in members.iter().enumerate() {
        for &b in &members[i + 1..] {
            let (log_a, log_b) = (&logs[&a], &logs[&b]);
            // The highest index at which both hold the same log id.
            let matched = log_a
                .iter()
                .rev()
                .find(|(index, (id, _))| log_b.get(index).is_some_and(|(other, _)| other == id))
                .map(|(index, _)| *index);
            let Some(matched) = matched else { continue };
            for (index, (id, bytes)) in log_a.range(..=matched) {
                if let Some((other_id, other_bytes)) = log_b.get(index)
                    && (other_id != id || other_bytes != bytes)
                {
                    violations.push(Violation::new(
                        "log matching",
                        format!(
                            "members {a} and {b} agree on entry {matched} but differ at {index} \
                             ({id} vs {other_id})"
                        ),
                    ));
                    break;
                }
            }
        }
    }
    violations
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn log(entries: &[(u64, u64, &str)]) -> Log {
        entries
            .iter()
            .map(|&(index, term, body)| {
                let id = LogId::new(CommittedLeaderId::new(term, 1), index);
                (index, (id, body.as_bytes().to_vec()))
            })
            .collect()
    }

    #[test]
    fn divergence_below_a_matching_entry_is_caught() {
        let good: BTreeMap<u64, Log> = [
            (1, log(&[(0, 1, "a"), (1, 1, "b"), (2, 2, "c")])),
            (2, log(&[(0, 1, "a"), (1, 1, "b"), (2, 3, "x")])),
        ]
        .into();
        assert!(check(&good).is_empty(), "a differing tail is fine");
        let bad: BTreeMap<u64, Log> = [
            (1, log(&[(0, 1, "a"), (1, 1, "b"), (2, 2, "c")])),
            (2, log(&[(0, 1, "a"), (1, 1, "z"), (2, 2, "c")])),
        ]
        .into();
        assert_eq!(check(&bad).len(), 1);
    }
}
