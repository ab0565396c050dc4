//! The in-memory transport: a [`MemoryNetwork`] of nodes in one process, for tests and the
//! deterministic simulator.
//!
//! Calls travel as the same encoded frames as over QUIC, through the same server and client
//! halves (the `shared` module), so limits, deadlines, cancellation and errors match. The network
//! adds faults, every one drawn from one seeded PRNG under one lock:
//! - **drop**: a message is lost. A call whose request or reply is lost waits for its deadline
//!   ([`RpcError::DeadlineExceeded`]), as it would on a network that stopped delivering; once a
//!   stream loses an item, the rest of that stream is lost too (streams never have gaps), and
//!   the handler parks at its next send until the caller goes away or the deadline passes, as
//!   behind a stalled QUIC flow-control window (it never spins, so a current-thread runtime
//!   cannot hang on an always-ready stream).
//! - **delay** and **reorder**: each message is delivered after a delay drawn from
//!   `[delay_min, delay_max]`, plus, with `reorder_probability`, up to `reorder_delay_max` more,
//!   so later calls overtake earlier ones. Items of one stream keep their order.
//! - **duplicate**: a request is delivered twice; the handler runs twice and the second reply
//!   is discarded (handlers must be idempotent, as with any retrying client). The duplicate's
//!   handler parks at its first send until the caller goes away or the deadline passes.
//!
//! Cancellation is two-sided for every copy: a request (original or duplicate) that reaches
//! its node after the caller dropped the call runs no handler, and dropping a call cancels the
//! handlers of both copies.
//! - **buffer budgets**: a request or reply frame is delivered only once the receiving node
//!   has reserved its bytes from its budget for the sender (the sender's delivery waits, as
//!   behind QUIC flow control), and the reservation lasts until the frame is decoded, as over
//!   QUIC (`crate::budget`). Each lane has its own call slots per peer.
//! - **cut links** (one-way or both ways) and **isolated** nodes: new calls over a cut link fail
//!   at once with [`RpcError::Unreachable`] (as QUIC does for a peer in backoff); messages
//!   already in flight are lost.
//! - **crash** ([`MemoryNetwork::crash`]): the node's handlers stop mid-call; its callers wait
//!   for their deadlines. A crashed or shut-down node can be started again under its name.
//!
//! Determinism: no `Instant::now` / `SystemTime`, only tokio time (paused or simulated time
//! drives every delay); ordered maps; `biased` selects. `MemoryNetwork::node` spawns the node's
//! accept loop on the current tokio runtime (a simulator host's runtime).

mod calls;
mod node;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::mpsc;

pub use node::MemoryTransport;
use node::{Incoming, MemoryNode};

use crate::budget::ConnectionBudget;
use crate::error::RpcError;
use crate::rng::SplitMix64;
use crate::transport::{Limits, NodeId};

/// Fault probabilities and delays, all drawn from the network's seed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Faults {
    /// Chance that any one message (request or reply frame) is lost.
    pub drop_probability: f64,
    /// Chance that a request is delivered twice.
    pub duplicate_probability: f64,
    pub delay_min: Duration,
    pub delay_max: Duration,
    /// Chance that a message gets an extra delay of up to `reorder_delay_max`.
    pub reorder_probability: f64,
    pub reorder_delay_max: Duration,
}

impl Faults {
    /// A perfect network.
    pub fn none() -> Self {
        Faults::default()
    }

    fn delays(&self) -> bool {
        !self.delay_max.is_zero()
            || (self.reorder_probability > 0.0 && !self.reorder_delay_max.is_zero())
    }
}

/// Counters of what the network did to messages.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NetworkStats {
    pub delivered: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub refused: u64,
}

/// Settings of one in-memory node.
#[derive(Clone, Debug)]
pub struct MemoryNodeConfig {
    /// Defaults to the network's cluster id; another one makes a foreign node.
    pub cluster_id: Option<String>,
    pub limits: Limits,
    pub shutdown_grace: Duration,
}

