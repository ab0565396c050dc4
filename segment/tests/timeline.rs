//! The versioned interval timeline: Druid's visibility and overshadowing rules case by case, and
//! a property test against a naive per-instant oracle.

use std::collections::BTreeMap;
use std::time::Instant;

use grove_segment::id::SegmentId;
use grove_segment::time::{Interval, MS_PER_DAY};
use grove_segment::timeline::{Timeline, TimelineEntry, Timelines};
use proptest::prelude::*;

fn days(start: i64, end: i64) -> Interval {
    Interval::new(start * MS_PER_DAY, end * MS_PER_DAY)
}

fn seg(interval: Interval, version: &str, partition: u32) -> SegmentId {
    SegmentId::new("wiki", None, interval, version, partition)
}

/// (visible interval, segment interval, version, partitions) of each entry.
fn summary<T>(entries: &[TimelineEntry<'_, T>]) -> Vec<(Interval, Interval, String, Vec<u32>)> {
    entries
        .iter()
        .map(|e| {
            let partitions = e.chunks.iter().map(|(p, _)| *p).collect();
            (
                e.interval,
                e.segment_interval,
                e.version.to_owned(),
                partitions,
            )
        })
        .collect()
}

#[test]
fn higher_version_overshadows_fully() {
    let mut t = Timeline::new();
    t.add(&seg(days(0, 1), "v1", 0), 2, "old0").unwrap();
    t.add(&seg(days(0, 1), "v1", 1), 2, "old1").unwrap();
    t.add(&seg(days(0, 1), "v2", 0), 1, "new").unwrap();
    let entries = t.lookup(days(0, 1));
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].version, "v2");
    assert_eq!(entries[0].chunks, vec![(0, &"new")]);
    assert_eq!(
        t.overshadowed(),
        vec![seg(days(0, 1), "v1", 0), seg(days(0, 1), "v1", 1)]
    );
    assert!(t.is_overshadowed(&seg(days(0, 1), "v1", 1)));
    assert!(!t.is_overshadowed(&seg(days(0, 1), "v2", 0)));
    // A lower version that was never added is overshadowed too; a higher one is not.
    assert!(t.is_overshadowed(&seg(days(0, 1), "v0", 0)));
    assert!(!t.is_overshadowed(&seg(days(0, 1), "v3", 0)));
    assert_eq!(t.len(), 3);
}

#[test]
fn partial_overlap_keeps_the_uncovered_parts_visible() {
    let mut t = Timeline::new();
    t.add(&seg(days(0, 3), "v1", 0), 1, ()).unwrap();
    t.add(&seg(days(1, 2), "v2", 0), 1, ()).unwrap();
    assert_eq!(
        summary(&t.lookup(days(0, 3))),
        vec![
            (days(0, 1), days(0, 3), "v1".to_owned(), vec![0]),
            (days(1, 2), days(1, 2), "v2".to_owned(), vec![0]),
            (days(2, 3), days(0, 3), "v1".to_owned(), vec![0]),
        ]
    );
    // Trimmed to the query.
    let half = MS_PER_DAY / 2;
    let query = Interval::new(half, 2 * MS_PER_DAY + half);
    let entries = t.lookup(query);
    let visible: Vec<Interval> = entries.iter().map(|e| e.interval).collect();
    assert_eq!(
        visible,
        vec![
            Interval::new(half, MS_PER_DAY),
            days(1, 2),
            Interval::new(2 * MS_PER_DAY, 2 * MS_PER_DAY + half)
        ]
    );
    assert!(
        t.overshadowed().is_empty(),
        "v1 is still visible outside day 1"
    );
    // Covering the rest with another version overshadows v1, piece by piece.
    t.add(&seg(days(0, 1), "v3", 0), 1, ()).unwrap();
    assert!(t.overshadowed().is_empty());
    t.add(&seg(days(2, 3), "v2", 0), 1, ()).unwrap();
    assert_eq!(t.overshadowed(), vec![seg(days(0, 3), "v1", 0)]);
    assert!(t.lookup(days(0, 3)).iter().all(|e| e.version != "v1"));
}

