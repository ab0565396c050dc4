//! The invariants a run is checked against, one module each; each module's docs say where the
//! property comes from.
//!
//! - [`no_panic`]: nothing panics, in any member, client or the driver.
//! - [`single_leader`]: election safety as openraft defines it, and votes that never go back.
//! - [`log_matching`]: Raft's Log Matching property over every member's log on disk.
//! - [`state_machine_safety`]: every member applies one sequence (a prefix of it), with the
//!   same verdicts, and ends in the same state as the sequential model.
//! - [`linearizable`]: client histories against the sequential model of the metadata.
//! - [`offsets_cas`]: accepted stream publishes chain exactly (no gap, overlap or duplicate).
//! - [`acknowledged_writes`]: no acknowledged write is lost.

pub mod acknowledged_writes;
pub mod linearizable;
pub mod log_matching;
pub mod no_panic;
pub mod offsets_cas;
pub mod oracle;
pub mod single_leader;
pub mod state_machine_safety;

use std::fmt;

/// A broken invariant: which, and what was seen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub invariant: &'static str,
    pub detail: String,
}

impl Violation {
    pub fn new(invariant: &'static str, detail: impl Into<String>) -> Self {
        Violation {
            invariant,
            detail: detail.into(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.invariant, self.detail)
    }
}
