//! The versioned interval timeline (Druid's `VersionedIntervalTimeline`): which segments are
//! visible for each stretch of time, given that newer versions overshadow older ones.
//!
//! Main types: [`Timeline`] (one datasource and namespace), [`Timelines`] (all of them, keyed by
//! datasource then namespace; namespaces never interact) and [`TimelineEntry`] (one visible
//! stretch returned by [`Timeline::lookup`]).
//!
//! Rules, as in Druid: segments with the same interval and version form a partition set, which is
//! *complete* when partitions `0..core_partitions` are all present (partitions numbered from
//! `core_partitions` up are appended ones, visible with the set once it is complete). Only
//! complete sets are visible and only they overshadow. At every instant the complete set with the
//! highest version (versions compare as strings) covering it is visible; a lower version stays
//! visible where no higher one covers it. Sets of one version whose intervals differ must not
//! overlap: [`Timeline::add`] refuses such a segment.
//!
//! Representation and invariants:
//! - partition sets live in a slab (`sets`), indexed by `duration → (start, version) → slot`;
//! - `visible` maps the start of each visible piece to its end and set; pieces do not overlap,
//!   reference complete sets only, and are maximal (two adjacent pieces never share a set).
//!   It is maintained on every change that makes a set complete or incomplete, by recomputing the
//!   visible pieces inside that set's interval only.
//!
//! Complexity (n sets, k pieces or sets touched, d distinct segment durations, typically one or a
//! few): [`Timeline::lookup`] is O(log n + k) — a one-day query over 100k segments reads a handful
//! of map nodes; finding the sets overlapping an interval is O(d log n + k); a completing or
//! uncompleting change costs O(d log n + k log k) for the k sets overlapping its interval;
//! [`Timeline::overshadowed`] is O(n (log n + k)).

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::ops::Bound;

use crate::id::SegmentId;
use crate::time::Interval;

mod timelines;

pub use timelines::Timelines;

/// One visible stretch of time: the partition set visible there and its chunks.
#[derive(Clone, Debug, PartialEq)]
pub struct TimelineEntry<'a, T> {
    /// The visible part, trimmed to the query interval.
    pub interval: Interval,
    /// The interval of the segments themselves.
    pub segment_interval: Interval,
    pub version: &'a str,
    /// Every partition of the (complete) set, by partition number.
    pub chunks: Vec<(u32, &'a T)>,
}

/// The timeline of one datasource and namespace (see the module doc).
#[derive(Clone, Debug)]
pub struct Timeline<T> {
    /// The (datasource, namespace) of the segments held; set by the first add, cleared when the
    /// timeline becomes empty.
    owner: Option<(String, Option<String>)>,
    sets: Vec<Option<ChunkSet<T>>>,
    free_slots: Vec<usize>,
    /// duration_ms → (start_ms, version) → slot in `sets`.
    index: BTreeMap<i64, BTreeMap<(i64, String), usize>>,
    /// Visible pieces by start_ms.
    visible: BTreeMap<i64, Piece>,
    segments: usize,
}

#[derive(Clone, Debug)]
struct ChunkSet<T> {
    interval: Interval,
    version: String,
    core_partitions: u32,
    /// How many of partitions `0..core_partitions` are present.
    core_present: u32,
    partitions: BTreeMap<u32, T>,
}

