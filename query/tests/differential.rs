//! Differential tests: random groupBy, timeseries, topN, scan and timeBoundary queries over random
//! data, in segments sorted by time first and by dimensions first (`__time` at a random place in
//! the sort order); the engine's answer (bitmap and dictionary filters, batched grouping, per-row
//! bucketing, the cross-segment merge) must equal a naive evaluator that walks the input rows one
//! by one with `grove-segment`'s row matcher.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Value as Json, json};

use common::native as run_native;
use common::{DAY, Event, Fixed, Parallel, schema, sorted_segments, ts};
use grove_query::Unbounded;
use grove_segment::filter::Filter;
use grove_segment::row::{RowLayout, format_double};
use grove_segment::time::{Granularity, format_iso};

const COUNTRIES: &[&str] = &["US", "FR", "DE", "JP", "BR"];
const TAGS: &[&str] = &["a", "b", "c", "d"];
const DEVICES: &[&str] = &["phone", "desktop", "tablet"];

fn event() -> impl Strategy<Value = Event> {
    (
        0i64..3 * 24 * 4,
        proptest::option::weighted(0.85, proptest::sample::select(COUNTRIES)),
        proptest::sample::subsequence(TAGS, 0..3),
        proptest::option::weighted(0.9, proptest::sample::select(DEVICES)),
        proptest::option::weighted(0.8, 0i64..6),
        proptest::option::weighted(0.8, (0i64..20).prop_map(|v| v as f64 / 4.0)),
        0i64..100,
        (0i64..400).prop_map(|v| v as f64 / 8.0),
        0u32..40,
    )
        .prop_map(
            |(quarter, country, tags, device, user, price, clicks, spend, u)| Event {
                time: ts("2024-03-01T00:00:00Z") + quarter * 15 * 60_000,
                country,
                tags,
                device,
                user,
                price,
                clicks,
                spend,
                uname: format!("u{u}"),
            },
        )
}

fn leaf() -> impl Strategy<Value = Json> {
    let value = |pool: &'static [&'static str]| {
        proptest::option::weighted(
            0.85,
            proptest::sample::select(pool).prop_map(str::to_string),
        )
    };
    prop_oneof![
        value(COUNTRIES).prop_map(|v| json!({"type": "selector", "dimension": "country", "value": v})),
        value(TAGS).prop_map(|v| json!({"type": "selector", "dimension": "tags", "value": v})),
        value(DEVICES).prop_map(|v| json!({"type": "selector", "dimension": "device", "value": v})),
        proptest::collection::vec(value(COUNTRIES), 0..4)
            .prop_map(|v| json!({"type": "in", "dimension": "country", "values": v})),
        proptest::collection::vec(0i64..7, 1..4).prop_map(|v| json!({"type": "in", "dimension": "user",
            "values": v.iter().map(|x| x.to_string()).collect::<Vec<_>>()})),
        (0i64..6, 0i64..6).prop_map(|(a, b)| json!({"type": "bound", "dimension": "price",
            "lower": a.to_string(), "upper": (a + b).to_string(), "lowerStrict": b % 2 == 0, "ordering": "numeric"})),
        ("[A-Z]", "[A-Z]").prop_map(|(a, b)| json!({"type": "bound", "dimension": "country", "lower": a, "upper": b})),
        proptest::sample::select(&["p%", "%e%", "_a%", "tablet"][..])
            .prop_map(|p| json!({"type": "like", "dimension": "device", "pattern": p})),
        proptest::sample::select(&["price", "tags", "user", "country"][..])
            .prop_map(|c| json!({"type": "null", "column": c})),
        (0i64..6).prop_map(|v| json!({"type": "range", "column": "user", "matchValueType": "LONG", "lower": v})),
        (0i64..72).prop_map(|h| json!({"type": "range", "column": "__time", "matchValueType": "LONG",
            "upper": ts("2024-03-01T00:00:00Z") + h * 3_600_000})),
    ]
}

fn filter() -> impl Strategy<Value = Json> {
    leaf().prop_recursive(3, 12, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 1..3)
                .prop_map(|f| json!({"type": "and", "fields": f})),
            proptest::collection::vec(inner.clone(), 1..3)
                .prop_map(|f| json!({"type": "or", "fields": f})),
            inner.prop_map(|f| json!({"type": "not", "field": f})),
        ]
    })
}

