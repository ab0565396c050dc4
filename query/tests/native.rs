//! Native query tests (filters, sketches, scan, segment metadata, errors, timeouts) over a small
//! hand-checked data set held in two segments — one memory-mapped file and one in-memory index
//! snapshot — so every answer also exercises the cross-segment merge. Whole-result cases live in
//! the golden files (`tests/golden/`).

mod common;

use serde_json::{Value as Json, json};

use common::{Fixed, segments, ts};

use common::events::events;
use common::native as run_native;
use grove_query::{ErrorKind, Unbounded};

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
fn segment_metadata_describes_columns() {
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
    // A malformed value of a known property names its path.
    let e = run_err(json!({"queryType": "timeseries", "dataSource": "events",
        "aggregations": [{"type": "longSum", "name": "x", "fieldName": 5}]}));
    assert_eq!(e.kind, ErrorKind::BadQuery);
    assert!(e.message.contains("aggregations[0]"), "{e}");
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

/// Druid's JSON mapper ignores properties it does not know, and clients rely on it (pydruid's
/// `count` sends a `fieldName`); properties Druid honours and Grove does not implement are
/// refused by name rather than ignored.
#[test]
fn unknown_properties_follow_druid() {
    let pydruid_style = json!({
        "queryType": "timeseries", "dataSource": "events", "granularity": "all",
        "intervals": "2024-01-01/2024-01-03", "pagingSpec": {"threshold": 5}, "fliter": {},
        "aggregations": [
            {"type": "count", "name": "n", "fieldName": "count"},
            {"type": "max", "name": "top", "fieldName": "price"},
            {"type": "cardinality", "name": "countries", "fieldNames": ["country"], "byRow": false},
        ],
        "filter": {"type": "not", "field": {"type": "selector", "dimension": "country",
            "value": "XX", "filterTuning": {"useBitmapIndex": false}}},
        "postAggregations": [{"type": "arithmetic", "name": "twice", "fn": "*", "fields": [
            {"type": "fieldAccess", "fieldName": "n"}, {"type": "constant", "name": "c", "value": 2}]}],
        "context": {"timeout": 60000, "queryId": "q1", "somethingNew": [1, 2]},
    });
    let r = run(pydruid_style);
    assert_eq!(r[0]["result"]["n"], json!(7));
    assert_eq!(r[0]["result"]["twice"], json!(14.0));
    assert!(r[0]["result"]["top"].is_number(), "{r}");
    assert!(r[0]["result"]["countries"].as_f64().unwrap() > 2.0, "{r}");
    let refused = [
        (json!({"context": {"finalize": false}}), "context.finalize"),
        (
            json!({"context": {"grandTotal": true}}),
            "context.grandTotal",
        ),
        (
            json!({"context": {"serializeDateTimeAsLong": "true"}}),
            "serializeDateTimeAsLong",
        ),
        (
            json!({"filter": {"type": "bound", "dimension": "country", "lower": "A", "alphaNumeric": true}}),
            "alphaNumeric",
        ),
        (
            json!({"filter": {"type": "selector", "dimension": "country", "value": "x",
                "extractionFn": {"type": "lookup", "lookup": {"type": "map", "map": {}}}}}),
            "lookup",
        ),
        (
            json!({"filter": {"type": "javascript", "dimension": "country", "function": "x"}}),
            "javascript",
        ),
    ];
    for (extra, named) in refused {
        let mut query = json!({"queryType": "timeseries", "dataSource": "events",
            "aggregations": [{"type": "count", "name": "n"}]});
        for (k, v) in extra.as_object().unwrap() {
            query[k] = v.clone();
        }
        let e = run_err(query.clone());
        assert_eq!(e.http_status(), 400, "{query}");
        assert!(e.message.contains(named), "{named}: {e}");
    }
    let e = run_err(
        json!({"queryType": "groupBy", "dataSource": "events", "granularity": "all",
        "dimensions": [{"type": "listFiltered", "delegate": "tags", "values": ["a"]}]}),
    );
    assert!(e.message.contains("listFiltered"), "{e}");
    // A scan's `orderBy` on __time is Druid's newer spelling of `order`.
    let r = run(
        json!({"queryType": "scan", "dataSource": "events", "columns": ["__time"],
        "intervals": ["2024-01-01/2024-01-03"], "limit": 1,
        "orderBy": [{"columnName": "__time", "order": "descending"}]}),
    );
    assert_eq!(
        r[0]["events"][0]["__time"],
        json!(ts("2024-01-02T05:00:00Z")),
        "{r}"
    );
    let e = run_err(json!({"queryType": "scan", "dataSource": "events",
        "orderBy": [{"columnName": "country", "order": "ascending"}]}));
    assert_eq!(e.kind, ErrorKind::Unsupported);
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

/// A timestamp whose year does not fit (past Druid's eternity or past `i64` milliseconds) is a
/// bad query naming it, in intervals and granularity origins; a period that carries an interval
/// past the eternity too. Never a wrapped time or a panic.
#[test]
fn timestamps_whose_year_does_not_fit_are_bad_queries() {
    let timeseries = |intervals: Json, granularity: Json| {
        run_err(json!({
            "queryType": "timeseries", "dataSource": "events", "intervals": intervals,
            "granularity": granularity, "aggregations": [{"type": "count", "name": "n"}]
        }))
    };
    for (intervals, granularity, needle) in [
        (
            json!(["2024-01-01/440000000-01-01"]),
            json!("all"),
            "440000000-01-01",
        ),
        (
            json!(["-440000000-01-01/2024-01-01"]),
            json!("all"),
            "-440000000-01-01",
        ),
        (
            json!(["146140482-01-01/P1000000Y"]),
            json!("all"),
            "eternity",
        ),
        (
            json!(["P1000000Y/-146136543-12-31"]),
            json!("all"),
            "eternity",
        ),
        (
            json!(["2024-01-01/2024-01-02"]),
            json!({"type": "period", "period": "P1D", "origin": "440000000-01-01"}),
            "440000000-01-01",
        ),
    ] {
        let e = timeseries(intervals.clone(), granularity);
        assert_eq!(e.kind, ErrorKind::BadQuery, "{intervals}: {e}");
        assert!(e.message.contains(needle), "{intervals}: {e}");
    }
}

/// A [`grove_query::QueryControl`] with the given answer bounds.
struct Limited(grove_query::QueryLimits);

impl grove_query::QueryControl for Limited {
    fn check(&self) -> grove_query::Result<()> {
        Ok(())
    }

    fn limits(&self) -> grove_query::QueryLimits {
        self.0
    }
}

/// The events of a scan's batches, in order.
fn scan_events(result: &Json) -> Vec<Json> {
    result
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap().clone())
        .collect()
}

/// Scans are bounded by rows (`maxScanRows`, counted before anything is written), time
/// ordering by the rows it may queue (`maxRowsQueuedForOrdering`, past which every row is
/// ordered unless a time chunk has more than `maxSegmentPartitionsOrderedInMemory` segments,
/// as Druid), and every answer by its bytes: each a resource-limit error naming the knob.
#[test]
fn scans_and_answers_are_bounded_with_errors_naming_the_limit() {
    let scan = |extra: Json| {
        let mut q = json!({
            "queryType": "scan", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
            "columns": ["__time", "country", "clicks"]
        });
        q.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        q
    };
    let all = scan_events(&run(scan(json!({}))));
    assert_eq!(all.len(), 8);
    // Rows: past the bound with no limit, within it with one, or with the bound raised.
    let e = run_err(scan(json!({"context": {"maxScanRows": 5}})));
    assert_eq!(e.kind, ErrorKind::ResourceLimit);
    assert!(e.message.contains("more than 5 rows (maxScanRows)"), "{e}");
    assert_eq!(
        scan_events(&run(scan(
            json!({"limit": 5, "context": {"maxScanRows": 5}})
        ))),
        all[..5]
    );
    assert_eq!(
        scan_events(&run(scan(
            json!({"offset": 4, "context": {"maxScanRows": 4}})
        ))),
        all[4..]
    );
    let bounded = Limited(grove_query::QueryLimits {
        scan_rows_max: 7,
        ..grove_query::QueryLimits::DEFAULT
    });
    let e = run_native(&scan(json!({"order": "ascending"})), &provider(), &bounded).unwrap_err();
    assert!(e.message.contains("more than 7 rows"), "{e}");
    let raised = scan(json!({"context": {"maxScanRows": "8"}}));
    assert_eq!(
        scan_events(&run_native(&raised, &provider(), &bounded).unwrap()),
        all
    );

    // Time ordering: the queue (limit within maxRowsQueuedForOrdering) and the full sort past
    // it give the same rows; a time chunk with too many segments is refused as Druid does.
    for order in ["ascending", "descending"] {
        let mut expected = all.clone();
        expected.sort_by_key(|e| e["__time"].as_i64().unwrap());
        if order == "descending" {
            expected.reverse();
        }
        let queued = run(scan(json!({"order": order, "limit": 3, "offset": 2})));
        let sorted = run(scan(json!({"order": order, "limit": 3, "offset": 2,
            "context": {"maxRowsQueuedForOrdering": 4}})));
        assert_eq!(scan_events(&queued), scan_events(&sorted), "{order}");
        let times = |events: Vec<Json>| -> Vec<Json> {
            events.iter().map(|e| e["__time"].clone()).collect()
        };
        assert_eq!(times(scan_events(&queued)), times(expected[2..5].to_vec()));
        let unlimited = run(scan(json!({"order": order})));
        assert_eq!(times(scan_events(&unlimited)), times(expected.clone()));
    }
    let e = run_err(scan(json!({"order": "ascending", "offset": 6, "limit": 1,
        "context": {"maxScanRows": 5}})));
    assert!(
        e.message
            .contains("an offset of 6 is more than maxScanRows (5)"),
        "{e}"
    );
    let e = run_err(scan(
        json!({"order": "descending", "context": {"maxScanRows": 7}}),
    ));
    assert!(e.message.contains("more than 7 rows (maxScanRows)"), "{e}");
    let e = run_err(scan(json!({"order": "ascending", "limit": 10,
        "context": {"maxRowsQueuedForOrdering": 5, "maxSegmentPartitionsOrderedInMemory": 0}})));
    assert_eq!(e.kind, ErrorKind::ResourceLimit);
    assert!(
        e.message.starts_with(
            "Time ordering is not supported for a Scan query with 1 segments per time chunk \
             and a row limit of 10."
        ) && e.message.contains("maxRowsQueuedForOrdering (currently 5)"),
        "{e}"
    );

    // Bytes: a scan stops building past the bound; other answers are refused before their
    // text outgrows it.
    let small = Limited(grove_query::QueryLimits {
        result_bytes_max: 400,
        ..grove_query::QueryLimits::DEFAULT
    });
    let e = run_native(&scan(json!({})), &provider(), &small).unwrap_err();
    assert_eq!(e.kind, ErrorKind::ResourceLimit);
    assert!(e.message.contains("larger than 400 bytes"), "{e}");
    assert!(e.message.contains("--result-bytes-max"), "{e}");
    assert!(run_native(&scan(json!({"limit": 1})), &provider(), &small).is_ok());
    let per_hour = json!({
        "queryType": "timeseries", "dataSource": "events", "granularity": "hour",
        "intervals": ["2024-01-01/2024-01-03"], "aggregations": [{"type": "count", "name": "n"}]
    });
    for query in [per_hour, scan(json!({}))] {
        let answer = || grove_query::run_native(&query, &provider(), &Unbounded).unwrap();
        let text = answer().to_text();
        let bound = text.len() as u64;
        assert_eq!(answer().into_text_bounded(bound).unwrap(), text);
        let e = answer().into_text_bounded(bound - 1).unwrap_err();
        assert_eq!(e.kind, ErrorKind::ResourceLimit);
    }
}

/// topN ranked by a post-aggregator over thousands of groups (cut back to the threshold as
/// rows arrive) equals ranking every group: clicks per spend by user, highest and lowest.
#[test]
fn top_n_by_a_post_aggregator_over_thousands_of_groups_equals_ranking_them_all() {
    let base = ts("2024-01-01T00:00:00Z");
    let events: Vec<common::Event> = (0..12_000i64)
        .map(|i| common::Event {
            time: base + (i % 2) * 86_400_000 + i,
            country: Some("US"),
            tags: vec![],
            device: Some("phone"),
            user: Some(i % 3_000),
            price: None,
            clicks: (i * 7919) % 1_000,
            spend: 1.0 + ((i * 104_729) % 997) as f64,
            uname: "u".into(),
        })
        .collect();
    let provider = Fixed(segments(&events, |day| day == 0));
    let mut per_user = std::collections::BTreeMap::<i64, (i64, f64)>::new();
    for e in &events {
        let entry = per_user.entry(e.user.unwrap()).or_default();
        entry.0 += e.clicks;
        entry.1 += e.spend;
    }
    for inverted in [false, true] {
        let metric = if inverted {
            json!({"type": "inverted", "metric": "ratio"})
        } else {
            json!("ratio")
        };
        let query = json!({
            "queryType": "topN", "dataSource": "events", "intervals": ["2024-01-01/2024-01-03"],
            "dimension": "user", "metric": metric, "threshold": 7,
            "aggregations": [
                {"type": "longSum", "name": "clicks", "fieldName": "clicks"},
                {"type": "doubleSum", "name": "spend", "fieldName": "spend"}
            ],
            "postAggregations": [{"type": "arithmetic", "name": "ratio", "fn": "/", "fields": [
                {"type": "fieldAccess", "fieldName": "clicks"},
                {"type": "fieldAccess", "fieldName": "spend"}
            ]}]
        });
        let got: Vec<i64> = run_native(&query, &provider, &Unbounded).unwrap()[0]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| match &r["user"] {
                Json::String(s) => s.parse().unwrap(),
                other => other.as_i64().unwrap_or_else(|| panic!("{r}")),
            })
            .collect();
        let mut expected: Vec<(f64, i64)> = per_user
            .iter()
            .map(|(user, (clicks, spend))| (*clicks as f64 / spend, *user))
            .collect();
        expected.sort_by(|a, b| {
            let by = if inverted {
                a.0.total_cmp(&b.0)
            } else {
                b.0.total_cmp(&a.0)
            };
            by.then(a.1.cmp(&b.1))
        });
        let expected: Vec<i64> = expected.iter().take(7).map(|e| e.1).collect();
        assert_eq!(got, expected, "inverted {inverted}");
    }
}

