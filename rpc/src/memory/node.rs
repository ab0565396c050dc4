//! One in-memory node: its accept loop, the reply path with faults, and the `Transport` impl.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use tokio::sync::{Semaphore, mpsc, watch};

use super::calls::{StreamState, stream_step};
use super::{Fate, MemoryNodeConfig, Network};
use crate::budget::{self, ConnectionBudget};
use crate::codec::{self, Frame, LENGTH_PREFIX_BYTES};
use crate::envelope::Header;
use crate::error::RpcError;
use crate::router::Router;
use crate::shared::{self, NodeCore, ResponseSink};
use crate::transport::{Deadline, Lane, Limits, NodeId, Transport, TransportStats};

/// Requests a node may have queued before callers wait.
const INBOX_CAPACITY: usize = 1024;
/// Reply frames a call may have unread before the handler waits (the flow-control window).
pub(super) const REPLY_WINDOW_FRAMES: usize = 8;

/// A request as the network delivers it.
pub(crate) struct Incoming {
    pub(super) from: NodeId,
    /// Holds its reservation of the receiver's buffer budget.
    pub(super) frame: Bytes,
    pub(super) reply: Reply,
    /// The caller's buffer budget for frames from this node: replies reserve there.
    pub(super) reply_budget: Arc<ConnectionBudget>,
}

pub(super) enum Reply {
    To(mpsc::Sender<Bytes>),
    /// A duplicate delivery: its replies go nowhere. It holds the original caller's channel only
    /// to see that caller go away (it never sends on it), so dropping the call cancels the
    /// duplicate's handler too.
    Discard(mpsc::Sender<Bytes>),
}

impl Reply {
    /// The caller's reply channel (a duplicate's too: it is used for `closed` only).
    fn caller(&self) -> &mpsc::Sender<Bytes> {
        match self {
            Reply::To(caller) | Reply::Discard(caller) => caller,
        }
    }
}

/// A node on a [`super::MemoryNetwork`]. Cheap to clone; dropping the last clone without
/// [`Transport::shutdown`] stops the node like a crash.
#[derive(Clone)]
pub struct MemoryTransport {
    handle: Arc<Handle>,
}

struct Handle {
    node: Arc<MemoryNode>,
}

pub(crate) struct MemoryNode {
    pub(super) core: NodeCore,
    pub(super) network: Arc<Network>,
    pub(super) incarnation: u64,
    pub(super) kill: watch::Sender<bool>,
    /// Call slots per peer and lane (`Limits::concurrent_calls_max`, `CONTROL_CALLS_MAX`).
    pub(super) slots: Mutex<BTreeMap<(NodeId, Lane), Arc<Semaphore>>>,
    /// Buffer budgets for frames from each peer.
    pub(super) budgets: Mutex<BTreeMap<NodeId, Arc<ConnectionBudget>>>,
    pub(super) peers_seen: Mutex<BTreeSet<NodeId>>,
    pub(super) shutdown_grace: Duration,
    pub(super) shutdown_started: AtomicBool,
}

impl Drop for Handle {
    fn drop(&mut self) {
        self.node
            .network
            .mark_down(&self.node.core.node, self.node.incarnation);
        self.node.kill();
    }
}

impl MemoryTransport {
    pub(super) fn start(
        network: Arc<Network>,
        node_id: NodeId,
        cluster_id: String,
        incarnation: u64,
        config: MemoryNodeConfig,
    ) -> (MemoryTransport, mpsc::Sender<Incoming>) {
        let (inbox, requests) = mpsc::channel(INBOX_CAPACITY);
        let node = Arc::new(MemoryNode {
            core: NodeCore::new(node_id, cluster_id, config.limits),
            network,
            incarnation,
            kill: watch::channel(false).0,
            slots: Mutex::default(),
            budgets: Mutex::default(),
            peers_seen: Mutex::default(),
            shutdown_grace: config.shutdown_grace,
            shutdown_started: AtomicBool::new(false),
        });
        crate::pause::spawn(accept_loop(Arc::clone(&node), requests));
        (
            MemoryTransport {
                handle: Arc::new(Handle { node }),
            },
            inbox,
        )
    }

    pub(super) fn downgrade(&self) -> Weak<MemoryNode> {
        Arc::downgrade(&self.handle.node)
    }

    /// This run's incarnation (a restart gets a new one).
    pub fn incarnation(&self) -> u64 {
        self.node().incarnation
    }

    fn node(&self) -> &Arc<MemoryNode> {
        &self.handle.node
    }
}

impl MemoryNode {
    pub(super) fn kill(&self) {
        self.kill.send_replace(true);
    }

    pub(super) fn record_refusal(&self, reason: &str) {
        self.core.record_refusal(reason);
    }

