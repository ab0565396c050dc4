//! # grove — the Grove binary
//!
//! Role: the command line and, as the cluster issues land, the roles (coordinator, overlord,
//! historical, indexer, broker, router) and the HTTP API. Today it runs batch ingestion locally
//! (`grove index SPEC.json`) and inspects segment files (`grove inspect FILE`); the server
//! commands (`quickstart`, `ingest`, `sql`) come with the query engine.
//!
//! Errors are reported with `anyhow` here at the edge; library crates return typed errors.

mod cluster;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use grove_segment::deep_storage::{LoadSpec, LocalDeepStorage};
use grove_segment::format::{Compression, DimensionReader, MetricReader, Segment, WriteOptions};
use grove_segment::ingest::{BatchOptions, run_batch};
use grove_segment::time::format_iso;

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
