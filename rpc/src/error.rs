//! `RpcError`: the one error type of every call, stream and serve, with stable numeric codes.
//!
//! Both transports (QUIC and in-memory) return exactly these variants for the same situations, so
//! code above the seam handles failures once. Codes are part of the wire protocol (an error frame
//! carries one) and never change meaning; new variants take new codes.

use crate::transport::NodeId;

/// Why a call, a stream or a transport operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RpcError {
    /// No connection to the peer could be made (no address, nothing answering, link cut, or
    /// still backing off after failed attempts). Nothing was sent.
    #[error("peer {peer} unreachable: {reason}")]
    Unreachable { peer: NodeId, reason: String },
    /// The call's deadline passed before it completed (on either side).
    #[error("deadline exceeded")]
    DeadlineExceeded,
    /// The call was cancelled by the other side (the caller went away or reset its stream).
    #[error("call cancelled: {reason}")]
    Cancelled { reason: String },
    /// The peer refused the connection: wrong cluster, wrong protocol version, a certificate not
    /// signed by the cluster CA, or a certificate that does not name the node.
    #[error("connection refused: {reason}")]
    Refused { reason: String },
    /// A frame is larger than the configured maximum (`Limits::frame_bytes_max`).
    #[error(
        "frame of {bytes} bytes exceeds the maximum of {max} bytes (raise Limits::frame_bytes_max, or stream the data)"
    )]
    FrameTooLarge { bytes: u64, max: u64 },
    /// A frame or payload could not be decoded; the stream that carried it fails, the connection
    /// stays up.
    #[error("malformed frame: {reason}")]
    Malformed { reason: String },
    /// The peer has no handler for the method (or it was called as the wrong kind).
    #[error("unknown method {method}")]
    UnknownMethod { method: String },
    /// The handler on the peer returned an application error.
    #[error("remote error {code}: {message}")]
    Remote { code: u32, message: String },
    /// The node is shutting down (or has shut down): it accepts no new calls.
    #[error("node {node} is shutting down")]
    Shutdown { node: NodeId },
    /// The connection to the peer was lost while the call was in flight; the call may or may not
    /// have run on the peer.
    #[error("connection to {peer} lost: {reason}")]
    ConnectionLost { peer: NodeId, reason: String },
    /// Local configuration is unusable (certificates, keys, addresses, node ids).
    #[error("rpc configuration: {reason}")]
    Config { reason: String },
}

/// Stable numeric codes, carried in error frames and exported for metrics and the HTTP edge.
pub mod code {
    pub const UNREACHABLE: u16 = 1;
    pub const DEADLINE_EXCEEDED: u16 = 2;
    pub const CANCELLED: u16 = 3;
    pub const REFUSED: u16 = 4;
    pub const FRAME_TOO_LARGE: u16 = 5;
    pub const MALFORMED: u16 = 6;
    pub const UNKNOWN_METHOD: u16 = 7;
    pub const REMOTE: u16 = 8;
    pub const SHUTDOWN: u16 = 9;
    pub const CONNECTION_LOST: u16 = 10;
    pub const CONFIG: u16 = 11;
}

impl RpcError {
    /// The stable numeric code of this error (see [`code`]).
    pub fn code(&self) -> u16 {
        match self {
            RpcError::Unreachable { .. } => code::UNREACHABLE,
            RpcError::DeadlineExceeded => code::DEADLINE_EXCEEDED,
            RpcError::Cancelled { .. } => code::CANCELLED,
            RpcError::Refused { .. } => code::REFUSED,
            RpcError::FrameTooLarge { .. } => code::FRAME_TOO_LARGE,
            RpcError::Malformed { .. } => code::MALFORMED,
            RpcError::UnknownMethod { .. } => code::UNKNOWN_METHOD,
            RpcError::Remote { .. } => code::REMOTE,
            RpcError::Shutdown { .. } => code::SHUTDOWN,
            RpcError::ConnectionLost { .. } => code::CONNECTION_LOST,
            RpcError::Config { .. } => code::CONFIG,
        }
    }

    /// An application error for a handler to return: `code` is the application's own.
    pub fn remote(code: u32, message: impl Into<String>) -> Self {
        RpcError::Remote {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn malformed(reason: impl Into<String>) -> Self {
        RpcError::Malformed {
            reason: reason.into(),
        }
    }

    pub(crate) fn config(reason: impl Into<String>) -> Self {
        RpcError::Config {
            reason: reason.into(),
        }
    }

    /// True when the call certainly did not run on the peer, so retrying it (here or on another
    /// replica) cannot execute it twice.
    pub fn is_not_sent(&self) -> bool {
        matches!(
            self,
            RpcError::Unreachable { .. }
                | RpcError::Refused { .. }
                | RpcError::Shutdown { .. }
                | RpcError::Config { .. }
        )
    }
}
