//! The measured queries as Druid native JSON (and one as SQL), the random IN lists (one seeded
//! scheme shared with `duckdb_queries.py`), and the answers' summaries both engines must agree
//! on, run by run.

use serde_json::{Value, json};

use super::data::{ADVERTISERS, COUNTRIES, DAY_START_MS, DAYS, MS_PER_DAY, advertiser_name};
use super::server::DATA_SOURCE;
use crate::common::Rng;
use crate::common::zipf_value;

/// The queries, in the order they run and print; each is a key of the figures.
pub const QUERIES: [&str; 14] = [
    "count",
    "sum_by_hour",
    "topn_country",
    "groupby_country_device",
    "in_filter_1000",
    "approx_distinct",
    "point",
    "groupby_campaign_top100",
    "count_distinct_exact",
    "groupby_advertiser_day",
    "groupby_campaign_filtered",
    "in_filter_10000",
    "in_filter_10000_sql",
    "topn_country_exact",
];

/// Queries sent as SQL (to `/druid/v2/sql`) rather than native JSON.
pub fn is_sql(key: &str) -> bool {
    key.ends_with("_sql")
}

pub const IN_IDS: usize = 1_000;
pub const IN_IDS_LARGE: usize = 10_000;
/// Run `r` of the IN query (warm-ups included) draws its ids from `Rng(IN_SEED + r)`.
pub const IN_SEED: u64 = 0x696e_5f66_696c;
const MS_PER_HOUR: i64 = 3_600_000;
/// The hour of the point query: 12:00–13:00 of the first day.
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
    ids_of(rng, IN_IDS)
}

