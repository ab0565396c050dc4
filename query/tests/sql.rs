//! SQL layer tests: golden planning (SQL in → native JSON out), shaping of hand-written native
//! results, system tables over an in-test catalog, errors, and the planning time of a
//! 10,000-value IN list.

use grove_query::sql::{
    Catalog, ColumnInfo, NativeKind, NativePlan, Plan, SegmentInfo, Source, SqlParameter,
    SqlRequest, SqlType, TableInfo, plan,
};
use grove_query::{ErrorKind, QueryError};
use serde_json::Value;

pub const ETERNITY: &str = "-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z";

pub struct TestCatalog;

fn column(name: &str, sql_type: SqlType) -> ColumnInfo {
    ColumnInfo {
        name: name.to_string(),
        sql_type,
    }
}

impl Catalog for TestCatalog {
    fn tables(&self) -> Vec<TableInfo> {
        vec![
            TableInfo {
                name: "events".into(),
                columns: vec![
                    column("__time", SqlType::Timestamp),
                    column("kind", SqlType::Varchar),
                ],
            },
            TableInfo {
                name: "wiki".into(),
                columns: vec![
                    column("__time", SqlType::Timestamp),
                    column("channel", SqlType::Varchar),
                    column("page", SqlType::Varchar),
                    column("user_id", SqlType::Bigint),
                    column("added", SqlType::Bigint),
                    column("delta", SqlType::Double),
                    column("user_sketch", SqlType::Other("COMPLEX<HLLSketch>".into())),
                ],
            },
        ]
    }

    fn segments(&self) -> Vec<SegmentInfo> {
        let segment = |datasource: &str, day: u32, partition_num: i64, num_rows: i64| {
            let start = format!("2024-01-{day:02}T00:00:00.000Z");
            let end = format!("2024-01-{:02}T00:00:00.000Z", day + 1);
            let version = "2024-02-01T00:00:00.000Z".to_string();
            SegmentInfo {
                segment_id: format!("{datasource}_{start}_{end}_{version}_{partition_num}"),
                datasource: datasource.to_string(),
                start,
                end,
                version,
                partition_num,
                num_rows,
                size: num_rows * 100,
                is_published: true,
                is_available: datasource == "wiki",
            }
        };
        vec![
            segment("wiki", 1, 0, 10),
            segment("wiki", 1, 1, 20),
            segment("wiki", 2, 0, 30),
            segment("events", 1, 0, 5),
        ]
    }
}

pub fn request(sql: &str) -> SqlRequest {
    SqlRequest {
        query: sql.to_string(),
        ..SqlRequest::default()
    }
}

pub fn request_with(sql: &str, parameters: &[(&str, Value)]) -> SqlRequest {
    SqlRequest {
        query: sql.to_string(),
        parameters: parameters
            .iter()
            .map(|(sql_type, value)| SqlParameter {
                sql_type: sql_type.to_string(),
                value: value.clone(),
            })
            .collect(),
        ..SqlRequest::default()
    }
}

pub fn native_plan(sql: &str) -> NativePlan {
    match plan(&request(sql), &TestCatalog) {
        Ok(Plan::Native(plan)) => plan,
        Ok(other) => panic!("{sql}: not a native plan: {other:?}"),
        Err(e) => panic!("{sql}: {e}"),
    }
}

/// The native query `sql` plans into.
pub fn native(sql: &str) -> Value {
    native_plan(sql).query
}

pub fn plan_error(sql: &str) -> QueryError {
    match plan(&request(sql), &TestCatalog) {
        Ok(plan) => panic!("{sql}: planned, expected an error: {plan:?}"),
        Err(e) => e,
    }
}

/// Asserts `sql` fails to plan with `kind` and a message containing `message`.
pub fn assert_error(sql: &str, kind: ErrorKind, message: &str) {
    let error = plan_error(sql);
    assert_eq!(error.kind, kind, "{sql}: {error}");
    assert!(
        error.message.contains(message),
        "{sql}: message {:?} does not contain {message:?}",
        error.message
    );
}

mod planning {
    use super::*;
    use serde_json::json;

    #[test]
    fn count_star_is_an_all_granularity_timeseries() {
        assert_eq!(
            native("SELECT COUNT(*) FROM wiki"),
            json!({
                "queryType": "timeseries",
                "dataSource": "wiki",
                "intervals": [ETERNITY],
                "granularity": "all",
                "aggregations": [{"type": "count", "name": "a0"}],
            })
        );
        let plan = native_plan("SELECT COUNT(*) FROM wiki");
        assert_eq!(plan.columns[0].name, "EXPR$0");
        assert_eq!(plan.columns[0].sql_type, SqlType::Bigint);
    }

    #[test]
    fn group_by_one_dimension_ordered_by_an_aggregate_with_a_limit_is_a_top_n() {
        let sql =
            "SELECT channel, COUNT(*) AS cnt FROM wiki GROUP BY channel ORDER BY cnt DESC LIMIT 10";
        assert_eq!(
            native(sql),
            json!({
                "queryType": "topN",
                "dataSource": "wiki",
                "intervals": [ETERNITY],
                "granularity": "all",
                "dimension": {"type": "default", "dimension": "channel", "outputName": "d0", "outputType": "STRING"},
                "metric": {"type": "numeric", "metric": "a0"},
                "threshold": 10,
                "aggregations": [{"type": "count", "name": "a0"}],
            })
        );
        let plan = native_plan(sql);
        assert_eq!(plan.kind, NativeKind::TopN);
        assert_eq!(
            plan.sources,
            vec![Source::Field("d0".into()), Source::Field("a0".into())]
        );
    }

    #[test]
    fn ascending_top_n_inverts_the_metric_and_ordinals_resolve() {
        let query =
            native("SELECT channel, SUM(added) FROM wiki GROUP BY channel ORDER BY 2 ASC LIMIT 5");
        assert_eq!(query["queryType"], "topN");
        assert_eq!(
            query["metric"],
            json!({"type": "inverted", "metric": {"type": "numeric", "metric": "a0"}})
        );
        assert_eq!(
            query["aggregations"],
            json!([{"type": "longSum", "name": "a0", "fieldName": "added"}])
        );
        assert_eq!(query["threshold"], 5);
    }

    #[test]
    fn top_n_needs_a_limit_an_aggregate_order_and_no_offset() {
        for sql in [
            "SELECT channel, COUNT(*) FROM wiki GROUP BY channel ORDER BY 2 DESC",
            "SELECT channel, COUNT(*) FROM wiki GROUP BY channel ORDER BY channel LIMIT 3",
            "SELECT channel, COUNT(*) FROM wiki GROUP BY channel ORDER BY 2 DESC LIMIT 3 OFFSET 1",
            "SELECT user_id, COUNT(*) FROM wiki GROUP BY user_id ORDER BY 2 DESC LIMIT 3",
            "SELECT channel, COUNT(*) FROM wiki GROUP BY channel HAVING COUNT(*) > 1 ORDER BY 2 DESC LIMIT 3",
        ] {
            assert_eq!(native(sql)["queryType"], "groupBy", "{sql}");
        }
    }

