//! Little-endian and varint helpers shared by the encoders and decoders.
//!
//! [`Cursor`] reads from an untrusted byte slice: every read is bounds-checked and fails with a
//! message instead of panicking. Decoders report those messages; the reader wraps them into
//! `SegmentError::Corrupt` with the segment and column names.

/// A bounds-checked reader over untrusted bytes.
#[derive(Clone, Copy, Debug)]
pub struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

/// Decoding failure message (wrapped with segment and column by the caller).
pub type DecodeResult<T> = Result<T, String>;

impl<'a> Cursor<'a> {
    pub fn new(bytes: &'a [u8]) -> Cursor<'a> {
        Cursor { bytes, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    pub fn take(&mut self, len: usize, what: &str) -> DecodeResult<&'a [u8]> {
        if len > self.remaining() {
            return Err(format!(
                "{what}: needs {len} bytes at offset {}, only {} left",
                self.pos,
                self.remaining()
            ));
        }
        let slice = &self.bytes[self.pos..self.pos + len];
        self.pos += len;
        Ok(slice)
    }

    fn array<const N: usize>(&mut self, what: &str) -> DecodeResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N, what)?);
        Ok(out)
    }

    pub fn u8(&mut self, what: &str) -> DecodeResult<u8> {
        Ok(self.array::<1>(what)?[0])
    }

    pub fn u32(&mut self, what: &str) -> DecodeResult<u32> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    pub fn u64(&mut self, what: &str) -> DecodeResult<u64> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    pub fn i64(&mut self, what: &str) -> DecodeResult<i64> {
        Ok(i64::from_le_bytes(self.array(what)?))
    }

    /// A `u64` that must fit `usize` (a count or length).
    pub fn usize(&mut self, what: &str) -> DecodeResult<usize> {
        let value = self.u64(what)?;
        usize::try_from(value).map_err(|_| format!("{what}: {value} does not fit in memory"))
    }

    /// An LEB128 varint of at most 10 bytes.
    pub fn varint(&mut self, what: &str) -> DecodeResult<u64> {
        let mut value = 0u64;
        for i in 0..10 {
            let byte = self.u8(what)?;
            let bits = (byte & 0x7f) as u64;
            if i == 9 && byte > 1 {
                return Err(format!("{what}: varint overflows 64 bits"));
            }
            value |= bits << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(format!("{what}: varint longer than 10 bytes"))
    }

    /// Zero padding must be zero, so that no byte of a blob goes unchecked by structure.
    pub fn expect_zeros(&mut self, len: usize, what: &str) -> DecodeResult<()> {
        if self.take(len, what)?.iter().any(|&b| b != 0) {
            return Err(format!("{what}: reserved bytes are not zero"));
        }
        Ok(())
    }

    pub fn expect_end(&self, what: &str) -> DecodeResult<()> {
        if self.remaining() != 0 {
            return Err(format!(
                "{what}: {} unexpected trailing bytes",
                self.remaining()
            ));
        }
        Ok(())
    }
}

pub fn put_u32(out: &mut Vec<u8>, value: u32) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_i64(out: &mut Vec<u8>, value: i64) {
    out.extend_from_slice(&value.to_le_bytes());
}

pub fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Reads the little-endian `u64` at `at` of a slice the caller has bounds-checked.
#[inline]
pub fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(le)
}

#[inline]
pub fn i64_at(bytes: &[u8], at: usize) -> i64 {
    u64_at(bytes, at) as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_and_reject_overflow() {
        let mut out = Vec::new();
        for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
            out.clear();
            put_varint(&mut out, v);
            let mut c = Cursor::new(&out);
            assert_eq!(c.varint("v").unwrap(), v);
            assert_eq!(c.remaining(), 0);
        }
        let too_long = [0xffu8; 11];
        assert!(Cursor::new(&too_long).varint("v").is_err());
        let overflow = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert!(
            Cursor::new(&overflow)
                .varint("v")
                .unwrap_err()
                .contains("overflows")
        );
    }

    #[test]
    fn reads_are_bounds_checked() {
        let bytes = [1u8, 0, 0];
        let mut c = Cursor::new(&bytes);
        assert!(c.u64("count").unwrap_err().contains("count"));
        assert_eq!(c.u8("x").unwrap(), 1);
        assert!(c.take(3, "tail").is_err());
        assert!(c.expect_zeros(2, "pad").is_ok());
        assert!(c.expect_end("end").is_ok());
    }
}
