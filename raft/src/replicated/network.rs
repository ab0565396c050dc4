//! Raft over `grove-rpc`: the typed methods a metadata-group member serves, and
//! [`GroveNetwork`], openraft's `RaftNetworkFactory` over any [`Transport`] (QUIC in
//! production, the in-memory network in tests and the simulator). No HTTP.
//!
//! Methods (bincode frames through `grove_rpc::codec`; openraft's serde types are wrapped in
//! bincode's `Compat`):
//! - `raft.append_entries`, `raft.vote`, `raft.install_snapshot` (snapshot chunks of
//!   `Config::snapshot_max_chunk_size`, kept under the transport's `frame_bytes_max`): the
//!   Raft protocol itself; votes and appends without entries (heartbeats) travel in the
//!   transport's control lane;
//! - `raft.client_writes`, `raft.read_index`, `raft.admin`: what a member asks the leader
//!   (writes to apply, gathered while its earlier forwards were in flight; the log index a
//!   linearizable read must wait for; a membership change). A member that is not the
//!   leader answers [`LeaderReply::NotLeader`] with the leader it knows; requests are never
//!   forwarded twice.
//!
//! Errors: a peer that cannot be reached becomes openraft's `Unreachable` (it backs off); a
//! frame over the limit becomes `PayloadTooLarge` with half the entries as the hint (openraft
//! retries with fewer); anything else, including an error raised on the peer, becomes a
//! `NetworkError` whose message names the peer and the method.
//!
//! Invariants: every call carries a deadline (openraft's hard TTL for the call); the factory
//! holds no per-peer state beyond the peer's name, so clients are cheap to rebuild.

use std::sync::Arc;

use grove_rpc::codec::bincode::serde::Compat;
use grove_rpc::{Lane, Method, NodeId, RpcError, Transport, TransportExt};
use openraft::error::{
    InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, SnapshotMismatch,
    Unreachable,
};
use openraft::network::RPCOption;
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, RaftNetwork, RaftNetworkFactory};
use serde::{Deserialize, Serialize};

use super::types::{ClientRequest, GroveNode, RaftNodeId, TypeConfig, Verdict};

/// What a member answers when it is asked to act as the leader.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LeaderReply<T> {
    Done(T),
    /// This member is not the leader; `leader` is the one it knows of.
    NotLeader {
        leader: Option<RaftNodeId>,
    },
    /// The leader could not do it now (its Raft stopped, no quorum answered, another
    /// membership change is in progress): worth retrying, here or on the next leader.
    Failed(String),
    /// The request itself was refused (a membership change that cannot be made): final.
    Refused(String),
}

/// A membership change, asked of the leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminRequest {
    /// Adds `id` as a learner and waits until it has caught up with the log.
    AddLearner { id: RaftNodeId, node: GroveNode },
    /// Makes learner `id` a voter.
    PromoteVoter { id: RaftNodeId },
    /// Removes voter `id` from the group (it does not stay a learner).
    RemoveVoter { id: RaftNodeId },
}

/// Why a snapshot chunk was refused.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum InstallSnapshotFailure {
    /// The chunk does not continue the snapshot being received: openraft restarts it.
    Mismatch(SnapshotMismatch),
    Other(String),
}

pub struct AppendEntries;
impl Method for AppendEntries {
    const NAME: &'static str = "raft.append_entries";
    type Request = Compat<AppendEntriesRequest<TypeConfig>>;
    type Response = Compat<Result<AppendEntriesResponse<RaftNodeId>, String>>;
}

/// An append without entries (openraft's heartbeat): the same method as [`AppendEntries`], in
/// the transport's control lane, so a peer's full ordinary lane never delays it.
pub struct Heartbeat;
impl Method for Heartbeat {
    const NAME: &'static str = AppendEntries::NAME;
    const LANE: Lane = Lane::Control;
    type Request = <AppendEntries as Method>::Request;
    type Response = <AppendEntries as Method>::Response;
}

/// In the control lane, as heartbeats are.
pub struct Vote;
impl Method for Vote {
    const NAME: &'static str = "raft.vote";
    const LANE: Lane = Lane::Control;
    type Request = Compat<VoteRequest<RaftNodeId>>;
    type Response = Compat<Result<VoteResponse<RaftNodeId>, String>>;
}

pub struct InstallSnapshot;
impl Method for InstallSnapshot {
    const NAME: &'static str = "raft.install_snapshot";
    type Request = Compat<InstallSnapshotRequest<TypeConfig>>;
    type Response = Compat<Result<InstallSnapshotResponse<RaftNodeId>, InstallSnapshotFailure>>;
}

/// Writes a member forwards to the leader, gathered while its earlier forwards were in
/// flight (`super::batcher`); one reply per request, in order. The leader measures each
/// request itself (its entries are bounded by those sizes; nothing the caller claims is
/// trusted).
pub struct ClientWrites;
impl Method for ClientWrites {
    const NAME: &'static str = "raft.client_writes";
    type Request = Compat<Vec<ClientRequest>>;
    type Response = Compat<Vec<LeaderReply<Verdict>>>;
}

