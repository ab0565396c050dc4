//! The calling side of an in-memory node: call slots, sending a request through the network,
//! and reading its replies as a unary result or a stream.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

use super::node::{Incoming, MemoryNode, REPLY_WINDOW_FRAMES, Reply, decode_whole};
use crate::budget::{self, ConnectionBudget};
use crate::codec::{Frame, LENGTH_PREFIX_BYTES};
use crate::error::RpcError;
use crate::shared::{self, InFlightGuard};
use crate::transport::{CONTROL_CALLS_MAX, Deadline, Lane, NodeId};

impl MemoryNode {
    /// The call slots to `peer` in `lane`.
    pub(super) fn semaphore(&self, peer: &NodeId, lane: Lane) -> Arc<Semaphore> {
        let mut slots = self.slots.lock().expect("slots lock");
        let permits = match lane {
            Lane::Ordinary => self.core.limits.concurrent_calls_max as usize,
            Lane::Control => CONTROL_CALLS_MAX as usize,
        };
        Arc::clone(
            slots
                .entry((peer.clone(), lane))
                .or_insert_with(|| Arc::new(Semaphore::new(permits))),
        )
    }

    /// Sends a request frame to `peer` through the network; replies arrive on the channel.
    pub(super) async fn send_request(
        &self,
        peer: &NodeId,
        frame: Bytes,
        deadline: Deadline,
        lane: Lane,
    ) -> Result<CallChannel, RpcError> {
        let permit = tokio::time::timeout_at(
            deadline.instant(),
            self.semaphore(peer, lane).acquire_owned(),
        )
        .await
        .map_err(|_| RpcError::DeadlineExceeded)?
        .expect("call slots are never closed");
        let route = self
            .network
            .route_request(&self.core.node, &self.core.cluster_id, peer)?;
        self.saw(peer);
        let (replies_in, replies) = mpsc::channel(REPLY_WINDOW_FRAMES);
        if let Some(budget) = &route.budget {
            for (copy, delay) in route.delays.iter().enumerate() {
                let reply = if copy == 0 {
                    Reply::To(replies_in.clone())
                } else {
                    Reply::Discard(replies_in.clone())
                };
                let incoming = Incoming {
                    from: self.core.node.clone(),
                    frame: frame.clone(),
                    reply,
                    reply_budget: self.budget_for(peer),
                };
                let delivery = Delivery {
                    inbox: route.inbox.clone(),
                    incarnation: route.incarnation,
                    budget: Arc::clone(budget),
                    lane,
                    deadline,
                };
                self.deliver(peer, delivery, *delay, incoming);
            }
        }
        Ok(CallChannel {
            replies,
            // Held so the channel stays open while the network may still deliver.
            _replies_in: replies_in,
            _permit: permit,
        })
    }