const AGGS: &[(&str, &str, &str)] = &[
    ("count", "n", ""),
    ("longSum", "clicks", "clicks"),
    ("doubleSum", "spend", "spend"),
    ("longMin", "min_user", "user"),
    ("doubleMax", "max_price", "price"),
];

/// count, clicks, spend, min user, max price.
type Folded = (i64, Option<i64>, Option<f64>, Option<i64>, Option<f64>);

/// The naive answer: (bucket, dimension values) -> aggregate values, as JSON.
fn oracle(
    events: &[Event],
    filter: Option<&Filter>,
    dims: &[&str],
    granularity: Granularity,
    interval: (i64, i64),
) -> BTreeMap<(String, Vec<String>), Vec<Json>> {
    let schema = schema();
    let layout = RowLayout::new(&schema, &[]);
    let matcher = filter.map(|f| f.compile(&layout).unwrap());
    let mut acc: BTreeMap<(String, Vec<String>), Folded> = BTreeMap::new();
    for e in events {
        if e.time < interval.0 || e.time >= interval.1 {
            continue;
        }
        let row = e.input_row(&layout);
        if matcher.as_ref().is_some_and(|m| !m.matches(&row)) {
            continue;
        }
        let bucket = match granularity {
            Granularity::All => "all".to_string(),
            g => format_iso(g.truncate(e.time)),
        };
        let mut keys: Vec<Vec<String>> = vec![Vec::new()];
        for d in dims {
            let values: Vec<String> = match *d {
                "country" => vec![text(e.country)],
                "device" => vec![text(e.device)],
                "user" => vec![e.user.map_or("null".into(), |u| u.to_string())],
                "price" => vec![e.price.map_or("null".into(), format_double)],
                "tags" if e.tags.is_empty() => vec!["null".into()],
                "tags" => e.tags.iter().map(|t| t.to_string()).collect(),
                other => panic!("{other}"),
            };
            keys = keys
                .into_iter()
                .flat_map(|k| {
                    values.iter().map(move |v| {
                        let mut k = k.clone();
                        k.push(v.clone());
                        k
                    })
                })
                .collect();
        }
        for k in keys {
            let a = acc
                .entry((bucket.clone(), k))
                .or_insert((0, None, None, None, None));
            a.0 += 1;
            a.1 = Some(a.1.unwrap_or(0) + e.clicks);
            a.2 = Some(a.2.unwrap_or(0.0) + e.spend);
            if let Some(u) = e.user {
                a.3 = Some(a.3.map_or(u, |m| m.min(u)));
            }
            if let Some(p) = e.price {
                a.4 = Some(a.4.map_or(p, |m| m.max(p)));
            }
        }
    }
    acc.into_iter()
        .map(|(k, a)| {
            (
                k,
                vec![json!(a.0), json!(a.1), json!(a.2), json!(a.3), json!(a.4)],
            )
        })
        .collect()
}

fn text(v: Option<&str>) -> String {
    v.map_or("null".to_string(), str::to_string)
}

