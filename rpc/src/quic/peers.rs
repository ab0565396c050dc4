//! The per-peer connection cache: addresses, live links, the dial in progress, backoff.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use quinn::VarInt;

use super::{Inner, accept, wire};
use crate::budget::ConnectionBudget;
use crate::codec;
use crate::envelope::{Header, Hello, PROTOCOL_VERSION};
use crate::error::RpcError;
use crate::shared::InFlight;
use crate::transport::{CONTROL_CALLS_MAX, Lane, NodeId};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One established, handshaken connection to a peer.
#[derive(Clone)]
pub(super) struct Link {
    pub(super) conn: quinn::Connection,
    /// The peer's incarnation from its hello.
    pub(super) incarnation: u64,
    pub(super) dialed_by_us: bool,
    /// Calls on this connection, both directions.
    pub(super) in_flight: Arc<InFlight>,
    /// Set once this link is scheduled to close as a duplicate.
    pub(super) retiring: Arc<AtomicBool>,
    /// Received frames this connection may hold.
    pub(super) budget: Arc<ConnectionBudget>,
    /// Our calls on it, per lane (the peer's stream limit is their sum).
    pub(super) slots: Arc<CallSlots>,
}

/// A caller's stream slots on one connection, one semaphore per lane.
pub(super) struct CallSlots {
    ordinary: Arc<Semaphore>,
    control: Arc<Semaphore>,
}

impl CallSlots {
    pub(super) fn new(limits: &crate::transport::Limits) -> Arc<CallSlots> {
        Arc::new(CallSlots {
            ordinary: Arc::new(Semaphore::new(limits.concurrent_calls_max as usize)),
            control: Arc::new(Semaphore::new(CONTROL_CALLS_MAX as usize)),
        })
    }

    /// Waits for a slot in `lane` (the caller bounds the wait by its deadline).
    pub(super) async fn acquire(&self, lane: Lane) -> OwnedSemaphorePermit {
        let semaphore = match lane {
            Lane::Ordinary => &self.ordinary,
            Lane::Control => &self.control,
        };
        Arc::clone(semaphore)
            .acquire_owned()
            .await
            .expect("call slots are never closed")
    }
}

impl Link {
    fn is_live(&self) -> bool {
        self.conn.close_reason().is_none()
    }

    /// 0 for the connection both sides prefer (dialed by the smaller node id), else 1.
    fn rank(&self, me: &NodeId, peer: &NodeId) -> u8 {
        let dialer = if self.dialed_by_us { me } else { peer };
        u8::from(dialer != me.min(peer))
    }
}

type Dial = Shared<BoxFuture<'static, Result<Link, RpcError>>>;

#[derive(Default)]
struct Peer {
    address: Option<SocketAddr>,
    /// Live links, the preferred one first.
    links: Vec<Link>,
    dialing: Option<Dial>,
    failures: u32,
    retry_at: Option<tokio::time::Instant>,
    error_last: Option<RpcError>,
}

#[derive(Default)]
pub(super) struct PeerTable {
    peers: Mutex<BTreeMap<NodeId, Peer>>,
}

impl PeerTable {
    pub(super) fn set_address(&self, node: NodeId, address: SocketAddr) {
        let mut peers = self.peers.lock().expect("peer lock");
        let peer = peers.entry(node).or_default();
        if peer.address != Some(address) {
            peer.address = Some(address);
            peer.failures = 0;
            peer.retry_at = None;
            peer.error_last = None;
        }
    }

    /// Drops `link` from the peer's links (it was found dead).
    pub(super) fn forget(&self, node: &NodeId, link: &Link) {
        let mut peers = self.peers.lock().expect("peer lock");
        if let Some(peer) = peers.get_mut(node) {
            let id = link.conn.stable_id();
            peer.links.retain(|l| l.conn.stable_id() != id);
        }
    }
}

impl Inner {
    /// A live link to `peer`: the cached one, a dial in progress, or a new dial. The caller
    /// bounds the wait by its deadline; the dial itself runs on, bounded by the connect timeout.
    pub(super) async fn link(self: &Arc<Self>, peer: &NodeId) -> Result<Link, RpcError> {
        let dial = {
            let mut peers = self.peers.peers.lock().expect("peer lock");
            let Some(entry) = peers.get_mut(peer) else {
                return Err(RpcError::Unreachable {
                    peer: peer.clone(),
                    reason: "no address known for this node".into(),
                });
            };
            entry.links.retain(Link::is_live);
            if let Some(link) = entry.links.first() {
                return Ok(link.clone());
            }
            match &entry.dialing {
                Some(dial) => dial.clone(),
                None => {
                    let now = tokio::time::Instant::now();
                    if let Some(retry_at) = entry.retry_at.filter(|at| *at > now) {
                        return Err(backoff_error(peer, entry, retry_at - now));
                    }
                    let Some(address) = entry.address else {
                        return Err(RpcError::Unreachable {
                            peer: peer.clone(),
                            reason: "no address known for this node".into(),
                        });
                    };
                    let task = tokio::spawn(Arc::clone(self).dial(peer.clone(), address));
                    let peer_name = peer.clone();
                    let dial = async move {
                        task.await.unwrap_or_else(|e| {
                            Err(RpcError::Unreachable {
                                peer: peer_name,
                                reason: format!("dial task failed: {e}"),
                            })
                        })
                    }
                    .boxed()
                    .shared();
                    entry.dialing = Some(dial.clone());
                    dial
                }
            }
        };
        dial.await
    }

