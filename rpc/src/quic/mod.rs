//! The QUIC transport (quinn): one connection per node pair, one bidirectional stream per call.
//!
//! - Dialing: a per-peer cache holds the live connection; concurrent first calls share one dial
//!   (a spawned task, so a caller's short deadline does not abort it). A failed dial puts the
//!   peer in exponential backoff (with jitter) during which calls fail at once with
//!   [`RpcError::Unreachable`] (or the refusal that caused it).
//! - Handshake: TLS 1.3 with client certificates (both ends signed by the cluster CA, ALPN
//!   `grove/1`), then a hello on the first stream: protocol version, cluster id, node id (which
//!   must be the name in the certificate) and incarnation. A refusal closes the connection with
//!   its reason; both sides see why. At most `HANDSHAKES_IN_PROGRESS_MAX` (256) incoming
//!   handshakes run at once (more are refused), and the hello frame is capped at 64 KiB
//!   whatever `frame_bytes_max` is, since it is read before the peer is identified.
//! - Either end of a connection calls over it: a connection dialed by A is used by B for calls
//!   to A too. If both dial at once, both keep the one dialed by the smaller node id and the
//!   other is closed once idle. A hello with a new incarnation replaces the peer's old links.
//! - Lanes and budgets: the peer may open `concurrent_calls_max` + `CONTROL_CALLS_MAX` streams;
//!   a caller keeps its ordinary calls to the first share (a semaphore per link), so control
//!   calls (Raft heartbeats and votes) always find a stream. Frames read on a connection are
//!   reserved from its and the node's buffer budgets before their bodies are read (a request's
//!   lane comes from the first three bytes of its body); a frame that does not fit is left
//!   unread and flow control holds the peer back.
//! - Keep-alive pings keep idle connections up and detect dead peers within the idle timeout;
//!   a restarted peer answers old connections with a stateless reset (its reset key is derived
//!   from its node key), so they fail at once.

mod accept;
mod calls;
mod peers;
mod wire;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn::{IdleTimeout, VarInt};
use tokio::task::JoinHandle;

use crate::error::RpcError;
use crate::rng::SplitMix64;
use crate::router::Router;
use crate::shared::{self, NodeCore};
use crate::tls::{self, NodeIdentity};
use crate::transport::{Deadline, Lane, Limits, NodeId, Transport, TransportStats};
use calls::{StreamState, stream_step};
use peers::PeerTable;

/// Settings of a [`QuicTransport`]; [`QuicConfig::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    pub identity: NodeIdentity,
    pub cluster_id: String,
    /// UDP address to listen on (port 0 picks one; see [`QuicTransport::local_addr`]).
    pub listen: SocketAddr,
    pub limits: Limits,
    /// Longest a dial plus handshake may take.
    pub connect_timeout: Duration,
    /// A connection with no packets from the peer for this long is dead.
    pub idle_timeout: Duration,
    pub keep_alive_interval: Duration,
    /// Backoff after the first failed dial to a peer; doubles per failure up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// Longest `shutdown` waits for in-flight calls.
    pub shutdown_grace: Duration,
    /// Per-stream flow-control window (bytes a call may have unread).
    pub stream_window_bytes: u32,
    /// Per-connection flow-control window.
    pub connection_window_bytes: u32,
    /// Largest UDP payload path-MTU discovery tries (8,952 fits a 9,000-byte jumbo frame).
    pub udp_payload_bytes_max: u16,
}

impl QuicConfig {
    pub fn new(identity: NodeIdentity, cluster_id: impl Into<String>, listen: SocketAddr) -> Self {
        QuicConfig {
            identity,
            cluster_id: cluster_id.into(),
            listen,
            limits: Limits::default(),
            connect_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(10),
            keep_alive_interval: Duration::from_secs(2),
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(5),
            shutdown_grace: Duration::from_secs(10),
            stream_window_bytes: 8 << 20,
            connection_window_bytes: 64 << 20,
            udp_payload_bytes_max: 8952,
        }
    }
}

/// Grove's QUIC transport. Cheap to clone; dropping the last clone without
/// [`Transport::shutdown`] closes the endpoint abruptly.
#[derive(Clone)]
pub struct QuicTransport {
    handle: Arc<Handle>,
}

/// Owner of the running endpoint; its drop stops the background tasks.
struct Handle {
    inner: Arc<Inner>,
}

