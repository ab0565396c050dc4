//! Druid's expression language, virtual columns, extraction functions and the filters built on
//! them (`interval`, `search`, `columnComparison`, `expression`, `extractionFn`), end to end over
//! the hand-checked events of `common::events` (two segments: a file and an index snapshot).

mod common;

use serde_json::{Value as Json, json};

use common::events::events;
use common::native as run_native;
use common::{Fixed, segments};
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

const INTERVALS: &str = "2024-01-01/2024-01-03";

fn count_where(filter: Json) -> Json {
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": [INTERVALS],
        "granularity": "all", "filter": filter, "aggregations": [{"type": "count", "name": "n"}]
    }));
    r[0]["result"]["n"].clone()
}

/// `(dimension value, metric)` pairs of a groupBy result.
fn pairs(r: &Json, dim: &str, metric: &str) -> Vec<(Json, Json)> {
    r.as_array()
        .unwrap()
        .iter()
        .map(|row| (row["event"][dim].clone(), row["event"][metric].clone()))
        .collect()
}

#[test]
fn expression_virtual_columns_group_aggregate_and_scan() {
    // Over one string column: evaluated once per dictionary value.
    let r = run(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "virtualColumns": [{"type": "expression", "name": "lc", "expression": "lower(country)", "outputType": "STRING"}],
        "dimensions": ["lc"], "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}]
    }));
    assert_eq!(
        pairs(&r, "lc", "clicks"),
        vec![
            (json!(null), json!(7)),
            (json!("de"), json!(2)),
            (json!("fr"), json!(9)),
            (json!("us"), json!(22)),
        ]
    );
    // A multi-value column alone maps each of its values.
    let r = run(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "virtualColumns": [{"type": "expression", "name": "t", "expression": "upper(tags)"}],
        "dimensions": ["t"], "aggregations": [{"type": "count", "name": "n"}]
    }));
    assert_eq!(
        pairs(&r, "t", "n"),
        vec![
            (json!(null), json!(2)),
            (json!("A"), json!(3)),
            (json!("B"), json!(3)),
            (json!("C"), json!(2)),
        ]
    );
    // An aggregator's inline expression, and a virtual column reading another.
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "virtualColumns": [
            {"type": "expression", "name": "doubled", "expression": "twice + nvl(user, 0)"},
            {"type": "expression", "name": "twice", "expression": "clicks * 2"}
        ],
        "aggregations": [
            {"type": "longSum", "name": "a", "fieldName": "doubled"},
            {"type": "doubleSum", "name": "b", "expression": "price * 2"},
            {"type": "longMax", "name": "c", "expression": "timestamp_extract(__time, 'HOUR')"}
        ]
    }));
    assert_eq!(r[0]["result"], json!({"a": 98, "b": 28.0, "c": 5}));
    // A scan reads virtual columns by name.
    let r = run(json!({
        "queryType": "scan", "dataSource": "events", "intervals": [INTERVALS], "limit": 2,
        "virtualColumns": [{"type": "expression", "name": "v", "expression": "concat(country, '-', device)"}],
        "columns": ["v", "clicks"]
    }));
    let events: Vec<Json> = r[0]["events"].as_array().unwrap().to_vec();
    assert_eq!(events[0]["v"], json!("US-phone"));
    assert_eq!(events[1]["v"], json!("US-desktop"));
}

#[test]
fn expression_post_aggregators() {
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}, {"type": "count", "name": "n"}],
        "postAggregations": [
            {"type": "expression", "name": "per_row", "expression": "clicks / n"},
            {"type": "expression", "name": "exact", "expression": "clicks * 1.0 / n"},
            {"type": "expression", "name": "label", "expression": "if(clicks > 30, 'many', 'few')"},
            {"type": "expression", "name": "as_double", "expression": "n", "outputType": "DOUBLE"}
        ]
    }));
    assert_eq!(
        r[0]["result"],
        json!({"clicks": 40, "n": 8, "per_row": 5, "exact": 5.0, "label": "many", "as_double": 8.0})
    );
}

#[test]
fn filters_interval_search_comparison_and_expression() {
    // interval on __time and on a long column (its values read as milliseconds).
    assert_eq!(
        count_where(json!({"type": "interval", "dimension": "__time",
            "intervals": ["2024-01-01T02:00:00Z/2024-01-01T04:00:00Z"]})),
        json!(3)
    );
    assert_eq!(
        count_where(json!({"type": "interval", "dimension": "user",
            "intervals": ["1970-01-01T00:00:00.002Z/1970-01-01T00:00:00.004Z"]})),
        json!(3)
    );
    // search: contains (case-insensitive by default), fragment, insensitive_contains.
    assert_eq!(
        count_where(json!({"type": "search", "dimension": "country",
            "query": {"type": "contains", "value": "s"}})),
        json!(4)
    );
    assert_eq!(
        count_where(json!({"type": "search", "dimension": "country",
            "query": {"type": "contains", "value": "s", "caseSensitive": true}})),
        json!(0)
    );
    assert_eq!(
        count_where(json!({"type": "search", "dimension": "country",
            "query": {"type": "fragment", "values": ["e", "d"]}})),
        json!(1)
    );
    assert_eq!(
        count_where(json!({"type": "search", "dimension": "country",
            "query": {"type": "insensitive_contains", "value": "R"}})),
        json!(2)
    );
    // expression: three-valued, so rows with a null price are in neither half.
    assert_eq!(
        count_where(json!({"type": "expression", "expression": "price > 2"})),
        json!(3)
    );
    assert_eq!(
        count_where(
            json!({"type": "not", "field": {"type": "expression", "expression": "price > 2"}})
        ),
        json!(3)
    );
    // columnComparison, here against a virtual column.
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "virtualColumns": [{"type": "expression", "name": "guess", "expression": "if(user == 1, 'US', 'FR')"}],
        "filter": {"type": "columnComparison", "dimensions": ["country", {"type": "default", "dimension": "guess"}]},
        "aggregations": [{"type": "count", "name": "n"}]
    }));
    assert_eq!(r[0]["result"]["n"], json!(3));
    // A filtered aggregator's expression filter is lowered too.
    let r = run(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "aggregations": [{"type": "filtered", "name": "phones",
            "filter": {"type": "expression", "expression": "device == 'phone'"},
            "aggregator": {"type": "count", "name": "phones"}}]
    }));
    assert_eq!(r[0]["result"]["phones"], json!(5));
}

