//! Per-segment partial results and their merge: what a segment's grouping emits
//! ([`Partial`]), the hash merge of many partials in parallel partitions ([`merge_partials`],
//! [`Merger`]) and the merged groups ([`Merged`]) that finalizing reads.
//!
//! A partial is columnar and self-contained, so it serializes (serde; bincode on the wire) and
//! a broker merges partials from historicals the same way the single-process server merges
//! its own segments':
//! - group keys, each one byte string in one arena (`keys`, cut by `ends`): the bucket start
//!   (8 bytes), then per dimension a tag (null, long, double, string) and the value. Equal
//!   groups have equal bytes, so a merge hashes and compares bytes and never builds a string;
//! - one [`AggColumn`] per aggregator: longs and doubles as plain vectors, everything else
//!   (first/last, sketches) as [`AggValue`]s.
//!
//! Merging hashes every key once, sends it to one of a few partitions by its hash, and inserts
//! it into that partition's `hashbrown` table (entries hold the group index and the hash; key
//! bytes are compared on a hash match): each thread fills its own partitions from its
//! segments, then the partitions are merged across threads in parallel, one partition per
//! task. Nothing is ordered while merging; ordering, limits and topN ranking happen afterwards
//! on the merged groups, and strings become `String`s only for the rows that are returned.
//! (Copying groups into per-partition buckets first and building each partition's table at
//! the end, radix style, measured slower here: the copies cost more than the cache misses they
//! saved.)

use std::cmp::Ordering;
use std::hash::BuildHasher;

use hashbrown::HashTable;
use serde::{Deserialize, Serialize};

use grove_segment::sketch::HllSketch;

use crate::aggregate::{AggDef, AggKind, AggValue};
use crate::error::{QueryError, Result};
use crate::group::{GroupKey, Grouped, KeyValue};

const TAG_NULL: u8 = 0;
const TAG_LONG: u8 = 1;
const TAG_DOUBLE: u8 = 2;
const TAG_STRING: u8 = 3;

/// Appends the bucket start that opens every key.
pub fn push_bucket(out: &mut Vec<u8>, bucket: i64) {
    out.extend_from_slice(&bucket.to_le_bytes());
}

pub fn push_null(out: &mut Vec<u8>) {
    out.push(TAG_NULL);
}

pub fn push_long(out: &mut Vec<u8>, v: i64) {
    out.push(TAG_LONG);
    out.extend_from_slice(&v.to_le_bytes());
}

pub fn push_double(out: &mut Vec<u8>, v: f64) {
    out.push(TAG_DOUBLE);
    out.extend_from_slice(&v.to_bits().to_le_bytes());
}

pub fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    out.push(TAG_STRING);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s);
}

pub fn push_key_value(out: &mut Vec<u8>, v: &KeyValue) {
    match v {
        KeyValue::Null => push_null(out),
        KeyValue::Long(x) => push_long(out, *x),
        KeyValue::Double(x) => push_double(out, *x),
        KeyValue::String(s) => push_str(out, s.as_bytes()),
    }
}

/// A dimension value read in place from an encoded key. Orders as [`KeyValue`] does: nulls
/// first, then numbers, then strings.
#[derive(Clone, Copy, Debug)]
pub enum KeyRef<'a> {
    Null,
    Long(i64),
    Double(f64),
    Str(&'a str),
}

