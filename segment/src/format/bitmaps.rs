//! A string dimension's bitmap index: one serialized roaring bitmap per dictionary id behind an
//! offset table (`count` u64, `count + 1` u64 offsets into the data, then the bitmaps).
//! [`BitmapList::validate`] checks the table once; [`BitmapList::get`] bounds-checks each bitmap
//! and the rows it holds.

use roaring::RoaringBitmap;

use super::codec::{Cursor, DecodeResult, put_u64, u64_at};

/// Roaring's portable format (RoaringFormatSpec): cookies, and the most values an array
/// container holds (more are a 65,536-bit bitmap container).
const COOKIE_NO_RUNS: u32 = 12346;
const COOKIE_RUNS: u16 = 12347;
const RUNS_OFFSETS_FROM: usize = 4;
const ARRAY_MAX: usize = 4096;

/// The header of one bitmap in roaring's portable format, read in place.
struct Serialized<'b> {
    bytes: &'b [u8],
    /// Containers.
    size: usize,
    run_flags: Option<&'b [u8]>,
    /// Where the (key, cardinality - 1) descriptions start.
    descriptions: usize,
    /// Where the first container's body starts.
    bodies: usize,
}

impl<'b> Serialized<'b> {
    fn parse(bytes: &'b [u8]) -> DecodeResult<Serialized<'b>> {
        let mut header = Serialized {
            bytes,
            size: 0,
            run_flags: None,
            descriptions: 0,
            bodies: 0,
        };
        let cookie = header.u32_at(0)?;
        let (size, run_flags, at) = if cookie == COOKIE_NO_RUNS {
            (header.u32_at(4)? as usize, None, 8)
        } else if cookie as u16 == COOKIE_RUNS {
            let size = (cookie >> 16) as usize + 1;
            let flags = bytes
                .get(4..4 + size.div_ceil(8))
                .ok_or_else(|| "truncated run flags".to_string())?;
            (size, Some(flags), 4 + size.div_ceil(8))
        } else {
            return Err(format!("unknown cookie {cookie}"));
        };
        let mut bodies = at + size * 4;
        if run_flags.is_none() || size >= RUNS_OFFSETS_FROM {
            bodies += size * 4; // the offset header: containers are walked in order instead
        }
        header.size = size;
        header.run_flags = run_flags;
        header.descriptions = at;
        header.bodies = bodies;
        Ok(header)
    }

    fn u16_at(&self, at: usize) -> DecodeResult<u16> {
        self.bytes
            .get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or_else(|| format!("truncated at byte {at}"))
    }

    fn u32_at(&self, at: usize) -> DecodeResult<u32> {
        self.bytes
            .get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| format!("truncated at byte {at}"))
    }

    /// Container `c`'s key (the rows' high 16 bits) and cardinality.
    fn description(&self, c: usize) -> DecodeResult<(u32, usize)> {
        let key = u32::from(self.u16_at(self.descriptions + c * 4)?);
        let cardinality = usize::from(self.u16_at(self.descriptions + c * 4 + 2)?) + 1;
        Ok((key, cardinality))
    }

    fn is_run(&self, c: usize) -> bool {
        self.run_flags
            .is_some_and(|flags| flags[c / 8] & (1 << (c % 8)) != 0)
    }

    /// The length of container `c`'s body, which starts at `at`.
    fn body_length(&self, c: usize, cardinality: usize, at: usize) -> DecodeResult<usize> {
        Ok(if self.is_run(c) {
            2 + usize::from(self.u16_at(at)?) * 4
        } else if cardinality <= ARRAY_MAX {
            cardinality * 2
        } else {
            8192
        })
    }
}

/// The smallest row of one serialized bitmap and how many rows it holds (`None` when empty),
/// reading the header and the first container's first values only.
fn first_and_count(bytes: &[u8]) -> DecodeResult<Option<(u32, u64)>> {
    let header = Serialized::parse(bytes)?;
    if header.size == 0 {
        return Ok(None);
    }
    let mut count = 0u64;
    for c in 0..header.size {
        count += header.description(c)?.1 as u64;
    }
    let (key, cardinality) = header.description(0)?;
    let at = header.bodies;
    let low = if header.is_run(0) {
        header.u16_at(at + 2)?
    } else if cardinality <= ARRAY_MAX {
        header.u16_at(at)?
    } else {
        let words = bytes
            .get(at..at + 8192)
            .ok_or_else(|| "container 0 truncated".to_string())?;
        let (w, word) = words
            .chunks_exact(8)
            .map(|w| u64::from_le_bytes(w.try_into().expect("8 bytes")))
            .enumerate()
            .find(|(_, word)| *word != 0)
            .ok_or_else(|| "container 0: an empty bitmap container".to_string())?;
        (w as u32 * 64 + word.trailing_zeros()) as u16
    };
    Ok(Some(((key << 16) | u32::from(low), count)))
}

