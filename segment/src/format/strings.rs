//! String dimensions: bit-packed dictionary ids, per-value roaring bitmaps, and
//! [`StringColumn`], the reader that ties them to the front-coded dictionary.
//!
//! Parts of a string column:
//! - `dictionary` (front-coded, see [`super::dictionary`]); null is id 0 when present;
//! - `ids`: `num_values` u64, width u8, 7 zero bytes, then the ids bit-packed (see
//!   [`super::bitpack`]) at `ceil(log2(dictionary_len))` bits; one per row, or the flattened ids of
//!   all rows for a multi-value column;
//! - `offsets` (multi-value only, longs encoding): `num_rows + 1` boundaries into the ids;
//! - `bitmaps` (when the schema asks for a bitmap index): one serialized roaring bitmap per
//!   dictionary id behind an offset table (see [`super::bitmaps`]). A row is in the bitmap of every id it
//!   holds, once; an empty multi-value row counts as null (it is in bitmap 0 when the dictionary
//!   has null).
//!
//! [`StringColumn::validate`] runs once per segment column (the segment caches it) and checks
//! what per-access checks cannot afford to: the whole dictionary, every id below the dictionary
//! length, offsets in order. After it, ids handed out are always valid dictionary ids.

use std::borrow::Cow;
use std::sync::OnceLock;

use roaring::RoaringBitmap;

use super::Names;
use super::bitmaps::BitmapList;
use super::bitpack::{self, BLOCK_VALUES, Scratch, Width};
use super::codec::{Cursor, DecodeResult, put_u64};
use super::dictionary::Dictionary;
use super::longs::LongColumn;
use crate::error::{Result, SegmentError};
use crate::sketch::{Coupon, HllSketch};

/// The id width for a dictionary of `dictionary_len` ids.
pub fn id_width(dictionary_len: usize) -> Width {
    Width::for_max(dictionary_len.saturating_sub(1) as u64)
}

/// Appends `ids` bit-packed at `width`.
pub fn encode_ids(ids: &[u32], width: Width, out: &mut Vec<u8>) {
    put_u64(out, ids.len() as u64);
    out.push(width.bits());
    out.extend_from_slice(&[0; 7]);
    let mut block = Vec::with_capacity(BLOCK_VALUES);
    for chunk in ids.chunks(BLOCK_VALUES) {
        block.clear();
        block.extend(chunk.iter().map(|&id| id as u64));
        bitpack::pack_block(&block, width, out);
    }
}

/// Bit-packed ids over borrowed bytes.
#[derive(Clone, Copy, Debug)]
pub struct PackedIds<'a> {
    len: usize,
    width: Width,
    data: &'a [u8],
}

impl<'a> PackedIds<'a> {
    pub fn parse(bytes: &'a [u8]) -> DecodeResult<PackedIds<'a>> {
        let mut cursor = Cursor::new(bytes);
        let len = cursor.usize("ids header")?;
        let bits = cursor.u8("ids header")?;
        let width = Width::new(bits)
            .filter(|w| w.bits() <= 32)
            .ok_or_else(|| format!("ids: bit width {bits} above 32"))?;
        cursor.expect_zeros(7, "ids header")?;
        let expected = bitpack::packed_bytes(len, width)
            .ok_or_else(|| format!("ids: {len} ids do not fit in memory"))?;
        let data = cursor.take(expected, "ids")?;
        cursor.expect_end("ids")?;
        Ok(PackedIds { len, width, data })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn width(&self) -> Width {
        self.width
    }

    fn block_bytes(&self, b: usize) -> &'a [u8] {
        let full = bitpack::block_bytes(self.width, BLOCK_VALUES);
        let values = (self.len - b * BLOCK_VALUES).min(BLOCK_VALUES);
        &self.data[b * full..b * full + bitpack::block_bytes(self.width, values)]
    }

    /// Panics if `i >= len()`.
    #[inline]
    pub fn get(&self, i: usize) -> u32 {
        assert!(i < self.len, "id {i} out of range for {} ids", self.len);
        bitpack::get(
            self.block_bytes(i / BLOCK_VALUES),
            self.width,
            i % BLOCK_VALUES,
        ) as u32
    }

    /// Decodes ids `start .. start + out.len()`. Panics if out of range.
    pub fn decode(&self, start: usize, out: &mut [u32]) {
        let end = start
            .checked_add(out.len())
            .filter(|&end| end <= self.len)
            .unwrap_or_else(|| {
                panic!(
                    "ids {start}+{} out of range for {} ids",
                    out.len(),
                    self.len
                )
            });
        let mut scratch = Scratch::new();
        bitpack::with_simd(|| {
            let mut at = start;
            while at < end {
                let (b, from) = (at / BLOCK_VALUES, at % BLOCK_VALUES);
                let take = (BLOCK_VALUES - from).min(end - at);
                let ids = scratch.unpack_narrow(self.block_bytes(b), self.width, from + take);
                out[at - start..][..take].copy_from_slice(&ids[from..]);
                at += take;
            }
        });
    }

    /// Calls `f` with each block of up to [`BLOCK_VALUES`] ids in order.
    pub fn for_each_block(&self, mut f: impl FnMut(&[u32])) {
        let mut scratch = Scratch::new();
        bitpack::with_simd(|| {
            for b in 0..self.len.div_ceil(BLOCK_VALUES) {
                let rows = (self.len - b * BLOCK_VALUES).min(BLOCK_VALUES);
                f(scratch.unpack_narrow(self.block_bytes(b), self.width, rows));
            }
        });
    }
}

/// A string dimension.
#[derive(Clone, Copy, Debug)]
pub struct StringColumn<'a> {
    names: Names<'a>,
    num_rows: usize,
    dictionary: Dictionary<'a>,
    ids: PackedIds<'a>,
    offsets: Option<LongColumn<'a>>,
    bitmaps: Option<BitmapList<'a>>,
    /// Where the segment keeps this column's [`ValueCoupons`] once computed.
    coupons: Option<&'a OnceLock<ValueCoupons>>,
}

