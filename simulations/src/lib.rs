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
//! - [`run`]: one run (safety phase, liveness phase, checks); [`shrink`]: a smaller failing run.
//!
//! Invariants of the simulator itself: no wall clock, no OS thread, no unseeded randomness,
//! no hash-order iteration on the simulated path (ARCHITECTURE.md lists every source closed).
//!
//! Nothing depends on this crate.

pub mod cluster;
pub mod config;
pub mod disk;
pub mod history;
pub mod invariants;
pub mod nemesis;
pub mod rng;
pub mod run;
pub mod shrink;
pub mod trace;
pub mod workload;

pub use config::{Fault, Overrides, SimConfig};
pub use run::{RunReport, run};
