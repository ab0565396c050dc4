//! The in-memory transport: the conformance suite, then its faults and their determinism.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use grove_rpc::conformance::{Echo, Harness};
use grove_rpc::memory::{MemoryNodeConfig, NetworkStats};
use grove_rpc::{
    Faults, Limits, MemoryNetwork, MemoryTransport, Method, NodeId, Router, RpcError, Transport,
    TransportExt,
};

struct MemoryHarness {
    network: MemoryNetwork,
    nodes: BTreeMap<String, MemoryTransport>,
}

impl MemoryHarness {
    fn new() -> Self {
        MemoryHarness {
            network: MemoryNetwork::new(7),
            nodes: BTreeMap::new(),
        }
    }

    fn start_with(
        &mut self,
        name: &str,
        cluster_id: Option<String>,
        limits: Limits,
    ) -> Arc<dyn Transport> {
        self.nodes.remove(name);
        let config = MemoryNodeConfig {
            cluster_id,
            limits,
            shutdown_grace: Duration::from_secs(5),
        };
        let node = self.network.node_with(name, config).expect("node starts");
        self.nodes.insert(name.to_owned(), node.clone());
        Arc::new(node)
    }
}

impl Harness for MemoryHarness {
    fn start<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Arc<dyn Transport>> {
        futures::future::ready(self.start_with(name, None, Limits::default())).boxed()
    }

    fn start_limited<'a>(
        &'a mut self,
        name: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Arc<dyn Transport>> {
        futures::future::ready(self.start_with(name, None, limits)).boxed()
    }

    fn start_foreign<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Arc<dyn Transport>> {
        let node = self.start_with(name, Some("other".into()), Limits::default());
        futures::future::ready(node).boxed()
    }

    fn unreachable(&mut self) -> BoxFuture<'_, NodeId> {
        futures::future::ready(NodeId::new("ghost").unwrap()).boxed()
    }

    fn fail_fast_bound(&self) -> Duration {
        Duration::from_millis(100)
    }

    fn reconnect_bound(&self) -> Duration {
        Duration::from_secs(1)
    }
}

grove_rpc::conformance_tests!(MemoryHarness::new());

fn id(name: &str) -> NodeId {
    NodeId::new(name).unwrap()
}

/// Records the order in which requests reach the handler.
struct Tag;
impl Method for Tag {
    const NAME: &'static str = "test.tag";
    type Request = u32;
    type Response = u32;
}

fn tag_router(seen: Arc<Mutex<Vec<u32>>>) -> Router {
    Router::new().unary::<Tag, _, _>(move |_, tag| {
        seen.lock().unwrap().push(tag);
        async move { Ok(tag) }
    })
}

/// Runs 200 calls from `a` to `b` under `faults` on a fresh runtime in paused time (as a
/// simulator host would) and returns what happened: each call's outcome, the order the handler
/// saw requests in, and the network's counters.
fn faulty_run(seed: u64, faults: Faults) -> (Vec<Result<u32, RpcError>>, Vec<u32>, NetworkStats) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap();
    runtime.block_on(async {
        let network = MemoryNetwork::with_faults(seed, faults);
        let a = network.node("a").unwrap();
        let b = network.node("b").unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        b.serve(tag_router(Arc::clone(&seen)));
        // Spawned in order, so requests leave in order.
        let calls: Vec<_> = (0..200u32)
            .map(|tag| tokio::spawn(a.call::<Tag>(&id("b"), &tag, Duration::from_secs(1))))
            .collect();
        let mut outcomes = Vec::new();
        for call in calls {
            outcomes.push(call.await.unwrap());
        }
        let seen = seen.lock().unwrap().clone();
        (outcomes, seen, network.stats())
    })
}

fn heavy_faults() -> Faults {
    Faults {
        drop_probability: 0.1,
        duplicate_probability: 0.1,
        delay_min: Duration::from_millis(1),
        delay_max: Duration::from_millis(5),
        reorder_probability: 0.3,
        reorder_delay_max: Duration::from_millis(20),
    }
}