    #[test]
    fn time_floor_grouping_is_a_timeseries_with_that_granularity() {
        let sql = "SELECT TIME_FLOOR(__time, 'PT1H') AS t, COUNT(*) FROM wiki GROUP BY 1 ORDER BY t DESC LIMIT 3";
        assert_eq!(
            native(sql),
            json!({
                "queryType": "timeseries",
                "dataSource": "wiki",
                "intervals": [ETERNITY],
                "granularity": {"type": "period", "period": "PT1H"},
                "descending": true,
                "limit": 3,
                "aggregations": [{"type": "count", "name": "a0"}],
                "context": {"skipEmptyBuckets": true},
            })
        );
        let plan = native_plan(sql);
        assert_eq!(plan.columns[0].name, "t");
        assert_eq!(plan.columns[0].sql_type, SqlType::Timestamp);
        assert_eq!(plan.sources[0], Source::Timestamp);
    }

    #[test]
    fn floor_to_unit_and_time_ranges_narrow_the_intervals() {
        let sql = "SELECT FLOOR(__time TO DAY), SUM(delta) FROM wiki \
                   WHERE __time >= TIMESTAMP '2024-01-01 00:00:00' AND __time < TIMESTAMP '2024-01-08 00:00:00' \
                   GROUP BY FLOOR(__time TO DAY)";
        assert_eq!(
            native(sql),
            json!({
                "queryType": "timeseries",
                "dataSource": "wiki",
                "intervals": ["2024-01-01T00:00:00.000Z/2024-01-08T00:00:00.000Z"],
                "granularity": {"type": "period", "period": "P1D"},
                "aggregations": [{"type": "doubleSum", "name": "a0", "fieldName": "delta"}],
                "context": {"skipEmptyBuckets": true},
            })
        );
        assert_eq!(native_plan(sql).columns[1].sql_type, SqlType::Double);
    }

    #[test]
    fn time_conditions_become_intervals_only_in_a_conjunction() {
        let intervals = |sql: &str| native(sql)["intervals"].clone();
        assert_eq!(
            intervals(
                "SELECT COUNT(*) FROM wiki WHERE __time BETWEEN TIMESTAMP '2024-01-01 00:00:00' AND TIMESTAMP '2024-01-01 23:59:59.999'"
            ),
            json!(["2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"])
        );
        assert_eq!(
            intervals(
                "SELECT COUNT(*) FROM wiki WHERE __time > TIMESTAMP '2024-01-01 00:00:00' AND channel = 'x'"
            ),
            json!(["2024-01-01T00:00:00.001Z/146140482-04-24T15:36:27.903Z"])
        );
        assert_eq!(
            intervals(
                "SELECT COUNT(*) FROM wiki WHERE TIMESTAMP '2024-01-02 00:00:00' >= __time AND __time >= '2024-01-01'"
            ),
            json!(["2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.001Z"])
        );
        assert_eq!(
            intervals(
                "SELECT COUNT(*) FROM wiki WHERE __time < TIMESTAMP '2024-01-01 00:00:00' AND __time >= TIMESTAMP '2024-02-01 00:00:00'"
            ),
            json!([])
        );
        let query = native(
            "SELECT COUNT(*) FROM wiki WHERE __time >= TIMESTAMP '2024-01-01 00:00:00' OR channel = 'x'",
        );
        assert_eq!(query["intervals"], json!([ETERNITY]));
        assert_eq!(
            query["filter"],
            json!({"type": "or", "fields": [
                {"type": "range", "column": "__time", "matchValueType": "LONG", "lower": 1704067200000i64, "lowerOpen": false},
                {"type": "equals", "column": "channel", "matchValueType": "STRING", "matchValue": "x"},
            ]})
        );
    }

    #[test]
    fn time_literals_casts_time_parse_intervals_and_current_timestamp() {
        let intervals = |sql: &str| native(sql)["intervals"].clone();
        assert_eq!(
            intervals(
                "SELECT COUNT(*) FROM wiki WHERE __time >= CAST('2024-01-01T00:00:00' AS TIMESTAMP) \
                 AND __time < TIME_PARSE('2024-01-02T00:00:00Z')"
            ),
            json!(["2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"])
        );
        assert_eq!(
            intervals(
                "SELECT COUNT(*) FROM wiki WHERE __time >= TIMESTAMP '2024-03-01 00:00:00' - INTERVAL '1' MONTH \
                 AND __time < DATE '2024-03-01' + INTERVAL '2' HOUR"
            ),
            json!(["2024-02-01T00:00:00.000Z/2024-03-01T02:00:00.000Z"])
        );
        let mut request = request(
            "SELECT COUNT(*) FROM wiki WHERE __time >= CURRENT_TIMESTAMP - INTERVAL '1' DAY",
        );
        request
            .context
            .insert("sqlCurrentTimestamp".into(), json!("2024-01-10T12:00:00Z"));
        let Plan::Native(plan) = plan(&request, &TestCatalog).unwrap() else {
            panic!("native");
        };
        assert_eq!(
            plan.query["intervals"],
            json!(["2024-01-09T12:00:00.000Z/146140482-04-24T15:36:27.903Z"])
        );
        assert_eq!(plan.query.get("context"), None);
        assert_error(
            "SELECT COUNT(*) FROM wiki WHERE __time >= CURRENT_TIMESTAMP - INTERVAL '1' DAY",
            ErrorKind::BadQuery,
            "sqlCurrentTimestamp",
        );
        assert_error(
            "SELECT COUNT(*) FROM wiki WHERE __time >= TIMESTAMP '2024-01-01 00:00:00' - INTERVAL '1-2' YEAR TO MONTH",
            ErrorKind::Unsupported,
            "INTERVAL",
        );
    }

    #[test]
    fn plain_time_grouping_uses_granularity_none() {
        let query = native("SELECT __time, COUNT(*) FROM wiki GROUP BY __time");
        assert_eq!(query["queryType"], "timeseries");
        assert_eq!(query["granularity"], "none");
    }

