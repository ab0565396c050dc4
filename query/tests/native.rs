//! Golden tests: every native query type, filter and aggregator over a small hand-checked data
//! set held in two segments — one memory-mapped file and one in-memory index snapshot — so every
//! answer also exercises the cross-segment merge.

mod common;

use serde_json::{Value as Json, json};

use common::{Event, Fixed, segments, ts};
use grove_query::{ErrorKind, Unbounded, run_native};

fn events() -> Vec<Event> {
    let e = |time: &str,
             country: Option<&'static str>,
             tags: &[&'static str],
             device: &'static str,
             user: Option<i64>,
             price: Option<f64>,
             clicks: i64,
             spend: f64,
             uname: &str| Event {
        time: ts(time),
        country,
        tags: tags.to_vec(),
        device: Some(device),
        user,
        price,
        clicks,
        spend,
        uname: uname.to_string(),
    };
    vec![
        e(
            "2024-01-01T01:00:00Z",
            Some("US"),
            &["a", "b"],
            "phone",
            Some(1),
            Some(1.5),
            10,
            1.0,
            "u1",
        ),
        e(
            "2024-01-01T01:30:00Z",
            Some("US"),
            &["a"],
            "desktop",
            Some(2),
            Some(2.5),
            5,
            2.0,
            "u2",
        ),
        e(
            "2024-01-01T02:00:00Z",
            Some("FR"),
            &[],
            "phone",
            None,
            None,
            1,
            0.5,
            "u1",
        ),
        e(
            "2024-01-01T03:00:00Z",
            None,
            &["b"],
            "tablet",
            Some(3),
            Some(4.0),
            7,
            3.5,
            "u3",
        ),
        e(
            "2024-01-01T03:30:00Z",
            Some("DE"),
            &["c"],
            "phone",
            Some(1),
            Some(1.0),
            2,
            1.5,
            "u1",
        ),
        e(
            "2024-01-02T00:00:00Z",
            Some("US"),
            &["b", "c"],
            "desktop",
            Some(4),
            Some(3.0),
            3,
            2.5,
            "u4",
        ),
        e(
            "2024-01-02T05:00:00Z",
            Some("FR"),
            &["a"],
            "phone",
            Some(5),
            None,
            8,
            4.0,
            "u5",
        ),
        e(
            "2024-01-02T05:00:00Z",
            Some("US"),
            &[],
            "phone",
            Some(2),
            Some(2.0),
            4,
            1.0,
            "u2",
        ),
    ]
}

fn provider() -> Fixed {
    Fixed(segments(&events(), |day| day == 0))
}

fn run(query: Json) -> Json {
    run_native(&query, &provider(), &Unbounded)
        .unwrap_or_else(|e| panic!("query failed: {e}\n{query:#}"))
}

fn run_err(query: Json) -> grove_query::QueryError {
    run_native(&query, &provider(), &Unbounded).expect_err("query should fail")
}

/// A timeseries `count` with `filter`, granularity all.
fn count_where(filter: Json) -> Json {
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events",
        "intervals": ["2024-01-01/2024-01-03"], "granularity": "all",
        "filter": filter, "aggregations": [{"type": "count", "name": "n"}]
    }));
    r[0]["result"]["n"].clone()
}

#[test]
fn timeseries_all_sums_every_metric() {
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events",
        "intervals": "2024-01-01/2024-01-03", "granularity": "all",
        "aggregations": [
            {"type": "count", "name": "rows"},
            {"type": "longSum", "name": "clicks", "fieldName": "clicks"},
            {"type": "doubleSum", "name": "spend", "fieldName": "spend"},
            {"type": "longMin", "name": "min_user", "fieldName": "user"},
            {"type": "longMax", "name": "max_user", "fieldName": "user"},
            {"type": "doubleMax", "name": "max_price", "fieldName": "price"},
            {"type": "longSum", "name": "stored_rows", "fieldName": "count"},
            {"type": "longSum", "name": "nothing", "fieldName": "no_such_column"}
        ],
        "postAggregations": [{"type": "arithmetic", "name": "per_row", "fn": "/", "fields": [
            {"type": "fieldAccess", "fieldName": "clicks"},
            {"type": "fieldAccess", "fieldName": "rows"}]}]
    }));
    assert_eq!(
        r,
        json!([{"timestamp": "2024-01-01T00:00:00.000Z", "result": {
            "rows": 8, "clicks": 40, "spend": 16.0, "min_user": 1, "max_user": 5,
            "max_price": 4.0, "stored_rows": 8, "nothing": null, "per_row": 5.0}}])
    );
}