/// Walks one bitmap in roaring's portable format in place (see
/// [`BitmapList::for_each_row`]).
fn for_each_serialized(
    bytes: &[u8],
    num_rows: usize,
    rows: std::ops::Range<u32>,
    mut f: impl FnMut(u32),
) -> DecodeResult<()> {
    let header = Serialized::parse(bytes)?;
    let mut at = header.bodies;
    let mut emit = |row: u32| -> DecodeResult<()> {
        if row as usize >= num_rows {
            return Err(format!("row {row} beyond the segment's {num_rows} rows"));
        }
        if rows.contains(&row) {
            f(row);
        }
        Ok(())
    };
    for c in 0..header.size {
        let (key, cardinality) = header.description(c)?;
        let is_run = header.is_run(c);
        let length = header.body_length(c, cardinality, at)?;
        let body = bytes
            .get(at..at + length)
            .ok_or_else(|| format!("container {c} truncated"))?;
        at += length;
        let (low, high) = (key << 16, (key << 16) | 0xFFFF);
        if high < rows.start || low >= rows.end {
            continue;
        }
        if is_run {
            for run in body[2..].chunks_exact(4) {
                let start = u32::from(u16::from_le_bytes([run[0], run[1]]));
                let extra = u32::from(u16::from_le_bytes([run[2], run[3]]));
                for v in start..=(start + extra).min(0xFFFF) {
                    emit(low | v)?;
                }
            }
        } else if cardinality <= ARRAY_MAX {
            for v in body.chunks_exact(2) {
                emit(low | u32::from(u16::from_le_bytes([v[0], v[1]])))?;
            }
        } else {
            for (w, word) in body.chunks_exact(8).enumerate() {
                let mut bits = u64::from_le_bytes(word.try_into().expect("8 bytes"));
                while bits != 0 {
                    emit(low | (w as u32 * 64 + bits.trailing_zeros()))?;
                    bits &= bits - 1;
                }
            }
        }
    }
    if at != bytes.len() {
        return Err(format!("{} bytes, {at} used", bytes.len()));
    }
    Ok(())
}

/// Appends an offset table and the `count` serialized `bitmaps`, serializing each as it comes
/// so that a large dictionary's bitmaps are never all in memory at once.
pub fn encode_bitmaps(
    count: usize,
    bitmaps: impl Iterator<Item = RoaringBitmap>,
    out: &mut Vec<u8>,
) {
    put_u64(out, count as u64);
    let table = out.len();
    out.resize(table + (count + 1) * 8, 0);
    let data = out.len();
    for (i, bitmap) in bitmaps.take(count).enumerate() {
        // Writing into a Vec cannot fail.
        let _ = bitmap.serialize_into(&mut *out);
        let end = (out.len() - data) as u64;
        out[table + (i + 1) * 8..table + (i + 2) * 8].copy_from_slice(&end.to_le_bytes());
    }
}

/// Serialized roaring bitmaps with an offset table, over borrowed bytes.
#[derive(Clone, Copy, Debug)]
pub struct BitmapList<'a> {
    count: usize,
    offsets: &'a [u8],
    data: &'a [u8],
}

