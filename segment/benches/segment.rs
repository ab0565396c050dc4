//! Segment format benchmark: size on disk and full-column scan speed against plain in-memory
//! vectors.
//!
//! Generates a deterministic ad-events data set (10M rows, or `GROVE_BENCH_ROWS`), builds its
//! `SegmentColumns` directly (sorted by time, strings dictionary-encoded), writes it hot
//! (uncompressed) and with zstd, memory-maps the hot file and times full scans of each column
//! type against a plain loop over a `Vec` of the same values (best of several runs each).
//! Prints a table and writes the figures to `<target>/grove-bench/segment.json`.
//!
//! Run: `cargo bench -p grove-segment --bench segment` (`GROVE_BENCH_ROWS=1000000` for a quick
//! run).

#[allow(dead_code)] // shares the module with the ingest bench and tests
#[path = "common/mod.rs"]
mod common;

use std::hint::black_box;
use std::time::Instant;

use grove_segment::columns::{
    DimensionColumn, DimensionData, MetricColumn, MetricData, SegmentColumns, StringRows,
};
use grove_segment::format::{
    Compression, DimensionReader, MetricReader, Segment, SegmentMeta, WriteOptions, write_segment,
};
use grove_segment::id::SegmentId;
use grove_segment::schema::{DimensionSchema, MetricKind, MetricSchema, Schema};
use grove_segment::time::{Granularity, Interval, MS_PER_DAY, format_iso};

const DAY_START_MS: i64 = 1_717_200_000_000; // 2024-06-01T00:00:00Z
const RUNS: usize = 7;

use common::{Rng, Zipf};

struct Dims {
    name: &'static str,
    values: Vec<String>,
}

fn dictionary(values: &[String]) -> Vec<Option<String>> {
    values.iter().cloned().map(Some).collect()
}

fn generate(rows: usize) -> (SegmentMeta, SegmentColumns, Vec<Dims>) {
    let mut rng = Rng(0x6772_6f76_6521);
    let dims = vec![
        Dims {
            name: "advertiser",
            values: (0..100_000).map(|i| format!("advertiser-{i:06}")).collect(),
        },
        Dims {
            name: "campaign",
            values: (0..1_000_000).map(|i| format!("campaign-{i:07}")).collect(),
        },
        Dims {
            name: "country",
            values: (0..200).map(|i| format!("C{i:03}")).collect(),
        },
        Dims {
            name: "device",
            values: ["desktop", "mobile", "tablet", "tv", "watch"]
                .map(String::from)
                .to_vec(),
        },
        Dims {
            name: "data_pack",
            values: (0..20).map(|i| format!("pack-{i:02}")).collect(),
        },
        Dims {
            name: "status_code",
            values: ["200", "500"].map(String::from).to_vec(),
        },
    ];
    let advertiser = Zipf::new(100_000, 1.0);
    let country = Zipf::new(200, 1.2);
    let device = Zipf::new(5, 1.5);

    let step_ms = MS_PER_DAY as f64 / rows.max(1) as f64;
    let mut time = Vec::with_capacity(rows);
    let mut ids: Vec<Vec<u32>> = (0..dims.len()).map(|_| Vec::with_capacity(rows)).collect();
    let (mut impressions, mut clicks, mut latency) = (
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
        Vec::with_capacity(rows),
    );
    let mut spend = Vec::with_capacity(rows);
    for i in 0..rows {
        let base = (i as f64 * step_ms) as i64;
        let next = ((i + 1) as f64 * step_ms) as i64;
        time.push(DAY_START_MS + base + rng.below((next - base).max(1) as u64) as i64);
        ids[0].push(advertiser.sample(&mut rng) as u32);
        ids[1].push(rng.below(1_000_000) as u32);
        ids[2].push(country.sample(&mut rng) as u32);
        ids[3].push(device.sample(&mut rng) as u32);
        ids[4].push(rng.below(20) as u32);
        ids[5].push((rng.below(100) < 3) as u32);
        let imps = 1 + (-(rng.unit().max(1e-12)).ln() * 40.0) as i64;
        impressions.push(imps);
        clicks.push(rng.below(imps as u64 / 20 + 2) as i64);
        spend.push((imps as f64 * (0.5 + 4.5 * rng.unit()) / 1000.0 * 1e6).round() / 1e6);
        latency.push(5 + (-(rng.unit().max(1e-12)).ln() * 80.0).min(10_000.0) as i64);
    }
    let dimensions = dims
        .iter()
        .zip(ids)
        .map(|(d, ids)| DimensionColumn {
            name: d.name.to_string(),
            data: DimensionData::String {
                dictionary: dictionary(&d.values),
                rows: StringRows::Single(ids),
            },
        })
        .collect();
    let long_metric = |name: &str, values: Vec<i64>| MetricColumn {
        name: name.to_string(),
        kind: MetricKind::LongSum,
        data: MetricData::Long(values),
    };
    let columns = SegmentColumns {
        time,
        dimensions,
        metrics: vec![
            long_metric("impressions", impressions),
            long_metric("clicks", clicks),
            MetricColumn {
                name: "spend".into(),
                kind: MetricKind::DoubleSum,
                data: MetricData::Double(spend),
            },
            long_metric("latency", latency),
        ],
    };
    let metric = |name: &str, kind| MetricSchema {
        name: name.into(),
        field_name: Some(name.into()),
        kind,
    };
    let schema = Schema {
        data_source: "ad_events".into(),
        dimensions: dims
            .iter()
            .map(|d| DimensionSchema::string(d.name))
            .collect(),
        metrics: vec![
            metric("impressions", MetricKind::LongSum),
            metric("clicks", MetricKind::LongSum),
            metric("spend", MetricKind::DoubleSum),
            metric("latency", MetricKind::LongSum),
        ],
        query_granularity: Granularity::None,
        segment_granularity: Granularity::DAY,
        rollup: false,
        time_position: 0,
    };
    let meta = SegmentMeta {
        id: SegmentId {
            data_source: "ad_events".into(),
            namespace: None,
            interval: Interval::new(DAY_START_MS, DAY_START_MS + MS_PER_DAY),
            version: "2024-06-02T00:00:00.000Z".into(),
            partition: 0,
        },
        schema,
        num_rows: rows as u64,
        time_min_ms: columns.time.first().copied().unwrap_or(0),
        time_max_ms: columns.time.last().copied().unwrap_or(0),
    };
    (meta, columns, dims)
}