#[test]
fn timeseries_buckets_fill_empty_hours_and_honour_descending_and_limit() {
    let q = |extra: Json| {
        let mut q = json!({
            "queryType": "timeseries", "dataSource": "events",
            "intervals": ["2024-01-01T00:00:00Z/2024-01-01T05:00:00Z"], "granularity": "hour",
            "aggregations": [{"type": "count", "name": "n"},
                             {"type": "longSum", "name": "c", "fieldName": "clicks"}]
        });
        q.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        run(q)
    };
    let r = q(json!({}));
    let hours: Vec<(String, Json, Json)> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            (
                x["timestamp"].as_str().unwrap()[11..13].to_string(),
                x["result"]["n"].clone(),
                x["result"]["c"].clone(),
            )
        })
        .collect();
    assert_eq!(
        hours,
        vec![
            ("00".into(), json!(0), json!(null)),
            ("01".into(), json!(2), json!(15)),
            ("02".into(), json!(1), json!(1)),
            ("03".into(), json!(2), json!(9)),
            ("04".into(), json!(0), json!(null)),
        ]
    );
    let r = q(json!({"context": {"skipEmptyBuckets": true}, "descending": true, "limit": 2}));
    assert_eq!(
        r,
        json!([
            {"timestamp": "2024-01-01T03:00:00.000Z", "result": {"n": 2, "c": 9}},
            {"timestamp": "2024-01-01T02:00:00.000Z", "result": {"n": 1, "c": 1}}
        ])
    );
}

#[test]
fn timeseries_by_day_with_a_filter() {
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "granularity": {"type": "period", "period": "P1D", "timeZone": "UTC"},
        "filter": {"type": "selector", "dimension": "country", "value": "US"},
        "aggregations": [{"type": "count", "name": "n"}, {"type": "longSum", "name": "c", "fieldName": "clicks"}]
    }));
    assert_eq!(
        r,
        json!([
            {"timestamp": "2024-01-01T00:00:00.000Z", "result": {"n": 2, "c": 15}},
            {"timestamp": "2024-01-02T00:00:00.000Z", "result": {"n": 2, "c": 7}}
        ])
    );
}

#[test]
fn filters_follow_druid_semantics() {
    let us = json!({"type": "selector", "dimension": "country", "value": "US"});
    assert_eq!(count_where(us.clone()), json!(4));
    // Three-valued logic: the null country is neither US nor not US.
    assert_eq!(count_where(json!({"type": "not", "field": us})), json!(3));
    assert_eq!(
        count_where(json!({"type": "selector", "dimension": "country", "value": null})),
        json!(1)
    );
    assert_eq!(
        count_where(json!({"type": "null", "column": "price"})),
        json!(2)
    );
    assert_eq!(
        count_where(json!({"type": "not", "field": {"type": "null", "column": "price"}})),
        json!(6)
    );
    // Numeric columns compare numbers; `in` values are text.
    assert_eq!(
        count_where(json!({"type": "in", "dimension": "user", "values": ["1", "2"]})),
        json!(4)
    );
    assert_eq!(
        count_where(
            json!({"type": "in", "dimension": "country", "values": ["FR", "DE", "XX", null]})
        ),
        json!(4)
    );
    assert_eq!(
        count_where(
            json!({"type": "bound", "dimension": "price", "lower": "2", "upper": "4",
                           "upperStrict": true, "ordering": "numeric"})
        ),
        json!(3)
    );
    assert_eq!(
        count_where(
            json!({"type": "range", "column": "user", "matchValueType": "LONG", "lower": 2, "lowerOpen": true})
        ),
        json!(3)
    );
    assert_eq!(
        count_where(
            json!({"type": "equals", "column": "price", "matchValueType": "DOUBLE", "matchValue": 2.5})
        ),
        json!(1)
    );
    assert_eq!(
        count_where(json!({"type": "like", "dimension": "country", "pattern": "U%"})),
        json!(4)
    );
    assert_eq!(
        count_where(json!({"type": "regex", "dimension": "device", "pattern": "^(tab|desk)"})),
        json!(3)
    );
    assert_eq!(
        count_where(json!({"type": "bound", "dimension": "country", "lower": "E", "upper": "G"})),
        json!(2)
    );
    // Multi-value: a row matches when any value does; an empty row is null.
    assert_eq!(
        count_where(json!({"type": "selector", "dimension": "tags", "value": "b"})),
        json!(3)
    );
    assert_eq!(
        count_where(json!({"type": "null", "column": "tags"})),
        json!(2)
    );
    assert_eq!(
        count_where(
            json!({"type": "not", "field": {"type": "selector", "dimension": "tags", "value": "a"}})
        ),
        json!(3)
    );
    // __time and logical combinations.
    assert_eq!(
        count_where(
            json!({"type": "bound", "dimension": "__time", "lower": ts("2024-01-01T02:00:00Z").to_string(),
                           "upper": ts("2024-01-02T00:00:00Z").to_string(), "upperStrict": true, "ordering": "numeric"})
        ),
        json!(3)
    );
    assert_eq!(
        count_where(json!({"type": "or", "fields": [
            {"type": "and", "fields": [{"type": "selector", "dimension": "device", "value": "phone"},
                                        {"type": "selector", "dimension": "country", "value": "FR"}]},
            {"type": "selector", "dimension": "tags", "value": "c"}]})),
        json!(4)
    );
    assert_eq!(count_where(json!({"type": "false"})), json!(0));
    // A column no segment has is null everywhere.
    assert_eq!(
        count_where(json!({"type": "null", "column": "nope"})),
        json!(8)
    );
    assert_eq!(
        count_where(json!({"type": "selector", "dimension": "nope", "value": "x"})),
        json!(0)
    );
}

