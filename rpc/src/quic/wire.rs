//! Frames over quinn streams, and quinn's errors as [`RpcError`]s.

use bytes::{Bytes, BytesMut};
use futures::FutureExt;
use futures::future::BoxFuture;
use quinn::{
    ConnectionError, ReadError, ReadExactError, RecvStream, SendStream, VarInt, WriteError,
};

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;

use crate::budget::{self, ConnectionBudget};
use crate::codec::{self, Frame, LENGTH_PREFIX_BYTES};
use crate::envelope;
use crate::error::RpcError;
use crate::shared::{InFlightGuard, ResponseSink};
use crate::transport::{Lane, NodeId};

/// Application close codes of Grove connections.
pub(crate) mod close {
    /// The node is shutting down.
    pub const SHUTDOWN: u32 = 1;
    /// The handshake refused the peer; the reason follows.
    pub const REFUSED: u32 = 2;
    /// A second connection for the same pair, closed once idle.
    pub const DUPLICATE: u32 = 3;
    /// The peer restarted; this connection belonged to its previous run.
    pub const PEER_RESTARTED: u32 = 4;
    /// The transport was dropped without a shutdown.
    pub const DROPPED: u32 = 5;
}

/// Longest a served call waits for its caller to acknowledge the last frame.
const DELIVERY_WAIT_MAX: std::time::Duration = std::time::Duration::from_secs(5);

/// Stream reset / stop code: the call was cancelled.
pub(crate) const STREAM_CANCELLED: u32 = 1;
/// Stream stop code: the frame being sent is over our limit.
pub(crate) const STREAM_FRAME_TOO_LARGE: u32 = 2;

/// How a read or write on a stream failed, and whether the call can be retried elsewhere
/// because the peer never saw it.
pub(crate) struct StreamFailure {
    pub(crate) error: RpcError,
    pub(crate) retry_safe: bool,
}

impl From<RpcError> for StreamFailure {
    fn from(error: RpcError) -> Self {
        StreamFailure {
            error,
            retry_safe: false,
        }
    }
}

/// A connection-level error seen by a call (`connecting` = during dial and handshake).
pub(crate) fn connection_error(
    peer: &NodeId,
    error: &ConnectionError,
    connecting: bool,
) -> StreamFailure {
    let lost = |reason: String| {
        if connecting {
            RpcError::Unreachable {
                peer: peer.clone(),
                reason,
            }
        } else {
            RpcError::ConnectionLost {
                peer: peer.clone(),
                reason,
            }
        }
    };
    let mut retry_safe = false;
    let error = match error {
        ConnectionError::ApplicationClosed(close) => {
            let reason = String::from_utf8_lossy(&close.reason).into_owned();
            match u32::try_from(close.error_code.into_inner()) {
                Ok(close::SHUTDOWN) => RpcError::Shutdown { node: peer.clone() },
                Ok(close::REFUSED) => RpcError::Refused { reason },
                _ => lost(format!("closed by peer: {close}")),
            }
        }
        ConnectionError::ConnectionClosed(close) if is_crypto(u64::from(close.error_code)) => {
            RpcError::Refused {
                reason: format!("tls: peer rejected the handshake: {close}"),
            }
        }
        ConnectionError::TransportError(error) if is_crypto(u64::from(error.code)) => {
            RpcError::Refused {
                reason: format!("tls: {error}"),
            }
        }
        ConnectionError::VersionMismatch => RpcError::Refused {
            reason: "no QUIC version in common".into(),
        },
        ConnectionError::TimedOut if !connecting => {
            lost("idle timeout: the peer stopped answering".into())
        }
        ConnectionError::Reset => {
            // A stateless reset: the peer has no state for this connection (it restarted), so
            // nothing sent on it was processed.
            retry_safe = true;
            lost("peer restarted (stateless reset)".into())
        }
        other => lost(other.to_string()),
    };
    StreamFailure { error, retry_safe }
}

fn is_crypto(code: u64) -> bool {
    code & !0xff == 0x100
}

fn read_error(peer: &NodeId, error: &ReadError) -> StreamFailure {
    match error {
        ReadError::Reset(code) => RpcError::Cancelled {
            reason: format!("stream reset by {peer} (code {code})"),
        }
        .into(),
        ReadError::ConnectionLost(error) => connection_error(peer, error, false),
        other => RpcError::ConnectionLost {
            peer: peer.clone(),
            reason: other.to_string(),
        }
        .into(),
    }
}

pub(crate) fn write_error(peer: &NodeId, error: &WriteError) -> StreamFailure {
    match error {
        WriteError::Stopped(code) => RpcError::Cancelled {
            reason: format!("stream stopped by {peer} (code {code})"),
        }
        .into(),
        WriteError::ConnectionLost(error) => connection_error(peer, error, false),
        other => RpcError::ConnectionLost {
            peer: peer.clone(),
            reason: other.to_string(),
        }
        .into(),
    }
}