impl<T> ChunkSet<T> {
    fn is_complete(&self) -> bool {
        !self.partitions.is_empty() && self.core_present == self.core_partitions
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Piece {
    end_ms: i64,
    slot: usize,
}

impl<T> Default for Timeline<T> {
    fn default() -> Self {
        Timeline::new()
    }
}

impl<T> Timeline<T> {
    pub fn new() -> Self {
        Timeline {
            owner: None,
            sets: Vec::new(),
            free_slots: Vec::new(),
            index: BTreeMap::new(),
            visible: BTreeMap::new(),
            segments: 0,
        }
    }

    /// Number of segments (partition chunks) held, visible or not.
    pub fn len(&self) -> usize {
        self.segments
    }

    pub fn is_empty(&self) -> bool {
        self.segments == 0
    }

    fn owns(&self, id: &SegmentId) -> bool {
        match &self.owner {
            Some((ds, ns)) => *ds == id.data_source && *ns == id.namespace,
            None => true,
        }
    }

    /// Adds one partition chunk. `core_partitions` = how many partitions make the set complete
    /// (Druid's numbered shard spec `numCorePartitions`); a chunk set for (interval, version) is
    /// complete when partitions `0..core_partitions` are all present. Re-adding an id replaces
    /// its payload.
    pub fn add(&mut self, id: &SegmentId, core_partitions: u32, payload: T) -> Result<(), String> {
        if let Some((ds, ns)) = &self.owner
            && !self.owns(id)
        {
            let ns = ns.as_deref().map(|ns| format!("@{ns}")).unwrap_or_default();
            return Err(format!(
                "segment {id}: this timeline holds datasource {ds}{ns}"
            ));
        }
        let interval = id.interval;
        if interval.end_ms <= interval.start_ms {
            return Err(format!("segment {id}: interval is empty"));
        }
        let slot = match self.find_slot(interval, &id.version) {
            Some(slot) => {
                let set = self.set(slot);
                if set.core_partitions != core_partitions {
                    return Err(format!(
                        "segment {id}: {core_partitions} core partitions, but its partition set \
                         already has {}",
                        set.core_partitions
                    ));
                }
                slot
            }
            None => {
                if let Some(other) = self
                    .overlapping_slots(interval)
                    .into_iter()
                    .map(|slot| self.set(slot))
                    .find(|set| set.version == id.version)
                {
                    return Err(format!(
                        "segment {id}: overlaps segments of interval {} with the same version {} \
                         (segments of one version must not overlap)",
                        other.interval, id.version
                    ));
                }
                self.insert_set(interval, &id.version, core_partitions)
            }
        };
        let Some(set) = self.sets.get_mut(slot).and_then(Option::as_mut) else {
            return Err(format!("segment {id}: timeline index is inconsistent"));
        };
        let was_complete = set.is_complete();
        if set.partitions.insert(id.partition, payload).is_none() {
            self.segments += 1;
            if id.partition < core_partitions {
                set.core_present += 1;
            }
        }
        let now_complete = set.is_complete();
        if self.owner.is_none() {
            self.owner = Some((id.data_source.clone(), id.namespace.clone()));
        }
        if now_complete && !was_complete {
            self.recompute(interval);
        }
        Ok(())
    }

    /// Removes one partition chunk, returning its payload.
    pub fn remove(&mut self, id: &SegmentId) -> Option<T> {
        if !self.owns(id) {
            return None;
        }
        let slot = self.find_slot(id.interval, &id.version)?;
        let set = self.sets.get_mut(slot)?.as_mut()?;
        let was_complete = set.is_complete();
        let payload = set.partitions.remove(&id.partition)?;
        self.segments -= 1;
        if id.partition < set.core_partitions {
            set.core_present -= 1;
        }
        let (now_complete, now_empty) = (set.is_complete(), set.partitions.is_empty());
        if was_complete && !now_complete {
            self.recompute(id.interval);
        }
        if now_empty {
            self.free_set(slot, id.interval, &id.version);
        }
        if self.segments == 0 {
            self.owner = None;
        }
        Some(payload)
    }

    /// The payload of one segment, if present.
    pub fn get(&self, id: &SegmentId) -> Option<&T> {
        if !self.owns(id) {
            return None;
        }
        let slot = self.find_slot(id.interval, &id.version)?;
        self.set(slot).partitions.get(&id.partition)
    }

    /// The visible data overlapping `interval`, in time order: for each stretch of time, the
    /// complete partition set of the highest version covering it; entries are trimmed to
    /// `interval` and to the parts of their own interval not overshadowed by a higher complete
    /// version.
    pub fn lookup(&self, interval: Interval) -> Vec<TimelineEntry<'_, T>> {
        self.pieces(interval)
            .map(|(start_ms, piece)| {
                let set = self.set(piece.slot);
                TimelineEntry {
                    interval: Interval::new(
                        start_ms.max(interval.start_ms),
                        piece.end_ms.min(interval.end_ms),
                    ),
                    segment_interval: set.interval,
                    version: &set.version,
                    chunks: set.partitions.iter().map(|(p, t)| (*p, t)).collect(),
                }
            })
            .collect()
    }

    /// Ids of segments fully overshadowed (every instant of their interval is covered by a
    /// higher complete version), sorted: the coordinator marks these unused.
    pub fn overshadowed(&self) -> Vec<SegmentId> {
        let Some((ds, ns)) = &self.owner else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for set in self.sets.iter().flatten() {
            if self.covered_by_higher(set.interval, &set.version) {
                out.extend(set.partitions.keys().map(|&partition| SegmentId {
                    data_source: ds.clone(),
                    namespace: ns.clone(),
                    interval: set.interval,
                    version: set.version.clone(),
                    partition,
                }));
            }
        }
        out.sort_unstable();
        out
    }

    /// Whether every instant of `id`'s interval is covered by a complete set of a higher version
    /// (whether or not `id` itself is in the timeline).
    pub fn is_overshadowed(&self, id: &SegmentId) -> bool {
        self.owns(id) && self.covered_by_higher(id.interval, &id.version)
    }

    fn covered_by_higher(&self, interval: Interval, version: &str) -> bool {
        if interval.end_ms <= interval.start_ms {
            return false;
        }
        let mut covered_to = interval.start_ms;
        for (start_ms, piece) in self.pieces(interval) {
            if start_ms > covered_to || self.set(piece.slot).version.as_str() <= version {
                return false;
            }
            covered_to = piece.end_ms;
        }
        covered_to >= interval.end_ms
    }

    /// The visible pieces overlapping `interval`, in time order.
    fn pieces(&self, interval: Interval) -> impl Iterator<Item = (i64, Piece)> + '_ {
        let from = match self.visible.range(..=interval.start_ms).next_back() {
            Some((&start, piece)) if piece.end_ms > interval.start_ms => start,
            _ => interval.start_ms,
        };
        let range = if from < interval.end_ms {
            Some(self.visible.range(from..interval.end_ms))
        } else {
            None
        };
        range
            .into_iter()
            .flatten()
            .map(|(&start, &piece)| (start, piece))
    }

