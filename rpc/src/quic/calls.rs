//! The calling side: a unary call or a server stream over one stream of a connection.

use std::sync::Arc;

use bytes::Bytes;

use super::Inner;
use super::wire::{self, CallStream};
use crate::error::RpcError;
use crate::shared::{self, InFlightGuard};
use crate::transport::{Deadline, Lane, NodeId};

impl Inner {
    /// Opens a stream for one call, dialing if needed. A connection found dead before anything
    /// was sent on it is replaced once. The caller bounds this by the call's deadline.
    async fn open_call(
        self: &Arc<Self>,
        peer: &NodeId,
        lane: Lane,
    ) -> Result<CallStream, RpcError> {
        let mut attempts_left = 2;
        loop {
            attempts_left -= 1;
            let link = self.link(peer).await?;
            // The lane's own share of the peer's stream limit: a control call never waits
            // behind ordinary ones.
            let slot = link.slots.acquire(lane).await;
            match link.conn.open_bi().await {
                Ok(streams) => {
                    return Ok(CallStream::new(
                        streams,
                        peer.clone(),
                        lane,
                        Arc::clone(&link.budget),
                        link.in_flight.enter(),
                        slot,
                    ));
                }
                Err(error) => {
                    self.peers.forget(peer, &link);
                    if attempts_left == 0 {
                        return Err(wire::connection_error(peer, &error, false).error);
                    }
                }
            }
        }
    }

    pub(super) async fn unary(
        self: Arc<Self>,
        peer: NodeId,
        frame: Bytes,
        deadline: Deadline,
        lane: Lane,
    ) -> Result<Bytes, RpcError> {
        let _in_flight = self.core.start_outbound()?;
        let max = shared::frame_bytes_max(&self.core.limits, lane);
        let attempts = async {
            let mut attempts_left = 2;
            loop {
                attempts_left -= 1;
                let mut call = self.open_call(&peer, lane).await?;
                let exchange = async {
                    call.send_request(frame.clone()).await?;
                    call.read(max).await
                };
                match exchange.await {
                    Ok(reply) => {
                        call.complete();
                        return shared::unary_reply(reply, &peer);
                    }
                    // The peer restarted and never saw the request: send it again.
                    Err(failure) if failure.retry_safe && attempts_left > 0 => continue,
                    Err(failure) => return Err(failure.error),
                }
            }
        };
        // One timer for the whole call: dial, stream, request and reply.
        tokio::time::timeout_at(deadline.instant(), attempts)
            .await
            .unwrap_or(Err(RpcError::DeadlineExceeded))
    }
}

/// State of a server stream on the calling side.
pub(super) enum StreamState {
    Start {
        inner: Arc<Inner>,
        peer: NodeId,
        frame: Result<Bytes, RpcError>,
        deadline: Deadline,
    },
    Open {
        inner: Arc<Inner>,
        call: CallStream,
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
            inner,
            peer,
            frame,
            deadline,
        } => {
            let opened = async {
                let frame = frame?;
                let in_flight = inner.core.start_outbound()?;
                let open = async {
                    let mut call = inner.open_call(&peer, Lane::Ordinary).await?;
                    call.send_request(frame)
                        .await
                        .map_err(|failure| failure.error)?;
                    Ok::<_, RpcError>(call)
                };
                let call = tokio::time::timeout_at(deadline.instant(), open)
                    .await
                    .map_err(|_| RpcError::DeadlineExceeded)??;
                Ok::<_, RpcError>((call, in_flight))
            };
            match opened.await {
                Err(error) => Some((Err(error), StreamState::Done)),
                Ok((call, in_flight)) => {
                    let state = StreamState::Open {
                        inner,
                        call,
                        deadline,
                        _in_flight: in_flight,
                    };
                    Box::pin(stream_step(state)).await
                }
            }
        }
        StreamState::Open {
            inner,
            mut call,
            deadline,
            _in_flight,
        } => {
            let max = inner.core.limits.frame_bytes_max;
            let step = match tokio::time::timeout_at(deadline.instant(), call.read(max)).await {
                Err(_) => Err(RpcError::DeadlineExceeded),
                Ok(Err(failure)) => Err(failure.error),
                Ok(Ok(frame)) => shared::stream_reply(frame, &call.peer),
            };
            match step {
                Ok(Some(item)) => Some((
                    Ok(item),
                    StreamState::Open {
                        inner,
                        call,
                        deadline,
                        _in_flight,
                    },
                )),
                Ok(None) => {
                    call.complete();
                    None
                }
                Err(error) => Some((Err(error), StreamState::Done)),
            }
        }
    }
}
