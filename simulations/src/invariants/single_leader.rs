//! Election safety. Source: Raft (Ongaro & Ousterhout, §5.2, Figure 3: "at most one leader can
//! be elected in a given term"), in the form openraft 0.9 guarantees by default: its leader
//! ids are `(term, node id)` in lexicographic order (openraft `docs/data/leader_id.md`), so a
//! term may elect several leaders in increasing node-id order and the per-term form does not
//! hold by design. What is checked instead, at every step and every restart:
//! - a member that leads holds a committed vote naming itself: at most one member per leader
//!   id (term, node) can lead;
//! - no member's vote goes back while it runs. (Across a crash it may: openraft shows a vote in
//!   its metrics before the vote is synced, and answers with it only after; a vote lost that
//!   way was never acted on. Votes acted on and then lost would surface as log-matching or
//!   state-machine-safety violations.)
//!
//! Terms that saw several leaders are counted, not failed (see [`LeaderStats`]).

use std::collections::{BTreeMap, BTreeSet};

use openraft::{RaftMetrics, ServerState};

use super::Violation;
use crate::history::Recorder;
use grove_raft::replicated::GroveNode;

/// Leaders seen per term.
#[derive(Debug, Default)]
pub struct LeaderStats {
    pub leaders_by_term: BTreeMap<u64, BTreeSet<u64>>,
}

impl LeaderStats {
    /// Terms in which more than one member led (legal under openraft's leader ids).
    pub fn shared_terms(&self) -> usize {
        self.leaders_by_term
            .values()
            .filter(|l| l.len() > 1)
            .count()
    }
}

/// Checks one member's metrics.
pub fn observe(
    recorder: &mut Recorder,
    stats: &mut LeaderStats,
    member: u64,
    metrics: &RaftMetrics<u64, GroveNode>,
) {
    let vote = metrics.vote;
    if metrics.state == ServerState::Leader {
        stats
            .leaders_by_term
            .entry(metrics.current_term)
            .or_default()
            .insert(member);
        if !vote.is_committed() || vote.leader_id().voted_for() != Some(member) {
            recorder.violate(Violation::new(
                "single leader per leader id",
                format!("member {member} leads with vote {vote}, which does not elect it"),
            ));
        }
    }
    if let Some(last) = recorder.votes.get(&member).copied()
        && vote.partial_cmp(&last) == Some(std::cmp::Ordering::Less)
    {
        recorder.violate(Violation::new(
            "single leader per leader id",
            format!("member {member}'s vote went back from {last} to {vote}"),
        ));
        return;
    }
    recorder.votes.insert(member, vote);
}
