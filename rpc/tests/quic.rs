//! The QUIC transport: the conformance suite, then what only a real network stack has — 1 GB
//! streamed, TLS and handshake refusals, raw malformed frames, crash and restart, simultaneous
//! dials.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use grove_rpc::codec::{self, Frame};
use grove_rpc::conformance::{self, Echo, Harness};
use grove_rpc::envelope::{ErrorHeader, Header, Hello, PROTOCOL_VERSION, RequestHeader};
use grove_rpc::tls::{self, ClusterCa, NodeIdentity};
use grove_rpc::{
    Limits, Method, NodeId, QuicConfig, QuicTransport, RpcError, Transport, TransportExt,
};

const CLUSTER: &str = "test";

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// Settings for tests: short timeouts so failures show quickly.
fn test_config(identity: NodeIdentity, cluster_id: &str, listen: SocketAddr) -> QuicConfig {
    let mut config = QuicConfig::new(identity, cluster_id, listen);
    config.connect_timeout = Duration::from_millis(500);
    config.backoff_min = Duration::from_millis(20);
    config.backoff_max = Duration::from_millis(300);
    config.shutdown_grace = Duration::from_secs(5);
    config.idle_timeout = Duration::from_secs(5);
    config.keep_alive_interval = Duration::from_millis(500);
    config
}

/// Binds, retrying while a just-closed endpoint still holds the port.
async fn bind_retrying(config: QuicConfig) -> QuicTransport {
    let started = Instant::now();
    loop {
        match QuicTransport::bind(config.clone()) {
            Ok(transport) => return transport,
            Err(error) if started.elapsed() < Duration::from_secs(5) => {
                let _ = error;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(error) => panic!("bind {}: {error}", config.listen),
        }
    }
}

struct QuicHarness {
    ca: ClusterCa,
    identities: BTreeMap<String, NodeIdentity>,
    nodes: BTreeMap<String, QuicTransport>,
    addresses: BTreeMap<NodeId, SocketAddr>,
}

impl QuicHarness {
    fn new() -> Self {
        QuicHarness {
            ca: ClusterCa::generate(CLUSTER, 30).unwrap(),
            identities: BTreeMap::new(),
            nodes: BTreeMap::new(),
            addresses: BTreeMap::new(),
        }
    }

    async fn start_in(&mut self, name: &str, cluster_id: &str) -> Arc<dyn Transport> {
        self.start_configured(name, cluster_id, Limits::default())
            .await
    }

    async fn start_configured(
        &mut self,
        name: &str,
        cluster_id: &str,
        limits: Limits,
    ) -> Arc<dyn Transport> {
        self.nodes.remove(name);
        let node = id(name);
        let identity = self
            .identities
            .entry(name.to_owned())
            .or_insert_with(|| self.ca.issue(&node, 30).unwrap())
            .clone();
        let listen = self.addresses.get(&node).copied().unwrap_or_else(localhost);
        let mut config = test_config(identity, cluster_id, listen);
        config.limits = limits;
        let transport = bind_retrying(config).await;
        self.addresses.insert(node.clone(), transport.local_addr());
        for (peer, address) in &self.addresses {
            if *peer != node {
                transport.add_peer(peer.clone(), *address);
            }
        }
        for other in self.nodes.values() {
            other.add_peer(node.clone(), transport.local_addr());
        }
        self.nodes.insert(name.to_owned(), transport.clone());
        Arc::new(transport)
    }
}

impl Harness for QuicHarness {
    fn start<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Arc<dyn Transport>> {
        self.start_in(name, CLUSTER).boxed()
    }

    fn start_limited<'a>(
        &'a mut self,
        name: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Arc<dyn Transport>> {
        self.start_configured(name, CLUSTER, limits).boxed()
    }

    fn start_foreign<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Arc<dyn Transport>> {
        // Same CA, so TLS passes and the handshake's cluster check is what refuses.
        self.start_in(name, "other").boxed()
    }

    fn unreachable(&mut self) -> BoxFuture<'_, NodeId> {
        // An address nothing listens on.
        let socket = std::net::UdpSocket::bind(localhost()).unwrap();
        let address = socket.local_addr().unwrap();
        drop(socket);
        let ghost = id("ghost");
        for node in self.nodes.values() {
            node.add_peer(ghost.clone(), address);
        }
        self.addresses.insert(ghost.clone(), address);
        futures::future::ready(ghost).boxed()
    }

    fn fail_fast_bound(&self) -> Duration {
        // The first call waits out the connect timeout (500 ms); later ones hit the backoff.
        Duration::from_secs(2)
    }

    fn reconnect_bound(&self) -> Duration {
        Duration::from_secs(5)
    }
}