    #[test]
    fn group_by_with_having_order_limit_offset_and_avg() {
        let sql = "SELECT channel, page, COUNT(*), AVG(added) FROM wiki WHERE channel IN ('#en', '#fr') \
                   GROUP BY channel, page HAVING COUNT(*) > 10 AND AVG(added) >= 2.5 \
                   ORDER BY channel, 3 DESC LIMIT 20 OFFSET 5";
        assert_eq!(
            native(sql),
            json!({
                "queryType": "groupBy",
                "dataSource": "wiki",
                "intervals": [ETERNITY],
                "granularity": "all",
                "filter": {"type": "in", "dimension": "channel", "values": ["#en", "#fr"]},
                "dimensions": [
                    {"type": "default", "dimension": "channel", "outputName": "d0", "outputType": "STRING"},
                    {"type": "default", "dimension": "page", "outputName": "d1", "outputType": "STRING"},
                ],
                "aggregations": [
                    {"type": "count", "name": "a0"},
                    {"type": "longSum", "name": "a1:sum", "fieldName": "added"},
                    {"type": "filtered", "filter": {"type": "not", "field": {"type": "null", "column": "added"}},
                     "aggregator": {"type": "count", "name": "a1:count"}},
                ],
                "postAggregations": [
                    {"type": "arithmetic", "name": "a1", "fn": "quotient", "fields": [
                        {"type": "fieldAccess", "fieldName": "a1:sum"},
                        {"type": "fieldAccess", "fieldName": "a1:count"},
                    ]},
                ],
                "having": {"type": "filter", "filter": {"type": "and", "fields": [
                    {"type": "range", "column": "a0", "matchValueType": "LONG", "lower": 10, "lowerOpen": true},
                    {"type": "range", "column": "a1", "matchValueType": "DOUBLE", "lower": 2.5, "lowerOpen": false},
                ]}},
                "limitSpec": {"type": "default", "columns": [
                    {"dimension": "d0", "direction": "ascending", "dimensionOrder": "lexicographic"},
                    {"dimension": "a0", "direction": "descending", "dimensionOrder": "numeric"},
                ], "limit": 20, "offset": 5},
            })
        );
        let plan = native_plan(sql);
        let names: Vec<&str> = plan.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["channel", "page", "EXPR$2", "EXPR$3"]);
        assert_eq!(plan.columns[3].sql_type, SqlType::Double);
    }

    #[test]
    fn having_on_an_aggregate_not_selected_and_on_an_alias() {
        let query = native(
            "SELECT channel AS c, SUM(added) AS total FROM wiki GROUP BY channel \
             HAVING total > 100 AND MAX(delta) < 1.5 AND c <> 'x'",
        );
        assert_eq!(
            query["having"],
            json!({"type": "filter", "filter": {"type": "and", "fields": [
                {"type": "range", "column": "a0", "matchValueType": "LONG", "lower": 100, "lowerOpen": true},
                {"type": "range", "column": "a1", "matchValueType": "DOUBLE", "upper": 1.5, "upperOpen": true},
                {"type": "not", "field": {"type": "equals", "column": "d0", "matchValueType": "STRING", "matchValue": "x"}},
            ]}})
        );
        assert_eq!(
            query["aggregations"],
            json!([
                {"type": "longSum", "name": "a0", "fieldName": "added"},
                {"type": "doubleMax", "name": "a1", "fieldName": "delta"},
            ])
        );
    }

    #[test]
    fn time_floor_with_dimensions_goes_into_the_group_by_granularity() {
        let sql = "SELECT TIME_FLOOR(__time, 'PT1H'), channel, COUNT(*) FROM wiki GROUP BY 1, 2 \
                   ORDER BY 1, 3 DESC LIMIT 7";
        assert_eq!(
            native(sql),
            json!({
                "queryType": "groupBy",
                "dataSource": "wiki",
                "intervals": [ETERNITY],
                "granularity": {"type": "period", "period": "PT1H"},
                "dimensions": [{"type": "default", "dimension": "channel", "outputName": "d0", "outputType": "STRING"}],
                "aggregations": [{"type": "count", "name": "a0"}],
                "limitSpec": {"type": "default", "columns": [
                    {"dimension": "a0", "direction": "descending", "dimensionOrder": "numeric"},
                ], "limit": 7},
            })
        );
        assert_eq!(
            native_plan(sql).sources,
            vec![
                Source::Timestamp,
                Source::Field("d0".into()),
                Source::Field("a0".into())
            ]
        );
    }

    #[test]
    fn numeric_dimensions_keep_their_type() {
        let query = native(
            "SELECT user_id, delta, COUNT(*) FROM wiki GROUP BY user_id, delta ORDER BY user_id",
        );
        assert_eq!(
            query["dimensions"],
            json!([
                {"type": "default", "dimension": "user_id", "outputName": "d0", "outputType": "LONG"},
                {"type": "default", "dimension": "delta", "outputName": "d1", "outputType": "DOUBLE"},
            ])
        );
        assert_eq!(
            query["limitSpec"]["columns"],
            json!([{"dimension": "d0", "direction": "ascending", "dimensionOrder": "numeric"}])
        );
    }

    #[test]
    fn sketches_counts_min_max() {
        let sql = "SELECT COUNT(DISTINCT page), APPROX_COUNT_DISTINCT(user_sketch), COUNT(page), MIN(added), MAX(delta) FROM wiki";
        assert_eq!(
            native(sql)["aggregations"],
            json!([
                {"type": "cardinality", "name": "a0", "fields": ["page"], "round": true},
                {"type": "HLLSketchMerge", "name": "a1", "fieldName": "user_sketch", "round": true},
                {"type": "filtered", "filter": {"type": "not", "field": {"type": "null", "column": "page"}},
                 "aggregator": {"type": "count", "name": "a2"}},
                {"type": "longMin", "name": "a3", "fieldName": "added"},
                {"type": "doubleMax", "name": "a4", "fieldName": "delta"},
            ])
        );
        let types: Vec<SqlType> = native_plan(sql)
            .columns
            .into_iter()
            .map(|c| c.sql_type)
            .collect();
        assert_eq!(
            types,
            [
                SqlType::Bigint,
                SqlType::Bigint,
                SqlType::Bigint,
                SqlType::Bigint,
                SqlType::Double
            ]
        );
    }

    #[test]
    fn the_same_aggregate_twice_is_computed_once() {
        let query = native("SELECT SUM(added), SUM(added) + 1, SUM(delta) FROM wiki");
        assert_eq!(query["aggregations"].as_array().unwrap().len(), 2);
    }

    #[test]
    fn arithmetic_over_aggregates_is_a_post_aggregator() {
        // BIGINT / BIGINT divides as longs, as in Druid SQL.
        let sql = "SELECT SUM(added) / COUNT(*) AS ratio, SUM(added) * 2 FROM wiki";
        assert_eq!(
            native(sql)["postAggregations"],
            json!([
                {"type": "expression", "name": "p0", "expression": "(\"a0\" / \"a1\")"},
                {"type": "arithmetic", "name": "p1", "fn": "*", "fields": [
                    {"type": "fieldAccess", "fieldName": "a0"},
                    {"type": "constant", "name": "", "value": 2},
                ]},
            ])
        );
        let plan = native_plan(sql);
        assert_eq!(plan.columns[0].name, "ratio");
        assert_eq!(
            plan.sources,
            vec![Source::Field("p0".into()), Source::Field("p1".into())]
        );
    }

    #[test]
    fn expressions_become_virtual_columns_and_expression_post_aggregators() {
        let query = native(
            "SELECT UPPER(channel) AS c, CASE WHEN added > 10 THEN 'big' ELSE 'small' END AS size, \
             SUM(added * 2), COALESCE(MAX(delta), 0) FROM wiki \
             WHERE CHAR_LENGTH(page) > 3 AND channel <> page GROUP BY 1, 2",
        );
        assert_eq!(
            query["virtualColumns"],
            json!([
                {"type": "expression", "name": "v0", "expression": "(\"added\" * 2)", "outputType": "LONG"},
                {"type": "expression", "name": "v1", "expression": "strlen(\"page\")", "outputType": "LONG"},
                {"type": "expression", "name": "v2", "expression": "upper(\"channel\")", "outputType": "STRING"},
                {"type": "expression", "name": "v3",
                 "expression": "case_searched((\"added\" > 10), 'big', 'small')", "outputType": "STRING"},
            ])
        );
        assert_eq!(query["dimensions"][0]["dimension"], json!("v2"));
        assert_eq!(query["dimensions"][1]["dimension"], json!("v3"));
        assert_eq!(query["aggregations"][0]["fieldName"], json!("v0"));
        assert_eq!(
            query["postAggregations"],
            json!([{"type": "expression", "name": "p0", "expression": "coalesce(\"a1\", 0)"}])
        );
        assert_eq!(
            query["filter"]["fields"][1],
            json!({"type": "expression", "expression": "(\"channel\" != \"page\")"})
        );
        assert_eq!(query["filter"]["fields"][0]["column"], json!("v1"));
        let query = native(
            "SELECT TIME_FORMAT(__time, 'yyyy-MM', 'Asia/Tokyo') AS m, EARLIEST(page), LATEST(added), \
             ANY_VALUE(delta), EXTRACT(HOUR FROM __time) AS h FROM wiki GROUP BY 1, 5",
        );
        assert_eq!(
            query["virtualColumns"][0]["expression"],
            json!("timestamp_format(\"__time\", 'yyyy-MM', 'Asia/Tokyo')")
        );
        assert_eq!(
            query["virtualColumns"][1]["expression"],
            json!("timestamp_extract(\"__time\", 'HOUR')")
        );
        let kinds: Vec<&str> = query["aggregations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["type"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, vec!["stringFirst", "longLast", "doubleAny"]);
        // A time floor in a time zone is an expression grouped as a LONG timestamp.
        let plan = native_plan(
            "SELECT TIME_FLOOR(__time, 'P1D', NULL, 'America/New_York'), COUNT(*) FROM wiki GROUP BY 1",
        );
        assert_eq!(plan.query["dimensions"][0]["outputType"], json!("LONG"));
        assert_eq!(plan.columns[0].sql_type, SqlType::Timestamp);
        // TIME_IN_INTERVAL and expressions in the select list of a scan.
        let query = native(
            "SELECT page, added / 2 FROM wiki WHERE TIME_IN_INTERVAL(__time, '2024-01-01/2024-01-02')",
        );
        assert_eq!(query["queryType"], json!("scan"));
        assert_eq!(query["columns"], json!(["page", "v0"]));
        assert_eq!(
            query["virtualColumns"][0]["expression"],
            json!("(\"added\" / 2)")
        );
        assert_eq!(query["filter"]["type"], json!("expression"));
    }

    #[test]
    fn exact_top_n_when_asked() {
        let sql = "SELECT channel, SUM(added) FROM wiki GROUP BY channel ORDER BY 2 DESC LIMIT 3";
        assert_eq!(native(sql)["queryType"], json!("topN"));
        let mut request = request(sql);
        request
            .context
            .insert("useApproximateTopN".into(), json!(false));
        let Plan::Native(plan) = plan(&request, &TestCatalog).unwrap() else {
            panic!("a native plan");
        };
        assert_eq!(plan.query["queryType"], json!("groupBy"));
        assert_eq!(plan.query["context"]["useApproximateTopN"], json!(false));
        assert_eq!(plan.query["limitSpec"]["limit"], json!(3));
    }

    #[test]
    fn filtered_aggregates() {
        assert_eq!(
            native(
                "SELECT COUNT(*) FILTER (WHERE channel = '#en'), COUNT(page) FILTER (WHERE added > 1) FROM wiki"
            )["aggregations"],
            json!([
                {"type": "filtered",
                 "filter": {"type": "equals", "column": "channel", "matchValueType": "STRING", "matchValue": "#en"},
                 "aggregator": {"type": "count", "name": "a0"}},
                {"type": "filtered",
                 "filter": {"type": "and", "fields": [
                     {"type": "range", "column": "added", "matchValueType": "LONG", "lower": 1, "lowerOpen": true},
                     {"type": "not", "field": {"type": "null", "column": "page"}},
                 ]},
                 "aggregator": {"type": "count", "name": "a1"}},
            ])
        );
    }

    #[test]
    fn select_star_is_a_scan_with_filters() {
        let sql = "SELECT * FROM wiki WHERE page LIKE 'A%' AND user_id <> 3 AND delta BETWEEN 1 AND 2.5 LIMIT 10";
        assert_eq!(
            native(sql),
            json!({
                "queryType": "scan",
                "dataSource": "wiki",
                "intervals": [ETERNITY],
                "resultFormat": "list",
                "columns": ["__time", "channel", "page", "user_id", "added", "delta", "user_sketch"],
                "filter": {"type": "and", "fields": [
                    {"type": "like", "dimension": "page", "pattern": "A%"},
                    {"type": "not", "field": {"type": "equals", "column": "user_id", "matchValueType": "LONG", "matchValue": 3}},
                    {"type": "range", "column": "delta", "matchValueType": "DOUBLE",
                     "lower": 1.0, "lowerOpen": false, "upper": 2.5, "upperOpen": false},
                ]},
                "limit": 10,
            })
        );
        assert_eq!(native_plan(sql).columns.len(), 7);
    }

    #[test]
    fn scan_with_aliases_time_order_and_offset() {
        let sql = "SELECT __time, page AS p FROM druid.wiki WHERE page IS NULL OR NOT (channel IS NOT NULL) \
                   ORDER BY __time DESC LIMIT 5 OFFSET 2";
        assert_eq!(
            native(sql),
            json!({
                "queryType": "scan",
                "dataSource": "wiki",
                "intervals": [ETERNITY],
                "resultFormat": "list",
                "columns": ["__time", "page"],
                "filter": {"type": "or", "fields": [
                    {"type": "null", "column": "page"},
                    {"type": "not", "field": {"type": "not", "field": {"type": "null", "column": "channel"}}},
                ]},
                "order": "descending",
                "limit": 5,
                "offset": 2,
            })
        );
        let plan = native_plan(sql);
        assert_eq!(plan.columns[1].name, "p");
        assert_eq!(plan.sources[1], Source::Field("page".into()));
    }

    #[test]
    fn comparisons_follow_the_column_type() {
        let filter = |condition: &str| {
            native(&format!("SELECT page FROM wiki WHERE {condition}"))["filter"].clone()
        };
        assert_eq!(
            filter("channel >= 'b'"),
            json!({"type": "range", "column": "channel", "matchValueType": "STRING", "lower": "b", "lowerOpen": false})
        );
        assert_eq!(
            filter("'b' > channel"),
            json!({"type": "range", "column": "channel", "matchValueType": "STRING", "upper": "b", "upperOpen": true})
        );
        assert_eq!(
            filter("added = 7"),
            json!({"type": "equals", "column": "added", "matchValueType": "LONG", "matchValue": 7})
        );
        assert_eq!(
            filter("added = -7.5"),
            json!({"type": "equals", "column": "added", "matchValueType": "DOUBLE", "matchValue": -7.5})
        );
        assert_eq!(
            filter("delta <= 2"),
            json!({"type": "range", "column": "delta", "matchValueType": "DOUBLE", "upper": 2.0, "upperOpen": false})
        );
        assert_eq!(
            filter("user_id = '42'"),
            json!({"type": "equals", "column": "user_id", "matchValueType": "LONG", "matchValue": 42})
        );
        assert_eq!(
            filter("added NOT BETWEEN 1 AND 3"),
            json!({"type": "not", "field": {"type": "range", "column": "added", "matchValueType": "LONG",
                   "lower": 1, "lowerOpen": false, "upper": 3, "upperOpen": false}})
        );
        assert_eq!(
            filter("page NOT LIKE 'a!%%' ESCAPE '!'"),
            json!({"type": "not", "field": {"type": "like", "dimension": "page", "pattern": "a!%%", "escape": "!"}})
        );
        assert_eq!(
            filter("page NOT IN ('a', 'b')"),
            json!({"type": "not", "field": {"type": "in", "dimension": "page", "values": ["a", "b"]}})
        );
        assert_eq!(
            filter("user_id IN (1, 2)"),
            json!({"type": "in", "dimension": "user_id", "values": ["1", "2"]})
        );
        assert_eq!(
            filter("(channel = 'a' OR channel = 'b' OR (page = 'c')) AND NOT added > 1"),
            json!({"type": "and", "fields": [
                {"type": "or", "fields": [
                    {"type": "equals", "column": "channel", "matchValueType": "STRING", "matchValue": "a"},
                    {"type": "equals", "column": "channel", "matchValueType": "STRING", "matchValue": "b"},
                    {"type": "equals", "column": "page", "matchValueType": "STRING", "matchValue": "c"},
                ]},
                {"type": "not", "field": {"type": "range", "column": "added", "matchValueType": "LONG", "lower": 1, "lowerOpen": true}},
            ]})
        );
    }

    #[test]
    fn scan_ordered_by_time_selects_time() {
        let query = native("SELECT page FROM wiki ORDER BY __time LIMIT 3");
        assert_eq!(query["columns"], json!(["page", "__time"]));
        assert_eq!(query["order"], "ascending");
        assert_eq!(
            native_plan("SELECT page FROM wiki ORDER BY __time")
                .columns
                .len(),
            1
        );
    }

    #[test]
    fn in_lists_of_every_kind() {
        let filter = |condition: &str| {
            native(&format!("SELECT page FROM wiki WHERE {condition}"))["filter"].clone()
        };
        // Lifted out of the text before parsing (literals, NULL, negative numbers).
        assert_eq!(
            filter("page IN ('a', NULL, 'it''s', -1, 2.5)"),
            json!({"type": "in", "dimension": "page", "values": ["a", null, "it's", "-1", "2.5"]})
        );
        // Parsed as expressions (a typed literal is not lifted): the same filter shape.
        assert_eq!(
            filter("__time IN (TIMESTAMP '2024-01-01 00:00:00', '2024-01-02')"),
            json!({"type": "in", "dimension": "__time", "values": ["1704067200000", "1704153600000"]})
        );
        assert_eq!(
            filter("__time NOT IN (1704067200000)"),
            json!({"type": "not", "field": {"type": "in", "dimension": "__time", "values": ["1704067200000"]}})
        );
    }

    #[test]
    fn long_arithmetic_chains_are_refused_not_overflowed() {
        let chain = vec!["SUM(added)"; 500].join(" + ");
        assert_error(
            &format!("SELECT {chain} FROM wiki"),
            ErrorKind::Unsupported,
            "nested more than",
        );
        let query = native("SELECT (SUM(added) + 1) * 2 - COUNT(*) FROM wiki");
        assert_eq!(query["postAggregations"][0]["fn"], "-");
    }

    #[test]
    fn quoted_and_qualified_names() {
        let query = native(
            r#"SELECT "page" FROM "druid"."wiki" w WHERE w."channel" = 'x' AND wiki.added > 1"#,
        );
        assert_eq!(query["columns"], json!(["page"]));
        assert_eq!(query["filter"]["fields"][0]["column"], "channel");
        assert_eq!(query["filter"]["fields"][1]["column"], "added");
    }

    #[test]
    fn min_and_max_of_time_are_a_time_boundary() {
        let plan = native_plan("SELECT MIN(__time), MAX(__time) FROM wiki");
        assert_eq!(plan.kind, NativeKind::TimeBoundary);
        assert_eq!(
            plan.query,
            json!({"queryType": "timeBoundary", "dataSource": "wiki", "intervals": [ETERNITY]})
        );
        assert_eq!(plan.columns[0].sql_type, SqlType::Timestamp);
        let query = native("SELECT MAX(__time) AS latest FROM wiki WHERE channel = 'x'");
        assert_eq!(query["bound"], "maxTime");
        assert_eq!(query["filter"]["column"], "channel");
        // Mixed with other aggregates: a timeseries with longMin/longMax on __time.
        let query = native("SELECT MIN(__time), COUNT(*) FROM wiki");
        assert_eq!(query["queryType"], "timeseries");
        assert_eq!(
            query["aggregations"][0],
            json!({"type": "longMin", "name": "a0", "fieldName": "__time"})
        );
    }

    #[test]
    fn select_distinct_is_a_group_by() {
        let query = native("SELECT DISTINCT channel FROM wiki LIMIT 3");
        assert_eq!(query["queryType"], "groupBy");
        assert_eq!(query["dimensions"][0]["dimension"], "channel");
        assert_eq!(
            query["limitSpec"],
            json!({"type": "default", "columns": [], "limit": 3})
        );
    }

    #[test]
    fn constants_in_the_select_list_are_outputs() {
        let plan = native_plan("SELECT 'x' AS tag, COUNT(*) FROM wiki");
        assert_eq!(plan.sources[0], Source::Constant(json!("x")));
        assert_eq!(plan.columns[0].sql_type, SqlType::Varchar);
    }

    #[test]
    fn parameters_bind_in_textual_order() {
        let request = request_with(
            "SELECT channel, COUNT(*) FROM wiki WHERE __time >= ? AND channel IN (?, ?) AND added > ? \
             GROUP BY channel LIMIT ?",
            &[
                ("TIMESTAMP", json!("2024-01-01 00:00:00")),
                ("VARCHAR", json!("#en")),
                ("VARCHAR", json!("it's")),
                ("BIGINT", json!(-5)),
                ("INTEGER", json!(10)),
            ],
        );
        let Plan::Native(plan) = plan(&request, &TestCatalog).unwrap() else {
            panic!("native");
        };
        assert_eq!(
            plan.query["intervals"],
            json!(["2024-01-01T00:00:00.000Z/146140482-04-24T15:36:27.903Z"])
        );
        assert_eq!(
            plan.query["filter"],
            json!({"type": "and", "fields": [
                {"type": "in", "dimension": "channel", "values": ["#en", "it's"]},
                {"type": "range", "column": "added", "matchValueType": "LONG", "lower": -5, "lowerOpen": true},
            ]})
        );
        assert_eq!(plan.query["limitSpec"]["limit"], 10);
    }

    #[test]
    fn request_context_passes_to_the_native_query() {
        let mut request = request("SELECT COUNT(*) FROM wiki");
        request.context.insert("timeout".into(), json!(1000));
        request.context.insert("sqlQueryId".into(), json!("q1"));
        request.context.insert("sqlTimeZone".into(), json!("UTC"));
        let Plan::Native(plan) = plan(&request, &TestCatalog).unwrap() else {
            panic!("native");
        };
        assert_eq!(plan.query["context"], json!({"timeout": 1000}));
    }
}

