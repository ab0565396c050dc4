//! Front-coded string dictionaries: the sorted, unique values of a string dimension.
//!
//! Strings are grouped in buckets of [`BUCKET_STRINGS`]. A bucket stores its first string in full
//! (varint length + bytes) and each following one as (varint shared-prefix length, varint suffix
//! length, suffix bytes) relative to the previous string. A table of bucket offsets allows a
//! binary search over the buckets' first strings, which are stored whole and compared in place.
//!
//! Layout: `num_strings` u64 (non-null values), `has_null` u8, bucket size u8, 6 zero bytes,
//! then one u64 offset per bucket (into the data region), then the buckets.
//!
//! Ids: when `has_null`, id 0 is null and string `i` has id `i + 1`; otherwise string `i` has id
//! `i`. [`Dictionary::validate`] walks every bucket once (bounds, sortedness, UTF-8); the readers
//! still bounds-check every access, so a dictionary that skipped validation can only produce
//! errors, never a panic.

use std::borrow::Cow;
use std::cmp::Ordering;

use super::codec::{Cursor, DecodeResult, put_u64, put_varint, u64_at};

/// Strings per front-coding bucket.
pub const BUCKET_STRINGS: usize = 16;

const HEADER_BYTES: usize = 16;

/// Appends the dictionary of `values` (sorted, unique, without null) in the front-coded encoding.
pub fn encode_dictionary<'s>(
    values: impl ExactSizeIterator<Item = &'s str>,
    has_null: bool,
    out: &mut Vec<u8>,
) {
    let num_strings = values.len();
    put_u64(out, num_strings as u64);
    out.push(has_null as u8);
    out.push(BUCKET_STRINGS as u8);
    out.extend_from_slice(&[0; 6]);
    let mut data = Vec::new();
    let mut offsets = Vec::with_capacity(num_strings.div_ceil(BUCKET_STRINGS));
    let mut previous: &[u8] = &[];
    for (i, value) in values.enumerate() {
        let value = value.as_bytes();
        if i.is_multiple_of(BUCKET_STRINGS) {
            offsets.push(data.len() as u64);
            put_varint(&mut data, value.len() as u64);
            data.extend_from_slice(value);
        } else {
            let shared = previous
                .iter()
                .zip(value)
                .take_while(|(a, b)| a == b)
                .count();
            put_varint(&mut data, shared as u64);
            put_varint(&mut data, (value.len() - shared) as u64);
            data.extend_from_slice(&value[shared..]);
        }
        previous = value;
    }
    for offset in offsets {
        put_u64(out, offset);
    }
    out.extend_from_slice(&data);
}

/// A front-coded dictionary over borrowed bytes.
#[derive(Clone, Copy, Debug)]
pub struct Dictionary<'a> {
    num_strings: usize,
    has_null: bool,
    offsets: &'a [u8],
    data: &'a [u8],
}

