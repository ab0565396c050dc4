//! The seam: the object-safe [`Transport`] trait every role uses, typed [`Method`]s on top of it,
//! node ids, deadlines and limits.
//!
//! `Transport` moves opaque, already-encoded payloads (`Bytes`); [`TransportExt`] adds the typed
//! calls (`transport.call::<Ping>(&peer, &request, deadline)`) that encode and decode through
//! [`crate::codec`]. Every call carries a [`Deadline`]; there is no call without one.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};

use crate::codec::{self, Message};
use crate::error::RpcError;
use crate::router::Router;

/// A node's name in the cluster: also the DNS name its certificate is issued for.
///
/// One DNS label: 1–63 characters of `a-z`, `0-9` and `-`, starting with a letter and not ending
/// with `-` (`historical-1`, `broker-a`). Cheap to clone.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(Arc<str>);

impl NodeId {
    pub const LENGTH_MAX: usize = 63;

    /// Checks and wraps a node name.
    pub fn new(name: &str) -> Result<Self, RpcError> {
        let valid = !name.is_empty()
            && name.len() <= Self::LENGTH_MAX
            && name.as_bytes()[0].is_ascii_lowercase()
            && !name.ends_with('-')
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            return Err(RpcError::config(format!(
                "invalid node id {name:?}: use 1-{} characters of a-z, 0-9 and '-', starting with a letter and not ending with '-'",
                Self::LENGTH_MAX
            )));
        }
        Ok(NodeId(Arc::from(name)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", &*self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = RpcError;
    fn from_str(s: &str) -> Result<Self, RpcError> {
        NodeId::new(s)
    }
}

/// The instant by which a call must complete, on tokio's clock (so paused and simulated time
/// drive it). On the wire it travels as the remaining budget, because nodes' clocks differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Deadline(tokio::time::Instant);

impl Deadline {
    /// The largest budget a request may carry; longer ones are cut to it.
    pub const BUDGET_MAX: Duration = Duration::from_secs(24 * 60 * 60);

    /// `budget` from now.
    pub fn after(budget: Duration) -> Self {
        Deadline(tokio::time::Instant::now() + budget.min(Self::BUDGET_MAX))
    }

    pub fn at(instant: tokio::time::Instant) -> Self {
        Deadline(instant)
    }

    pub fn instant(self) -> tokio::time::Instant {
        self.0
    }

    /// The budget left (zero once passed).
    pub fn remaining(self) -> Duration {
        self.0
            .saturating_duration_since(tokio::time::Instant::now())
    }

    pub fn is_expired(self) -> bool {
        self.remaining().is_zero()
    }

    /// The earlier of `self` and `budget` from now.
    pub fn min_after(self, budget: Duration) -> Self {
        self.min(Deadline::after(budget))
    }
}

impl From<Duration> for Deadline {
    fn from(budget: Duration) -> Self {
        Deadline::after(budget)
    }
}

impl From<tokio::time::Instant> for Deadline {
    fn from(instant: tokio::time::Instant) -> Self {
        Deadline(instant)
    }
}

/// Which lane a call travels in.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lane {
    /// Most calls: up to [`Limits::concurrent_calls_max`] per peer, frames up to
    /// [`Limits::frame_bytes_max`], received bytes within the connection's and the node's
    /// buffer budgets.
    #[default]
    Ordinary,
    /// Small calls that must never wait behind the others (Raft heartbeats and votes): their
    /// own [`CONTROL_CALLS_MAX`] call slots per peer and their own buffer budget per
    /// connection, so a full ordinary lane (every call slot taken, every buffered byte spent)
    /// does not delay them. Their frames, request and reply, are at most
    /// [`CONTROL_FRAME_BYTES_MAX`].
    Control,
}

/// Calls in flight in the control lane from one node to one peer (on top of
/// [`Limits::concurrent_calls_max`]).
pub const CONTROL_CALLS_MAX: u32 = 16;
/// The largest frame of a control-lane call.
pub const CONTROL_FRAME_BYTES_MAX: usize = 64 << 10;

/// Bounds that both transports enforce the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest frame (header + payload) sent or accepted; larger ones fail with
    /// [`RpcError::FrameTooLarge`]. At most [`codec::FRAME_BYTES_CEILING`].
    pub frame_bytes_max: usize,
    /// Calls in flight from one node to one peer in the ordinary lane; more wait for a slot.
    /// The control lane has [`CONTROL_CALLS_MAX`] more (QUIC: the connection's stream limit
    /// is the sum).
    pub concurrent_calls_max: u32,
    /// Bytes of received frames (requests served, replies read) one connection may hold
    /// before they are decoded, ordinary lane; a frame that does not fit waits unread (flow
    /// control holds the peer back). At least `frame_bytes_max`.
    pub connection_buffer_bytes_max: usize,
    /// The same over all of a node's connections. At least `connection_buffer_bytes_max`.
    pub node_buffer_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            frame_bytes_max: 16 << 20,
            concurrent_calls_max: 1024,
            connection_buffer_bytes_max: 64 << 20,
            node_buffer_bytes_max: 256 << 20,
        }
    }
}

