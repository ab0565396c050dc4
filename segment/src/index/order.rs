//! Sorting rows by (time, dimension order ranks), shared by the index and merge. Time sorts
//! first unless the schema places it among the dimensions (`Schema::time_position`).
//!
//! Keys are row-major (one rank per sort column in sort order, time turned into a rank too), so
//! comparing two rows reads one contiguous slice each. Sorting itself runs on packed prefixes: as many leading key columns as
//! fit in 128 bits, each at the width its largest rank needs, go into one `u128` beside the row
//! number. Most comparisons are then one integer compare in a contiguous array; only rows whose
//! prefixes tie look at the rest of their keys, and when every column fits they never do.

/// Row-major sort keys over ranks (time is turned into a rank too).
pub(crate) struct SortKeys {
    stride: usize,
    keys: Vec<u64>,
    rows: usize,
    /// Bits each key column needs.
    widths: Vec<u32>,
}

impl SortKeys {
    /// Keys for `times.len()` rows of `columns` dimensions, with time sorting after the first
    /// `time_at` dimensions; `fill(r, ranks)` writes row `r`'s dimension ranks (rows are filled
    /// in order, one contiguous slice each).
    pub(crate) fn new(
        times: &[i64],
        columns: usize,
        time_at: usize,
        mut fill: impl FnMut(usize, &mut [u64]),
    ) -> SortKeys {
        let time_at = time_at.min(columns);
        let rows = times.len();
        let stride = 1 + columns;
        let mut distinct_times = times.to_vec();
        distinct_times.sort_unstable();
        distinct_times.dedup();
        let mut keys = vec![0u64; rows * stride];
        let mut max = vec![0u64; columns];
        for (r, (key, t)) in keys.chunks_exact_mut(stride).zip(times).enumerate() {
            key[0] = distinct_times.binary_search(t).map_or(0, |i| i as u64);
            fill(r, &mut key[1..]);
            for (m, &rank) in max.iter_mut().zip(&key[1..]) {
                *m = (*m).max(rank);
            }
            // Time moves from the front to its place in the sort order.
            key[..=time_at].rotate_left(1);
        }
        let mut widths = Vec::with_capacity(stride);
        widths.push(bits_for(distinct_times.len() as u64));
        widths.extend(max.iter().map(|&m| bits_for(m + 1)));
        widths[..=time_at].rotate_left(1);
        SortKeys {
            stride,
            keys,
            rows,
            widths,
        }
    }

    /// Keys from per-dimension rank columns (`ranks[d][r]`).
    pub(crate) fn from_columns(times: &[i64], ranks: &[Vec<u64>], time_at: usize) -> SortKeys {
        SortKeys::new(times, ranks.len(), time_at, |r, out| {
            for (slot, column) in out.iter_mut().zip(ranks) {
                *slot = column[r];
            }
        })
    }

    #[inline]
    fn row(&self, r: usize) -> &[u64] {
        &self.keys[r * self.stride..(r + 1) * self.stride]
    }

    /// Row numbers in key order; equal keys keep their row order.
    pub(crate) fn stable_order(&self) -> Vec<u32> {
        // How many leading columns fit in the 128-bit prefix (every prefix has the same width,
        // so they compare as plain integers).
        let mut used = 0u32;
        let mut packed_columns = 0;
        for &w in &self.widths {
            if used + w > 128 {
                break;
            }
            used += w;
            packed_columns += 1;
        }
        let exact = packed_columns == self.stride;
        let mut prefixed: Vec<(u128, u32)> = (0..self.rows)
            .map(|r| {
                let row = self.row(r);
                let mut prefix = 0u128;
                for (c, &w) in self.widths[..packed_columns].iter().enumerate() {
                    prefix = (prefix << w) | row[c] as u128;
                }
                (prefix, r as u32)
            })
            .collect();
        if exact {
            // Distinct row numbers break ties in row order, which makes this stable.
            prefixed.sort_unstable();
        } else {
            prefixed.sort_unstable_by(|a, b| {
                a.0.cmp(&b.0)
                    .then_with(|| {
                        let (ra, rb) = (self.row(a.1 as usize), self.row(b.1 as usize));
                        ra[packed_columns..].cmp(&rb[packed_columns..])
                    })
                    .then(a.1.cmp(&b.1))
            });
        }
        prefixed.into_iter().map(|(_, r)| r).collect()
    }

    pub(crate) fn equal(&self, a: usize, b: usize) -> bool {
        self.row(a) == self.row(b)
    }
}

/// Bits needed to hold values below `count` (at least 1 value).
fn bits_for(count: u64) -> u32 {
    (64 - count.saturating_sub(1).leading_zeros()).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(times: &[i64], ranks: &[Vec<u64>], time_at: usize) -> Vec<u32> {
        let mut order: Vec<u32> = (0..times.len() as u32).collect();
        order.sort_by_key(|&r| {
            let r = r as usize;
            let mut key: Vec<i64> = ranks.iter().map(|c| c[r] as i64).collect();
            key.insert(time_at, times[r]);
            key
        });
        order
    }

    #[test]
    fn packed_and_wide_orders_equal_a_naive_stable_sort() {
        let mut seed = 7u64;
        let mut next = |n: u64| {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (seed >> 33) % n
        };
        for (dims, cardinality) in [(0, 1), (1, 3), (3, 50), (5, 100_000), (12, 1 << 20)] {
            let rows = 500;
            let times: Vec<i64> = (0..rows).map(|_| next(7) as i64 * 1000 - 3000).collect();
            let ranks: Vec<Vec<u64>> = (0..dims)
                .map(|_| (0..rows).map(|_| next(cardinality)).collect())
                .collect();
            for time_at in 0..=dims {
                let keys = SortKeys::from_columns(&times, &ranks, time_at);
                assert_eq!(
                    keys.stable_order(),
                    naive(&times, &ranks, time_at),
                    "{dims} dims, time at {time_at}"
                );
            }
        }
    }

    #[test]
    fn bit_widths() {
        assert_eq!(bits_for(1), 1);
        assert_eq!(bits_for(2), 1);
        assert_eq!(bits_for(3), 2);
        assert_eq!(bits_for(256), 8);
        assert_eq!(bits_for(257), 9);
    }
}
