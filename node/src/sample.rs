//! The bundled sample for `grove quickstart`: Wikipedia-edit-like rows over 2016-06-27,
//! generated deterministically (a seeded SplitMix64, the same shape as
//! `examples/wikipedia/generate.py`), and the ingestion task for them: the example spec
//! `examples/wikipedia/index.json` with its input pointed at the generated file.

use std::fmt::Write as _;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use grove_segment::time::{MS_PER_DAY, format_iso, parse_iso_timestamp};

/// Rows in the sample.
pub const SAMPLE_ROWS: u64 = 30_000;
/// The datasource the sample is ingested into.
pub const SAMPLE_DATA_SOURCE: &str = "wikipedia";
const SAMPLE_FILE: &str = "wikipedia-edits.json";
const SAMPLE_SEED: u64 = 42;
const SAMPLE_DAY: &str = "2016-06-27T00:00:00.000Z";
/// The example spec the sample task is made from.
const EXAMPLE_SPEC: &str = include_str!("../../examples/wikipedia/index.json");

/// SplitMix64: small, fast and fully determined by its seed.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The sample as newline JSON.
pub fn sample_rows(rows: u64) -> String {
    let channels = [
        "#en.wikipedia",
        "#de.wikipedia",
        "#fr.wikipedia",
        "#ja.wikipedia",
        "#es.wikipedia",
    ];
    let countries = [
        Some("United States"),
        Some("Germany"),
        Some("France"),
        Some("Japan"),
        Some("Spain"),
        Some("Brazil"),
        Some("India"),
        None,
    ];
    let namespaces = ["Main", "Talk", "User", "Wikipedia", "Template"];
    let day_ms = parse_iso_timestamp(SAMPLE_DAY).unwrap_or_default();
    let spacing_ms = (MS_PER_DAY as u64 / rows.max(1)).max(1);
    let mut rng = SplitMix64(SAMPLE_SEED);
    let mut out = String::with_capacity(rows as usize * 200);
    for i in 0..rows {
        let ms = day_ms + (i * spacing_ms + rng.below(spacing_ms)) as i64;
        // Pareto(1.2) by inversion, as Python's paretovariate.
        let added = ((1.0 - rng.unit()).powf(-1.0 / 1.2) * 10.0) as i64;
        let deleted = match rng.below(4) {
            3 => rng.below(200) as i64,
            _ => 0,
        };
        let row = serde_json::json!({
            "timestamp": format_iso(ms),
            "channel": rng.pick(&channels),
            "page": format!("Page {}", rng.below(300)),
            "user": format!("user{}", rng.below(120)),
            "namespace": rng.pick(&namespaces),
            "isRobot": rng.unit() < 0.2,
            "countryName": rng.pick(&countries),
            "added": added,
            "deleted": deleted,
            "delta": added - deleted,
        });
        let _ = writeln!(out, "{row}");
    }
    out
}

/// Writes the sample file under `dir` (through a temp file and a rename) and returns the
/// directory holding it.
pub fn write_sample(dir: &Path) -> anyhow::Result<PathBuf> {
    let sample_dir = std::path::absolute(dir.join("sample"))?;
    fs::create_dir_all(&sample_dir)
        .with_context(|| format!("creating {}", sample_dir.display()))?;
    let path = sample_dir.join(SAMPLE_FILE);
    let tmp = sample_dir.join(format!(".{SAMPLE_FILE}.tmp"));
    let mut file = fs::File::create(&tmp).with_context(|| format!("writing {}", tmp.display()))?;
    file.write_all(sample_rows(SAMPLE_ROWS).as_bytes())?;
    file.sync_all()?;
    fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
    Ok(sample_dir)
}

/// The task that ingests the sample in `sample_dir`: the example spec, reading that directory.
pub fn sample_task(sample_dir: &Path) -> anyhow::Result<String> {
    let mut task: serde_json::Value =
        serde_json::from_str(EXAMPLE_SPEC).context("the bundled example spec")?;
    let source = task
        .pointer_mut("/spec/ioConfig/inputSource")
        .context("the bundled example spec has no spec.ioConfig.inputSource")?;
    *source = serde_json::json!({
        "type": "local",
        "baseDir": sample_dir,
        "filter": SAMPLE_FILE,
    });
    Ok(task.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_is_deterministic_and_within_the_day() {
        let a = sample_rows(500);
        assert_eq!(a, sample_rows(500));
        let day = parse_iso_timestamp(SAMPLE_DAY).unwrap();
        let rows: Vec<serde_json::Value> = a
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(rows.len(), 500);
        for row in &rows {
            let ms = parse_iso_timestamp(row["timestamp"].as_str().unwrap()).unwrap();
            assert!((day..day + MS_PER_DAY).contains(&ms));
            assert_eq!(
                row["delta"].as_i64().unwrap(),
                row["added"].as_i64().unwrap() - row["deleted"].as_i64().unwrap()
            );
        }
        assert!(rows.iter().any(|r| r["countryName"].is_null()));
    }

    #[test]
    fn sample_task_parses_and_reads_the_sample_dir() {
        let text = sample_task(Path::new("/data/sample")).unwrap();
        let task = grove_segment::spec::parse_task(&text).unwrap();
        assert_eq!(task.spec.data_schema.data_source, SAMPLE_DATA_SOURCE);
        assert!(text.contains("/data/sample"));
    }
}
