//! Payload codec and framing: the only module that calls bincode (2.0.1, pinned), so the payload
//! format can be swapped here alone.
//!
//! A frame is a big-endian `u32` body length followed by the body: an [`envelope`](crate::envelope)
//! header, then (for requests, responses and items) the bincode payload. The body length is
//! checked against the receiver's `frame_bytes_max` before the body is read. Payloads are
//! decoded with [`decode_limited`] against the same `frame_bytes_max`: the in-memory sizes
//! bincode claims (including containers' declared sizes, checked before it reserves them) may
//! total at most that, so a short payload cannot make it reserve more than `frame_bytes_max`.
//! What is bounded is the body length and bincode's claimed bytes; allocation itself is not
//! measured (the transports' receive buffers are bounded separately, see `quic::wire`).
//! Decoding never panics (a property test and a fuzz target hold it to that).
//!
//! Message types derive the codec's traits:
//! ```
//! use grove_rpc::codec::{Decode, Encode};
//! #[derive(Encode, Decode, Debug, PartialEq)]
//! #[bincode(crate = "grove_rpc::codec::bincode")]
//! struct Ping { nonce: u64 }
//! let bytes = grove_rpc::codec::encode(&Ping { nonce: 7 }).unwrap();
//! assert_eq!(grove_rpc::codec::decode::<Ping>(&bytes).unwrap(), Ping { nonce: 7 });
//! ```

use bincode::config::{Configuration, Limit, LittleEndian, Varint};
use bincode::enc::write::Writer;
use bytes::{BufMut, Bytes, BytesMut};

pub use bincode;
pub use bincode::{Decode, Encode};

use crate::envelope::Header;
use crate::error::RpcError;

/// The largest `frame_bytes_max` a node may configure (64 MiB).
pub const FRAME_BYTES_CEILING: usize = 64 << 20;
/// Bytes of the length prefix in front of every frame body.
pub const LENGTH_PREFIX_BYTES: usize = 4;

const CONFIG: Configuration<LittleEndian, Varint, Limit<FRAME_BYTES_CEILING>> =
    bincode::config::standard().with_limit::<FRAME_BYTES_CEILING>();

/// What a request, response or stream item must be: encodable by this codec and sendable.
pub trait Message: Encode + Decode<()> + Send + 'static {}

impl<T: Encode + Decode<()> + Send + 'static> Message for T {}

/// One decoded frame.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub header: Header,
    /// The codec bytes after the header (empty for kinds without a payload).
    pub payload: Bytes,
}

/// Encodes a payload.
pub fn encode<T: Message>(value: &T) -> Result<Bytes, RpcError> {
    let mut writer = CappedWriter::new(BytesMut::new(), FRAME_BYTES_CEILING);
    bincode::encode_into_writer(value, &mut writer, CONFIG)
        .map_err(|e| RpcError::malformed(format!("encode: {e}")))?;
    writer.finish(0, FRAME_BYTES_CEILING).map(BytesMut::freeze)
}

/// Decodes a payload; every byte must be used. The bytes bincode may claim for containers
/// (see [`decode_limited`]) are bounded by [`FRAME_BYTES_CEILING`].
pub fn decode<T: Message>(bytes: &[u8]) -> Result<T, RpcError> {
    decode_limited(bytes, FRAME_BYTES_CEILING)
}

/// Decodes a payload; every byte must be used. The bytes bincode claims while decoding may
/// total at most `claim_bytes_max` (capped at [`FRAME_BYTES_CEILING`]); a claim over it fails
/// with `Malformed`. bincode claims each value's in-memory size as it decodes it (a length or a
/// `u64` claims 8 bytes, a `u8` one), and a container's declared `len * size_of::<T>()` before it
/// reserves the container, so this bounds what decoding reserves, not only the input's size.
/// The transports pass the receiving node's `frame_bytes_max`: a message whose decoded size so
/// counted exceeds it (many varint-small `u64`s, say) is refused even if its frame fits.
pub fn decode_limited<T: Message>(bytes: &[u8], claim_bytes_max: usize) -> Result<T, RpcError> {
    use bincode::de::Decoder;
    let malformed = |e: bincode::error::DecodeError| RpcError::malformed(format!("decode: {e}"));
    let mut decoder = bincode::de::DecoderImpl::new(SliceInput { rest: bytes }, CONFIG, ());
    // bincode's limit is a compile-time constant: pre-claim the part of the ceiling beyond
    // `claim_bytes_max`, so only `claim_bytes_max` remains for this payload.
    decoder
        .claim_bytes_read(FRAME_BYTES_CEILING - claim_bytes_max.min(FRAME_BYTES_CEILING))
        .map_err(malformed)?;
    let value = T::decode(&mut decoder).map_err(malformed)?;
    let trailing = decoder.reader().rest.len();
    if trailing != 0 {
        return Err(RpcError::malformed(format!(
            "decode: {trailing} trailing bytes after the payload"
        )));
    }
    Ok(value)
}

