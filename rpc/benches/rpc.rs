//! `cargo bench -p grove-rpc --bench rpc`: small-call round trips and throughput over one QUIC
//! connection on loopback (mutual TLS, 1, 16 and 256 concurrent callers) against HTTP/1.1
//! keep-alive (hyper, plain TCP, one connection per concurrent caller) in the same run, and the
//! cost per request of a 100-request fan-out to one peer.
//!
//! Each concurrency level runs three alternating QUIC / HTTP rounds and reports the medians.
//! Writes `$CARGO_TARGET_DIR/grove-bench/rpc.json`. `GROVE_BENCH_CALLS` sets the calls per
//! measurement (default 60,000, split over the rounds).

// Shared with the segment benches; not every helper is used here.
#[allow(dead_code)]
#[path = "../../segment/benches/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

use grove_rpc::tls::ClusterCa;
use grove_rpc::{Method, NodeId, QuicConfig, QuicTransport, Router, Transport, TransportExt};

/// The request and response of every measured call: 32 bytes each way.
struct Ping;
impl Method for Ping {
    const NAME: &'static str = "bench.ping";
    type Request = Vec<u8>;
    type Response = Vec<u8>;
}

const PAYLOAD_BYTES: usize = 32;
const CONCURRENCY: [usize; 3] = [1, 16, 256];
const FANOUT: usize = 100;
const ROUNDS: usize = 3;

#[derive(Default, Clone, Copy)]
struct Figures {
    p50_us: f64,
    p99_us: f64,
    calls_per_s: f64,
}

fn main() {
    let calls: usize = std::env::var("GROVE_BENCH_CALLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60_000);
    // Two "nodes", one core each: the servers run on their own single-threaded runtime and
    // thread, the callers on another, as two processes on one machine would.
    let (servers_tx, servers_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = single_threaded();
        runtime.block_on(async move {
            servers_tx
                .send(start_servers().await)
                .expect("report servers");
            futures::future::pending::<()>().await;
        });
    });
    let servers = servers_rx.recv().expect("servers started");
    single_threaded().block_on(run(calls, servers));
}

fn single_threaded() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// What the server side offers the callers.
struct Servers {
    ca: ClusterCa,
    quic_address: SocketAddr,
    http_address: SocketAddr,
}

async fn start_servers() -> Servers {
    let ca = ClusterCa::generate("bench", 1).expect("ca");
    let server = quic_node(&ca, "server");
    server.serve(Router::new().unary::<Ping, _, _>(|_, request| async move { Ok(request) }));
    let quic_address = server.local_addr();
    std::mem::forget(server);
    Servers {
        ca,
        quic_address,
        http_address: http_server().await,
    }
}

fn quic_node(ca: &ClusterCa, name: &str) -> QuicTransport {
    let local: SocketAddr = "127.0.0.1:0".parse().expect("address");
    let id = NodeId::new(name).expect("node id");
    let identity = ca.issue(&id, 1).expect("certificate");
    QuicTransport::bind(QuicConfig::new(identity, "bench", local)).expect("bind")
}

async fn run(calls: usize, servers: Servers) {
    let client = quic_node(&servers.ca, "client");
    let server_id = NodeId::new("server").expect("node id");
    client.add_peer(server_id.clone(), servers.quic_address);
    let quic_call = {
        let client = client.clone();
        let server_id = server_id.clone();
        move || {
            let client = client.clone();
            let server_id = server_id.clone();
            async move {
                let reply = client
                    .call::<Ping>(
                        &server_id,
                        &vec![7u8; PAYLOAD_BYTES],
                        Duration::from_secs(10),
                    )
                    .await
                    .expect("quic call");
                assert_eq!(reply.len(), PAYLOAD_BYTES);
            }
        }
    };
    let http_address = servers.http_address;

    let mut quic = Vec::new();
    let mut http = Vec::new();
    for concurrency in CONCURRENCY {
        let mut senders = Vec::new();
        for _ in 0..concurrency {
            senders.push(http_connection(http_address).await);
        }
        // Rounds alternate between the two, so load from elsewhere on the machine hits both
        // alike; each figure is the median over the rounds.
        let mut quic_rounds = Vec::new();
        let mut http_rounds = Vec::new();
        for _ in 0..ROUNDS {
            quic_rounds.push(measure(concurrency, calls / ROUNDS, |_| quic_call.clone()).await);
            http_rounds.push(
                measure(concurrency, calls / ROUNDS, |caller| {
                    let sender = senders[caller].clone();
                    move || {
                        let sender = sender.clone();
                        async move { http_call(&sender).await }
                    }
                })
                .await,
            );
        }
        quic.push(median(&quic_rounds));
        http.push(median(&http_rounds));
    }
    let connections_max = client.stats().connections_max;
    assert_eq!(connections_max, 1, "all callers must share one connection");

    // Fan-out: one caller, 100 concurrent per-segment requests to one peer, gathered.
    let rounds = (calls / FANOUT).max(50);
    for _ in 0..10 {
        fan_out(&quic_call).await;
    }
    let started = Instant::now();
    for _ in 0..rounds {
        fan_out(&quic_call).await;
    }
    let fanout_us_per_request = started.elapsed().as_secs_f64() * 1e6 / (rounds * FANOUT) as f64;

    print_table(&quic, &http, connections_max, fanout_us_per_request);
    let [q1, q16, q256] = [quic[0], quic[1], quic[2]];
    let [h1, h16, h256] = [http[0], http[1], http[2]];
    let path = common::write_bench_json(
        "rpc",
        &[
            ("p50_us_c1", q1.p50_us),
            ("p99_us_c1", q1.p99_us),
            ("calls_per_s_c1", q1.calls_per_s),
            ("calls_per_s_c16", q16.calls_per_s),
            ("calls_per_s_c256", q256.calls_per_s),
            ("http_p50_us_c1", h1.p50_us),
            ("http_p99_us_c1", h1.p99_us),
            ("http_calls_per_s_c1", h1.calls_per_s),
            ("http_calls_per_s_c16", h16.calls_per_s),
            ("http_calls_per_s_c256", h256.calls_per_s),
            ("connections_max", connections_max as f64),
            ("fanout_us_per_request", fanout_us_per_request),
        ],
    );
    println!("figures written to {}", path.display());
}