impl<'a> BitmapList<'a> {
    pub fn parse(bytes: &'a [u8]) -> DecodeResult<BitmapList<'a>> {
        let mut cursor = Cursor::new(bytes);
        let count = cursor.usize("bitmaps header")?;
        let table = count
            .checked_add(1)
            .and_then(|n| n.checked_mul(8))
            .ok_or_else(|| "bitmaps: offset table too large".to_string())?;
        let offsets = cursor.take(table, "bitmaps offset table")?;
        Ok(BitmapList {
            count,
            offsets,
            data: cursor.rest(),
        })
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Offsets start at 0, never decrease and end at the data length.
    pub fn validate(&self) -> DecodeResult<()> {
        let mut previous = 0u64;
        for i in 0..=self.count {
            let offset = u64_at(self.offsets, i * 8);
            if (i == 0 && offset != 0) || offset < previous {
                return Err(format!("bitmaps: offset {i} ({offset}) out of order"));
            }
            previous = offset;
        }
        if previous != self.data.len() as u64 {
            return Err(format!(
                "bitmaps: offsets end at {previous}, blob has {} bytes",
                self.data.len()
            ));
        }
        Ok(())
    }

    /// The serialized bytes of bitmap `i`.
    fn bytes(&self, i: usize) -> DecodeResult<&'a [u8]> {
        if i >= self.count {
            return Err(format!(
                "bitmap {i} out of range for {} bitmaps",
                self.count
            ));
        }
        let (start, end) = (u64_at(self.offsets, i * 8), u64_at(self.offsets, i * 8 + 8));
        usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.data.get(s..e))
            .ok_or_else(|| format!("bitmap {i}: bytes {start}..{end} out of bounds"))
    }

    /// Calls `f` with the rows of bitmap `i` that lie in `rows`, ascending, reading the
    /// serialized bitmap in place: no allocation, and containers outside `rows` are skipped
    /// unread. A malformed bitmap or a row at or beyond `num_rows` is an error (rows before it
    /// may have been passed to `f`).
    pub fn for_each_row(
        &self,
        i: usize,
        num_rows: usize,
        rows: std::ops::Range<u32>,
        f: impl FnMut(u32),
    ) -> DecodeResult<()> {
        for_each_serialized(self.bytes(i)?, num_rows, rows, f)
            .map_err(|e| format!("bitmap {i}: {e}"))
    }

    /// The smallest row of bitmap `i` and how many rows it holds (`None` when it is empty),
    /// from its header and first values alone.
    pub fn first_and_count(&self, i: usize) -> DecodeResult<Option<(u32, u64)>> {
        first_and_count(self.bytes(i)?).map_err(|e| format!("bitmap {i}: {e}"))
    }

