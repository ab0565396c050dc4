//! Query results through the HTTP API of the real `grove` binary: a native timeseries and SQL
//! `COUNT(*)` in several result formats over ingested data, and re-ingestion that overshadows
//! rather than doubles.

mod common;

use common::{Server, edits_task};
use serde_json::{Value, json};

fn count_query() -> Value {
    json!({
        "queryType": "timeseries",
        "dataSource": "edits",
        "granularity": "all",
        "intervals": ["2024-01-01/2024-01-03"],
        "aggregations": [
            {"type": "longSum", "name": "rows", "fieldName": "count"},
            {"type": "longSum", "name": "added", "fieldName": "added"}
        ],
        "context": {"timeout": 60000}
    })
}

fn expected_count() -> Value {
    json!([{"timestamp": "2024-01-01T00:00:00.000Z", "result": {"rows": 10, "added": 450}}])
}

#[test]
fn native_and_sql_count_the_ingested_rows() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("serve", dir.path());
    assert_eq!(server.run_task(&edits_task("edits"))["status"], "SUCCESS");

    let (code, result) = server.post("/druid/v2", &count_query().to_string());
    assert_eq!(code, 200, "{result}");
    assert_eq!(result, expected_count());
    let (code, pretty) = server.post("/druid/v2?pretty", &count_query().to_string());
    assert_eq!((code, pretty), (200, expected_count()));

    let sql = |body: Value| server.post("/druid/v2/sql", &body.to_string());
    let query = "SELECT COUNT(*) AS n FROM edits";
    let (code, rows) = sql(json!({"query": query}));
    assert_eq!((code, rows), (200, json!([{"n": 10}])));
    let (code, rows) = sql(json!({"query": query, "resultFormat": "array", "header": true}));
    assert_eq!((code, rows), (200, json!([["n"], [10]])));
    let (code, text) = sql(json!({"query": query, "resultFormat": "csv", "header": true}));
    assert_eq!((code, text), (200, json!("n\n10\n\n")));
}

#[test]
fn reingesting_an_interval_overshadows_the_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("serve", dir.path());
    assert_eq!(server.run_task(&edits_task("edits"))["status"], "SUCCESS");
    assert_eq!(server.run_task(&edits_task("edits"))["status"], "SUCCESS");
    let (code, result) = server.post("/druid/v2", &count_query().to_string());
    assert_eq!((code, result), (200, expected_count()));
    drop(server);
    // After a restart only the newest version is loaded.
    let server = Server::start("serve", dir.path());
    let (code, result) = server.post("/druid/v2", &count_query().to_string());
    assert_eq!((code, result), (200, expected_count()));
}