    /// Delivers `incoming` to `peer` after `delay`, once the peer has reserved its bytes (a
    /// delivery that cannot reserve them before the call's deadline is lost).
    pub(super) fn deliver(
        &self,
        peer: &NodeId,
        delivery: Delivery,
        delay: Duration,
        mut incoming: Incoming,
    ) {
        let body_bytes = incoming.frame.len().saturating_sub(LENGTH_PREFIX_BYTES);
        if delay.is_zero()
            && let Some(reserved) = delivery.budget.try_reserve(delivery.lane, body_bytes)
        {
            incoming.frame = budget::hold(incoming.frame, reserved);
            match delivery.inbox.try_send(incoming) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(incoming)) => {
                    tokio::spawn(async move {
                        let _ = delivery.inbox.send(incoming).await;
                    });
                }
            }
            return;
        }
        let network = Arc::clone(&self.network);
        let (from, to) = (self.core.node.clone(), peer.clone());
        tokio::spawn(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
                if !network.still_open(&from, &to, delivery.incarnation) {
                    return;
                }
            }
            let frame = std::mem::take(&mut incoming.frame);
            let reserve = super::node::reserve(&delivery.budget, delivery.lane, frame);
            let Ok(Ok(frame)) = tokio::time::timeout_at(delivery.deadline.instant(), reserve).await
            else {
                return;
            };
            incoming.frame = frame;
            let _ = delivery.inbox.send(incoming).await;
        });
    }

    pub(super) fn decode_reply(&self, frame: Bytes) -> Result<Frame, RpcError> {
        decode_whole(frame, self.core.limits.frame_bytes_max)
    }

    pub(super) async fn unary(
        self: Arc<Self>,
        peer: NodeId,
        frame: Bytes,
        deadline: Deadline,
        lane: Lane,
    ) -> Result<Bytes, RpcError> {
        let _in_flight = self.core.start_outbound()?;
        let mut call = self.send_request(&peer, frame, deadline, lane).await?;
        let reply = tokio::time::timeout_at(deadline.instant(), call.replies.recv())
            .await
            .map_err(|_| RpcError::DeadlineExceeded)?
            .ok_or_else(|| RpcError::ConnectionLost {
                peer: peer.clone(),
                reason: "reply channel closed".into(),
            })?;
        shared::unary_reply(self.decode_reply(reply)?, &peer)
    }
}

/// Where and how a request frame is delivered.
pub(super) struct Delivery {
    inbox: mpsc::Sender<Incoming>,
    incarnation: u64,
    /// The target's budget for frames from the sender.
    budget: Arc<ConnectionBudget>,
    lane: Lane,
    deadline: Deadline,
}

/// The caller's end of one call.
pub(super) struct CallChannel {
    replies: mpsc::Receiver<Bytes>,
    _replies_in: mpsc::Sender<Bytes>,
    _permit: OwnedSemaphorePermit,
}

/// State of a server stream on the calling side.
pub(super) enum StreamState {
    Start {
        node: Arc<MemoryNode>,
        peer: NodeId,
        frame: Result<Bytes, RpcError>,
        deadline: Deadline,
    },
    Open {
        node: Arc<MemoryNode>,
        peer: NodeId,
        call: CallChannel,
        deadline: Deadline,
        _in_flight: InFlightGuard,
    },
    Done,
}

pub(super) async fn stream_step(
    state: StreamState,
) -> Option<(Result<Bytes, RpcError>, StreamState)> {
    match state {
        StreamState::Done => None,
        StreamState::Start {
            node,
            peer,
            frame,
            deadline,
        } => {
            let opened = async {
                let frame = frame?;
                let in_flight = node.core.start_outbound()?;
                let call = node
                    .send_request(&peer, frame, deadline, Lane::Ordinary)
                    .await?;
                Ok::<_, RpcError>((call, in_flight))
            };
            match opened.await {
                Err(error) => Some((Err(error), StreamState::Done)),
                Ok((call, in_flight)) => {
                    let state = StreamState::Open {
                        node,
                        peer,
                        call,
                        deadline,
                        _in_flight: in_flight,
                    };
                    Box::pin(stream_step(state)).await
                }
            }
        }
        StreamState::Open {
            node,
            peer,
            mut call,
            deadline,
            _in_flight,
        } => {
            let step = match tokio::time::timeout_at(deadline.instant(), call.replies.recv()).await
            {
                Err(_) => Err(RpcError::DeadlineExceeded),
                Ok(None) => Err(RpcError::ConnectionLost {
                    peer: peer.clone(),
                    reason: "reply channel closed".into(),
                }),
                Ok(Some(frame)) => node
                    .decode_reply(frame)
                    .and_then(|frame| shared::stream_reply(frame, &peer)),
            };
            match step {
                Ok(Some(item)) => Some((
                    Ok(item),
                    StreamState::Open {
                        node,
                        peer,
                        call,
                        deadline,
                        _in_flight,
                    },
                )),
                Ok(None) => None,
                Err(error) => Some((Err(error), StreamState::Done)),
            }
        }
    }
}
