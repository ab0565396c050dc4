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
    pub data: PathBuf,
    pub grove: server::Grove,
    /// Seconds from submitting each layout's task until every row is queryable, in the order
    /// ingested.
    pub ingest_s: Vec<f64>,
}

impl Prepared {
    /// The advertiser-first datasource only (`in_filter_qps`).
    pub fn new() -> Prepared {
        Prepared::with(&[(server::DATA_SOURCE, true)])
    }

    /// Ingests each `(datasource, sorted by advertiser first)`, one task after the other.
    pub fn with(layouts: &[(&str, bool)]) -> Prepared {
        let rows = rows();
        let data = data::ensure_data(&data_dir(), rows);
        let grove = server::Grove::start();
        let mut ingest_s = Vec::new();
        for &(data_source, by_advertiser) in layouts {
            println!(
                "grove: serving at {}; ingesting {rows} rows into {data_source} (roll-up off, {})",
                grove.url,
                if by_advertiser {
                    "advertiser first"
                } else {
                    "time first"
                }
            );
            let task_s = grove
                .ingest(&data, data_source, by_advertiser)
                .as_secs_f64();
            let load_s = grove.wait_queryable(rows, data_source).as_secs_f64();
            let total = task_s + load_s;
            println!(
                "grove: ingested {rows} rows in {total:.1} s ({:.0} rows/s, JSON over the API, \
                 one task; task SUCCESS after {task_s:.1} s, every row queryable {load_s:.1} s later)",
                rows as f64 / total
            );
            ingest_s.push(total);
        }
        Prepared {
            rows,
            data,
            grove,
            ingest_s,
        }
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