/// The HLL sketch coupon of every value of a string column's dictionary, by id: distinct
/// counts add a value by its coupon instead of decoding and hashing its string on every query.
/// Null and the empty string (which sketches skip) have none. 4 bytes per dictionary value,
/// computed once per opened segment.
#[derive(Clone, Debug)]
pub struct ValueCoupons {
    coupons: Box<[Option<Coupon>]>,
}

impl ValueCoupons {
    /// The coupon of id `id` (`None` for null, the empty string, or an id out of range).
    #[inline]
    pub fn get(&self, id: u32) -> Option<Coupon> {
        self.coupons.get(id as usize).copied().flatten()
    }
}

impl<'a> StringColumn<'a> {
    /// Parses the parts and checks they agree with each other (cheap: headers and the offsets'
    /// block table); [`StringColumn::validate`] does the rest.
    pub(crate) fn new(
        names: Names<'a>,
        num_rows: usize,
        dictionary: &'a [u8],
        ids: &'a [u8],
        offsets: Option<&'a [u8]>,
        bitmaps: Option<&'a [u8]>,
    ) -> DecodeResult<StringColumn<'a>> {
        let dictionary = Dictionary::parse(dictionary)?;
        let ids = PackedIds::parse(ids)?;
        let offsets = offsets.map(LongColumn::parse).transpose()?;
        let bitmaps = bitmaps.map(BitmapList::parse).transpose()?;
        let expected_width = id_width(dictionary.len());
        if ids.width() != expected_width {
            return Err(format!(
                "ids are {} bits wide, a dictionary of {} needs {}",
                ids.width().bits(),
                dictionary.len(),
                expected_width.bits()
            ));
        }
        match &offsets {
            None if ids.len() != num_rows => {
                return Err(format!("{} ids for {num_rows} rows", ids.len()));
            }
            Some(offsets) if offsets.len() != num_rows + 1 => {
                return Err(format!("{} offsets for {num_rows} rows", offsets.len()));
            }
            _ => {}
        }
        if let Some(bitmaps) = &bitmaps
            && bitmaps.len() != dictionary.len()
        {
            return Err(format!(
                "{} bitmaps for a dictionary of {}",
                bitmaps.len(),
                dictionary.len()
            ));
        }
        Ok(StringColumn {
            names,
            num_rows,
            dictionary,
            ids,
            offsets,
            bitmaps,
            coupons: None,
        })
    }

    /// Keeps [`StringColumn::value_coupons`] in `cache` (the segment's, so every query shares it).
    pub(crate) fn with_coupon_cache(mut self, cache: &'a OnceLock<ValueCoupons>) -> Self {
        self.coupons = Some(cache);
        self
    }

    /// The sketch coupon of every dictionary value (see [`ValueCoupons`]): decoded and hashed
    /// once per opened segment, then shared.
    pub fn value_coupons(&self) -> Result<Cow<'a, ValueCoupons>> {
        let compute = || -> Result<ValueCoupons> {
            let mut coupons = vec![None; self.dictionary_len()];
            self.for_each_value(|id, text| {
                coupons[id as usize] = text.and_then(HllSketch::str_coupon);
            })?;
            Ok(ValueCoupons {
                coupons: coupons.into_boxed_slice(),
            })
        };
        match self.coupons {
            Some(cache) => {
                if let Some(done) = cache.get() {
                    return Ok(Cow::Borrowed(done));
                }
                let computed = compute()?;
                Ok(Cow::Borrowed(cache.get_or_init(|| computed)))
            }
            // A column outside an opened segment has nowhere to keep them.
            None => Ok(Cow::Owned(compute()?)),
        }
    }

    /// The O(data) checks: dictionary walk, ids below the dictionary length, offsets in order.
    pub(crate) fn validate(&self) -> DecodeResult<()> {
        self.dictionary.validate()?;
        let dictionary_len = self.dictionary.len() as u64;
        // A power-of-two dictionary cannot hold an out-of-range id at its width.
        if dictionary_len != 1u64 << self.ids.width().bits() {
            let mut max = None;
            self.ids
                .for_each_block(|block| max = max.max(block.iter().copied().max()));
            if let Some(max) = max.filter(|&m| m as u64 >= dictionary_len) {
                return Err(format!("id {max} outside a dictionary of {dictionary_len}"));
            }
        }
        if let Some(offsets) = &self.offsets {
            let mut previous = 0i64;
            let mut first = true;
            let mut bad = false;
            offsets.for_each_block(|block| {
                for &o in block {
                    bad |= (first && o != 0) || o < previous;
                    first = false;
                    previous = o;
                }
            });
            if bad || previous as u64 != self.ids.len() as u64 || previous > u32::MAX as i64 {
                return Err("multi-value offsets out of order".to_string());
            }
        }
        if let Some(bitmaps) = &self.bitmaps {
            bitmaps.validate()?;
        }
        Ok(())
    }

    fn corrupt(&self, message: String) -> SegmentError {
        self.names.corrupt(message)
    }

    pub fn num_rows(&self) -> usize {
        self.num_rows
    }

    /// Dictionary ids, null included.
    pub fn dictionary_len(&self) -> usize {
        self.dictionary.len()
    }

    /// Whether id 0 is null.
    pub fn has_null(&self) -> bool {
        self.dictionary.has_null()
    }

    pub fn is_multi_value(&self) -> bool {
        self.offsets.is_some()
    }

    pub fn has_bitmaps(&self) -> bool {
        self.bitmaps.is_some()
    }

    /// Bits per id.
    pub fn id_width(&self) -> u8 {
        self.ids.width().bits()
    }

    fn string_index(&self, id: u32) -> Result<Option<usize>> {
        if id as usize >= self.dictionary.len() {
            return Err(self.corrupt(format!(
                "dictionary id {id} out of range ({} ids)",
                self.dictionary.len()
            )));
        }
        Ok(match (self.has_null(), id) {
            (true, 0) => None,
            (true, id) => Some(id as usize - 1),
            (false, id) => Some(id as usize),
        })
    }

    /// The value of `id` (`None` for null). Borrowed from the file when the value heads a
    /// front-coding bucket, else rebuilt; to resolve many ids without allocating use
    /// [`StringColumn::value_into`] or [`StringColumn::for_each_value`].
    pub fn value(&self, id: u32) -> Result<Option<Cow<'a, str>>> {
        match self.string_index(id)? {
            None => Ok(None),
            Some(index) => self
                .dictionary
                .string(index)
                .map(Some)
                .map_err(|m| self.corrupt(m)),
        }
    }

    /// Writes the value of `id` into `buf` (cleared first); returns false for null.
    pub fn value_into(&self, id: u32, buf: &mut String) -> Result<bool> {
        buf.clear();
        let Some(index) = self.string_index(id)? else {
            return Ok(false);
        };
        let mut bytes = std::mem::take(buf).into_bytes();
        self.dictionary
            .string_into(index, &mut bytes)
            .map_err(|m| self.corrupt(m))?;
        *buf = String::from_utf8(bytes)
            .map_err(|_| self.corrupt(format!("dictionary string {index} is not valid UTF-8")))?;
        Ok(true)
    }

    /// Calls `f` with the value of each of `ids` in that order (`None` for null); ids in
    /// ascending order decode the dictionary in one forward pass.
    pub fn values_of(&self, ids: &[u32], mut f: impl FnMut(Option<&[u8]>)) -> Result<()> {
        let len = self.dictionary.len();
        if let Some(&bad) = ids.iter().find(|&&id| id as usize >= len) {
            return Err(self.corrupt(format!("dictionary id {bad} out of range ({len} ids)")));
        }
        let shift = self.has_null() as u32;
        let mut start = 0;
        while start < ids.len() {
            // Nulls one by one, runs of non-null ids through the dictionary.
            if shift == 1 && ids[start] == 0 {
                f(None);
                start += 1;
                continue;
            }
            let end = ids[start..]
                .iter()
                .position(|&id| shift == 1 && id == 0)
                .map_or(ids.len(), |p| start + p);
            self.dictionary
                .strings_of(
                    ids[start..end].iter().map(|&id| (id - shift) as usize),
                    |bytes| f(Some(bytes)),
                )
                .map_err(|m| self.corrupt(m))?;
            start = end;
        }
        Ok(())
    }

    /// Calls `f(id, value)` for every id in order, null first when present.
    pub fn for_each_value(&self, mut f: impl FnMut(u32, Option<&str>)) -> Result<()> {
        let shift = self.has_null() as u32;
        if self.has_null() {
            f(0, None);
        }
        self.dictionary
            .for_each(|index, text| f(index as u32 + shift, Some(text)))
            .map_err(|m| self.corrupt(m))
    }

    /// The id of `value`, by binary search over the dictionary.
    pub fn lookup(&self, value: &str) -> Option<u32> {
        // The dictionary was validated when the column was first opened, so `find` cannot fail;
        // a failure would mean "not found".
        let index = self.dictionary.find(value.as_bytes()).ok().flatten()?;
        Some(index as u32 + self.has_null() as u32)
    }

    /// The ids of `values` (ascending) that the dictionary holds, ascending: one forward pass
    /// (see [`Dictionary::find_sorted`](super::dictionary::Dictionary::find_sorted)).
    pub fn lookup_sorted(&self, values: &[String]) -> Vec<u32> {
        let mut ids = Vec::with_capacity(values.len());
        let offset = self.has_null() as u32;
        // Validated on first open, so a failure means "not found", as in `lookup`.
        let _ = self
            .dictionary
            .find_sorted(values.iter().map(|v| v.as_bytes()), |index| {
                ids.push(index as u32 + offset)
            });
        ids
    }

    /// The id of `value`, null included.
    pub fn lookup_value(&self, value: Option<&str>) -> Option<u32> {
        match value {
            None => self.has_null().then_some(0),
            Some(v) => self.lookup(v),
        }
    }

    /// The rows holding `id` in a single-value column whose rows are sorted by it (the leading
    /// column of a segment's sort order): one contiguous run, from the first row and row count
    /// of its bitmap. On a column in any other order the answer is meaningless; without a bitmap
    /// index, or on a multi-value column, it is `None`.
    pub fn sorted_run(&self, id: u32) -> Result<Option<std::ops::Range<u32>>> {
        let (Some(bitmaps), false) = (&self.bitmaps, self.is_multi_value()) else {
            return Ok(None);
        };
        let found = bitmaps
            .first_and_count(id as usize)
            .map_err(|m| self.corrupt(m))?;
        let Some((first, count)) = found else {
            return Ok(Some(0..0));
        };
        let end = u64::from(first) + count;
        if end > self.num_rows as u64 {
            return Err(self.corrupt(format!(
                "bitmap {id}: rows {first}+{count} beyond the segment's {} rows",
                self.num_rows
            )));
        }
        Ok(Some(first..end as u32))
    }

    /// Replaces `out` with the ids of `row`. Panics if `row >= num_rows()`.
    pub fn row_ids(&self, row: usize, out: &mut Vec<u32>) {
        assert!(
            row < self.num_rows,
            "row {row} out of range for {} rows",
            self.num_rows
        );
        out.clear();
        match &self.offsets {
            None => out.push(self.ids.get(row)),
            Some(offsets) => {
                let (start, end) = (offsets.get(row) as usize, offsets.get(row + 1) as usize);
                out.resize(end - start, 0);
                self.ids.decode(start, out);
            }
        }
    }

    /// Decodes the ids of rows `start_row .. start_row + out.len()` of a single-value column.
    pub fn decode_ids(&self, start_row: usize, out: &mut [u32]) -> Result<()> {
        if self.is_multi_value() {
            return Err(SegmentError::Schema(format!(
                "column {} is multi-value: use row_ids or for_each_row",
                self.names.column
            )));
        }
        if start_row
            .checked_add(out.len())
            .is_none_or(|end| end > self.num_rows)
        {
            return Err(SegmentError::Schema(format!(
                "column {}: rows {start_row}+{} out of range for {} rows",
                self.names.column,
                out.len(),
                self.num_rows
            )));
        }
        self.ids.decode(start_row, out);
        Ok(())
    }

    /// Calls `f` with blocks of ids of a single-value column (or of the flattened ids of a
    /// multi-value one), in order.
    pub fn for_each_id_block(&self, f: impl FnMut(&[u32])) {
        self.ids.for_each_block(f);
    }

    /// Calls `f(row, ids)` for every row in order (single- or multi-value).
    pub fn for_each_row(&self, mut f: impl FnMut(usize, &[u32])) {
        match &self.offsets {
            None => {
                let mut row = 0;
                self.ids.for_each_block(|block| {
                    for id in block {
                        f(row, std::slice::from_ref(id));
                        row += 1;
                    }
                });
            }
            Some(offsets) => {
                let mut ids = vec![0u32; self.ids.len()];
                self.ids.decode(0, &mut ids);
                let mut previous: Option<usize> = None;
                let mut row = 0;
                offsets.for_each_block(|block| {
                    for &o in block {
                        let o = o as usize;
                        if let Some(start) = previous {
                            f(row, &ids[start..o]);
                            row += 1;
                        }
                        previous = Some(o);
                    }
                });
            }
        }
    }

    /// Calls `f` with the rows within `rows` that hold `id`, ascending, read from the bitmap
    /// index in place (nothing is allocated).
    pub fn for_each_bitmap_row(
        &self,
        id: u32,
        rows: std::ops::Range<u32>,
        f: impl FnMut(u32),
    ) -> Result<()> {
        let Some(bitmaps) = &self.bitmaps else {
            return Err(SegmentError::Schema(format!(
                "column {} has no bitmap index",
                self.names.column
            )));
        };
        bitmaps
            .for_each_row(id as usize, self.num_rows, rows, f)
            .map_err(|m| self.corrupt(m))
    }

    /// The rows holding `id` (each row once).
    pub fn bitmap(&self, id: u32) -> Result<RoaringBitmap> {
        let Some(bitmaps) = &self.bitmaps else {
            return Err(SegmentError::Schema(format!(
                "column {} has no bitmap index",
                self.names.column
            )));
        };
        bitmaps
            .get(id as usize, self.num_rows)
            .map_err(|m| self.corrupt(m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(ids: &[u32], dictionary_len: usize) -> Vec<u8> {
        let mut out = Vec::new();
        encode_ids(ids, id_width(dictionary_len), &mut out);
        out
    }

    #[test]
    fn ids_round_trip_and_decode_any_range() {
        let ids: Vec<u32> = (0..2500u32).map(|i| (i * 7919) % 100_003).collect();
        let bytes = packed(&ids, 100_003);
        let column = PackedIds::parse(&bytes).unwrap();
        assert_eq!(column.width().bits(), 17);
        assert_eq!(column.len(), ids.len());
        for (start, len) in [(0, 2500), (1000, 48), (1023, 2), (2499, 1), (5, 0)] {
            let mut out = vec![0u32; len];
            column.decode(start, &mut out);
            assert_eq!(out, &ids[start..start + len]);
        }
        let mut seen = Vec::new();
        column.for_each_block(|block| seen.extend_from_slice(block));
        assert_eq!(seen, ids);
        assert!(ids.iter().enumerate().all(|(i, &id)| column.get(i) == id));
    }

    #[test]
    fn id_widths_follow_the_dictionary() {
        assert_eq!(id_width(0).bits(), 0);
        assert_eq!(id_width(1).bits(), 0);
        assert_eq!(id_width(2).bits(), 1);
        assert_eq!(id_width(200).bits(), 8);
        assert_eq!(id_width(1 << 20).bits(), 20);
        assert_eq!(id_width((1 << 20) + 1).bits(), 21);
    }

    #[test]
    fn bad_headers_are_errors() {
        let bytes = packed(&[1, 2, 3], 4);
        let mut huge = bytes.clone();
        huge[..8].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(PackedIds::parse(&huge).is_err());
        let mut wide = bytes.clone();
        wide[8] = 33;
        assert!(PackedIds::parse(&wide).unwrap_err().contains("above 32"));
        let mut reserved = bytes.clone();
        reserved[9] = 1;
        assert!(PackedIds::parse(&reserved).is_err());
        assert!(PackedIds::parse(&bytes[..bytes.len() - 1]).is_err());
    }
}