fn key_text(j: &Json) -> String {
    match j {
        Json::Null => "null".into(),
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn same_numbers(a: &[Json], b: &[Json]) -> bool {
    a.len() == b.len()
        && a.iter()
            .zip(b)
            .all(|(x, y)| match (x.as_f64(), y.as_f64()) {
                (Some(p), Some(q)) => (p - q).abs() <= 1e-9 * p.abs().max(1.0),
                _ => x == y,
            })
}

/// Runs a random groupBy and compares it with the oracle.
fn check_group_by(
    events: &[Event],
    filter: Option<Json>,
    dims: &[&str],
    granularity: &str,
    (start_h, len_h): (i64, i64),
    (disk_mask, time_at): (u8, usize),
    aggs: usize,
) -> Result<(), TestCaseError> {
    // The first `aggs` aggregators of AGGS (the first three fold whole row ranges).
    let aggs = &AGGS[..aggs];
    let provider = Fixed(sorted_segments(
        events,
        |i| disk_mask >> (i % 8) & 1 == 1,
        time_at,
    ));
    let t0 = ts("2024-03-01T00:00:00Z");
    let interval = (t0 + start_h * 3_600_000, t0 + (start_h + len_h) * 3_600_000);
    let mut query = json!({
        "queryType": "groupBy", "dataSource": "events", "granularity": granularity,
        "intervals": [format!("{}/{}", format_iso(interval.0), format_iso(interval.1))],
        "dimensions": dims,
        "aggregations": aggs.iter().map(|(t, n, f)| if f.is_empty() {
            json!({"type": t, "name": n})
        } else {
            json!({"type": t, "name": n, "fieldName": f})
        }).collect::<Vec<_>>(),
    });
    if let Some(f) = &filter {
        query["filter"] = f.clone();
    }
    // Segments split between threads must merge to the same answer.
    let control = Parallel(1 + (disk_mask as usize % 3));
    let result = run_native(&query, &provider, &control).unwrap();
    let got: BTreeMap<(String, Vec<String>), Vec<Json>> = result
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let bucket = if granularity == "all" {
                "all".to_string()
            } else {
                r["timestamp"].as_str().unwrap().to_string()
            };
            let key = dims.iter().map(|d| key_text(&r["event"][*d])).collect();
            let values = aggs
                .iter()
                .map(|(_, n, _)| r["event"][*n].clone())
                .collect();
            ((bucket, key), values)
        })
        .collect();
    let parsed: Option<Filter> = filter.map(|f| serde_json::from_value(f).unwrap());
    let g = Granularity::named(granularity).unwrap();
    let expected = oracle(events, parsed.as_ref(), dims, g, interval);
    prop_assert_eq!(
        got.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>()
    );
    for (k, v) in &expected {
        let v = &v[..aggs.len()];
        prop_assert!(
            same_numbers(&got[k], v),
            "group {:?}: got {:?}, expected {:?}",
            k,
            got[k],
            v
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn group_by_equals_the_row_by_row_oracle(
        events in proptest::collection::vec(event(), 0..250),
        filter in proptest::option::of(filter()),
        dims in proptest::sample::subsequence(&["country", "tags", "device", "user", "price"][..], 0..3),
        granularity in proptest::sample::select(&["all", "none", "hour", "day"][..]),
        start_h in 0i64..48,
        len_h in 1i64..72,
        disk_mask in any::<u8>(),
        time_at in prop_oneof![Just(0usize), 1usize..=5],
    ) {
        check_group_by(&events, filter, &dims, granularity, (start_h, len_h), (disk_mask, time_at), AGGS.len())?;
    }

    /// An exact-match filter on a grouped dimension: the engine takes the filter's rows by
    /// dictionary id and never reads that dimension's column. With rows sorted by that column
    /// first (country leads the schema), only aggregators that fold ranges and no other
    /// dimension, each id's rows are one run folded whole.
    #[test]
    fn group_by_on_the_filtered_dimension_equals_the_oracle(
        events in proptest::collection::vec(event(), 0..250),
        (column, values) in prop_oneof![
            proptest::collection::vec(proptest::option::weighted(0.85, proptest::sample::select(COUNTRIES)), 0..4)
                .prop_map(|v| ("country", v)),
            proptest::collection::vec(proptest::option::weighted(0.85, proptest::sample::select(DEVICES)), 1..3)
                .prop_map(|v| ("device", v)),
        ],
        other in prop_oneof![Just(vec![]), proptest::sample::subsequence(&["country", "device", "user"][..], 0..2)],
        granularity in proptest::sample::select(&["all", "none", "hour", "day"][..]),
        start_h in 0i64..48,
        len_h in 1i64..72,
        disk_mask in any::<u8>(),
        time_at in prop_oneof![Just(0usize), 1usize..=5],
        range_aggs in any::<bool>(),
    ) {
        let mut dims = vec![column];
        dims.extend(other.into_iter().filter(|d| *d != column));
        let filter = json!({"type": "in", "dimension": column, "values": values});
        let aggs = if range_aggs { 3 } else { AGGS.len() };
        check_group_by(&events, Some(filter), &dims, granularity, (start_h, len_h), (disk_mask, time_at), aggs)?;
    }

    /// An IN filter on the leading sort column (country; `__time` later in the sort order).
    /// Grouped by country alone with aggregators that fold ranges, each country's rows are one
    /// run folded whole, split per bucket by binary search on time when time sorts second. With
    /// one value (or none, or null), each segment narrows to that value's run, then to the
    /// interval, whatever the grouping and aggregators.
    #[test]
    fn in_filters_on_the_leading_sort_column_equal_the_oracle(
        events in proptest::collection::vec(event(), 0..250),
        values in proptest::collection::vec(proptest::option::weighted(0.85, proptest::sample::select(COUNTRIES)), 0..4),
        dims in prop_oneof![
            3 => Just(vec!["country"]),
            1 => proptest::sample::subsequence(&["country", "tags", "device", "user"][..], 0..2),
        ],
        granularity in proptest::sample::select(&["all", "none", "hour", "day"][..]),
        start_h in 0i64..48,
        len_h in 1i64..72,
        disk_mask in any::<u8>(),
        time_at in 1usize..=5,
        range_aggs in proptest::bool::weighted(0.75),
    ) {
        let filter = json!({"type": "in", "dimension": "country", "values": values});
        let aggs = if range_aggs { 3 } else { AGGS.len() };
        check_group_by(&events, Some(filter), &dims, granularity, (start_h, len_h), (disk_mask, time_at), aggs)?;
    }

    /// No dimensions, no filter, rows out of time order (time sorts after a dimension): each
    /// row's bucket comes from its timestamp and aggregators that fold plainly read the rows
    /// block-wise.
    #[test]
    fn unfiltered_buckets_of_rows_out_of_time_order_equal_the_oracle(
        events in proptest::collection::vec(event(), 0..250),
        granularity in proptest::sample::select(&["all", "none", "hour", "day"][..]),
        start_h in 0i64..48,
        len_h in 1i64..72,
        disk_mask in any::<u8>(),
        time_at in 1usize..=5,
        range_aggs in any::<bool>(),
    ) {
        let aggs = if range_aggs { 3 } else { AGGS.len() };
        check_group_by(&events, None, &[], granularity, (start_h, len_h), (disk_mask, time_at), aggs)?;
    }

    #[test]
    fn timeseries_counts_equal_the_oracle(
        events in proptest::collection::vec(event(), 1..200),
        filter in filter(),
        time_at in 0usize..=5,
    ) {
        let provider = Fixed(sorted_segments(&events, |i| i % 2 == 0, time_at));
        let query = json!({
            "queryType": "timeseries", "dataSource": "events", "granularity": "day",
            "intervals": ["2024-03-01/2024-03-04"], "filter": filter,
            "aggregations": [{"type": "count", "name": "n"}],
            "context": {"skipEmptyBuckets": true}
        });
        let result = run_native(&query, &provider, &Unbounded).unwrap();
        let got: BTreeMap<String, i64> = result
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["timestamp"].as_str().unwrap().to_string(), r["result"]["n"].as_i64().unwrap()))
            .filter(|(_, n)| *n > 0)
            .collect();
        let parsed: Filter = serde_json::from_value(filter).unwrap();
        let expected: BTreeMap<String, i64> = oracle(&events, Some(&parsed), &[], Granularity::DAY,
            (ts("2024-03-01T00:00:00Z"), ts("2024-03-01T00:00:00Z") + 3 * DAY))
            .into_iter()
            .map(|((b, _), v)| (b, v[0].as_i64().unwrap()))
            .collect();
        prop_assert_eq!(got, expected);
    }

    /// Distinct counts of a string dimension per bucket, unfiltered (whole row ranges decode the
    /// ids block by block) and filtered, equal the exact counts (HLL is exact at this size).
    #[test]
    fn distinct_counts_equal_the_exact_counts(
        events in proptest::collection::vec(event(), 1..300),
        filter in proptest::option::of(filter()),
        granularity in proptest::sample::select(&["all", "hour", "day"][..]),
        start_h in 0i64..48,
        len_h in 1i64..72,
        time_at in 0usize..=5,
    ) {
        let provider = Fixed(sorted_segments(&events, |i| i % 2 == 0, time_at));
        let t0 = ts("2024-03-01T00:00:00Z");
        let interval = (t0 + start_h * 3_600_000, t0 + (start_h + len_h) * 3_600_000);
        let mut query = json!({
            "queryType": "timeseries", "dataSource": "events", "granularity": granularity,
            "intervals": [format!("{}/{}", format_iso(interval.0), format_iso(interval.1))],
            "aggregations": [{"type": "cardinality", "name": "names", "fields": ["country"], "round": true}],
            "context": {"skipEmptyBuckets": true}
        });
        if let Some(f) = &filter {
            query["filter"] = f.clone();
        }
        let result = run_native(&query, &provider, &Unbounded).unwrap();
        let got: BTreeMap<String, i64> = result
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let bucket = if granularity == "all" { "all" } else { r["timestamp"].as_str().unwrap() };
                (bucket.to_string(), r["result"]["names"].as_i64().unwrap())
            })
            .filter(|(_, n)| *n > 0)
            .collect();
        let parsed: Option<Filter> = filter.map(|f| serde_json::from_value(f).unwrap());
        let layout = RowLayout::new(&schema(), &[]);
        let matcher = parsed.as_ref().map(|f| f.compile(&layout).unwrap());
        let g = Granularity::named(granularity).unwrap();
        let mut expected: BTreeMap<String, std::collections::BTreeSet<&str>> = BTreeMap::new();
        for e in &events {
            if e.time < interval.0 || e.time >= interval.1 {
                continue;
            }
            if matcher.as_ref().is_some_and(|m| !m.matches(&e.input_row(&layout))) {
                continue;
            }
            let bucket = match g {
                Granularity::All => "all".to_string(),
                g => format_iso(g.truncate(e.time)),
            };
            // Null is not a value of a distinct count.
            if let Some(country) = e.country {
                expected.entry(bucket).or_default().insert(country);
            }
        }
        let expected: BTreeMap<String, i64> = expected.into_iter().map(|(b, s)| (b, s.len() as i64)).collect();
        prop_assert_eq!(got, expected);
    }

    /// scan returns exactly the rows within the interval that pass the filter (in time order
    /// when asked), and timeBoundary their first and last timestamps.
    #[test]
    fn scan_and_time_boundary_equal_the_oracle(
        events in proptest::collection::vec(event(), 0..250),
        filter in proptest::option::of(filter()),
        start_h in 0i64..48,
        len_h in 1i64..72,
        ordered in any::<bool>(),
        time_at in 0usize..=5,
    ) {
        let provider = Fixed(sorted_segments(&events, |i| i % 2 == 0, time_at));
        let t0 = ts("2024-03-01T00:00:00Z");
        let interval = (t0 + start_h * 3_600_000, t0 + (start_h + len_h) * 3_600_000);
        let intervals = json!([format!("{}/{}", format_iso(interval.0), format_iso(interval.1))]);
        let mut scan = json!({
            "queryType": "scan", "dataSource": "events", "intervals": intervals,
            "columns": ["__time", "country", "clicks"], "resultFormat": "compactedList",
            "order": if ordered { "ascending" } else { "none" }
        });
        let mut boundary = json!({
            "queryType": "timeBoundary", "dataSource": "events", "intervals": intervals
        });
        if let Some(f) = &filter {
            scan["filter"] = f.clone();
            boundary["filter"] = f.clone();
        }
        let parsed: Option<Filter> = filter.map(|f| serde_json::from_value(f).unwrap());
        let layout = RowLayout::new(&schema(), &[]);
        let matcher = parsed.as_ref().map(|f| f.compile(&layout).unwrap());
        let mut expected: Vec<(i64, String, i64)> = events
            .iter()
            .filter(|e| e.time >= interval.0 && e.time < interval.1)
            .filter(|e| matcher.as_ref().is_none_or(|m| m.matches(&e.input_row(&layout))))
            .map(|e| (e.time, text(e.country), e.clicks))
            .collect();

        let result = run_native(&scan, &provider, &Unbounded).unwrap();
        let mut got: Vec<(i64, String, i64)> = result
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|batch| batch["events"].as_array().unwrap().clone())
            .map(|row| (row[0].as_i64().unwrap(), key_text(&row[1]), row[2].as_i64().unwrap()))
            .collect();
        if ordered {
            prop_assert!(got.windows(2).all(|w| w[0].0 <= w[1].0), "not in time order: {:?}", got);
        }
        got.sort();
        expected.sort();
        prop_assert_eq!(got, expected.clone());

        let result = run_native(&boundary, &provider, &Unbounded).unwrap();
        let got = result.as_array().unwrap().first().map(|r| {
            (
                r["result"]["minTime"].as_str().unwrap().to_string(),
                r["result"]["maxTime"].as_str().unwrap().to_string(),
            )
        });
        let times = expected.iter().map(|r| r.0);
        let want = times
            .clone()
            .min()
            .zip(times.max())
            .map(|(a, b)| (format_iso(a), format_iso(b)));
        prop_assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// topN is exact: the oracle's groups ranked by clicks (ties by value, null first).
    #[test]
    fn top_n_equals_the_oracle_ranking(
        events in proptest::collection::vec(event(), 0..250),
        dim in proptest::sample::select(&["country", "device", "tags"][..]),
        threshold in 1usize..5,
        ascending in any::<bool>(),
        time_at in 0usize..=5,
    ) {
        let provider = Fixed(sorted_segments(&events, |i| i % 2 == 1, time_at));
        let metric = if ascending {
            json!({"type": "inverted", "metric": "clicks"})
        } else {
            json!("clicks")
        };
        let query = json!({
            "queryType": "topN", "dataSource": "events", "intervals": ["2024-03-01/2024-03-04"],
            "dimension": dim, "metric": metric, "threshold": threshold,
            "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}]
        });
        let result = run_native(&query, &provider, &Parallel(2)).unwrap();
        let got: Vec<(String, i64)> = result
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["result"].as_array().unwrap().clone())
            .map(|r| (key_text(&r[dim]), r["clicks"].as_i64().unwrap()))
            .collect();
        let all = oracle(&events, None, &[dim], Granularity::All,
            (ts("2024-03-01T00:00:00Z"), ts("2024-03-04T00:00:00Z")));
        let mut expected: Vec<(String, i64)> = all
            .into_iter()
            .map(|((_, k), v)| (k[0].clone(), v[1].as_i64().unwrap()))
            .collect();
        // The oracle's key text of null is "null"; order nulls first, then by value.
        let rank = |s: &String| (s != "null", s.clone());
        expected.sort_by(|a, b| {
            let by = if ascending { a.1.cmp(&b.1) } else { b.1.cmp(&a.1) };
            by.then_with(|| rank(&a.0).cmp(&rank(&b.0)))
        });
        expected.truncate(threshold);
        prop_assert_eq!(got, expected);
    }
}