mod shaping {
    use super::*;
    use grove_query::sql::shape;
    use serde_json::json;

    fn rows(sql: &str, result: Value) -> Vec<Vec<Value>> {
        shape(&native_plan(sql), &result).unwrap().rows
    }

    #[test]
    fn timeseries_all() {
        assert_eq!(
            rows(
                "SELECT COUNT(*), SUM(added) AS s, AVG(delta) FROM wiki",
                json!([{"timestamp": "2024-01-01T00:00:00.000Z", "result": {"a0": 5, "a1": 12, "a2": 2}}]),
            ),
            vec![vec![json!(5), json!(12), json!(2.0)]]
        );
    }

    #[test]
    fn aggregates_over_no_data_return_one_row() {
        assert_eq!(
            rows(
                "SELECT COUNT(*), SUM(added), COUNT(DISTINCT page), 'k' FROM wiki",
                json!([]),
            ),
            vec![vec![json!(0), Value::Null, json!(0), json!("k")]]
        );
        assert!(rows("SELECT COUNT(*) FROM wiki LIMIT 1 OFFSET 1", json!([])).is_empty());
        assert_eq!(
            rows("SELECT MAX(__time) FROM wiki", json!([])),
            vec![vec![Value::Null]]
        );
    }

    #[test]
    fn timeseries_buckets_carry_their_timestamp() {
        let result = json!([
            {"timestamp": "2024-01-01T00:00:00.000Z", "result": {"a0": 3}},
            {"timestamp": "2024-01-01T01:00:00.000Z", "result": {"a0": 4}},
        ]);
        assert_eq!(
            rows(
                "SELECT TIME_FLOOR(__time, 'PT1H') AS t, COUNT(*) AS n FROM wiki GROUP BY 1",
                result
            ),
            vec![
                vec![json!("2024-01-01T00:00:00.000Z"), json!(3)],
                vec![json!("2024-01-01T01:00:00.000Z"), json!(4)],
            ]
        );
    }