/// One input row as an ad server would log it.
#[derive(serde::Serialize)]
struct JsonRow<'a> {
    timestamp: &'a str,
    advertiser: &'a str,
    campaign: &'a str,
    country: &'a str,
    device: &'a str,
    data_pack: &'a str,
    status_code: &'a str,
    impressions: i64,
    clicks: i64,
    spend: f64,
    latency: i64,
}

/// Bytes of the same rows as newline-delimited JSON, serialized row by row and counted.
fn raw_json_bytes(columns: &SegmentColumns, dims: &[Dims]) -> u64 {
    let ids: Vec<&[u32]> = dims.iter().map(|d| string_ids(columns, d.name)).collect();
    let value = |d: usize, row: usize| dims[d].values[ids[d][row] as usize].as_str();
    let (impressions, clicks, latency) = (
        long_metric(columns, "impressions"),
        long_metric(columns, "clicks"),
        long_metric(columns, "latency"),
    );
    let MetricData::Double(spend) = &columns.metrics[2].data else {
        panic!("spend")
    };
    let mut line = Vec::with_capacity(512);
    let mut total = 0u64;
    for row in 0..columns.num_rows() {
        line.clear();
        let timestamp = format_iso(columns.time[row]);
        let json = JsonRow {
            timestamp: &timestamp,
            advertiser: value(0, row),
            campaign: value(1, row),
            country: value(2, row),
            device: value(3, row),
            data_pack: value(4, row),
            status_code: value(5, row),
            impressions: impressions[row],
            clicks: clicks[row],
            spend: spend[row],
            latency: latency[row],
        };
        serde_json::to_writer(&mut line, &json).expect("serializing to a Vec");
        total += line.len() as u64 + 1;
    }
    total
}

