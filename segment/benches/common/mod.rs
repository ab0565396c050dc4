//! Shared helpers for Grove's benchmarks (`harness = false` binaries): where figures go and how
//! they are written. Include with `#[path = "common/mod.rs"] mod common;`.

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
