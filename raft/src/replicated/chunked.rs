//! [`ChunkedMap`]: an ordered map whose clone costs a pointer per few hundred entries.
//!
//! Why: a snapshot starts with a copy of the state machine's tables, taken on the state
//! machine's own task, so every apply waits for it. A plain `BTreeMap` of 1M segment rows
//! took ~0.7 s to clone (the raft bench's `snapshot_1m_apply_held_ms`); chunks shared behind
//! `Arc`s make the copy O(rows / [`CHUNK_MAX`]), and the encoding runs on the snapshot task.
//!
//! How: entries live in chunks (ordered maps of at most [`CHUNK_MAX`] entries) behind `Arc`s,
//! keyed in an outer map by their smallest key. A clone shares every chunk; a write copies the
//! one chunk it touches if a clone still shares it (`Arc::make_mut`), so after a snapshot copy
//! the apply loop pays one chunk copy per chunk it writes to, not one copy of everything. A
//! key past every key held is appended without a search (rows rebuilt in key order).
//!
//! Invariants: no chunk is empty; each chunk's outer key is its smallest key, so chunk `i`
//! holds exactly the keys in `[key_i, key_{i+1})`; `len` is the sum of the chunks' lengths.

use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::fmt;
use std::ops::Bound;
use std::sync::Arc;

/// Most entries in one chunk; a chunk that grows past it splits in two.
pub const CHUNK_MAX: usize = 512;

/// An ordered map with cheap clones (see the module docs).
#[derive(Clone)]
pub struct ChunkedMap<K, V> {
    chunks: BTreeMap<K, Arc<BTreeMap<K, V>>>,
    len: usize,
}

impl<K, V> Default for ChunkedMap<K, V> {
    fn default() -> Self {
        ChunkedMap {
            chunks: BTreeMap::new(),
            len: 0,
        }
    }
}