    #[test]
    fn top_n_rows() {
        let result = json!([{"timestamp": "2024-01-01T00:00:00.000Z", "result": [
            {"d0": "#en", "a0": 10},
            {"d0": "#fr", "a0": 7},
        ]}]);
        let sql =
            "SELECT channel, COUNT(*) AS cnt FROM wiki GROUP BY channel ORDER BY cnt DESC LIMIT 2";
        let shaped = shape(&native_plan(sql), &result).unwrap();
        assert_eq!(
            shaped.columns,
            vec![
                ColumnInfo {
                    name: "channel".into(),
                    sql_type: SqlType::Varchar
                },
                ColumnInfo {
                    name: "cnt".into(),
                    sql_type: SqlType::Bigint
                },
            ]
        );
        assert_eq!(
            shaped.rows,
            vec![vec![json!("#en"), json!(10)], vec![json!("#fr"), json!(7)]]
        );
    }

    #[test]
    fn group_by_rows_with_time_floor_and_post_aggregators() {
        let result = json!([
            {"version": "v1", "timestamp": "2024-01-01T00:00:00.000Z",
             "event": {"d0": "#en", "a0": 4, "a1:sum": 10, "a1:count": 4, "a1": 2.5}},
            {"version": "v1", "timestamp": "2024-01-01T01:00:00.000Z",
             "event": {"d0": null, "a0": 1, "a1": 3}},
        ]);
        assert_eq!(
            rows(
                "SELECT TIME_FLOOR(__time, 'PT1H'), channel, COUNT(*), AVG(added) FROM wiki GROUP BY 1, 2",
                result,
            ),
            vec![
                vec![
                    json!("2024-01-01T00:00:00.000Z"),
                    json!("#en"),
                    json!(4),
                    json!(2.5)
                ],
                vec![
                    json!("2024-01-01T01:00:00.000Z"),
                    Value::Null,
                    json!(1),
                    json!(3.0)
                ],
            ]
        );
    }

