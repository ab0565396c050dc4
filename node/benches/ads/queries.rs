//! The measured queries as Druid native JSON, the random IN lists (one seeded scheme shared with
//! `duckdb_queries.py`), and the answers' summaries both engines must agree on.

use serde_json::{Value, json};

use super::data::{ADVERTISERS, COUNTRIES, DAY_START_MS, MS_PER_DAY, advertiser_name};
use super::server::DATA_SOURCE;
use crate::common::Rng;
use crate::common::zipf_value;

/// The queries, in the order they run and print; each is a key of the figures.
pub const QUERIES: [&str; 7] = [
    "count",
    "sum_by_hour",
    "topn_country",
    "groupby_country_device",
    "in_filter_1000",
    "approx_distinct",
    "point",
];

pub const IN_IDS: usize = 1_000;
/// Run `r` of the IN query (warm-ups included) draws its ids from `Rng(IN_SEED + r)`.
pub const IN_SEED: u64 = 0x696e_5f66_696c;
const MS_PER_HOUR: i64 = 3_600_000;
/// The hour of the point query: 12:00–13:00.
const POINT_HOUR: i64 = 12;

/// The most popular country (Zipf rank 0): the topN query's filter.
pub fn top_country() -> String {
    format!("C{:03}", zipf_value(0, COUNTRIES))
}

/// The second most popular advertiser (Zipf rank 1): the point query's filter.
pub fn point_advertiser() -> String {
    advertiser_name(zipf_value(1, ADVERTISERS))
}

/// `IN_IDS` distinct advertiser names drawn uniformly from the 100,000, in draw order.
pub fn in_filter_ids(rng: &mut Rng) -> Vec<String> {
    let mut seen = vec![false; ADVERTISERS as usize];
    let mut ids = Vec::with_capacity(IN_IDS);
    while ids.len() < IN_IDS {
        let id = rng.below(ADVERTISERS);
        if !std::mem::replace(&mut seen[id as usize], true) {
            ids.push(advertiser_name(id));
        }
    }
    ids
}

fn iso(ms: i64) -> String {
    grove_segment::time::format_iso(ms)
}

fn day() -> String {
    format!("{}/{}", iso(DAY_START_MS), iso(DAY_START_MS + MS_PER_DAY))
}

/// The IN-filter query: per advertiser per day, clicks and spend of 1,000 advertisers.
pub fn in_filter_query(ids: &[String]) -> Value {
    json!({
        "queryType": "groupBy",
        "dataSource": DATA_SOURCE,
        "granularity": "day",
        "intervals": [day()],
        "dimensions": ["advertiser"],
        "filter": {"type": "in", "dimension": "advertiser", "values": ids},
        "aggregations": [
            {"type": "longSum", "name": "clicks", "fieldName": "clicks"},
            {"type": "doubleSum", "name": "spend", "fieldName": "spend"}
        ]
    })
}

/// Query `key` for run `run` (only the IN query changes between runs).
pub fn native(key: &str, run: u64) -> Value {
    let sum = |kind: &str, name: &str| json!({"type": kind, "name": name, "fieldName": name});
    match key {
        "count" => json!({
            "queryType": "timeseries", "dataSource": DATA_SOURCE, "granularity": "all",
            "intervals": [day()],
            "aggregations": [{"type": "count", "name": "rows"}]
        }),
        "sum_by_hour" => json!({
            "queryType": "timeseries", "dataSource": DATA_SOURCE, "granularity": "hour",
            "intervals": [day()],
            "aggregations": [sum("doubleSum", "spend")]
        }),
        "topn_country" => json!({
            "queryType": "topN", "dataSource": DATA_SOURCE, "granularity": "all",
            "intervals": [day()],
            "dimension": "campaign", "metric": "clicks", "threshold": 100,
            "filter": {"type": "selector", "dimension": "country", "value": top_country()},
            "aggregations": [sum("longSum", "clicks")]
        }),
        "groupby_country_device" => json!({
            "queryType": "groupBy", "dataSource": DATA_SOURCE, "granularity": "all",
            "intervals": [day()],
            "dimensions": ["country", "device"],
            "aggregations": [{"type": "count", "name": "rows"}]
        }),
        "in_filter_1000" => in_filter_query(&in_filter_ids(&mut Rng(IN_SEED + run))),
        "approx_distinct" => json!({
            "queryType": "timeseries", "dataSource": DATA_SOURCE, "granularity": "all",
            "intervals": [day()],
            "aggregations": [
                {"type": "cardinality", "name": "campaigns", "fields": ["campaign"], "round": true}
            ]
        }),
        "point" => {
            let start = DAY_START_MS + POINT_HOUR * MS_PER_HOUR;
            json!({
                "queryType": "timeseries", "dataSource": DATA_SOURCE, "granularity": "all",
                "intervals": [format!("{}/{}", iso(start), iso(start + MS_PER_HOUR))],
                "filter": {"type": "selector", "dimension": "advertiser", "value": point_advertiser()},
                "aggregations": [
                    {"type": "count", "name": "rows"},
                    sum("longSum", "clicks"),
                    sum("doubleSum", "spend")
                ]
            })
        }
        other => panic!("unknown query {other}"),
    }
}

/// The figures of an answer that the DuckDB script computes too (`checks` in its output), in
/// the same order: a query is only worth timing if both engines agree on these.
pub fn summary(key: &str, answer: &Value) -> Vec<(&'static str, f64)> {
    let rows = answer
        .as_array()
        .unwrap_or_else(|| panic!("{key}: the answer is not an array: {answer}"));
    let number = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_f64)
            .unwrap_or_else(|| panic!("{key}: no number '{field}' in {v}"))
    };
    let total =
        |field: &str, inner: &str| -> f64 { rows.iter().map(|r| number(&r[inner], field)).sum() };
    match key {
        "count" => vec![("rows", total("rows", "result"))],
        "sum_by_hour" => vec![
            ("buckets", rows.len() as f64),
            ("spend", total("spend", "result")),
        ],
        "topn_country" => {
            let top = rows
                .first()
                .and_then(|r| r["result"].as_array())
                .unwrap_or_else(|| panic!("{key}: no topN result in {answer}"));
            let clicks: f64 = top.iter().map(|r| number(r, "clicks")).sum();
            vec![("rows", top.len() as f64), ("clicks", clicks)]
        }
        "groupby_country_device" => vec![
            ("groups", rows.len() as f64),
            ("rows", total("rows", "event")),
        ],
        "in_filter_1000" => vec![
            ("groups", rows.len() as f64),
            ("clicks", total("clicks", "event")),
        ],
        "approx_distinct" => vec![("campaigns", total("campaigns", "result"))],
        "point" => vec![
            ("rows", total("rows", "result")),
            ("clicks", total("clicks", "result")),
            ("spend", total("spend", "result")),
        ],
        other => panic!("unknown query {other}"),
    }
}

/// How close two engines' figures must be: HLL estimates within 5%, float sums to rounding,
/// counts exactly.
pub fn agree(field: &str, a: f64, b: f64) -> bool {
    match field {
        "campaigns" => (a - b).abs() <= 0.05 * a.abs().max(b.abs()),
        "spend" => (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0),
        _ => a == b,
    }
}