#[test]
fn top_n_ranks_by_metric_dimension_and_inverted() {
    let q = |metric: Json, threshold: usize| {
        run(json!({
            "queryType": "topN", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
            "granularity": "all", "dimension": "country", "metric": metric, "threshold": threshold,
            "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}]
        }))
    };
    assert_eq!(
        q(json!("clicks"), 2),
        json!([{"timestamp": "2024-01-01T00:00:00.000Z", "result": [
            {"country": "US", "clicks": 22}, {"country": "FR", "clicks": 9}]}])
    );
    assert_eq!(
        q(json!({"type": "inverted", "metric": "clicks"}), 2)[0]["result"],
        json!([{"country": "DE", "clicks": 2}, {"country": null, "clicks": 7}])
    );
    assert_eq!(
        q(
            json!({"type": "dimension", "ordering": "lexicographic", "previousStop": "DE"}),
            5
        )[0]["result"],
        json!([{"country": "FR", "clicks": 9}, {"country": "US", "clicks": 22}])
    );
}

#[test]
fn group_by_explodes_multi_value_rows() {
    let r = run(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "granularity": "all", "dimensions": ["tags"],
        "aggregations": [{"type": "count", "name": "n"}, {"type": "longSum", "name": "c", "fieldName": "clicks"}]
    }));
    let rows: Vec<Json> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event"].clone())
        .collect();
    assert_eq!(
        rows,
        vec![
            json!({"tags": null, "n": 2, "c": 5}),
            json!({"tags": "a", "n": 3, "c": 23}),
            json!({"tags": "b", "n": 3, "c": 20}),
            json!({"tags": "c", "n": 2, "c": 5}),
        ]
    );
    assert_eq!(r[0]["version"], "v1");
}

#[test]
fn group_by_having_limit_offset_and_output_types() {
    let r = run(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "granularity": "all",
        "dimensions": ["country", {"type": "default", "dimension": "user", "outputName": "u", "outputType": "LONG"}],
        "aggregations": [{"type": "longSum", "name": "c", "fieldName": "clicks"}],
        "having": {"type": "greaterThan", "aggregation": "c", "value": 3},
        "limitSpec": {"type": "default", "limit": 3, "offset": 1,
                      "columns": [{"dimension": "c", "direction": "descending"}]}
    }));
    let rows: Vec<Json> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event"].clone())
        .collect();
    // Groups with c > 3: (US,1)=10, (US,2)=9 (rows 2 and 8), (FR,5)=8, (null,3)=7.
    assert_eq!(
        rows,
        vec![
            json!({"country": "US", "u": 2, "c": 9}),
            json!({"country": "FR", "u": 5, "c": 8}),
            json!({"country": null, "u": 3, "c": 7}),
        ]
    );
    let r = run(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "granularity": "day", "dimensions": ["device"],
        "aggregations": [{"type": "count", "name": "n"}],
        "having": {"type": "filter", "filter": {"type": "range", "column": "n", "matchValueType": "LONG", "lower": 2}},
    }));
    assert_eq!(
        r,
        json!([
            {"version": "v1", "timestamp": "2024-01-01T00:00:00.000Z", "event": {"device": "phone", "n": 3}},
            {"version": "v1", "timestamp": "2024-01-02T00:00:00.000Z", "event": {"device": "phone", "n": 2}}
        ])
    );
}