/// The median of each figure over `rounds`.
fn median(rounds: &[Figures]) -> Figures {
    let pick = |figure: fn(&Figures) -> f64| {
        let mut values: Vec<f64> = rounds.iter().map(figure).collect();
        values.sort_by(f64::total_cmp);
        values[values.len() / 2]
    };
    Figures {
        p50_us: pick(|f| f.p50_us),
        p99_us: pick(|f| f.p99_us),
        calls_per_s: pick(|f| f.calls_per_s),
    }
}

async fn fan_out<F, Fut>(call: &F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    futures::future::join_all((0..FANOUT).map(|_| call())).await;
}

/// Runs `calls` calls spread over `concurrency` callers (after a warm-up); latency percentiles
/// are over every call, throughput over the wall time.
async fn measure<M, F, Fut>(concurrency: usize, calls: usize, make_caller: M) -> Figures
where
    M: Fn(usize) -> F,
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let per_caller = (calls / concurrency).max(20);
    let warm_up = (per_caller / 10).max(5);
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|caller| {
            let call = make_caller(caller);
            tokio::spawn(async move {
                for _ in 0..warm_up {
                    call().await;
                }
                let mut latencies_ns = Vec::with_capacity(per_caller);
                let measuring = Instant::now();
                for _ in 0..per_caller {
                    let started = Instant::now();
                    call().await;
                    latencies_ns.push(started.elapsed().as_nanos() as u64);
                }
                (measuring, latencies_ns)
            })
        })
        .collect();
    let mut latencies_ns = Vec::with_capacity(per_caller * concurrency);
    let mut first_start = None::<Instant>;
    for task in tasks {
        let (measuring, latencies) = task.await.expect("caller");
        first_start = Some(first_start.map_or(measuring, |f| f.min(measuring)));
        latencies_ns.extend(latencies);
    }
    let wall = first_start.unwrap_or(started).elapsed().as_secs_f64();
    latencies_ns.sort_unstable();
    let percentile =
        |p: f64| latencies_ns[((latencies_ns.len() - 1) as f64 * p) as usize] as f64 / 1000.0;
    Figures {
        p50_us: percentile(0.50),
        p99_us: percentile(0.99),
        calls_per_s: latencies_ns.len() as f64 / wall,
    }
}

async fn http_server() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("tcp bind");
    let address = listener.local_addr().expect("address");
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.expect("accept");
            stream.set_nodelay(true).expect("nodelay");
            tokio::spawn(async move {
                let service =
                    hyper::service::service_fn(|request: hyper::Request<Incoming>| async move {
                        let body = request.into_body().collect().await?.to_bytes();
                        Ok::<_, hyper::Error>(hyper::Response::new(Full::new(body)))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    address
}

type HttpSender = Arc<tokio::sync::Mutex<hyper::client::conn::http1::SendRequest<Full<Bytes>>>>;

/// One keep-alive HTTP/1.1 connection (HTTP/1.1 has no multiplexing: one per caller).
async fn http_connection(address: SocketAddr) -> HttpSender {
    let stream = TcpStream::connect(address).await.expect("tcp connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("http handshake");
    tokio::spawn(connection);
    Arc::new(tokio::sync::Mutex::new(sender))
}

async fn http_call(sender: &HttpSender) {
    let request = hyper::Request::post("/ping")
        .header("host", "bench")
        .body(Full::new(Bytes::from(vec![7u8; PAYLOAD_BYTES])))
        .expect("request");
    let mut sender = sender.lock().await;
    sender.ready().await.expect("connection ready");
    let response = sender.send_request(request).await.expect("http call");
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes();
    assert_eq!(body.len(), PAYLOAD_BYTES);
}

fn print_table(quic: &[Figures], http: &[Figures], connections_max: usize, fanout_us: f64) {
    println!();
    println!(
        "grove-rpc: {PAYLOAD_BYTES}-byte calls on loopback, QUIC (mutual TLS, one connection) vs HTTP/1.1 keep-alive (plain TCP, one connection per caller)"
    );
    println!(
        "{:>11} {:>10} {:>10} {:>13} | {:>10} {:>10} {:>13} | {:>10}",
        "concurrency",
        "p50 µs",
        "p99 µs",
        "calls/s",
        "http p50",
        "http p99",
        "http calls/s",
        "calls/s ÷ http"
    );
    for ((concurrency, q), h) in CONCURRENCY.iter().zip(quic).zip(http) {
        println!(
            "{:>11} {:>10.1} {:>10.1} {:>13.0} | {:>10.1} {:>10.1} {:>13.0} | {:>10.2}",
            concurrency,
            q.p50_us,
            q.p99_us,
            q.calls_per_s,
            h.p50_us,
            h.p99_us,
            h.calls_per_s,
            q.calls_per_s / h.calls_per_s
        );
    }
    println!(
        "p50 at 1 caller: QUIC {:.1} µs = {:.2} × HTTP/1.1; QUIC connections used: {connections_max}",
        quic[0].p50_us,
        quic[0].p50_us / http[0].p50_us
    );
    println!("fan-out of {FANOUT} requests to one peer: {fanout_us:.1} µs per request");
    println!("(callers on one core, servers on the other: calls/s is per core on each side)");
}
