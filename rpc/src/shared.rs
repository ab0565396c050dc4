//! State and logic both transports share: the installed router, draining, in-flight counts,
//! counters, and the two halves of a call (serving a request frame, reading reply frames).
//! Sharing them is what makes the two implementations behave alike.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use tokio::sync::Notify;

use crate::budget::NodeBudget;
use crate::codec::{self, Frame};
use crate::envelope::{ErrorHeader, Header, RequestHeader};
use crate::error::RpcError;
use crate::router::{RequestContext, Router};
use crate::transport::{CONTROL_FRAME_BYTES_MAX, Deadline, Lane, Limits, NodeId, TransportStats};

/// A count of things in flight that can be waited on to reach zero.
#[derive(Default)]
pub(crate) struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

impl InFlight {
    pub(crate) fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(self))
    }

    pub(crate) fn get(&self) -> usize {
        self.count.load(Ordering::SeqCst)
    }

    /// Waits until nothing is in flight or `until` passes; returns whether it reached zero.
    pub(crate) async fn wait_idle(&self, until: tokio::time::Instant) -> bool {
        loop {
            let idle = self.idle.notified();
            if self.get() == 0 {
                return true;
            }
            if tokio::time::timeout_at(until, idle).await.is_err() {
                return self.get() == 0;
            }
        }
    }
}

pub(crate) struct InFlightGuard(Arc<InFlight>);

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Per-node state common to both transports.
pub(crate) struct NodeCore {
    pub(crate) node: NodeId,
    pub(crate) cluster_id: String,
    pub(crate) limits: Limits,
    router: Mutex<Arc<Router>>,
    draining: AtomicBool,
    pub(crate) inbound: Arc<InFlight>,
    pub(crate) outbound: Arc<InFlight>,
    /// Bytes of received frames this node may hold (see [`crate::budget`]).
    pub(crate) budget: Arc<NodeBudget>,
    calls_inbound_total: AtomicU64,
    calls_outbound_total: AtomicU64,
    refusals: Mutex<(u64, Option<String>)>,
}

impl NodeCore {
    pub(crate) fn new(node: NodeId, cluster_id: String, limits: Limits) -> Self {
        NodeCore {
            node,
            cluster_id,
            limits,
            router: Mutex::new(Arc::new(Router::new())),
            draining: AtomicBool::new(false),
            inbound: Arc::default(),
            outbound: Arc::default(),
            budget: NodeBudget::new(&limits),
            calls_inbound_total: AtomicU64::new(0),
            calls_outbound_total: AtomicU64::new(0),
            refusals: Mutex::new((0, None)),
        }
    }

    pub(crate) fn install(&self, router: Router) {
        *self.router.lock().expect("router lock") = Arc::new(router);
    }

    fn router(&self) -> Arc<Router> {
        Arc::clone(&self.router.lock().expect("router lock"))
    }