    /// Dials `peer`, handshakes, and records the outcome (link or backoff).
    async fn dial(self: Arc<Self>, peer: NodeId, address: SocketAddr) -> Result<Link, RpcError> {
        let timeout = self.config.connect_timeout;
        let result = tokio::time::timeout(timeout, self.connect(&peer, address))
            .await
            .unwrap_or_else(|_| {
                Err(RpcError::Unreachable {
                    peer: peer.clone(),
                    reason: format!("no answer from {address} within {} ms", timeout.as_millis()),
                })
            });
        let mut peers = self.peers.peers.lock().expect("peer lock");
        let entry = peers.entry(peer.clone()).or_default();
        entry.dialing = None;
        match &result {
            Ok(link) => self.register_locked(&peer, entry, link.clone()),
            Err(error) => {
                entry.failures = entry.failures.saturating_add(1);
                let backoff = self.backoff(entry.failures);
                entry.retry_at = Some(tokio::time::Instant::now() + backoff);
                entry.error_last = Some(error.clone());
                tracing::debug!(node = %self.core.node, %peer, %error, ?backoff, "dial failed");
            }
        }
        result
    }

    async fn connect(
        self: &Arc<Self>,
        peer: &NodeId,
        address: SocketAddr,
    ) -> Result<Link, RpcError> {
        let max = self.core.limits.frame_bytes_max;
        let connecting = self
            .endpoint
            .connect_with(self.client_config.clone(), address, peer.as_str())
            .map_err(|e| RpcError::Unreachable {
                peer: peer.clone(),
                reason: format!("connect to {address}: {e}"),
            })?;
        let conn = connecting.await.map_err(|error| {
            let failure = wire::connection_error(peer, &error, true).error;
            // Our verifier rejected the peer's certificate: a refusal by this node.
            if let quinn::ConnectionError::TransportError(_) = error
                && let RpcError::Refused { reason } = &failure
            {
                self.core
                    .record_refusal(&format!("{peer} at {address}: {reason}"));
            }
            failure
        })?;
        let handshake = async {
            let (mut send, mut recv) = conn
                .open_bi()
                .await
                .map_err(|e| wire::connection_error(peer, &e, true))?;
            let hello = codec::encode_frame(&Header::Hello(self.hello()), &[], max)?;
            send.write_chunk(hello)
                .await
                .map_err(|e| wire::write_error(peer, &e))?;
            let _ = send.finish();
            wire::read_frame(&mut recv, peer, max, wire::Budgeted::No).await
        };
        let reply = match handshake.await {
            Ok(reply) => reply,
            Err(failure) => {
                // The server may have closed the connection with its reason: prefer that.
                let error = match conn.close_reason() {
                    Some(reason) => wire::connection_error(peer, &reason, true).error,
                    None => failure.error,
                };
                conn.close(VarInt::from_u32(0), b"handshake failed");
                return Err(error);
            }
        };
        let welcome = match reply.map(|frame| frame.header) {
            Some(Header::Welcome(welcome)) => welcome,
            Some(Header::Refuse { reason }) => {
                conn.close(VarInt::from_u32(0), b"refused");
                return Err(RpcError::Refused { reason });
            }
            other => {
                conn.close(VarInt::from_u32(0), b"bad handshake");
                let got = other.map_or("end of stream", |h| h.kind_name());
                return Err(RpcError::Refused {
                    reason: format!("handshake: expected a welcome, got {got}"),
                });
            }
        };
        if let Some(reason) = self.check_welcome(&welcome, peer) {
            self.core
                .record_refusal(&format!("{peer} at {address}: {reason}"));
            conn.close(VarInt::from_u32(wire::close::REFUSED), reason.as_bytes());
            return Err(RpcError::Refused { reason });
        }
        let link = Link {
            conn,
            incarnation: welcome.incarnation,
            dialed_by_us: true,
            in_flight: Arc::default(),
            retiring: Arc::default(),
            budget: self.core.budget.connection(),
            slots: CallSlots::new(&self.core.limits),
        };
        accept::spawn_connection(self, peer.clone(), link.clone());
        Ok(link)
    }