/// HLLSketchBuild honours `stringEncoding` (utf16le, Druid's default, or utf8: different hashes,
/// so the sketch bytes differ but estimates agree) and `tgtHllType` (the register width of an
/// unfinalized sketch).
#[test]
fn hll_string_encoding_and_target_type() {
    let sketch = |extra: Json| {
        let mut agg =
            json!({"type": "HLLSketchBuild", "name": "s", "fieldName": "device", "round": true});
        for (k, v) in extra.as_object().unwrap() {
            agg[k] = v.clone();
        }
        run(json!({"queryType": "timeseries", "dataSource": "events",
            "intervals": ["2024-01-01/2024-01-03"], "aggregations": [agg]}))[0]["result"]["s"]
            .clone()
    };
    assert_eq!(sketch(json!({})), json!(3));
    assert_eq!(sketch(json!({"stringEncoding": "utf8"})), json!(3));
    let utf16 = sketch(json!({"shouldFinalize": false}));
    let utf8 = sketch(json!({"shouldFinalize": false, "stringEncoding": "utf8"}));
    let hll8 = sketch(json!({"shouldFinalize": false, "tgtHllType": "HLL_8"}));
    assert!(utf16.is_string() && utf8.is_string() && hll8.is_string());
    assert_ne!(utf16, utf8);
    assert_ne!(utf16, hll8);
    let e = run_err(json!({"queryType": "timeseries", "dataSource": "events",
        "aggregations": [{"type": "HLLSketchBuild", "name": "s", "fieldName": "device",
            "stringEncoding": "latin1"}]}));
    assert!(e.message.contains("latin1"), "{e}");
}