#[test]
fn group_by_subtotals() {
    let r = run(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "granularity": "all", "dimensions": ["country", "device"],
        "aggregations": [{"type": "count", "name": "n"}],
        "subtotalsSpec": [["device"], []]
    }));
    let rows: Vec<Json> = r
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["event"].clone())
        .collect();
    assert_eq!(
        rows,
        vec![
            json!({"device": "desktop", "n": 2}),
            json!({"device": "phone", "n": 5}),
            json!({"device": "tablet", "n": 1}),
            json!({"n": 8}),
        ]
    );
}

#[test]
fn sketches_and_distinct_counts() {
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "aggregations": [
            {"type": "cardinality", "name": "devices", "fields": ["device"], "round": true},
            {"type": "HLLSketchBuild", "name": "countries", "fieldName": "country", "round": true},
            {"type": "HLLSketchMerge", "name": "users", "fieldName": "users", "round": true},
            {"type": "hyperUnique", "name": "users_hu", "fieldName": "users"},
            {"type": "cardinality", "name": "pairs", "fields": ["country", "device"], "byRow": true, "round": true},
            {"type": "HLLSketchBuild", "name": "user_ids", "fieldName": "user", "round": true}
        ],
        "postAggregations": [
            {"type": "HLLSketchEstimate", "name": "users_est", "field": {"type": "fieldAccess", "fieldName": "users"}, "round": true},
            {"type": "hyperUniqueCardinality", "name": "users_card", "fieldName": "users_hu"}
        ]
    }));
    let res = &r[0]["result"];
    assert_eq!(res["devices"], 3);
    assert_eq!(res["countries"], 3);
    assert_eq!(res["users"], 5);
    assert_eq!(res["users_est"], 5);
    assert!(
        (res["users_hu"].as_f64().unwrap() - 5.0).abs() < 0.01,
        "{res}"
    );
    assert!(
        (res["users_card"].as_f64().unwrap() - 5.0).abs() < 0.01,
        "{res}"
    );
    // (US,phone) (US,desktop) (FR,phone) (null,tablet) (DE,phone)
    assert_eq!(res["pairs"], 5);
    assert_eq!(res["user_ids"], 5);
}

#[test]
fn first_last_and_filtered_aggregators() {
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "filter": {"type": "selector", "dimension": "country", "value": "FR"},
        "aggregations": [
            {"type": "doubleFirst", "name": "first_spend", "fieldName": "spend"},
            {"type": "doubleLast", "name": "last_spend", "fieldName": "spend"},
            {"type": "longFirst", "name": "first_user", "fieldName": "user"},
            {"type": "stringLast", "name": "last_device", "fieldName": "device"},
            {"type": "filtered", "name": "phone_clicks",
             "filter": {"type": "selector", "dimension": "device", "value": "phone"},
             "aggregator": {"type": "longSum", "name": "x", "fieldName": "clicks"}},
            {"type": "filtered", "filter": {"type": "false"},
             "aggregator": {"type": "count", "name": "none"}}
        ]
    }));
    assert_eq!(
        r[0]["result"],
        json!({"first_spend": 0.5, "last_spend": 4.0, "first_user": null, "last_device": "phone",
               "phone_clicks": 9, "none": 0})
    );
}

