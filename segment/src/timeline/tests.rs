//! Unit tests of the timeline's internal invariants.

use proptest::prelude::*;

use super::*;

impl<T> Timeline<T> {
    /// Checks the internal invariants (tests only).
    fn validate(&self) -> Result<(), String> {
        let mut prev: Option<(i64, Piece)> = None;
        for (&start, &piece) in &self.visible {
            if piece.end_ms <= start {
                return Err(format!("empty piece at {start}"));
            }
            let set = self.sets.get(piece.slot).and_then(Option::as_ref);
            if !set.is_some_and(|s| {
                s.is_complete()
                    && s.interval
                        .contains_interval(&Interval::new(start, piece.end_ms))
            }) {
                return Err(format!(
                    "piece at {start} shows a dead, incomplete or foreign set"
                ));
            }
            if let Some((_, p)) = prev {
                if p.end_ms > start {
                    return Err(format!("pieces overlap at {start}"));
                }
                if p.end_ms == start && p.slot == piece.slot {
                    return Err(format!("pieces not coalesced at {start}"));
                }
            }
            prev = Some((start, piece));
        }
        let indexed: usize = self.index.values().map(BTreeMap::len).sum();
        let live = self.sets.iter().flatten().count();
        let chunks: usize = self.sets.iter().flatten().map(|s| s.partitions.len()).sum();
        if indexed != live
            || chunks != self.segments
            || live + self.free_slots.len() != self.sets.len()
        {
            return Err("slab, index and counts disagree".into());
        }
        Ok(())
    }
}

fn id(start: i64, end: i64, version: &str, partition: u32) -> SegmentId {
    SegmentId::new("ds", None, Interval::new(start, end), version, partition)
}

#[test]
fn pieces_coalesce_and_split() {
    let mut t = Timeline::new();
    t.add(&id(0, 10, "a", 0), 1, ()).unwrap();
    t.add(&id(3, 5, "b", 0), 2, ()).unwrap(); // incomplete: no change
    t.validate().unwrap();
    assert_eq!(t.visible.len(), 1);
    t.add(&id(3, 5, "b", 1), 2, ()).unwrap();
    t.validate().unwrap();
    assert_eq!(t.visible.len(), 3);
    assert_eq!(t.remove(&id(3, 5, "b", 0)), Some(()));
    t.validate().unwrap();
    assert_eq!(t.visible.len(), 1, "the older set's pieces join again");
    assert_eq!(t.remove(&id(3, 5, "b", 1)), Some(()));
    assert_eq!(t.remove(&id(0, 10, "a", 0)), Some(()));
    t.validate().unwrap();
    assert!(t.is_empty() && t.visible.is_empty() && t.index.is_empty());
    assert_eq!(t.free_slots.len(), 2);
    t.add(&id(0, 1, "c", 0), 1, ()).unwrap();
    t.validate().unwrap();
    assert_eq!(t.sets.len(), 2, "freed slots are reused");
}

proptest! {
    #[test]
    fn invariants_hold_under_random_changes(
        ops in proptest::collection::vec(
            (any::<bool>(), 0i64..20, 1i64..8, 0u8..4, 0u32..3, 1u32..3),
            1..60,
        )
    ) {
        let mut t = Timeline::new();
        for (add, start, len, version, partition, core) in ops {
            let id = id(start, start + len, &format!("v{version}"), partition);
            if add {
                let _ = t.add(&id, core, partition);
            } else {
                t.remove(&id);
            }
            prop_assert_eq!(t.validate(), Ok(()));
        }
    }
}