/// The oracle's groups of one bucket as (dimension texts, clicks), in the engine's orders:
/// nulls first, then by text.
fn rank_text(s: &str) -> (bool, String) {
    (s != "null", s.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// groupBy with a limitSpec ordered by an aggregator (only the groups that can make the
    /// limit become rows) and with a limit but no ordering columns (the first keys picked
    /// without sorting them all): the oracle's rows sorted the same way, cut the same way.
    #[test]
    fn group_by_limits_equal_the_sorted_oracle(
        events in proptest::collection::vec(event(), 0..250),
        dims in proptest::sample::subsequence(&["country", "device"][..], 1..=2),
        limit in 0usize..8,
        offset in 0usize..4,
        by_clicks in any::<bool>(),
        descending in any::<bool>(),
        threads in 1usize..=3,
        time_at in 0usize..=5,
    ) {
        let provider = Fixed(sorted_segments(&events, |i| i % 2 == 0, time_at));
        let mut columns: Vec<Json> = Vec::new();
        if by_clicks {
            columns.push(json!({"dimension": "clicks", "direction": if descending { "descending" } else { "ascending" }}));
            columns.extend(dims.iter().map(|d| json!({"dimension": d})));
        }
        let query = json!({
            "queryType": "groupBy", "dataSource": "events", "granularity": "all",
            "intervals": ["2024-03-01/2024-03-04"], "dimensions": dims,
            "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}],
            "limitSpec": {"type": "default", "columns": columns, "limit": limit, "offset": offset}
        });
        let result = run_native(&query, &provider, &Parallel(threads)).unwrap();
        let got: Vec<(Vec<String>, i64)> = result
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (dims.iter().map(|d| key_text(&r["event"][*d])).collect(), r["event"]["clicks"].as_i64().unwrap()))
            .collect();
        let all = oracle(&events, None, &dims, Granularity::All,
            (ts("2024-03-01T00:00:00Z"), ts("2024-03-04T00:00:00Z")));
        let mut expected: Vec<(Vec<String>, i64)> = all
            .into_iter()
            .map(|((_, k), v)| (k, v[1].as_i64().unwrap()))
            .collect();
        let keys = |k: &Vec<String>| k.iter().map(|s| rank_text(s)).collect::<Vec<_>>();
        expected.sort_by(|a, b| {
            let by = if !by_clicks {
                std::cmp::Ordering::Equal
            } else if descending {
                b.1.cmp(&a.1)
            } else {
                a.1.cmp(&b.1)
            };
            by.then_with(|| keys(&a.0).cmp(&keys(&b.0)))
        });
        let expected: Vec<(Vec<String>, i64)> = expected.into_iter().skip(offset).take(limit).collect();
        prop_assert_eq!(got, expected);
    }

    /// topN with `useApproximateTopN: false` (no segment prunes its groups) over several
    /// intervals equals the exact ranking, even with a per-segment threshold of 1.
    #[test]
    fn exact_top_n_over_several_intervals_equals_the_oracle(
        events in proptest::collection::vec(event(), 0..250),
        dim in proptest::sample::select(&["country", "device", "user"][..]),
        threshold in 1usize..4,
        cut_h in 1i64..71,
        threads in 1usize..=3,
        time_at in 0usize..=5,
    ) {
        let provider = Fixed(sorted_segments(&events, |i| i % 2 == 1, time_at));
        let t0 = ts("2024-03-01T00:00:00Z");
        let cut = format_iso(t0 + cut_h * 3_600_000);
        let query = json!({
            "queryType": "topN", "dataSource": "events",
            "intervals": [format!("2024-03-01T00:00:00Z/{cut}"), format!("{cut}/2024-03-04T00:00:00Z")],
            "dimension": dim, "metric": "clicks", "threshold": threshold,
            "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}],
            "context": {"useApproximateTopN": false, "minTopNThreshold": 1}
        });
        let result = run_native(&query, &provider, &Parallel(threads)).unwrap();
        let got: Vec<i64> = result
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|b| b["result"].as_array().unwrap().clone())
            .map(|r| r["clicks"].as_i64().unwrap())
            .collect();
        let all = oracle(&events, None, &[dim], Granularity::All, (t0, t0 + 3 * DAY));
        let mut expected: Vec<i64> = all.into_values().map(|v| v[1].as_i64().unwrap()).collect();
        expected.sort_by(|a, b| b.cmp(a));
        expected.truncate(threshold);
        prop_assert_eq!(got, expected);
    }
}

