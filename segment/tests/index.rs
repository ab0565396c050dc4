//! The incremental index and merge against a simple roll-up oracle:
//! random rows → index → columns (→ segment file → columns) equal the oracle's rows; merging parts
//! equals ingesting everything at once.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use grove_segment::columns::{DimensionData, MetricData, SegmentColumns};
use grove_segment::format::{Compression, Segment, SegmentMeta, WriteOptions, write_segment_to};
use grove_segment::id::SegmentId;
use grove_segment::index::IncrementalIndex;
use grove_segment::merge::merge_columns;
use grove_segment::row::{InputRow, Value};
use grove_segment::schema::{DimensionSchema, MetricKind, MetricSchema, Schema};
use grove_segment::sketch::HllSketch;
use grove_segment::time::{Granularity, Interval};
use proptest::prelude::*;

fn schema(rollup: bool) -> Schema {
    sorted_schema(rollup, 0)
}

/// The schema with `__time` sorting after the first `time_at` dimensions.
fn sorted_schema(rollup: bool, time_at: usize) -> Schema {
    let metric = |name: &str, field: Option<&str>, kind| MetricSchema {
        name: name.into(),
        field_name: field.map(Into::into),
        kind,
    };
    Schema {
        data_source: "events".into(),
        dimensions: vec![
            DimensionSchema::string("country"),
            DimensionSchema::string("tags"),
            DimensionSchema::long("code"),
            DimensionSchema::double("ratio"),
        ],
        metrics: vec![
            metric("count", None, MetricKind::Count),
            metric("sum", Some("value"), MetricKind::LongSum),
            metric("min", Some("value"), MetricKind::LongMin),
            metric("max", Some("value"), MetricKind::LongMax),
            metric("dsum", Some("amount"), MetricKind::DoubleSum),
            metric(
                "users",
                Some("user"),
                MetricKind::HllSketch {
                    lg_k: 12,
                    utf16le: false,
                },
            ),
        ],
        query_granularity: Granularity::MINUTE,
        segment_granularity: Granularity::DAY,
        rollup,
        time_position: time_at,
    }
}

/// Slots: country, tags, code, ratio, value, amount, user (the `RowLayout` order).
#[derive(Clone, Debug)]
struct Raw {
    ms: i64,
    country: Option<&'static str>,
    tags: Vec<&'static str>,
    code: Option<i64>,
    ratio: Option<f64>,
    value: i64,
    amount: f64,
    user: u8,
}

impl Raw {
    fn input(&self) -> InputRow {
        let tags = match self.tags.len() {
            0 => Value::Null,
            1 if self.ms % 2 == 0 => Value::String(self.tags[0].into()),
            _ => Value::Strings(self.tags.iter().map(|s| s.to_string()).collect()),
        };
        InputRow {
            timestamp_ms: self.ms,
            values: vec![
                self.country
                    .map_or(Value::Null, |c| Value::String(c.into())),
                tags,
                self.code.map_or(Value::Null, Value::Long),
                self.ratio.map_or(Value::Null, Value::Double),
                Value::Long(self.value),
                Value::Double(self.amount),
                Value::String(format!("u{}", self.user)),
            ],
        }
    }
}

fn raw_rows() -> impl Strategy<Value = Vec<Raw>> {
    let row = (
        0i64..4 * 60_000,
        prop::option::of(prop::sample::select(vec!["de", "fr", "us", ""])),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "c"]), 0..3),
        prop::option::of(-2i64..3),
        prop::option::of(prop::sample::select(vec![-1.5, 0.0, -0.0, 2.25])),
        -100i64..100,
        (-8i32..8).prop_map(|x| x as f64 * 0.5),
        0u8..20,
    )
        .prop_map(
            |(ms, country, tags, code, ratio, value, amount, user)| Raw {
                ms,
                country,
                tags,
                code,
                ratio,
                value,
                amount,
                user,
            },
        );
    prop::collection::vec(row, 0..200)
}