/// Encodes a serde value with bincode's serde adapter (same configuration and ceiling as
/// [`encode`]), for types that derive serde rather than the codec's traits (openraft's
/// messages, say). Wrap such a type in [`bincode::serde::Compat`] to use it as a [`Message`].
pub fn encode_serde<T: serde::Serialize + ?Sized>(value: &T) -> Result<Bytes, RpcError> {
    let mut writer = CappedWriter::new(BytesMut::new(), FRAME_BYTES_CEILING);
    bincode::serde::encode_into_writer(value, &mut writer, CONFIG)
        .map_err(|e| RpcError::malformed(format!("encode: {e}")))?;
    writer.finish(0, FRAME_BYTES_CEILING).map(BytesMut::freeze)
}

/// Decodes what [`encode_serde`] wrote; every byte must be used. Self-describing serde values
/// (`serde_json::Value`, internally tagged enums) do not decode: bincode is not
/// self-describing.
pub fn decode_serde<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    decode_whole_serde(bytes, CONFIG, "payload")
}

/// Decodes `bytes` with `config`; every byte must be used.
fn decode_whole_serde<T: serde::de::DeserializeOwned, C: bincode::config::Config>(
    bytes: &[u8],
    config: C,
    what: &str,
) -> Result<T, RpcError> {
    let (value, read) = bincode::serde::decode_from_slice::<T, _>(bytes, config)
        .map_err(|e| RpcError::malformed(format!("decode: {e}")))?;
    if read != bytes.len() {
        return Err(RpcError::malformed(format!(
            "decode: {} trailing bytes after the {what}",
            bytes.len() - read
        )));
    }
    Ok(value)
}

/// The largest document [`encode_document`] writes and [`decode_document`] reads (4 GiB): a
/// node's own stored state (a Raft snapshot), not a frame.
pub const DOCUMENT_BYTES_CEILING: usize = 4 << 30;

const DOCUMENT_CONFIG: Configuration<LittleEndian, Varint, Limit<DOCUMENT_BYTES_CEILING>> =
    bincode::config::standard().with_limit::<DOCUMENT_BYTES_CEILING>();

/// Encodes a large serde value (bincode, as [`encode_serde`], bounded by
/// [`DOCUMENT_BYTES_CEILING`] instead of the frame ceiling) into `out`.
pub fn encode_document<T: serde::Serialize + ?Sized>(
    value: &T,
    out: &mut Vec<u8>,
) -> Result<(), RpcError> {
    bincode::serde::encode_into_std_write(value, out, DOCUMENT_CONFIG)
        .map(|_| ())
        .map_err(|e| RpcError::malformed(format!("encode: {e}")))
}

/// Decodes what [`encode_document`] wrote; every byte must be used. Containers' claimed sizes
/// are bounded by [`DOCUMENT_BYTES_CEILING`] in total.
pub fn decode_document<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, RpcError> {
    decode_whole_serde(bytes, DOCUMENT_CONFIG, "document")
}

/// A bincode reader over a slice that exposes what is left (bincode's own keeps it private).
struct SliceInput<'a> {
    rest: &'a [u8],
}

impl bincode::de::read::Reader for SliceInput<'_> {
    fn read(&mut self, bytes: &mut [u8]) -> Result<(), bincode::error::DecodeError> {
        let Some((head, rest)) = self.rest.split_at_checked(bytes.len()) else {
            return Err(bincode::error::DecodeError::UnexpectedEnd {
                additional: bytes.len() - self.rest.len(),
            });
        };
        bytes.copy_from_slice(head);
        self.rest = rest;
        Ok(())
    }

    fn peek_read(&mut self, n: usize) -> Option<&[u8]> {
        self.rest.get(..n)
    }

    fn consume(&mut self, n: usize) {
        self.rest = &self.rest[n.min(self.rest.len())..];
    }
}

/// Encodes a whole frame (prefix, header, `payload`), refusing bodies over `frame_bytes_max`.
pub fn encode_frame(
    header: &Header,
    payload: &[u8],
    frame_bytes_max: usize,
) -> Result<Bytes, RpcError> {
    let mut out = start_frame(header)?;
    let body = out.len() - LENGTH_PREFIX_BYTES + payload.len();
    check_body(body as u64, frame_bytes_max)?;
    out.put_slice(payload);
    Ok(finish_frame(out))
}

