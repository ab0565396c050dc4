//! Feeds arbitrary bytes to the frame decoder (length prefix, envelope header, trailing-byte
//! checks) and the payload decoder: they must return errors, never panic or over-allocate.
#![no_main]

use grove_rpc::codec;
use libfuzzer_sys::fuzz_target;

/// A small limit, so length claims past it are exercised as well as ones within it.
const FRAME_BYTES_MAX: usize = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((frame, used))) = codec::decode_frame(rest, FRAME_BYTES_MAX) {
        assert!(used >= codec::LENGTH_PREFIX_BYTES && used <= rest.len());
        // Payloads as the typed layer would decode them.
        let _ = codec::decode::<Vec<u8>>(&frame.payload);
        let _ = codec::decode::<(u64, String, Vec<Option<i64>>)>(&frame.payload);
        rest = &rest[used..];
    }
    let _ = codec::decode::<Vec<Vec<u32>>>(data);
});
