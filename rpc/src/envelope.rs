//! The versioned message envelope: the header at the front of every frame.
//!
//! Hand-encoded (not bincode) so the framing stays fixed when the payload codec changes:
//!
//! ```text
//! u8  envelope version (1)
//! u8  kind: 1 hello, 2 welcome, 3 refuse, 4 request, 5 response, 6 item, 7 end, 8 error
//! u8  flags: bit 0 = server-streaming request, bit 1 = control lane (requests only); other
//!     bits must be 0
//! ..  kind fields, little-endian integers, strings as u16 length + UTF-8:
//!     hello/welcome  u32 protocol version, str cluster id, str node id, u64 incarnation
//!     refuse         str reason
//!     request        u64 deadline budget (µs), str method
//!     error          u16 code, u64 detail, u64 detail, str message
//! ..  payload (request, response, item only): the codec's bytes, opaque here
//! ```

use bytes::{BufMut, BytesMut};

use crate::error::{RpcError, code};
use crate::transport::NodeId;

/// Version of this header layout; a frame with another version fails its stream.
pub const ENVELOPE_VERSION: u8 = 1;
/// Version of the protocol as a whole, checked in the handshake (2: the control-lane flag).
pub const PROTOCOL_VERSION: u32 = 2;
/// The TLS application protocol (ALPN) of Grove's QUIC connections.
pub const ALPN: &[u8] = b"grove/1";

const KIND_HELLO: u8 = 1;
const KIND_WELCOME: u8 = 2;
const KIND_REFUSE: u8 = 3;
const KIND_REQUEST: u8 = 4;
const KIND_RESPONSE: u8 = 5;
const KIND_ITEM: u8 = 6;
const KIND_END: u8 = 7;
const KIND_ERROR: u8 = 8;
const FLAG_STREAMING: u8 = 1;
const FLAG_CONTROL: u8 = 2;
const STRING_BYTES_MAX: usize = u16::MAX as usize;

/// The header of one frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Header {
    /// First frame of a connection, from the dialing node.
    Hello(Hello),
    /// The accepting node's answer when it accepts the hello.
    Welcome(Hello),
    /// The accepting node's answer when it refuses; the connection is then closed.
    Refuse { reason: String },
    /// Opens a call; the payload is the encoded request.
    Request(RequestHeader),
    /// The single answer of a unary call; the payload is the encoded response.
    Response,
    /// One item of a server stream; the payload is the encoded item.
    Item,
    /// A server stream completed.
    End,
    /// The call failed; last frame of its stream.
    Error(ErrorHeader),
}

/// Who is on the other end of a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    pub protocol_version: u32,
    pub cluster_id: String,
    pub node_id: String,
    /// Differs on every start of a node, so a peer can tell a restart from a second connection.
    pub incarnation: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHeader {
    pub method: String,
    /// Remaining deadline budget when the request was sent, in microseconds.
    pub budget_us: u64,
    pub streaming: bool,
    /// The call travels in the control lane ([`crate::Lane::Control`]).
    pub control: bool,
}

/// An [`RpcError`] as it travels.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorHeader {
    pub code: u16,
    pub detail: u64,
    pub detail_extra: u64,
    pub message: String,
}

impl Header {
    /// Whether frames of this kind carry a payload after the header.
    pub fn carries_payload(&self) -> bool {
        matches!(self, Header::Request(_) | Header::Response | Header::Item)
    }