impl Limits {
    pub(crate) fn check(&self) -> Result<(), RpcError> {
        if self.frame_bytes_max < 1024 || self.frame_bytes_max > codec::FRAME_BYTES_CEILING {
            return Err(RpcError::config(format!(
                "frame_bytes_max {} outside 1024..={}",
                self.frame_bytes_max,
                codec::FRAME_BYTES_CEILING
            )));
        }
        if self.concurrent_calls_max == 0 {
            return Err(RpcError::config("concurrent_calls_max must be at least 1"));
        }
        if self.concurrent_calls_max > u32::MAX - CONTROL_CALLS_MAX {
            return Err(RpcError::config("concurrent_calls_max is too large"));
        }
        if self.connection_buffer_bytes_max < self.frame_bytes_max {
            return Err(RpcError::config(format!(
                "connection_buffer_bytes_max {} is below frame_bytes_max {}: a largest frame \
                 could never be read",
                self.connection_buffer_bytes_max, self.frame_bytes_max
            )));
        }
        if self.node_buffer_bytes_max < self.connection_buffer_bytes_max {
            return Err(RpcError::config(format!(
                "node_buffer_bytes_max {} is below connection_buffer_bytes_max {}",
                self.node_buffer_bytes_max, self.connection_buffer_bytes_max
            )));
        }
        if self.node_buffer_bytes_max > (u32::MAX as usize) << 4 {
            return Err(RpcError::config("node_buffer_bytes_max is too large"));
        }
        Ok(())
    }
}

/// A unary method: one request, one response.
pub trait Method: 'static {
    /// Unique name on the wire, e.g. `"raft.append_entries"`.
    const NAME: &'static str;
    /// The lane its calls travel in (two methods may share a name and differ in lane: a Raft
    /// heartbeat is an append without entries, in the control lane).
    const LANE: Lane = Lane::Ordinary;
    type Request: Message;
    type Response: Message;
}

/// A server-streaming method: one request, a stream of items (scan results, segment bytes).
pub trait StreamMethod: 'static {
    const NAME: &'static str;
    type Request: Message;
    type Item: Message;
}

/// A snapshot of a transport's counters, for tests, metrics and the console.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Open connections (QUIC) or peers with a live link (memory).
    pub connections_open: usize,
    /// Largest `connections_open` seen.
    pub connections_max: usize,
    /// Connections established since start (dialed or accepted).
    pub connections_established_total: u64,
    pub calls_outbound_total: u64,
    pub calls_inbound_total: u64,
    pub calls_outbound_in_flight: usize,
    pub calls_inbound_in_flight: usize,
    /// Peers refused (wrong cluster, version, certificate) by this node.
    pub refused_total: u64,
    /// Why the last peer was refused, if any was.
    pub refusal_last: Option<String>,
    /// Bytes of received frames this node holds now, not yet decoded (both lanes).
    pub frame_bytes_buffered: usize,
    /// The most it ever held.
    pub frame_bytes_buffered_max: usize,
}