struct Inner {
    core: NodeCore,
    config: QuicConfig,
    endpoint: quinn::Endpoint,
    client_config: quinn::ClientConfig,
    incarnation: u64,
    peers: PeerTable,
    jitter: Mutex<SplitMix64>,
    /// Every open connection, by quinn's stable id.
    connections: Mutex<BTreeMap<usize, quinn::Connection>>,
    connections_max: AtomicUsize,
    connections_established_total: AtomicU64,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    shutdown_started: AtomicBool,
}

impl QuicTransport {
    /// Binds the endpoint and starts accepting connections. Must be called inside a tokio
    /// runtime.
    pub fn bind(config: QuicConfig) -> Result<Self, RpcError> {
        config.limits.check()?;
        let identity = &config.identity;
        let transport = Arc::new(transport_config(&config)?);
        let server_crypto = QuicServerConfig::try_from(tls::server_crypto(identity)?)
            .map_err(|e| RpcError::config(format!("quic server tls: {e}")))?;
        let mut server_config = quinn::ServerConfig::with_crypto(Arc::new(server_crypto));
        server_config.transport_config(Arc::clone(&transport));
        server_config.migration(false);
        let client_crypto = QuicClientConfig::try_from(tls::client_crypto(identity)?)
            .map_err(|e| RpcError::config(format!("quic client tls: {e}")))?;
        let mut client_config = quinn::ClientConfig::new(Arc::new(client_crypto));
        client_config.transport_config(transport);

        let socket = std::net::UdpSocket::bind(config.listen)
            .map_err(|e| RpcError::config(format!("bind udp {}: {e}", config.listen)))?;
        let mut endpoint_config = quinn::EndpointConfig::new(Arc::new(tls::reset_key(identity)));
        endpoint_config
            .max_udp_payload_size(config.udp_payload_bytes_max)
            .map_err(|e| RpcError::config(format!("udp payload size: {e}")))?;
        let cid_seed = random_u64()?;
        endpoint_config.cid_generator(move || Box::new(RandomCids(SplitMix64::new(cid_seed))));
        let endpoint = quinn::Endpoint::new(
            endpoint_config,
            Some(server_config),
            socket,
            Arc::new(quinn::TokioRuntime),
        )
        .map_err(|e| RpcError::config(format!("quic endpoint on {}: {e}", config.listen)))?;

        let incarnation = random_u64()?;
        let core = NodeCore::new(
            identity.node_id.clone(),
            config.cluster_id.clone(),
            config.limits,
        );
        let inner = Arc::new(Inner {
            core,
            endpoint,
            client_config,
            incarnation,
            peers: PeerTable::default(),
            jitter: Mutex::new(SplitMix64::new(incarnation)),
            connections: Mutex::default(),
            connections_max: AtomicUsize::new(0),
            connections_established_total: AtomicU64::new(0),
            accept_task: Mutex::new(None),
            shutdown_started: AtomicBool::new(false),
            config,
        });
        let task = tokio::spawn(accept::accept_loop(Arc::clone(&inner)));
        *inner.accept_task.lock().expect("accept task lock") = Some(task);
        Ok(QuicTransport {
            handle: Arc::new(Handle { inner }),
        })
    }

    /// The address the endpoint listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner()
            .endpoint
            .local_addr()
            .expect("a bound endpoint has an address")
    }

    /// Tells this node where `node` listens (from membership). Changing an address resets the
    /// peer's backoff.
    pub fn add_peer(&self, node: NodeId, address: SocketAddr) {
        self.inner().peers.set_address(node, address);
    }

    /// This run's incarnation, sent in the hello.
    pub fn incarnation(&self) -> u64 {
        self.inner().incarnation
    }

    fn inner(&self) -> &Arc<Inner> {
        &self.handle.inner
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if let Some(task) = self
            .inner
            .accept_task
            .lock()
            .expect("accept task lock")
            .take()
        {
            task.abort();
        }
        self.inner
            .endpoint
            .close(VarInt::from_u32(wire::close::DROPPED), b"transport dropped");
    }
}