impl<'a> Dictionary<'a> {
    /// Checks the header and the size of the bucket table (O(1)); see [`Dictionary::validate`].
    pub fn parse(bytes: &'a [u8]) -> DecodeResult<Dictionary<'a>> {
        let mut cursor = Cursor::new(bytes);
        let num_strings = cursor.usize("dictionary header")?;
        let has_null = match cursor.u8("dictionary header")? {
            0 => false,
            1 => true,
            other => return Err(format!("dictionary: null flag {other}, expected 0 or 1")),
        };
        let bucket = cursor.u8("dictionary header")? as usize;
        if bucket != BUCKET_STRINGS {
            return Err(format!(
                "dictionary: bucket size {bucket}, expected {BUCKET_STRINGS}"
            ));
        }
        cursor.expect_zeros(6, "dictionary header")?;
        let table_bytes = num_strings
            .div_ceil(BUCKET_STRINGS)
            .checked_mul(8)
            .ok_or_else(|| "dictionary: bucket table too large".to_string())?;
        let offsets = cursor.take(table_bytes, "dictionary bucket table")?;
        debug_assert_eq!(cursor.position(), HEADER_BYTES + table_bytes);
        Ok(Dictionary {
            num_strings,
            has_null,
            offsets,
            data: cursor.rest(),
        })
    }

    /// Walks every bucket: offsets consistent, lengths in bounds, strings valid UTF-8, strictly
    /// increasing and the data fully used. O(bytes); done once per segment column.
    pub fn validate(&self) -> DecodeResult<()> {
        let mut current = Vec::new();
        let mut previous = Vec::new();
        let mut end = 0usize;
        for b in 0..self.num_buckets() {
            let offset = u64_at(self.offsets, b * 8);
            if offset != end as u64 {
                return Err(format!(
                    "dictionary bucket {b}: offset {offset}, expected {end}"
                ));
            }
            let mut cursor = Cursor::new(&self.data[end..]);
            let count = (self.num_strings - b * BUCKET_STRINGS).min(BUCKET_STRINGS);
            for k in 0..count {
                previous.clear();
                previous.extend_from_slice(&current);
                next_string(&mut cursor, k, &mut current)?;
                let index = b * BUCKET_STRINGS + k;
                if std::str::from_utf8(&current).is_err() {
                    return Err(format!("dictionary string {index} is not valid UTF-8"));
                }
                if index > 0 && current <= previous {
                    return Err(format!(
                        "dictionary string {index} is not above the one before"
                    ));
                }
            }
            end += cursor.position();
        }
        if end != self.data.len() {
            return Err(format!(
                "dictionary: buckets take {end} bytes, blob has {}",
                self.data.len()
            ));
        }
        Ok(())
    }

    /// Non-null strings.
    pub fn num_strings(&self) -> usize {
        self.num_strings
    }

    pub fn has_null(&self) -> bool {
        self.has_null
    }

    /// Ids, null included.
    pub fn len(&self) -> usize {
        self.num_strings + self.has_null as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn num_buckets(&self) -> usize {
        self.offsets.len() / 8
    }

    fn bucket(&self, b: usize) -> DecodeResult<Cursor<'a>> {
        let offset = u64_at(self.offsets, b * 8);
        usize::try_from(offset)
            .ok()
            .and_then(|at| self.data.get(at..))
            .map(Cursor::new)
            .ok_or_else(|| format!("dictionary bucket {b}: offset {offset} out of bounds"))
    }

    /// The first string of bucket `b`, borrowed.
    fn bucket_head(&self, b: usize) -> DecodeResult<&'a [u8]> {
        let mut cursor = self.bucket(b)?;
        let len = cursor.varint("dictionary string length")?;
        let len =
            usize::try_from(len).map_err(|_| format!("dictionary: length {len} too large"))?;
        cursor.take(len, "dictionary string")
    }

    /// Writes string `index` (0-based among non-null strings) into `buf`.
    pub fn string_into(&self, index: usize, buf: &mut Vec<u8>) -> DecodeResult<()> {
        if index >= self.num_strings {
            return Err(format!(
                "string {index} out of range for {} strings",
                self.num_strings
            ));
        }
        let mut cursor = self.bucket(index / BUCKET_STRINGS)?;
        for k in 0..=index % BUCKET_STRINGS {
            next_string(&mut cursor, k, buf)?;
        }
        Ok(())
    }