#[test]
fn incomplete_set_is_invisible_and_overshadows_nothing() {
    let mut t = Timeline::new();
    t.add(&seg(days(0, 1), "v1", 0), 1, ()).unwrap();
    t.add(&seg(days(0, 1), "v2", 0), 3, ()).unwrap();
    t.add(&seg(days(0, 1), "v2", 2), 3, ()).unwrap();
    let entries = t.lookup(days(0, 1));
    assert_eq!(
        summary(&entries),
        vec![(days(0, 1), days(0, 1), "v1".to_owned(), vec![0])]
    );
    assert!(t.overshadowed().is_empty());
    assert!(!t.is_overshadowed(&seg(days(0, 1), "v1", 0)));
    // Nothing complete at all: nothing visible.
    let mut only_incomplete = Timeline::new();
    only_incomplete
        .add(&seg(days(0, 1), "v1", 1), 2, ())
        .unwrap();
    assert!(only_incomplete.lookup(days(0, 1)).is_empty());
}

#[test]
fn set_becomes_visible_when_its_last_partition_arrives() {
    let mut t = Timeline::new();
    t.add(&seg(days(0, 1), "v1", 0), 1, ()).unwrap();
    for (i, partition) in [2u32, 0].into_iter().enumerate() {
        t.add(&seg(days(0, 1), "v2", partition), 3, ()).unwrap();
        assert_eq!(
            t.lookup(days(0, 1))[0].version,
            "v1",
            "after {} partitions",
            i + 1
        );
    }
    t.add(&seg(days(0, 1), "v2", 1), 3, ()).unwrap();
    assert_eq!(
        summary(&t.lookup(days(0, 1))),
        vec![(days(0, 1), days(0, 1), "v2".to_owned(), vec![0, 1, 2])]
    );
    // An appended partition beyond the core set joins the visible set.
    t.add(&seg(days(0, 1), "v2", 3), 3, ()).unwrap();
    assert_eq!(t.lookup(days(0, 1))[0].chunks.len(), 4);
    assert_eq!(t.overshadowed(), vec![seg(days(0, 1), "v1", 0)]);
    // Core partition counts must agree within a set.
    assert!(t.add(&seg(days(0, 1), "v2", 4), 5, ()).is_err());
}

#[test]
fn removing_a_partition_uncovers_the_older_version() {
    let mut t = Timeline::new();
    t.add(&seg(days(0, 2), "v1", 0), 1, 10).unwrap();
    t.add(&seg(days(0, 1), "v2", 0), 2, 20).unwrap();
    t.add(&seg(days(0, 1), "v2", 1), 2, 21).unwrap();
    assert_eq!(t.lookup(days(0, 2)).len(), 2);
    assert_eq!(t.remove(&seg(days(0, 1), "v2", 1)), Some(21));
    assert_eq!(t.remove(&seg(days(0, 1), "v2", 1)), None);
    assert_eq!(
        summary(&t.lookup(days(0, 2))),
        vec![(days(0, 2), days(0, 2), "v1".to_owned(), vec![0])],
        "v1 is visible again, in one piece"
    );
    assert_eq!(t.len(), 2);
    assert_eq!(t.remove(&seg(days(0, 2), "v1", 0)), Some(10));
    assert!(t.lookup(days(0, 2)).is_empty());
    assert_eq!(t.remove(&seg(days(0, 1), "v2", 0)), Some(20));
    assert!(t.is_empty());
}

#[test]
fn re_adding_an_id_replaces_its_payload() {
    let mut t = Timeline::new();
    t.add(&seg(days(0, 1), "v1", 0), 1, "a").unwrap();
    t.add(&seg(days(0, 1), "v1", 0), 1, "b").unwrap();
    assert_eq!(t.len(), 1);
    assert_eq!(t.get(&seg(days(0, 1), "v1", 0)), Some(&"b"));
    assert_eq!(t.lookup(days(0, 1))[0].chunks, vec![(0, &"b")]);
}

#[test]
fn same_version_overlap_is_rejected() {
    let mut t = Timeline::new();
    t.add(&seg(days(0, 2), "v1", 0), 1, ()).unwrap();
    let err = t.add(&seg(days(1, 3), "v1", 0), 1, ()).unwrap_err();
    assert!(err.contains("same version"), "{err}");
    // Adjacent intervals of one version are fine, as is the overlap with another version.
    t.add(&seg(days(2, 3), "v1", 0), 1, ()).unwrap();
    t.add(&seg(days(1, 3), "v2", 0), 1, ()).unwrap();
    assert_eq!(t.len(), 3);
    assert!(
        t.add(&seg(Interval::new(5, 5), "v3", 0), 1, ()).is_err(),
        "empty interval"
    );
    let other = SegmentId::new("other", None, days(0, 1), "v9", 0);
    assert!(
        t.add(&other, 1, ()).is_err(),
        "one timeline holds one datasource"
    );
    assert_eq!(t.len(), 3);
}