fn transport_config(config: &QuicConfig) -> Result<quinn::TransportConfig, RpcError> {
    let mut transport = quinn::TransportConfig::default();
    transport
        // The ordinary lane's calls plus the control lane's (the caller keeps each to its own
        // share, so control calls always find a stream).
        .max_concurrent_bidi_streams(VarInt::from_u32(
            config.limits.concurrent_calls_max + crate::transport::CONTROL_CALLS_MAX,
        ))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .max_idle_timeout(Some(
            IdleTimeout::try_from(config.idle_timeout)
                .map_err(|e| RpcError::config(format!("idle timeout: {e}")))?,
        ))
        .keep_alive_interval(Some(config.keep_alive_interval))
        .stream_receive_window(VarInt::from_u32(config.stream_window_bytes))
        .receive_window(VarInt::from_u32(config.connection_window_bytes))
        .send_window(u64::from(config.connection_window_bytes))
        // Nodes sit in one data center: start loss recovery from a LAN round trip.
        .initial_rtt(Duration::from_millis(10));
    // Probe up to jumbo frames (and loopback): fewer packets per byte where the path allows,
    // while discovery settles on 1,200-1,452 bytes on ordinary paths.
    let mut mtu = quinn::MtuDiscoveryConfig::default();
    mtu.upper_bound(config.udp_payload_bytes_max);
    transport.mtu_discovery_config(Some(mtu));
    Ok(transport)
}

/// Random 8-byte connection ids, all accepted as valid. quinn's default generator rejects ids
/// it did not hash itself, so a restarted node would ignore packets of its previous run instead
/// of answering them with the stateless reset that tells the peer at once.
struct RandomCids(SplitMix64);

impl quinn::ConnectionIdGenerator for RandomCids {
    fn generate_cid(&mut self) -> quinn::ConnectionId {
        quinn::ConnectionId::new(&self.0.next_u64().to_le_bytes())
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

fn random_u64() -> Result<u64, RpcError> {
    let mut bytes = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
        .map_err(|_| RpcError::config("no system randomness"))?;
    Ok(u64::from_le_bytes(bytes))
}

impl Inner {
    fn stats(&self) -> TransportStats {
        let mut stats = self.core.stats();
        stats.connections_open = self.connections.lock().expect("connections lock").len();
        stats.connections_max = self.connections_max.load(Ordering::Relaxed);
        stats.connections_established_total =
            self.connections_established_total.load(Ordering::Relaxed);
        stats
    }

    async fn shutdown(self: Arc<Self>) {
        if self.shutdown_started.swap(true, Ordering::SeqCst) {
            return;
        }
        self.core.begin_drain();
        self.core.drain(self.config.shutdown_grace).await;
        if let Some(task) = self.accept_task.lock().expect("accept task lock").take() {
            task.abort();
        }
        self.endpoint.close(
            VarInt::from_u32(wire::close::SHUTDOWN),
            b"node shutting down",
        );
        let _ = tokio::time::timeout(Duration::from_secs(2), self.endpoint.wait_idle()).await;
    }
}

impl Transport for QuicTransport {
    fn node_id(&self) -> &NodeId {
        &self.inner().core.node
    }

    fn limits(&self) -> Limits {
        self.inner().core.limits
    }

    fn call_bytes(
        &self,
        peer: &NodeId,
        method: &str,
        request: Bytes,
        deadline: Deadline,
        lane: Lane,
    ) -> BoxFuture<'static, Result<Bytes, RpcError>> {
        let inner = Arc::clone(self.inner());
        let frame =
            shared::request_frame(method, &request, deadline, false, lane, &inner.core.limits);
        let peer = peer.clone();
        async move { inner.unary(peer, frame?, deadline, lane).await }.boxed()
    }

    fn stream_bytes(
        &self,
        peer: &NodeId,
        method: &str,
        request: Bytes,
        deadline: Deadline,
    ) -> BoxStream<'static, Result<Bytes, RpcError>> {
        let inner = Arc::clone(self.inner());
        let frame = shared::request_frame(
            method,
            &request,
            deadline,
            true,
            Lane::Ordinary,
            &inner.core.limits,
        );
        let state = StreamState::Start {
            inner,
            peer: peer.clone(),
            frame,
            deadline,
        };
        futures::stream::unfold(state, stream_step).boxed()
    }

    fn serve(&self, router: Router) {
        self.inner().core.install(router);
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Arc::clone(self.inner()).shutdown().boxed()
    }

    fn stats(&self) -> TransportStats {
        self.inner().stats()
    }
}