#[derive(Clone, Debug, PartialEq)]
struct F(f64);
impl Eq for F {}
impl PartialOrd for F {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for F {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

type Key = (i64, Option<String>, Vec<String>, Option<i64>, Option<F>);

#[derive(Clone, Debug, PartialEq)]
struct Aggregates {
    count: i64,
    sum: i64,
    min: i64,
    max: i64,
    dsum: f64,
    users: f64,
}

fn key_of(raw: &Raw) -> Key {
    let mut tags: Vec<String> = raw.tags.iter().map(|s| s.to_string()).collect();
    tags.sort();
    (
        raw.ms - raw.ms % 60_000,
        raw.country.map(Into::into),
        tags,
        raw.code,
        raw.ratio.map(|r| {
            F(if r == 0.0 {
                0.0
            } else if r.is_nan() {
                f64::NAN
            } else {
                r
            })
        }),
    )
}

/// Orders keys as a schema with `__time` after `time_at` dimensions sorts its rows.
fn key_order(a: &Key, b: &Key, time_at: usize) -> Ordering {
    let mut columns = vec![a.1.cmp(&b.1), a.2.cmp(&b.2), a.3.cmp(&b.3), a.4.cmp(&b.4)];
    columns.insert(time_at, a.0.cmp(&b.0));
    columns.into_iter().fold(Ordering::Equal, Ordering::then)
}

/// The oracle: roll rows up by key in a BTreeMap (or keep them all without roll-up), stably sorted
/// in the order of a schema with `__time` after `time_at` dimensions.
fn oracle(rows: &[Raw], rollup: bool, time_at: usize) -> Vec<(Key, Aggregates)> {
    let one = |r: &Raw| Aggregates {
        count: 1,
        sum: r.value,
        min: r.value,
        max: r.value,
        dsum: r.amount,
        users: 1.0,
    };
    if !rollup {
        let mut out: Vec<(Key, Aggregates)> = rows.iter().map(|r| (key_of(r), one(r))).collect();
        out.sort_by(|a, b| key_order(&a.0, &b.0, time_at));
        return out;
    }
    let mut groups: BTreeMap<Key, (Aggregates, std::collections::BTreeSet<u8>)> = BTreeMap::new();
    for r in rows {
        let entry = groups.entry(key_of(r)).or_insert_with(|| {
            (
                Aggregates {
                    count: 0,
                    sum: 0,
                    min: i64::MAX,
                    max: i64::MIN,
                    dsum: 0.0,
                    users: 0.0,
                },
                Default::default(),
            )
        });
        entry.0.count += 1;
        entry.0.sum += r.value;
        entry.0.min = entry.0.min.min(r.value);
        entry.0.max = entry.0.max.max(r.value);
        entry.0.dsum += r.amount;
        entry.1.insert(r.user);
    }
    let mut out: Vec<(Key, Aggregates)> = groups
        .into_iter()
        .map(|(k, (mut a, users))| {
            a.users = users.len() as f64;
            (k, a)
        })
        .collect();
    out.sort_by(|a, b| key_order(&a.0, &b.0, time_at));
    out
}

/// Reads columns back into oracle-shaped rows.
fn decode(columns: &SegmentColumns) -> Vec<(Key, Aggregates)> {
    let string_values = |d: usize, row: usize| -> Vec<Option<String>> {
        match &columns.dimensions[d].data {
            DimensionData::String { dictionary, rows } => rows
                .row(row)
                .iter()
                .map(|&id| dictionary[id as usize].clone())
                .collect(),
            other => panic!("expected strings, got {other:?}"),
        }
    };
    (0..columns.num_rows())
        .map(|r| {
            let country = string_values(0, r).into_iter().next().flatten();
            let tags: Vec<String> = string_values(1, r).into_iter().flatten().collect();
            let code = match &columns.dimensions[2].data {
                DimensionData::Long { values, nulls } => {
                    (!nulls.contains(r as u32)).then_some(values[r])
                }
                other => panic!("expected longs, got {other:?}"),
            };
            let ratio = match &columns.dimensions[3].data {
                DimensionData::Double { values, nulls } => {
                    (!nulls.contains(r as u32)).then(|| F(values[r]))
                }
                other => panic!("expected doubles, got {other:?}"),
            };
            let long = |m: usize| match &columns.metrics[m].data {
                MetricData::Long(v) => v[r],
                other => panic!("expected longs, got {other:?}"),
            };
            let dsum = match &columns.metrics[4].data {
                MetricData::Double(v) => v[r],
                other => panic!("expected doubles, got {other:?}"),
            };
            let users = match &columns.metrics[5].data {
                MetricData::Sketch(v) => HllSketch::from_bytes(&v[r]).expect("sketch").estimate(),
                other => panic!("expected sketches, got {other:?}"),
            };
            (
                (columns.time[r], country, tags, code, ratio),
                Aggregates {
                    count: long(0),
                    sum: long(1),
                    min: long(2),
                    max: long(3),
                    dsum,
                    users,
                },
            )
        })
        .collect()
}

fn assert_same(actual: &[(Key, Aggregates)], expected: &[(Key, Aggregates)]) {
    assert_eq!(actual.len(), expected.len(), "row counts differ");
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        assert_eq!(a.0, e.0, "row {i}: keys differ");
        let (mut a1, mut e1) = (a.1.clone(), e.1.clone());
        assert!(
            (a1.users - e1.users).abs() <= 0.02 * e1.users + 0.5,
            "row {i}: distinct users {} vs {}",
            a1.users,
            e1.users
        );
        a1.users = 0.0;
        e1.users = 0.0;
        assert_eq!(a1, e1, "row {i}: aggregates differ");
    }
}

fn sorted_index_of(rows: &[Raw], rollup: bool, time_at: usize) -> IncrementalIndex {
    let mut index = IncrementalIndex::new(&sorted_schema(rollup, time_at));
    for r in rows {
        index.add(&r.input()).expect("valid row");
    }
    index
}

fn round_trip(
    columns: &SegmentColumns,
    schema: Schema,
    compression: Compression,
) -> SegmentColumns {
    let (time_min_ms, time_max_ms) = columns.time_bounds();
    let meta = SegmentMeta {
        id: SegmentId {
            data_source: "events".into(),
            namespace: None,
            interval: Interval::new(0, grove_segment::time::MS_PER_DAY),
            version: "v1".into(),
            partition: 0,
        },
        schema,
        num_rows: columns.num_rows() as u64,
        time_min_ms,
        time_max_ms,
    };
    let mut bytes = Vec::new();
    write_segment_to(&mut bytes, &meta, columns, &WriteOptions { compression }).expect("write");
    Segment::from_bytes(bytes, "events")
        .expect("open")
        .to_columns()
        .expect("read")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn index_equals_oracle(rows in raw_rows(), rollup in any::<bool>(), time_at in 0usize..=4) {
        let columns = sorted_index_of(&rows, rollup, time_at).to_columns();
        prop_assert_eq!(columns.validate(time_at == 0), Ok(()));
        assert_same(&decode(&columns), &oracle(&rows, rollup, time_at));
    }

    #[test]
    fn segment_file_round_trips_index(rows in raw_rows(), zstd in any::<bool>(), time_at in 0usize..=4) {
        let columns = sorted_index_of(&rows, true, time_at).to_columns();
        let compression = if zstd { Compression::Zstd { level: 1 } } else { Compression::None };
        prop_assert_eq!(round_trip(&columns, sorted_schema(true, time_at), compression), columns);
    }

    #[test]
    fn merging_parts_equals_ingesting_all(
        rows in raw_rows(),
        cuts in prop::collection::vec(0usize..200, 0..4),
        rollup in any::<bool>(),
        time_at in 0usize..=4,
    ) {
        let mut bounds: Vec<usize> = cuts.into_iter().map(|c| c.min(rows.len())).collect();
        bounds.push(0);
        bounds.push(rows.len());
        bounds.sort();
        let parts: Vec<SegmentColumns> = bounds
            .windows(2)
            .map(|w| sorted_index_of(&rows[w[0]..w[1]], rollup, time_at).to_columns())
            .collect();
        let merged = merge_columns(&sorted_schema(rollup, time_at), &parts).expect("merge");
        prop_assert_eq!(merged.validate(time_at == 0), Ok(()));
        let all = sorted_index_of(&rows, rollup, time_at).to_columns();
        assert_same(&decode(&merged), &decode(&all));
        // Strings, numbers and layouts are identical, not just equal in meaning.
        prop_assert_eq!(&merged.dimensions, &all.dimensions);
        prop_assert_eq!(&merged.time, &all.time);
    }
}

#[test]
fn a_value_that_does_not_fit_its_column_is_an_error_and_changes_nothing() {
    let mut index = IncrementalIndex::new(&schema(true));
    let good = Raw {
        ms: 0,
        country: Some("de"),
        tags: vec![],
        code: Some(1),
        ratio: None,
        value: 5,
        amount: 1.0,
        user: 1,
    };
    index.add(&good.input()).expect("good row");
    let before = index.to_columns();
    let mut bad = good.input();
    bad.values[2] = Value::String("not a number".into());
    let err = index.add(&bad).expect_err("long dimension given text");
    assert!(
        err.0.contains("not a number") && err.0.contains("code"),
        "{}",
        err.0
    );
    let mut bad_metric = good.input();
    bad_metric.values[4] = Value::String("lots".into());
    let err = index.add(&bad_metric).expect_err("long metric given text");
    assert!(
        err.0.contains("lots") && err.0.contains("value"),
        "{}",
        err.0
    );
    assert_eq!(index.to_columns(), before);
}

#[test]
fn a_short_row_reads_missing_slots_as_null() {
    let mut index = IncrementalIndex::new(&schema(true));
    index
        .add(&InputRow {
            timestamp_ms: 0,
            values: vec![Value::String("de".into())],
        })
        .expect("missing slots are null");
    let columns = index.to_columns();
    assert_eq!(columns.num_rows(), 1);
    assert_eq!(columns.metrics[0].data, MetricData::Long(vec![1]));
}

#[test]
fn size_figures_grow_with_the_rows_held() {
    let mut index = IncrementalIndex::new(&schema(false));
    let raw = Raw {
        ms: 0,
        country: None,
        tags: vec!["a", "b"],
        code: None,
        ratio: None,
        value: 1,
        amount: 0.0,
        user: 0,
    };
    let mut previous_bytes = index.bytes();
    for rows in 1..=3 {
        index.add(&raw.input()).expect("row");
        assert_eq!(index.len(), rows, "no roll-up: every row is kept");
        assert!(index.bytes() > previous_bytes, "bytes grow with every row");
        previous_bytes = index.bytes();
        assert!(!index.is_full());
    }
    let mut rolled = IncrementalIndex::new(&schema(true));
    for _ in 0..3 {
        rolled.add(&raw.input()).expect("row");
    }
    assert_eq!(rolled.len(), 1, "roll-up folds equal rows");
}
