//! SQL end to end: SQL text planned into native queries, run by the native engine over the
//! hand-checked events of `tests/common/events.rs`, shaped into rows — the answers are checked
//! by hand, so planner and engine are tested together.

mod common;

use serde_json::{Value as Json, json};

use common::{Fixed, segments};
use grove_query::sql::{
    Catalog, ColumnInfo, SegmentInfo, SqlParameter, SqlRequest, SqlType, TableInfo, execute,
};
use grove_query::{ErrorKind, Unbounded};

struct EventsCatalog(Fixed);

impl Catalog for EventsCatalog {
    fn tables(&self) -> Vec<TableInfo> {
        let col = |name: &str, sql_type: SqlType| ColumnInfo {
            name: name.into(),
            sql_type,
        };
        vec![TableInfo {
            name: "events".into(),
            columns: vec![
                col("__time", SqlType::Timestamp),
                col("country", SqlType::Varchar),
                col("tags", SqlType::Varchar),
                col("device", SqlType::Varchar),
                col("user", SqlType::Bigint),
                col("price", SqlType::Double),
                col("count", SqlType::Bigint),
                col("clicks", SqlType::Bigint),
                col("spend", SqlType::Double),
                col("users", SqlType::Other("COMPLEX<HLLSketch>".into())),
            ],
        }]
    }

    fn segments(&self) -> Vec<SegmentInfo> {
        self.0
            .0
            .iter()
            .map(|s| {
                let id = &s.meta().id;
                SegmentInfo {
                    segment_id: id.to_string(),
                    datasource: id.data_source.clone(),
                    start: grove_segment::time::format_iso(id.interval.start_ms),
                    end: grove_segment::time::format_iso(id.interval.end_ms),
                    version: id.version.clone(),
                    partition_num: id.partition as i64,
                    num_rows: s.num_rows() as i64,
                    size: s.file_bytes() as i64,
                    is_published: true,
                    is_available: true,
                }
            })
            .collect()
    }
}

fn rows_with(sql: &str, parameters: Vec<SqlParameter>) -> Vec<Vec<Json>> {
    let catalog = EventsCatalog(Fixed(segments(&common::events::events(), |d| d == 0)));
    let request = SqlRequest {
        query: sql.into(),
        parameters,
        ..SqlRequest::default()
    };
    execute(&request, &catalog, &catalog.0, &Unbounded)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows
}

fn rows(sql: &str) -> Vec<Vec<Json>> {
    rows_with(sql, Vec::new())
}

#[test]
fn aggregates_over_everything() {
    assert_eq!(
        rows(
            "SELECT COUNT(*), SUM(clicks), SUM(spend), MIN(\"user\"), MAX(price), AVG(clicks) FROM events"
        ),
        vec![vec![
            json!(8),
            json!(40),
            json!(16.0),
            json!(1),
            json!(4.0),
            json!(5.0)
        ]]
    );
    // No rows match: still one row, count 0 and null sum.
    assert_eq!(
        rows("SELECT COUNT(*), SUM(clicks) FROM events WHERE country = 'XX'"),
        vec![vec![json!(0), Json::Null]]
    );
}

#[test]
fn where_clauses() {
    let count =
        |cond: &str| rows(&format!("SELECT COUNT(*) FROM events WHERE {cond}"))[0][0].clone();
    assert_eq!(count("country = 'US'"), json!(4));
    assert_eq!(count("country <> 'US'"), json!(3));
    assert_eq!(count("country IN ('FR', 'DE', 'XX')"), json!(3));
    assert_eq!(count("country NOT IN ('FR', 'DE')"), json!(4));
    assert_eq!(count("country IS NULL"), json!(1));
    assert_eq!(count("price IS NOT NULL"), json!(6));
    assert_eq!(count("price BETWEEN 2 AND 3"), json!(3));
    assert_eq!(count("\"user\" > 2"), json!(3));
    assert_eq!(count("device LIKE 'p%'"), json!(5));
    assert_eq!(count("tags = 'b'"), json!(3));
    assert_eq!(
        count(
            "__time >= TIMESTAMP '2024-01-01 02:00:00' AND __time < TIMESTAMP '2024-01-02 00:00:00'"
        ),
        json!(3)
    );
    assert_eq!(
        count("(device = 'phone' AND country = 'FR') OR tags = 'c'"),
        json!(4)
    );
    assert_eq!(count("NOT (country = 'US' OR country = 'FR')"), json!(1));
}

