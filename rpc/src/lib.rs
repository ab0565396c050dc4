//! # grove-rpc — the multiplexed protocol between Grove nodes
//!
//! Role: every node-to-node call (Raft, segment loading, per-segment queries, heartbeats) goes
//! through the [`Transport`] seam. In production it is QUIC ([`QuicTransport`]): one connection
//! per node pair reused by every caller, each call on its own bidirectional stream, unary calls
//! and server streams with QUIC flow control as backpressure, mutual TLS against a cluster CA.
//! In tests and the simulator it is [`MemoryNetwork`]: the same calls and errors, over channels,
//! with seeded drop / delay / reorder / duplicate faults and cut links.
//!
//! Main types:
//! - [`Transport`] (object-safe: `Arc<dyn Transport>`) and [`TransportExt`] for typed calls:
//!   `transport.call::<Ping>(&peer, &request, deadline)`; [`Method`] / [`StreamMethod`] name a
//!   method and its message types; [`Router`] holds a node's handlers.
//! - [`RpcError`]: one error enum with stable codes, the same from both transports.
//! - [`codec`]: payloads (bincode 2.0.1, the only module that touches it) and framing;
//!   [`envelope`]: the versioned, hand-encoded frame header.
//! - [`tls`]: cluster CA and node certificates (rcgen), rustls configs (ring).
//! - [`conformance`]: the behaviour suite both transports pass.
//! - [`buggify!`]: fault sites in production code that only the simulator turns on;
//!   [`pause`]: the spawn seam through which the simulator freezes one node's tasks.
//!
//! Lanes: a call travels in the ordinary or the control lane ([`Lane`]; Raft heartbeats and
//! votes are control calls), each with its own call slots and buffer budget, so a full
//! ordinary lane never delays a heartbeat.
//!
//! Wire: `u32` big-endian body length, then the envelope header (version, kind, flags, fields),
//! then the payload. Each call is one stream: request frame → response frame, or item frames
//! then an end frame; an error frame ends a call. The first stream of a connection carries the
//! hello / welcome-or-refuse handshake (protocol version, cluster id, node id, incarnation).
//!
//! Invariants:
//! - Every call has a deadline; it travels as the remaining budget and is enforced on both
//!   sides. Dropping a call (future or stream) cancels it on both sides.
//! - A frame's declared body length is checked against [`Limits::frame_bytes_max`] (64 KiB
//!   for the handshake's hello) before its body is read, and its bytes are reserved from the
//!   connection's and the node's buffer budgets ([`budget`]) until it is decoded; QUIC receive buffers grow with the
//!   bytes that arrive, not with the declared length; payloads decode with bincode's claimed
//!   bytes bounded by `frame_bytes_max` ([`codec::decode_limited`]). A malformed, oversized or
//!   unknown frame fails its stream only, never the connection or the process. Decoding never
//!   panics.
//! - Handlers are served only to peers whose certificate chains to the cluster CA and names
//!   the node id they claim, with the same cluster id and protocol version.
//! - The in-memory transport draws every fault from one seed, uses tokio time only (no
//!   `Instant::now`, no `SystemTime`) and ordered maps, so a simulation replays exactly.
//!
//! Must never depend on: `grove-raft`, `grove-node`, `grove-segment`, `grove-query`,
//! `grove-sim` (they depend on it).

pub mod budget;
pub mod buggify;
pub mod codec;
pub mod conformance;
pub mod envelope;
pub mod error;
pub mod memory;
pub mod pause;
pub mod quic;
pub mod rng;
mod router;
mod shared;
pub mod tls;
mod transport;

pub use error::RpcError;
pub use memory::{Faults, MemoryNetwork, MemoryTransport};
pub use quic::{QuicConfig, QuicTransport};
pub use router::{RequestContext, Router};
pub use transport::{
    CONTROL_CALLS_MAX, CONTROL_FRAME_BYTES_MAX, Deadline, Lane, Limits, Method, NodeId,
    StreamMethod, Transport, TransportExt, TransportStats,
};