/// Encodes a frame whose payload is `value`, encoding straight into the frame buffer; stops
/// storing bytes once past `frame_bytes_max` and fails with the full size.
pub fn encode_message_frame<T: Message>(
    header: &Header,
    value: &T,
    frame_bytes_max: usize,
) -> Result<Bytes, RpcError> {
    let out = start_frame(header)?;
    let mut writer = CappedWriter::new(out, LENGTH_PREFIX_BYTES + frame_bytes_max);
    bincode::encode_into_writer(value, &mut writer, CONFIG)
        .map_err(|e| RpcError::malformed(format!("encode: {e}")))?;
    let out = writer.finish(LENGTH_PREFIX_BYTES, frame_bytes_max)?;
    Ok(finish_frame(out))
}

/// Reads a length prefix: the body length that follows, if within `frame_bytes_max`.
pub fn body_length(
    prefix: [u8; LENGTH_PREFIX_BYTES],
    frame_bytes_max: usize,
) -> Result<usize, RpcError> {
    let length = u32::from_be_bytes(prefix) as usize;
    check_body(length as u64, frame_bytes_max)?;
    if length < 3 {
        return Err(RpcError::malformed(format!(
            "frame body of {length} bytes is shorter than any header"
        )));
    }
    Ok(length)
}

/// Decodes a frame body (everything after the length prefix).
pub fn decode_body(body: Bytes) -> Result<Frame, RpcError> {
    let mut input = &body[..];
    let header = Header::decode(&mut input)?;
    let header_bytes = body.len() - input.len();
    if !header.carries_payload() && !input.is_empty() {
        return Err(RpcError::malformed(format!(
            "{} bytes after a {} frame header, which carries no payload",
            input.len(),
            header.kind_name()
        )));
    }
    Ok(Frame {
        header,
        payload: body.slice(header_bytes..),
    })
}

/// Decodes the first frame in `buffer`: `Ok(None)` if more bytes are needed, otherwise the
/// frame and the bytes it used. Used for fuzzing and by byte-oriented readers.
pub fn decode_frame(
    buffer: &[u8],
    frame_bytes_max: usize,
) -> Result<Option<(Frame, usize)>, RpcError> {
    let Some(prefix) = buffer.first_chunk::<LENGTH_PREFIX_BYTES>() else {
        return Ok(None);
    };
    let length = body_length(*prefix, frame_bytes_max)?;
    let end = LENGTH_PREFIX_BYTES + length;
    if buffer.len() < end {
        return Ok(None);
    }
    let body = Bytes::copy_from_slice(&buffer[LENGTH_PREFIX_BYTES..end]);
    Ok(Some((decode_body(body)?, end)))
}

fn start_frame(header: &Header) -> Result<BytesMut, RpcError> {
    let mut out = BytesMut::with_capacity(64);
    out.put_u32(0);
    header.encode(&mut out)?;
    Ok(out)
}

fn finish_frame(mut out: BytesMut) -> Bytes {
    let body = u32::try_from(out.len() - LENGTH_PREFIX_BYTES).expect("checked against the ceiling");
    out[..LENGTH_PREFIX_BYTES].copy_from_slice(&body.to_be_bytes());
    out.freeze()
}

fn check_body(bytes: u64, frame_bytes_max: usize) -> Result<(), RpcError> {
    if bytes > frame_bytes_max as u64 {
        return Err(RpcError::FrameTooLarge {
            bytes,
            max: frame_bytes_max as u64,
        });
    }
    Ok(())
}

/// A bincode writer into a buffer that stops storing past `cap` bytes but keeps counting.
struct CappedWriter {
    buffer: BytesMut,
    cap: usize,
    bytes_total: u64,
}

impl CappedWriter {
    fn new(buffer: BytesMut, cap: usize) -> Self {
        let bytes_total = buffer.len() as u64;
        CappedWriter {
            buffer,
            cap,
            bytes_total,
        }
    }

    /// The buffer, or `FrameTooLarge` if more than `max` bytes followed the first `skip`.
    fn finish(self, skip: usize, max: usize) -> Result<BytesMut, RpcError> {
        check_body(self.bytes_total - skip as u64, max)?;
        Ok(self.buffer)
    }
}

