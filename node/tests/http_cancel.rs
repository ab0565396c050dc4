//! Stopping queries through the HTTP API of the real `grove` binary: `DELETE /druid/v2/{id}`
//! and `DELETE /druid/v2/sql/{id}` cancel a running query, a client that disconnects cancels
//! its query, a query waiting for its turn gives up at its deadline, and the server's maximum
//! timeout bounds `timeout: 0`.
//!
//! The slow query is a distinct count of (user, session) pairs over 500,000 rows in 24 hourly
//! segments (seconds in a debug build); the server lets one query process at a time and no
//! query run past 1.5 s. No assertion depends on how long anything takes: each step waits for
//! what it expects to see, and a query can only fail in the expected way if it was stopped.

mod common;

use std::io::{Read, Write};
use std::time::Duration;

use common::{Server, assert_druid_error, high_cardinality_task};
use serde_json::{Value, json};

const TIMEOUT_MAX_MS: &str = "1500";

/// A query over every row that takes seconds: two distinct counts of row pairs.
fn slow_query(context: Value) -> Value {
    json!({
        "queryType": "timeseries", "dataSource": "big", "granularity": "all",
        "intervals": ["2024-01-01/2024-01-02"],
        "aggregations": [
            {"type": "cardinality", "name": "pairs", "fields": ["user", "session"], "byRow": true},
            {"type": "cardinality", "name": "pairs_reversed", "fields": ["session", "user"], "byRow": true}
        ],
        "context": context
    })
}

#[test]
fn queries_stop_when_deleted_disconnected_or_out_of_time() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(
        "serve",
        dir.path(),
        &[
            "--queries-processing-max",
            "1",
            "--query-timeout-max-ms",
            TIMEOUT_MAX_MS,
        ],
    );
    let task = high_cardinality_task(dir.path(), "big", 500_000, "hour");
    let status = server.run_task(&task);
    assert_eq!(status["status"], "SUCCESS", "{status}");

    // DELETE /druid/v2/{queryId}: the running query ends with Druid's cancellation error.
    let (code, body) = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let query = slow_query(json!({"queryId": "slow-native", "timeout": 0}));
            server.post("/druid/v2", &query.to_string())
        });
        while !running.is_finished() {
            assert_eq!(server.delete("/druid/v2/slow-native"), 202);
            std::thread::sleep(Duration::from_millis(20));
        }
        running.join().unwrap()
    });
    assert_eq!(code, 500, "{body}");
    assert_eq!(body["error"], "Query cancelled", "{body}");
    assert_druid_error(&body, "DELETE /druid/v2/slow-native");
    server.wait_printed("query 'slow-native' was cancelled (DELETE");

    // DELETE /druid/v2/sql/{sqlQueryId}: 404 while no such query runs, 202 once it does.
    assert_eq!(server.delete("/druid/v2/sql/nothing-runs"), 404);
    let (code, body) = std::thread::scope(|scope| {
        let running = scope.spawn(|| {
            let sql = json!({
                "query": "SELECT \"user\", \"session\", COUNT(*) AS n FROM big GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 5",
                "context": {"sqlQueryId": "slow-sql"}
            });
            server.post("/druid/v2/sql", &sql.to_string())
        });
        while server.delete("/druid/v2/sql/slow-sql") != 202 {
            assert!(
                !running.is_finished(),
                "the SQL query ended before it was cancelled"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        running.join().unwrap()
    });
    assert_eq!(code, 500, "{body}");
    assert_druid_error(&body, "query 'slow-sql' was cancelled");

    // A client that goes away cancels its query; the query's slot and turn come back once
    // its work has stopped, so the next query runs.
    let address = server.url.trim_start_matches("http://").to_owned();
    let mut client = std::net::TcpStream::connect(&address).unwrap();
    let body = slow_query(json!({"queryId": "gone", "timeout": 0})).to_string();
    write!(
        client,
        "POST /druid/v2 HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    client.flush().unwrap();
    // Let the server read the request before the client leaves.
    std::thread::sleep(Duration::from_millis(300));
    drop(client);
    let line = server.wait_printed("query 'gone' was cancelled: its client disconnected");
    assert!(line.contains("stopped after"), "{line}");
    let count = json!({
        "queryType": "timeseries", "dataSource": "big", "granularity": "all",
        "intervals": ["2024-01-01/2024-01-02"], "aggregations": [{"type": "count", "name": "n"}]
    });
    let (code, body) = server.post("/druid/v2", &count.to_string());
    assert_eq!(
        (code, body[0]["result"]["n"].clone()),
        (200, json!(500_000))
    );

    // A query waiting for its turn gives up at its deadline, while the holder runs on.
    let (code, body) = std::thread::scope(|scope| {
        let holder = scope.spawn(|| {
            let query = slow_query(json!({"queryId": "holder", "timeout": 0}));
            server.post("/druid/v2", &query.to_string())
        });
        // Let the holder take the only turn.
        std::thread::sleep(Duration::from_millis(300));
        let mut waiting = count.clone();
        waiting["context"] = json!({"timeout": 200});
        let answer = server.post("/druid/v2", &waiting.to_string());
        assert!(
            !holder.is_finished(),
            "the holder ended before the waiter gave up"
        );
        assert_eq!(server.delete("/druid/v2/holder"), 202);
        let (code, body) = holder.join().unwrap();
        assert_eq!(code, 500, "{body}");
        answer
    });
    assert_eq!(code, 504, "{body}");
    assert_eq!(body["error"], "Query timeout", "{body}");
    assert_druid_error(&body, "while waiting for its turn");

    // `timeout: 0` runs until the server's maximum, not forever; a timeout past the maximum
    // is refused.
    let (code, body) = server.post("/druid/v2", &slow_query(json!({"timeout": 0})).to_string());
    assert_eq!(code, 504, "{body}");
    assert_druid_error(&body, "--query-timeout-max-ms");
    let (code, body) = server.post(
        "/druid/v2",
        &slow_query(json!({"timeout": 86_400_000})).to_string(),
    );
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "more than the server's limit of 1,500 ms");

    // The query id comes back in Druid's header, and every slot is free again.
    let response = raw_post(&address, "/druid/v2", &count.to_string());
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.to_ascii_lowercase().contains("x-druid-query-id: "),
        "{response}"
    );
}

/// A `Connection: close` POST over a plain socket; the whole response as text.
fn raw_post(address: &str, path: &str, body: &str) -> String {
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\n\
         Connection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}
