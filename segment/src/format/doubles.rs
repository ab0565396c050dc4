//! The doubles encoding and [`DoubleColumn`], its zero-copy reader.
//!
//! Doubles are stored raw: a `num_values` u64 header, then each value as little-endian IEEE-754
//! bits (blobs start 8-byte aligned in the file). Raw is the hot default on purpose: a scan is a
//! plain load per value at memory speed, and random access is O(1). An XOR (Gorilla-style)
//! encoding would shrink slowly changing series, but it decodes serially with a data-dependent
//! bit length per value, several times slower than a load; metrics such as `spend` are noisy
//! enough that it gains little, and zstd already covers cold tiers. Values are read with
//! `f64::from_le_bytes` (a plain load on little-endian machines, no alignment requirement, no
//! `unsafe`); block scans copy into a stack buffer of [`BLOCK_ROWS`] values.
//!
//! Bit patterns round-trip exactly (NaN payloads, -0.0).

use super::codec::{Cursor, DecodeResult, put_u64, u64_at};

/// Rows per block handed to [`DoubleColumn::for_each_block`].
pub const BLOCK_ROWS: usize = super::bitpack::BLOCK_VALUES;

/// Appends `values` in the doubles encoding.
pub fn encode_doubles(values: &[f64], out: &mut Vec<u8>) {
    put_u64(out, values.len() as u64);
    out.reserve(values.len() * 8);
    for v in values {
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// A double column.
#[derive(Clone, Copy, Debug)]
pub struct DoubleColumn<'a> {
    data: &'a [u8],
}

#[inline]
fn f64_of(chunk: &[u8]) -> f64 {
    let mut le = [0u8; 8];
    le.copy_from_slice(chunk);
    f64::from_le_bytes(le)
}

impl<'a> DoubleColumn<'a> {
    /// Validates the structure of `bytes` (O(1)) and wraps it.
    pub fn parse(bytes: &'a [u8]) -> DecodeResult<DoubleColumn<'a>> {
        let mut cursor = Cursor::new(bytes);
        let len = cursor.usize("doubles header")?;
        let data_bytes = len
            .checked_mul(8)
            .ok_or_else(|| format!("doubles: {len} values do not fit in memory"))?;
        let data = cursor.take(data_bytes, "doubles values")?;
        cursor.expect_end("doubles")?;
        Ok(DoubleColumn { data })
    }

    pub fn len(&self) -> usize {
        self.data.len() / 8
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The value of `row`. Panics if `row >= len()` (like slice indexing).
    #[inline]
    pub fn get(&self, row: usize) -> f64 {
        assert!(
            row < self.len(),
            "row {row} out of range for a column of {} rows",
            self.len()
        );
        f64::from_bits(u64_at(self.data, row * 8))
    }

    /// Decodes rows `start_row .. start_row + out.len()` into `out`. Panics if that range is not
    /// inside the column.
    pub fn decode(&self, start_row: usize, out: &mut [f64]) {
        let bytes = start_row
            .checked_add(out.len())
            .filter(|&end| end <= self.len())
            .map(|end| &self.data[start_row * 8..end * 8])
            .unwrap_or_else(|| {
                panic!(
                    "rows {start_row}+{} out of range for a column of {} rows",
                    out.len(),
                    self.len()
                )
            });
        for (o, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
            *o = f64_of(chunk);
        }
    }

    /// Calls `f` with the values of each block of [`BLOCK_ROWS`] rows, in row order.
    pub fn for_each_block(&self, mut f: impl FnMut(&[f64])) {
        let mut buf = [0f64; BLOCK_ROWS];
        for block in self.data.chunks(BLOCK_ROWS * 8) {
            let rows = block.len() / 8;
            for (o, chunk) in buf.iter_mut().zip(block.chunks_exact(8)) {
                *o = f64_of(chunk);
            }
            f(&buf[..rows]);
        }
    }

    pub fn to_vec(&self) -> Vec<f64> {
        self.data.chunks_exact(8).map(f64_of).collect()
    }

    /// The sum of all values, added in row order (so it equals a naive left fold exactly).
    pub fn sum(&self) -> f64 {
        self.data
            .chunks_exact(8)
            .fold(0.0, |acc, chunk| acc + f64_of(chunk))
    }

    /// The smallest value ignoring NaNs (`None` when empty or all NaN).
    pub fn min(&self) -> Option<f64> {
        self.data
            .chunks_exact(8)
            .map(f64_of)
            .filter(|v| !v.is_nan())
            .reduce(f64::min)
    }

    /// The largest value ignoring NaNs (`None` when empty or all NaN).
    pub fn max(&self) -> Option<f64> {
        self.data
            .chunks_exact(8)
            .map(f64_of)
            .filter(|v| !v.is_nan())
            .reduce(f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_aggregates() {
        for n in [0usize, 1, BLOCK_ROWS - 1, BLOCK_ROWS, BLOCK_ROWS + 1, 5000] {
            let values: Vec<f64> = (0..n)
                .map(|i| (i as f64 * 0.37).sin() * 1e6 - 3.5)
                .collect();
            let mut bytes = Vec::new();
            encode_doubles(&values, &mut bytes);
            let column = DoubleColumn::parse(&bytes).unwrap();
            assert_eq!(column.len(), n);
            assert_eq!(column.to_vec(), values);
            assert_eq!(column.sum(), values.iter().fold(0.0, |a, v| a + v));
            assert_eq!(column.min(), values.iter().copied().reduce(f64::min));
            assert_eq!(column.max(), values.iter().copied().reduce(f64::max));
            let mut blocks = Vec::new();
            column.for_each_block(|b| {
                assert!(b.len() <= BLOCK_ROWS);
                blocks.extend_from_slice(b)
            });
            assert_eq!(blocks, values);
            if n > 3 {
                assert_eq!(column.get(n - 1), values[n - 1]);
                let mut out = vec![0.0; n - 3];
                column.decode(2, &mut out);
                assert_eq!(out, &values[2..n - 1]);
            }
        }
    }

    #[test]
    fn bit_patterns_survive() {
        let values = [
            f64::NAN,
            -0.0,
            f64::INFINITY,
            f64::MIN_POSITIVE,
            f64::from_bits(0x7ff8_dead_beef_0001),
        ];
        let mut bytes = Vec::new();
        encode_doubles(&values, &mut bytes);
        let column = DoubleColumn::parse(&bytes).unwrap();
        let bits: Vec<u64> = column.to_vec().iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, values.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
        assert_eq!(column.min(), Some(-0.0));
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let mut bytes = Vec::new();
        encode_doubles(&[1.0, 2.0], &mut bytes);
        assert!(DoubleColumn::parse(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(DoubleColumn::parse(&longer).is_err());
        let mut huge = bytes.clone();
        huge[7] = 0xff;
        assert!(DoubleColumn::parse(&huge).is_err());
    }
}