/// `count` distinct advertiser names drawn uniformly from the 100,000, in draw order.
pub fn ids_of(rng: &mut Rng, count: usize) -> Vec<String> {
    let mut seen = vec![false; ADVERTISERS as usize];
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
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

/// The first day.
fn day() -> String {
    format!("{}/{}", iso(DAY_START_MS), iso(DAY_START_MS + MS_PER_DAY))
}

/// Every day of the data.
fn week() -> String {
    format!(
        "{}/{}",
        iso(DAY_START_MS),
        iso(DAY_START_MS + DAYS * MS_PER_DAY)
    )
}

/// The IN-filter query on the advertiser-first datasource (what `in_filter_qps` sends).
pub fn in_filter_query(ids: &[String]) -> Value {
    in_filter_on(DATA_SOURCE, ids)
}

/// The IN-filter query: per advertiser per day, clicks and spend of the given advertisers, one
/// day.
pub fn in_filter_on(data_source: &str, ids: &[String]) -> Value {
    json!({
        "queryType": "groupBy",
        "dataSource": data_source,
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

/// The body of query `key` for run `run` on `data_source` (only the IN queries change between
/// runs): native JSON, or for `_sql` keys a SQL request.
pub fn body(key: &str, run: u64, data_source: &str) -> Value {
    let sum = |kind: &str, name: &str| json!({"type": kind, "name": name, "fieldName": name});
    let ds = data_source;
    match key {
        "count" => json!({
            "queryType": "timeseries", "dataSource": ds, "granularity": "all",
            "intervals": [week()],
            "aggregations": [{"type": "count", "name": "rows"}]
        }),
        "sum_by_hour" => json!({
            "queryType": "timeseries", "dataSource": ds, "granularity": "hour",
            "intervals": [week()],
            "aggregations": [sum("doubleSum", "spend")]
        }),
        "topn_country" | "topn_country_exact" => json!({
            "queryType": "topN", "dataSource": ds, "granularity": "all",
            "intervals": [week()],
            "dimension": "campaign", "metric": "clicks", "threshold": 100,
            "filter": {"type": "selector", "dimension": "country", "value": top_country()},
            "aggregations": [sum("longSum", "clicks")],
            "context": {"useApproximateTopN": key == "topn_country"}
        }),
        "groupby_country_device" => json!({
            "queryType": "groupBy", "dataSource": ds, "granularity": "all",
            "intervals": [week()],
            "dimensions": ["country", "device"],
            "aggregations": [{"type": "count", "name": "rows"}]
        }),
        "in_filter_1000" => in_filter_on(ds, &ids_of(&mut Rng(IN_SEED + run), IN_IDS)),
        "in_filter_10000" => in_filter_on(ds, &ids_of(&mut Rng(IN_SEED + run), IN_IDS_LARGE)),
        "in_filter_10000_sql" => {
            let ids = ids_of(&mut Rng(IN_SEED + run), IN_IDS_LARGE);
            let list = ids
                .iter()
                .map(|i| format!("'{i}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT FLOOR(__time TO DAY) AS \"day\", advertiser, SUM(clicks) AS clicks, \
                 SUM(spend) AS spend FROM {ds} WHERE __time >= TIMESTAMP '{}' AND __time < \
                 TIMESTAMP '{}' AND advertiser IN ({list}) GROUP BY 1, 2",
                sql_time(DAY_START_MS),
                sql_time(DAY_START_MS + MS_PER_DAY)
            );
            json!({"query": sql, "resultFormat": "array"})
        }
        "approx_distinct" => json!({
            "queryType": "timeseries", "dataSource": ds, "granularity": "all",
            "intervals": [week()],
            "aggregations": [
                {"type": "cardinality", "name": "campaigns", "fields": ["campaign"], "round": true}
            ]
        }),
        "point" => {
            let start = DAY_START_MS + POINT_HOUR * MS_PER_HOUR;
            json!({
                "queryType": "timeseries", "dataSource": ds, "granularity": "all",
                "intervals": [format!("{}/{}", iso(start), iso(start + MS_PER_HOUR))],
                "filter": {"type": "selector", "dimension": "advertiser", "value": point_advertiser()},
                "aggregations": [
                    {"type": "count", "name": "rows"},
                    sum("longSum", "clicks"),
                    sum("doubleSum", "spend")
                ]
            })
        }
        // Exact top 100 of ~1M campaigns by clicks in one country: groupBy + limitSpec.
        "groupby_campaign_top100" => json!({
            "queryType": "groupBy", "dataSource": ds, "granularity": "all",
            "intervals": [week()],
            "dimensions": ["campaign"],
            "filter": {"type": "selector", "dimension": "country", "value": top_country()},
            "aggregations": [sum("longSum", "clicks")],
            "limitSpec": {"type": "default", "limit": 100,
                          "columns": [{"dimension": "clicks", "direction": "descending"}]}
        }),
        // Exact distinct campaigns, as Druid's SQL plans COUNT(DISTINCT) with
        // useApproximateCountDistinct=false: a timeseries over a groupBy.
        "count_distinct_exact" => json!({
            "queryType": "timeseries", "granularity": "all", "intervals": [week()],
            "dataSource": {"type": "query", "query": {
                "queryType": "groupBy", "dataSource": ds, "granularity": "all",
                "intervals": [week()],
                "dimensions": [{"type": "default", "dimension": "campaign", "outputName": "d0"}],
                "aggregations": []
            }},
            "aggregations": [{"type": "filtered", "name": "campaigns",
                "filter": {"type": "not", "field": {"type": "null", "column": "d0"}},
                "aggregator": {"type": "count", "name": "campaigns"}}]
        }),
        // Per advertiser per day over the week, the 1,000 biggest by clicks.
        "groupby_advertiser_day" => json!({
            "queryType": "groupBy", "dataSource": ds, "granularity": "day",
            "intervals": [week()],
            "dimensions": ["advertiser"],
            "aggregations": [sum("longSum", "clicks"), sum("doubleSum", "spend")],
            "limitSpec": {"type": "default", "limit": 1000,
                          "columns": [{"dimension": "clicks", "direction": "descending"}]}
        }),
        // A filtered high-cardinality groupBy: every campaign with server errors on tablets.
        "groupby_campaign_filtered" => json!({
            "queryType": "groupBy", "dataSource": ds, "granularity": "all",
            "intervals": [week()],
            "dimensions": ["campaign"],
            "filter": {"type": "and", "fields": [
                {"type": "selector", "dimension": "device", "value": "tablet"},
                {"type": "selector", "dimension": "status_code", "value": "500"}
            ]},
            "aggregations": [{"type": "count", "name": "rows"}, sum("doubleSum", "spend")]
        }),
        other => panic!("unknown query {other}"),
    }
}

fn sql_time(ms: i64) -> String {
    iso(ms).replace('T', " ").trim_end_matches('Z').to_string()
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
        "topn_country" | "topn_country_exact" => {
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
        "in_filter_1000" | "in_filter_10000" => vec![
            ("groups", rows.len() as f64),
            ("clicks", total("clicks", "event")),
        ],
        // SQL arrays: [day, advertiser, clicks, spend].
        "in_filter_10000_sql" => vec![
            ("groups", rows.len() as f64),
            (
                "clicks",
                rows.iter()
                    .map(|r| r[2].as_f64().unwrap_or_else(|| panic!("{key}: {r}")))
                    .sum(),
            ),
        ],
        "approx_distinct" => vec![("campaigns", total("campaigns", "result"))],
        "count_distinct_exact" => vec![("distinct", total("campaigns", "result"))],
        "point" => vec![
            ("rows", total("rows", "result")),
            ("clicks", total("clicks", "result")),
            ("spend", total("spend", "result")),
        ],
        "groupby_campaign_top100" | "groupby_advertiser_day" => vec![
            ("groups", rows.len() as f64),
            ("clicks", total("clicks", "event")),
        ],
        "groupby_campaign_filtered" => vec![
            ("groups", rows.len() as f64),
            ("rows", total("rows", "event")),
            ("spend", total("spend", "event")),
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
