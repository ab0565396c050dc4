//! String dimensions in the incremental index: the arrival-order dictionary and, at persist
//! time, the plan that maps its ids to sorted order and output ids.
//!
//! Values live back to back in one byte arena (no allocation per distinct value, and dropping a
//! dictionary of a million values is one free); a `HashTable` of ids hashed by their bytes finds a
//! value's id. Null has an id of its own, as does every multi-value list ("combo"), whose key word
//! carries [`COMBO_BIT`].

use hashbrown::HashTable;
use hashbrown::hash_map::HashMap;
use rustc_hash::FxBuildHasher;
use std::hash::BuildHasher;

use crate::row::Value;
use crate::schema::MultiValueHandling;

use crate::row::format_double;

/// The top bit of a string dimension's key word marks a multi-value combo id.
pub(super) const COMBO_BIT: u64 = 1 << 63;

pub(super) struct StringDictionary {
    handling: MultiValueHandling,
    /// Non-null values as (id, arena start, length): probing compares arena bytes directly.
    table: HashTable<Slot>,
    arena: Vec<u8>,
    /// `starts[id]..starts[id + 1]` is value `id` in the arena; always one longer than the ids.
    starts: Vec<u32>,
    null_id: Option<u32>,
    combo_ids: HashMap<Box<[u32]>, u32, FxBuildHasher>,
    combos: Vec<Box<[u32]>>,
}

/// A table entry: the value's first 16 bytes inline, so most probes never touch the arena.
#[derive(Clone, Copy)]
struct Slot {
    prefix: u128,
    id: u32,
    start: u32,
    len: u32,
}

/// The first 16 bytes of `value`, zero-padded (the length disambiguates padding).
#[inline]
fn prefix_of(value: &[u8]) -> u128 {
    let mut bytes = [0u8; 16];
    let n = value.len().min(16);
    bytes[..n].copy_from_slice(&value[..n]);
    u128::from_le_bytes(bytes)
}

#[inline]
fn hash_str(value: &[u8]) -> u64 {
    FxBuildHasher.hash_one(value)
}

impl StringDictionary {
    pub(super) fn new(handling: MultiValueHandling) -> StringDictionary {
        StringDictionary {
            handling,
            table: HashTable::new(),
            arena: Vec::new(),
            starts: vec![0],
            null_id: None,
            combo_ids: HashMap::default(),
            combos: Vec::new(),
        }
    }

    fn ids(&self) -> usize {
        self.starts.len() - 1
    }

    #[inline]
    fn bytes_of(&self, id: u32) -> &[u8] {
        &self.arena[self.starts[id as usize] as usize..self.starts[id as usize + 1] as usize]
    }

