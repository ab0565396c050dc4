//! A string dimension's bitmap index: one serialized roaring bitmap per dictionary id behind an
//! offset table (`count` u64, `count + 1` u64 offsets into the data, then the bitmaps).
//! [`BitmapList::validate`] checks the table once; [`BitmapList::get`] bounds-checks each bitmap
//! and the rows it holds.

use roaring::RoaringBitmap;

use super::codec::{Cursor, DecodeResult, put_u64, u64_at};

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

    /// Deserializes bitmap `i`, checking it uses its bytes exactly and holds rows below
    /// `num_rows`.
    pub fn get(&self, i: usize, num_rows: usize) -> DecodeResult<RoaringBitmap> {
        if i >= self.count {
            return Err(format!(
                "bitmap {i} out of range for {} bitmaps",
                self.count
            ));
        }
        let (start, end) = (u64_at(self.offsets, i * 8), u64_at(self.offsets, i * 8 + 8));
        let bytes = usize::try_from(start)
            .ok()
            .zip(usize::try_from(end).ok())
            .and_then(|(s, e)| self.data.get(s..e))
            .ok_or_else(|| format!("bitmap {i}: bytes {start}..{end} out of bounds"))?;
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
