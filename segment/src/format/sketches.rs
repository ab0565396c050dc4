//! Sketch metric columns: variable-length values (serialized HLL sketches) stored back to back
//! in a `values` blob and cut by an `offsets` part (longs encoding, `num_rows + 1` boundaries
//! starting at 0). [`SketchColumn`] hands out borrowed slices; it is only built over parts the
//! segment has validated (offsets in order, ending at the values' length).

use super::codec::DecodeResult;
use super::longs::{self, LongColumn};

/// (offsets part, values part) for `values`.
pub fn encode_sketches(values: &[Vec<u8>]) -> (Vec<u8>, Vec<u8>) {
    let mut offsets = Vec::with_capacity(values.len() + 1);
    let mut bytes = Vec::with_capacity(values.iter().map(Vec::len).sum());
    offsets.push(0i64);
    for v in values {
        bytes.extend_from_slice(v);
        offsets.push(bytes.len() as i64);
    }
    let mut encoded_offsets = Vec::new();
    longs::encode_longs(&offsets, &mut encoded_offsets);
    (encoded_offsets, bytes)
}

/// A sketch metric column.
#[derive(Clone, Copy, Debug)]
pub struct SketchColumn<'a> {
    offsets: LongColumn<'a>,
    values: &'a [u8],
}

impl<'a> SketchColumn<'a> {
    /// Checks the offsets' structure and row count (cheap); see [`SketchColumn::validate`].
    pub(crate) fn new(
        num_rows: usize,
        offsets: &'a [u8],
        values: &'a [u8],
    ) -> DecodeResult<SketchColumn<'a>> {
        let offsets = LongColumn::parse(offsets)?;
        if offsets.len() != num_rows + 1 {
            return Err(format!("{} offsets for {num_rows} rows", offsets.len()));
        }
        Ok(SketchColumn { offsets, values })
    }

    /// Offsets start at 0, never decrease and end at the values' length. O(rows).
    pub(crate) fn validate(&self) -> DecodeResult<()> {
        let mut previous = 0i64;
        let mut first = true;
        let mut bad = false;
        self.offsets.for_each_block(|block| {
            for &o in block {
                bad |= (first && o != 0) || o < previous;
                first = false;
                previous = o;
            }
        });
        if bad || previous as u64 != self.values.len() as u64 {
            return Err(format!(
                "sketch offsets out of order or not ending at the {} value bytes",
                self.values.len()
            ));
        }
        Ok(())
    }

    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of `row`. Panics if `row >= len()`.
    pub fn get(&self, row: usize) -> &'a [u8] {
        assert!(
            row < self.len(),
            "row {row} out of range for {} rows",
            self.len()
        );
        let (start, end) = (
            self.offsets.get(row) as usize,
            self.offsets.get(row + 1) as usize,
        );
        &self.values[start..end]
    }

    /// Calls `f(row, bytes)` for every row in order, decoding offsets a block at a time.
    pub fn for_each(&self, mut f: impl FnMut(usize, &'a [u8])) {
        let mut previous: Option<usize> = None;
        let mut row = 0;
        let values = self.values;
        self.offsets.for_each_block(|block| {
            for &o in block {
                let o = o as usize;
                if let Some(start) = previous {
                    f(row, &values[start..o]);
                    row += 1;
                }
                previous = Some(o);
            }
        });
    }
}
