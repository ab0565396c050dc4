//! The ad-events data set as a newline-delimited JSON file: the rows of
//! `segment/benches/segment.rs`'s `generate` (same seed, same draws in the same order, so the
//! same values), spread over seven days in time order, written once per row count and reused
//! while its marker matches.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::common::{Rng, Zipf};

/// 2024-06-01T00:00:00Z in ms: the first of the days the data covers.
pub const DAY_START_MS: i64 = 1_717_200_000_000;
pub const MS_PER_DAY: i64 = 86_400_000;
/// Days the rows spread over (one DAY segment each).
pub const DAYS: i64 = 7;
pub const ADVERTISERS: u64 = 100_000;
pub const CAMPAIGNS: u64 = 1_000_000;
pub const COUNTRIES: u64 = 200;
pub const DEVICES: [&str; 5] = ["desktop", "mobile", "tablet", "tv", "watch"];
pub const DATA_PACKS: u64 = 20;

/// Bumped whenever the generated rows or the file's layout change, so stale files are rewritten.
const FORMAT_VERSION: u32 = 2;

pub fn advertiser_name(id: u64) -> String {
    format!("advertiser-{id:06}")
}

/// The JSON lines of `rows` ad events under `dir` (`ad_events_<rows>.json`), generated unless a
/// file with a matching marker (`.done`: format version, rows, bytes) is already there.
pub fn ensure_data(dir: &Path, rows: u64) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
    let path = dir.join(format!("ad_events_{rows}.json"));
    let marker = dir.join(format!("ad_events_{rows}.json.done"));
    let expected = |bytes: u64| format!("version {FORMAT_VERSION} rows {rows} bytes {bytes}\n");
    if let (Ok(text), Ok(meta)) = (std::fs::read_to_string(&marker), std::fs::metadata(&path))
        && text == expected(meta.len())
    {
        println!("data: reusing {} ({} MB)", path.display(), meta.len() >> 20);
        return path;
    }
    let started = Instant::now();
    let partial = dir.join(format!("ad_events_{rows}.json.partial"));
    let bytes =
        write_rows(&partial, rows).unwrap_or_else(|e| panic!("writing {}: {e}", partial.display()));
    std::fs::rename(&partial, &path)
        .and_then(|()| std::fs::write(&marker, expected(bytes)))
        .unwrap_or_else(|e| panic!("finishing {}: {e}", path.display()));
    println!(
        "data: wrote {rows} rows to {} ({} MB) in {:.1} s",
        path.display(),
        bytes >> 20,
        started.elapsed().as_secs_f64()
    );
    path
}

/// Writes the rows (time ascending) and returns the file's size in bytes.
fn write_rows(path: &Path, rows: u64) -> std::io::Result<u64> {
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut rng = Rng(0x6772_6f76_6521);
    let advertiser = Zipf::new(ADVERTISERS as usize, 1.0);
    let country = Zipf::new(COUNTRIES as usize, 1.2);
    let device = Zipf::new(DEVICES.len(), 1.5);
    let step_ms = (DAYS * MS_PER_DAY) as f64 / rows.max(1) as f64;
    for i in 0..rows {
        let base = (i as f64 * step_ms) as i64;
        let next = ((i + 1) as f64 * step_ms) as i64;
        let time = DAY_START_MS + base + rng.below((next - base).max(1) as u64) as i64;
        let advertiser_id = advertiser.sample(&mut rng);
        let campaign_id = rng.below(CAMPAIGNS);
        let country_id = country.sample(&mut rng);
        let device_id = device.sample(&mut rng);
        let pack = rng.below(DATA_PACKS);
        let status = if rng.below(100) < 3 { "500" } else { "200" };
        let impressions = 1 + (-(rng.unit().max(1e-12)).ln() * 40.0) as i64;
        let clicks = rng.below(impressions as u64 / 20 + 2);
        let spend = (impressions as f64 * (0.5 + 4.5 * rng.unit()) / 1000.0 * 1e6).round() / 1e6;
        let latency = 5 + (-(rng.unit().max(1e-12)).ln() * 80.0).min(10_000.0) as i64;
        writeln!(
            out,
            "{{\"timestamp\":{time},\"advertiser\":\"advertiser-{advertiser_id:06}\",\"campaign\":\"campaign-{campaign_id:07}\",\"country\":\"C{country_id:03}\",\"device\":\"{}\",\"data_pack\":\"pack-{pack:02}\",\"status_code\":\"{status}\",\"impressions\":{impressions},\"clicks\":{clicks},\"latency\":{latency},\"spend\":{spend}}}",
            DEVICES[device_id as usize]
        )?;
    }
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    Ok(file.metadata()?.len())
}