impl Default for MemoryNodeConfig {
    fn default() -> Self {
        MemoryNodeConfig {
            cluster_id: None,
            limits: Limits::default(),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// A simulated network of nodes. Cheap to clone (shared).
#[derive(Clone)]
pub struct MemoryNetwork {
    shared: Arc<Network>,
}

pub(crate) struct Network {
    cluster_id: String,
    state: Mutex<NetState>,
}

struct NetState {
    rng: SplitMix64,
    faults: Faults,
    nodes: BTreeMap<NodeId, Slot>,
    /// One-way cuts `(from, to)`.
    cuts: BTreeSet<(NodeId, NodeId)>,
    isolated: BTreeSet<NodeId>,
    stats: NetworkStats,
    incarnations: u64,
}

struct Slot {
    incarnation: u64,
    cluster_id: String,
    inbox: mpsc::Sender<Incoming>,
    node: Weak<MemoryNode>,
    up: bool,
}

/// What the network does with one message.
pub(crate) enum Fate {
    Lost,
    Deliver(Duration),
}

/// Where a request goes once the network has decided its fate.
pub(crate) struct Route {
    pub(crate) inbox: mpsc::Sender<Incoming>,
    pub(crate) incarnation: u64,
    /// The target's buffer budget for frames from the sender (none if the target is gone).
    pub(crate) budget: Option<Arc<ConnectionBudget>>,
    /// One entry per copy to deliver (empty: lost).
    pub(crate) delays: Vec<Duration>,
}

impl MemoryNetwork {
    /// A network with no faults whose nodes belong to cluster `"memory"`; `seed` drives every
    /// fault decision.
    pub fn new(seed: u64) -> Self {
        MemoryNetwork::with_faults(seed, Faults::none())
    }

    pub fn with_faults(seed: u64, faults: Faults) -> Self {
        MemoryNetwork {
            shared: Arc::new(Network {
                cluster_id: "memory".into(),
                state: Mutex::new(NetState {
                    rng: SplitMix64::new(seed),
                    faults,
                    nodes: BTreeMap::new(),
                    cuts: BTreeSet::new(),
                    isolated: BTreeSet::new(),
                    stats: NetworkStats::default(),
                    incarnations: 0,
                }),
            }),
        }
    }

    /// The cluster id nodes get by default.
    pub fn cluster_id(&self) -> &str {
        &self.shared.cluster_id
    }

    /// Starts node `name` (again, if it was shut down or crashed) with default settings.
    pub fn node(&self, name: &str) -> Result<MemoryTransport, RpcError> {
        self.node_with(name, MemoryNodeConfig::default())
    }

    /// Starts node `name` with `config`. Must be called inside a tokio runtime: the node's
    /// accept loop runs there.
    pub fn node_with(
        &self,
        name: &str,
        config: MemoryNodeConfig,
    ) -> Result<MemoryTransport, RpcError> {
        let node_id = NodeId::new(name)?;
        config.limits.check()?;
        let cluster_id = config
            .cluster_id
            .clone()
            .unwrap_or_else(|| self.shared.cluster_id.clone());
        let mut state = self.shared.lock();
        if state.nodes.get(&node_id).is_some_and(|slot| slot.up) {
            return Err(RpcError::config(format!(
                "node {node_id} is already running"
            )));
        }
        state.incarnations += 1;
        let incarnation = state.incarnations;
        let (transport, inbox) = MemoryTransport::start(
            Arc::clone(&self.shared),
            node_id.clone(),
            cluster_id.clone(),
            incarnation,
            config,
        );
        state.nodes.insert(
            node_id,
            Slot {
                incarnation,
                cluster_id,
                inbox,
                node: transport.downgrade(),
                up: true,
            },
        );
        Ok(transport)
    }

    /// Stops `node` at once, as a crash: its handlers stop mid-call and nothing more is sent.
    pub fn crash(&self, node: &NodeId) {
        let crashed = {
            let mut state = self.shared.lock();
            state.nodes.get_mut(node).and_then(|slot| {
                slot.up = false;
                slot.node.upgrade()
            })
        };
        if let Some(crashed) = crashed {
            crashed.kill();
        }
    }

    pub fn set_faults(&self, faults: Faults) {
        self.shared.lock().faults = faults;
    }

    /// Cuts the link from `from` to `to` (one way).
    pub fn cut(&self, from: &NodeId, to: &NodeId) {
        self.shared.lock().cuts.insert((from.clone(), to.clone()));
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut_both(&self, a: &NodeId, b: &NodeId) {
        self.cut(a, b);
        self.cut(b, a);
    }

    /// Cuts every link to and from `node`.
    pub fn isolate(&self, node: &NodeId) {
        self.shared.lock().isolated.insert(node.clone());
    }

    pub fn heal(&self, from: &NodeId, to: &NodeId) {
        self.shared.lock().cuts.remove(&(from.clone(), to.clone()));
    }

    /// Restores every link.
    pub fn heal_all(&self) {
        let mut state = self.shared.lock();
        state.cuts.clear();
        state.isolated.clear();
    }

    pub fn stats(&self) -> NetworkStats {
        self.shared.lock().stats.clone()
    }
}

impl Network {
    fn lock(&self) -> std::sync::MutexGuard<'_, NetState> {
        self.state.lock().expect("network lock")
    }

    /// Decides the fate of a request from `from` (of `cluster_id`) to `to`.
    pub(crate) fn route_request(
        &self,
        from: &NodeId,
        cluster_id: &str,
        to: &NodeId,
    ) -> Result<Route, RpcError> {
        let mut state = self.lock();
        let state = &mut *state;
        let Some(slot) = state.nodes.get(to).filter(|slot| slot.up) else {
            return Err(RpcError::Unreachable {
                peer: to.clone(),
                reason: "node is not running".into(),
            });
        };
        if state.is_cut(from, to) {
            return Err(RpcError::Unreachable {
                peer: to.clone(),
                reason: format!("link from {from} is cut"),
            });
        }
        let (inbox, incarnation) = (slot.inbox.clone(), slot.incarnation);
        let budget = slot.node.upgrade().map(|node| node.budget_for(from));
        if slot.cluster_id != cluster_id {
            let reason = format!(
                "node {from} belongs to cluster {cluster_id:?}, not to cluster {:?} of node {to}",
                slot.cluster_id
            );
            state.stats.refused += 1;
            if let Some(target) = slot.node.upgrade() {
                target.record_refusal(&reason);
            }
            return Err(RpcError::Refused { reason });
        }
        let mut delays = Vec::with_capacity(2);
        let copies = if state.rng.chance(state.faults.duplicate_probability) {
            state.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            if let Fate::Deliver(delay) = state.fate() {
                delays.push(delay);
            }
        }
        Ok(Route {
            inbox,
            incarnation,
            budget,
            delays,
        })
    }

    /// Decides the fate of a reply frame from `from` to `to`.
    pub(crate) fn route_reply(&self, from: &NodeId, to: &NodeId) -> Fate {
        let mut state = self.lock();
        let alive = state.nodes.get(from).is_some_and(|slot| slot.up);
        if !alive || state.is_cut(from, to) {
            state.stats.dropped += 1;
            return Fate::Lost;
        }
        state.fate()
    }

    /// Whether a message from `from` may still reach incarnation `incarnation` of `to` (checked
    /// when a delayed message arrives).
    pub(crate) fn still_open(&self, from: &NodeId, to: &NodeId, incarnation: u64) -> bool {
        let mut state = self.lock();
        let open = !state.is_cut(from, to)
            && state
                .nodes
                .get(to)
                .is_some_and(|slot| slot.up && slot.incarnation == incarnation);
        if !open {
            state.stats.dropped += 1;
        }
        open
    }

    /// Whether the network currently delays messages (then replies go through a forwarder).
    pub(crate) fn delays(&self) -> bool {
        self.lock().faults.delays()
    }

    /// Marks incarnation `incarnation` of `node` as stopped.
    pub(crate) fn mark_down(&self, node: &NodeId, incarnation: u64) {
        let mut state = self.lock();
        if let Some(slot) = state
            .nodes
            .get_mut(node)
            .filter(|slot| slot.incarnation == incarnation)
        {
            slot.up = false;
        }
    }
}

impl NetState {
    fn is_cut(&self, from: &NodeId, to: &NodeId) -> bool {
        self.isolated.contains(from)
            || self.isolated.contains(to)
            || self.cuts.contains(&(from.clone(), to.clone()))
    }

    fn fate(&mut self) -> Fate {
        if self.rng.chance(self.faults.drop_probability) {
            self.stats.dropped += 1;
            return Fate::Lost;
        }
        let faults = &self.faults;
        let mut delay_ns = self
            .rng
            .between(duration_ns(faults.delay_min), duration_ns(faults.delay_max));
        if self.rng.chance(faults.reorder_probability) {
            self.stats.reordered += 1;
            delay_ns += self.rng.between(0, duration_ns(faults.reorder_delay_max));
        }
        self.stats.delivered += 1;
        Fate::Deliver(Duration::from_nanos(delay_ns))
    }
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}
