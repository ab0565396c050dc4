//! The behaviour every [`Transport`] must show, as a suite generic over a [`Harness`] that
//! starts nodes. `rpc/tests/` runs it against the QUIC and the in-memory transport with
//! [`conformance_tests!`](crate::conformance_tests); a new implementation (a turmoil-backed
//! one, say) gets the same tests with one macro call.
//!
//! Each check (one `pub async fn` per behaviour) takes a fresh harness, starts the nodes it
//! needs (`a`, `b`, …), installs [`test_router`] and asserts on results, errors and the
//! server-side [`Probe`].

mod checks;

pub use checks::*;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::time::Instant;

use crate::codec::{Decode, Encode};
use crate::error::RpcError;
use crate::router::Router;
use crate::transport::{Lane, Limits, Method, NodeId, StreamMethod, Transport};

/// Starts nodes of one test cluster.
pub trait Harness: Send {
    /// Starts node `name` of the cluster, or starts it again after it was shut down (same
    /// name, same address if it has one), and makes every node able to reach every other.
    fn start<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Arc<dyn Transport>>;
    /// Starts node `name` (as [`Harness::start`]) with `limits` instead of the defaults.
    fn start_limited<'a>(
        &'a mut self,
        name: &'a str,
        limits: Limits,
    ) -> BoxFuture<'a, Arc<dyn Transport>>;
    /// Starts node `name` configured with another cluster id.
    fn start_foreign<'a>(&'a mut self, name: &'a str) -> BoxFuture<'a, Arc<dyn Transport>>;
    /// A node id that callers know of but nothing answers to.
    fn unreachable(&mut self) -> BoxFuture<'_, NodeId>;
    /// Longest a call to the unreachable node may take to fail.
    fn fail_fast_bound(&self) -> Duration;
    /// Longest a restarted node may take to be callable again.
    fn reconnect_bound(&self) -> Duration;
}

/// Echoes its request.
pub struct Echo;
impl Method for Echo {
    const NAME: &'static str = "conformance.echo";
    type Request = Vec<u8>;
    type Response = Vec<u8>;
}

/// Echoes its request, in the control lane.
pub struct ControlEcho;
impl Method for ControlEcho {
    const NAME: &'static str = "conformance.control_echo";
    const LANE: Lane = Lane::Control;
    type Request = Vec<u8>;
    type Response = Vec<u8>;
}

/// Answers with this many bytes.
pub struct Inflate;
impl Method for Inflate {
    const NAME: &'static str = "conformance.inflate";
    type Request = u64;
    type Response = Vec<u8>;
}

/// Sleeps this many milliseconds, then answers.
pub struct Sleep;
impl Method for Sleep {
    const NAME: &'static str = "conformance.sleep";
    type Request = u64;
    type Response = ();
}

/// Always fails with `Remote { code: 42, .. }`.
pub struct Fail;
impl Method for Fail {
    const NAME: &'static str = "conformance.fail";
    type Request = ();
    type Response = ();
}

/// Streams `count` chunks of `chunk_bytes` bytes, chunk `i` filled with `i as u8`.
pub struct Chunks;
#[derive(Clone, Copy, Debug, Encode, Decode)]
pub struct ChunksRequest {
    pub count: u64,
    pub chunk_bytes: u32,
}
impl StreamMethod for Chunks {
    const NAME: &'static str = "conformance.chunks";
    type Request = ChunksRequest;
    type Item = Vec<u8>;
}

/// Streams `0, 1, 2, …` up to the request (exclusive).
pub struct Count;
impl StreamMethod for Count {
    const NAME: &'static str = "conformance.count";
    type Request = u64;
    type Item = u64;
}

/// What the serving side saw: handler invocations of any method (`calls`); `Sleep`, `Chunks`
/// and `Count` handlers started, finished, dropped unfinished; items produced.
#[derive(Default, Debug)]
pub struct Probe {
    pub calls: AtomicU64,
    pub started: AtomicU64,
    pub finished: AtomicU64,
    pub dropped: AtomicU64,
    pub produced: AtomicU64,
}

impl Probe {
    fn count_call(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
    }

    fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::SeqCst)
    }

    /// Waits until `condition` holds, polling; panics with `what` after `limit`.
    pub async fn wait_for(&self, what: &str, limit: Duration, condition: impl Fn(&Probe) -> bool) {
        let until = Instant::now() + limit;
        while !condition(self) {
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}: {self:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// Counts a handler as started, and as dropped if it does not finish.
struct HandlerGuard {
    probe: Arc<Probe>,
    finished: bool,
}

impl HandlerGuard {
    fn new(probe: &Arc<Probe>) -> Self {
        probe.started.fetch_add(1, Ordering::SeqCst);
        HandlerGuard {
            probe: Arc::clone(probe),
            finished: false,
        }
    }

    fn finish(mut self) {
        self.finished = true;
        self.probe.finished.fetch_add(1, Ordering::SeqCst);
    }
}

impl Drop for HandlerGuard {
    fn drop(&mut self) {
        if !self.finished {
            self.probe.dropped.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// The handlers the suite calls, reporting to `probe`.
pub fn test_router(probe: Arc<Probe>) -> Router {
    let sleep_probe = Arc::clone(&probe);
    let chunk_probe = Arc::clone(&probe);
    let count_probe = Arc::clone(&probe);
    let echo_probe = Arc::clone(&probe);
    let control_probe = Arc::clone(&probe);
    let inflate_probe = Arc::clone(&probe);
    let fail_probe = Arc::clone(&probe);
    Router::new()
        .unary::<Echo, _, _>(move |_, request| {
            echo_probe.count_call();
            async move { Ok(request) }
        })
        .unary::<ControlEcho, _, _>(move |_, request| {
            control_probe.count_call();
            async move { Ok(request) }
        })
        .unary::<Inflate, _, _>(move |_, bytes| {
            inflate_probe.count_call();
            async move { Ok(vec![7u8; bytes as usize]) }
        })
        .unary::<Fail, _, _>(move |_, ()| {
            fail_probe.count_call();
            async { Err(RpcError::remote(42, "nope")) }
        })
        .unary::<Sleep, _, _>(move |_, millis| {
            sleep_probe.count_call();
            let guard = HandlerGuard::new(&sleep_probe);
            async move {
                tokio::time::sleep(Duration::from_millis(millis)).await;
                guard.finish();
                Ok(())
            }
        })
        .streaming::<Chunks, _, _>(move |_, request| {
            chunk_probe.count_call();
            let mut guard = Some(HandlerGuard::new(&chunk_probe));
            let probe = Arc::clone(&chunk_probe);
            futures::stream::iter(0..=request.count).filter_map(move |index| {
                let item = if index == request.count {
                    if let Some(guard) = guard.take() {
                        guard.finish();
                    }
                    None
                } else {
                    probe.produced.fetch_add(1, Ordering::SeqCst);
                    Some(Ok(vec![index as u8; request.chunk_bytes as usize]))
                };
                futures::future::ready(item)
            })
        })
        .streaming::<Count, _, _>(move |_, count| {
            count_probe.count_call();
            let mut guard = Some(HandlerGuard::new(&count_probe));
            let probe = Arc::clone(&count_probe);
            futures::stream::iter(0..=count).filter_map(move |index| {
                probe.produced.fetch_add(1, Ordering::SeqCst);
                let item = if index == count {
                    if let Some(guard) = guard.take() {
                        guard.finish();
                    }
                    None
                } else {
                    Some(Ok(index))
                };
                futures::future::ready(item)
            })
        })
}

/// Starts `names`, each serving [`test_router`] with one shared probe.
pub async fn start_nodes<H: Harness>(
    harness: &mut H,
    names: &[&str],
) -> (Vec<Arc<dyn Transport>>, Arc<Probe>) {
    let probe = Arc::new(Probe::default());
    let mut nodes = Vec::new();
    for name in names {
        let node = harness.start(name).await;
        node.serve(test_router(Arc::clone(&probe)));
        nodes.push(node);
    }
    (nodes, probe)
}

/// Runs every check of the suite as a `#[tokio::test]`; `$harness` builds a fresh harness.
#[macro_export]
macro_rules! conformance_tests {
    ($harness:expr) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unary_round_trip() {
            $crate::conformance::unary_round_trip($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn concurrent_calls() {
            $crate::conformance::concurrent_calls($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn server_stream_in_order() {
            $crate::conformance::server_stream_in_order($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn large_stream_64_mib() {
            $crate::conformance::large_stream($harness, 64 << 20).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn stream_backpressure() {
            $crate::conformance::stream_backpressure($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn errors_are_typed() {
            $crate::conformance::errors_are_typed($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn oversized_frames() {
            $crate::conformance::oversized_frames($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn deadline_exceeded() {
            $crate::conformance::deadline_exceeded($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn cancellation() {
            $crate::conformance::cancellation($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn unreachable_fails_fast() {
            $crate::conformance::unreachable_fails_fast($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn foreign_cluster_refused() {
            $crate::conformance::foreign_cluster_refused($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn buffered_frames_are_bounded() {
            $crate::conformance::buffered_frames_are_bounded($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn control_lane_passes_a_full_ordinary_lane() {
            $crate::conformance::control_lane_passes_a_full_ordinary_lane($harness).await;
        }
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn shutdown_drains_and_restart_reconnects() {
            $crate::conformance::shutdown_drains_and_restart_reconnects($harness).await;
        }
    };
}
