//! # grove-rpc — the multiplexed QUIC protocol between nodes (not built yet)
//!
//! Role: one quinn connection per node pair, every call on its own stream, bincode frames behind one
//! codec module, and the `Transport` trait with a QUIC and an in-memory implementation. Its issue
//! has not been taken up; this crate holds no code yet.
//!
//! Must never depend on: `grove-raft`, `grove-node`, `grove-simulations`.