impl<K: Ord + Clone, V: Clone> ChunkedMap<K, V> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The key of the chunk that holds (or would hold) `key`, if any chunk starts at or
    /// before it.
    fn chunk_key<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&K>
    where
        K: Borrow<Q>,
    {
        self.chunks
            .range::<Q, _>((Bound::Unbounded, Bound::Included(key)))
            .next_back()
            .map(|(first, _)| first)
    }

    pub fn get<Q: Ord + ?Sized>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
    {
        let first = self.chunk_key(key)?;
        self.chunks.get::<K>(first)?.get(key)
    }

    /// Inserts `value` under `key`; the value it replaces, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        // Past every key held: appended to the last chunk, or to a new one once that is three
        // quarters full, so rows that come in key order (a snapshot's, newer segments') fill
        // chunks without a search per row or a split.
        if let Some(last) = self.chunks.values_mut().next_back()
            && last
                .keys()
                .next_back()
                .is_some_and(|greatest| *greatest < key)
        {
            if last.len() < CHUNK_MAX * 3 / 4 {
                Arc::make_mut(last).insert(key, value);
            } else {
                let chunk = Arc::new(BTreeMap::from([(key.clone(), value)]));
                self.chunks.insert(key, chunk);
            }
            self.len += 1;
            return None;
        }
        let Some(first) = self.chunk_key(&key).cloned() else {
            // Before every chunk (or none yet): the first chunk takes it and its key.
            let mut chunk = match self.chunks.pop_first() {
                Some((_, chunk)) => chunk,
                None => Arc::default(),
            };
            Arc::make_mut(&mut chunk).insert(key.clone(), value);
            self.chunks.insert(key, chunk);
            self.len += 1;
            self.split_if_full(None);
            return None;
        };
        let chunk = Arc::make_mut(self.chunks.get_mut(&first).expect("found above"));
        let replaced = chunk.insert(key, value);
        if replaced.is_none() {
            self.len += 1;
            self.split_if_full(Some(first));
        }
        replaced
    }

    /// Removes `key`; its value, if it was there.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let first = self.chunk_key(key)?.clone();
        let chunk = Arc::make_mut(self.chunks.get_mut(&first).expect("found above"));
        let removed = chunk.remove(key)?;
        self.len -= 1;
        if chunk.is_empty() {
            self.chunks.remove(&first);
        } else if *key == first {
            // The chunk's smallest key went: it is known by its new smallest.
            let chunk = self.chunks.remove(&first).expect("found above");
            let new_first = chunk.keys().next().expect("not empty").clone();
            self.chunks.insert(new_first, chunk);
        }
        Some(removed)
    }

    /// Splits the chunk keyed `first` (the first chunk when `None`) if it grew past
    /// [`CHUNK_MAX`].
    fn split_if_full(&mut self, first: Option<K>) {
        let chunk = match &first {
            Some(first) => self.chunks.get_mut(first),
            None => self.chunks.values_mut().next(),
        };
        let Some(chunk) = chunk.filter(|chunk| chunk.len() > CHUNK_MAX) else {
            return;
        };
        let chunk = Arc::make_mut(chunk);
        let middle = chunk
            .keys()
            .nth(chunk.len() / 2)
            .expect("over half")
            .clone();
        let upper = chunk.split_off(&middle);
        self.chunks.insert(middle, Arc::new(upper));
    }

    /// The entry with the smallest key.
    pub fn first(&self) -> Option<(&K, &V)> {
        self.chunks.values().next()?.iter().next()
    }

    /// Removes the entry with the smallest key; it, if any.
    pub fn pop_first(&mut self) -> Option<(K, V)> {
        let key = self.first()?.0.clone();
        let value = self.remove(&key)?;
        Some((key, value))
    }

    /// The chunks this map shares with `other` (a clone shares all of them until written).
    #[cfg(test)]
    pub(crate) fn shared_chunks(&self, other: &Self) -> usize {
        self.chunks
            .values()
            .filter(|chunk| {
                other
                    .chunks
                    .values()
                    .any(|theirs| Arc::ptr_eq(chunk, theirs))
            })
            .count()
    }

    /// Every value, in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }

    /// The entries after `key` (all of them for `None`), in key order.
    pub fn after<'a>(&'a self, key: Option<&K>) -> impl Iterator<Item = (&'a K, &'a V)> + 'a {
        let start = key.cloned();
        let from: Box<dyn Iterator<Item = (&'a K, &'a V)> + 'a> = match &start {
            Some(start) => Box::new(self.range_from(start)),
            None => Box::new(self.iter()),
        };
        from.skip_while(move |(k, _)| start.as_ref().is_some_and(|start| *k <= start))
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.chunks.values().flat_map(|chunk| chunk.iter())
    }

    /// The entries from `start` on, in key order.
    pub fn range_from<'a>(&'a self, start: &K) -> impl Iterator<Item = (&'a K, &'a V)> + 'a {
        let first = self.chunk_key(start).cloned();
        let (head, rest) = match &first {
            Some(first) => (
                self.chunks
                    .get(first)
                    .map(|chunk| chunk.range(start.clone()..)),
                self.chunks
                    .range((Bound::Excluded(first.clone()), Bound::Unbounded)),
            ),
            None => (None, self.chunks.range::<K, _>(..)),
        };
        head.into_iter()
            .flatten()
            .chain(rest.flat_map(|(_, chunk)| chunk.iter()))
    }

    /// Every value, in key order (chunks still shared with a clone are copied).
    pub fn into_values(self) -> impl Iterator<Item = V> {
        self.chunks
            .into_values()
            .flat_map(|chunk| Arc::unwrap_or_clone(chunk).into_values())
    }
}

