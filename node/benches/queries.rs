//! `cargo bench -p grove-node --bench queries`: the latency of slice-and-dice queries on the
//! ad-events data set in two layouts, Grove (the real server over HTTP) against DuckDB
//! (in-process, same rows, same run).
//!
//! The data set is `segment/benches/segment.rs`'s rows (10M or `GROVE_BENCH_ROWS`) spread over
//! seven days, written once as JSON lines under `<target>/grove-bench-data/` and ingested twice
//! into one `grove serve` through the task API with roll-up off and DAY segments: `time` (Druid's
//! default order, time first) and `dim` (`forceSegmentSortByTime: false`, advertiser first).
//! Each query runs 2 times to warm up, then 15 timed times, on each layout; the figure is the
//! median round trip (request sent to answer read). The IN queries draw fresh advertisers every
//! run, with the seeds DuckDB uses. Grove is stopped before DuckDB loads the same file
//! (`benches/duckdb_queries.py`: one table in time order, a copy sorted by advertiser) and runs
//! the SQL equivalents. Every run's answer of both engines must agree (counts, sums, group
//! counts; HLL estimates within 5% of the exact count); the approximate topN reports its recall
//! of the exact top 100's clicks instead.
//!
//! Writes `<target>/grove-bench/queries.json`: `<q>_<layout>_ms` and `<q>_<layout>_duckdb_ms`
//! per query and layout (and the older `<q>_ms`, `<q>_duckdb_ms` for the advertiser-first
//! layout), `rows`, `ingest_s` (the time-first task, submitted to every row queryable),
//! `ingest_dim_s`, `duckdb_load_s`, `bytes_on_disk` and `bytes_on_disk_zstd` (the time-first
//! segments as written, and rewritten with zstd per blob), `bytes_on_disk_dim`.

// Shared with the segment benches; not every helper is used here.
#[allow(dead_code)]
#[path = "../../segment/benches/common/mod.rs"]
mod common;

// Shared with the in_filter_qps bench; not every helper is used here.
#[allow(dead_code)]
#[path = "ads/mod.rs"]
mod ads;

use std::time::Instant;

use ads::queries::{QUERIES, agree, body, is_sql, summary};
use ads::server::{DATA_SOURCE, DATA_SOURCE_TIME};

const WARMUPS: u64 = 2;
const RUNS: u64 = 15;