/// Whose budget a frame read takes its bytes from.
pub(crate) enum Budgeted<'a> {
    /// None: the handshake's hello and welcome (bounded apart, before the peer is known).
    No,
    /// A request served on the connection of `budget`, in the lane its header names.
    Request(&'a ConnectionBudget),
    /// A reply of one of our calls, in the call's lane.
    Reply(&'a ConnectionBudget, Lane),
}

/// Reads one frame: `Ok(None)` at a clean end of stream. A frame over `frame_bytes_max` is not
/// read; the caller decides what to tell the sender. The frame's bytes are reserved from
/// `budget` before its body is read (waiting while the budget is spent: the unread bytes stay
/// in QUIC's flow-control window) and stay reserved until its payload is dropped.
pub(crate) async fn read_frame(
    recv: &mut RecvStream,
    peer: &NodeId,
    frame_bytes_max: usize,
    budget: Budgeted<'_>,
) -> Result<Option<Frame>, StreamFailure> {
    let mut prefix = [0u8; LENGTH_PREFIX_BYTES];
    match recv.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(0)) => return Ok(None),
        Err(ReadExactError::FinishedEarly(_)) => {
            return Err(RpcError::malformed("stream ended inside a frame length").into());
        }
        Err(ReadExactError::ReadError(error)) => return Err(read_error(peer, &error)),
    }
    let length = codec::body_length(prefix, frame_bytes_max)?;
    // The envelope's version, kind and flags: a request's lane, before its bytes are reserved.
    let mut start = [0u8; 3];
    match recv.read_exact(&mut start).await {
        Ok(()) => {}
        Err(ReadExactError::FinishedEarly(_)) => {
            return Err(RpcError::malformed("stream ended inside a frame header").into());
        }
        Err(ReadExactError::ReadError(error)) => return Err(read_error(peer, &error)),
    }
    let reserved = match budget {
        Budgeted::No => None,
        Budgeted::Request(budget) => Some(budget.reserve(envelope::lane_of(start), length).await?),
        Budgeted::Reply(budget, lane) => Some(budget.reserve(lane, length).await?),
    };
    // The buffer grows with what arrives, so a prefix declaring a large body costs nothing
    // until the peer actually sends (and flow control lets through) that many bytes.
    let mut body = BytesMut::new();
    body.extend_from_slice(&start);
    while body.len() < length {
        match recv.read_chunk(length - body.len(), true).await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk.bytes),
            Ok(None) => {
                return Err(RpcError::malformed(format!(
                    "stream ended inside a frame: {} of {length} bytes",
                    body.len()
                ))
                .into());
            }
            Err(error) => return Err(read_error(peer, &error)),
        }
    }
    let body = match reserved {
        Some(reserved) => budget::hold(body.freeze(), reserved),
        None => body.freeze(),
    };
    Ok(Some(codec::decode_body(body)?))
}

/// The caller's side of one call's stream. Dropped before [`CallStream::complete`], it resets
/// and stops the stream, which cancels the call on the peer.
pub(crate) struct CallStream {
    pub(crate) send: SendStream,
    pub(crate) recv: RecvStream,
    pub(crate) peer: NodeId,
    lane: Lane,
    budget: Arc<ConnectionBudget>,
    completed: bool,
    _link_in_flight: InFlightGuard,
    _slot: OwnedSemaphorePermit,
}

impl CallStream {
    pub(crate) fn new(
        (send, recv): (SendStream, RecvStream),
        peer: NodeId,
        lane: Lane,
        budget: Arc<ConnectionBudget>,
        link_in_flight: InFlightGuard,
        slot: OwnedSemaphorePermit,
    ) -> Self {
        CallStream {
            send,
            recv,
            peer,
            lane,
            budget,
            completed: false,
            _link_in_flight: link_in_flight,
            _slot: slot,
        }
    }

    /// Sends the request frame and ends our side of the stream.
    pub(crate) async fn send_request(&mut self, frame: Bytes) -> Result<(), StreamFailure> {
        self.send
            .write_chunk(frame)
            .await
            .map_err(|e| write_error(&self.peer, &e))?;
        let _ = self.send.finish();
        Ok(())
    }

    pub(crate) async fn read(&mut self, frame_bytes_max: usize) -> Result<Frame, StreamFailure> {
        let budget = Budgeted::Reply(&self.budget, self.lane);
        match read_frame(&mut self.recv, &self.peer, frame_bytes_max, budget).await {
            Ok(Some(frame)) => Ok(frame),
            Ok(None) => Err(RpcError::ConnectionLost {
                peer: self.peer.clone(),
                reason: "stream ended without a reply".into(),
            }
            .into()),
            Err(failure) => {
                if matches!(failure.error, RpcError::FrameTooLarge { .. }) {
                    let _ = self.recv.stop(VarInt::from_u32(STREAM_FRAME_TOO_LARGE));
                }
                Err(failure)
            }
        }
    }

    /// The call ended normally: drop without cancelling. If the end of the peer's stream has
    /// already arrived (it usually comes with the last frame), consume it, so dropping the
    /// stream does not send the peer a STOP_SENDING (an extra packet and acknowledgement per
    /// call).
    pub(crate) fn complete(&mut self) {
        self.completed = true;
        let _ = self.recv.read_chunk(1, true).now_or_never();
    }
}

impl Drop for CallStream {
    fn drop(&mut self) {
        if !self.completed {
            let _ = self.send.reset(VarInt::from_u32(STREAM_CANCELLED));
            let _ = self.recv.stop(VarInt::from_u32(STREAM_CANCELLED));
        }
    }
}

/// The serving side's response stream.
pub(crate) struct QuicSink {
    pub(crate) send: SendStream,
    pub(crate) peer: NodeId,
}

impl ResponseSink for QuicSink {
    async fn send(&mut self, frame: Bytes) -> Result<(), RpcError> {
        self.send
            .write_chunk(frame)
            .await
            .map_err(|e| write_error(&self.peer, &e).error)
    }

    fn gone(&self) -> BoxFuture<'static, ()> {
        let stopped = self.send.stopped();
        async move {
            // Stopped by the caller, or the connection died: gone. Finished and acknowledged:
            // the caller got everything, it is not gone.
            if let Ok(None) = stopped.await {
                futures::future::pending::<()>().await;
            }
        }
        .boxed()
    }

    async fn finish(&mut self) {
        let _ = self.send.finish();
        // Resolves once the peer acknowledged everything (or stopped, or the connection died).
        let _ = tokio::time::timeout(DELIVERY_WAIT_MAX, self.send.stopped()).await;
    }
}