    /// A short name for messages.
    pub fn kind_name(&self) -> &'static str {
        match self {
            Header::Hello(_) => "hello",
            Header::Welcome(_) => "welcome",
            Header::Refuse { .. } => "refuse",
            Header::Request(_) => "request",
            Header::Response => "response",
            Header::Item => "item",
            Header::End => "end",
            Header::Error(_) => "error",
        }
    }

    /// Appends the encoded header to `out`. Fails only for strings over 65,535 bytes.
    pub fn encode(&self, out: &mut BytesMut) -> Result<(), RpcError> {
        out.put_u8(ENVELOPE_VERSION);
        match self {
            Header::Hello(hello) | Header::Welcome(hello) => {
                let kind = if matches!(self, Header::Hello(_)) {
                    KIND_HELLO
                } else {
                    KIND_WELCOME
                };
                out.put_u8(kind);
                out.put_u8(0);
                out.put_u32_le(hello.protocol_version);
                put_str(out, &hello.cluster_id)?;
                put_str(out, &hello.node_id)?;
                out.put_u64_le(hello.incarnation);
            }
            Header::Refuse { reason } => {
                out.put_u8(KIND_REFUSE);
                out.put_u8(0);
                put_str(out, truncate(reason))?;
            }
            Header::Request(request) => {
                out.put_u8(KIND_REQUEST);
                let mut flags = 0;
                if request.streaming {
                    flags |= FLAG_STREAMING;
                }
                if request.control {
                    flags |= FLAG_CONTROL;
                }
                out.put_u8(flags);
                out.put_u64_le(request.budget_us);
                put_str(out, &request.method)?;
            }
            Header::Response => {
                out.put_u8(KIND_RESPONSE);
                out.put_u8(0);
            }
            Header::Item => {
                out.put_u8(KIND_ITEM);
                out.put_u8(0);
            }
            Header::End => {
                out.put_u8(KIND_END);
                out.put_u8(0);
            }
            Header::Error(error) => {
                out.put_u8(KIND_ERROR);
                out.put_u8(0);
                out.put_u16_le(error.code);
                out.put_u64_le(error.detail);
                out.put_u64_le(error.detail_extra);
                put_str(out, truncate(&error.message))?;
            }
        }
        Ok(())
    }

    /// Decodes a header from the front of `input`, advancing it to the payload.
    pub fn decode(input: &mut &[u8]) -> Result<Header, RpcError> {
        let version = take_u8(input, "envelope version")?;
        if version != ENVELOPE_VERSION {
            return Err(RpcError::malformed(format!(
                "envelope version {version} not supported (this node speaks {ENVELOPE_VERSION})"
            )));
        }
        let kind = take_u8(input, "frame kind")?;
        let flags = take_u8(input, "flags")?;
        let allowed_flags = if kind == KIND_REQUEST {
            FLAG_STREAMING | FLAG_CONTROL
        } else {
            0
        };
        if flags & !allowed_flags != 0 {
            return Err(RpcError::malformed(format!(
                "unknown flags {flags:#04x} on frame kind {kind}"
            )));
        }
        let header = match kind {
            KIND_HELLO | KIND_WELCOME => {
                let hello = Hello {
                    protocol_version: take_u32(input, "protocol version")?,
                    cluster_id: take_str(input, "cluster id")?,
                    node_id: take_str(input, "node id")?,
                    incarnation: take_u64(input, "incarnation")?,
                };
                if kind == KIND_HELLO {
                    Header::Hello(hello)
                } else {
                    Header::Welcome(hello)
                }
            }
            KIND_REFUSE => Header::Refuse {
                reason: take_str(input, "refusal reason")?,
            },
            KIND_REQUEST => {
                let budget_us = take_u64(input, "deadline budget")?;
                let method = take_str(input, "method")?;
                Header::Request(RequestHeader {
                    method,
                    budget_us,
                    streaming: flags & FLAG_STREAMING != 0,
                    control: flags & FLAG_CONTROL != 0,
                })
            }
            KIND_RESPONSE => Header::Response,
            KIND_ITEM => Header::Item,
            KIND_END => Header::End,
            KIND_ERROR => Header::Error(ErrorHeader {
                code: take_u16(input, "error code")?,
                detail: take_u64(input, "error detail")?,
                detail_extra: take_u64(input, "error detail")?,
                message: take_str(input, "error message")?,
            }),
            other => return Err(RpcError::malformed(format!("unknown frame kind {other}"))),
        };
        Ok(header)
    }
}