/// Best throughput over `RUNS` runs of `f`, in values per second; `f` returns a checksum that
/// must be the same every run.
fn best_rate<T: PartialEq + std::fmt::Debug>(values: usize, mut f: impl FnMut() -> T) -> (f64, T) {
    let mut best = f64::MAX;
    let mut result = None;
    for _ in 0..RUNS {
        let start = Instant::now();
        let r = black_box(f());
        best = best.min(start.elapsed().as_secs_f64());
        if let Some(previous) = &result {
            assert_eq!(previous, &r, "scan results differ between runs");
        }
        result = Some(r);
    }
    (
        values as f64 / best.max(1e-9),
        result.expect("at least one run"),
    )
}

fn string_ids<'a>(columns: &'a SegmentColumns, name: &str) -> &'a [u32] {
    let dim = columns
        .dimensions
        .iter()
        .find(|d| d.name == name)
        .expect("dimension exists");
    match &dim.data {
        DimensionData::String {
            rows: StringRows::Single(ids),
            ..
        } => ids,
        _ => panic!("{name} is not a single-value string dimension"),
    }
}

fn long_metric<'a>(columns: &'a SegmentColumns, name: &str) -> &'a [i64] {
    match &columns
        .metrics
        .iter()
        .find(|m| m.name == name)
        .expect("metric exists")
        .data
    {
        MetricData::Long(v) => v,
        _ => panic!("{name} is not a long metric"),
    }
}