/// How a node calls its peers and serves them. Object-safe: roles hold `Arc<dyn Transport>`.
///
/// Rules every implementation keeps (checked by [`crate::conformance`]):
/// - a call fails with [`RpcError::DeadlineExceeded`] at its deadline, on the caller and on the
///   peer (whose handler is dropped);
/// - dropping a call's future or stream cancels it on both sides;
/// - calls to a peer that cannot be reached fail fast with [`RpcError::Unreachable`];
/// - a frame over [`Limits::frame_bytes_max`] fails that call with
///   [`RpcError::FrameTooLarge`] and nothing else;
/// - received frames held undecoded stay within the connection's and the node's buffer
///   budgets ([`Limits::connection_buffer_bytes_max`], [`Limits::node_buffer_bytes_max`]);
/// - a control-lane call ([`Lane::Control`]) never waits for an ordinary call slot or
///   ordinary buffer bytes;
/// - a peer of another cluster is refused with [`RpcError::Refused`] and counted in
///   [`TransportStats::refused_total`] on the refusing side;
/// - `shutdown` stops new calls ([`RpcError::Shutdown`]) and waits for in-flight ones.
pub trait Transport: Send + Sync + 'static {
    /// This node.
    fn node_id(&self) -> &NodeId;

    /// Limits this transport enforces.
    fn limits(&self) -> Limits;

    /// A unary call with an encoded request payload in `lane`; resolves to the encoded
    /// response payload.
    fn call_bytes(
        &self,
        peer: &NodeId,
        method: &str,
        request: Bytes,
        deadline: Deadline,
        lane: Lane,
    ) -> BoxFuture<'static, Result<Bytes, RpcError>>;

    /// A server-streaming call; yields encoded items. A failure (including failing to connect)
    /// is yielded as an `Err` item, after which the stream ends.
    fn stream_bytes(
        &self,
        peer: &NodeId,
        method: &str,
        request: Bytes,
        deadline: Deadline,
    ) -> BoxStream<'static, Result<Bytes, RpcError>>;

    /// Installs the handlers this node serves (replacing any previous set). Until called, every
    /// incoming call fails with [`RpcError::UnknownMethod`].
    fn serve(&self, router: Router);

    /// Graceful shutdown: refuses new calls, waits (bounded) for in-flight ones, then closes.
    fn shutdown(&self) -> BoxFuture<'static, ()>;

    fn stats(&self) -> TransportStats;
}

/// Typed calls on any [`Transport`], including `dyn Transport`.
pub trait TransportExt: Transport {
    /// Calls unary method `M` on `peer`.
    fn call<M: Method>(
        &self,
        peer: &NodeId,
        request: &M::Request,
        deadline: impl Into<Deadline>,
    ) -> BoxFuture<'static, Result<M::Response, RpcError>> {
        let deadline = deadline.into();
        let max = self.limits().frame_bytes_max;
        match codec::encode(request) {
            Ok(payload) => self
                .call_bytes(peer, M::NAME, payload, deadline, M::LANE)
                .map(move |reply| {
                    reply.and_then(|bytes| codec::decode_limited::<M::Response>(&bytes, max))
                })
                .boxed(),
            Err(error) => futures::future::ready(Err(error)).boxed(),
        }
    }

    /// Calls server-streaming method `M` on `peer`; the stream ends after an `Err` item.
    fn stream<M: StreamMethod>(
        &self,
        peer: &NodeId,
        request: &M::Request,
        deadline: impl Into<Deadline>,
    ) -> BoxStream<'static, Result<M::Item, RpcError>> {
        let deadline = deadline.into();
        let max = self.limits().frame_bytes_max;
        match codec::encode(request) {
            Ok(payload) => self
                .stream_bytes(peer, M::NAME, payload, deadline)
                .map(move |item| {
                    item.and_then(|bytes| codec::decode_limited::<M::Item>(&bytes, max))
                })
                .scan(false, |failed, item| {
                    // An item that fails to decode ends the stream like a transport error does.
                    let next = (!*failed).then(|| {
                        *failed = item.is_err();
                        item
                    });
                    futures::future::ready(next)
                })
                .boxed(),
            Err(error) => futures::stream::once(futures::future::ready(Err(error))).boxed(),
        }
    }
}

impl<T: Transport + ?Sized> TransportExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_dns_labels() {
        for good in ["a", "historical-1", "broker-a", "n0"] {
            assert!(NodeId::new(good).is_ok(), "{good}");
        }
        let long = "a".repeat(64);
        for bad in ["", "1a", "-a", "a-", "A", "a_b", "a.b", long.as_str()] {
            assert!(NodeId::new(bad).is_err(), "{bad}");
        }
    }
}