/// The lane of a frame from the first three bytes of its body (envelope version, kind,
/// flags), read before the rest: a request flagged control travels in the control lane,
/// everything else in the ordinary one.
pub fn lane_of(body_start: [u8; 3]) -> crate::Lane {
    if body_start[1] == KIND_REQUEST && body_start[2] & FLAG_CONTROL != 0 {
        crate::Lane::Control
    } else {
        crate::Lane::Ordinary
    }
}

impl ErrorHeader {
    /// How `error` travels. Errors that only make sense locally (a handler's own unreachable
    /// peer, say) travel as [`RpcError::Remote`] carrying their code and text.
    pub fn from_error(error: &RpcError) -> Self {
        let plain = |code, message: String| ErrorHeader {
            code,
            detail: 0,
            detail_extra: 0,
            message,
        };
        match error {
            RpcError::DeadlineExceeded => plain(code::DEADLINE_EXCEEDED, String::new()),
            RpcError::Cancelled { reason } => plain(code::CANCELLED, reason.clone()),
            RpcError::Refused { reason } => plain(code::REFUSED, reason.clone()),
            RpcError::FrameTooLarge { bytes, max } => ErrorHeader {
                code: code::FRAME_TOO_LARGE,
                detail: *bytes,
                detail_extra: *max,
                message: String::new(),
            },
            RpcError::Malformed { reason } => plain(code::MALFORMED, reason.clone()),
            RpcError::UnknownMethod { method } => plain(code::UNKNOWN_METHOD, method.clone()),
            RpcError::Remote { code, message } => ErrorHeader {
                code: code::REMOTE,
                detail: u64::from(*code),
                detail_extra: 0,
                message: message.clone(),
            },
            RpcError::Shutdown { node } => plain(code::SHUTDOWN, node.to_string()),
            RpcError::Unreachable { .. }
            | RpcError::ConnectionLost { .. }
            | RpcError::Config { .. } => ErrorHeader {
                code: code::REMOTE,
                detail: u64::from(error.code()),
                detail_extra: 0,
                message: error.to_string(),
            },
        }
    }

    /// The error a caller of `peer` sees.
    pub fn into_error(self, peer: &NodeId) -> RpcError {
        match self.code {
            code::DEADLINE_EXCEEDED => RpcError::DeadlineExceeded,
            code::CANCELLED => RpcError::Cancelled {
                reason: self.message,
            },
            code::REFUSED => RpcError::Refused {
                reason: self.message,
            },
            code::FRAME_TOO_LARGE => RpcError::FrameTooLarge {
                bytes: self.detail,
                max: self.detail_extra,
            },
            code::MALFORMED => RpcError::Malformed {
                reason: self.message,
            },
            code::UNKNOWN_METHOD => RpcError::UnknownMethod {
                method: self.message,
            },
            code::SHUTDOWN => RpcError::Shutdown { node: peer.clone() },
            code::REMOTE => RpcError::Remote {
                code: u32::try_from(self.detail).unwrap_or(u32::MAX),
                message: self.message,
            },
            other => RpcError::Remote {
                code: u32::from(other),
                message: self.message,
            },
        }
    }
}

fn truncate(text: &str) -> &str {
    if text.len() <= STRING_BYTES_MAX {
        return text;
    }
    let mut end = STRING_BYTES_MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

fn put_str(out: &mut BytesMut, text: &str) -> Result<(), RpcError> {
    let length = u16::try_from(text.len()).map_err(|_| {
        RpcError::malformed(format!(
            "string of {} bytes in a header (max {STRING_BYTES_MAX})",
            text.len()
        ))
    })?;
    out.put_u16_le(length);
    out.put_slice(text.as_bytes());
    Ok(())
}

fn take<'a>(input: &mut &'a [u8], count: usize, what: &str) -> Result<&'a [u8], RpcError> {
    if input.len() < count {
        return Err(RpcError::malformed(format!(
            "header truncated in {what}: needs {count} bytes, {} left",
            input.len()
        )));
    }
    let (head, rest) = input.split_at(count);
    *input = rest;
    Ok(head)
}

