//! The replicated metadata store: the same [`crate::metadata::Command`]s and apply step as the
//! single-node store, replicated by openraft 0.9 over `grove-rpc`.
//!
//! Map:
//! - [`types`]: the openraft type config ([`TypeConfig`]), log payload ([`WriteBatch`] of
//!   [`ClientRequest`]s with their [`RequestId`]s), apply result ([`Verdict`]), member
//!   address ([`GroveNode`]).
//! - [`access`]: who may call a member's methods (members only, by the membership; the
//!   watch is open to every certified node).
//! - [`batcher`]: group commit ([`batcher::Combiner`]): on the leader the writes that arrive
//!   while earlier entries are written share the next entry; a member forwarding writes to
//!   the leader sends those made while earlier forwards are in flight in one call.
//! - [`runtime`]: tokio with a seeded election-timeout draw ([`SeededRuntime`]).
//! - [`disk`]: the storage seam under log and snapshots ([`Disk`]; [`FileDisk`] in
//!   production, the simulator's disk under `grove-sim`).
//! - [`file_disk`]: [`FileDisk`], a member's log, vote and snapshots in files of Grove's own,
//!   synced with `fdatasync`/`fsync`.
//! - [`log_store`]: the Raft log, vote and commit index on a disk ([`LogStore`]).
//! - [`state_machine`]: tables in memory, snapshots on the disk ([`StateMachineStore`]).
//! - [`tables`]: the in-memory tables and the request log that deduplicates retries.
//! - [`network`]: Raft and client methods over any `grove_rpc::Transport` ([`GroveNetwork`]).
//! - [`node`]: one member and its client side ([`RaftNode`]): writes and membership changes
//!   carried to the leader, linearizable reads.
//! - [`store`]: [`ReplicatedMetadataStore`], the blocking `MetadataStore` over a member.
//! - [`watch`]: ordered change streams (segments, rules, assignments, membership) from a log
//!   index, resumable, locally ([`RaftNode::watch`]) and over `raft.watch`.
//!
//! One directory per member holds its log, vote and commit index (a write-ahead log in
//! segments) and its last snapshot (a file); the tables themselves live in memory and are
//! rebuilt at start from the snapshot and the log.

pub mod access;
pub mod batcher;
pub mod chunked;
pub mod disk;
pub mod file_disk;
pub mod log_store;
pub mod network;
pub mod node;
pub mod runtime;
pub mod state_machine;
pub mod store;
pub mod tables;
pub mod types;
pub mod watch;

pub use disk::{Disk, Tree};
pub use file_disk::FileDisk;
pub use log_store::LogStore;
pub use network::{GroveNetwork, PeerHook};
pub use node::{RaftNode, RaftNodeConfig, ReplicaError, WallClock, default_raft_config};
pub use runtime::SeededRuntime;
pub use state_machine::{ApplyEvent, ApplyHook, StateMachineStore};
pub use store::ReplicatedMetadataStore;
pub use tables::{Lookup, MemoryTables, RequestLog};
pub use types::{
    COMMAND_BYTES_MAX, ClientRequest, GroveNode, RaftNodeId, RequestId, TypeConfig, Verdict,
    WriteBatch,
};
pub use watch::{Change, ChangeEvent, WatchItem, WatchKind, WatchState, watch_remote};