    /// Non-null ids in value order. Sorting (16-byte big-endian prefix, id) pairs keeps most
    /// comparisons inside one contiguous array; only equal prefixes look at the arena.
    fn sorted_ids(&self) -> Vec<u32> {
        let mut keyed: Vec<(u128, u32)> = (0..self.ids() as u32)
            .filter(|&id| Some(id) != self.null_id)
            .map(|id| {
                let bytes = self.bytes_of(id);
                let mut prefix = [0u8; 16];
                let n = bytes.len().min(16);
                prefix[..n].copy_from_slice(&bytes[..n]);
                (u128::from_be_bytes(prefix), id)
            })
            .collect();
        keyed.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then_with(|| self.bytes_of(a.1).cmp(self.bytes_of(b.1)))
        });
        keyed.into_iter().map(|(_, id)| id).collect()
    }

    fn str_of(&self, id: u32) -> &str {
        // Only whole `&str`s are appended, so every span is valid UTF-8.
        std::str::from_utf8(self.bytes_of(id)).unwrap_or_default()
    }

    fn push(&mut self, value: &[u8]) -> u32 {
        let id = self.ids() as u32;
        self.arena.extend_from_slice(value);
        self.starts.push(self.arena.len() as u32);
        id
    }

    #[inline]
    pub(super) fn id_of(&mut self, value: &str, bytes: &mut u64) -> u32 {
        let value = value.as_bytes();
        let hash = hash_str(value);
        let prefix = prefix_of(value);
        let arena = &self.arena;
        let matches = |slot: &Slot| {
            slot.prefix == prefix
                && slot.len as usize == value.len()
                && (value.len() <= 16
                    || arena[slot.start as usize + 16..(slot.start + slot.len) as usize]
                        == value[16..])
        };
        if let Some(slot) = self.table.find(hash, matches) {
            return slot.id;
        }
        let start = self.arena.len() as u32;
        let id = self.push(value);
        let slot = Slot {
            prefix,
            id,
            start,
            len: value.len() as u32,
        };
        let arena = &self.arena;
        let bytes_at = |slot: &Slot| &arena[slot.start as usize..(slot.start + slot.len) as usize];
        self.table
            .insert_unique(hash, slot, |other| hash_str(bytes_at(other)));
        *bytes += value.len() as u64 + 36;
        id
    }

    pub(super) fn null(&mut self) -> u32 {
        if let Some(id) = self.null_id {
            return id;
        }
        let id = self.push(&[]);
        self.null_id = Some(id);
        id
    }

    fn combo_of(&mut self, ids: &[u32], bytes: &mut u64) -> u32 {
        if let Some(&id) = self.combo_ids.get(ids) {
            return id;
        }
        let id = self.combos.len() as u32;
        self.combos.push(ids.into());
        self.combo_ids.insert(ids.into(), id);
        *bytes += 8 * ids.len() as u64 + 64;
        id
    }
}

/// Interns one input value and returns its key word.
pub(super) fn encode_string(
    dict: &mut StringDictionary,
    value: &Value,
    bytes: &mut u64,
    ids: &mut Vec<u32>,
    strings: &mut Vec<String>,
) -> u64 {
    match value {
        Value::Null => dict.null() as u64,
        Value::String(s) => dict.id_of(s, bytes) as u64,
        Value::Long(v) => dict.id_of(&v.to_string(), bytes) as u64,
        Value::Double(v) => dict.id_of(&format_double(*v), bytes) as u64,
        Value::Strings(list) => {
            strings.clear();
            strings.extend(list.iter().cloned());
            match dict.handling {
                MultiValueHandling::SortedArray => strings.sort_unstable(),
                MultiValueHandling::SortedSet => {
                    strings.sort_unstable();
                    strings.dedup();
                }
                MultiValueHandling::Array => {}
            }
            match strings.len() {
                0 => dict.null() as u64,
                1 => dict.id_of(&strings[0], bytes) as u64,
                _ => {
                    ids.clear();
                    for s in strings.iter() {
                        let id = dict.id_of(s, bytes);
                        ids.push(id);
                    }
                    COMBO_BIT | dict.combo_of(ids, bytes) as u64
                }
            }
        }
    }
}

/// How one string dimension's ids map to sorted order and to output ids.
pub(super) struct StringPlan {
    /// Output dictionary: sorted non-null values, with `None` first when emitted single-valued and
    /// any row is null.
    pub(super) dictionary: Vec<Option<String>>,
    /// Arrival id → output id (already offset past a leading `None`).
    pub(super) output_id: Vec<u32>,
    /// Order rank of each single value id (by arrival id) and each combo (by combo id); null
    /// ranks 0, before everything.
    single_rank: Vec<u64>,
    combo_rank: Vec<u64>,
    /// Output ids of each combo's values.
    pub(super) combo_output: Vec<Vec<u32>>,
    pub(super) null_id: Option<u32>,
    pub(super) multi: bool,
}