impl Writer for CappedWriter {
    fn write(&mut self, bytes: &[u8]) -> Result<(), bincode::error::EncodeError> {
        self.bytes_total += bytes.len() as u64;
        if self.bytes_total <= self.cap as u64 {
            self.buffer.extend_from_slice(bytes);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::RequestHeader;

    #[test]
    fn documents_round_trip_and_must_use_every_byte() {
        let big: Vec<u64> = (0..10_000).collect();
        let mut bytes = Vec::new();
        encode_document(&big, &mut bytes).unwrap();
        assert_eq!(decode_document::<Vec<u64>>(&bytes).unwrap(), big);
        bytes.push(0);
        let err = decode_document::<Vec<u64>>(&bytes).unwrap_err();
        assert!(
            err.to_string()
                .contains("1 trailing bytes after the document"),
            "{err}"
        );
        assert!(decode_document::<Vec<u64>>(&bytes[..100]).is_err());
        // A claimed length past the document ceiling is refused before anything is reserved.
        let claim = [0xfd, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f];
        assert!(decode_document::<Vec<u8>>(&claim).is_err());
    }

    #[test]
    fn serde_values_round_trip_and_must_use_every_byte() {
        let value: (String, Vec<u64>, Option<i32>) = ("raft".into(), vec![1, 300, 70_000], None);
        let bytes = encode_serde(&value).unwrap();
        assert_eq!(
            decode_serde::<(String, Vec<u64>, Option<i32>)>(&bytes).unwrap(),
            value
        );
        let mut longer = bytes.to_vec();
        longer.push(0);
        let err = decode_serde::<(String, Vec<u64>, Option<i32>)>(&longer).unwrap_err();
        assert!(err.to_string().contains("1 trailing bytes"), "{err}");
        assert!(decode_serde::<(String, Vec<u64>, Option<i32>)>(&bytes[..3]).is_err());
        // The serde adapter wrapped as a Message goes through the regular codec too.
        let compat = bincode::serde::Compat(value.clone());
        assert_eq!(
            decode::<bincode::serde::Compat<(String, Vec<u64>, Option<i32>)>>(
                &encode(&compat).unwrap()
            )
            .unwrap()
            .0,
            value
        );
    }

    #[test]
    fn frames_round_trip() {
        let header = Header::Request(RequestHeader {
            method: "echo".into(),
            budget_us: 5,
            streaming: false,
            control: false,
        });
        let frame = encode_message_frame(&header, &vec![1u8, 2, 3], 1024).unwrap();
        let (decoded, used) = decode_frame(&frame, 1024).unwrap().unwrap();
        assert_eq!(used, frame.len());
        assert_eq!(decoded.header, header);
        assert_eq!(decode::<Vec<u8>>(&decoded.payload).unwrap(), vec![1, 2, 3]);
        assert_eq!(decode_frame(&frame[..frame.len() - 1], 1024).unwrap(), None);
    }

    #[test]
    fn oversized_frames_are_refused_on_both_ends() {
        let big = vec![7u8; 5000];
        let error = encode_message_frame(&Header::Item, &big, 4096).unwrap_err();
        assert!(matches!(error, RpcError::FrameTooLarge { max: 4096, bytes } if bytes > 5000));
        let frame = encode_frame(&Header::Item, &[0; 5000], 8192).unwrap();
        assert!(matches!(
            decode_frame(&frame, 4096),
            Err(RpcError::FrameTooLarge {
                bytes: 5003,
                max: 4096
            })
        ));
    }

    #[test]
    fn claims_are_bounded_by_the_configured_limit() {
        // 100 bytes claim 108: their length counts as a `u64`.
        let payload = encode(&vec![1u8; 100]).unwrap();
        assert_eq!(decode_limited::<Vec<u8>>(&payload, 108).unwrap().len(), 100);
        assert!(matches!(
            decode_limited::<Vec<u8>>(&payload, 107),
            Err(RpcError::Malformed { .. })
        ));
        // A Vec<u64> claiming 2^20 elements (8 MiB) in a 5-byte payload: over a 1 MiB limit,
        // refused before bincode reserves anything.
        let claim = [252u8, 0, 0, 16, 0];
        let error = decode_limited::<Vec<u64>>(&claim, 1 << 20).unwrap_err();
        assert!(
            matches!(&error, RpcError::Malformed { reason } if reason.contains("imit")),
            "{error:?}"
        );
        assert!(decode_limited::<Vec<u8>>(&encode(&vec![0u8; 3]).unwrap(), 3 << 30).is_ok());
    }

    #[test]
    fn huge_length_claims_do_not_allocate() {
        // A Vec<u8> claiming 2^40 bytes in a 9-byte payload.
        let claim = [253u8, 0, 0, 0, 0, 0, 1, 0, 0];
        assert!(matches!(
            decode::<Vec<u8>>(&claim),
            Err(RpcError::Malformed { .. })
        ));
        assert!(matches!(
            decode::<u32>(&[1, 2]),
            Err(RpcError::Malformed { .. })
        ));
    }
}