    #[test]
    fn scan_rows_map_columns_and_format_time() {
        let result = json!([
            {"segmentId": "wiki_1", "columns": ["__time", "page"], "events": [
                {"__time": 1700000000000i64, "page": "A"},
                {"__time": 1700000001000i64, "page": null},
            ]},
            {"segmentId": "wiki_2", "columns": ["__time", "page"], "events": [
                {"__time": 1700000002000i64, "page": "B"},
            ]},
        ]);
        assert_eq!(
            rows("SELECT page AS p, __time FROM wiki", result),
            vec![
                vec![json!("A"), json!("2023-11-14T22:13:20.000Z")],
                vec![Value::Null, json!("2023-11-14T22:13:21.000Z")],
                vec![json!("B"), json!("2023-11-14T22:13:22.000Z")],
            ]
        );
    }

    #[test]
    fn time_boundary_rows() {
        let result = json!([{"timestamp": "2024-01-01T00:00:00.000Z", "result": {
            "minTime": "2024-01-01T00:00:00.000Z", "maxTime": "2024-01-03T05:00:00.000Z"}}]);
        assert_eq!(
            rows("SELECT MAX(__time), MIN(__time) FROM wiki", result),
            vec![vec![
                json!("2024-01-03T05:00:00.000Z"),
                json!("2024-01-01T00:00:00.000Z")
            ]]
        );
    }

    #[test]
    fn min_time_in_a_timeseries_is_formatted() {
        assert_eq!(
            rows(
                "SELECT MIN(__time), COUNT(*) FROM wiki",
                json!([{"timestamp": "2024-01-01T00:00:00.000Z", "result": {"a0": 1704067200000i64, "a1": 2}}]),
            ),
            vec![vec![json!("2024-01-01T00:00:00.000Z"), json!(2)]]
        );
    }

    #[test]
    fn malformed_results_are_internal_errors() {
        let plan = native_plan("SELECT channel, COUNT(*) FROM wiki GROUP BY channel");
        let error = shape(&plan, &json!([{"timestamp": "x", "result": {}}])).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Internal);
        assert!(error.message.contains("event"), "{}", error.message);
        assert!(shape(&plan, &json!({"not": "an array"})).is_err());
    }
}

mod system_tables {
    use super::*;
    use grove_query::sql::{SqlResult, execute};
    use grove_query::{SegmentProvider, Unbounded};
    use grove_segment::format::Segment;
    use grove_segment::time::Interval;
    use serde_json::json;
    use std::sync::Arc;

    struct NoSegments;

    impl SegmentProvider for NoSegments {
        fn segments(&self, _: &str, _: &[Interval]) -> Vec<Arc<Segment>> {
            Vec::new()
        }
    }

    fn run(sql: &str) -> SqlResult {
        execute(&request(sql), &TestCatalog, &NoSegments, &Unbounded)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    }

