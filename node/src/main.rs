//! # grove — the Grove binary
//!
//! Role: the command line, and the single-process server with every role and the
//! Druid-compatible HTTP API. Commands: `quickstart` (serve, with a bundled sample ingested at
//! first start), `serve`, the clients of a running server (`ingest`, `sql`), local batch
//! ingestion without a server (`index`), `inspect` for segment files, and `cluster` credentials.
//!
//! Modules: `server` (HTTP API, metadata, segment cache, task runner), `client` (`ingest`,
//! `sql`), `sample` (the quickstart data set), `cluster` (credentials).
//!
//! Errors are reported with `anyhow` here at the edge; library crates return typed errors.

mod client;
mod cluster;
mod sample;
mod server;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use grove_segment::deep_storage::{LoadSpec, LocalDeepStorage};
use grove_segment::format::{Compression, DimensionReader, MetricReader, Segment, WriteOptions};
use grove_segment::ingest::{BatchOptions, run_batch};
use grove_segment::time::format_iso;

/// mimalloc: queries allocate and free many small values (group keys, result rows, parsed
/// JSON) from many threads at once, where it spends a fraction of glibc malloc's time.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "grove",
    version,
    about = "Grove: a real-time analytical data store"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs every role in one process with the HTTP API on 127.0.0.1:PORT; at first start it
    /// generates a sample Wikipedia-edits data set and ingests it into `wikipedia`.
    Quickstart {
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Runs every role in one process with the HTTP API, without the sample data.
    Serve {
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Submits an ingestion spec to a running server and follows the task until it ends.
    Ingest {
        /// The ingestion spec (Druid `index_parallel` / `index` task JSON). Local input paths
        /// are read by the server, relative to its working directory.
        spec: PathBuf,
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
    },
    /// Runs a SQL query on a running server and prints the result as a table.
    Sql {
        query: String,
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
    },
    /// Runs a Druid batch ingestion spec locally: reads its input, rolls it up, writes segments
    /// into local deep storage and prints what it built.
    Index {
        /// The ingestion spec (Druid `index_parallel` / `index` task JSON).
        spec: PathBuf,
        /// Local deep storage directory.
        #[arg(long, default_value = "var/grove/deep-storage")]
        deep_storage: PathBuf,
        /// Scratch directory for spills (default: a `tmp` folder beside deep storage).
        #[arg(long)]
        work_dir: Option<PathBuf>,
        /// How segment columns are stored.
        #[arg(long, value_enum, default_value_t = CompressionArg::None)]
        compression: CompressionArg,
    },
    /// Prints a segment file's metadata and columns after verifying every checksum.
    Inspect {
        /// A segment file (`index.grove` in deep storage).
        file: PathBuf,
    },
    /// Cluster credentials: the CA (`init`) and node certificates (`issue-cert`).
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
}

const DEFAULT_URL: &str = "http://127.0.0.1:8888";

#[derive(clap::Args)]
struct ServeArgs {
    /// Where metadata, deep storage, the segment cache and the sample live.
    #[arg(long, default_value = "var/quickstart")]
    dir: PathBuf,
    /// The API's port (0 picks a free one and prints it).
    #[arg(long, default_value_t = 8888)]
    port: u16,
    /// The address the API binds to.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Query timeout when a query's context sets none (ms; 0 = the maximum).
    #[arg(long, default_value_t = server::NodeConfig::default().query_timeout_ms_default)]
    query_timeout_ms: u64,
    /// The longest any query may run (ms): `timeout: 0` (none) runs until it, a larger
    /// `context.timeout` is refused.
    #[arg(long, default_value_t = server::NodeConfig::default().query_timeout_ms_max)]
    query_timeout_max_ms: u64,
    /// Rows a scan may return unless its context raises `maxScanRows`.
    #[arg(long, default_value_t = server::NodeConfig::default().scan_rows_max)]
    scan_rows_max: u64,
    /// Bytes of one query's answer (its JSON, CSV or lines text); a query whose answer would
    /// be larger fails naming this limit.
    #[arg(long, default_value_t = server::NodeConfig::default().result_bytes_max)]
    result_bytes_max: u64,
    /// The largest request body (bytes); larger ones are refused (413).
    #[arg(long, default_value_t = server::NodeConfig::default().request_bytes_max)]
    request_bytes_max: usize,
    /// Bytes of request bodies held at once, being read, parsed or run; a body that does not
    /// fit is refused (429).
    #[arg(long, default_value_t = server::NodeConfig::default().request_bytes_in_flight_max)]
    request_bytes_in_flight_max: u64,
    /// Ingestion tasks running at once; more are refused.
    #[arg(long, default_value_t = server::NodeConfig::default().tasks_running_max)]
    tasks_running_max: usize,
    /// Queries running at once; more are refused.
    #[arg(long, default_value_t = server::NodeConfig::default().queries_running_max)]
    queries_running_max: usize,
    /// Of the running queries, those processing at once (0: one more than the cores); the rest
    /// wait their turn by `context.priority` (higher first), then in arrival order.
    #[arg(long, default_value_t = server::NodeConfig::default().queries_processing_max)]
    queries_processing_max: usize,
    /// Longest a metadata read or write waits for the metadata group (ms); past it the API
    /// answers 503.
    #[arg(long, default_value_t = server::NodeConfig::default().metadata_timeout_ms)]
    metadata_timeout_ms: u64,
}

impl ServeArgs {
    fn config(&self) -> server::NodeConfig {
        server::NodeConfig {
            query_timeout_ms_default: self.query_timeout_ms,
            query_timeout_ms_max: self.query_timeout_max_ms.max(1),
            scan_rows_max: self.scan_rows_max,
            result_bytes_max: self.result_bytes_max,
            request_bytes_max: self.request_bytes_max,
            request_bytes_in_flight_max: self.request_bytes_in_flight_max,
            tasks_running_max: self.tasks_running_max.max(1),
            queries_running_max: self.queries_running_max.max(1),
            queries_processing_max: self.queries_processing_max,
            metadata_timeout_ms: self.metadata_timeout_ms.max(1),
            ..server::NodeConfig::default()
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum CompressionArg {
    /// Uncompressed, memory-mapped: the hot-scan format.
    None,
    /// zstd per column blob: smaller, for cold tiers and transfer.
    Zstd,
}

fn main() -> std::process::ExitCode {
    // Errors are for people: one line with its causes, no backtrace.
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Quickstart { serve } => quickstart(serve),
        Command::Serve { serve } => {
            server::run(&serve.dir, &serve.host, serve.port, serve.config(), |_| {
                Ok(())
            })
        }
        Command::Ingest { spec, url } => client::ingest(&spec, &url),
        Command::Sql { query, url } => client::sql(&query, &url),
        Command::Index {
            spec,
            deep_storage,
            work_dir,
            compression,
        } => index(spec, deep_storage, work_dir, compression),
        Command::Inspect { file } => inspect(file),
        Command::Cluster { command } => cluster::run(command),
    }
}

/// `serve`, plus the sample ingested at first start and example queries printed.
fn quickstart(args: ServeArgs) -> anyhow::Result<()> {
    let dir = args.dir.clone();
    server::run(
        &args.dir,
        &args.host,
        args.port,
        args.config(),
        move |node| {
            let url = format!("http://{}", node.host);
            if node.store.data_sources()?.is_empty() {
                let sample_dir = sample::write_sample(&dir)?;
                let task = sample::sample_task(&sample_dir)?;
                let id = server::submit_task(node, &task).map_err(|e| anyhow::anyhow!("{e}"))?;
                println!(
                    "ingesting {} sample rows into '{}' as task {id}\n  follow it: curl {url}/druid/indexer/v1/task/{id}/status",
                    sample::SAMPLE_ROWS,
                    sample::SAMPLE_DATA_SOURCE
                );
            }
            println!(
                "try:\n  curl -s -X POST {url}/druid/v2/sql -H 'Content-Type: application/json' \\\n    -d '{{\"query\": \"SELECT channel, SUM(added) AS added FROM wikipedia GROUP BY channel ORDER BY added DESC\"}}'\n  curl -s -X POST '{url}/druid/v2?pretty' -H 'Content-Type: application/json' \\\n    -d '{{\"queryType\": \"timeseries\", \"dataSource\": \"wikipedia\", \"granularity\": \"hour\", \"intervals\": [\"2016-06-27/2016-06-28\"], \"aggregations\": [{{\"type\": \"longSum\", \"name\": \"edits\", \"fieldName\": \"count\"}}]}}'\n  grove sql \"SELECT COUNT(*) FROM wikipedia\" --url {url}"
            );
            Ok(())
        },
    )
}

fn index(
    spec_path: PathBuf,
    deep_storage: PathBuf,
    work_dir: Option<PathBuf>,
    compression: CompressionArg,
) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let task = grove_segment::spec::parse_task(&text)?;
    let started = Instant::now();
    let version = format_iso(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("system clock before 1970")?
            .as_millis() as i64,
    );
    let work_dir = work_dir.unwrap_or_else(|| deep_storage.with_file_name("tmp"));
    let options = BatchOptions {
        work_dir,
        version,
        write: WriteOptions {
            compression: match compression {
                CompressionArg::None => Compression::None,
                CompressionArg::Zstd => Compression::Zstd { level: 3 },
            },
        },
        threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
        split_bytes_min: grove_segment::ingest::SPLIT_BYTES_MIN,
    };
    let storage = LocalDeepStorage::new(&deep_storage);
    let result = run_batch(&task.spec, &storage, &options)?;
    let seconds = started.elapsed().as_secs_f64();
    let report = &result.report;
    println!(
        "ingested {} rows into {} segment(s) in {:.2}s ({:.0} rows/s); {} unparseable, {} thrown away, {} spill(s)",
        report.processed,
        result.segments.len(),
        seconds,
        report.processed as f64 / seconds.max(1e-9),
        report.unparseable,
        report.thrown_away,
        result.spills,
    );
    for error in &report.errors {
        println!("  parse error: {error}");
    }
    for segment in &result.segments {
        let LoadSpec::Local { path } = &segment.load_spec;
        println!(
            "{}  rows={} bytes={} partitions={}  {}",
            segment.meta.id,
            segment.meta.num_rows,
            segment.bytes,
            segment.core_partitions,
            path.display()
        );
    }
    if result.segments.is_empty() {
        bail!("no rows were ingested: {}", report.summary());
    }
    Ok(())
}

fn inspect(file: PathBuf) -> anyhow::Result<()> {
    let segment = Segment::open(&file)?;
    segment.verify()?;
    let meta = segment.meta();
    println!("segment   {}", meta.id);
    println!("interval  {}", meta.id.interval);
    println!(
        "rows      {} ({} .. {})",
        meta.num_rows,
        format_iso(meta.time_min_ms),
        format_iso(meta.time_max_ms)
    );
    println!(
        "rollup    {} (query granularity {})",
        meta.schema.rollup,
        serde_json::to_string(&meta.schema.query_granularity)?
    );
    println!(
        "bytes     {} (all checksums verified)",
        segment.file_bytes()
    );
    for dim in &meta.schema.dimensions {
        let description = match segment.dimension(&dim.name)? {
            Some(DimensionReader::String(column)) => format!(
                "string, {} distinct values{}{}",
                column.dictionary_len(),
                if column.is_multi_value() {
                    ", multi-value"
                } else {
                    ""
                },
                if column.has_null() { ", has nulls" } else { "" },
            ),
            Some(DimensionReader::Long { .. }) => "long".to_owned(),
            Some(DimensionReader::Double { .. }) => "double".to_owned(),
            None => "missing".to_owned(),
        };
        println!("dimension {:<20} {description}", dim.name);
    }
    for metric in &meta.schema.metrics {
        let description = match segment.metric(&metric.name)? {
            Some(MetricReader::Long(column)) => format!("long, sum {}", column.sum()),
            Some(MetricReader::Double(column)) => format!("double, sum {}", column.sum()),
            Some(MetricReader::Sketch(column)) => format!("sketch, {} rows", column.len()),
            None => "missing".to_owned(),
        };
        println!("metric    {:<20} {description}", metric.name);
    }
    Ok(())
}