fn take_u8(input: &mut &[u8], what: &str) -> Result<u8, RpcError> {
    Ok(take(input, 1, what)?[0])
}

fn take_u16(input: &mut &[u8], what: &str) -> Result<u16, RpcError> {
    let bytes = take(input, 2, what)?;
    Ok(u16::from_le_bytes([bytes[0], bytes[1]]))
}

fn take_u32(input: &mut &[u8], what: &str) -> Result<u32, RpcError> {
    let bytes = take(input, 4, what)?;
    Ok(u32::from_le_bytes(bytes.try_into().expect("4 bytes")))
}

fn take_u64(input: &mut &[u8], what: &str) -> Result<u64, RpcError> {
    let bytes = take(input, 8, what)?;
    Ok(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
}

fn take_str(input: &mut &[u8], what: &str) -> Result<String, RpcError> {
    let length = usize::from(take_u16(input, what)?);
    let bytes = take(input, length, what)?;
    String::from_utf8(bytes.to_vec())
        .map_err(|_| RpcError::malformed(format!("{what} is not UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(header: Header) {
        let mut out = BytesMut::new();
        header.encode(&mut out).unwrap();
        let mut input = &out[..];
        assert_eq!(Header::decode(&mut input).unwrap(), header);
        assert!(input.is_empty());
    }

    #[test]
    fn headers_round_trip() {
        let hello = Hello {
            protocol_version: PROTOCOL_VERSION,
            cluster_id: "prod".into(),
            node_id: "historical-1".into(),
            incarnation: 42,
        };
        round_trip(Header::Hello(hello.clone()));
        round_trip(Header::Welcome(hello));
        round_trip(Header::Refuse {
            reason: "wrong cluster".into(),
        });
        round_trip(Header::Request(RequestHeader {
            method: "scan".into(),
            budget_us: 1_000_000,
            streaming: true,
            control: false,
        }));
        let vote = Header::Request(RequestHeader {
            method: "raft.vote".into(),
            budget_us: 1_000,
            streaming: false,
            control: true,
        });
        round_trip(vote.clone());
        let mut out = BytesMut::new();
        vote.encode(&mut out).unwrap();
        assert_eq!(lane_of([out[0], out[1], out[2]]), crate::Lane::Control);
        round_trip(Header::Response);
        round_trip(Header::Item);
        round_trip(Header::End);
        round_trip(Header::Error(ErrorHeader::from_error(
            &RpcError::FrameTooLarge { bytes: 9, max: 8 },
        )));
    }

    #[test]
    fn errors_survive_the_wire() {
        let peer = NodeId::new("b").unwrap();
        for error in [
            RpcError::DeadlineExceeded,
            RpcError::FrameTooLarge { bytes: 10, max: 5 },
            RpcError::malformed("x"),
            RpcError::UnknownMethod { method: "m".into() },
            RpcError::remote(404, "no such segment"),
            RpcError::Shutdown { node: peer.clone() },
        ] {
            assert_eq!(ErrorHeader::from_error(&error).into_error(&peer), error);
        }
        let local = RpcError::Unreachable {
            peer: NodeId::new("c").unwrap(),
            reason: "down".into(),
        };
        assert!(matches!(
            ErrorHeader::from_error(&local).into_error(&peer),
            RpcError::Remote { code: 1, .. }
        ));
    }

    #[test]
    fn unknown_kinds_versions_and_flags_are_malformed() {
        for bytes in [
            &[2u8, 5, 0][..],
            &[1, 99, 0],
            &[1, 5, 1],
            &[1],
            &[1, 4, 0, 1],
        ] {
            let mut input = bytes;
            assert!(matches!(
                Header::decode(&mut input),
                Err(RpcError::Malformed { .. })
            ));
        }
    }
}