impl StringPlan {
    pub(super) fn new(dict: &StringDictionary) -> StringPlan {
        let sorted = dict.sorted_ids();
        let multi = !dict.combos.is_empty();
        let lead = u32::from(!multi && dict.null_id.is_some());
        let mut dictionary = Vec::with_capacity(sorted.len() + lead as usize);
        if lead == 1 {
            dictionary.push(None);
        }
        let mut value_rank = vec![0u32; dict.ids()];
        for (rank, &id) in sorted.iter().enumerate() {
            value_rank[id as usize] = rank as u32;
            dictionary.push(Some(dict.str_of(id).to_owned()));
        }
        let output_id: Vec<u32> = value_rank.iter().map(|r| r + lead).collect();
        let (single_rank, combo_rank) = if multi {
            ranks_with_combos(dict, &sorted, &value_rank)
        } else {
            (
                value_rank.iter().map(|&r| r as u64 + 1).collect(),
                Vec::new(),
            )
        };
        let combo_output = dict
            .combos
            .iter()
            .map(|combo| combo.iter().map(|&id| output_id[id as usize]).collect())
            .collect();
        StringPlan {
            dictionary,
            output_id,
            single_rank,
            combo_rank,
            combo_output,
            null_id: dict.null_id,
            multi,
        }
    }

    #[inline]
    pub(super) fn order_rank(&self, word: u64) -> u64 {
        if word & COMBO_BIT != 0 {
            self.combo_rank[(word & !COMBO_BIT) as usize]
        } else if Some(word as u32) == self.null_id {
            0
        } else {
            self.single_rank[word as usize]
        }
    }
}

/// Ranks when some rows hold lists: every single value and every combo is a list of value ranks
/// (null the empty list, first); ranks follow the lists' lexicographic order.
fn ranks_with_combos(
    dict: &StringDictionary,
    sorted: &[u32],
    value_rank: &[u32],
) -> (Vec<u64>, Vec<u64>) {
    let mut entries: Vec<(Vec<u32>, bool, u32)> = sorted
        .iter()
        .map(|&id| (vec![value_rank[id as usize]], false, id))
        .collect();
    for (c, combo) in dict.combos.iter().enumerate() {
        let list = combo.iter().map(|&id| value_rank[id as usize]).collect();
        entries.push((list, true, c as u32));
    }
    entries.sort_unstable();
    let mut single_rank = vec![0u64; dict.ids()];
    let mut combo_rank = vec![0u64; dict.combos.len()];
    let mut rank = 0u64;
    let mut previous: Option<&Vec<u32>> = None;
    for (list, is_combo, id) in &entries {
        if previous != Some(list) {
            rank += 1;
        }
        previous = Some(list);
        if *is_combo {
            combo_rank[*id as usize] = rank;
        } else {
            single_rank[*id as usize] = rank;
        }
    }
    (single_rank, combo_rank)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_sharing_long_prefixes_and_padding_get_their_own_ids() {
        let mut dict = StringDictionary::new(MultiValueHandling::SortedArray);
        let mut bytes = 0;
        let values = [
            "",
            "a",
            "a\0",
            "0123456789abcdef",
            "0123456789abcdef-1",
            "0123456789abcdef-2",
            "0123456789abcdef\0",
        ];
        let ids: Vec<u32> = values.iter().map(|v| dict.id_of(v, &mut bytes)).collect();
        let mut unique = ids.clone();
        unique.sort_unstable();
        unique.dedup();
        assert_eq!(
            unique.len(),
            values.len(),
            "every distinct value has its own id"
        );
        let again: Vec<u32> = values.iter().map(|v| dict.id_of(v, &mut bytes)).collect();
        assert_eq!(again, ids, "the same value finds the same id");
        let null = dict.null();
        assert!(!ids.contains(&null), "null is not the empty string");
        let sorted: Vec<&str> = dict
            .sorted_ids()
            .iter()
            .map(|&id| dict.str_of(id))
            .collect();
        let mut expected = values.to_vec();
        expected.sort_unstable();
        assert_eq!(sorted, expected);
    }
}
