//! # grove-raft — the replicated metadata store (not built yet)
//!
//! Role: replace ZooKeeper and the SQL metadata store with one openraft state machine holding
//! membership, the segment table, assignments, rules, task locks, supervisors and stream offsets,
//! reached through `grove-rpc`'s `Transport` seam. Its issue has not been taken up; this crate holds
//! no code yet, so nothing here pretends to work.
//!
//! Must never depend on: `grove-query`, `grove-node`, `grove-simulations`.