/// One query on one layout: the median ms and the answer summaries of every run.
type Measured = (f64, Vec<Vec<(&'static str, f64)>>);

/// (layout name, datasource).
const LAYOUTS: [(&str, &str); 2] = [("time", DATA_SOURCE_TIME), ("dim", DATA_SOURCE)];

fn main() {
    let prepared = ads::Prepared::with(&[(DATA_SOURCE_TIME, false), (DATA_SOURCE, true)]);
    let rows = prepared.rows;
    let agent = ads::server::agent();
    // [layout][query] -> (median ms, summaries of every run)
    let mut grove: Vec<Vec<Measured>> = Vec::new();
    for (layout, data_source) in LAYOUTS {
        let mut per_query = Vec::new();
        for key in QUERIES {
            let mut times = Vec::new();
            let mut checks = Vec::new();
            for run in 0..WARMUPS + RUNS {
                let text = body(key, run, data_source).to_string();
                let path = if is_sql(key) {
                    "/druid/v2/sql"
                } else {
                    "/druid/v2"
                };
                let started = Instant::now();
                let (status, answer) = prepared.grove.post_text(&agent, path, &text);
                let elapsed_ms = started.elapsed().as_secs_f64() * 1e3;
                assert_eq!(status, 200, "{key} on {layout}: {answer:.2000}");
                checks.push(summary(key, &ads::server::parse(&answer)));
                if run >= WARMUPS {
                    times.push(elapsed_ms);
                }
            }
            let ms = ads::median(&times);
            println!("grove: {key} {layout} {ms:.2} ms");
            per_query.push((ms, checks));
        }
        check_grove(rows, &per_query);
        grove.push(per_query);
    }
    let bytes_time = file_bytes(&prepared.grove.segment_files(DATA_SOURCE_TIME));
    let bytes_dim = file_bytes(&prepared.grove.segment_files(DATA_SOURCE));
    let bytes_zstd = zstd_bytes(&prepared.grove.segment_files(DATA_SOURCE_TIME));
    let ingest_s = prepared.ingest_s.clone();
    let data = prepared.data.clone();
    drop(prepared); // stop the server: DuckDB gets the machine to itself

    let duckdb = ads::duckdb::run(&data, rows, WARMUPS, RUNS);
    if let Some(d) = &duckdb {
        for ((layout, _), per_query) in LAYOUTS.iter().zip(&grove) {
            check_against_duckdb(layout, per_query, &d.answer["checks"][layout]);
        }
        println!("answers: grove and duckdb agree on every run of every query on both layouts");
    }

    println!();
    println!(
        "{rows} rows over 7 days (DAY segments); median of {RUNS} runs after {WARMUPS} warm-ups; ratio = duckdb / grove (> 1: Grove faster)"
    );
    if let Some(d) = &duckdb {
        println!(
            "DuckDB {} in-process with {} threads (its default: every core); Grove answers over HTTP + JSON from a separate process, so its figures include a round trip and JSON encoding that DuckDB's do not",
            d.answer["version"].as_str().unwrap_or("?"),
            d.answer["threads"]
        );
    }
    println!(
        "{:<26} {:>10} {:>10} {:>7} {:>10} {:>10} {:>7}",
        "query", "time ms", "duckdb", "ratio", "dim ms", "duckdb", "ratio"
    );
    let mut figures: Vec<(String, f64)> = Vec::new();
    let cell = |v: Option<f64>| v.map_or_else(|| "-".to_string(), |v| format!("{v:.2}"));
    for (q, key) in QUERIES.iter().enumerate() {
        let mut line = format!("{key:<26}");
        for (l, (layout, _)) in LAYOUTS.iter().enumerate() {
            let ms = grove[l][q].0;
            let reference = duckdb.as_ref().and_then(|d| d.ms(key, layout));
            line.push_str(&format!(
                " {ms:>10.2} {:>10} {:>7}",
                cell(reference),
                cell(reference.map(|r| r / ms))
            ));
            figures.push((format!("{key}_{layout}_ms"), ms));
            if let Some(r) = reference {
                figures.push((format!("{key}_{layout}_duckdb_ms"), r));
            }
            if *layout == "dim" {
                figures.push((format!("{key}_ms"), ms));
                if let Some(r) = reference {
                    figures.push((format!("{key}_duckdb_ms"), r));
                }
            }
        }
        println!("{line}");
    }
    println!(
        "ingest (JSON over the API, one task each): time-first {:.1} s, advertiser-first {:.1} s",
        ingest_s[0], ingest_s[1]
    );
    figures.push(("rows".into(), rows as f64));
    figures.push(("ingest_s".into(), ingest_s[0]));
    figures.push(("ingest_dim_s".into(), ingest_s[1]));
    figures.push(("ingest_rows_per_s".into(), rows as f64 / ingest_s[0]));
    if let Some(load_ms) = duckdb.as_ref().and_then(|d| d.answer["load_ms"].as_f64()) {
        println!(
            "duckdb load of the same JSON: {:.1} s (grove / duckdb: {:.2})",
            load_ms / 1e3,
            ingest_s[0] * 1e3 / load_ms
        );
        figures.push(("duckdb_load_s".into(), load_ms / 1e3));
    }
    println!(
        "bytes on disk: time-first {bytes_time} ({} MB), advertiser-first {bytes_dim} ({} MB), time-first with zstd {bytes_zstd} ({} MB)",
        bytes_time >> 20,
        bytes_dim >> 20,
        bytes_zstd >> 20
    );
    figures.push(("bytes_on_disk".into(), bytes_time as f64));
    figures.push(("bytes_on_disk_dim".into(), bytes_dim as f64));
    figures.push(("bytes_on_disk_zstd".into(), bytes_zstd as f64));
    let figures: Vec<(&str, f64)> = figures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let path = common::write_bench_json("queries", &figures);
    println!("figures written to {}", path.display());
}

fn file_bytes(files: &[std::path::PathBuf]) -> u64 {
    files
        .iter()
        .map(|f| std::fs::metadata(f).map_or(0, |m| m.len()))
        .sum()
}

/// The segments rewritten with every blob zstd-compressed (the cold option), in bytes.
fn zstd_bytes(files: &[std::path::PathBuf]) -> u64 {
    use grove_segment::format::{Compression, Segment, WriteOptions, write_segment_to};
    let options = WriteOptions {
        compression: Compression::Zstd { level: 3 },
    };
    let mut total = 0;
    for f in files {
        let Ok(segment) = Segment::open(f) else {
            continue;
        };
        let columns = segment.to_columns().expect("a served segment reads back");
        let mut out = std::io::sink();
        total += write_segment_to(&mut out, segment.meta(), &columns, &options)
            .expect("a segment rewrites");
    }
    total
}

/// Grove's answers are about the data ingested: every row counted, every query non-empty.
fn check_grove(rows: u64, per_query: &[Measured]) {
    let of = |key: &str, field: &str| -> f64 {
        let i = QUERIES.iter().position(|q| *q == key).expect("a query");
        per_query[i].1[0]
            .iter()
            .find(|(f, _)| *f == field)
            .map(|(_, v)| *v)
            .expect("a field")
    };
    assert_eq!(
        of("count", "rows"),
        rows as f64,
        "count(*) must see every row"
    );
    assert_eq!(of("groupby_country_device", "rows"), rows as f64);
    assert!(of("sum_by_hour", "buckets") >= 1.0 && of("sum_by_hour", "spend") > 0.0);
    assert!(of("topn_country", "rows") >= 1.0, "topN answered nothing");
    assert!(
        of("in_filter_1000", "groups") >= 1.0,
        "the IN query matched nothing"
    );
    assert!(of("approx_distinct", "campaigns") >= 1.0);
    assert!(of("count_distinct_exact", "distinct") >= 1.0);
}

/// Both engines computed the same answers, run by run (distinct-count estimates are checked
/// against DuckDB's exact count; the approximate topN's recall is printed).
fn check_against_duckdb(layout: &str, per_query: &[Measured], duckdb: &serde_json::Value) {
    for (key, (_, runs)) in QUERIES.iter().zip(per_query) {
        let reference_runs = duckdb[key]
            .as_array()
            .unwrap_or_else(|| panic!("duckdb has no checks for {key} on {layout}"));
        assert_eq!(reference_runs.len(), runs.len(), "{key}: runs");
        let mut recall: Vec<f64> = Vec::new();
        for (run, (fields, reference)) in runs.iter().zip(reference_runs).enumerate() {
            for (field, value) in fields {
                let expected = reference[field]
                    .as_f64()
                    .unwrap_or_else(|| panic!("duckdb has no check {key}.{field}: {reference}"));
                if *key == "topn_country" && *field == "clicks" {
                    // The approximate topN, as Druid's: each segment contributes its best
                    // 1,000 campaigns; report how much of the exact top 100 it holds.
                    recall.push(value / expected.max(1.0));
                    continue;
                }
                assert!(
                    agree(field, *value, expected),
                    "{key} on {layout}, run {run}: grove's {field} is {value}, duckdb's {expected}"
                );
            }
        }
        if !recall.is_empty() {
            println!(
                "topn_country on {layout}: grove's approximate top 100 hold {:.1}% of the exact top 100's clicks",
                100.0 * recall.iter().sum::<f64>() / recall.len() as f64
            );
        }
    }
}