#[test]
fn group_by_order_limit_having() {
    assert_eq!(
        rows(
            "SELECT country, SUM(clicks) AS c FROM events GROUP BY country ORDER BY c DESC LIMIT 2"
        ),
        vec![vec![json!("US"), json!(22)], vec![json!("FR"), json!(9)]]
    );
    // An alias that is also an input column: ORDER BY means the alias (the sum), as in Druid.
    assert_eq!(
        rows(
            "SELECT country, SUM(clicks) AS clicks FROM events GROUP BY country ORDER BY clicks DESC LIMIT 2"
        ),
        vec![vec![json!("US"), json!(22)], vec![json!("FR"), json!(9)]]
    );
    assert_eq!(
        rows(
            "SELECT device, COUNT(*) AS n FROM events GROUP BY device HAVING COUNT(*) > 1 ORDER BY device"
        ),
        vec![
            vec![json!("desktop"), json!(2)],
            vec![json!("phone"), json!(5)]
        ]
    );
    assert_eq!(
        rows(
            "SELECT country, device, COUNT(*) FROM events WHERE country IS NOT NULL \
              GROUP BY country, device ORDER BY 3 DESC, country, device LIMIT 2 OFFSET 1"
        ),
        vec![
            vec![json!("US"), json!("desktop"), json!(2)],
            vec![json!("US"), json!("phone"), json!(2)]
        ]
    );
}

#[test]
fn time_floors() {
    assert_eq!(
        rows("SELECT TIME_FLOOR(__time, 'P1D') AS d, COUNT(*) FROM events GROUP BY 1 ORDER BY 1"),
        vec![
            vec![json!("2024-01-01T00:00:00.000Z"), json!(5)],
            vec![json!("2024-01-02T00:00:00.000Z"), json!(3)]
        ]
    );
    assert_eq!(
        rows(
            "SELECT FLOOR(__time TO HOUR), SUM(clicks) FROM events \
              WHERE __time < TIMESTAMP '2024-01-01 03:00:00' GROUP BY FLOOR(__time TO HOUR)"
        ),
        vec![
            vec![json!("2024-01-01T01:00:00.000Z"), json!(15)],
            vec![json!("2024-01-01T02:00:00.000Z"), json!(1)]
        ]
    );
}

#[test]
fn distinct_counts_use_sketches() {
    assert_eq!(
        rows(
            "SELECT COUNT(DISTINCT device), APPROX_COUNT_DISTINCT(country), APPROX_COUNT_DISTINCT(users) FROM events"
        ),
        vec![vec![json!(3), json!(3), json!(5)]]
    );
}

#[test]
fn scans_with_parameters() {
    assert_eq!(
        rows_with(
            "SELECT country, clicks FROM events WHERE device = ? AND clicks > ? ORDER BY __time LIMIT 2",
            vec![
                SqlParameter {
                    sql_type: "VARCHAR".into(),
                    value: json!("phone")
                },
                SqlParameter {
                    sql_type: "BIGINT".into(),
                    value: json!(1)
                },
            ]
        ),
        vec![vec![json!("US"), json!(10)], vec![json!("DE"), json!(2)]]
    );
}

#[test]
fn system_tables() {
    assert_eq!(
        rows("SELECT TABLE_NAME FROM INFORMATION_SCHEMA.TABLES WHERE TABLE_SCHEMA = 'druid'"),
        vec![vec![json!("events")]]
    );
    assert_eq!(
        rows(
            "SELECT COLUMN_NAME, DATA_TYPE FROM INFORMATION_SCHEMA.COLUMNS \
              WHERE TABLE_NAME = 'events' AND COLUMN_NAME IN ('__time', 'clicks')"
        ),
        vec![
            vec![json!("__time"), json!("TIMESTAMP")],
            vec![json!("clicks"), json!("BIGINT")]
        ]
    );
    assert_eq!(
        rows("SELECT datasource, num_rows FROM sys.segments ORDER BY \"start\""),
        vec![
            vec![json!("events"), json!(5)],
            vec![json!("events"), json!(3)]
        ]
    );
}