    pub(super) fn hello(&self) -> Hello {
        Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: self.core.cluster_id.clone(),
            node_id: self.core.node.to_string(),
            incarnation: self.incarnation,
        }
    }

    /// Why a peer's hello or welcome is unacceptable, if it is.
    pub(super) fn check_peer_hello(&self, hello: &Hello) -> Option<String> {
        if hello.protocol_version != PROTOCOL_VERSION {
            return Some(format!(
                "protocol version {} not supported (node {} speaks {PROTOCOL_VERSION})",
                hello.protocol_version, self.core.node
            ));
        }
        if hello.cluster_id != self.core.cluster_id {
            return Some(format!(
                "node {} belongs to cluster {:?}, not to cluster {:?} of node {}",
                hello.node_id, hello.cluster_id, self.core.cluster_id, self.core.node
            ));
        }
        if hello.node_id == self.core.node.as_str() {
            return Some(format!("peer claims this node's own id {}", self.core.node));
        }
        None
    }

    fn check_welcome(&self, welcome: &Hello, dialed: &NodeId) -> Option<String> {
        if welcome.node_id != dialed.as_str() {
            return Some(format!(
                "dialed node {dialed} but {} answered",
                welcome.node_id
            ));
        }
        self.check_peer_hello(welcome)
    }

    /// Adds an established link (dialed or accepted) to `peer`'s links.
    pub(super) fn register(self: &Arc<Self>, peer: &NodeId, link: Link) {
        let mut peers = self.peers.peers.lock().expect("peer lock");
        let entry = peers.entry(peer.clone()).or_default();
        self.register_locked(peer, entry, link);
    }

    fn register_locked(self: &Arc<Self>, peer: &NodeId, entry: &mut Peer, link: Link) {
        entry.links.retain(Link::is_live);
        // Links to an earlier run of the peer are dead even if no packet has said so yet.
        for stale in entry
            .links
            .iter()
            .filter(|l| l.incarnation != link.incarnation)
        {
            stale.conn.close(
                VarInt::from_u32(wire::close::PEER_RESTARTED),
                b"peer restarted",
            );
        }
        entry.links.retain(|l| l.incarnation == link.incarnation);
        entry.links.push(link);
        let me = &self.core.node;
        entry.links.sort_by_key(|l| l.rank(me, peer));
        entry.failures = 0;
        entry.retry_at = None;
        entry.error_last = None;
        // A duplicate we dialed is closed once idle; the peer stops using it as soon as it too
        // has both, since both sides prefer the same one.
        let duplicates = entry.links.iter().skip(1).filter(|l| l.dialed_by_us);
        for duplicate in duplicates {
            if duplicate.retiring.swap(true, Ordering::SeqCst) {
                continue;
            }
            let duplicate = duplicate.clone();
            let grace = self.config.keep_alive_interval;
            tokio::spawn(async move {
                tokio::time::sleep(grace).await;
                let forever = tokio::time::Instant::now() + Duration::from_secs(365 * 86_400);
                duplicate.in_flight.wait_idle(forever).await;
                duplicate.conn.close(
                    VarInt::from_u32(wire::close::DUPLICATE),
                    b"duplicate connection",
                );
            });
        }
    }

    /// Records an open connection (for stats and shutdown).
    pub(super) fn track(&self, conn: &quinn::Connection) {
        let mut connections = self.connections.lock().expect("connections lock");
        connections.insert(conn.stable_id(), conn.clone());
        self.connections_established_total
            .fetch_add(1, Ordering::Relaxed);
        self.connections_max
            .fetch_max(connections.len(), Ordering::Relaxed);
    }

    /// Forgets a closed connection.
    pub(super) fn untrack(&self, peer: &NodeId, conn: &quinn::Connection) {
        let id = conn.stable_id();
        self.connections
            .lock()
            .expect("connections lock")
            .remove(&id);
        let mut peers = self.peers.peers.lock().expect("peer lock");
        if let Some(entry) = peers.get_mut(peer) {
            entry.links.retain(|l| l.conn.stable_id() != id);
        }
    }

    fn backoff(&self, failures: u32) -> Duration {
        let min = self.config.backoff_min;
        let doubled = min.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let base = doubled.min(self.config.backoff_max);
        // ±20% jitter, so peers of a node that comes back do not all retry at once.
        let permille = self.jitter.lock().expect("jitter lock").between(800, 1200);
        base.mul_f64(permille as f64 / 1000.0)
    }
}

fn backoff_error(peer: &NodeId, entry: &Peer, wait: Duration) -> RpcError {
    match &entry.error_last {
        Some(RpcError::Refused { reason }) => RpcError::Refused {
            reason: reason.clone(),
        },
        last => RpcError::Unreachable {
            peer: peer.clone(),
            reason: format!(
                "{} failed dial(s), next attempt in {} ms{}",
                entry.failures,
                wait.as_millis(),
                last.as_ref()
                    .map(|e| format!("; last: {e}"))
                    .unwrap_or_default()
            ),
        },
    }
}