#[test]
fn namespaces_never_interact() {
    let mut all = Timelines::new();
    let default_v1 = seg(days(0, 1), "v1", 0);
    let metrics_v2 = SegmentId::new("wiki", Some("metrics"), days(0, 1), "v2", 0);
    let metrics_v1 = SegmentId::new("wiki", Some("metrics"), days(0, 1), "v1", 0);
    all.add(&default_v1, 1, "d1").unwrap();
    all.add(&metrics_v2, 1, "m2").unwrap();
    all.add(&metrics_v1, 1, "m1").unwrap();
    // Same version and interval in another namespace is not an overlap.
    all.add(
        &SegmentId::new("wiki", Some("other"), days(0, 2), "v1", 0),
        1,
        "o1",
    )
    .unwrap();
    assert_eq!(
        all.namespaces("wiki"),
        vec![None, Some("metrics"), Some("other")]
    );
    assert_eq!(
        all.lookup("wiki", None, days(0, 1))[0].chunks,
        vec![(0, &"d1")]
    );
    assert_eq!(
        all.lookup("wiki", Some("metrics"), days(0, 1))[0].chunks,
        vec![(0, &"m2")]
    );
    assert!(all.lookup("wiki", Some("nope"), days(0, 1)).is_empty());
    assert!(all.lookup("nope", None, days(0, 1)).is_empty());
    assert_eq!(all.overshadowed(), vec![metrics_v1.clone()]);
    assert!(!all.is_overshadowed(&default_v1));
    assert_eq!(all.len(), 4);
    assert_eq!(all.remove(&metrics_v2), Some("m2"));
    assert_eq!(all.remove(&metrics_v1), Some("m1"));
    assert_eq!(all.namespaces("wiki"), vec![None, Some("other")]);
    assert_eq!(all.data_sources().collect::<Vec<_>>(), vec!["wiki"]);
    all.remove(&default_v1);
    assert_eq!(all.namespaces("wiki"), vec![Some("other")]);
}

#[test]
fn lookups_at_scale_do_not_scan() {
    const SEGMENTS: i64 = 100_000;
    let mut t = Timeline::new();
    for day in 0..SEGMENTS {
        t.add(&seg(days(day, day + 1), "v1", 0), 1, day).unwrap();
    }
    // A month re-ingested at a higher version, and one wide segment under everything.
    for day in 500..530 {
        t.add(&seg(days(day, day + 1), "v2", 0), 1, -day).unwrap();
    }
    t.add(&seg(days(0, SEGMENTS + 10), "v0", 0), 1, -1).unwrap();
    let started = Instant::now();
    for day in (0..SEGMENTS + 10).step_by(10) {
        let entries = t.lookup(days(day, day + 1));
        assert_eq!(entries.len(), 1);
        let expected = match day {
            500..530 => "v2",
            d if d >= SEGMENTS => "v0",
            _ => "v1",
        };
        assert_eq!(entries[0].version, expected, "day {day}");
    }
    // 10k lookups over 100k segments: microseconds each even unoptimized; a scan would take
    // minutes.
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
    assert_eq!(
        t.overshadowed().len(),
        30,
        "the v1 month is overshadowed; v0 is not"
    );
}

/// Partitions of a set with their payloads.
type Parts = Vec<(u32, u64)>;

/// A naive model: the present segments and their core partition counts.
#[derive(Default)]
struct Oracle {
    segments: BTreeMap<SegmentId, (u32, u64)>,
}

impl Oracle {
    fn add(&mut self, id: &SegmentId, core: u32, payload: u64) -> bool {
        let conflict = self.segments.iter().any(|(other, (other_core, _))| {
            other.version == id.version
                && other.interval.overlaps(&id.interval)
                && (other.interval != id.interval || *other_core != core)
        });
        if conflict {
            return false;
        }
        self.segments.insert(id.clone(), (core, payload));
        true
    }

    /// Complete sets as (interval, version) → partitions with payloads.
    fn complete_sets(&self) -> BTreeMap<(Interval, String), Parts> {
        let mut sets: BTreeMap<(Interval, String), (u32, Parts)> = BTreeMap::new();
        for (id, &(core, payload)) in &self.segments {
            let set = sets
                .entry((id.interval, id.version.clone()))
                .or_insert((core, Vec::new()));
            set.1.push((id.partition, payload));
        }
        sets.into_iter()
            .filter(|(_, (core, parts))| (0..*core).all(|p| parts.iter().any(|(q, _)| *q == p)))
            .map(|(key, (_, parts))| (key, parts))
            .collect()
    }