impl<K: Ord + Clone, V: Clone + PartialEq> PartialEq for ChunkedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<K: Ord + Clone + fmt::Debug, V: Clone + fmt::Debug> fmt::Debug for ChunkedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V> serde::Serialize for ChunkedMap<K, V>
where
    K: Ord + Clone + serde::Serialize,
    V: Clone + serde::Serialize,
{
    /// As a map, in key order (the shape a `BTreeMap` has).
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.len))?;
        for (key, value) in self.iter() {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

impl<'de, K, V> serde::Deserialize<'de> for ChunkedMap<K, V>
where
    K: Ord + Clone + serde::Deserialize<'de>,
    V: Clone + serde::Deserialize<'de>,
{
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries<K, V>(std::marker::PhantomData<(K, V)>);
        impl<'de, K, V> serde::de::Visitor<'de> for Entries<K, V>
        where
            K: Ord + Clone + serde::Deserialize<'de>,
            V: Clone + serde::Deserialize<'de>,
        {
            type Value = ChunkedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut access: A,
            ) -> Result<Self::Value, A::Error> {
                let mut map = ChunkedMap::default();
                while let Some((key, value)) = access.next_entry()? {
                    // In key order as written: each is appended without a search.
                    map.insert(key, value);
                }
                Ok(map)
            }
        }
        deserializer.deserialize_map(Entries(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Clone, Debug)]
    enum Op {
        Insert(u16, u32),
        /// Inserts just past the greatest key held.
        Append(u32),
        Remove(u16),
        PopFirst,
        Clone,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            8 => (0u16..3000, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            4 => any::<u32>().prop_map(Op::Append),
            3 => (0u16..3000).prop_map(Op::Remove),
            1 => Just(Op::PopFirst),
            1 => Just(Op::Clone),
        ]
    }

    fn check_invariants(map: &ChunkedMap<u16, u32>) {
        let mut total = 0;
        let firsts: Vec<u16> = map.chunks.keys().copied().collect();
        for (i, (first, chunk)) in map.chunks.iter().enumerate() {
            assert!(!chunk.is_empty(), "empty chunk at {first}");
            assert!(
                chunk.len() <= CHUNK_MAX,
                "chunk at {first} holds {}",
                chunk.len()
            );
            assert_eq!(
                chunk.keys().next(),
                Some(first),
                "chunk keyed by its smallest"
            );
            if let Some(next) = firsts.get(i + 1) {
                assert!(
                    chunk.keys().all(|k| k < next),
                    "chunk at {first} reaches {next}"
                );
            }
            total += chunk.len();
        }
        assert_eq!(total, map.len());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        #[test]
        fn behaves_like_a_btree_map_and_clones_stay_unchanged(ops in prop::collection::vec(op(), 1..2500)) {
            let mut map = ChunkedMap::default();
            let mut model = BTreeMap::new();
            // Earlier clones and what they held when taken.
            let mut clones: Vec<(ChunkedMap<u16, u32>, BTreeMap<u16, u32>)> = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Append(v) => {
                        let k = model.keys().next_back().map_or(0, |last| last.saturating_add(1));
                        prop_assert_eq!(map.insert(k, v), model.insert(k, v));
                    }
                    Op::Remove(k) => prop_assert_eq!(map.remove(&k), model.remove(&k)),
                    Op::PopFirst => {
                        prop_assert_eq!(map.first(), model.first_key_value());
                        prop_assert_eq!(map.pop_first(), model.pop_first());
                    }
                    Op::Clone => clones.push((map.clone(), model.clone())),
                }
            }
            check_invariants(&map);
            prop_assert_eq!(map.len(), model.len());
            prop_assert!(map.iter().eq(model.iter()));
            for probe in [0u16, 1, 700, 1500, 2999, 3000] {
                prop_assert_eq!(map.get(&probe), model.get(&probe));
                prop_assert!(map.range_from(&probe).eq(model.range(probe..)));
            }
            for (clone, held) in clones {
                check_invariants(&clone);
                prop_assert!(clone.iter().eq(held.iter()), "a clone changed after later writes");
                prop_assert!(clone.into_values().eq(held.into_values()));
            }
            prop_assert!(map.into_values().eq(model.into_values()));
        }
    }

    #[test]
    fn rows_inserted_in_order_fill_chunks_without_splits() {
        let mut map = ChunkedMap::default();
        for k in 0..10_000u32 {
            assert_eq!(map.insert(k, k), None);
        }
        check_u32(&map);
        assert_eq!(map.len(), 10_000);
        assert_eq!(map.chunks.len(), 10_000usize.div_ceil(CHUNK_MAX * 3 / 4));
        assert_eq!(
            map.insert(9_999, 0),
            Some(9_999),
            "the greatest key is replaced"
        );
        map.insert(9_999, 9_999);
        assert!(map.iter().map(|(k, _)| *k).eq(0..10_000));
    }

    fn check_u32(map: &ChunkedMap<u32, u32>) {
        for (first, chunk) in &map.chunks {
            assert!(!chunk.is_empty() && chunk.len() <= CHUNK_MAX);
            assert_eq!(chunk.keys().next(), Some(first));
        }
    }

    #[test]
    fn a_clone_shares_every_chunk_and_a_write_copies_one() {
        let mut map = ChunkedMap::default();
        for k in 0..10_000u32 {
            map.insert(k, k);
        }
        let copy = map.clone();
        let shared = |a: &ChunkedMap<u32, u32>, b: &ChunkedMap<u32, u32>| {
            a.chunks
                .values()
                .zip(b.chunks.values())
                .filter(|(x, y)| Arc::ptr_eq(x, y))
                .count()
        };
        let chunks = map.chunks.len();
        assert!(chunks >= 10_000 / CHUNK_MAX, "{chunks} chunks");
        assert_eq!(shared(&map, &copy), chunks);
        map.insert(5_000, 0);
        assert_eq!(shared(&map, &copy), chunks - 1);
        assert_eq!(copy.get(&5_000), Some(&5_000));
    }
}