/// Asks the leader for the log index up to which a replica must have applied before a read
/// there is linearizable (the leader confirms its leadership with a quorum first).
pub struct ReadIndex;
impl Method for ReadIndex {
    const NAME: &'static str = "raft.read_index";
    type Request = ();
    type Response = Compat<LeaderReply<u64>>;
}

pub struct Admin;
impl Method for Admin {
    const NAME: &'static str = "raft.admin";
    type Request = Compat<AdminRequest>;
    type Response = Compat<LeaderReply<()>>;
}

/// Called with each member the factory builds a client for, before the first call: how a
/// QUIC transport learns a member's address (`QuicTransport::add_peer`).
pub type PeerHook = Arc<dyn Fn(&NodeId, &GroveNode) + Send + Sync>;

/// openraft's network factory over a [`Transport`].
#[derive(Clone)]
pub struct GroveNetwork {
    transport: Arc<dyn Transport>,
    on_peer: Option<PeerHook>,
}

impl GroveNetwork {
    pub fn new(transport: Arc<dyn Transport>, on_peer: Option<PeerHook>) -> Self {
        GroveNetwork { transport, on_peer }
    }
}

impl RaftNetworkFactory<TypeConfig> for GroveNetwork {
    type Network = PeerClient;

    async fn new_client(&mut self, target: RaftNodeId, node: &GroveNode) -> PeerClient {
        let peer = NodeId::new(&node.name);
        if let (Ok(peer), Some(hook)) = (&peer, &self.on_peer) {
            hook(peer, node);
        }
        PeerClient {
            transport: Arc::clone(&self.transport),
            target,
            peer,
        }
    }
}

/// Calls to one member.
pub struct PeerClient {
    transport: Arc<dyn Transport>,
    target: RaftNodeId,
    /// The member's rpc name, or why its recorded name is not one.
    peer: Result<NodeId, RpcError>,
}

type RaftRpcError<E = openraft::error::Infallible> =
    RPCError<RaftNodeId, GroveNode, RaftError<RaftNodeId, E>>;

impl PeerClient {
    async fn call<M: Method, E: std::error::Error>(
        &self,
        request: M::Request,
        option: &RPCOption,
        entries: usize,
    ) -> Result<M::Response, RaftRpcError<E>> {
        let peer = self.peer.as_ref().map_err(|e| {
            RPCError::Unreachable(Unreachable::new(&std::io::Error::other(format!(
                "member {} has no valid rpc name: {e}",
                self.target
            ))))
        })?;
        if grove_rpc::buggify!() {
            // Simulation only: a sender that stalls (scheduling, a full socket buffer) before
            // its message leaves.
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        self.transport
            .call::<M>(peer, &request, option.hard_ttl())
            .await
            .map_err(|e| self.transport_error(M::NAME, e, entries))
    }

    fn transport_error<E: std::error::Error>(
        &self,
        method: &str,
        error: RpcError,
        entries: usize,
    ) -> RaftRpcError<E> {
        match error {
            RpcError::FrameTooLarge { .. } if entries > 1 => {
                RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2) as u64))
            }
            e if e.is_not_sent() => RPCError::Unreachable(Unreachable::new(&e)),
            e => self.failure(method, e.to_string()),
        }
    }

    fn failure<E: std::error::Error>(&self, method: &str, message: String) -> RaftRpcError<E> {
        let message = format!("{method} to member {}: {message}", self.target);
        RPCError::Network(NetworkError::from(AnyError::error(message)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<RaftNodeId>, RaftRpcError> {
        let entries = rpc.entries.len();
        let reply = if entries == 0 {
            self.call::<Heartbeat, _>(Compat(rpc), &option, 0).await?
        } else {
            self.call::<AppendEntries, _>(Compat(rpc), &option, entries)
                .await?
        };
        reply.0.map_err(|e| self.failure(AppendEntries::NAME, e))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<RaftNodeId>, RaftRpcError<InstallSnapshotError>> {
        let reply = self
            .call::<InstallSnapshot, _>(Compat(rpc), &option, 0)
            .await?;
        reply.0.map_err(|failure| match failure {
            InstallSnapshotFailure::Mismatch(mismatch) => {
                RPCError::RemoteError(openraft::error::RemoteError::new(
                    self.target,
                    RaftError::APIError(InstallSnapshotError::SnapshotMismatch(mismatch)),
                ))
            }
            InstallSnapshotFailure::Other(message) => self.failure(InstallSnapshot::NAME, message),
        })
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<RaftNodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<RaftNodeId>, RaftRpcError> {
        let reply = self.call::<Vote, _>(Compat(rpc), &option, 0).await?;
        reply.0.map_err(|e| self.failure(Vote::NAME, e))
    }
}
