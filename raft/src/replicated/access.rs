//! Who may call a member's methods: a certificate names a node, and the group's membership
//! says which nodes are masters (its voters and learners). Only they may send the Raft
//! protocol (`raft.append_entries`, `raft.vote`, `raft.install_snapshot`) and ask a member to
//! act as the leader (`raft.client_writes`, `raft.read_index`, `raft.admin`); anyone the
//! cluster's CA certified may follow the metadata (`raft.watch`). A refused call fails with
//! [`RpcError::Remote`] code [`NOT_A_MEMBER`].
//!
//! Whose membership: both this member's effective one (the latest in its log) and its applied
//! one (the latest committed that its state machine applied): a leader that proposed its own
//! removal leads on until that change commits, and the members that appended it must still
//! take its calls meanwhile. Two more cases would wrongly refuse a master:
//! - this member is not in its own membership (not bootstrapped yet, being added, or removed):
//!   it takes the protocol from any node, or it could never be bootstrapped or added;
//! - this member missed the changes that added a newer member, and that member now leads
//!   (or campaigns): refusing it would strand this member for good. So a protocol call from a
//!   node this member does not know is refused, and meanwhile the members it does know are
//!   asked (`raft.is_member`) whether they know the caller; if one does, the caller is
//!   admitted for [`VOUCHED_FOR`] (the leader's next call, a heartbeat later, gets through,
//!   and with it the membership entries that name it). A node no member knows (a data or
//!   query node) is never vouched for.
//!
//! Invariants: time only through tokio; members are asked in id order.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use grove_rpc::{Method, NodeId, RpcError, Transport, TransportExt};
use openraft::Raft;
use tokio::time::Instant;

use super::network::PeerHook;
use super::state_machine::MachineState;
use super::types::{GroveNode, RaftNodeId, TypeConfig};

/// The [`RpcError::Remote`] code of a call refused because its caller is not a member.
pub const NOT_A_MEMBER: u32 = 403;

/// How long a node another member vouched for is admitted without being asked about again.
pub const VOUCHED_FOR: Duration = Duration::from_secs(30);

/// How long asking one member whether it knows a node may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(1);

/// `raft.is_member`: whether the named node is in the callee's effective membership.
pub struct IsMember;
impl Method for IsMember {
    const NAME: &'static str = "raft.is_member";
    type Request = String;
    type Response = bool;
}

/// Which methods a call is to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Calls {
    /// The Raft protocol itself (append, vote, snapshot).
    Protocol,
    /// What members ask of the leader or of each other.
    Members,
}

/// A member's admission of callers (see the module docs).
pub struct Access {
    id: RaftNodeId,
    raft: Raft<TypeConfig>,
    /// The state machine's state: its applied membership.
    state: Arc<std::sync::RwLock<MachineState>>,
    transport: Arc<dyn Transport>,
    on_peer: Option<PeerHook>,
    /// Nodes a member vouched for, and when.
    vouched: Mutex<BTreeMap<String, Instant>>,
    /// Nodes being asked about now.
    asking: Mutex<BTreeSet<String>>,
}

impl Access {
    pub fn new(
        id: RaftNodeId,
        raft: Raft<TypeConfig>,
        state: Arc<std::sync::RwLock<MachineState>>,
        transport: Arc<dyn Transport>,
        on_peer: Option<PeerHook>,
    ) -> Arc<Self> {
        Arc::new(Access {
            id,
            raft,
            state,
            transport,
            on_peer,
            vouched: Mutex::default(),
            asking: Mutex::default(),
        })
    }

    /// The members this member knows (effective and applied membership), and whether it is
    /// one of them.
    fn members(&self) -> (BTreeMap<RaftNodeId, GroveNode>, bool) {
        let mut members: BTreeMap<_, _> = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            metrics
                .membership_config
                .membership()
                .nodes()
                .map(|(id, node)| (*id, node.clone()))
                .collect()
        };
        {
            let state = self.state.read().unwrap_or_else(|p| p.into_inner());
            for (id, node) in state.membership.membership().nodes() {
                members.entry(*id).or_insert_with(|| node.clone());
            }
        }
        let me = members.contains_key(&self.id);
        (members, me)
    }

    /// Whether `name` is in this member's effective or applied membership.
    pub fn is_member(&self, name: &str) -> bool {
        self.members().0.values().any(|node| node.name == name)
    }

    /// Admits `peer`'s call to `method`, or refuses it (see the module docs).
    pub fn admit(
        self: &Arc<Self>,
        peer: &NodeId,
        method: &str,
        calls: Calls,
    ) -> Result<(), RpcError> {
        let (members, me) = self.members();
        if members.values().any(|node| node.name == peer.as_str()) {
            return Ok(());
        }
        if calls == Calls::Protocol {
            if !me {
                return Ok(());
            }
            if self.was_vouched_for(peer.as_str()) {
                return Ok(());
            }
            self.ask_about(peer.as_str(), members);
        }
        Err(RpcError::Remote {
            code: NOT_A_MEMBER,
            message: format!(
                "node {peer} is not a member of the metadata group as member {} knows it; only \
                 members (masters) may call {method}",
                self.id
            ),
        })
    }

    fn was_vouched_for(&self, name: &str) -> bool {
        let mut vouched = self.vouched.lock().unwrap_or_else(|p| p.into_inner());
        match vouched.get(name) {
            Some(at) if at.elapsed() < VOUCHED_FOR => true,
            Some(_) => {
                vouched.remove(name);
                false
            }
            None => false,
        }
    }

    /// Asks `members` (but this one), in id order, whether they know `name`, in the
    /// background; remembers it as vouched for if one does.
    fn ask_about(self: &Arc<Self>, name: &str, members: BTreeMap<RaftNodeId, GroveNode>) {
        if !self
            .asking
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned())
        {
            return;
        }
        let access = Arc::clone(self);
        let name = name.to_owned();
        grove_rpc::pause::spawn(async move {
            for (id, node) in members {
                if id == access.id {
                    continue;
                }
                let Ok(peer) = NodeId::new(&node.name) else {
                    continue;
                };
                if let Some(hook) = &access.on_peer {
                    hook(&peer, &node);
                }
                let deadline = Instant::now() + ASK_TIMEOUT;
                let known = access
                    .transport
                    .call::<IsMember>(&peer, &name, deadline)
                    .await;
                if matches!(known, Ok(true)) {
                    access
                        .vouched
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .insert(name.clone(), Instant::now());
                    break;
                }
            }
            access
                .asking
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&name);
        });
    }
}