grove_rpc::conformance_tests!(QuicHarness::new());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_one_gigabyte() {
    let elapsed = conformance::large_stream(QuicHarness::new(), 1 << 30).await;
    let rate = 1024.0 / elapsed.as_secs_f64();
    println!("1 GiB server stream over QUIC loopback: {elapsed:.2?} ({rate:.0} MiB/s)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_calls_share_one_connection() {
    let mut harness = QuicHarness::new();
    let (nodes, _) = conformance::start_nodes(&mut harness, &["a", "b"]).await;
    let a = &nodes[0];
    let calls = (0..5000u32).map(|i| {
        let a = Arc::clone(a);
        async move {
            a.call::<Echo>(&id("b"), &i.to_le_bytes().to_vec(), Duration::from_secs(30))
                .await
        }
    });
    let replies = futures::future::join_all(calls).await;
    assert!(replies.iter().all(Result::is_ok));
    let stats = a.stats();
    assert_eq!(
        (stats.connections_established_total, stats.connections_max),
        (1, 1),
        "{stats:?}"
    );
    assert_eq!(nodes[1].stats().connections_established_total, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_dials_settle_on_one_connection() {
    let mut harness = QuicHarness::new();
    let (nodes, _) = conformance::start_nodes(&mut harness, &["a", "b"]).await;
    let (a, b) = (Arc::clone(&nodes[0]), Arc::clone(&nodes[1]));
    let deadline = Duration::from_secs(5);
    let (ab, ba) = tokio::join!(
        a.call::<Echo>(&id("b"), &vec![1], deadline),
        b.call::<Echo>(&id("a"), &vec![2], deadline)
    );
    assert_eq!((ab.unwrap(), ba.unwrap()), (vec![1], vec![2]));
    let until = Instant::now() + Duration::from_secs(5);
    while a.stats().connections_open + b.stats().connections_open > 2 {
        assert!(
            Instant::now() < until,
            "duplicate not closed: {:?}",
            a.stats()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..20 {
        a.call::<Echo>(&id("b"), &vec![3], deadline).await.unwrap();
        b.call::<Echo>(&id("a"), &vec![4], deadline).await.unwrap();
    }
    assert_eq!(
        (a.stats().connections_open, b.stats().connections_open),
        (1, 1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificates_from_another_ca_are_refused_both_ways() {
    let mut harness = QuicHarness::new();
    let (nodes, _) = conformance::start_nodes(&mut harness, &["a"]).await;
    let a = &nodes[0];
    // r trusts the cluster CA but its own certificate comes from another CA.
    let rogue_ca = ClusterCa::generate(CLUSTER, 30).unwrap();
    let rogue_cert = rogue_ca.issue(&id("r"), 30).unwrap();
    let rogue_identity = NodeIdentity::from_pem(
        id("r"),
        harness.ca.cert_pem(),
        &rogue_cert.cert_pem,
        &rogue_cert.key_pem,
    )
    .unwrap();
    let rogue = QuicTransport::bind(test_config(rogue_identity, CLUSTER, localhost())).unwrap();
    rogue.add_peer(id("a"), harness.addresses[&id("a")]);
    a_knows(&harness, "r", rogue.local_addr());

    let inbound = rogue
        .call::<Echo>(&id("a"), &vec![], Duration::from_secs(5))
        .await;
    assert!(
        matches!(&inbound, Err(RpcError::Refused { reason }) if reason.contains("tls")),
        "{inbound:?}"
    );
    let until = Instant::now() + Duration::from_secs(2);
    while a.stats().refused_total == 0 {
        assert!(
            Instant::now() < until,
            "a did not record the refusal: {:?}",
            a.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(a.stats().refusal_last.unwrap().contains("tls"));

    // A node whose whole identity comes from another CA: a refuses its server certificate.
    let stranger = QuicTransport::bind(test_config(
        rogue_ca.issue(&id("s"), 30).unwrap(),
        CLUSTER,
        localhost(),
    ))
    .unwrap();
    a_knows(&harness, "s", stranger.local_addr());
    let outbound = a
        .call::<Echo>(&id("s"), &vec![], Duration::from_secs(5))
        .await;
    assert!(
        matches!(&outbound, Err(RpcError::Refused { reason }) if reason.contains("tls")),
        "{outbound:?}"
    );
    assert_eq!(a.stats().refused_total, 2, "{:?}", a.stats());
    assert_eq!(a.stats().connections_open, 0);
    assert_eq!(rogue.stats().connections_established_total, 0);
}

fn a_knows(harness: &QuicHarness, name: &str, address: SocketAddr) {
    for node in harness.nodes.values() {
        node.add_peer(id(name), address);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_must_name_the_node_it_claims() {
    let mut harness = QuicHarness::new();
    let (_, _) = conformance::start_nodes(&mut harness, &["a"]).await;
    // Node "m" presents b's (valid) certificate while claiming to be "m".
    let mut stolen = harness.ca.issue(&id("b"), 30).unwrap();
    stolen.node_id = id("m");
    let mallory = QuicTransport::bind(test_config(stolen, CLUSTER, localhost())).unwrap();
    mallory.add_peer(id("a"), harness.addresses[&id("a")]);
    a_knows(&harness, "m", mallory.local_addr());
    let claimed = mallory
        .call::<Echo>(&id("a"), &vec![], Duration::from_secs(5))
        .await;
    assert!(
        matches!(&claimed, Err(RpcError::Refused { reason }) if reason.contains("certificate")),
        "{claimed:?}"
    );
    // Dialing "m" finds a server whose certificate names "b": TLS refuses it.
    let a = harness.nodes["a"].clone();
    let dialed = a
        .call::<Echo>(&id("m"), &vec![], Duration::from_secs(5))
        .await;
    assert!(
        matches!(&dialed, Err(RpcError::Refused { .. })),
        "{dialed:?}"
    );
}

/// A raw QUIC client holding a valid node certificate, for speaking the protocol by hand.
struct RawClient {
    connection: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl RawClient {
    async fn connect(
        identity: &NodeIdentity,
        server: SocketAddr,
        server_name: &str,
        alpn: &[u8],
    ) -> Result<Self, String> {
        let mut crypto = tls::client_crypto(identity).unwrap();
        crypto.alpn_protocols = vec![alpn.to_vec()];
        let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
        let mut endpoint = quinn::Endpoint::client(localhost()).unwrap();
        endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
        let connection = endpoint
            .connect(server, server_name)
            .unwrap()
            .await
            .map_err(|e| e.to_string())?;
        Ok(RawClient {
            connection,
            _endpoint: endpoint,
        })
    }

    /// Sends `bytes` on a new stream, ends it, and reads one frame back.
    async fn exchange(&self, bytes: &[u8]) -> Frame {
        let (mut send, mut recv) = self.connection.open_bi().await.unwrap();
        send.write_all(bytes).await.unwrap();
        send.finish().unwrap();
        let reply = recv.read_to_end(1 << 20).await.unwrap();
        let (frame, _) = codec::decode_frame(&reply, 1 << 20).unwrap().unwrap();
        frame
    }

    async fn hello(&self, hello: Hello) -> Frame {
        self.exchange(&codec::encode_frame(&Header::Hello(hello), &[], 1 << 20).unwrap())
            .await
    }
}

fn hello_from(node: &str, cluster: &str, version: u32) -> Hello {
    Hello {
        protocol_version: version,
        cluster_id: cluster.into(),
        node_id: node.into(),
        incarnation: 1,
    }
}

fn error_of(frame: &Frame) -> RpcError {
    match &frame.header {
        Header::Error(error) => ErrorHeader::clone(error).into_error(&id("a")),
        other => panic!("expected an error frame, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_of_another_protocol_version_is_refused_with_a_reason() {
    let mut harness = QuicHarness::new();
    let (nodes, _) = conformance::start_nodes(&mut harness, &["a"]).await;
    let identity = harness.ca.issue(&id("x"), 30).unwrap();
    let address = harness.addresses[&id("a")];
    let raw = RawClient::connect(&identity, address, "a", b"grove/1")
        .await
        .unwrap();
    let reply = raw
        .hello(hello_from("x", CLUSTER, PROTOCOL_VERSION + 1))
        .await;
    assert!(
        matches!(&reply.header, Header::Refuse { reason } if reason.contains(&format!("protocol version {}", PROTOCOL_VERSION + 1))),
        "{reply:?}"
    );
    let closed = raw.connection.closed().await;
    assert!(closed.to_string().contains("protocol version"), "{closed}");
    assert!(
        nodes[0]
            .stats()
            .refusal_last
            .unwrap()
            .contains(&format!("protocol version {}", PROTOCOL_VERSION + 1))
    );

    let wrong_alpn = RawClient::connect(&identity, address, "a", b"grove/2").await;
    assert!(
        wrong_alpn.is_err(),
        "a peer speaking another ALPN must not connect"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_frames_fail_their_stream_only() {
    let mut harness = QuicHarness::new();
    let (nodes, _) = conformance::start_nodes(&mut harness, &["a"]).await;
    let identity = harness.ca.issue(&id("x"), 30).unwrap();
    let raw = RawClient::connect(&identity, harness.addresses[&id("a")], "a", b"grove/1")
        .await
        .unwrap();
    let welcome = raw.hello(hello_from("x", CLUSTER, PROTOCOL_VERSION)).await;
    assert!(
        matches!(welcome.header, Header::Welcome(ref w) if w.node_id == "a"),
        "{welcome:?}"
    );

    let echo = |payload: &[u8]| {
        let header = Header::Request(RequestHeader {
            method: Echo::NAME.into(),
            budget_us: 5_000_000,
            streaming: false,
            control: false,
        });
        codec::encode_frame(&header, &codec::encode(&payload.to_vec()).unwrap(), 1 << 20).unwrap()
    };
    let framed = |body: &[u8]| {
        let mut frame = BytesMut::new();
        frame.put_u32(body.len() as u32);
        frame.put_slice(body);
        frame.freeze()
    };
    let garbage: [&[u8]; 6] = [
        &framed(&[1, 99, 0]),         // unknown frame kind
        &framed(&[2, 4, 0, 0, 0]),    // unknown envelope version
        &framed(&[1, 4, 0x80]),       // unknown flags
        &framed(&[1, 5, 0]),          // a response where a request belongs
        &[0, 0, 0, 100, 1, 4, 0],     // stream ends inside the frame
        &framed(&[1, 4, 0, 1, 2, 3]), // header truncated
    ];
    for bytes in garbage {
        let reply = raw.exchange(bytes).await;
        assert!(
            matches!(error_of(&reply), RpcError::Malformed { .. }),
            "{bytes:?}: {reply:?}"
        );
    }
    let oversized = [0xff, 0xff, 0xff, 0xff, 1, 4, 0];
    let reply = raw.exchange(&oversized).await;
    assert!(
        matches!(error_of(&reply), RpcError::FrameTooLarge { .. }),
        "{reply:?}"
    );
    // A request whose payload does not decode as the method's request type.
    let header = Header::Request(RequestHeader {
        method: Echo::NAME.into(),
        budget_us: 5_000_000,
        streaming: false,
        control: false,
    });
    let bad_payload = codec::encode_frame(&header, &[0xff, 0xff, 0xff], 1 << 20).unwrap();
    assert!(matches!(
        error_of(&raw.exchange(&bad_payload).await),
        RpcError::Malformed { .. }
    ));

    // The same connection still serves well-formed calls, and the node is fine.
    let reply = raw.exchange(&echo(b"still here")).await;
    assert_eq!(reply.header, Header::Response);
    assert_eq!(
        codec::decode::<Vec<u8>>(&reply.payload).unwrap(),
        b"still here".to_vec()
    );
    assert!(raw.connection.close_reason().is_none());
    assert_eq!(nodes[0].stats().connections_open, 1);
}

#[test]
fn a_crashed_peer_that_restarts_is_reached_again_at_once() {
    // Node b runs on its own runtime; dropping that runtime is a crash (no close is sent).
    let ca = ClusterCa::generate(CLUSTER, 30).unwrap();
    let b_identity = ca.issue(&id("b"), 30).unwrap();
    let a_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let start_b = |listen: SocketAddr| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let identity = b_identity.clone();
        let b = runtime.block_on(async move {
            let b = bind_retrying(test_config(identity, CLUSTER, listen)).await;
            b.serve(conformance::test_router(Arc::default()));
            b
        });
        (runtime, b)
    };
    let (b_runtime, b) = start_b(localhost());
    let b_address = b.local_addr();
    let a = a_runtime.block_on(async {
        let a = QuicTransport::bind(test_config(
            ca.issue(&id("a"), 30).unwrap(),
            CLUSTER,
            localhost(),
        ))
        .unwrap();
        a.add_peer(id("b"), b_address);
        a.call::<Echo>(&id("b"), &vec![1], Duration::from_secs(5))
            .await
            .unwrap();
        a
    });
    drop(b);
    b_runtime.shutdown_background();

    let (_b_runtime, _b) = start_b(b_address);
    a_runtime.block_on(async {
        // a still holds its connection to the old b; the new b answers it with a stateless
        // reset, and the call moves to a fresh connection without waiting for a timeout.
        let started = Instant::now();
        let reply = a
            .call::<Echo>(&id("b"), &vec![2], Duration::from_secs(5))
            .await;
        assert_eq!(reply.unwrap(), vec![2]);
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "took {:?}",
            started.elapsed()
        );
        assert_eq!(a.stats().connections_established_total, 2);
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_hello_is_refused_before_it_is_read() {
    let mut harness = QuicHarness::new();
    let (nodes, _) = conformance::start_nodes(&mut harness, &["a"]).await;
    assert!(nodes[0].limits().frame_bytes_max > 100_000);
    let identity = harness.ca.issue(&id("x"), 30).unwrap();
    let raw = RawClient::connect(&identity, harness.addresses[&id("a")], "a", b"grove/1")
        .await
        .unwrap();
    // A hello declaring a 100 000-byte body (within frame_bytes_max, over the hello cap),
    // of which only the header is sent: refused on the length alone.
    let mut frame = BytesMut::new();
    frame.put_u32(100_000);
    frame.put_slice(&[1, 1, 0]);
    let reply = raw.exchange(&frame).await;
    assert!(
        matches!(&reply.header, Header::Refuse { reason } if reason.contains("65536")),
        "{reply:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshakes_in_progress_are_bounded() {
    const BOUND: usize = 256; // quic::accept's HANDSHAKES_IN_PROGRESS_MAX
    let ca = ClusterCa::generate(CLUSTER, 30).unwrap();
    let mut config = test_config(ca.issue(&id("a"), 30).unwrap(), CLUSTER, localhost());
    // Long enough that no stalled handshake times out while the test runs.
    config.connect_timeout = Duration::from_secs(30);
    let a = bind_retrying(config).await;
    let identity = ca.issue(&id("x"), 30).unwrap();
    let mut crypto = tls::client_crypto(&identity).unwrap();
    crypto.alpn_protocols = vec![b"grove/1".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(crypto).unwrap();
    let mut endpoint = quinn::Endpoint::client(localhost()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    let connect = || endpoint.connect(a.local_addr(), "a").unwrap();
    // TLS completes, but no hello follows: each holds a handshake slot.
    let stalled = futures::future::join_all((0..BOUND).map(|_| connect())).await;
    let stalled: Vec<_> = stalled.into_iter().map(Result::unwrap).collect();
    let refused = connect().await;
    assert!(
        matches!(refused, Err(quinn::ConnectionError::ConnectionClosed(_))),
        "{:?}",
        refused.map(|_| ())
    );
    for connection in &stalled {
        connection.close(0u32.into(), b"bye");
    }
    drop(stalled);
    // Closed handshakes give their slots back.
    let started = Instant::now();
    loop {
        match connect().await {
            Ok(_) => break,
            Err(error) => {
                assert!(started.elapsed() < Duration::from_secs(5), "{error}");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
}