#[test]
fn unsupported_sql_is_a_clear_error() {
    let catalog = EventsCatalog(Fixed(Vec::new()));
    let err = |sql: &str| {
        execute(
            &SqlRequest {
                query: sql.into(),
                ..SqlRequest::default()
            },
            &catalog,
            &catalog.0,
            &Unbounded,
        )
        .unwrap_err()
    };
    let e = err("SELECT * FROM events a JOIN events b ON a.country = b.country");
    assert_eq!(e.kind, ErrorKind::Unsupported);
    assert!(e.message.contains("JOIN"), "{e}");
    let e = err("SELECT nope FROM events");
    assert!(e.message.contains("nope"), "{e}");
    let e = err("SELECT * FROM missing");
    assert!(e.message.contains("missing"), "{e}");
    let e = err("SELEC 1");
    assert_eq!(e.http_status(), 400);
}

/// A timestamp literal whose year does not fit, and interval arithmetic that leaves Druid's
/// eternity, are bad queries, not wrapped times or panics.
#[test]
fn timestamp_literals_whose_year_does_not_fit_are_errors() {
    let catalog = EventsCatalog(Fixed(segments(&common::events::events(), |d| d == 0)));
    let err = |sql: &str| {
        execute(
            &SqlRequest {
                query: sql.into(),
                ..SqlRequest::default()
            },
            &catalog,
            &catalog.0,
            &Unbounded,
        )
        .expect_err(sql)
    };
    for (sql, needle) in [
        (
            "SELECT COUNT(*) FROM events WHERE __time >= TIMESTAMP '440000000-01-01'",
            "440000000-01-01",
        ),
        (
            "SELECT COUNT(*) FROM events WHERE __time < '-440000000-01-01'",
            "-440000000-01-01",
        ),
        (
            "SELECT COUNT(*) FROM events WHERE __time < TIMESTAMP '146140482-01-01' + INTERVAL '1000000' YEAR",
            "eternity",
        ),
        (
            "SELECT COUNT(*) FROM events WHERE __time > TIMESTAMP '-146136543-12-31' - INTERVAL '1000000' YEAR",
            "eternity",
        ),
    ] {
        let e = err(sql);
        assert_eq!(e.http_status(), 400, "{sql}: {e}");
        assert!(e.message.contains(needle), "{sql}: {e}");
    }
}

fn rows_in(sql: &str, context: Json) -> Vec<Vec<Json>> {
    let catalog = EventsCatalog(Fixed(segments(&common::events::events(), |d| d == 0)));
    let request = SqlRequest {
        query: sql.into(),
        context: context.as_object().cloned().unwrap_or_default(),
        ..SqlRequest::default()
    };
    execute(&request, &catalog, &catalog.0, &Unbounded)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .rows
}

/// `useApproximateCountDistinct: false` plans Druid's nested groupBy: exact distinct counts
/// (null not counted), overall, per group and per time bucket; other aggregates beside it are
/// refused by name.
#[test]
fn exact_count_distinct_plans_a_nested_group_by() {
    let exact = json!({"useApproximateCountDistinct": false});
    let all_countries = rows_in("SELECT COUNT(DISTINCT country) FROM events", exact.clone());
    let expected = {
        let mut c: Vec<&str> = common::events::events()
            .iter()
            .filter_map(|e| e.country)
            .collect();
        c.sort_unstable();
        c.dedup();
        c.len()
    };
    assert_eq!(all_countries, vec![vec![json!(expected)]]);
    let per_device = rows_in(
        "SELECT device, COUNT(DISTINCT country) AS n FROM events GROUP BY device ORDER BY device",
        exact.clone(),
    );
    let mut want: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        Default::default();
    for e in common::events::events() {
        let set = want.entry(e.device.unwrap()).or_default();
        if let Some(c) = e.country {
            set.insert(c);
        }
    }
    let want: Vec<Vec<Json>> = want
        .into_iter()
        .map(|(d, s)| vec![json!(d), json!(s.len())])
        .collect();
    assert_eq!(per_device, want);
    let by_day = rows_in(
        "SELECT FLOOR(__time TO DAY) AS d, COUNT(DISTINCT device) FROM events GROUP BY 1",
        exact.clone(),
    );
    assert!(!by_day.is_empty());
    let catalog = EventsCatalog(Fixed(segments(&common::events::events(), |d| d == 0)));
    let request = SqlRequest {
        query: "SELECT COUNT(DISTINCT country), SUM(clicks) FROM events".into(),
        context: exact.as_object().unwrap().clone(),
        ..SqlRequest::default()
    };
    let error = execute(&request, &catalog, &catalog.0, &Unbounded).unwrap_err();
    assert_eq!(error.kind, ErrorKind::Unsupported, "{error}");
}