    /// For each unit of `0..UNITS`, the visible (interval, version).
    fn visible(&self) -> Vec<Option<(Interval, String)>> {
        let sets = self.complete_sets();
        (0..UNITS)
            .map(|u| {
                sets.keys()
                    .filter(|(i, _)| i.contains(u))
                    .max_by(|a, b| a.1.cmp(&b.1))
                    .cloned()
            })
            .collect()
    }
}

const UNITS: i64 = 64;

#[derive(Clone, Debug)]
enum Op {
    Add {
        start: i64,
        len: i64,
        version: u8,
        partition: u32,
        core: u32,
    },
    Remove(prop::sample::Index),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0..UNITS, 1i64..24, 0u8..5, 0u32..3, 0u32..3).prop_map(
            |(start, len, version, partition, core)| Op::Add { start, len, version, partition, core }
        ),
        1 => any::<prop::sample::Index>().prop_map(Op::Remove),
    ]
}

fn check(t: &Timeline<u64>, oracle: &Oracle, query: Interval) -> Result<(), TestCaseError> {
    let expected = oracle.visible();
    let sets = oracle.complete_sets();
    let entries = t.lookup(query);
    let mut seen: Vec<Option<(Interval, String)>> = vec![None; UNITS as usize];
    let mut previous: Option<&TimelineEntry<'_, u64>> = None;
    for e in &entries {
        prop_assert!(
            query.contains_interval(&e.interval),
            "{:?} outside {:?}",
            e.interval,
            query
        );
        prop_assert!(e.segment_interval.contains_interval(&e.interval));
        prop_assert!(e.interval.start_ms < e.interval.end_ms);
        if let Some(p) = previous {
            prop_assert!(
                p.interval.end_ms <= e.interval.start_ms,
                "entries out of order"
            );
            let same = p.segment_interval == e.segment_interval && p.version == e.version;
            prop_assert!(
                !(same && p.interval.end_ms == e.interval.start_ms),
                "pieces not joined"
            );
        }
        let key = (e.segment_interval, e.version.to_owned());
        let chunks: Vec<(u32, u64)> = e.chunks.iter().map(|(p, v)| (*p, **v)).collect();
        prop_assert_eq!(Some(&chunks), sets.get(&key));
        for u in e.interval.start_ms..e.interval.end_ms {
            seen[u as usize] = Some(key.clone());
        }
        previous = Some(e);
    }
    for u in 0..UNITS {
        let want = if query.contains(u) {
            expected[u as usize].clone()
        } else {
            None
        };
        prop_assert_eq!(&seen[u as usize], &want, "unit {}", u);
    }
    let overshadowed: Vec<SegmentId> = oracle
        .segments
        .keys()
        .filter(|id| {
            (id.interval.start_ms..id.interval.end_ms).all(|u| {
                expected
                    .get(u as usize)
                    .and_then(|v| v.as_ref())
                    .is_some_and(|(_, version)| *version > id.version)
            })
        })
        .cloned()
        .collect();
    prop_assert_eq!(&t.overshadowed(), &overshadowed);
    for id in oracle.segments.keys() {
        prop_assert_eq!(t.is_overshadowed(id), overshadowed.contains(id));
    }
    prop_assert_eq!(t.len(), oracle.segments.len());
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn matches_the_per_instant_oracle(
        ops in proptest::collection::vec(op(), 1..80),
        query_start in 0..UNITS,
        query_len in 1..UNITS,
    ) {
        let mut t = Timeline::new();
        let mut oracle = Oracle::default();
        let query = Interval::new(query_start, (query_start + query_len).min(UNITS));
        for (n, op) in ops.into_iter().enumerate() {
            match op {
                Op::Add { start, len, version, partition, core } => {
                    let end = (start + len).min(UNITS);
                    if end == start {
                        continue;
                    }
                    let id = seg(Interval::new(start, end), &format!("v{version}"), partition);
                    let payload = n as u64;
                    prop_assert_eq!(t.add(&id, core, payload).is_ok(), oracle.add(&id, core, payload));
                }
                Op::Remove(index) => {
                    if oracle.segments.is_empty() {
                        continue;
                    }
                    let id = oracle.segments.keys().nth(index.index(oracle.segments.len())).cloned();
                    let Some(id) = id else { continue };
                    let expected = oracle.segments.remove(&id).map(|(_, payload)| payload);
                    prop_assert_eq!(t.remove(&id), expected);
                }
            }
            check(&t, &oracle, Interval::new(0, UNITS))?;
        }
        check(&t, &oracle, query)?;
    }
}