impl KeyRef<'_> {
    fn rank(&self) -> u8 {
        match self {
            KeyRef::Null => 0,
            KeyRef::Long(_) | KeyRef::Double(_) => 1,
            KeyRef::Str(_) => 2,
        }
    }

    pub fn to_owned(self) -> KeyValue {
        match self {
            KeyRef::Null => KeyValue::Null,
            KeyRef::Long(v) => KeyValue::Long(v),
            KeyRef::Double(v) => KeyValue::Double(v),
            KeyRef::Str(s) => KeyValue::String(s.to_owned()),
        }
    }

    pub fn cmp_value(&self, other: &KeyRef<'_>) -> Ordering {
        use KeyRef::*;
        match (self, other) {
            (Long(a), Long(b)) => a.cmp(b),
            (Double(a), Double(b)) => a.total_cmp(b),
            (Long(a), Double(b)) => (*a as f64).total_cmp(b),
            (Double(a), Long(b)) => a.total_cmp(&(*b as f64)),
            (Str(a), Str(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

/// The bucket of an encoded key.
#[inline]
pub fn key_bucket(key: &[u8]) -> i64 {
    i64::from_le_bytes(key[..8].try_into().expect("a key starts with its bucket"))
}

/// The dimension values of an encoded key, in order.
pub fn key_dims(key: &[u8]) -> KeyDims<'_> {
    KeyDims { rest: &key[8..] }
}

pub struct KeyDims<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for KeyDims<'a> {
    type Item = KeyRef<'a>;

    fn next(&mut self) -> Option<KeyRef<'a>> {
        let (&tag, rest) = self.rest.split_first()?;
        let eight = |r: &[u8]| u64::from_le_bytes(r[..8].try_into().expect("8 bytes"));
        let (value, rest) = match tag {
            TAG_NULL => (KeyRef::Null, rest),
            TAG_LONG => (KeyRef::Long(eight(rest) as i64), &rest[8..]),
            TAG_DOUBLE => (KeyRef::Double(f64::from_bits(eight(rest))), &rest[8..]),
            _ => {
                let len = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                let bytes = &rest[4..4 + len];
                // Keys are built from UTF-8 (dictionary values, validated when read) or
                // deserialized, where `Partial::check` refused anything else.
                let text = std::str::from_utf8(bytes).unwrap_or("");
                (KeyRef::Str(text), &rest[4 + len..])
            }
        };
        self.rest = rest;
        Some(value)
    }
}

/// Compares two encoded keys as [`GroupKey`]s compare: bucket, then dimension values.
pub fn compare_keys(a: &[u8], b: &[u8]) -> Ordering {
    key_bucket(a).cmp(&key_bucket(b)).then_with(|| {
        for (x, y) in key_dims(a).zip(key_dims(b)) {
            let o = x.cmp_value(&y);
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    })
}

/// The owned [`GroupKey`] of an encoded key.
pub fn group_key(key: &[u8]) -> GroupKey {
    GroupKey {
        bucket: key_bucket(key),
        dims: key_dims(key).map(KeyRef::to_owned).collect(),
    }
}

/// One aggregator's values, one per group.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum AggColumn {
    /// count and long sum/min/max (`None`: no non-null input).
    Long(Vec<Option<i64>>),
    /// double sum/min/max.
    Double(Vec<Option<f64>>),
    /// Every other aggregator.
    Values(Vec<AggValue>),
}

impl AggColumn {
    /// An empty column of the shape `def` folds into.
    pub fn for_def(def: &AggDef) -> AggColumn {
        match def.kind {
            AggKind::Count | AggKind::LongSum | AggKind::LongMin | AggKind::LongMax => {
                AggColumn::Long(Vec::new())
            }
            AggKind::DoubleSum | AggKind::DoubleMin | AggKind::DoubleMax => {
                AggColumn::Double(Vec::new())
            }
            _ => AggColumn::Values(Vec::new()),
        }
    }

    pub fn len(&self) -> usize {
        match self {
            AggColumn::Long(v) => v.len(),
            AggColumn::Double(v) => v.len(),
            AggColumn::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a value (of this column's shape).
    pub fn push(&mut self, value: AggValue) {
        match (self, value) {
            (AggColumn::Long(v), AggValue::Long(x)) => v.push(x),
            (AggColumn::Double(v), AggValue::Double(x)) => v.push(x),
            (AggColumn::Values(v), x) => v.push(x),
            (column, value) => unreachable!("{value:?} pushed onto {column:?}"),
        }
    }

    /// Group `g`'s value, copied.
    pub fn value(&self, g: usize) -> AggValue {
        match self {
            AggColumn::Long(v) => AggValue::Long(v[g]),
            AggColumn::Double(v) => AggValue::Double(v[g]),
            AggColumn::Values(v) => v[g].clone(),
        }
    }

    /// Group `g`'s value, moved out (a sketch is not copied; the slot is left empty).
    pub fn take(&mut self, g: usize) -> AggValue {
        match self {
            AggColumn::Long(v) => AggValue::Long(v[g]),
            AggColumn::Double(v) => AggValue::Double(v[g]),
            AggColumn::Values(v) => std::mem::replace(&mut v[g], AggValue::Long(None)),
        }
    }

    /// Group `g`'s value as a number, for ranking without finalizing (`None`: null or not a
    /// plain number).
    pub fn number(&self, g: usize, def: &AggDef) -> Option<f64> {
        match self {
            AggColumn::Long(v) => v[g].map(|x| x as f64),
            AggColumn::Double(v) => v[g],
            AggColumn::Values(v) => def.numeric(&v[g]),
        }
    }

    /// Copies group `g` of `from` onto the end of this column.
    fn push_from(&mut self, from: &AggColumn, g: usize) {
        match (self, from) {
            (AggColumn::Long(a), AggColumn::Long(b)) => a.push(b[g]),
            (AggColumn::Double(a), AggColumn::Double(b)) => a.push(b[g]),
            (AggColumn::Values(a), AggColumn::Values(b)) => a.push(b[g].clone()),
            (a, b) => unreachable!("columns of different shapes: {a:?} and {b:?}"),
        }
    }

    /// Combines group `g` of `from` into group `at` of this column.
    #[inline]
    fn combine_from(&mut self, at: usize, from: &AggColumn, g: usize, def: &AggDef) {
        match (self, from) {
            (AggColumn::Long(a), AggColumn::Long(b)) => {
                a[at] = match (a[at], b[g]) {
                    (Some(x), Some(y)) => Some(match def.kind {
                        AggKind::LongMin => x.min(y),
                        AggKind::LongMax => x.max(y),
                        _ => x.wrapping_add(y),
                    }),
                    (x, None) => x,
                    (None, y) => y,
                }
            }
            (AggColumn::Double(a), AggColumn::Double(b)) => {
                a[at] = match (a[at], b[g]) {
                    (Some(x), Some(y)) => Some(match def.kind {
                        AggKind::DoubleMin => x.min(y),
                        AggKind::DoubleMax => x.max(y),
                        _ => x + y,
                    }),
                    (x, None) => x,
                    (None, y) => y,
                }
            }
            (AggColumn::Values(a), AggColumn::Values(b)) => {
                def.combine(&mut a[at], b[g].clone());
            }
            (a, b) => unreachable!("columns of different shapes: {a:?} and {b:?}"),
        }
    }

    /// Combines group `g` into group `at` of the same column.
    pub fn combine_within(&mut self, at: usize, g: usize, def: &AggDef) {
        let value = self.take(g);
        let mut one = AggColumn::for_def(def);
        one.push(value);
        self.combine_from(at, &one, 0, def);
    }

    /// The values of groups `order`, in that order.
    pub fn gather(&mut self, order: &[u32]) -> AggColumn {
        match self {
            AggColumn::Long(v) => AggColumn::Long(order.iter().map(|&g| v[g as usize]).collect()),
            AggColumn::Double(v) => {
                AggColumn::Double(order.iter().map(|&g| v[g as usize]).collect())
            }
            AggColumn::Values(v) => AggColumn::Values(
                order
                    .iter()
                    .map(|&g| std::mem::replace(&mut v[g as usize], AggValue::Long(None)))
                    .collect(),
            ),
        }
    }

    fn bytes(&self) -> usize {
        match self {
            AggColumn::Long(v) => v.len() * 16,
            AggColumn::Double(v) => v.len() * 16,
            AggColumn::Values(v) => v.len() * std::mem::size_of::<AggValue>(),
        }
    }
}

/// One segment's groups (or a partition of merged groups): encoded keys and one column per
/// aggregator. Keys may repeat in a segment's partial; a merged partition holds each once.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Partial {
    keys: Vec<u8>,
    ends: Vec<u32>,
    aggs: Vec<AggColumn>,
}

impl Partial {
    /// No groups, with columns for `aggs`.
    pub fn new(aggs: &[AggDef]) -> Partial {
        Partial {
            keys: Vec::new(),
            ends: Vec::new(),
            aggs: aggs.iter().map(AggColumn::for_def).collect(),
        }
    }

    /// Groups of keys written by `fill` (called once per group with the key buffer, which it
    /// must extend by exactly one key) and the given columns.
    pub fn from_parts(keys: Vec<u8>, ends: Vec<u32>, aggs: Vec<AggColumn>) -> Partial {
        debug_assert!(aggs.iter().all(|c| c.len() == ends.len()));
        Partial { keys, ends, aggs }
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    #[inline]
    pub fn key(&self, g: usize) -> &[u8] {
        let start = if g == 0 { 0 } else { self.ends[g - 1] as usize };
        &self.keys[start..self.ends[g] as usize]
    }

    pub fn column(&self, a: usize) -> &AggColumn {
        &self.aggs[a]
    }

    /// Group `g`'s values, moved out.
    pub fn take_values(&mut self, g: usize) -> Vec<AggValue> {
        self.aggs.iter_mut().map(|c| c.take(g)).collect()
    }

    /// Bytes held (keys, their ends, the columns), for memory bounds.
    pub fn bytes(&self) -> usize {
        self.keys.len()
            + self.ends.len() * 4
            + self.aggs.iter().map(AggColumn::bytes).sum::<usize>()
    }

    /// Checks a partial received from elsewhere: columns match `aggs` and the groups, keys are
    /// well-formed (ends ascending within the arena, tags known, strings UTF-8).
    pub fn check(&self, aggs: &[AggDef]) -> Result<()> {
        let bad = |m: String| {
            Err(QueryError::internal(format!(
                "malformed partial result: {m}"
            )))
        };
        if self.aggs.len() != aggs.len() {
            return bad(format!(
                "{} columns for {} aggregators",
                self.aggs.len(),
                aggs.len()
            ));
        }
        for (c, def) in self.aggs.iter().zip(aggs) {
            if c.len() != self.len()
                || std::mem::discriminant(c) != std::mem::discriminant(&AggColumn::for_def(def))
            {
                return bad(format!("column of aggregator '{}' does not fit", def.name));
            }
        }
        let mut start = 0usize;
        for &end in &self.ends {
            let end = end as usize;
            if end < start + 8 || end > self.keys.len() {
                return bad("key bounds".into());
            }
            let mut rest = &self.keys[start + 8..end];
            while let Some((&tag, tail)) = rest.split_first() {
                rest = match tag {
                    TAG_NULL => tail,
                    TAG_LONG | TAG_DOUBLE if tail.len() >= 8 => &tail[8..],
                    TAG_STRING if tail.len() >= 4 => {
                        let len = u32::from_le_bytes(tail[..4].try_into().expect("4")) as usize;
                        let Some(text) = tail.get(4..4 + len) else {
                            return bad("string past its key".into());
                        };
                        if std::str::from_utf8(text).is_err() {
                            return bad("string not UTF-8".into());
                        }
                        &tail[4 + len..]
                    }
                    _ => return bad(format!("key tag {tag}")),
                };
            }
            start = end;
        }
        Ok(())
    }
}

#[inline]
fn hash_key(key: &[u8]) -> u64 {
    rustc_hash::FxBuildHasher.hash_one(key)
}

/// Groups interned by key: a partial without repeated keys and the index over it (each entry
/// holds its key's hash, so probing and growing never read the keys of other groups).
#[derive(Default)]
struct Table {
    part: Partial,
    index: HashTable<(u64, u32)>,
}

impl Table {
    fn new(aggs: &[AggDef]) -> Table {
        Table {
            part: Partial::new(aggs),
            index: HashTable::new(),
        }
    }

    /// Adds group `g` of `from` (whose key hashes to `hash`): combined into the equal group,
    /// or appended.
    #[inline]
    fn insert_from(&mut self, from: &Partial, g: usize, hash: u64, aggs: &[AggDef]) {
        let key = from.key(g);
        let part = &self.part;
        let found = self
            .index
            .find(hash, |&(h, i)| h == hash && part.key(i as usize) == key)
            .map(|&(_, i)| i);
        match found {
            Some(at) => {
                for ((into, column), def) in self.part.aggs.iter_mut().zip(&from.aggs).zip(aggs) {
                    into.combine_from(at as usize, column, g, def);
                }
            }
            None => {
                let at = self.part.len() as u32;
                self.part.keys.extend_from_slice(key);
                self.part.ends.push(self.part.keys.len() as u32);
                for (into, column) in self.part.aggs.iter_mut().zip(&from.aggs) {
                    into.push_from(column, g);
                }
                self.index.insert_unique(hash, (hash, at), |&(h, _)| h);
            }
        }
    }

    fn bytes(&self) -> usize {
        self.part.bytes() + self.index.capacity() * 13
    }

    /// Room for `groups` more groups of `key_bytes` more key bytes (an upper bound: some will
    /// combine into groups already here).
    fn reserve(&mut self, groups: usize, key_bytes: usize) {
        self.index.reserve(groups, |&(h, _)| h);
        self.part.keys.reserve(key_bytes);
        self.part.ends.reserve(groups);
        for c in &mut self.part.aggs {
            match c {
                AggColumn::Long(v) => v.reserve(groups),
                AggColumn::Double(v) => v.reserve(groups),
                AggColumn::Values(v) => v.reserve(groups),
            }
        }
    }
}

/// Which partition a key's hash goes to (bits that hashbrown's probe and tag bits do not use
/// much, so each partition's table still spreads its keys).
#[inline]
fn partition_of(hash: u64, partitions: usize) -> usize {
    ((hash >> 24) as u32 as usize) % partitions
}

/// One thread's side of a merge: its segments' partials folded into its own partitions.
pub struct Merger<'a> {
    aggs: &'a [AggDef],
    tables: Vec<Table>,
    groups_max: u64,
    bytes_max: usize,
}

impl<'a> Merger<'a> {
    /// A merger into `partitions` partitions that refuses more than `groups_max` groups or
    /// `bytes_max` bytes in one partition set.
    pub fn new(aggs: &'a [AggDef], partitions: usize, groups_max: u64, bytes_max: usize) -> Self {
        Merger {
            aggs,
            tables: (0..partitions.max(1)).map(|_| Table::new(aggs)).collect(),
            groups_max,
            bytes_max,
        }
    }

    /// Folds a partial in (its values are moved out of it).
    pub fn add(&mut self, partial: Partial) -> Result<()> {
        let partitions = self.tables.len();
        let share = partial.len() / partitions + 1;
        let key_share = partial.keys.len() / partitions + 1;
        for t in &mut self.tables {
            t.reserve(share, key_share);
        }
        for g in 0..partial.len() {
            let hash = hash_key(partial.key(g));
            let p = if partitions == 1 {
                0
            } else {
                partition_of(hash, partitions)
            };
            self.tables[p].insert_from(&partial, g, hash, self.aggs);
        }
        self.check_bounds()
    }

    fn groups(&self) -> u64 {
        self.tables.iter().map(|t| t.part.len() as u64).sum()
    }

    fn check_bounds(&self) -> Result<()> {
        let groups = self.groups();
        if groups > self.groups_max {
            return Err(crate::group::too_many_groups(self.groups_max));
        }
        let bytes: usize = self.tables.iter().map(Table::bytes).sum();
        if bytes > self.bytes_max {
            return Err(too_many_bytes(self.bytes_max));
        }
        Ok(())
    }
}

/// The error of a merge past its memory bound (context `maxMergingDictionarySize`).
pub fn too_many_bytes(max: usize) -> QueryError {
    QueryError::resource_limit(format!(
        "the query's merged groups take more than {max} bytes (context \
         maxMergingDictionarySize); narrow it (filter, fewer dimensions, a coarser granularity) \
         or raise the limit"
    ))
}

/// Merges the mergers of several threads, partition by partition, on up to `threads` scoped
/// threads.
pub fn finish_merge(
    mergers: Vec<Merger<'_>>,
    aggs: &[AggDef],
    threads: usize,
    control: &dyn crate::QueryControl,
) -> Result<Merged> {
    finish_merge_from(mergers, aggs, threads, control, PARALLEL_MERGE_MIN)
}

/// [`finish_merge`], on threads only from `parallel_min` groups on.
fn finish_merge_from(
    mut mergers: Vec<Merger<'_>>,
    aggs: &[AggDef],
    threads: usize,
    control: &dyn crate::QueryControl,
    parallel_min: usize,
) -> Result<Merged> {
    let Some(first) = mergers.first() else {
        return Ok(Merged { parts: Vec::new() });
    };
    let (groups_max, bytes_max) = (first.groups_max, first.bytes_max);
    let partitions = first.tables.len();
    // Partition p of every merger, largest first (it becomes the base the others go into).
    let mut columns: Vec<Vec<Table>> = (0..partitions).map(|_| Vec::new()).collect();
    for m in &mut mergers {
        for (p, t) in m.tables.drain(..).enumerate() {
            if !t.part.is_empty() {
                columns[p].push(t);
            }
        }
    }
    let merge_one = |mut tables: Vec<Table>| -> Result<Partial> {
        tables.sort_by_key(|t| std::cmp::Reverse(t.part.len()));
        let more: usize = tables.iter().skip(1).map(|t| t.part.len()).sum();
        let more_bytes: usize = tables.iter().skip(1).map(|t| t.part.keys.len()).sum();
        let mut it = tables.into_iter();
        let Some(mut base) = it.next() else {
            return Ok(Partial::new(aggs));
        };
        base.reserve(more, more_bytes);
        for t in it {
            control.check()?;
            for g in 0..t.part.len() {
                let hash = hash_key(t.part.key(g));
                base.insert_from(&t.part, g, hash, aggs);
            }
        }
        Ok(base.part)
    };
    // Few groups merge faster on this thread than threads start.
    let total: usize = columns.iter().flatten().map(|t| t.part.len()).sum();
    let parts: Vec<Partial> = if threads <= 1 || partitions <= 1 || total < parallel_min {
        columns.into_iter().map(merge_one).collect::<Result<_>>()?
    } else {
        let share = partitions.div_ceil(threads);
        let merge_one = &merge_one;
        let mut groups: Vec<Vec<Vec<Table>>> = Vec::new();
        let mut rest = columns.into_iter();
        loop {
            let chunk: Vec<Vec<Table>> = rest.by_ref().take(share).collect();
            if chunk.is_empty() {
                break;
            }
            groups.push(chunk);
        }
        let results: Vec<Result<Vec<Partial>>> = std::thread::scope(|scope| {
            let handles: Vec<_> = groups
                .into_iter()
                .map(|chunk| {
                    scope.spawn(move || chunk.into_iter().map(merge_one).collect::<Result<_>>())
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(QueryError::internal("a query thread panicked")))
                })
                .collect()
        });
        let mut parts = Vec::with_capacity(partitions);
        for r in results {
            parts.extend(r?);
        }
        parts
    };
    let merged = Merged { parts };
    if merged.len() as u64 > groups_max {
        return Err(crate::group::too_many_groups(groups_max));
    }
    if merged.parts.iter().map(Partial::bytes).sum::<usize>() > bytes_max {
        return Err(too_many_bytes(bytes_max));
    }
    Ok(merged)
}

/// Below this many groups in all, the partitions are merged on the calling thread.
const PARALLEL_MERGE_MIN: usize = 32_768;

/// Merges partials on one thread (tests, and callers holding every partial already).
pub fn merge_partials(partials: Vec<Partial>, aggs: &[AggDef]) -> Result<Merged> {
    let mut m = Merger::new(aggs, 1, u64::MAX, usize::MAX);
    for p in partials {
        m.add(p)?;
    }
    finish_merge(vec![m], aggs, 1, &crate::Unbounded)
}

/// A group of [`Merged`]: its partition and index there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupRef {
    part: u32,
    index: u32,
}

/// Every group of a query, each once, spread over partitions in no particular order.
pub struct Merged {
    parts: Vec<Partial>,
}

impl Merged {
    pub fn len(&self) -> usize {
        self.parts.iter().map(Partial::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every group, partition by partition.
    pub fn refs(&self) -> Vec<GroupRef> {
        let mut out = Vec::with_capacity(self.len());
        for (p, part) in self.parts.iter().enumerate() {
            out.extend((0..part.len() as u32).map(|index| GroupRef {
                part: p as u32,
                index,
            }));
        }
        out
    }

    #[inline]
    pub fn key(&self, r: GroupRef) -> &[u8] {
        self.parts[r.part as usize].key(r.index as usize)
    }

    pub fn bucket(&self, r: GroupRef) -> i64 {
        key_bucket(self.key(r))
    }

    pub fn number(&self, r: GroupRef, a: usize, def: &AggDef) -> Option<f64> {
        self.parts[r.part as usize].aggs[a].number(r.index as usize, def)
    }

    pub fn value(&self, r: GroupRef, a: usize) -> AggValue {
        self.parts[r.part as usize].aggs[a].value(r.index as usize)
    }

    /// Group `r`'s values, moved out (take each group once).
    pub fn take_values(&mut self, r: GroupRef) -> Vec<AggValue> {
        self.parts[r.part as usize].take_values(r.index as usize)
    }

    /// Sorts `refs` by group key.
    pub fn sort_by_key(&self, refs: &mut [GroupRef]) {
        refs.sort_unstable_by(|&a, &b| compare_keys(self.key(a), self.key(b)));
    }

    /// Every group in key order, owned.
    pub fn into_grouped(mut self) -> Grouped {
        let mut refs = self.refs();
        self.sort_by_key(&mut refs);
        let rows: Vec<(GroupKey, Vec<AggValue>)> = refs
            .into_iter()
            .map(|r| (group_key(self.key(r)), self.take_values(r)))
            .collect();
        // Sorted input: the map is built in one pass.
        rows.into_iter().collect()
    }

    /// [`Merged::candidates`] ranking by aggregator `a`'s number (descending or ascending;
    /// nulls last when descending, first when ascending, as the result sort puts them), with
    /// the numbers read once.
    pub fn candidates_by_number(
        &self,
        refs: &[GroupRef],
        k: usize,
        a: usize,
        def: &AggDef,
        descending: bool,
    ) -> Vec<GroupRef> {
        if refs.len() <= k {
            return refs.to_vec();
        }
        if k == 0 {
            return Vec::new();
        }
        // Ordered so that smaller is better: nulls rank as -inf before negation.
        let mut ranked: Vec<(f64, GroupRef)> = refs
            .iter()
            .map(|&r| {
                let v = self.number(r, a, def).unwrap_or(f64::NEG_INFINITY);
                (if descending { -v } else { v }, r)
            })
            .collect();
        ranked.select_nth_unstable_by(k - 1, |x, y| x.0.total_cmp(&y.0));
        let boundary = ranked[k - 1].0;
        let mut out: Vec<GroupRef> = ranked[..k].iter().map(|x| x.1).collect();
        out.extend(
            ranked[k..]
                .iter()
                .filter(|x| x.0.total_cmp(&boundary) != Ordering::Greater)
                .map(|x| x.1),
        );
        out
    }

    /// Splits `refs` into runs of one bucket each, buckets ascending (one run, unsorted, when
    /// every group has the same bucket).
    pub fn by_bucket(&self, refs: &mut [GroupRef]) -> Vec<std::ops::Range<usize>> {
        let Some(&first) = refs.first() else {
            return Vec::new();
        };
        let b0 = self.bucket(first);
        if refs.iter().all(|&r| self.bucket(r) == b0) {
            return std::iter::once(0..refs.len()).collect();
        }
        refs.sort_unstable_by_key(|&r| self.bucket(r));
        let mut runs = Vec::new();
        let mut start = 0;
        while start < refs.len() {
            let b = self.bucket(refs[start]);
            let end = start
                + refs[start..]
                    .iter()
                    .take_while(|&&r| self.bucket(r) == b)
                    .count();
            runs.push(start..end);
            start = end;
        }
        runs
    }

    /// The groups of `refs` whose value of a ranking key is among the best `k` of their
    /// bucket, ties at the boundary included (so a later full sort of the candidates by every
    /// ordering column, then a cut to `k`, is exact). `better(a, b)` orders best first.
    pub fn candidates(
        &self,
        mut refs: Vec<GroupRef>,
        k: usize,
        better: impl Fn(GroupRef, GroupRef) -> Ordering,
    ) -> Vec<GroupRef> {
        if refs.len() <= k {
            return refs;
        }
        if k == 0 {
            return Vec::new();
        }
        refs.select_nth_unstable_by(k - 1, |&a, &b| better(a, b));
        let boundary = refs[k - 1];
        let (head, tail) = refs.split_at(k);
        let mut out = head.to_vec();
        out.extend(
            tail.iter()
                .copied()
                .filter(|&r| better(r, boundary) != Ordering::Greater),
        );
        out
    }
}

/// Serializes an optional sketch as its DataSketches bytes.
pub(crate) mod sketch_bytes {
    use super::*;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(
        sketch: &Option<Box<HllSketch>>,
        s: S,
    ) -> std::result::Result<S::Ok, S::Error> {
        sketch.as_ref().map(|k| k.to_bytes()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> std::result::Result<Option<Box<HllSketch>>, D::Error> {
        use serde::de::Error;
        Option::<Vec<u8>>::deserialize(d)?
            .map(|bytes| {
                HllSketch::from_bytes(&bytes)
                    .map(Box::new)
                    .map_err(|e| D::Error::custom(e.to_string()))
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Aggregator;

    fn aggs() -> Vec<AggDef> {
        AggDef::resolve(&[
            serde_json::from_value::<Aggregator>(
                serde_json::json!({"type": "longSum", "name": "n", "fieldName": "n"}),
            )
            .unwrap(),
            serde_json::from_value::<Aggregator>(
                serde_json::json!({"type": "doubleMax", "name": "m", "fieldName": "m"}),
            )
            .unwrap(),
            serde_json::from_value::<Aggregator>(
                serde_json::json!({"type": "longFirst", "name": "f", "fieldName": "f"}),
            )
            .unwrap(),
        ])
        .unwrap()
    }

    fn partial(keys: &[(i64, Vec<KeyValue>)], base: i64, aggs: &[AggDef]) -> Partial {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut columns: Vec<AggColumn> = aggs.iter().map(AggColumn::for_def).collect();
        for (i, (bucket, dims)) in keys.iter().enumerate() {
            push_bucket(&mut bytes, *bucket);
            for d in dims {
                push_key_value(&mut bytes, d);
            }
            ends.push(bytes.len() as u32);
            columns[0].push(AggValue::Long(Some(base + i as i64)));
            columns[1].push(AggValue::Double(Some((base + i as i64) as f64 / 2.0)));
            columns[2].push(AggValue::TimedLong(Some((base, Some(i as i64)))));
        }
        Partial::from_parts(bytes, ends, columns)
    }

    fn keys(n: i64) -> Vec<(i64, Vec<KeyValue>)> {
        (0..n)
            .map(|i| {
                let d = match i % 4 {
                    0 => KeyValue::Null,
                    1 => KeyValue::Long(i),
                    2 => KeyValue::Double(i as f64 + 0.5),
                    _ => KeyValue::String(format!("v{i:03}")),
                };
                (i % 3, vec![d, KeyValue::String("x".into())])
            })
            .collect()
    }

    /// Partials of any sizes merge, on any number of partitions, to one group per key holding
    /// the combined values; the result is the same as merging owned groups.
    #[test]
    fn merges_equal_the_owned_merge_on_any_partitioning() {
        let aggs = aggs();
        for partitions in [1usize, 2, 7] {
            let mut mergers = vec![
                Merger::new(&aggs, partitions, u64::MAX, usize::MAX),
                Merger::new(&aggs, partitions, u64::MAX, usize::MAX),
            ];
            mergers[0].add(partial(&keys(50), 0, &aggs)).unwrap();
            mergers[1].add(partial(&keys(80), 1000, &aggs)).unwrap();
            mergers[1].add(partial(&keys(10), 5000, &aggs)).unwrap();
            // On threads (from 0 groups on) and on this thread.
            let merged =
                finish_merge_from(mergers, &aggs, 2, &crate::Unbounded, partitions % 2).unwrap();
            let groups = merged.len();
            let grouped = merged.into_grouped();
            assert_eq!(groups, grouped.len());
            let mut expected: std::collections::BTreeMap<GroupKey, (i64, f64, i64)> =
                Default::default();
            for (base, n) in [(0i64, 50i64), (1000, 80), (5000, 10)] {
                for (i, (bucket, dims)) in keys(n).into_iter().enumerate() {
                    let e = expected.entry(GroupKey { bucket, dims }).or_insert((
                        0,
                        f64::MIN,
                        i64::MAX,
                    ));
                    e.0 += base + i as i64;
                    e.1 = e.1.max((base + i as i64) as f64 / 2.0);
                    e.2 = e.2.min(base);
                }
            }
            let got: Vec<(GroupKey, (i64, f64, i64))> = grouped
                .into_iter()
                .map(|(k, v)| match (&v[0], &v[1], &v[2]) {
                    (
                        AggValue::Long(Some(a)),
                        AggValue::Double(Some(b)),
                        AggValue::TimedLong(Some((t, _))),
                    ) => (k, (*a, *b, *t)),
                    other => panic!("{other:?}"),
                })
                .collect();
            assert_eq!(
                got,
                expected.into_iter().collect::<Vec<_>>(),
                "{partitions}"
            );
        }
    }

    /// A partial survives a bincode round trip (what a historical sends a broker) and the
    /// check refuses a damaged one.
    #[test]
    fn partials_round_trip_through_bincode() {
        let aggs = aggs();
        let p = partial(&keys(20), 7, &aggs);
        let bytes = bincode::serde::encode_to_vec(&p, bincode::config::standard()).unwrap();
        let (back, _): (Partial, usize) =
            bincode::serde::decode_from_slice(&bytes, bincode::config::standard()).unwrap();
        back.check(&aggs).unwrap();
        assert_eq!(back.keys, p.keys);
        assert_eq!(back.ends, p.ends);
        let mut bad = back.clone();
        bad.ends[3] = u32::MAX;
        assert!(bad.check(&aggs).is_err());
        let mut bad = back;
        bad.aggs.pop();
        assert!(bad.check(&aggs).is_err());
    }

    /// Candidates hold the best `k` and every group tied with the k-th.
    #[test]
    fn candidates_keep_ties_at_the_boundary() {
        let aggs = aggs();
        let values = [5i64, 9, 9, 1, 9, 3, 7];
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        let mut columns: Vec<AggColumn> = aggs.iter().map(AggColumn::for_def).collect();
        for (i, v) in values.iter().enumerate() {
            push_bucket(&mut bytes, 0);
            push_long(&mut bytes, i as i64);
            ends.push(bytes.len() as u32);
            columns[0].push(AggValue::Long(Some(*v)));
            columns[1].push(AggValue::Double(None));
            columns[2].push(AggValue::TimedLong(None));
        }
        let merged =
            merge_partials(vec![Partial::from_parts(bytes, ends, columns)], &aggs).unwrap();
        let by = |a: GroupRef, b: GroupRef| {
            let x = merged.number(a, 0, &aggs[0]);
            let y = merged.number(b, 0, &aggs[0]);
            crate::aggregate::compare_numbers(y, x)
        };
        let mut got: Vec<f64> = merged
            .candidates(merged.refs(), 2, by)
            .into_iter()
            .map(|r| merged.number(r, 0, &aggs[0]).unwrap())
            .collect();
        got.sort_by(f64::total_cmp);
        assert_eq!(got, vec![9.0, 9.0, 9.0]);
        assert_eq!(merged.candidates(merged.refs(), 4, by).len(), 4);
        assert!(merged.candidates(merged.refs(), 0, by).is_empty());
    }
}
