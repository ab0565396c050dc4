//! Seeds that found real bugs, pinned. Each names the bug it found and the injected
//! [`Mutation`] that puts the bug back (`grove_raft::mutation`): `tests/regressions.rs` runs
//! every pinned seed in the default build, where it must pass, and `tests/mutations.rs`
//! (`--features mutations`) runs it with its bug injected, where it must fail with the
//! invariant named here.

use grove_raft::mutation::Mutation;

use crate::config::{Overrides, SimConfig};

/// One pinned seed.
#[derive(Clone, Copy, Debug)]
pub struct Regression {
    /// What the seed found.
    pub bug: &'static str,
    pub seed: u64,
    pub steps: u64,
    /// The bug, injected.
    pub mutation: Mutation,
    /// The invariant that fails when it is.
    pub invariant: &'static str,
}

impl Regression {
    /// The run, with or without its bug.
    pub fn config(&self, injected: bool) -> SimConfig {
        SimConfig::draw(
            self.seed,
            &Overrides {
                steps: Some(self.steps),
                mutation: injected.then_some(self.mutation),
                ..Overrides::default()
            },
        )
    }
}

/// The pinned seeds. Seed numbers of the draw in use since the reproduce lines were fixed
/// (one fixed draw order): the bugs were first found under an older draw (seed 6645, seed 2
/// at 100 steps), and each seed here was found again by sweeping with the bug injected.
pub const REGRESSIONS: [Regression; 3] = [
    Regression {
        bug: "a write through a stopped member retried without letting time pass (its \
              metrics channel was closed, so the wait for a leader change returned at once): \
              the run froze (found after group commit, seed 2 at 100 steps)",
        seed: 2,
        steps: 150,
        mutation: Mutation::StoppedMemberSpins,
        invariant: "watchdog",
    },
    Regression {
        bug: "a leader that had removed itself took a membership change and tripped \
              openraft's assertion that only a leader appends membership (debug builds)",
        seed: 479,
        steps: 150,
        mutation: Mutation::AdminOnRemovedLeader,
        invariant: "no panic",
    },
    Regression {
        bug: "an election livelock: a removed leader with the longest log stayed in the joint \
              configuration, the voter that could win had the longer (fixed) election timeout, \
              and its campaigns fell in the term of a candidate that could not win (issue \
              16's seed 200056 at 1,500 steps under the older draw)",
        seed: 599,
        steps: 150,
        mutation: Mutation::NoElectionNudge,
        invariant: "liveness",
    },
];