    /// This node's buffer budget for frames from `peer` (its "connection" to it).
    pub(super) fn budget_for(&self, peer: &NodeId) -> Arc<ConnectionBudget> {
        let mut budgets = self.budgets.lock().expect("budgets lock");
        Arc::clone(
            budgets
                .entry(peer.clone())
                .or_insert_with(|| self.core.budget.connection()),
        )
    }

    pub(super) fn saw(&self, peer: &NodeId) {
        self.peers_seen
            .lock()
            .expect("peers lock")
            .insert(peer.clone());
    }

    async fn serve(self: Arc<Self>, incoming: Incoming) {
        self.saw(&incoming.from);
        if incoming.reply.caller().is_closed() {
            // The caller stopped waiting while the request was in the network (delayed, or a
            // late duplicate): no handler runs for it.
            return;
        }
        // The payload keeps the frame's reservation until the handler has decoded it.
        let frame = decode_whole(incoming.frame, self.core.limits.frame_bytes_max);
        // The same deadline `serve_request` derives from the request's budget.
        let (deadline, lane) = match &frame {
            Ok(Frame {
                header: Header::Request(request),
                ..
            }) => (
                Some(Deadline::after(Duration::from_micros(request.budget_us)).instant()),
                shared::lane(request.control),
            ),
            _ => (None, Lane::Ordinary),
        };
        let mut sink = MemorySink {
            network: Arc::clone(&self.network),
            node: self.core.node.clone(),
            caller: incoming.from.clone(),
            reply: incoming.reply,
            reply_budget: incoming.reply_budget,
            lane,
            delays: self.network.delays(),
            pipeline: None,
            last_delivery: tokio::time::Instant::now(),
            broken: false,
            deadline,
        };
        tokio::select! {
            biased;
            () = killed(self.kill.subscribe()) => {}
            () = self.core.serve_request(incoming.from, frame, &mut sink) => {}
        }
    }

    async fn shutdown(self: Arc<Self>) {
        if self.shutdown_started.swap(true, Ordering::SeqCst) {
            return;
        }
        self.core.begin_drain();
        self.core.drain(self.shutdown_grace).await;
        self.network.mark_down(&self.core.node, self.incarnation);
        self.kill();
    }
}

/// Decodes one whole frame; its payload is a slice of `frame` (so a reservation `frame` holds
/// lasts until the payload is dropped).
pub(super) fn decode_whole(frame: Bytes, frame_bytes_max: usize) -> Result<Frame, RpcError> {
    let Some(prefix) = frame.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Err(RpcError::malformed("truncated frame"));
    };
    let length = codec::body_length(*prefix, frame_bytes_max)?;
    match frame.len().cmp(&(LENGTH_PREFIX_BYTES + length)) {
        std::cmp::Ordering::Less => Err(RpcError::malformed("truncated frame")),
        std::cmp::Ordering::Greater => Err(RpcError::malformed("bytes after the frame")),
        std::cmp::Ordering::Equal => codec::decode_body(frame.slice(LENGTH_PREFIX_BYTES..)),
    }
}

/// Resolves once `kill` is set (or its node is gone).
async fn killed(mut kill: watch::Receiver<bool>) {
    while !*kill.borrow_and_update() {
        if kill.changed().await.is_err() {
            return;
        }
    }
}

async fn accept_loop(node: Arc<MemoryNode>, mut requests: mpsc::Receiver<Incoming>) {
    let kill = node.kill.subscribe();
    let mut stop = std::pin::pin!(killed(kill));
    loop {
        let incoming = tokio::select! {
            biased;
            () = &mut stop => return,
            incoming = requests.recv() => match incoming {
                Some(incoming) => incoming,
                None => return,
            },
        };
        crate::pause::spawn(Arc::clone(&node).serve(incoming));
    }
}

/// The reply path of one served call, through the network's faults.
struct MemorySink {
    network: Arc<Network>,
    node: NodeId,
    caller: NodeId,
    reply: Reply,
    /// The caller's budget for our frames, and the call's lane.
    reply_budget: Arc<ConnectionBudget>,
    lane: Lane,
    delays: bool,
    /// When the network delays messages: a forwarder that delivers frames at their times, in
    /// order, without holding the handler up for each delay.
    pipeline: Option<mpsc::Sender<(tokio::time::Instant, Bytes)>>,
    last_delivery: tokio::time::Instant,
    /// A frame of this call was lost: the rest are lost too.
    broken: bool,
    /// When the served call's deadline passes (`None` for a frame that is not a request).
    deadline: Option<tokio::time::Instant>,
}

