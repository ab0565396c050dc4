//! Shared by grove-node's query benchmarks (`queries`, `in_filter_qps`): the ad-events data set
//! as CSV (`data`), the real server and its ingestion (`server`), the measured native queries
//! (`queries`) and the DuckDB reference (`duckdb`, driving `benches/duckdb_queries.py`).
//! Include with `#[path = "ads/mod.rs"] mod ads;` after including `common` at the crate root.

pub mod data;
pub mod duckdb;
pub mod queries;
pub mod server;

use std::path::PathBuf;

/// `GROVE_BENCH_ROWS`, default 10,000,000.
pub fn rows() -> u64 {
    env_number("GROVE_BENCH_ROWS", 10_000_000).max(1)
}

pub fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .replace('_', "")
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text} is not a whole number")),
        Err(_) => default,
    }
}

/// Where generated data lives: `grove-bench-data` beside the figures' `grove-bench` folder.
pub fn data_dir() -> PathBuf {
    crate::common::bench_dir().with_file_name("grove-bench-data")
}

/// The data set written (or reused), a server started, the data ingested: what both benchmarks
/// start from. Prints the ingest figures.
pub struct Prepared {
    pub rows: u64,
    pub csv: PathBuf,
    pub grove: server::Grove,
    pub ingest_s: f64,
}

impl Prepared {
    pub fn new() -> Prepared {
        let rows = rows();
        let csv = data::ensure_csv(&data_dir(), rows);
        let grove = server::Grove::start();
        println!(
            "grove: serving at {}; ingesting {rows} rows (roll-up off)",
            grove.url
        );
        let task_s = grove.ingest(&csv).as_secs_f64();
        let load_s = grove.wait_queryable(rows).as_secs_f64();
        let ingest_s = task_s + load_s;
        println!(
            "grove: ingested {rows} rows in {ingest_s:.1} s ({:.0} rows/s, CSV over the API, one task; \
             task SUCCESS after {task_s:.1} s, every row queryable {load_s:.1} s later)",
            rows as f64 / ingest_s
        );
        Prepared {
            rows,
            csv,
            grove,
            ingest_s,
        }
    }

    pub fn ingest_rows_per_s(&self) -> f64 {
        self.rows as f64 / self.ingest_s
    }
}

/// The value at quantile `q` (0..=1) of sorted `values` (nearest rank).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    quantile(&sorted, 0.5)
}