#[test]
fn scan_orders_limits_and_offsets() {
    let r = run(json!({
        "queryType": "scan", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "columns": ["__time", "country", "tags", "user", "price"], "order": "descending",
        "limit": 2, "offset": 1
    }));
    let events: Vec<Json> = r
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap().clone())
        .collect();
    assert_eq!(events.len(), 2);
    // Descending: the two 05:00 rows (either first), then 00:00 on the second day.
    assert_eq!(
        events[1],
        json!({"__time": ts("2024-01-02T00:00:00Z"), "country": "US",
                                 "tags": ["b", "c"], "user": 4, "price": 3.0})
    );
    let r = run(json!({
        "queryType": "scan", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "filter": {"type": "null", "column": "price"}, "resultFormat": "compactedList",
        "columns": ["country", "price", "clicks"]
    }));
    let events: Vec<Json> = r
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap().clone())
        .collect();
    assert_eq!(events, vec![json!(["FR", null, 1]), json!(["FR", null, 8])]);
    assert!(
        r[0]["segmentId"]
            .as_str()
            .unwrap()
            .starts_with("events_2024-01-01")
    );
    // Every column by default.
    let r = run(json!({"queryType": "scan", "dataSource": "events", "limit": 1}));
    assert_eq!(
        r[0]["columns"],
        json!([
            "__time", "country", "tags", "device", "user", "price", "count", "clicks", "spend",
            "users"
        ])
    );
}

#[test]
fn search_time_boundary_and_metadata_queries() {
    let r = run(json!({
        "queryType": "search", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "searchDimensions": ["country", "device"],
        "query": {"type": "insensitive_contains", "value": "E"}
    }));
    assert_eq!(
        r[0]["result"],
        json!([
            {"dimension": "country", "value": "DE", "count": 1},
            {"dimension": "device", "value": "desktop", "count": 2},
            {"dimension": "device", "value": "phone", "count": 5},
            {"dimension": "device", "value": "tablet", "count": 1},
        ])
    );
    let r = run(json!({"queryType": "timeBoundary", "dataSource": "events"}));
    assert_eq!(
        r,
        json!([{"timestamp": "2024-01-01T01:00:00.000Z", "result": {
            "minTime": "2024-01-01T01:00:00.000Z", "maxTime": "2024-01-02T05:00:00.000Z"}}])
    );
    let r = run(
        json!({"queryType": "timeBoundary", "dataSource": "events", "bound": "maxTime",
                       "filter": {"type": "selector", "dimension": "device", "value": "tablet"}}),
    );
    assert_eq!(
        r[0]["result"],
        json!({"maxTime": "2024-01-01T03:00:00.000Z"})
    );
    let r = run(json!({"queryType": "dataSourceMetadata", "dataSource": "events"}));
    assert_eq!(
        r[0]["result"]["maxIngestedEventTime"],
        "2024-01-02T05:00:00.000Z"
    );
    let r = run(
        json!({"queryType": "segmentMetadata", "dataSource": "events",
                       "intervals": ["2024-01-01/2024-01-03"], "merge": true,
                       "analysisTypes": ["cardinality", "minmax", "aggregators"]}),
    );
    let m = &r[0];
    assert_eq!(m["numRows"], 8);
    assert_eq!(m["columns"]["country"]["type"], "STRING");
    assert_eq!(m["columns"]["country"]["minValue"], "DE");
    assert_eq!(m["columns"]["country"]["maxValue"], "US");
    assert_eq!(m["columns"]["tags"]["hasMultipleValues"], true);
    assert_eq!(m["columns"]["user"]["type"], "LONG");
    assert_eq!(m["columns"]["users"]["typeSignature"], "COMPLEX<HLLSketch>");
    assert_eq!(m["aggregators"]["clicks"]["type"], "longSum");
}

#[test]
fn unknown_datasources_and_empty_intervals_return_nothing() {
    assert_eq!(
        run(json!({"queryType": "timeseries", "dataSource": "nope",
                   "aggregations": [{"type": "count", "name": "n"}]})),
        json!([])
    );
    assert_eq!(
        run(
            json!({"queryType": "topN", "dataSource": "events", "intervals": ["2030-01-01/2030-01-02"],
                   "dimension": "country", "metric": "n", "threshold": 3,
                   "aggregations": [{"type": "count", "name": "n"}]})
        ),
        json!([])
    );
}

