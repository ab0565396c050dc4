//! The checks of the conformance suite, one function per behaviour.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;

use super::{
    Chunks, ChunksRequest, ControlEcho, Count, Echo, Fail, Harness, Inflate, Probe, Sleep,
    start_nodes, test_router,
};
use crate::error::RpcError;
use crate::transport::{
    CONTROL_FRAME_BYTES_MAX, Lane, Limits, Method, NodeId, StreamMethod, Transport, TransportExt,
};

const DEADLINE: Duration = Duration::from_secs(10);

fn id(name: &str) -> NodeId {
    NodeId::new(name).expect("valid test node id")
}

/// Unary calls in both directions; one connection per pair serves both.
pub async fn unary_round_trip<H: Harness>(mut harness: H) {
    let (nodes, _) = start_nodes(&mut harness, &["a", "b"]).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let reply = a.call::<Echo>(&id("b"), &b"hello".to_vec(), DEADLINE).await;
    assert_eq!(reply.unwrap(), b"hello".to_vec());
    let reply = b.call::<Echo>(&id("a"), &vec![1, 2, 3], DEADLINE).await;
    assert_eq!(reply.unwrap(), vec![1, 2, 3]);
    assert_eq!(
        a.call::<Echo>(&id("b"), &Vec::new(), DEADLINE)
            .await
            .unwrap(),
        Vec::<u8>::new()
    );
    assert_eq!(a.stats().connections_max, 1, "{:?}", a.stats());
    assert_eq!(b.stats().connections_max, 1, "{:?}", b.stats());
    assert!(a.stats().calls_outbound_total >= 2 && b.stats().calls_inbound_total >= 2);
}

/// Many concurrent calls from one node to another share one connection.
pub async fn concurrent_calls<H: Harness>(mut harness: H) {
    let (nodes, _) = start_nodes(&mut harness, &["a", "b"]).await;
    let a = &nodes[0];
    let calls = (0..2000u32).map(|i| {
        let a = Arc::clone(a);
        async move {
            a.call::<Echo>(&id("b"), &i.to_le_bytes().to_vec(), DEADLINE)
                .await
        }
    });
    let replies = futures::future::join_all(calls).await;
    for (i, reply) in replies.into_iter().enumerate() {
        assert_eq!(reply.unwrap(), (i as u32).to_le_bytes().to_vec());
    }
    assert_eq!(a.stats().connections_max, 1, "{:?}", a.stats());
}

/// A server stream arrives complete and in order; its handler finishes.
pub async fn server_stream_in_order<H: Harness>(mut harness: H) {
    let (nodes, probe) = start_nodes(&mut harness, &["a", "b"]).await;
    let items: Vec<u64> = nodes[0]
        .stream::<Count>(&id("b"), &5000, DEADLINE)
        .map(|item| item.unwrap())
        .collect()
        .await;
    assert_eq!(items, (0..5000).collect::<Vec<_>>());
    probe
        .wait_for("stream handler to finish", Duration::from_secs(5), |p| {
            Probe::get(&p.finished) == 1
        })
        .await;
    let empty: Vec<_> = nodes[0]
        .stream::<Count>(&id("b"), &0, DEADLINE)
        .collect()
        .await;
    assert!(empty.is_empty());
}

/// Streams `total_bytes` in 1 MiB chunks and checks every byte; returns the elapsed time.
pub async fn large_stream<H: Harness>(mut harness: H, total_bytes: u64) -> Duration {
    let (nodes, _) = start_nodes(&mut harness, &["a", "b"]).await;
    let chunk_bytes = 1u32 << 20;
    let request = ChunksRequest {
        count: total_bytes / u64::from(chunk_bytes),
        chunk_bytes,
    };
    let started = Instant::now();
    let mut stream = nodes[0].stream::<Chunks>(&id("b"), &request, Duration::from_secs(600));
    let mut index = 0u64;
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.unwrap();
        // A slice comparison (memcmp) keeps the check cheap in debug builds.
        let expected = vec![index as u8; chunk_bytes as usize];
        assert!(chunk == expected, "chunk {index} corrupted");
        index += 1;
    }
    assert_eq!(index, request.count);
    started.elapsed()
}