/// One segment, two intervals, granularity all, a per-segment threshold of 1: a value whose
/// rows are split between the intervals (3 + 3 clicks) beats values with 5 clicks in one
/// interval only, because the segment combines its intervals before it prunes anything.
#[test]
fn top_n_combines_a_segments_intervals_before_pruning() {
    let t0 = ts("2024-03-01T00:00:00Z");
    let mut events = Vec::new();
    let mut add = |hour: i64, country: &'static str, clicks: i64| {
        events.push(Event {
            time: t0 + hour * 3_600_000,
            country: Some(country),
            tags: Vec::new(),
            device: None,
            user: None,
            price: None,
            clicks,
            spend: 0.0,
            uname: "u".into(),
        });
    };
    add(1, "US", 3);
    add(13, "US", 3);
    for c in ["FR", "DE", "JP", "BR", "CN", "IT"] {
        add(2, c, 5);
    }
    let provider = Fixed(sorted_segments(&events, |_| true, 0));
    let query = json!({
        "queryType": "topN", "dataSource": "events",
        "intervals": ["2024-03-01T00:00:00Z/2024-03-01T12:00:00Z", "2024-03-01T12:00:00Z/2024-03-02T00:00:00Z"],
        "dimension": "country", "metric": "clicks", "threshold": 1,
        "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}],
        "context": {"minTopNThreshold": 1}
    });
    let result = run_native(&query, &provider, &Unbounded).unwrap();
    assert_eq!(result[0]["result"], json!([{"country": "US", "clicks": 6}]));
    let zero = json!({
        "queryType": "topN", "dataSource": "events", "intervals": ["2024-03-01/2024-03-02"],
        "dimension": "country", "metric": "clicks", "threshold": 0,
        "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}]
    });
    let error = run_native(&zero, &provider, &Unbounded).unwrap_err();
    assert!(error.to_string().contains("threshold"), "{error}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Exact distinct counts as Druid plans them, a groupBy (or timeseries) over a query
    /// datasource: the inner groupBy by (device, country) under a filter, the outer one counting
    /// its rows with a non-null country per device (and summing the inner clicks), equal the
    /// oracle's exact sets.
    #[test]
    fn nested_group_by_counts_distinct_values_exactly(
        events in proptest::collection::vec(event(), 0..250),
        filter in proptest::option::of(filter()),
        outer_dims in prop_oneof![Just(vec![]), Just(vec!["device"])],
        granularity in proptest::sample::select(&["all", "day"][..]),
        threads in 1usize..=3,
        time_at in 0usize..=5,
    ) {
        let provider = Fixed(sorted_segments(&events, |i| i % 2 == 0, time_at));
        let mut inner = json!({
            "queryType": "groupBy", "dataSource": "events", "granularity": granularity,
            "intervals": ["2024-03-01/2024-03-04"],
            "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}]
        });
        let mut inner_dims: Vec<Json> = outer_dims.iter().map(|d| json!(d)).collect();
        inner_dims.push(json!({"type": "default", "dimension": "country", "outputName": "c"}));
        inner["dimensions"] = Json::Array(inner_dims);
        if let Some(f) = &filter {
            inner["filter"] = f.clone();
        }
        let mut query = json!({
            "queryType": if outer_dims.is_empty() { "timeseries" } else { "groupBy" },
            "dataSource": {"type": "query", "query": inner},
            "granularity": granularity, "intervals": ["2024-03-01/2024-03-04"],
            "aggregations": [
                {"type": "filtered", "name": "n",
                 "filter": {"type": "not", "field": {"type": "null", "column": "c"}},
                 "aggregator": {"type": "count", "name": "n"}},
                {"type": "longSum", "name": "clicks", "fieldName": "clicks"}
            ],
            "context": {"skipEmptyBuckets": true}
        });
        if !outer_dims.is_empty() {
            query["dimensions"] = json!(outer_dims);
        }
        let result = run_native(&query, &provider, &Parallel(threads)).unwrap();
        let got: BTreeMap<(String, String), (i64, i64)> = result
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let row = if outer_dims.is_empty() { &r["result"] } else { &r["event"] };
                let bucket = if granularity == "all" { "all".to_string() } else { r["timestamp"].as_str().unwrap().to_string() };
                let device = if outer_dims.is_empty() { String::new() } else { key_text(&row["device"]) };
                ((bucket, device), (row["n"].as_i64().unwrap(), row["clicks"].as_i64().unwrap_or(0)))
            })
            .collect();
        let parsed: Option<Filter> = filter.map(|f| serde_json::from_value(f).unwrap());
        let layout = RowLayout::new(&schema(), &[]);
        let matcher = parsed.as_ref().map(|f| f.compile(&layout).unwrap());
        let g = Granularity::named(granularity).unwrap();
        let mut want: BTreeMap<(String, String), (std::collections::BTreeSet<&str>, i64)> = BTreeMap::new();
        for e in &events {
            if matcher.as_ref().is_some_and(|m| !m.matches(&e.input_row(&layout))) {
                continue;
            }
            let bucket = match g {
                Granularity::All => "all".to_string(),
                g => format_iso(g.truncate(e.time)),
            };
            let device = if outer_dims.is_empty() { String::new() } else { text(e.device) };
            let entry = want.entry((bucket, device)).or_default();
            entry.1 += e.clicks;
            if let Some(c) = e.country {
                entry.0.insert(c);
            }
        }
        let want: BTreeMap<(String, String), (i64, i64)> =
            want.into_iter().map(|(k, (s, c))| (k, (s.len() as i64, c))).collect();
        prop_assert_eq!(got, want);
    }
}