#[test]
fn extraction_functions_on_filters_dimensions_and_havings() {
    assert_eq!(
        count_where(
            json!({"type": "selector", "dimension": "country", "value": "us",
            "extractionFn": {"type": "lower"}})
        ),
        json!(4)
    );
    assert_eq!(
        count_where(
            json!({"type": "in", "dimension": "country", "values": ["2"],
            "extractionFn": {"type": "strlen"}})
        ),
        json!(7)
    );
    assert_eq!(
        count_where(
            json!({"type": "bound", "dimension": "__time", "lower": "03", "upper": "05",
            "extractionFn": {"type": "timeFormat", "format": "HH"}})
        ),
        json!(4)
    );
    // A null extracted value is matched by a null selector.
    assert_eq!(
        count_where(
            json!({"type": "selector", "dimension": "country", "value": null,
            "extractionFn": {"type": "partial", "expr": "^U"}})
        ),
        json!(4)
    );
    // Extraction dimension specs: per day of __time, and the first letter of a country.
    let r = run(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "dimensions": [{"type": "extraction", "dimension": "__time", "outputName": "day",
            "extractionFn": {"type": "timeFormat", "format": "yyyy-MM-dd", "timeZone": "UTC"}}],
        "aggregations": [{"type": "count", "name": "n"}]
    }));
    assert_eq!(
        pairs(&r, "day", "n"),
        vec![
            (json!("2024-01-01"), json!(5)),
            (json!("2024-01-02"), json!(3))
        ]
    );
    let r = run(json!({
        "queryType": "topN", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "dimension": {"type": "extraction", "dimension": "country", "outputName": "initial",
            "extractionFn": {"type": "cascade", "extractionFns": [
                {"type": "substring", "index": 0, "length": 1}, {"type": "lower"}]}},
        "metric": "clicks", "threshold": 2,
        "aggregations": [{"type": "longSum", "name": "clicks", "fieldName": "clicks"}]
    }));
    assert_eq!(
        r[0]["result"],
        json!([{"initial": "u", "clicks": 22}, {"initial": "f", "clicks": 9}])
    );
    let r = run(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "dimensions": ["country"], "aggregations": [{"type": "count", "name": "n"}],
        "having": {"type": "dimSelector", "dimension": "country", "value": "fr",
            "extractionFn": {"type": "lower"}}
    }));
    assert_eq!(pairs(&r, "country", "n"), vec![(json!("FR"), json!(2))]);
}

#[test]
fn bad_expressions_are_errors_naming_them() {
    let base = |vc: Json| {
        json!({"queryType": "timeseries", "dataSource": "events", "intervals": [INTERVALS],
            "virtualColumns": vc, "aggregations": [{"type": "count", "name": "n"}]})
    };
    let e = run_err(base(
        json!([{"type": "expression", "name": "v", "expression": "nope(x)"}]),
    ));
    assert_eq!(e.kind, ErrorKind::BadQuery);
    assert!(e.message.contains("'nope'"), "{e}");
    let e = run_err(base(json!([
        {"type": "expression", "name": "a", "expression": "b + 1"},
        {"type": "expression", "name": "b", "expression": "a + 1"}
    ])));
    assert!(e.message.contains("cycle"), "{e}");
    let e = run_err(base(
        json!([{"type": "nested-field", "name": "v", "columnName": "x"}]),
    ));
    assert!(e.message.contains("nested-field"), "{e}");
    // Evaluated at run time: a multi-value column read together with another column.
    let e = run_err(json!({
        "queryType": "groupBy", "dataSource": "events", "intervals": [INTERVALS], "granularity": "all",
        "virtualColumns": [{"type": "expression", "name": "v", "expression": "concat(tags, country)"}],
        "dimensions": ["v"], "aggregations": [{"type": "count", "name": "n"}]
    }));
    assert_eq!(e.http_status(), 400, "{e}");
    assert!(e.message.contains("multi-value column 'tags'"), "{e}");
    let e = run_err(json!({
        "queryType": "timeseries", "dataSource": "events", "intervals": [INTERVALS],
        "filter": {"type": "expression", "expression": "price >"},
        "aggregations": [{"type": "count", "name": "n"}]
    }));
    assert!(e.message.contains("price >"), "{e}");
}
