//! Ingestion throughput: newline JSON → readers → roll-up → persisted segment in local deep
//! storage, single-threaded (so rows/s is rows/s per core), for the dimension mixes of Druid's
//! Kafka indexing table, each with one value field under longSum, longMin and longMax (and count).
//!
//! Reference, printed as a ratio: Druid's published events/s per indexing task for the same mixes.
//! Data: one hour of rows, queryGranularity MINUTE, segmentGranularity HOUR; low-cardinality
//! dimensions draw from 20 values, high-cardinality ones from 100,000, uniformly, from a fixed seed.
//!
//! `GROVE_BENCH_ROWS` sets the rows per mix (default 1,000,000; wide mixes use fewer so each input
//! file stays under ~256 MB); `GROVE_BENCH_MIX=50_high` runs one mix. Writes `grove-bench/ingest.json` (keys: mix names, rows/s/core).

#[allow(dead_code)] // shares the module with the segment bench and tests
#[path = "common/mod.rs"]
mod common;

use std::io::Write;
use std::time::Instant;

use grove_segment::deep_storage::LocalDeepStorage;
use grove_segment::format::WriteOptions;
use grove_segment::ingest::{BatchOptions, run_batch};

/// (key, low-cardinality dims, high-cardinality dims, Druid events/s per task)
const MIXES: &[(&str, usize, usize, f64)] = &[
    ("1_low", 1, 0, 160_000.0),
    ("1_high", 0, 1, 80_000.0),
    ("5_low", 5, 0, 70_000.0),
    ("5_low_1_high", 5, 1, 60_000.0),
    ("10_low_1_high", 10, 1, 50_000.0),
    ("10_low_3_high", 10, 3, 40_000.0),
    ("30_low", 30, 0, 30_000.0),
    ("50_low", 50, 0, 25_000.0),
    ("50_high", 0, 50, 15_000.0),
];

fn write_input(path: &std::path::Path, rows: usize, low: usize, high: usize) -> u64 {
    let mut rng = common::Rng(42 + (low * 100 + high) as u64);
    let file = std::fs::File::create(path).expect("create input");
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    let hour_ms: u64 = 3_600_000;
    let base_ms: i64 = 1_704_067_200_000; // 2024-01-01T00:00:00Z
    let mut bytes = 0u64;
    let mut line = String::with_capacity(1024);
    for i in 0..rows {
        line.clear();
        let ms = base_ms + (i as u64 * hour_ms / rows as u64) as i64;
        let rem = ms - base_ms;
        let (m, s, milli) = (rem / 60_000, rem % 60_000 / 1000, rem % 1000);
        line.push_str(&format!(
            "{{\"timestamp\":\"2024-01-01T00:{m:02}:{s:02}.{milli:03}Z\""
        ));
        for d in 0..low {
            line.push_str(&format!(",\"low{d}\":\"v{}\"", rng.below(20)));
        }
        for d in 0..high {
            line.push_str(&format!(",\"high{d}\":\"user-{}\"", rng.below(100_000)));
        }
        line.push_str(&format!(",\"value\":{}}}\n", rng.below(1000)));
        bytes += line.len() as u64;
        out.write_all(line.as_bytes()).expect("write input");
    }
    out.flush().expect("flush input");
    bytes
}

fn spec_json(dir: &std::path::Path, low: usize, high: usize) -> String {
    let dims: Vec<String> = (0..low)
        .map(|d| format!("\"low{d}\""))
        .chain((0..high).map(|d| format!("\"high{d}\"")))
        .collect();
    format!(
        r#"{{"type":"index_parallel","spec":{{
  "dataSchema":{{"dataSource":"bench",
    "timestampSpec":{{"column":"timestamp","format":"iso"}},
    "dimensionsSpec":{{"dimensions":[{}]}},
    "metricsSpec":[{{"type":"count","name":"count"}},
      {{"type":"longSum","name":"sum","fieldName":"value"}},
      {{"type":"longMin","name":"min","fieldName":"value"}},
      {{"type":"longMax","name":"max","fieldName":"value"}}],
    "granularitySpec":{{"segmentGranularity":"hour","queryGranularity":"minute","rollup":true}}}},
  "ioConfig":{{"type":"index_parallel","inputSource":{{"type":"local","baseDir":"{}","filter":"*.json"}},"inputFormat":{{"type":"json"}}}},
  "tuningConfig":{{"type":"index_parallel","maxRowsInMemory":1000000,"maxParseExceptions":0}}}}}}"#,
        dims.join(","),
        dir.display()
    )
}

fn main() {
    let rows_default: usize = std::env::var("GROVE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let scratch = tempfile::tempdir().expect("tempdir");
    let mut figures: Vec<(String, f64)> = Vec::new();
    let mut worst_ratio = f64::INFINITY;
    println!(
        "{:<16} {:>9} {:>9} {:>14} {:>14} {:>8}",
        "mix", "rows", "segment", "rows/s/core", "druid/task", "ratio"
    );
    let only = std::env::var("GROVE_BENCH_MIX").ok();
    for &(name, low, high, druid) in MIXES {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let row_bytes = 40 + low * 14 + high * 22;
        let rows = rows_default.min((256 << 20) / row_bytes).max(1000);
        let input_dir = scratch.path().join(name);
        std::fs::create_dir_all(&input_dir).expect("input dir");
        write_input(&input_dir.join("input.json"), rows, low, high);
        let spec = grove_segment::spec::parse_task(&spec_json(&input_dir, low, high))
            .expect("bench spec parses")
            .spec;
        let mut best = 0f64;
        let mut segment_rows = 0;
        for run in 0..3 {
            let storage = LocalDeepStorage::new(scratch.path().join(format!("deep-{name}-{run}")));
            let options = BatchOptions {
                work_dir: scratch.path().join(format!("work-{name}-{run}")),
                version: "2024-01-01T00:00:00.000Z".into(),
                write: WriteOptions::default(),
                threads: 1,
                split_bytes_min: grove_segment::ingest::SPLIT_BYTES_MIN,
            };
            let started = Instant::now();
            let result = run_batch(&spec, &storage, &options).expect("ingest");
            let seconds = started.elapsed().as_secs_f64();
            assert_eq!(result.report.processed, rows as u64, "every row ingested");
            segment_rows = result.segments.iter().map(|s| s.meta.num_rows).sum::<u64>();
            best = best.max(rows as f64 / seconds);
        }
        let ratio = best / druid;
        worst_ratio = worst_ratio.min(ratio);
        println!("{name:<16} {rows:>9} {segment_rows:>9} {best:>14.0} {druid:>14.0} {ratio:>7.1}x");
        figures.push((name.to_owned(), best.round()));
        std::fs::remove_dir_all(&input_dir).ok();
    }
    figures.push((
        "min_ratio_vs_druid".to_owned(),
        (worst_ratio * 100.0).round() / 100.0,
    ));
    let refs: Vec<(&str, f64)> = figures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let path = common::write_bench_json("ingest", &refs);
    println!(
        "worst ratio against Druid: {worst_ratio:.1}x; figures in {}",
        path.display()
    );
}