#[test]
fn malformed_queries_are_bad_query_errors_naming_the_problem() {
    let e = run_err(json!({"queryType": "timeseries", "dataSource": "events", "fliter": {}}));
    assert_eq!(e.kind, ErrorKind::BadQuery);
    assert!(e.message.contains("fliter"), "{e}");
    let e = run_err(json!({"queryType": "select", "dataSource": "events"}));
    assert_eq!(e.kind, ErrorKind::Unsupported);
    let e = run_err(json!({"dataSource": "events"}));
    assert!(e.message.contains("queryType"), "{e}");
    let e = run_err(
        json!({"queryType": "timeseries", "dataSource": "events", "intervals": ["yesterday"]}),
    );
    assert!(e.message.contains("yesterday"), "{e}");
    let e = run_err(json!({"queryType": "timeseries", "dataSource": "events",
        "aggregations": [{"type": "longSum", "name": "x", "fieldName": "country"}]}));
    assert!(e.message.contains("string column"), "{e}");
    let e = run_err(json!({"queryType": "timeseries", "dataSource": "events",
        "aggregations": [{"type": "count", "name": "x"}, {"type": "count", "name": "x"}]}));
    assert!(e.message.contains("'x'"), "{e}");
    let e = run_err(json!({"queryType": "timeseries", "dataSource": "events",
        "filter": {"type": "regex", "dimension": "country", "pattern": "("}}));
    assert_eq!(e.kind, ErrorKind::BadQuery);
    let e = run_err(
        json!({"queryType": "groupBy", "dataSource": "events", "dimensions": ["country", "device", "user"],
        "aggregations": [], "context": {"maxResults": 2}}),
    );
    assert_eq!(e.kind, ErrorKind::ResourceLimit);
    assert_eq!(e.http_status(), 400);
    let e = run_err(
        json!({"queryType": "topN", "dataSource": "events", "dimension": "country",
        "metric": "missing", "threshold": 1, "aggregations": [{"type": "count", "name": "n"}]}),
    );
    assert!(e.message.contains("missing"), "{e}");
}

#[test]
fn a_timeout_stops_the_query() {
    struct Expired;
    impl grove_query::QueryControl for Expired {
        fn check(&self) -> grove_query::Result<()> {
            Err(grove_query::QueryError::timeout(
                "query timed out after 1 ms",
            ))
        }
    }
    let e = run_native(
        &json!({"queryType": "timeseries", "dataSource": "events", "aggregations": [{"type": "count", "name": "n"}]}),
        &provider(),
        &Expired,
    )
    .unwrap_err();
    assert_eq!(e.http_status(), 504);
}

#[test]
fn period_granularity_in_a_time_zone() {
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": ["2023-12-31/2024-01-03"],
        "granularity": {"type": "period", "period": "P1D", "timeZone": "America/New_York"},
        "aggregations": [{"type": "count", "name": "n"}],
        "context": {"skipEmptyBuckets": "true"}
    }));
    assert_eq!(
        r,
        json!([
            {"timestamp": "2023-12-31T05:00:00.000Z", "result": {"n": 5}},
            {"timestamp": "2024-01-01T05:00:00.000Z", "result": {"n": 1}},
            {"timestamp": "2024-01-02T05:00:00.000Z", "result": {"n": 2}}
        ])
    );
}

#[test]
fn a_ten_thousand_value_in_filter_parses_plans_and_runs() {
    let mut values: Vec<String> = (0..9_998).map(|i| format!("nowhere-{i:05}")).collect();
    values.push("FR".into());
    values.push("DE".into());
    let query = json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
        "filter": {"type": "in", "dimension": "country", "values": values},
        "aggregations": [{"type": "count", "name": "n"}]
    });
    let started = std::time::Instant::now();
    let parsed = grove_query::model::Query::parse(&query).unwrap();
    let grove_query::model::Query::Timeseries(ts) = &parsed else {
        panic!("parsed as {parsed:?}")
    };
    let parsing = started.elapsed();
    let prepared = grove_query::filter::PreparedFilter::new(ts.filter.as_ref().unwrap()).unwrap();
    let planning = started.elapsed();
    let segments = provider();
    let started = std::time::Instant::now();
    let total: u64 = segments
        .0
        .iter()
        .map(|s| prepared.rows(s, 0..s.num_rows() as u32).unwrap().len())
        .sum();
    let running = started.elapsed();
    // Printed for the record; timings are never asserted.
    println!(
        "10,000-value in: parse {parsing:?}, parse and prepare {planning:?}, \
         evaluate on 2 segments {running:?}"
    );
    assert_eq!(total, 3);
    assert_eq!(run(query)[0]["result"]["n"], 3);
}
