//! Shared helpers for Grove's benchmarks (`harness = false` binaries) and the tests that generate
//! data the same way: where figures go and how they are written, and a seeded generator.
//! Include with `#[path = "common/mod.rs"] mod common;`.

use std::path::PathBuf;

/// The directory benchmark figures go to: `$CARGO_TARGET_DIR/grove-bench`, or
/// `target/grove-bench` under the workspace root when `CARGO_TARGET_DIR` is unset.
pub fn bench_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("grove-bench"),
        _ => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join("target")
            .join("grove-bench"),
    }
}

/// CPU time (user + system, every thread) this process has used so far, in seconds, from
/// `/proc/self/stat` (Linux; 10 ms clock ticks); `None` where that file cannot be read.
pub fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces) close with ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

/// The machine's CPU time so far as (stolen, total) clock ticks over every core, from the
/// first line of `/proc/stat` (Linux): the share a hypervisor gave to other guests is the
/// difference in stolen over the difference in total between two reads. `None` where the
/// file cannot be read.
pub fn machine_cpu_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line
        .split_whitespace()
        .map(|field| field.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, counted in user].
    let total = ticks.iter().take(8).sum();
    Some((*ticks.get(7)?, total))
}

/// Writes `figures` as one flat JSON object (keys in the given order; non-finite numbers as
/// `null`) to `<bench_dir>/<name>.json` and returns the path. Panics with the path if the file
/// cannot be written: a benchmark that cannot report its figures has failed.
pub fn write_bench_json(name: &str, figures: &[(&str, f64)]) -> PathBuf {
    let dir = bench_dir();
    let path = dir.join(format!("{name}.json"));
    let mut json = String::from("{\n");
    for (i, (key, value)) in figures.iter().enumerate() {
        let key = serde_json::to_string(key).expect("a string always serializes");
        let value = serde_json::Number::from_f64(*value)
            .map(|n| n.to_string())
            .unwrap_or_else(|| "null".to_string());
        let comma = if i + 1 < figures.len() { "," } else { "" };
        json.push_str(&format!("  {key}: {value}{comma}\n"));
    }
    json.push_str("}\n");
    std::fs::create_dir_all(&dir)
        .and_then(|()| std::fs::write(&path, json))
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

/// splitmix64: a small, fast, deterministic generator for benchmark and test data.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True `percent` times in a hundred.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The value a [`Zipf`] sampler maps `rank` to (most popular is rank 0): 7919 is prime and divides
/// no `n` used by the benches, so this is a permutation of `0..n` that spreads popular values
/// over the sorted dictionary.
pub fn zipf_value(rank: u64, n: u64) -> u64 {
    (rank * 7919) % n
}

/// Zipf-distributed values by inverse CDF (binary search) over ranks, mapped by [`zipf_value`].
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    pub fn new(n: usize, exponent: f64) -> Zipf {
        let mut total = 0.0;
        let mut cdf: Vec<f64> = (1..=n)
            .map(|k| {
                total += 1.0 / (k as f64).powf(exponent);
                total
            })
            .collect();
        for c in &mut cdf {
            *c /= total;
        }
        Zipf { cdf }
    }

    pub fn sample(&self, rng: &mut Rng) -> u64 {
        let u = rng.unit();
        let rank = self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1);
        zipf_value(rank as u64, self.cdf.len() as u64)
    }
}