fn main() {
    let rows: usize = std::env::var("GROVE_BENCH_ROWS")
        .ok()
        .and_then(|v| v.replace('_', "").parse().ok())
        .unwrap_or(10_000_000);
    println!("segment benchmark: {rows} rows");
    let start = Instant::now();
    let (meta, columns, dims) = generate(rows);
    println!("generated in {:.1}s", start.elapsed().as_secs_f64());

    let dir = tempfile::Builder::new()
        .prefix("grove-bench-segment")
        .tempdir_in(std::env::temp_dir())
        .expect("temp dir");
    let hot_path = dir.path().join("hot.segment");
    let start = Instant::now();
    let bytes_on_disk =
        write_segment(&hot_path, &meta, &columns, &WriteOptions::default()).expect("write hot");
    let write_seconds = start.elapsed().as_secs_f64();
    let zstd_path = dir.path().join("zstd.segment");
    let start = Instant::now();
    let bytes_on_disk_zstd = write_segment(
        &zstd_path,
        &meta,
        &columns,
        &WriteOptions {
            compression: Compression::Zstd { level: 3 },
        },
    )
    .expect("write zstd");
    let write_zstd_seconds = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let raw_json = raw_json_bytes(&columns, &dims);
    println!("raw json counted in {:.1}s", start.elapsed().as_secs_f64());

    let segment = Segment::open(&hot_path).expect("open");
    let start = Instant::now();
    segment.verify().expect("verify");
    let verify_seconds = start.elapsed().as_secs_f64();
    let zstd_segment = Segment::open(&zstd_path).expect("open zstd");
    let start = Instant::now();
    zstd_segment.verify().expect("verify zstd");
    let verify_zstd_seconds = start.elapsed().as_secs_f64();

    let mut scans: Vec<(&str, f64, f64)> = Vec::new();
    // __time: LongColumn::sum against a wrapping sum over Vec<i64>.
    let time = segment.time().expect("time");
    let (column, a) = best_rate(rows, || time.sum());
    let (reference, b) = best_rate(rows, || {
        columns.time.iter().fold(0i64, |s, &v| s.wrapping_add(v))
    });
    assert_eq!(a, b);
    scans.push(("time", column, reference));
    // Long metrics.
    for name in ["impressions", "latency"] {
        let Some(MetricReader::Long(col)) = segment.metric(name).expect("metric") else {
            panic!("{name}")
        };
        let values = long_metric(&columns, name);
        let (column, a) = best_rate(rows, || col.sum());
        let (reference, b) =
            best_rate(rows, || values.iter().fold(0i64, |s, &v| s.wrapping_add(v)));
        assert_eq!(a, b);
        scans.push((
            if name == "latency" {
                "long_metric_latency"
            } else {
                "long_metric_impressions"
            },
            column,
            reference,
        ));
    }
    // Double metric: both sum in row order.
    let Some(MetricReader::Double(col)) = segment.metric("spend").expect("metric") else {
        panic!("spend")
    };
    let MetricData::Double(spend) = &columns.metrics[2].data else {
        panic!("spend")
    };
    let (column, a) = best_rate(rows, || col.sum());
    let (reference, b) = best_rate(rows, || spend.iter().fold(0.0f64, |s, &v| s + v));
    assert_eq!(a.to_bits(), b.to_bits());
    scans.push(("double_metric_spend", column, reference));
    // String dimensions: decode every id and sum them.
    for (name, label) in [
        ("advertiser", "string_dim_advertiser"),
        ("campaign", "string_dim_campaign"),
        ("country", "string_dim_country"),
    ] {
        let Some(DimensionReader::String(col)) = segment.dimension(name).expect("dimension") else {
            panic!("{name}")
        };
        let ids = string_ids(&columns, name);
        let (column, a) = best_rate(rows, || {
            let mut sum = 0u64;
            col.for_each_id_block(|block| sum += block.iter().map(|&id| id as u64).sum::<u64>());
            sum
        });
        let (reference, b) = best_rate(rows, || ids.iter().map(|&id| id as u64).sum::<u64>());
        assert_eq!(a, b);
        scans.push((label, column, reference));
    }
    // Bitmap of the most popular advertiser (not in the ratio; for orientation).
    let Some(DimensionReader::String(adv)) = segment.dimension("advertiser").expect("dimension")
    else {
        panic!()
    };
    let top_id = adv
        .lookup("advertiser-000000")
        .expect("advertiser-000000 is in the dictionary");
    let start = Instant::now();
    let top_rows = adv.bitmap(top_id).expect("bitmap").len();
    let bitmap_ms = start.elapsed().as_secs_f64() * 1e3;

    println!();
    println!(
        "{:<28} {:>16} {:>16} {:>8}",
        "scan", "values/s/core", "reference", "ratio"
    );
    let mut min_ratio = f64::MAX;
    let mut figures: Vec<(String, f64)> = vec![
        ("rows".into(), rows as f64),
        ("bytes_on_disk".into(), bytes_on_disk as f64),
        ("bytes_on_disk_zstd".into(), bytes_on_disk_zstd as f64),
        ("raw_json_bytes".into(), raw_json as f64),
        (
            "bytes_per_row".into(),
            bytes_on_disk as f64 / rows.max(1) as f64,
        ),
        (
            "raw_json_vs_disk".into(),
            raw_json as f64 / bytes_on_disk.max(1) as f64,
        ),
        ("write_seconds".into(), write_seconds),
        ("write_zstd_seconds".into(), write_zstd_seconds),
        ("verify_seconds".into(), verify_seconds),
        ("verify_zstd_seconds".into(), verify_zstd_seconds),
        ("bitmap_top_advertiser_ms".into(), bitmap_ms),
        ("bitmap_top_advertiser_rows".into(), top_rows as f64),
    ];
    for (name, column, reference) in &scans {
        let ratio = column / reference;
        min_ratio = min_ratio.min(ratio);
        println!("{name:<28} {column:>16.0} {reference:>16.0} {ratio:>8.2}");
        figures.push((format!("{name}_values_per_s"), column.round()));
        figures.push((format!("{name}_reference_values_per_s"), reference.round()));
        figures.push((format!("{name}_ratio"), (ratio * 1000.0).round() / 1000.0));
    }
    figures.push((
        "scan_vs_reference_min".into(),
        (min_ratio * 1000.0).round() / 1000.0,
    ));
    println!();
    println!("{:<28} {:>16}", "size", "bytes");
    println!("{:<28} {:>16}", "bytes_on_disk (hot)", bytes_on_disk);
    println!("{:<28} {:>16}", "bytes_on_disk_zstd", bytes_on_disk_zstd);
    println!("{:<28} {:>16}", "raw_json_bytes", raw_json);
    println!(
        "write {write_seconds:.2}s (zstd {write_zstd_seconds:.2}s), verify {verify_seconds:.3}s (zstd {verify_zstd_seconds:.3}s), top advertiser bitmap {top_rows} rows in {bitmap_ms:.2}ms"
    );
    println!("scan_vs_reference_min = {min_ratio:.3} (goal >= 0.5)");
    let refs: Vec<(&str, f64)> = figures.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let path = common::write_bench_json("segment", &refs);
    println!("figures in {}", path.display());
}
