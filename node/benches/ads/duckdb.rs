//! The DuckDB reference: `benches/duckdb_queries.py` run with `python3` on the same data, after
//! making sure the `duckdb` package imports (installing it with pip for the user if not).

use std::path::Path;
use std::process::{Command, Stdio};

use serde_json::Value;

use super::queries::{IN_IDS, IN_SEED};

/// What the script reports: median ms per query and layout, load time, threads, version, and
/// every run's answer summaries under `checks[layout][query]`.
pub struct DuckDb {
    pub answer: Value,
}

impl DuckDb {
    pub fn ms(&self, key: &str, layout: &str) -> Option<f64> {
        self.answer[format!("{key}_{layout}_ms")].as_f64()
    }
}

/// Runs the script, or says why it could not and returns `None`.
pub fn run(data: &Path, rows: u64, warmups: u64, runs: u64) -> Option<DuckDb> {
    if let Err(why) = ensure_duckdb() {
        println!("duckdb: not measured: {why}");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/duckdb_queries.py");
    let output = Command::new("python3")
        .arg(&script)
        .arg("--data")
        .arg(data)
        .args(["--rows", &rows.to_string()])
        .args(["--warmups", &warmups.to_string()])
        .args(["--runs", &runs.to_string()])
        .args(["--in-seed", &IN_SEED.to_string()])
        .args(["--in-ids", &IN_IDS.to_string()])
        .stderr(Stdio::inherit())
        .output();
    let output = match output {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!("{} failed ({})", script.display(), o.status),
        Err(e) => {
            println!("duckdb: not measured: cannot run python3: {e}");
            return None;
        }
    };
    let text = String::from_utf8_lossy(&output.stdout);
    let last = text.lines().last().unwrap_or_default();
    let answer: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("{}: no JSON answer ({e}): {text}", script.display()));
    Some(DuckDb { answer })
}

/// Imports `duckdb`, installing it with pip when it is missing.
fn ensure_duckdb() -> Result<(), String> {
    let imports = || {
        Command::new("python3")
            .args(["-c", "import duckdb"])
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
    };
    match imports() {
        Ok(true) => return Ok(()),
        Ok(false) => {}
        Err(e) => return Err(format!("cannot run python3: {e}")),
    }
    // --user first; --break-system-packages when pip refuses an externally managed Python; no
    // --user inside a virtualenv, which refuses it.
    let attempts: [&[&str]; 3] = [&["--user"], &["--user", "--break-system-packages"], &[]];
    for extra in attempts {
        println!("duckdb: installing the Python package (python3 -m pip install duckdb {extra:?})");
        let installed = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "duckdb"])
            .args(extra)
            .status()
            .map_err(|e| format!("cannot run pip: {e}"))?;
        if installed.success() && imports().unwrap_or(false) {
            return Ok(());
        }
    }
    Err("the duckdb Python package is missing and pip could not install it".into())
}