    fn set(&self, slot: usize) -> &ChunkSet<T> {
        match self.sets.get(slot) {
            Some(Some(set)) => set,
            // Slots in `index` and `visible` always refer to live sets.
            _ => unreachable!("timeline slot {slot} is not a live partition set"),
        }
    }

    fn find_slot(&self, interval: Interval, version: &str) -> Option<usize> {
        let by_start = self.index.get(&interval.duration_ms())?;
        let key = (interval.start_ms, String::new());
        by_start
            .range(key..)
            .take_while(|((start, _), _)| *start == interval.start_ms)
            .find(|((_, v), _)| v == version)
            .map(|(_, &slot)| slot)
    }

    /// Slots of all sets (complete or not) whose interval overlaps `interval`.
    fn overlapping_slots(&self, interval: Interval) -> Vec<usize> {
        let mut out = Vec::new();
        for (&duration, by_start) in &self.index {
            // Overlap: start < interval.end and start + duration > interval.start.
            let lo = interval.start_ms.saturating_sub(duration).saturating_add(1);
            if lo >= interval.end_ms {
                continue;
            }
            let range = (
                Bound::Included((lo, String::new())),
                Bound::Excluded((interval.end_ms, String::new())),
            );
            out.extend(by_start.range(range).map(|(_, &slot)| slot));
        }
        out
    }

    fn insert_set(&mut self, interval: Interval, version: &str, core_partitions: u32) -> usize {
        let set = ChunkSet {
            interval,
            version: version.to_owned(),
            core_partitions,
            core_present: 0,
            partitions: BTreeMap::new(),
        };
        let slot = match self.free_slots.pop() {
            Some(slot) => {
                self.sets[slot] = Some(set);
                slot
            }
            None => {
                self.sets.push(Some(set));
                self.sets.len() - 1
            }
        };
        self.index
            .entry(interval.duration_ms())
            .or_default()
            .insert((interval.start_ms, version.to_owned()), slot);
        slot
    }

