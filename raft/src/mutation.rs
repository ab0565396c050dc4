//! Injected bugs for grove-sim's mutation tests, which show that the simulator catches real
//! bugs by itself: each [`Mutation`] undoes one fix or rule of this crate at one marked site.
//!
//! Only with the cargo feature `mutations`, which nothing but those tests enables (`cargo test
//! -p grove-sim --features mutations --test mutations`): without it [`active`] is a constant
//! `false`, every site is dead code and the optimizer removes it, and [`set`] does not exist.
//! With it, the active mutation is a thread-local set by the simulator for one run (a run
//! lives on one thread), so runs on parallel test threads keep apart.

use std::fmt;
use std::str::FromStr;

/// One injected bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Mutation {
    /// A stopped member's write retries without ever letting time pass: its metrics channel
    /// is closed, so "wait for a leader change" returns at once (grove-sim found it after
    /// group commit; the run froze).
    StoppedMemberSpins,
    /// A leader that removed itself still takes membership changes (openraft 0.9 asserts that
    /// the leader is a member, in debug builds).
    AdminOnRemovedLeader,
    /// A snapshot is stored as two keys, metadata and data, so a torn write keeps one of
    /// them and the member cannot start (grove-sim seed 6645).
    SnapshotTwoKeys,
    /// No election nudges: a leaderless voter waits on openraft's fixed election timeout
    /// alone (grove-sim seed 599: an election livelock).
    NoElectionNudge,
}

impl Mutation {
    pub const ALL: [Mutation; 4] = [
        Mutation::StoppedMemberSpins,
        Mutation::AdminOnRemovedLeader,
        Mutation::SnapshotTwoKeys,
        Mutation::NoElectionNudge,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutation::StoppedMemberSpins => "stopped-member-spins",
            Mutation::AdminOnRemovedLeader => "admin-on-removed-leader",
            Mutation::SnapshotTwoKeys => "snapshot-two-keys",
            Mutation::NoElectionNudge => "no-election-nudge",
        }
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mutation {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, String> {
        Mutation::ALL
            .into_iter()
            .find(|m| m.name() == text)
            .ok_or_else(|| {
                let names: Vec<_> = Mutation::ALL.iter().map(|m| m.name()).collect();
                format!("unknown mutation '{text}' (known: {})", names.join(", "))
            })
    }
}

#[cfg(feature = "mutations")]
thread_local! {
    static ACTIVE: std::cell::Cell<Option<Mutation>> = const { std::cell::Cell::new(None) };
}

/// Whether `mutation` is injected on this thread.
#[cfg(feature = "mutations")]
pub fn active(mutation: Mutation) -> bool {
    ACTIVE.with(|active| active.get() == Some(mutation))
}

/// Whether `mutation` is injected: never, without the `mutations` feature.
#[cfg(not(feature = "mutations"))]
#[inline(always)]
pub const fn active(_mutation: Mutation) -> bool {
    false
}

/// Injects `mutation` on this thread (`None`: no bug).
#[cfg(feature = "mutations")]
pub fn set(mutation: Option<Mutation>) {
    ACTIVE.with(|active| active.set(mutation));
}

/// Whether this build can inject mutations.
pub const ENABLED: bool = cfg!(feature = "mutations");