/// A groupBy whose merged groups pass `maxMergingDictionarySize` fails with an error naming the
/// limit (and a query datasource under a scan is refused by name).
#[test]
fn merged_groups_are_bounded_by_bytes() {
    let t0 = ts("2024-03-01T00:00:00Z");
    let events: Vec<Event> = (0..200)
        .map(|i| Event {
            time: t0 + i * 60_000,
            country: Some(COUNTRIES[i as usize % COUNTRIES.len()]),
            tags: Vec::new(),
            device: None,
            user: Some(i),
            price: None,
            clicks: i,
            spend: 0.0,
            uname: format!("u{i}"),
        })
        .collect();
    let provider = Fixed(sorted_segments(&events, |_| true, 0));
    let query = |bytes: u64| {
        json!({
            "queryType": "groupBy", "dataSource": "events", "granularity": "all",
            "intervals": ["2024-03-01/2024-03-02"], "dimensions": ["user", "country"],
            "aggregations": [{"type": "count", "name": "n"}],
            "context": {"maxMergingDictionarySize": bytes}
        })
    };
    let error = run_native(&query(1000), &provider, &Unbounded).unwrap_err();
    assert!(
        error.to_string().contains("maxMergingDictionarySize"),
        "{error}"
    );
    let ok = run_native(&query(1 << 20), &provider, &Unbounded).unwrap();
    assert_eq!(ok.as_array().unwrap().len(), 200);
    let scan = json!({
        "queryType": "scan", "intervals": ["2024-03-01/2024-03-02"],
        "dataSource": {"type": "query", "query": query(1 << 20)}
    });
    assert!(run_native(&scan, &provider, &Unbounded).is_err());
}