    /// Deserializes bitmap `i`, checking it uses its bytes exactly and holds rows below
    /// `num_rows`.
    pub fn get(&self, i: usize, num_rows: usize) -> DecodeResult<RoaringBitmap> {
        let bytes = self.bytes(i)?;
        // The blob's checksum was verified when it was first read, so the containers need no
        // second validation pass (roaring's unchecked read is still memory-safe); the size and
        // row bounds below keep a bad writer's bitmap from reaching a query.
        let bitmap = RoaringBitmap::deserialize_unchecked_from(bytes)
            .map_err(|e| format!("bitmap {i}: {e}"))?;
        if bitmap.serialized_size() != bytes.len() {
            return Err(format!(
                "bitmap {i}: does not fill its {} bytes",
                bytes.len()
            ));
        }
        if bitmap.max().is_some_and(|max| max as usize >= num_rows) {
            return Err(format!(
                "bitmap {i}: row beyond the segment's {num_rows} rows"
            ));
        }
        Ok(bitmap)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Bitmaps of every container kind: sparse values (arrays), dense ones (bitmaps), and
    /// with `runs`, roaring's run containers.
    fn bitmap_strategy() -> impl Strategy<Value = RoaringBitmap> {
        (
            proptest::collection::vec(0u32..300_000, 0..300),
            proptest::collection::vec((0u32..250_000, 1u32..20_000), 0..4),
            any::<bool>(),
        )
            .prop_map(|(values, ranges, runs)| {
                let mut bitmap: RoaringBitmap = values.into_iter().collect();
                for (start, len) in ranges {
                    bitmap.insert_range(start..start + len);
                }
                if runs {
                    bitmap.optimize();
                } else {
                    bitmap.remove_run_compression();
                }
                bitmap
            })
    }

    proptest! {
        #[test]
        fn rows_read_in_place_equal_the_deserialized_bitmap(
            bitmaps in proptest::collection::vec(bitmap_strategy(), 1..4),
            from in 0u32..300_000,
            len in 0u32..300_000,
        ) {
            let bytes = encoded(&bitmaps);
            let list = BitmapList::parse(&bytes).unwrap();
            let rows = from..from.saturating_add(len);
            for (i, bitmap) in bitmaps.iter().enumerate() {
                let mut got = Vec::new();
                list.for_each_row(i, 300_000, rows.clone(), |r| got.push(r)).unwrap();
                let expected: Vec<u32> = bitmap.range(rows.clone()).collect();
                prop_assert_eq!(got, expected);
            }
        }

        #[test]
        fn first_row_and_count_read_in_place_equal_the_bitmap(
            bitmaps in proptest::collection::vec(bitmap_strategy(), 1..4),
        ) {
            let bytes = encoded(&bitmaps);
            let list = BitmapList::parse(&bytes).unwrap();
            for (i, bitmap) in bitmaps.iter().enumerate() {
                let expected = bitmap.min().map(|min| (min, bitmap.len()));
                prop_assert_eq!(list.first_and_count(i).unwrap(), expected);
            }
        }
    }

    #[test]
    fn rows_read_in_place_refuse_bad_bytes() {
        let bitmap: RoaringBitmap = [1u32, 70_000, 1_000_000].into_iter().collect();
        let bytes = encoded(std::slice::from_ref(&bitmap));
        let list = BitmapList::parse(&bytes).unwrap();
        let all = 0..u32::MAX;
        assert!(
            list.for_each_row(0, 1_000_000, all.clone(), |_| {})
                .unwrap_err()
                .contains("beyond")
        );
        let mut serialized = Vec::new();
        bitmap.serialize_into(&mut serialized).unwrap();
        for cut in 0..serialized.len() {
            assert!(
                for_each_serialized(&serialized[..cut], 2_000_000, all.clone(), |_| {}).is_err()
            );
        }
        let mut cookie = serialized.clone();
        cookie[0] ^= 0xFF;
        assert!(for_each_serialized(&cookie, 2_000_000, all, |_| {}).is_err());
    }

    fn encoded(bitmaps: &[RoaringBitmap]) -> Vec<u8> {
        let mut out = Vec::new();
        encode_bitmaps(bitmaps.len(), bitmaps.iter().cloned(), &mut out);
        out
    }

    #[test]
    fn bitmaps_round_trip() {
        let bitmaps: Vec<RoaringBitmap> = vec![
            RoaringBitmap::new(),
            (0..100).collect(),
            [3u32, 70_000, 1_000_000].into_iter().collect(),
        ];
        let bytes = encoded(&bitmaps);
        let list = BitmapList::parse(&bytes).unwrap();
        list.validate().unwrap();
        assert_eq!(list.len(), 3);
        for (i, expected) in bitmaps.iter().enumerate() {
            assert_eq!(&list.get(i, 1_000_001).unwrap(), expected);
        }
        assert!(list.get(3, 1_000_001).is_err());
        // A row beyond the segment is an error, not a bitmap a query could index with.
        assert!(list.get(2, 1_000_000).unwrap_err().contains("beyond"));
    }

    #[test]
    fn bad_tables_are_errors() {
        let bitmaps: Vec<RoaringBitmap> = vec![(0..10).collect(), (5..7).collect()];
        let bytes = encoded(&bitmaps);
        // Swap the two end offsets: out of order.
        let mut swapped = bytes.clone();
        let (a, b) = (8 + 8, 8 + 16);
        let first: [u8; 8] = swapped[a..a + 8].try_into().unwrap();
        let second: [u8; 8] = swapped[b..b + 8].try_into().unwrap();
        swapped[a..a + 8].copy_from_slice(&second);
        swapped[b..b + 8].copy_from_slice(&first);
        assert!(BitmapList::parse(&swapped).unwrap().validate().is_err());
        let mut long_tail = bytes.clone();
        long_tail.push(0);
        assert!(BitmapList::parse(&long_tail).unwrap().validate().is_err());
        for cut in 0..32 {
            assert!(
                BitmapList::parse(&bytes[..cut])
                    .and_then(|l| l.validate())
                    .is_err()
            );
        }
        // Garbage where a bitmap should be.
        let mut garbage = bytes.clone();
        let data = 8 + 3 * 8;
        garbage[data] ^= 0xff;
        assert!(BitmapList::parse(&garbage).unwrap().get(0, 100).is_err());
    }
}
