//! # grove-sim — the deterministic cluster simulator
//!
//! Role: run a whole Grove metadata group (openraft members over `grove-rpc`'s in-memory
//! network, each on a simulated disk) in one process and one thread, drive it with a seeded
//! workload and seeded faults, and check invariants; the same seed replays the same run,
//! event for event (the trace hash says so).
//!
//! Map:
//! - [`config`]: [`config::SimConfig`], everything a run does, drawn from one seed.
//! - [`rng`]: independent seeded streams (network, faults, workload clients, each member,
//!   each disk, the runtime, buggify).
//! - [`disk`]: [`disk::SimDisk`], fsync semantics, crashes that lose unsynced writes, torn
//!   writes, injected errors, behind grove-raft's `Disk` seam.
//! - [`cluster`]: members started, crashed and restarted on the network and their disks.
//! - [`workload`]: replica writers racing on the offsets compare-and-set, readers.
//! - [`nemesis`]: crashes, restarts and partitions drawn step by step.
//! - [`history`]: the recorder of client operations and applied entries; [`trace`]: the
//!   hashed event trace.
//! - [`invariants`]: one module per invariant.
//! - [`regressions`]: seeds that found real bugs, pinned with the injected bug each found.
//! - [`run`]: one run (safety phase, liveness phase, checks); [`shrink`]: a smaller failing run.
//! - [`watchdog`]: a run that stops advancing simulated time or spends its wall-clock budget
//!   fails instead of hanging.
//!
//! Invariants of the simulator itself: no wall clock, no OS thread, no unseeded randomness,
//! no hash-order iteration on the simulated path (ARCHITECTURE.md lists every source closed).
//!
//! Nothing depends on this crate.

// Without `tokio_unstable` (set in `.cargo/config.toml`; a `RUSTFLAGS` variable replaces it)
// tokio's scheduler RNG is unseeded and its task-poll hooks are missing: runs would not replay
// and the watchdog could not see a stall. Refuse to build rather than run nondeterministically.
#[cfg(not(tokio_unstable))]
compile_error!(
    "grove-sim needs `--cfg tokio_unstable` (set in .cargo/config.toml; a RUSTFLAGS variable \
     overrides it: add `--cfg tokio_unstable` to it)"
);

pub mod cluster;
pub mod config;
pub mod disk;
pub mod history;
pub mod invariants;
pub mod log;
pub mod nemesis;
pub mod regressions;
pub mod rng;
pub mod run;
pub mod shrink;
pub mod trace;
pub mod watchdog;
pub mod workload;

pub use config::{Fault, Overrides, SimConfig};
pub use run::{RunReport, run};