    /// String `index`, borrowed from the file when it heads a bucket.
    pub fn string(&self, index: usize) -> DecodeResult<Cow<'a, str>> {
        if index.is_multiple_of(BUCKET_STRINGS) && index < self.num_strings {
            let head = self.bucket_head(index / BUCKET_STRINGS)?;
            return std::str::from_utf8(head)
                .map(Cow::Borrowed)
                .map_err(|_| format!("dictionary string {index} is not valid UTF-8"));
        }
        let mut buf = Vec::new();
        self.string_into(index, &mut buf)?;
        String::from_utf8(buf)
            .map(Cow::Owned)
            .map_err(|_| format!("dictionary string {index} is not valid UTF-8"))
    }

    /// The index of `value` among the non-null strings: a binary search over bucket heads, then
    /// a walk through one bucket.
    pub fn find(&self, value: &[u8]) -> DecodeResult<Option<usize>> {
        let buckets = self.num_buckets();
        // The last bucket whose head is <= value.
        let (mut lo, mut hi) = (0usize, buckets);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.bucket_head(mid)?.cmp(value) {
                Ordering::Less => lo = mid + 1,
                Ordering::Equal => return Ok(Some(mid * BUCKET_STRINGS)),
                Ordering::Greater => hi = mid,
            }
        }
        if lo == 0 {
            return Ok(None);
        }
        let b = lo - 1;
        let mut cursor = self.bucket(b)?;
        let count = (self.num_strings - b * BUCKET_STRINGS).min(BUCKET_STRINGS);
        let mut current = Vec::new();
        for k in 0..count {
            next_string(&mut cursor, k, &mut current)?;
            match current.as_slice().cmp(value) {
                Ordering::Less => {}
                Ordering::Equal => return Ok(Some(b * BUCKET_STRINGS + k)),
                Ordering::Greater => return Ok(None),
            }
        }
        Ok(None)
    }

    /// The indexes of `values` (ascending) that are in the dictionary, in one forward pass:
    /// each search gallops on from the bucket where the previous one ended, so `n` values cost
    /// about `n` times the log of the gap between them rather than of the whole dictionary.
    pub fn find_sorted<'v>(
        &self,
        values: impl IntoIterator<Item = &'v [u8]>,
        mut found: impl FnMut(usize),
    ) -> DecodeResult<()> {
        let buckets = self.num_buckets();
        let mut current = Vec::new();
        // Every bucket before `start` has a head at most the values still to come.
        let mut start = 0usize;
        for value in values {
            if start >= buckets || self.bucket_head(start)? > value {
                continue;
            }
            // Gallop to a bucket whose head is past `value`, then search the last step.
            let (mut lo, mut hi, mut step) = (start, start + 1, 1);
            while hi < buckets && self.bucket_head(hi)? <= value {
                lo = hi;
                hi += step;
                step *= 2;
            }
            let mut hi = hi.min(buckets);
            let mut lo_next = lo + 1;
            while lo_next < hi {
                let mid = lo_next + (hi - lo_next) / 2;
                if self.bucket_head(mid)? <= value {
                    lo_next = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let b = lo_next - 1;
            start = b;
            let mut cursor = self.bucket(b)?;
            let count = (self.num_strings - b * BUCKET_STRINGS).min(BUCKET_STRINGS);
            for k in 0..count {
                next_string(&mut cursor, k, &mut current)?;
                match current.as_slice().cmp(value) {
                    Ordering::Less => {}
                    Ordering::Equal => {
                        found(b * BUCKET_STRINGS + k);
                        break;
                    }
                    Ordering::Greater => break,
                }
            }
        }
        Ok(())
    }

    /// Calls `f` with string `index` for each of `indexes`, in that order. Indexes that ascend
    /// within a bucket continue the bucket's decoding where the previous one stopped, so many
    /// indexes in ascending order cost about one pass over their buckets. Strings are not
    /// checked for UTF-8 here ([`Dictionary::validate`] does that once per column).
    pub fn strings_of(
        &self,
        indexes: impl IntoIterator<Item = usize>,
        mut f: impl FnMut(&[u8]),
    ) -> DecodeResult<()> {
        let mut current = Vec::new();
        // The bucket being decoded, its cursor and how many of its strings are decoded.
        let mut open: Option<(usize, Cursor<'a>, usize)> = None;
        for index in indexes {
            if index >= self.num_strings {
                return Err(format!(
                    "string {index} out of range for {} strings",
                    self.num_strings
                ));
            }
            let (b, k) = (index / BUCKET_STRINGS, index % BUCKET_STRINGS);
            let reuse =
                matches!(&open, Some((ob, _, done)) if *ob == b && *done <= k + 1 && *done > 0);
            if !reuse {
                open = Some((b, self.bucket(b)?, 0));
            }
            let (_, cursor, done) = open.as_mut().expect("opened");
            // `done` strings are decoded; the last of them is in `current`.
            if *done == k + 1 {
                f(&current);
                continue;
            }
            while *done <= k {
                next_string(cursor, *done, &mut current)?;
                *done += 1;
            }
            f(&current);
        }
        Ok(())
    }

    /// Calls `f(index, string)` for every non-null string in order: the fast way to read many.
    pub fn for_each(&self, mut f: impl FnMut(usize, &str)) -> DecodeResult<()> {
        let mut current = Vec::new();
        for b in 0..self.num_buckets() {
            let mut cursor = self.bucket(b)?;
            let count = (self.num_strings - b * BUCKET_STRINGS).min(BUCKET_STRINGS);
            for k in 0..count {
                next_string(&mut cursor, k, &mut current)?;
                let index = b * BUCKET_STRINGS + k;
                let text = std::str::from_utf8(&current)
                    .map_err(|_| format!("dictionary string {index} is not valid UTF-8"))?;
                f(index, text);
            }
        }
        Ok(())
    }
}

/// Decodes the `k`-th string of a bucket over the one before it in `buf`: front coding keeps
/// the shared prefix, so the buffer is cut to it and the suffix appended, in place.
fn next_string(cursor: &mut Cursor<'_>, k: usize, buf: &mut Vec<u8>) -> DecodeResult<()> {
    let shared = if k == 0 {
        0
    } else {
        let shared = cursor.varint("dictionary prefix length")?;
        if shared > buf.len() as u64 {
            return Err(format!(
                "dictionary: shared prefix {shared} longer than the previous string ({})",
                buf.len()
            ));
        }
        shared as usize
    };
    let suffix = cursor.varint("dictionary suffix length")?;
    let suffix =
        usize::try_from(suffix).map_err(|_| format!("dictionary: length {suffix} too large"))?;
    let bytes = cursor.take(suffix, "dictionary string")?;
    buf.truncate(shared);
    buf.extend_from_slice(bytes);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build(values: &[&str], has_null: bool) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_dictionary(values.iter().copied(), has_null, &mut bytes);
        bytes
    }

    #[test]
    fn strings_round_trip_and_are_found() {
        let owned: Vec<String> = (0..1000).map(|i| format!("value-{i:05}-é")).collect();
        let values: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        let bytes = build(&values, true);
        let dict = Dictionary::parse(&bytes).unwrap();
        dict.validate().unwrap();
        assert_eq!(dict.len(), 1001);
        assert!(dict.has_null());
        for (i, v) in values.iter().enumerate() {
            assert_eq!(dict.string(i).unwrap(), *v);
            assert_eq!(dict.find(v.as_bytes()).unwrap(), Some(i));
        }
        assert_eq!(dict.find(b"").unwrap(), None);
        assert_eq!(dict.find(b"value-00003").unwrap(), None);
        assert_eq!(dict.find(b"zzz").unwrap(), None);
        assert!(dict.string(1000).is_err());
        let mut seen = Vec::new();
        dict.for_each(|i, s| seen.push((i, s.to_string()))).unwrap();
        assert_eq!(seen.len(), 1000);
        assert!(seen.iter().all(|(i, s)| s == values[*i]));
        // Bucket heads are borrowed, others rebuilt.
        assert!(matches!(dict.string(16).unwrap(), Cow::Borrowed(_)));
        assert!(matches!(dict.string(17).unwrap(), Cow::Owned(_)));
    }

    /// Reading many indexes at once gives what one read per index gives, in the given order:
    /// ascending (continuing a bucket's decoding), repeated, descending and out of range.
    #[test]
    fn strings_of_equal_single_reads() {
        let owned: Vec<String> = (0..300)
            .map(|i| format!("w{:05}-{}", i * 7, i % 3))
            .collect();
        let values: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        let bytes = build(&values, false);
        let dict = Dictionary::parse(&bytes).unwrap();
        for indexes in [
            vec![0usize, 1, 2, 15, 16, 17, 17, 40, 299],
            vec![5, 5, 3, 100, 20, 21, 0],
            (0..300).collect(),
            (0..300).rev().collect(),
            vec![],
        ] {
            let mut got = Vec::new();
            dict.strings_of(indexes.iter().copied(), |b| {
                got.push(String::from_utf8(b.to_vec()).unwrap())
            })
            .unwrap();
            let expected: Vec<String> = indexes.iter().map(|&i| values[i].to_string()).collect();
            assert_eq!(got, expected);
        }
        assert!(dict.strings_of([3usize, 300], |_| {}).is_err());
    }

    /// A forward pass over ascending values finds what one search per value finds, for values
    /// before, between, inside and after the dictionary's buckets, dense and sparse.
    #[test]
    fn sorted_lookups_equal_single_lookups() {
        let owned: Vec<String> = (0..2000).map(|i| format!("v{:06}", i * 3)).collect();
        let values: Vec<&str> = owned.iter().map(|s| s.as_str()).collect();
        let bytes = build(&values, false);
        let dict = Dictionary::parse(&bytes).unwrap();
        let mut seed = 11u64;
        for (count, spread) in [
            (0, 1),
            (1, 6000),
            (5, 6000),
            (200, 6000),
            (3000, 7000),
            (50, 40),
        ] {
            let mut queries: Vec<String> = (0..count)
                .map(|_| {
                    seed = seed
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    format!("v{:06}", (seed >> 33) % spread)
                })
                .chain(["".to_string(), "a".to_string(), "w".to_string()])
                .collect();
            queries.sort();
            queries.dedup();
            let expected: Vec<usize> = queries
                .iter()
                .filter_map(|q| dict.find(q.as_bytes()).unwrap())
                .collect();
            let mut got = Vec::new();
            dict.find_sorted(queries.iter().map(|q| q.as_bytes()), |i| got.push(i))
                .unwrap();
            assert_eq!(got, expected, "{count} values below {spread}");
        }
        let empty = build(&[], false);
        let mut got = Vec::new();
        Dictionary::parse(&empty)
            .unwrap()
            .find_sorted([&b"a"[..]], |i| got.push(i))
            .unwrap();
        assert!(got.is_empty());
    }

    #[test]
    fn empty_and_tiny_dictionaries() {
        let bytes = build(&[], false);
        let dict = Dictionary::parse(&bytes).unwrap();
        dict.validate().unwrap();
        assert_eq!(dict.len(), 0);
        assert_eq!(dict.find(b"a").unwrap(), None);
        let bytes = build(&["", "a"], false);
        let dict = Dictionary::parse(&bytes).unwrap();
        dict.validate().unwrap();
        assert_eq!(dict.find(b"").unwrap(), Some(0));
        assert_eq!(dict.string(1).unwrap(), "a");
    }

    #[test]
    fn validation_catches_bad_dictionaries() {
        let unsorted = build(&["b", "a"], false);
        assert!(
            Dictionary::parse(&unsorted)
                .unwrap()
                .validate()
                .unwrap_err()
                .contains("not above")
        );
        let mut bad_utf8 = build(&["a", "b"], false);
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert!(
            Dictionary::parse(&bad_utf8)
                .unwrap()
                .validate()
                .unwrap_err()
                .contains("UTF-8")
        );
        let good = build(&["apple", "apricot", "banana"], false);
        for cut in 0..good.len() {
            let ok = Dictionary::parse(&good[..cut]).and_then(|d| d.validate());
            assert!(ok.is_err(), "cut at {cut}");
        }
        let mut flag = good.clone();
        flag[8] = 2;
        assert!(Dictionary::parse(&flag).is_err());
    }
}