    fn free_set(&mut self, slot: usize, interval: Interval, version: &str) {
        self.sets[slot] = None;
        self.free_slots.push(slot);
        let duration = interval.duration_ms();
        if let Some(by_start) = self.index.get_mut(&duration) {
            by_start.remove(&(interval.start_ms, version.to_owned()));
            if by_start.is_empty() {
                self.index.remove(&duration);
            }
        }
    }

    /// Recomputes the visible pieces inside `range` from the complete sets overlapping it.
    fn recompute(&mut self, range: Interval) {
        let pieces = self.visible_within(range);
        self.cut_out(range);
        for (start_ms, end_ms, slot) in pieces {
            self.visible.insert(start_ms, Piece { end_ms, slot });
        }
        self.coalesce_at(range.start_ms);
        self.coalesce_at(range.end_ms);
    }

    /// Maximal runs of the highest complete version inside `range`, as (start, end, slot).
    fn visible_within(&self, range: Interval) -> Vec<(i64, i64, usize)> {
        let mut candidates: Vec<(i64, i64, usize)> = self
            .overlapping_slots(range)
            .into_iter()
            .filter(|&slot| self.set(slot).is_complete())
            .map(|slot| {
                let i = self.set(slot).interval;
                (
                    i.start_ms.max(range.start_ms),
                    i.end_ms.min(range.end_ms),
                    slot,
                )
            })
            .collect();
        candidates.sort_unstable();
        let mut bounds: Vec<i64> = candidates.iter().flat_map(|c| [c.0, c.1]).collect();
        bounds.sort_unstable();
        bounds.dedup();
        // Max-heap by version; entries whose end has passed are dropped when they surface.
        let mut active: BinaryHeap<(&str, Reverse<i64>, usize)> = BinaryHeap::new();
        let mut next = 0;
        let mut out: Vec<(i64, i64, usize)> = Vec::new();
        for w in bounds.windows(2) {
            let (from, to) = (w[0], w[1]);
            while let Some(&(start, end, slot)) = candidates.get(next).filter(|c| c.0 <= from) {
                debug_assert!(start <= from);
                active.push((&self.set(slot).version, Reverse(end), slot));
                next += 1;
            }
            while active.peek().is_some_and(|top| top.1.0 <= from) {
                active.pop();
            }
            if let Some(&(_, _, slot)) = active.peek() {
                match out.last_mut() {
                    Some(last) if last.1 == from && last.2 == slot => last.1 = to,
                    _ => out.push((from, to, slot)),
                }
            }
        }
        out
    }

    /// Removes every visible piece inside `range`, trimming pieces that straddle its ends.
    fn cut_out(&mut self, range: Interval) {
        if let Some((&start, &piece)) = self.visible.range(..range.start_ms).next_back()
            && piece.end_ms > range.start_ms
        {
            self.visible.insert(
                start,
                Piece {
                    end_ms: range.start_ms,
                    ..piece
                },
            );
            if piece.end_ms > range.end_ms {
                self.visible.insert(range.end_ms, piece);
            }
        }
        let inside: Vec<i64> = self
            .visible
            .range(range.start_ms..range.end_ms)
            .map(|(&start, _)| start)
            .collect();
        for start in inside {
            if let Some(piece) = self.visible.remove(&start)
                && piece.end_ms > range.end_ms
            {
                self.visible.insert(range.end_ms, piece);
            }
        }
    }

    /// Joins the piece starting at `at` with the one ending there if both show the same set.
    fn coalesce_at(&mut self, at: i64) {
        let Some(&right) = self.visible.get(&at) else {
            return;
        };
        if let Some((_, left)) = self.visible.range_mut(..at).next_back()
            && left.end_ms == at
            && left.slot == right.slot
        {
            left.end_ms = right.end_ms;
            self.visible.remove(&at);
        }
    }
}

#[cfg(test)]
mod tests;