#[test]
fn faults_replay_exactly_from_their_seed() {
    let first = faulty_run(42, heavy_faults());
    let second = faulty_run(42, heavy_faults());
    assert_eq!(first, second, "same seed, different run");
    let other = faulty_run(43, heavy_faults());
    assert_ne!(first.1, other.1, "a different seed should change the run");

    let (outcomes, seen, stats) = first;
    let lost = outcomes
        .iter()
        .filter(|o| **o == Err(RpcError::DeadlineExceeded))
        .count();
    assert!(lost > 0 && stats.dropped > 0, "drops: {stats:?}");
    for (tag, outcome) in outcomes.iter().enumerate() {
        assert!(
            *outcome == Ok(tag as u32) || *outcome == Err(RpcError::DeadlineExceeded),
            "call {tag}: {outcome:?}"
        );
    }
    assert!(
        stats.duplicated > 0 && seen.len() > outcomes.len() - lost,
        "duplicates: {stats:?}"
    );
    let mut sorted = seen.clone();
    sorted.sort_unstable();
    assert_ne!(
        seen, sorted,
        "reordering should let later calls overtake earlier ones"
    );
}

#[test]
fn a_perfect_network_delivers_in_order_once() {
    let (outcomes, seen, stats) = faulty_run(1, Faults::none());
    assert!(outcomes.iter().enumerate().all(|(i, o)| *o == Ok(i as u32)));
    assert_eq!(seen, (0..200).collect::<Vec<_>>());
    assert_eq!((stats.dropped, stats.duplicated), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn delayed_streams_keep_their_order() {
    let faults = Faults {
        delay_min: Duration::from_millis(1),
        delay_max: Duration::from_millis(10),
        reorder_probability: 0.5,
        reorder_delay_max: Duration::from_millis(50),
        ..Faults::none()
    };
    let network = MemoryNetwork::with_faults(9, faults);
    let a = network.node("a").unwrap();
    let b = network.node("b").unwrap();
    b.serve(grove_rpc::conformance::test_router(Arc::default()));
    use futures::StreamExt;
    let items: Vec<u64> = a
        .stream::<grove_rpc::conformance::Count>(&id("b"), &500, Duration::from_secs(60))
        .map(Result::unwrap)
        .collect()
        .await;
    assert_eq!(items, (0..500).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn cut_links_fail_fast_and_heal() {
    let network = MemoryNetwork::new(3);
    let a = network.node("a").unwrap();
    let b = network.node("b").unwrap();
    b.serve(tag_router(Arc::default()));
    a.serve(tag_router(Arc::default()));
    network.cut(&id("a"), &id("b"));
    let cut = a.call::<Tag>(&id("b"), &1, Duration::from_secs(1)).await;
    assert!(matches!(cut, Err(RpcError::Unreachable { .. })), "{cut:?}");
    // One-way: b's call still reaches a, but a's reply travels the cut direction and is lost.
    let reply_lost = b
        .call::<Tag>(&id("a"), &2, Duration::from_millis(200))
        .await;
    assert_eq!(reply_lost, Err(RpcError::DeadlineExceeded));
    network.heal(&id("a"), &id("b"));
    assert_eq!(
        a.call::<Tag>(&id("b"), &3, Duration::from_secs(1)).await,
        Ok(3)
    );
    network.isolate(&id("b"));
    let isolated = a.call::<Tag>(&id("b"), &4, Duration::from_secs(1)).await;
    assert!(
        matches!(isolated, Err(RpcError::Unreachable { .. })),
        "{isolated:?}"
    );
    network.heal_all();
    assert_eq!(
        a.call::<Tag>(&id("b"), &5, Duration::from_secs(1)).await,
        Ok(5)
    );
}

#[tokio::test(start_paused = true)]
async fn a_crash_stops_handlers_and_the_node_restarts() {
    let network = MemoryNetwork::new(5);
    let a = network.node("a").unwrap();
    let b = network.node("b").unwrap();
    let probe = Arc::new(grove_rpc::conformance::Probe::default());
    b.serve(grove_rpc::conformance::test_router(Arc::clone(&probe)));
    let caller = a.clone();
    let call = tokio::spawn(async move {
        caller
            .call::<grove_rpc::conformance::Sleep>(&id("b"), &10_000, Duration::from_secs(2))
            .await
    });
    probe
        .wait_for("handler to start", Duration::from_secs(1), |p| {
            p.started.load(std::sync::atomic::Ordering::SeqCst) == 1
        })
        .await;
    network.crash(&id("b"));
    assert_eq!(call.await.unwrap(), Err(RpcError::DeadlineExceeded));
    probe
        .wait_for("crashed handler dropped", Duration::from_secs(1), |p| {
            p.dropped.load(std::sync::atomic::Ordering::SeqCst) == 1
        })
        .await;
    let down = a
        .call::<Echo>(&id("b"), &vec![], Duration::from_secs(1))
        .await;
    assert!(
        matches!(down, Err(RpcError::Unreachable { .. })),
        "{down:?}"
    );
    assert!(
        network.node("a").is_err(),
        "a running node cannot be started twice"
    );
    drop(b);
    let b = network.node("b").unwrap();
    b.serve(grove_rpc::conformance::test_router(probe));
    assert_eq!(
        a.call::<Echo>(&id("b"), &vec![1], Duration::from_secs(1))
            .await,
        Ok(vec![1])
    );
}

/// A faulty network drops and duplicates the frames of a stream whose handler is always ready
/// (`Count` of `u64::MAX` items). The replies that go nowhere (a duplicate's, or those after a lost
/// frame) must park the handler rather than let it spin: on a current-thread runtime a spinning
/// handler would never yield, so neither the call's deadline nor anything else could fire.
#[test]
fn an_always_ready_stream_on_a_faulty_network_ends_by_its_deadline() {
    let (done_tx, done) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let calls = async {
            let faults = Faults {
                drop_probability: 0.3,
                duplicate_probability: 0.5,
                ..Faults::none()
            };
            let mut stats = NetworkStats::default();
            for seed in 0..4 {
                let network = MemoryNetwork::with_faults(seed, faults.clone());
                let a = network.node("a").unwrap();
                let b = network.node("b").unwrap();
                b.serve(grove_rpc::conformance::test_router(Arc::default()));
                let budget = Duration::from_millis(200);
                let started = tokio::time::Instant::now();
                let mut items =
                    a.stream::<grove_rpc::conformance::Count>(&id("b"), &u64::MAX, budget);
                use futures::StreamExt;
                let mut ended_with_error = false;
                while let Some(item) = items.next().await {
                    if item.is_err() {
                        ended_with_error = true;
                        break;
                    }
                }
                assert!(ended_with_error, "u64::MAX items cannot all arrive");
                let elapsed = started.elapsed();
                assert!(
                    elapsed < budget + Duration::from_millis(500),
                    "the call outlived its deadline: {elapsed:?}"
                );
                let run = network.stats();
                stats.dropped += run.dropped;
                stats.duplicated += run.duplicated;
            }
            stats
        };
        let result =
            runtime.block_on(async { tokio::time::timeout(Duration::from_secs(10), calls).await });
        let _ = done_tx.send(result);
    });
    let stats = done
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime hung")
        .expect("the calls did not end within 10 s");
    assert!(stats.dropped > 0 && stats.duplicated > 0, "{stats:?}");
}

/// Cancellation reaches every copy of a request: one still in the network when the caller gives
/// up never starts a handler, and a duplicate's handler is dropped with the original's.
#[tokio::test(start_paused = true)]
async fn a_dropped_call_cancels_delayed_requests_and_duplicates() {
    use grove_rpc::conformance::{Probe, Sleep, test_router};
    use std::sync::atomic::Ordering::SeqCst;
    let delayed = MemoryNetwork::with_faults(
        11,
        Faults {
            delay_min: Duration::from_millis(100),
            delay_max: Duration::from_millis(100),
            ..Faults::none()
        },
    );
    let a = delayed.node("a").unwrap();
    let b = delayed.node("b").unwrap();
    let probe = Arc::new(Probe::default());
    b.serve(test_router(Arc::clone(&probe)));
    let call = a.call::<Sleep>(&id("b"), &10, Duration::from_secs(5));
    assert!(
        tokio::time::timeout(Duration::from_millis(20), call)
            .await
            .is_err()
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(probe.calls.load(SeqCst), 0, "{probe:?}");

    let duplicating = MemoryNetwork::with_faults(
        12,
        Faults {
            duplicate_probability: 1.0,
            ..Faults::none()
        },
    );
    let a = duplicating.node("a").unwrap();
    let b = duplicating.node("b").unwrap();
    let probe = Arc::new(Probe::default());
    b.serve(test_router(Arc::clone(&probe)));
    let call = a.call::<Sleep>(&id("b"), &60_000, Duration::from_secs(120));
    let call = tokio::spawn(call);
    probe
        .wait_for("both copies to start", Duration::from_secs(1), |p| {
            p.started.load(SeqCst) == 2
        })
        .await;
    call.abort();
    probe
        .wait_for("both handlers dropped", Duration::from_secs(1), |p| {
            p.dropped.load(SeqCst) == 2
        })
        .await;
}