    #[test]
    fn schemata_and_count_comparisons_as_sqlalchemy_asks() {
        let result = run("SELECT SCHEMA_NAME FROM INFORMATION_SCHEMA.SCHEMATA ORDER BY 1");
        assert_eq!(
            result.rows,
            vec![
                vec![json!("INFORMATION_SCHEMA")],
                vec![json!("druid")],
                vec![json!("sys")]
            ]
        );
        let exists = |table: &str| {
            run(&format!(
                "SELECT COUNT(*) > 0 AS exists_ FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_NAME = '{table}'"
            ))
            .rows
        };
        assert_eq!(exists("wiki"), vec![vec![json!(true)]]);
        assert_eq!(exists("nope"), vec![vec![json!(false)]]);
    }

    #[test]
    fn tables_lists_datasources_and_system_tables() {
        let result = run("SELECT * FROM INFORMATION_SCHEMA.TABLES");
        let names: Vec<&str> = result.columns.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "TABLE_CATALOG",
                "TABLE_SCHEMA",
                "TABLE_NAME",
                "TABLE_TYPE",
                "IS_JOINABLE",
                "IS_BROADCAST"
            ]
        );
        assert_eq!(
            result.rows[0],
            vec![
                json!("druid"),
                json!("druid"),
                json!("events"),
                json!("TABLE"),
                json!("NO"),
                json!("NO")
            ]
        );
        let result = run(
            "SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'druid' AND TABLE_TYPE = 'TABLE' ORDER BY TABLE_NAME DESC",
        );
        assert_eq!(
            result.rows,
            vec![vec![json!("wiki")], vec![json!("events")]]
        );
        let result = run(
            "SELECT TABLE_SCHEMA, TABLE_NAME FROM information_schema.tables WHERE TABLE_TYPE <> 'TABLE' ORDER BY 2",
        );
        assert_eq!(
            result.rows,
            vec![
                vec![json!("INFORMATION_SCHEMA"), json!("COLUMNS")],
                vec![json!("INFORMATION_SCHEMA"), json!("SCHEMATA")],
                vec![json!("INFORMATION_SCHEMA"), json!("TABLES")],
                vec![json!("sys"), json!("segments")],
            ]
        );
    }

    #[test]
    fn columns_of_a_table() {
        let result = run(
            "SELECT COLUMN_NAME, ORDINAL_POSITION, DATA_TYPE, IS_NULLABLE FROM INFORMATION_SCHEMA.COLUMNS \
             WHERE TABLE_SCHEMA = 'druid' AND TABLE_NAME = 'wiki' AND COLUMN_NAME LIKE '%e%' ORDER BY ORDINAL_POSITION",
        );
        assert_eq!(
            result.rows,
            vec![
                vec![json!("__time"), json!(1), json!("TIMESTAMP"), json!("NO")],
                vec![json!("channel"), json!(2), json!("VARCHAR"), json!("YES")],
                vec![json!("page"), json!(3), json!("VARCHAR"), json!("YES")],
                vec![json!("user_id"), json!(4), json!("BIGINT"), json!("YES")],
                vec![json!("added"), json!(5), json!("BIGINT"), json!("YES")],
                vec![json!("delta"), json!(6), json!("DOUBLE"), json!("YES")],
                vec![
                    json!("user_sketch"),
                    json!(7),
                    json!("COMPLEX<HLLSketch>"),
                    json!("YES")
                ],
            ]
        );
        assert_eq!(result.columns[1].sql_type, SqlType::Bigint);
    }

    #[test]
    fn segments_with_filters_order_limit_and_count() {
        let result = run(
            r#"SELECT segment_id, "start", "end", num_rows, is_available FROM sys.segments
               WHERE datasource IN ('wiki', 'nope') AND (partition_num = 1 OR "start" >= '2024-01-02')
               ORDER BY num_rows DESC"#,
        );
        assert_eq!(
            result.rows,
            vec![
                vec![
                    json!(
                        "wiki_2024-01-02T00:00:00.000Z_2024-01-03T00:00:00.000Z_2024-02-01T00:00:00.000Z_0"
                    ),
                    json!("2024-01-02T00:00:00.000Z"),
                    json!("2024-01-03T00:00:00.000Z"),
                    json!(30),
                    json!(1),
                ],
                vec![
                    json!(
                        "wiki_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z_2024-02-01T00:00:00.000Z_1"
                    ),
                    json!("2024-01-01T00:00:00.000Z"),
                    json!("2024-01-02T00:00:00.000Z"),
                    json!(20),
                    json!(1),
                ],
            ]
        );
        let result =
            run("SELECT datasource AS ds, size FROM sys.segments ORDER BY size LIMIT 2 OFFSET 1");
        assert_eq!(result.columns[0].name, "ds");
        assert_eq!(
            result.rows,
            vec![
                vec![json!("wiki"), json!(1000)],
                vec![json!("wiki"), json!(2000)]
            ]
        );
        let result = run(
            "SELECT COUNT(*) AS n FROM sys.segments WHERE datasource <> 'events' AND is_available = 1",
        );
        assert_eq!(
            result.columns,
            vec![ColumnInfo {
                name: "n".into(),
                sql_type: SqlType::Bigint
            }]
        );
        assert_eq!(result.rows, vec![vec![json!(3)]]);
        let result = run("SELECT segment_id FROM sys.segments WHERE datasource NOT LIKE 'w%'");
        assert_eq!(result.rows.len(), 1);
    }

    #[test]
    fn system_tables_refuse_grouping_and_unknown_columns() {
        assert_error(
            "SELECT datasource, COUNT(*) FROM sys.segments GROUP BY datasource",
            ErrorKind::Unsupported,
            "GROUP BY",
        );
        assert_error(
            "SELECT nope FROM sys.segments",
            ErrorKind::BadQuery,
            "Column 'nope' not found in any table",
        );
        assert_error(
            "SELECT * FROM sys.servers",
            ErrorKind::BadQuery,
            "Object 'sys.servers' not found",
        );
    }
}

mod errors {
    use super::*;

    #[test]
    fn unknown_tables_and_columns() {
        assert_error(
            "SELECT * FROM nope",
            ErrorKind::BadQuery,
            "Object 'nope' not found",
        );
        assert_error(
            "SELECT * FROM other.wiki",
            ErrorKind::BadQuery,
            "Object 'other.wiki' not found",
        );
        assert_error(
            "SELECT nope FROM wiki",
            ErrorKind::BadQuery,
            "Column 'nope' not found in any table",
        );
        assert_error(
            "SELECT COUNT(*) FROM wiki WHERE nope = 1",
            ErrorKind::BadQuery,
            "Column 'nope' not found in any table",
        );
        assert_error(
            "SELECT x.page FROM wiki",
            ErrorKind::BadQuery,
            "Table 'x' not found",
        );
    }