impl MemorySink {
    /// A frame that goes nowhere (a duplicate's reply, or one after a lost frame): the handler
    /// waits as it would behind a stalled flow-control window, until the caller goes away or the
    /// call's deadline passes, rather than returning at once, which would let an always-ready
    /// stream spin without yielding. Without a deadline (not a request) it returns at once.
    async fn stall(&self) -> RpcError {
        let Some(deadline) = self.deadline else {
            return RpcError::DeadlineExceeded;
        };
        let gone = self.gone();
        tokio::select! {
            biased;
            () = gone => RpcError::Cancelled {
                reason: format!("{} went away", self.caller),
            },
            () = tokio::time::sleep_until(deadline) => RpcError::DeadlineExceeded,
        }
    }
}

impl ResponseSink for MemorySink {
    async fn send(&mut self, frame: Bytes) -> Result<(), RpcError> {
        let Reply::To(caller) = &self.reply else {
            return Err(self.stall().await);
        };
        let gone = || RpcError::Cancelled {
            reason: format!("{} went away", self.caller),
        };
        if caller.is_closed() {
            return Err(gone());
        }
        if self.broken {
            return Err(self.stall().await);
        }
        let delay = match self.network.route_reply(&self.node, &self.caller) {
            Fate::Lost => {
                self.broken = true;
                return Err(self.stall().await);
            }
            Fate::Deliver(delay) => delay,
        };
        if !self.delays {
            let frame = reserve(&self.reply_budget, self.lane, frame)
                .await
                .map_err(|_| gone())?;
            return caller.send(frame).await.map_err(|_| gone());
        }
        let at = (tokio::time::Instant::now() + delay).max(self.last_delivery);
        self.last_delivery = at;
        let (budget, lane) = (&self.reply_budget, self.lane);
        let pipeline = self
            .pipeline
            .get_or_insert_with(|| spawn_forwarder(caller.clone(), Arc::clone(budget), lane));
        pipeline.send((at, frame)).await.map_err(|_| gone())
    }

    fn gone(&self) -> BoxFuture<'static, ()> {
        let caller = self.reply.caller().clone();
        async move { caller.closed().await }.boxed()
    }

    async fn finish(&mut self) {
        self.pipeline = None;
    }
}

fn spawn_forwarder(
    caller: mpsc::Sender<Bytes>,
    budget: Arc<ConnectionBudget>,
    lane: Lane,
) -> mpsc::Sender<(tokio::time::Instant, Bytes)> {
    let (frames_in, mut frames) =
        mpsc::channel::<(tokio::time::Instant, Bytes)>(REPLY_WINDOW_FRAMES);
    tokio::spawn(async move {
        while let Some((at, frame)) = frames.recv().await {
            tokio::time::sleep_until(at).await;
            let Ok(frame) = reserve(&budget, lane, frame).await else {
                return;
            };
            if caller.send(frame).await.is_err() {
                return;
            }
        }
    });
    frames_in
}

/// `frame` holding its reservation of the receiver's budget `budget` (waiting for it).
pub(super) async fn reserve(
    budget: &ConnectionBudget,
    lane: Lane,
    frame: Bytes,
) -> Result<Bytes, RpcError> {
    let body_bytes = frame.len().saturating_sub(LENGTH_PREFIX_BYTES);
    let reserved = budget.reserve(lane, body_bytes).await?;
    Ok(budget::hold(frame, reserved))
}

impl Transport for MemoryTransport {
    fn node_id(&self) -> &NodeId {
        &self.node().core.node
    }

    fn limits(&self) -> Limits {
        self.node().core.limits
    }

    fn call_bytes(
        &self,
        peer: &NodeId,
        method: &str,
        request: Bytes,
        deadline: Deadline,
        lane: Lane,
    ) -> BoxFuture<'static, Result<Bytes, RpcError>> {
        let node = Arc::clone(self.node());
        let frame =
            shared::request_frame(method, &request, deadline, false, lane, &node.core.limits);
        let peer = peer.clone();
        async move { node.unary(peer, frame?, deadline, lane).await }.boxed()
    }

    fn stream_bytes(
        &self,
        peer: &NodeId,
        method: &str,
        request: Bytes,
        deadline: Deadline,
    ) -> BoxStream<'static, Result<Bytes, RpcError>> {
        let node = Arc::clone(self.node());
        let frame = shared::request_frame(
            method,
            &request,
            deadline,
            true,
            Lane::Ordinary,
            &node.core.limits,
        );
        let state = StreamState::Start {
            node,
            peer: peer.clone(),
            frame,
            deadline,
        };
        futures::stream::unfold(state, stream_step).boxed()
    }

    fn serve(&self, router: Router) {
        self.node().core.install(router);
    }

    fn shutdown(&self) -> BoxFuture<'static, ()> {
        Arc::clone(self.node()).shutdown().boxed()
    }

    fn stats(&self) -> TransportStats {
        let node = self.node();
        let mut stats = node.core.stats();
        let peers = node.peers_seen.lock().expect("peers lock").len();
        stats.connections_open = peers;
        stats.connections_max = peers;
        stats.connections_established_total = peers as u64;
        stats
    }
}
