//! The longs encoding (`__time`, long dimensions and metrics, multi-value and sketch offsets)
//! and [`LongColumn`], its zero-copy reader.
//!
//! Values are cut into blocks of [`BLOCK_ROWS`]. Each block picks the smaller of
//! - frame of reference: `value = base + packed` with `base` the block minimum;
//! - delta: `value[i] = value[i - 1] + step + packed[i]` starting from `value[-1] = base`, with
//!   `step` the smallest difference between neighbours (sorted blocks such as `__time` pack
//!   their jitter only, and evenly spaced ones pack to width 0);
//!
//! and bit-packs `packed` at the smallest width (see [`super::bitpack`]); a constant block has
//! width 0. All arithmetic wraps, so any `i64` range round-trips.
//!
//! Layout: header (`num_values` u64, `num_blocks` u32, `block_rows` u32), then one 48-byte entry
//! per block (data offset u64, mode u8, width u8, 6 zero bytes, base i64, step i64, min i64,
//! max i64), then the packed blocks back to back. Per-block min/max make `min()`/`max()` cost one
//! table read per block and let a query skip blocks by value.
//!
//! Invariant: a [`LongColumn`] is only built over bytes [`LongColumn::parse`] validated (table
//! entries in bounds and tiling the data region, widths at most 64, known modes), so reads never
//! go out of bounds afterwards.

use super::bitpack::{self, Scratch, Width};
use super::codec::{Cursor, DecodeResult, i64_at, put_i64, put_u32, put_u64, u64_at};

/// Rows per block.
pub const BLOCK_ROWS: usize = bitpack::BLOCK_VALUES;

const HEADER_BYTES: usize = 16;
const ENTRY_BYTES: usize = 48;
const MODE_FRAME: u8 = 0;
const MODE_DELTA: u8 = 1;

/// Appends `values` in the longs encoding.
pub fn encode_longs(values: &[i64], out: &mut Vec<u8>) {
    let num_blocks = values.len().div_ceil(BLOCK_ROWS);
    put_u64(out, values.len() as u64);
    put_u32(out, num_blocks as u32);
    put_u32(out, BLOCK_ROWS as u32);
    let mut data = Vec::new();
    let mut packed = Vec::with_capacity(BLOCK_ROWS);
    for block in values.chunks(BLOCK_ROWS) {
        let plan = plan_block(block);
        put_u64(out, data.len() as u64);
        out.push(plan.mode);
        out.push(plan.width.bits());
        out.extend_from_slice(&[0; 6]);
        put_i64(out, plan.base);
        put_i64(out, plan.step);
        put_i64(out, plan.min);
        put_i64(out, plan.max);
        packed.clear();
        match plan.mode {
            MODE_DELTA => {
                let mut prev = plan.base;
                for &v in block {
                    packed.push(v.wrapping_sub(prev).wrapping_sub(plan.step) as u64);
                    prev = v;
                }
            }
            _ => packed.extend(block.iter().map(|&v| v.wrapping_sub(plan.base) as u64)),
        }
        bitpack::pack_block(&packed, plan.width, &mut data);
    }
    out.extend_from_slice(&data);
}

struct BlockPlan {
    mode: u8,
    width: Width,
    base: i64,
    step: i64,
    min: i64,
    max: i64,
}

fn plan_block(block: &[i64]) -> BlockPlan {
    let min = block.iter().copied().min().unwrap_or(0);
    let max = block.iter().copied().max().unwrap_or(0);
    let frame_width = Width::for_max(max.wrapping_sub(min) as u64);
    let frame = BlockPlan {
        mode: MODE_FRAME,
        width: frame_width,
        base: min,
        step: 0,
        min,
        max,
    };
    if block.len() < 2 || frame_width == Width::ZERO {
        return frame;
    }
    let deltas = block.windows(2).map(|w| w[1].wrapping_sub(w[0]));
    let (step, delta_max) = deltas.fold((i64::MAX, i64::MIN), |(lo, hi), d| (lo.min(d), hi.max(d)));
    let delta_width = Width::for_max(delta_max.wrapping_sub(step) as u64);
    if delta_width < frame_width {
        BlockPlan {
            mode: MODE_DELTA,
            width: delta_width,
            // The first value packs as 0: value[0] = base + step.
            base: block[0].wrapping_sub(step),
            step,
            min,
            max,
        }
    } else {
        frame
    }
}

