//! Memory bounds of the real `grove serve` with its default limits, over 2,000,000 rows in 24
//! hourly segments (`user` ~1M values, `session` ~670k: grouping by both makes about one group
//! per row): queries that would build answers of hundreds of megabytes fail with an error
//! naming the limit, or answer within it, and the server's anonymous resident memory (heap,
//! read from `/proc/<pid>/status` every few milliseconds while each query runs; the mapped
//! segment files are not counted) stays under [`RSS_ANON_MAX_MIB`].
//!
//! Without the bounds, an unbounded scan of 1M such rows built a 79 MB answer and took the
//! server's resident memory to 1.5 GB.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{Server, assert_druid_error, high_cardinality_task};
use serde_json::{Value, json};

const ROWS: u64 = 2_000_000;

/// The stated bound on the server's anonymous resident memory while any of these queries runs.
const RSS_ANON_MAX_MIB: u64 = 512;

/// The server's anonymous resident memory now, in KiB (`RssAnon` in `/proc/<pid>/status`).
fn rss_anon_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("RssAnon in /proc status")
}

/// Runs `request` while sampling the server's anonymous resident memory; its answer and the
/// peak seen (MiB).
fn with_peak<T>(server: &Server, request: impl FnOnce() -> T) -> (T, u64) {
    let pid = server.pid();
    let peak = Arc::new(AtomicU64::new(rss_anon_kib(pid)));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                peak.fetch_max(rss_anon_kib(pid), Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let answer = request();
    peak.fetch_max(rss_anon_kib(pid), Ordering::SeqCst);
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    (answer, peak.load(Ordering::SeqCst) / 1024)
}

fn day() -> Value {
    json!(["2024-01-01/2024-01-02"])
}

#[test]
fn queries_over_millions_of_rows_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start("serve", dir.path());
    let task = high_cardinality_task(dir.path(), "big", ROWS, "hour");
    let status = server.run_task(&task);
    assert_eq!(status["status"], "SUCCESS", "{status}");
    let native = |query: Value| server.post("/druid/v2", &query.to_string());
    let mut peaks = Vec::new();
    let mut check = |name: &str, peak_mib: u64| {
        println!("{name}: peak RssAnon {peak_mib} MiB");
        peaks.push((name.to_owned(), peak_mib));
    };
    let (_, idle) = with_peak(&server, || ());
    check("after ingestion", idle);

    // A scan of every row without a limit: refused before any row is written.
    let scan = json!({"queryType": "scan", "dataSource": "big", "intervals": day()});
    let ((code, body), peak) = with_peak(&server, || native(scan.clone()));
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "Resource limit exceeded", "{body}");
    assert_druid_error(&body, "more than 1,000,000 rows (maxScanRows)");
    check("scan without a limit", peak);

    // The row bound raised past the rows: the answer stops at the server's byte bound.
    let mut raised = scan.clone();
    raised["context"] = json!({"maxScanRows": 10_000_000});
    let ((code, body), peak) = with_peak(&server, || native(raised));
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "larger than 67,108,864 bytes");
    assert_druid_error(&body, "--result-bytes-max");
    check("scan with maxScanRows raised", peak);

    // SQL's SELECT * is the same scan.
    let ((code, body), peak) = with_peak(&server, || {
        server.post(
            "/druid/v2/sql",
            &json!({"query": "SELECT * FROM big"}).to_string(),
        )
    });
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "maxScanRows");
    check("SQL SELECT *", peak);

    // Time-ordered: without a limit it passes the row bound; with one past
    // maxRowsQueuedForOrdering it answers, holding no more than its limit's rows.
    let mut ordered = scan.clone();
    ordered["order"] = json!("descending");
    let ((code, body), peak) = with_peak(&server, || native(ordered.clone()));
    assert_eq!(code, 400, "{body}");
    assert_druid_error(&body, "maxScanRows");
    check("time-ordered scan without a limit", peak);
    ordered["limit"] = json!(150_000);
    ordered["columns"] = json!(["__time", "user"]);
    let ((code, body), peak) = with_peak(&server, || native(ordered.clone()));
    assert_eq!(code, 200, "{body:.300}");
    let times: Vec<i64> = body
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|batch| batch["events"].as_array().unwrap().clone())
        .map(|e| e["__time"].as_i64().unwrap())
        .collect();
    assert_eq!(times.len(), 150_000);
    assert!(
        times.windows(2).all(|w| w[0] >= w[1]),
        "not in descending time"
    );
    assert_eq!(
        times[0],
        1_704_067_200_000 + (ROWS - 1) as i64 * 86_400_000 / ROWS as i64
    );
    check("time-ordered scan of 150,000 rows", peak);

    // groupBy over two high-cardinality dimensions with a small limit: about one group per
    // row, the top ten answered (or a clear error naming a limit).
    let group_by = json!({
        "queryType": "groupBy", "dataSource": "big", "granularity": "all", "intervals": day(),
        "dimensions": ["user", "session"],
        "aggregations": [{"type": "longSum", "name": "v", "fieldName": "v"}],
        "limitSpec": {"type": "default", "limit": 10,
                      "columns": [{"dimension": "v", "direction": "descending"}]}
    });
    let ((code, body), peak) = with_peak(&server, || native(group_by));
    match code {
        200 => assert_eq!(body.as_array().unwrap().len(), 10, "{body}"),
        400 => assert_eq!(body["error"], "Resource limit exceeded", "{body}"),
        _ => panic!("groupBy: {code} {body}"),
    }
    check("groupBy user x session, limit 10", peak);

    // topN ranked by a post-aggregator over a dimension of ~1M values.
    let top_n = json!({
        "queryType": "topN", "dataSource": "big", "granularity": "all", "intervals": day(),
        "dimension": "user", "threshold": 10, "metric": "per_row",
        "aggregations": [
            {"type": "longSum", "name": "v", "fieldName": "v"},
            {"type": "count", "name": "rows"}
        ],
        "postAggregations": [{"type": "arithmetic", "name": "per_row", "fn": "/", "fields": [
            {"type": "fieldAccess", "fieldName": "v"}, {"type": "fieldAccess", "fieldName": "rows"}
        ]}]
    });
    let ((code, body), peak) = with_peak(&server, || native(top_n));
    match code {
        200 => assert_eq!(body[0]["result"].as_array().unwrap().len(), 10, "{body}"),
        400 => assert_eq!(body["error"], "Resource limit exceeded", "{body}"),
        _ => panic!("topN: {code} {body}"),
    }
    check("topN by a post-aggregator", peak);

    for (name, peak_mib) in &peaks {
        assert!(
            *peak_mib < RSS_ANON_MAX_MIB,
            "{name}: the server's anonymous resident memory reached {peak_mib} MiB, over the \
             bound of {RSS_ANON_MAX_MIB} MiB"
        );
    }
}