    #[test]
    fn unsupported_constructs_are_named() {
        for (sql, construct) in [
            (
                "SELECT * FROM wiki JOIN events ON wiki.page = events.kind",
                "JOIN",
            ),
            ("SELECT * FROM wiki, events", "JOIN"),
            ("SELECT * FROM (SELECT page FROM wiki)", "subqueries"),
            (
                "SELECT page FROM wiki WHERE page IN (SELECT kind FROM events)",
                "subqueries",
            ),
            ("WITH t AS (SELECT page FROM wiki) SELECT * FROM t", "WITH"),
            (
                "SELECT page, ROW_NUMBER() OVER (ORDER BY page) FROM wiki",
                "window functions",
            ),
            ("INSERT INTO wiki VALUES (1)", "INSERT"),
            (
                "SELECT page FROM wiki UNION SELECT kind FROM events",
                "UNION",
            ),
            ("SELECT 1 + page", "constants only"),
            (
                "SELECT APPROX_QUANTILE_DS(added, 0.5) FROM wiki",
                "APPROX_QUANTILE_DS",
            ),
            (
                "SELECT CONCAT(page, CAST(COUNT(*) AS VARCHAR)) FROM wiki GROUP BY page",
                "mixing columns and aggregates",
            ),
            ("DELETE FROM wiki", "DELETE"),
            ("SELECT page FROM wiki ORDER BY page", "ORDER BY page"),
            (
                "SELECT TIME_FLOOR(__time, 'PT1H'), FLOOR(__time TO DAY), COUNT(*) FROM wiki GROUP BY 1, 2",
                "more than one time floor",
            ),
            (
                "SELECT TIME_FLOOR(__time, 'PT1H'), channel, COUNT(*) FROM wiki GROUP BY 1, 2 ORDER BY 3 DESC",
                "start with the time floor",
            ),
        ] {
            assert_error(sql, ErrorKind::Unsupported, construct);
            assert!(plan_error(sql).message.starts_with("SQL: "), "{sql}");
        }
    }

    #[test]
    fn invalid_queries_are_bad_queries() {
        assert_error("SELEC page FROM wiki", ErrorKind::BadQuery, "SQL: ");
        assert_error(
            "SELECT page FROM wiki; SELECT 1",
            ErrorKind::BadQuery,
            "one statement",
        );
        assert_error(
            "SELECT channel, COUNT(*) FROM wiki",
            ErrorKind::BadQuery,
            "must appear in GROUP BY",
        );
        assert_error(
            "SELECT page, COUNT(*) FROM wiki GROUP BY channel",
            ErrorKind::BadQuery,
            "must appear in GROUP BY",
        );
        assert_error(
            "SELECT SUM(page) FROM wiki",
            ErrorKind::BadQuery,
            "cannot apply SUM to column 'page' of type VARCHAR",
        );
        assert_error(
            "SELECT COUNT(*) FROM wiki WHERE page = NULL",
            ErrorKind::BadQuery,
            "use IS NULL",
        );
        assert_error(
            "SELECT COUNT(*) FROM wiki WHERE added = 'abc'",
            ErrorKind::BadQuery,
            "cannot be compared",
        );
        assert_error(
            "SELECT COUNT(*) FROM wiki WHERE __time > 'yesterday'",
            ErrorKind::BadQuery,
            "not a timestamp",
        );
        assert_error(
            "SELECT TIME_FLOOR(__time, 'hourly'), COUNT(*) FROM wiki GROUP BY 1",
            ErrorKind::BadQuery,
            "period",
        );
        assert_error(
            "SELECT page FROM wiki LIMIT -1",
            ErrorKind::BadQuery,
            "LIMIT",
        );
        assert_error(
            "SELECT COUNT(*) FROM wiki GROUP BY COUNT(*)",
            ErrorKind::BadQuery,
            "GROUP BY",
        );
        assert_error(
            "SELECT channel FROM wiki GROUP BY 3",
            ErrorKind::BadQuery,
            "ordinal 3 is out of range",
        );
        assert_error(
            "SELECT COUNT(*) FROM wiki WHERE user_sketch = 'x'",
            ErrorKind::BadQuery,
            "complex column",
        );
    }

    #[test]
    fn parameter_counts_must_match() {
        let error = plan(
            &request_with(
                "SELECT page FROM wiki WHERE page = ? AND channel = ?",
                &[("VARCHAR", Value::from("a"))],
            ),
            &TestCatalog,
        )
        .unwrap_err();
        assert_eq!(error.kind, ErrorKind::BadQuery);
        assert!(
            error.message.contains("parameter 2 has no value"),
            "{}",
            error.message
        );
        let error = plan(
            &request_with("SELECT page FROM wiki", &[("VARCHAR", Value::from("a"))]),
            &TestCatalog,
        )
        .unwrap_err();
        assert!(
            error.message.contains("1 parameters given"),
            "{}",
            error.message
        );
        let error = plan(
            &request_with(
                "SELECT page FROM wiki WHERE added = ?",
                &[("BIGINT", Value::from("x"))],
            ),
            &TestCatalog,
        )
        .unwrap_err();
        assert!(error.message.contains("invalid value"), "{}", error.message);
    }
}

mod in_lists {
    use super::*;
    use std::time::Instant;

    #[test]
    fn ten_thousand_value_in_list_plans_flat_and_fast() {
        let values: Vec<String> = (0..10_000).map(|i| format!("'user-{i}'")).collect();
        let sql = format!(
            "SELECT page, COUNT(*) FROM wiki WHERE page IN ({}) AND channel = '#en' GROUP BY page",
            values.join(", ")
        );
        // Warm up once (allocator, lazy statics), then measure.
        native_plan(&sql);
        let runs = 5;
        let started = Instant::now();
        let mut query = Value::Null;
        for _ in 0..runs {
            query = native(&sql);
        }
        let per_plan = started.elapsed() / runs;
        println!(
            "10,000-value IN list: {per_plan:?} per plan ({:?} per 1,000 values)",
            per_plan / 10
        );
        let in_filter = &query["filter"]["fields"][0];
        assert_eq!(in_filter["type"], "in");
        let planned = in_filter["values"].as_array().unwrap();
        assert_eq!(planned.len(), 10_000);
        assert_eq!(planned[0], "user-0");
        assert_eq!(planned[9_999], "user-9999");
    }

    #[test]
    fn ten_thousand_parameters_in_an_in_list() {
        let placeholders = vec!["?"; 10_000].join(",");
        let parameters: Vec<(&str, Value)> =
            (0..10_000).map(|i| ("BIGINT", Value::from(i))).collect();
        let request = request_with(
            &format!("SELECT COUNT(*) FROM wiki WHERE user_id IN ({placeholders})"),
            &parameters,
        );
        let started = Instant::now();
        let Plan::Native(plan) = plan(&request, &TestCatalog).unwrap() else {
            panic!("native");
        };
        println!("10,000-parameter IN list: {:?}", started.elapsed());
        let values = plan.query["filter"]["values"].as_array().unwrap();
        assert_eq!(values.len(), 10_000);
        assert_eq!(values[1234], "1234");
    }

    #[test]
    fn long_or_chains_do_not_recurse_per_term() {
        let chain = |terms: usize| {
            let terms: Vec<String> = (0..terms).map(|i| format!("page = 'p{i}'")).collect();
            format!("SELECT COUNT(*) FROM wiki WHERE {}", terms.join(" OR "))
        };
        let query = native(&chain(9_000));
        assert_eq!(query["filter"]["type"], "or");
        assert_eq!(query["filter"]["fields"].as_array().unwrap().len(), 9_000);
        // Past the token limit: refused before parsing, with the limit named.
        assert_error(
            &chain(20_000),
            ErrorKind::ResourceLimit,
            "more than 40000 tokens",
        );
    }
}