/// A slow reader holds the producer back: flow control, not buffering, absorbs the difference.
pub async fn stream_backpressure<H: Harness>(mut harness: H) {
    let (nodes, probe) = start_nodes(&mut harness, &["a", "b"]).await;
    let request = ChunksRequest {
        count: 10_000,
        chunk_bytes: 64 << 10,
    };
    let mut stream = nodes[0].stream::<Chunks>(&id("b"), &request, DEADLINE);
    for _ in 0..3 {
        stream.next().await.unwrap().unwrap();
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let produced = Probe::get(&probe.produced);
    // 10,000 chunks are 640 MiB; what the producer got ahead by must be windows, not the lot.
    assert!(
        produced < 1000,
        "producer ran {produced} chunks ahead of a reader at 3"
    );
    drop(stream);
    probe
        .wait_for(
            "abandoned stream to be dropped",
            Duration::from_secs(5),
            |p| Probe::get(&p.dropped) == 1,
        )
        .await;
}

/// Unknown methods, methods called as the wrong kind, and handler errors come back typed and
/// leave the connection usable.
pub async fn errors_are_typed<H: Harness>(mut harness: H) {
    let (nodes, _) = start_nodes(&mut harness, &["a", "b"]).await;
    let a = &nodes[0];
    let b = id("b");
    let unknown = a
        .call_bytes(
            &b,
            "no.such.method",
            bytes::Bytes::new(),
            DEADLINE.into(),
            Lane::Ordinary,
        )
        .await;
    assert!(
        matches!(&unknown, Err(RpcError::UnknownMethod { method }) if method == "no.such.method"),
        "{unknown:?}"
    );
    let wrong_kind = a
        .call_bytes(
            &b,
            Count::NAME,
            crate::codec::encode(&1u64).unwrap(),
            DEADLINE.into(),
            Lane::Ordinary,
        )
        .await;
    assert!(
        matches!(wrong_kind, Err(RpcError::UnknownMethod { .. })),
        "{wrong_kind:?}"
    );
    let failed = a.call::<Fail>(&b, &(), DEADLINE).await;
    assert_eq!(failed, Err(RpcError::remote(42, "nope")));
    let garbage = a
        .call_bytes(
            &b,
            Sleep::NAME,
            bytes::Bytes::from_static(&[0xff; 20]),
            DEADLINE.into(),
            Lane::Ordinary,
        )
        .await;
    assert!(
        matches!(garbage, Err(RpcError::Malformed { .. })),
        "{garbage:?}"
    );
    assert_eq!(
        a.call::<Echo>(&b, &vec![9], DEADLINE).await.unwrap(),
        vec![9]
    );
}

/// Frames over the limit fail their call, on the sending side for requests and on the serving
/// side for responses; the connection stays up.
pub async fn oversized_frames<H: Harness>(mut harness: H) {
    let (nodes, probe) = start_nodes(&mut harness, &["a", "b"]).await;
    let a = &nodes[0];
    let b = id("b");
    let max = a.limits().frame_bytes_max;
    let request = a.call::<Echo>(&b, &vec![0u8; max + 1], DEADLINE).await;
    assert!(
        matches!(request, Err(RpcError::FrameTooLarge { .. })),
        "{request:?}"
    );
    let response = a.call::<Inflate>(&b, &(max as u64 + 1), DEADLINE).await;
    assert!(
        matches!(response, Err(RpcError::FrameTooLarge { max: limit, .. }) if limit == max as u64),
        "{response:?}"
    );
    // The oversized request never reached a handler; the Inflate handler ran once.
    assert_eq!(Probe::get(&probe.calls), 1, "{probe:?}");
    assert_eq!(
        a.call::<Inflate>(&b, &1000, DEADLINE).await.unwrap().len(),
        1000
    );
}

/// A call fails at its deadline on the caller, and its handler is dropped on the server.
pub async fn deadline_exceeded<H: Harness>(mut harness: H) {
    let (nodes, probe) = start_nodes(&mut harness, &["a", "b"]).await;
    let a = &nodes[0];
    a.call::<Echo>(&id("b"), &vec![], DEADLINE).await.unwrap();
    let started = Instant::now();
    let result = a
        .call::<Sleep>(&id("b"), &60_000, Duration::from_millis(200))
        .await;
    let elapsed = started.elapsed();
    assert_eq!(result, Err(RpcError::DeadlineExceeded));
    assert!(
        elapsed >= Duration::from_millis(190) && elapsed < Duration::from_secs(2),
        "{elapsed:?}"
    );
    probe
        .wait_for(
            "handler dropped at the deadline",
            Duration::from_secs(2),
            |p| Probe::get(&p.dropped) == 1,
        )
        .await;
    let expired = a.call::<Sleep>(&id("b"), &0, Duration::ZERO).await;
    assert_eq!(expired, Err(RpcError::DeadlineExceeded));
    assert_eq!(
        Probe::get(&probe.started),
        1,
        "an expired call must not run"
    );
}

/// Dropping a call cancels it on the serving side, for unary calls and for streams.
pub async fn cancellation<H: Harness>(mut harness: H) {
    let (nodes, probe) = start_nodes(&mut harness, &["a", "b"]).await;
    let a = Arc::clone(&nodes[0]);
    let call = tokio::spawn(async move { a.call::<Sleep>(&id("b"), &60_000, DEADLINE).await });
    probe
        .wait_for("handler to start", Duration::from_secs(5), |p| {
            Probe::get(&p.started) == 1
        })
        .await;
    call.abort();
    probe
        .wait_for(
            "cancelled call's handler to be dropped",
            Duration::from_secs(2),
            |p| Probe::get(&p.dropped) == 1,
        )
        .await;

    let mut stream = nodes[0].stream::<Count>(&id("b"), &u64::MAX, DEADLINE);
    for expected in 0..10 {
        assert_eq!(stream.next().await.unwrap().unwrap(), expected);
    }
    drop(stream);
    probe
        .wait_for(
            "cancelled stream's handler to be dropped",
            Duration::from_secs(2),
            |p| Probe::get(&p.dropped) == 2,
        )
        .await;
    assert_eq!(
        nodes[0]
            .call::<Echo>(&id("b"), &vec![1], DEADLINE)
            .await
            .unwrap(),
        vec![1]
    );
}

/// Calls to a peer nothing answers for fail fast with `Unreachable`, and keep failing fast.
pub async fn unreachable_fails_fast<H: Harness>(mut harness: H) {
    let (nodes, _) = start_nodes(&mut harness, &["a"]).await;
    let ghost = harness.unreachable().await;
    let bound = harness.fail_fast_bound();
    for _ in 0..3 {
        let started = Instant::now();
        let result = nodes[0]
            .call::<Echo>(&ghost, &vec![], Duration::from_secs(60))
            .await;
        assert!(
            matches!(result, Err(RpcError::Unreachable { .. })),
            "{result:?}"
        );
        assert!(started.elapsed() < bound, "took {:?}", started.elapsed());
    }
    let stream: Vec<_> = nodes[0]
        .stream::<Count>(&ghost, &3, Duration::from_secs(60))
        .collect()
        .await;
    assert!(
        matches!(stream.as_slice(), [Err(RpcError::Unreachable { .. })]),
        "{stream:?}"
    );
    let unknown = nodes[0]
        .call::<Echo>(&id("never-heard-of"), &vec![], DEADLINE)
        .await;
    assert!(
        matches!(unknown, Err(RpcError::Unreachable { .. })),
        "{unknown:?}"
    );
}

/// A node of another cluster is refused both ways, and the refusing side records it.
pub async fn foreign_cluster_refused<H: Harness>(mut harness: H) {
    let (nodes, probe) = start_nodes(&mut harness, &["a"]).await;
    let foreign = harness.start_foreign("f").await;
    foreign.serve(test_router(Arc::clone(&probe)));
    let a = &nodes[0];
    let result = a.call::<Echo>(&id("f"), &vec![], DEADLINE).await;
    assert!(
        matches!(&result, Err(RpcError::Refused { reason }) if reason.contains("cluster")),
        "{result:?}"
    );
    assert!(foreign.stats().refused_total >= 1, "{:?}", foreign.stats());
    let result = foreign.call::<Echo>(&id("a"), &vec![], DEADLINE).await;
    assert!(
        matches!(&result, Err(RpcError::Refused { .. })),
        "{result:?}"
    );
    let stats = a.stats();
    assert!(stats.refused_total >= 1, "{stats:?}");
    assert!(stats.refusal_last.unwrap().contains("cluster"));
    assert_eq!(
        Probe::get(&probe.calls),
        0,
        "a refused peer's call ran a handler"
    );
}

/// Shutdown lets in-flight calls finish, refuses new ones, and the node comes back on restart.
pub async fn shutdown_drains_and_restart_reconnects<H: Harness>(mut harness: H) {
    let (nodes, probe) = start_nodes(&mut harness, &["a", "b"]).await;
    let [a, b]: [Arc<dyn Transport>; 2] = nodes.try_into().ok().expect("two nodes");
    a.call::<Echo>(&id("b"), &vec![], DEADLINE).await.unwrap();
    let caller = Arc::clone(&a);
    let in_flight =
        tokio::spawn(async move { caller.call::<Sleep>(&id("b"), &400, DEADLINE).await });
    probe
        .wait_for("slow call to start", Duration::from_secs(5), |p| {
            Probe::get(&p.started) == 1
        })
        .await;
    let shutdown = tokio::spawn(b.shutdown());
    tokio::time::sleep(Duration::from_millis(50)).await;
    let during = a.call::<Echo>(&id("b"), &vec![], DEADLINE).await;
    assert!(
        during.as_ref().is_err_and(RpcError::is_not_sent),
        "{during:?}"
    );
    assert_eq!(
        in_flight.await.unwrap(),
        Ok(()),
        "in-flight call must be drained, not cut"
    );
    shutdown.await.unwrap();
    assert_eq!(Probe::get(&probe.finished), 1);
    let own = b.call::<Echo>(&id("a"), &vec![], DEADLINE).await;
    assert!(matches!(own, Err(RpcError::Shutdown { .. })), "{own:?}");
    let after = a.call::<Echo>(&id("b"), &vec![], DEADLINE).await;
    assert!(
        after.as_ref().is_err_and(RpcError::is_not_sent),
        "{after:?}"
    );
    drop(b);

    let b = harness.start("b").await;
    b.serve(test_router(Arc::clone(&probe)));
    let until = Instant::now() + harness.reconnect_bound();
    loop {
        match a
            .call::<Echo>(&id("b"), &vec![5], Duration::from_secs(5))
            .await
        {
            Ok(reply) => {
                assert_eq!(reply, vec![5]);
                break;
            }
            Err(error) => {
                assert!(
                    error.is_not_sent() || matches!(error, RpcError::ConnectionLost { .. }),
                    "{error:?}"
                );
                assert!(
                    Instant::now() < until,
                    "restarted node still unreachable: {error}"
                );
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    assert_eq!(
        b.call::<Echo>(&id("a"), &vec![6], DEADLINE).await.unwrap(),
        vec![6]
    );
}

/// Starts `name` with `limits`, serving [`test_router`] with `probe`.
async fn start_limited<H: Harness>(
    harness: &mut H,
    name: &str,
    limits: Limits,
    probe: &Arc<Probe>,
) -> Arc<dyn Transport> {
    let node = harness.start_limited(name, limits).await;
    node.serve(test_router(Arc::clone(probe)));
    node
}

/// Received frames a node holds undecoded stay within its budgets: many concurrent large
/// requests from two peers, and their large replies, never make the serving node hold more
/// than its node budget, nor a caller more than its connection budget; every call completes.
pub async fn buffered_frames_are_bounded<H: Harness>(mut harness: H) {
    const FRAME: usize = 64 << 10;
    let limits = Limits {
        frame_bytes_max: FRAME,
        connection_buffer_bytes_max: 4 * FRAME,
        node_buffer_bytes_max: 6 * FRAME,
        ..Limits::default()
    };
    let probe = Arc::new(Probe::default());
    let a = start_limited(&mut harness, "a", limits, &probe).await;
    let b = start_limited(&mut harness, "b", limits, &probe).await;
    let c = start_limited(&mut harness, "c", limits, &probe).await;
    let payload = vec![5u8; FRAME - 1024];
    let calls = (0..24).map(|i| {
        let caller = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&c)
        };
        let payload = payload.clone();
        async move { caller.call::<Echo>(&id("b"), &payload, DEADLINE * 6).await }
    });
    for reply in futures::future::join_all(calls).await {
        assert_eq!(
            reply.expect("a bounded node still serves every call").len(),
            FRAME - 1024
        );
    }
    let served = b.stats();
    assert!(
        served.frame_bytes_buffered_max <= limits.node_buffer_bytes_max,
        "the serving node held {} bytes of frames (node budget {})",
        served.frame_bytes_buffered_max,
        limits.node_buffer_bytes_max
    );
    assert!(
        served.frame_bytes_buffered_max >= FRAME - 1024,
        "{served:?}"
    );
    for caller in [&a, &c] {
        let stats = caller.stats();
        assert!(
            stats.frame_bytes_buffered_max <= limits.connection_buffer_bytes_max,
            "a caller held {} bytes of replies from one peer (connection budget {})",
            stats.frame_bytes_buffered_max,
            limits.connection_buffer_bytes_max
        );
    }
    // Everything decoded is released.
    for node in [&a, &b, &c] {
        let stats = node.stats();
        assert_eq!(stats.frame_bytes_buffered, 0, "{stats:?}");
    }
}

/// Every ordinary call slot to a peer is taken (the next ordinary call waits out its
/// deadline), yet a control-lane call goes through at once; a control call's frame is small.
pub async fn control_lane_passes_a_full_ordinary_lane<H: Harness>(mut harness: H) {
    let limits = Limits {
        concurrent_calls_max: 4,
        ..Limits::default()
    };
    let probe = Arc::new(Probe::default());
    let a = start_limited(&mut harness, "a", limits, &probe).await;
    let _b = start_limited(&mut harness, "b", limits, &probe).await;
    let blockers: Vec<_> = (0..4)
        .map(|_| {
            let a = Arc::clone(&a);
            tokio::spawn(async move { a.call::<Sleep>(&id("b"), &60_000, DEADLINE * 6).await })
        })
        .collect();
    probe
        .wait_for("four sleeping handlers", Duration::from_secs(5), |p| {
            Probe::get(&p.started) == 4
        })
        .await;
    let ordinary = a
        .call::<Echo>(&id("b"), &vec![1], Duration::from_millis(300))
        .await;
    assert_eq!(
        ordinary,
        Err(RpcError::DeadlineExceeded),
        "the ordinary lane is full"
    );
    let control = a
        .call::<ControlEcho>(&id("b"), &vec![2], Duration::from_secs(5))
        .await;
    assert_eq!(control, Ok(vec![2]), "the control lane is not");
    let too_large = a
        .call::<ControlEcho>(&id("b"), &vec![0; CONTROL_FRAME_BYTES_MAX], DEADLINE)
        .await;
    assert!(
        matches!(too_large, Err(RpcError::FrameTooLarge { .. })),
        "{too_large:?}"
    );
    for blocker in blockers {
        blocker.abort();
    }
}
