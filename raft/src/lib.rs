//! # grove-raft — the metadata store
//!
//! Role: replace ZooKeeper and the SQL metadata store with one state machine holding the
//! datasource, segment, task and stream-offset tables (and, as the cluster issues land,
//! membership, assignments, rules, task locks and supervisors), replicated with openraft and
//! reached through `grove-rpc`'s `Transport` seam.
//!
//! Built today:
//! - [`metadata`] — the command interface ([`metadata::MetadataStore`], [`metadata::Command`])
//!   and the deterministic apply step.
//! - [`replicated`] — the same commands replicated with openraft 0.9 over `grove-rpc`'s
//!   `Transport` (QUIC or in-memory): a sled log, an in-memory state machine running the same
//!   apply step with sled-stored snapshots, writes carried to the leader and deduplicated by
//!   request id, linearizable reads by read index, membership changes
//!   ([`replicated::RaftNode`], [`replicated::ReplicatedMetadataStore`]). `grove serve` and
//!   `grove quickstart` run a single-member group of it.
//!
//! - [`mutation`] — bugs injected at marked sites for grove-sim's mutation tests, compiled in
//!   only with the `mutations` feature.
//!
//! Invariants: every [`metadata::Command`] is one transaction, applied atomically or not at all;
//! applying a command depends only on the stored state and the command (no clock, no randomness:
//! callers pass timestamps), so replicas that apply the same log agree; reads iterate in key
//! order, never in hash order.
//!
//! Must never depend on: `grove-query`, `grove-node`, `grove-sim`. Depends on
//! `grove-rpc` (the transport seam) and openraft.

// Lets test fixtures shared with the integration tests name this crate as they do.
#[cfg(test)]
extern crate self as grove_raft;

pub mod metadata;
pub mod mutation;
pub mod replicated;