/// A long column: random access, block decoding and aggregations that do not materialize.
#[derive(Clone, Copy, Debug)]
pub struct LongColumn<'a> {
    len: usize,
    table: &'a [u8],
    data: &'a [u8],
}

/// One block's table entry.
#[derive(Clone, Copy, Debug)]
struct Block<'a> {
    mode: u8,
    width: Width,
    base: i64,
    step: i64,
    min: i64,
    max: i64,
    bytes: &'a [u8],
    rows: usize,
}

impl<'a> LongColumn<'a> {
    /// Validates the structure of `bytes` (O(blocks)) and wraps it.
    pub fn parse(bytes: &'a [u8]) -> DecodeResult<LongColumn<'a>> {
        let mut cursor = Cursor::new(bytes);
        let len = cursor.usize("longs header")?;
        let num_blocks = cursor.u32("longs header")? as usize;
        let block_rows = cursor.u32("longs header")? as usize;
        if block_rows != BLOCK_ROWS {
            return Err(format!(
                "longs: block size {block_rows}, expected {BLOCK_ROWS}"
            ));
        }
        if num_blocks != len.div_ceil(BLOCK_ROWS) {
            return Err(format!("longs: {num_blocks} blocks for {len} values"));
        }
        let table_bytes = num_blocks
            .checked_mul(ENTRY_BYTES)
            .ok_or_else(|| "longs: block table too large".to_string())?;
        let table = cursor.take(table_bytes, "longs block table")?;
        debug_assert_eq!(cursor.position(), HEADER_BYTES + table_bytes);
        let data = cursor.rest();
        let mut expected_offset = 0usize;
        for b in 0..num_blocks {
            let entry = &table[b * ENTRY_BYTES..(b + 1) * ENTRY_BYTES];
            let offset = u64_at(entry, 0);
            let mode = entry[8];
            let width = Width::new(entry[9])
                .ok_or_else(|| format!("longs block {b}: bit width {} above 64", entry[9]))?;
            if entry[10..16].iter().any(|&x| x != 0) {
                return Err(format!("longs block {b}: reserved bytes are not zero"));
            }
            if mode != MODE_FRAME && mode != MODE_DELTA {
                return Err(format!("longs block {b}: unknown mode {mode}"));
            }
            if mode == MODE_FRAME && i64_at(entry, 24) != 0 {
                return Err(format!(
                    "longs block {b}: frame-of-reference block with a step"
                ));
            }
            if i64_at(entry, 32) > i64_at(entry, 40) {
                return Err(format!("longs block {b}: min above max"));
            }
            if offset != expected_offset as u64 {
                return Err(format!(
                    "longs block {b}: data offset {offset}, expected {expected_offset}"
                ));
            }
            expected_offset += bitpack::block_bytes(width, (len - b * BLOCK_ROWS).min(BLOCK_ROWS));
        }
        if expected_offset != data.len() {
            return Err(format!(
                "longs: blocks take {expected_offset} bytes, blob has {}",
                data.len()
            ));
        }
        Ok(LongColumn { len, table, data })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn num_blocks(&self) -> usize {
        self.table.len() / ENTRY_BYTES
    }

    fn block(&self, b: usize) -> Block<'a> {
        let entry = &self.table[b * ENTRY_BYTES..(b + 1) * ENTRY_BYTES];
        let offset = u64_at(entry, 0) as usize;
        // `parse` checked the width and that every block lies inside `data`.
        let width = Width::new(entry[9]).unwrap_or(Width::ZERO);
        let rows = (self.len - b * BLOCK_ROWS).min(BLOCK_ROWS);
        Block {
            mode: entry[8],
            width,
            base: i64_at(entry, 16),
            step: i64_at(entry, 24),
            min: i64_at(entry, 32),
            max: i64_at(entry, 40),
            bytes: &self.data[offset..offset + bitpack::block_bytes(width, rows)],
            rows,
        }
    }

    /// The smallest and largest value of block `b` (rows `b * BLOCK_ROWS ..`), for skipping
    /// blocks by value.
    pub fn block_min_max(&self, b: usize) -> (i64, i64) {
        let block = self.block(b);
        (block.min, block.max)
    }

    /// Decodes block `b` into `out`, returning its row count.
    pub fn decode_block(&self, b: usize, out: &mut [i64; BLOCK_ROWS]) -> usize {
        let mut scratch = Scratch::new();
        bitpack::with_simd(|| self.decode_block_with(b, &mut scratch, out))
    }

    #[inline(always)]
    fn decode_block_with(
        &self,
        b: usize,
        scratch: &mut Scratch,
        out: &mut [i64; BLOCK_ROWS],
    ) -> usize {
        let block = self.block(b);
        if block.width == Width::ZERO && block.mode == MODE_FRAME {
            out[..block.rows].fill(block.base);
        } else if block.width.is_narrow() {
            let packed = scratch.unpack_narrow(block.bytes, block.width, block.rows);
            apply_block(&block, packed, out);
        } else {
            let packed = scratch.unpack(block.bytes, block.width, block.rows);
            apply_block(&block, packed, out);
        }
        block.rows
    }

    /// Folds the values of `rows` (inside one block) with `op`, reading each in place, when
    /// the block is frame of reference; `None` for a delta block, which must be decoded whole.
    /// For a few rows of a block this beats decoding all 1,024. Panics if `rows` leaves the
    /// column or spans two blocks.
    pub fn fold_in_block(
        &self,
        rows: std::ops::Range<usize>,
        init: i64,
        op: impl Fn(i64, i64) -> i64,
    ) -> Option<i64> {
        assert!(
            rows.end <= self.len
                && (rows.is_empty() || rows.start / BLOCK_ROWS == (rows.end - 1) / BLOCK_ROWS),
            "rows {rows:?} are not inside one block of a column of {} rows",
            self.len
        );
        if rows.is_empty() {
            return Some(init);
        }
        let block = self.block(rows.start / BLOCK_ROWS);
        if block.mode == MODE_DELTA {
            return None;
        }
        Some(rows.fold(init, |acc, r| {
            let packed = bitpack::get(block.bytes, block.width, r % BLOCK_ROWS);
            op(acc, block.base.wrapping_add(packed as i64))
        }))
    }

    /// The value of `row`. Panics if `row >= len()` (like slice indexing).
    pub fn get(&self, row: usize) -> i64 {
        assert!(
            row < self.len,
            "row {row} out of range for a column of {} rows",
            self.len
        );
        let block = self.block(row / BLOCK_ROWS);
        let index = row % BLOCK_ROWS;
        if block.mode != MODE_DELTA {
            return block
                .base
                .wrapping_add(bitpack::get(block.bytes, block.width, index) as i64);
        }
        // value[i] = base + (i + 1) * step + sum(packed[..=i]).
        let steps = block.step.wrapping_mul(index as i64 + 1);
        let packed_sum = if block.width == Width::ZERO {
            0
        } else if index < 128 {
            (0..=index).fold(0u64, |acc, i| {
                acc.wrapping_add(bitpack::get(block.bytes, block.width, i))
            })
        } else {
            let mut scratch = Scratch::new();
            scratch
                .unpack(block.bytes, block.width, index + 1)
                .iter()
                .fold(0u64, |acc, &p| acc.wrapping_add(p))
        };
        block
            .base
            .wrapping_add(steps)
            .wrapping_add(packed_sum as i64)
    }

    /// Decodes rows `start_row .. start_row + out.len()` into `out`. Panics if that range is not
    /// inside the column.
    pub fn decode(&self, start_row: usize, out: &mut [i64]) {
        let end = start_row
            .checked_add(out.len())
            .filter(|&end| end <= self.len)
            .unwrap_or_else(|| {
                panic!(
                    "rows {start_row}+{} out of range for a column of {} rows",
                    out.len(),
                    self.len
                )
            });
        let mut scratch = Scratch::new();
        let mut buf = [0i64; BLOCK_ROWS];
        bitpack::with_simd(|| {
            let mut row = start_row;
            while row < end {
                let (b, from) = (row / BLOCK_ROWS, row % BLOCK_ROWS);
                let rows = self.decode_block_with(b, &mut scratch, &mut buf);
                let take = (rows - from).min(end - row);
                out[row - start_row..][..take].copy_from_slice(&buf[from..from + take]);
                row += take;
            }
        });
    }

    /// Calls `f` with the values of each block in row order.
    pub fn for_each_block(&self, mut f: impl FnMut(&[i64])) {
        let mut scratch = Scratch::new();
        let mut buf = [0i64; BLOCK_ROWS];
        bitpack::with_simd(|| {
            for b in 0..self.num_blocks() {
                let rows = self.decode_block_with(b, &mut scratch, &mut buf);
                f(&buf[..rows]);
            }
        });
    }

    /// All values, decoded.
    pub fn to_vec(&self) -> Vec<i64> {
        let mut out = vec![0; self.len];
        self.decode(0, &mut out);
        out
    }

    /// The wrapping sum of all values, computed per block from the packed values without
    /// materializing the column.
    pub fn sum(&self) -> i64 {
        let mut scratch = Scratch::new();
        bitpack::with_simd(|| {
            let mut total = 0i64;
            for b in 0..self.num_blocks() {
                let block = self.block(b);
                let packed_sum = if block.width == Width::ZERO {
                    0
                } else if block.width.is_narrow() {
                    let packed = scratch.unpack_narrow(block.bytes, block.width, block.rows);
                    packed_block_sum(block.mode, packed)
                } else {
                    let packed = scratch.unpack(block.bytes, block.width, block.rows);
                    packed_block_sum(block.mode, packed)
                };
                let n = block.rows as i64;
                let mut block_sum = block.base.wrapping_mul(n).wrapping_add(packed_sum as i64);
                if block.mode == MODE_DELTA {
                    // value[i] = base + (i + 1) * step + sum(packed[..=i]), so
                    // sum(values) = n * base + step * n(n+1)/2 + sum((n - j) * packed[j]).
                    block_sum = block_sum.wrapping_add(block.step.wrapping_mul(n * (n + 1) / 2));
                }
                total = total.wrapping_add(block_sum);
            }
            total
        })
    }

    /// The smallest value (`None` when empty), from the block table alone.
    pub fn min(&self) -> Option<i64> {
        (0..self.num_blocks()).map(|b| self.block(b).min).min()
    }

    /// The largest value (`None` when empty), from the block table alone.
    pub fn max(&self) -> Option<i64> {
        (0..self.num_blocks()).map(|b| self.block(b).max).max()
    }
}

/// Turns a block's packed values into values.
#[inline(always)]
fn apply_block<T: Copy + Into<u64>>(block: &Block<'_>, packed: &[T], out: &mut [i64; BLOCK_ROWS]) {
    if block.mode == MODE_DELTA {
        let mut acc = block.base;
        for (o, &p) in out.iter_mut().zip(packed) {
            acc = acc.wrapping_add(block.step).wrapping_add(p.into() as i64);
            *o = acc;
        }
    } else {
        for (o, &p) in out.iter_mut().zip(packed) {
            *o = block.base.wrapping_add(p.into() as i64);
        }
    }
}

/// The packed part of a block's sum: `sum(packed)` for frame of reference, the weighted
/// `sum((n - j) * packed[j])` for delta (see [`LongColumn::sum`]).
#[inline(always)]
fn packed_block_sum<T: Copy + Into<u64>>(mode: u8, packed: &[T]) -> u64 {
    let n = packed.len() as u64;
    if mode == MODE_DELTA {
        packed.iter().zip(0u64..).fold(0u64, |acc, (&p, j)| {
            acc.wrapping_add(p.into().wrapping_mul(n - j))
        })
    } else {
        packed
            .iter()
            .fold(0u64, |acc, &p| acc.wrapping_add(p.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(values: &[i64]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_longs(values, &mut bytes);
        let column = LongColumn::parse(&bytes).unwrap();
        assert_eq!(column.len(), values.len());
        assert_eq!(column.to_vec(), values);
        for (row, &v) in values.iter().enumerate().step_by(37) {
            assert_eq!(column.get(row), v, "row {row}");
        }
        if let Some(&last) = values.last() {
            assert_eq!(column.get(values.len() - 1), last);
        }
        let naive = values.iter().fold(0i64, |a, &v| a.wrapping_add(v));
        assert_eq!(column.sum(), naive);
        assert_eq!(column.min(), values.iter().copied().min());
        assert_eq!(column.max(), values.iter().copied().max());
        let mut blocks = Vec::new();
        column.for_each_block(|b| blocks.extend_from_slice(b));
        assert_eq!(blocks, values);
        if values.len() > 10 {
            let mut out = vec![0; values.len() - 7];
            column.decode(5, &mut out);
            assert_eq!(out, &values[5..values.len() - 2]);
        }
        bytes
    }

    #[test]
    fn edge_values_round_trip() {
        round_trip(&[]);
        round_trip(&[42]);
        round_trip(&[i64::MIN, i64::MAX, 0, -1, 1, i64::MAX, i64::MIN]);
        round_trip(&vec![i64::MIN; 3000]);
        round_trip(
            &(0..3000)
                .map(|i| if i % 2 == 0 { i64::MIN } else { i64::MAX })
                .collect::<Vec<_>>(),
        );
        for n in [
            BLOCK_ROWS - 1,
            BLOCK_ROWS,
            BLOCK_ROWS + 1,
            3 * BLOCK_ROWS + 5,
        ] {
            round_trip(&(0..n as i64).map(|i| i * 7 - 1000).collect::<Vec<_>>());
            round_trip(
                &(0..n as i64)
                    .map(|i| (i * 2_654_435_761) % 1_000_003)
                    .collect::<Vec<_>>(),
            );
        }
    }

    #[test]
    fn sorted_and_constant_blocks_pack_small() {
        // Evenly spaced timestamps: delta with step 1000 and width 0.
        let times: Vec<i64> = (0..4096).map(|i| 1_700_000_000_000 + i * 1000).collect();
        let bytes = round_trip(&times);
        assert_eq!(bytes.len(), HEADER_BYTES + 4 * ENTRY_BYTES);
        // Jittered sorted timestamps: delta beats frame of reference.
        let jittered: Vec<i64> = (0..4096)
            .map(|i| 1_700_000_000_000 + i * 1000 + (i * 7919) % 13)
            .collect();
        let bytes = round_trip(&jittered);
        let column = LongColumn::parse(&bytes).unwrap();
        assert!(column.block(0).mode == MODE_DELTA && column.block(0).width.bits() <= 5);
        let constant = vec![-5i64; 2500];
        let bytes = round_trip(&constant);
        assert_eq!(bytes.len(), HEADER_BYTES + 3 * ENTRY_BYTES);
    }

    #[test]
    fn corrupt_structure_is_an_error() {
        let values: Vec<i64> = (0..2000).map(|i| i * i).collect();
        let mut bytes = Vec::new();
        encode_longs(&values, &mut bytes);
        assert!(LongColumn::parse(&bytes[..bytes.len() - 1]).is_err());
        let mut wide = bytes.clone();
        wide[HEADER_BYTES + 9] = 65;
        assert!(LongColumn::parse(&wide).unwrap_err().contains("width"));
        let mut mode = bytes.clone();
        mode[HEADER_BYTES + 8] = 7;
        assert!(LongColumn::parse(&mode).unwrap_err().contains("mode"));
        let mut count = bytes.clone();
        count[1] ^= 0xff;
        assert!(LongColumn::parse(&count).is_err());
        for cut in 0..HEADER_BYTES + 2 * ENTRY_BYTES {
            assert!(LongColumn::parse(&bytes[..cut]).is_err());
        }
    }

    /// Folding a stretch of a block in place equals folding the decoded values; delta blocks
    /// decline.
    #[test]
    fn folds_in_place_equal_decoded_folds() {
        let scattered: Vec<i64> = (0..2500).map(|i| (i * 7919) % 1000 - 400).collect();
        let sorted: Vec<i64> = (0..2500)
            .map(|i| 1_700_000_000_000 + i * 1000 + i % 7)
            .collect();
        for values in [scattered, sorted] {
            let mut bytes = Vec::new();
            encode_longs(&values, &mut bytes);
            let column = LongColumn::parse(&bytes).unwrap();
            for (start, end) in [
                (0, 0),
                (0, 1),
                (5, 200),
                (1000, 1024),
                (2048, 2500),
                (10, 1024),
            ] {
                let got = column.fold_in_block(start..end, 0, i64::wrapping_add);
                let delta = end > start && column.block(start / BLOCK_ROWS).mode == MODE_DELTA;
                let expected = values[start..end]
                    .iter()
                    .fold(0i64, |a, &v| a.wrapping_add(v));
                assert_eq!(got, (!delta).then_some(expected), "{start}..{end}");
                let max = column.fold_in_block(start..end, i64::MIN, i64::max);
                let expected = values[start..end].iter().copied().fold(i64::MIN, i64::max);
                assert_eq!(max, (!delta).then_some(expected), "{start}..{end}");
            }
        }
    }

    #[test]
    fn block_min_max_bound_values() {
        let values: Vec<i64> = (0..2500).map(|i| (i % 1500) * 3).collect();
        let mut bytes = Vec::new();
        encode_longs(&values, &mut bytes);
        let column = LongColumn::parse(&bytes).unwrap();
        assert_eq!(column.num_blocks(), 3);
        for b in 0..3 {
            let chunk = &values[b * BLOCK_ROWS..((b + 1) * BLOCK_ROWS).min(values.len())];
            let expected = (*chunk.iter().min().unwrap(), *chunk.iter().max().unwrap());
            assert_eq!(column.block_min_max(b), expected);
        }
    }
}