/// CASE, CAST, COALESCE, string and time functions, EXTRACT, long division, EARLIEST/LATEST
/// and ANY_VALUE, over the hand-checked events.
#[test]
fn expressions_and_functions_end_to_end() {
    assert_eq!(
        rows(
            "SELECT CASE WHEN clicks >= 5 THEN 'many' ELSE 'few' END AS k, COUNT(*), SUM(clicks) / COUNT(*) \
             FROM events GROUP BY 1 ORDER BY 1"
        ),
        vec![
            vec![json!("few"), json!(4), json!(2)],
            vec![json!("many"), json!(4), json!(7)],
        ]
    );
    assert_eq!(
        rows(
            "SELECT LOWER(COALESCE(country, 'none')) AS c, SUM(CAST(price AS BIGINT)) FROM events \
             WHERE CHAR_LENGTH(device) > 5 GROUP BY 1 ORDER BY 1"
        ),
        vec![vec![json!("none"), json!(4)], vec![json!("us"), json!(5)],]
    );
    assert_eq!(
        rows(
            "SELECT TIME_FORMAT(__time, 'yyyy-MM-dd', 'Asia/Tokyo') AS d, EXTRACT(DAY FROM __time) AS dd, \
             COUNT(*) FROM events GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        vec![
            vec![json!("2024-01-01"), json!(1), json!(5)],
            vec![json!("2024-01-02"), json!(2), json!(3)],
        ]
    );
    assert_eq!(
        rows(
            "SELECT EARLIEST(device), LATEST(clicks), ANY_VALUE(country), \
             SUM(clicks) FILTER (WHERE TIME_IN_INTERVAL(__time, '2024-01-02/2024-01-03')) FROM events"
        ),
        vec![vec![json!("phone"), json!(8), json!("US"), json!(15)]]
    );
    // Comparing two columns is an expression filter; a scan returns expressions.
    assert_eq!(
        rows(
            "SELECT CONCAT(country, '-', device), clicks % 3 FROM events WHERE \"user\" = clicks ORDER BY __time"
        ),
        Vec::<Vec<Json>>::new()
    );
    assert_eq!(
        rows(
            "SELECT UPPER(device) AS d, TIME_FLOOR(__time, 'P1D', NULL, 'America/New_York') AS t FROM events \
             WHERE country = 'DE'"
        ),
        vec![vec![json!("PHONE"), json!("2023-12-31T05:00:00.000Z")]]
    );
}

#[test]
fn union_all_constants_explain_outer_limit_and_exact_top_n() {
    assert_eq!(
        rows(
            "SELECT country, COUNT(*) FROM events WHERE country = 'FR' GROUP BY 1 \
             UNION ALL SELECT device, COUNT(*) FROM events WHERE device = 'tablet' GROUP BY 1"
        ),
        vec![vec![json!("FR"), json!(2)], vec![json!("tablet"), json!(1)]]
    );
    assert_eq!(rows("SELECT 1, 'x' AS y"), vec![vec![json!(1), json!("x")]]);
    let explained = rows("EXPLAIN PLAN FOR SELECT COUNT(*) FROM events WHERE country = 'US'");
    let plan: Json = serde_json::from_str(explained[0][0].as_str().unwrap()).unwrap();
    assert_eq!(plan[0]["query"]["queryType"], json!("timeseries"));
    assert_eq!(
        explained[0][1],
        json!(r#"[{"name":"events","type":"DATASOURCE"}]"#)
    );
    assert_eq!(
        rows_in(
            "SELECT __time, country FROM events",
            json!({"sqlOuterLimit": 3})
        )
        .len(),
        3
    );
    let exact = rows_in(
        "SELECT country, SUM(clicks) FROM events GROUP BY country ORDER BY 2 DESC LIMIT 2",
        json!({"useApproximateTopN": false}),
    );
    assert_eq!(
        exact,
        vec![vec![json!("US"), json!(22)], vec![json!("FR"), json!(9)]]
    );
}