    pub(crate) fn begin_drain(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Registers an outbound call, or refuses it when this node is shutting down.
    pub(crate) fn start_outbound(&self) -> Result<InFlightGuard, RpcError> {
        if self.is_draining() {
            return Err(RpcError::Shutdown {
                node: self.node.clone(),
            });
        }
        self.calls_outbound_total.fetch_add(1, Ordering::Relaxed);
        Ok(self.outbound.enter())
    }

    /// Waits (until `grace` passes) for in-flight calls in both directions to finish, then
    /// drops the handlers: they often hold the transport itself (a Raft member's routes reach
    /// its network, which calls through it), and keeping them would keep the transport, its
    /// endpoint and its socket alive after shutdown.
    pub(crate) async fn drain(&self, grace: Duration) {
        let until = tokio::time::Instant::now() + grace;
        self.inbound.wait_idle(until).await;
        self.outbound.wait_idle(until).await;
        self.install(Router::new());
    }

    /// Records a refused peer (logged, and visible in the stats).
    pub(crate) fn record_refusal(&self, reason: &str) {
        tracing::warn!(node = %self.node, %reason, "peer refused");
        let mut refusals = self.refusals.lock().expect("refusal lock");
        refusals.0 += 1;
        refusals.1 = Some(reason.to_owned());
    }

    /// The counters of `TransportStats` this core keeps (connections are the transport's).
    pub(crate) fn stats(&self) -> TransportStats {
        let refusals = self.refusals.lock().expect("refusal lock").clone();
        let (buffered, buffered_max) = self.budget.gauge.get();
        TransportStats {
            frame_bytes_buffered: buffered,
            frame_bytes_buffered_max: buffered_max,
            calls_outbound_total: self.calls_outbound_total.load(Ordering::Relaxed),
            calls_inbound_total: self.calls_inbound_total.load(Ordering::Relaxed),
            calls_outbound_in_flight: self.outbound.get(),
            calls_inbound_in_flight: self.inbound.get(),
            refused_total: refusals.0,
            refusal_last: refusals.1,
            ..TransportStats::default()
        }
    }

    /// Serves one call: `frame` is the request frame as read (or why it could not be read); the
    /// response frames go to `sink`. Never fails: errors are sent to the caller as error frames.
    pub(crate) async fn serve_request<S: ResponseSink>(
        &self,
        peer: NodeId,
        frame: Result<Frame, RpcError>,
        sink: &mut S,
    ) {
        let _in_flight = self.inbound.enter();
        self.calls_inbound_total.fetch_add(1, Ordering::Relaxed);
        let outcome = match frame {
            Ok(frame) => self.run(peer, frame, sink).await,
            Err(error) => Outcome::Failed(error),
        };
        if let Outcome::Failed(error) = outcome {
            let header = Header::Error(ErrorHeader::from_error(&error));
            if let Ok(frame) = codec::encode_frame(&header, &[], self.limits.frame_bytes_max) {
                let _ = sink.send(frame).await;
            }
        }
        sink.finish().await;
    }

    async fn run<S: ResponseSink>(&self, peer: NodeId, frame: Frame, sink: &mut S) -> Outcome {
        let Header::Request(request) = frame.header else {
            return Outcome::Failed(RpcError::malformed(format!(
                "expected a request frame, got a {} frame",
                frame.header.kind_name()
            )));
        };
        if self.is_draining() {
            return Outcome::Failed(RpcError::Shutdown {
                node: self.node.clone(),
            });
        }
        let deadline = Deadline::after(Duration::from_micros(request.budget_us));
        if request.budget_us == 0 {
            return Outcome::Failed(RpcError::DeadlineExceeded);
        }
        let router = self.router();
        let context = RequestContext { peer, deadline };
        let method = request.method.as_str();
        // A control-lane call's frames, request and reply, are small by contract.
        let max = frame_bytes_max(&self.limits, lane(request.control));
        let gone = sink.gone();
        if !request.streaming {
            let Some(handler) = router.unary_handler(method) else {
                return Outcome::Failed(unknown_method(&router, method, false));
            };
            let reply = handler(context, frame.payload, max);
            let reply = tokio::select! {
                biased;
                () = gone => return Outcome::Gone,
                reply = tokio::time::timeout_at(deadline.instant(), reply) => reply,
            };
            return match reply {
                Err(_) => Outcome::Failed(RpcError::DeadlineExceeded),
                Ok(Err(error)) => Outcome::Failed(error),
                Ok(Ok(frame)) => match sink.send(frame).await {
                    Ok(()) => Outcome::Done,
                    Err(_) => Outcome::Gone,
                },
            };
        }
        let Some(handler) = router.stream_handler(method) else {
            return Outcome::Failed(unknown_method(&router, method, true));
        };
        let mut items = match handler(context, frame.payload, max) {
            Ok(items) => items,
            Err(error) => return Outcome::Failed(error),
        };
        let pump = async {
            loop {
                match items.next().await {
                    None => {
                        let end =
                            codec::encode_frame(&Header::End, &[], max).expect("end frame fits");
                        return match sink.send(end).await {
                            Ok(()) => Outcome::Done,
                            Err(_) => Outcome::Gone,
                        };
                    }
                    Some(Err(error)) => return Outcome::Failed(error),
                    Some(Ok(frame)) => {
                        if sink.send(frame).await.is_err() {
                            return Outcome::Gone;
                        }
                    }
                }
            }
        };
        tokio::select! {
            biased;
            () = gone => Outcome::Gone,
            outcome = tokio::time::timeout_at(deadline.instant(), pump) => {
                outcome.unwrap_or(Outcome::Failed(RpcError::DeadlineExceeded))
            }
        }
    }
}

enum Outcome {
    Done,
    /// The caller went away: nothing more to send.
    Gone,
    Failed(RpcError),
}

fn unknown_method(router: &Router, method: &str, streaming: bool) -> RpcError {
    let method = if router.serves_other_kind(method, streaming) {
        let kind = if streaming {
            "unary"
        } else {
            "server-streaming"
        };
        format!("{method} (served as a {kind} method)")
    } else {
        method.to_owned()
    };
    RpcError::UnknownMethod { method }
}

/// Where a served call's response frames go.
pub(crate) trait ResponseSink: Send {
    /// Sends one encoded frame; fails when the caller is gone.
    fn send(&mut self, frame: Bytes) -> impl Future<Output = Result<(), RpcError>> + Send;
    /// Resolves once the caller has gone away (cancelled, or its connection died).
    fn gone(&self) -> BoxFuture<'static, ()>;
    /// Ends the response and waits (bounded) until the caller has it, so a shutdown that
    /// follows does not cut it off.
    fn finish(&mut self) -> impl Future<Output = ()> + Send;
}

/// The lane a request header names.
pub(crate) fn lane(control: bool) -> Lane {
    if control {
        Lane::Control
    } else {
        Lane::Ordinary
    }
}

/// The largest frame of a call in `lane`.
pub(crate) fn frame_bytes_max(limits: &Limits, lane: Lane) -> usize {
    match lane {
        Lane::Ordinary => limits.frame_bytes_max,
        Lane::Control => limits.frame_bytes_max.min(CONTROL_FRAME_BYTES_MAX),
    }
}

/// The request frame for a call in `lane`.
pub(crate) fn request_frame(
    method: &str,
    payload: &[u8],
    deadline: Deadline,
    streaming: bool,
    lane: Lane,
    limits: &Limits,
) -> Result<Bytes, RpcError> {
    let budget_us = u64::try_from(deadline.remaining().as_micros()).unwrap_or(u64::MAX);
    if budget_us == 0 {
        return Err(RpcError::DeadlineExceeded);
    }
    let header = Header::Request(RequestHeader {
        method: method.to_owned(),
        budget_us,
        streaming,
        control: lane == Lane::Control,
    });
    codec::encode_frame(&header, payload, frame_bytes_max(limits, lane))
}

/// The result a unary call's reply frame carries.
pub(crate) fn unary_reply(frame: Frame, peer: &NodeId) -> Result<Bytes, RpcError> {
    match frame.header {
        Header::Response => Ok(frame.payload),
        Header::Error(error) => Err(error.into_error(peer)),
        other => Err(RpcError::malformed(format!(
            "expected a response frame, got a {} frame",
            other.kind_name()
        ))),
    }
}

/// One step of a server stream: `Some(item)`, or `None` at its end.
pub(crate) fn stream_reply(frame: Frame, peer: &NodeId) -> Result<Option<Bytes>, RpcError> {
    match frame.header {
        Header::Item => Ok(Some(frame.payload)),
        Header::End => Ok(None),
        Header::Error(error) => Err(error.into_error(peer)),
        other => Err(RpcError::malformed(format!(
            "expected a stream item, got a {} frame",
            other.kind_name()
        ))),
    }
}
