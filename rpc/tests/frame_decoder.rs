//! Property tests of the frame and payload decoders: arbitrary and mutated bytes never panic,
//! every frame they accept has a body within the frame limit and uses no more than the input,
//! and well-formed frames round-trip. Allocation is not measured here (the codec's unit tests
//! check that oversized length claims are refused). (The cargo-fuzz target in `rpc/fuzz/`
//! drives the same functions with coverage guidance.)

use grove_rpc::codec::{self, Frame};
use grove_rpc::envelope::{ErrorHeader, Header, Hello, RequestHeader};
use proptest::prelude::*;

const MAX: usize = 64 << 10;

fn header() -> impl Strategy<Value = Header> {
    let text = "[a-z0-9.\\-]{0,40}";
    prop_oneof![
        (any::<u32>(), text, text, any::<u64>()).prop_map(
            |(protocol_version, cluster_id, node_id, incarnation)| {
                Header::Hello(Hello {
                    protocol_version,
                    cluster_id,
                    node_id,
                    incarnation,
                })
            }
        ),
        text.prop_map(|reason| Header::Refuse { reason }),
        (text, any::<u64>(), any::<bool>(), any::<bool>()).prop_map(
            |(method, budget_us, streaming, control)| {
                Header::Request(RequestHeader {
                    method,
                    budget_us,
                    streaming,
                    control,
                })
            }
        ),
        Just(Header::Response),
        Just(Header::Item),
        Just(Header::End),
        (any::<u16>(), any::<u64>(), any::<u64>(), ".{0,60}").prop_map(
            |(code, detail, detail_extra, message)| {
                Header::Error(ErrorHeader {
                    code,
                    detail,
                    detail_extra,
                    message,
                })
            }
        ),
    ]
}

fn frame() -> impl Strategy<Value = (Header, Vec<u8>)> {
    (header(), proptest::collection::vec(any::<u8>(), 0..512)).prop_map(|(header, payload)| {
        let payload = if header.carries_payload() {
            payload
        } else {
            Vec::new()
        };
        (header, payload)
    })
}

/// Decodes every frame in `bytes` until an error or the end; must never panic.
fn decode_all(mut bytes: &[u8]) -> Vec<Frame> {
    let mut frames = Vec::new();
    while let Ok(Some((frame, used))) = codec::decode_frame(bytes, MAX) {
        assert!(used <= bytes.len() && used >= codec::LENGTH_PREFIX_BYTES);
        assert!(used - codec::LENGTH_PREFIX_BYTES <= MAX);
        bytes = &bytes[used..];
        frames.push(frame);
    }
    frames
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        decode_all(&bytes);
        let _ = codec::decode::<Vec<u8>>(&bytes);
        let _ = codec::decode::<(u64, Vec<String>, Option<i32>)>(&bytes);
        let _ = codec::decode::<Vec<Vec<u64>>>(&bytes);
        let _ = codec::decode_limited::<Vec<Vec<u64>>>(&bytes, MAX);
    }

    #[test]
    fn well_formed_frames_round_trip(frames in proptest::collection::vec(frame(), 1..8)) {
        let mut wire = Vec::new();
        for (header, payload) in &frames {
            wire.extend_from_slice(&codec::encode_frame(header, payload, MAX).unwrap());
        }
        let decoded = decode_all(&wire);
        prop_assert_eq!(decoded.len(), frames.len());
        for (frame, (header, payload)) in decoded.iter().zip(&frames) {
            prop_assert_eq!(&frame.header, header);
            prop_assert_eq!(&frame.payload[..], &payload[..]);
        }
    }

    #[test]
    fn mutated_frames_never_panic(
        (header, payload) in frame(),
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut wire = codec::encode_frame(&header, &payload, MAX).unwrap().to_vec();
        for (at, byte) in flips {
            let at = at.index(wire.len());
            wire[at] = byte;
        }
        decode_all(&wire);
        decode_all(&wire[..cut.index(wire.len() + 1)]);
    }
}
