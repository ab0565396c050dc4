//! Runs the pydruid acceptance suite (`tests/pydruid/`, Python) against a real `grove serve`:
//! pydruid's native client, DB-API and SQLAlchemy dialect, every answer compared with DuckDB.
//!
//! The suite needs the Python environment `.ci/install.sh` makes (pydruid, DuckDB, SQLAlchemy,
//! pytest in a venv at `$GROVE_PYTHON_VENV`, by default `~/.cache/grove/pyvenv`); without it
//! this test fails and says how to install it.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Server;

fn venv() -> PathBuf {
    match std::env::var_os("GROVE_PYTHON_VENV") {
        Some(dir) => PathBuf::from(dir),
        None => {
            let home = std::env::var_os("HOME").expect("HOME is set");
            PathBuf::from(home).join(".cache/grove/pyvenv")
        }
    }
}

#[test]
fn pydruid_acceptance_suite() {
    let venv = venv();
    let python = venv.join("bin/python");
    let ready = Command::new(&python)
        .args(["-c", "import pydruid, duckdb, sqlalchemy, pytest"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ready,
        "the pydruid acceptance suite needs a Python venv with pydruid, duckdb, sqlalchemy and \
         pytest at {} (set GROVE_PYTHON_VENV to use another); run `bash .ci/install.sh`",
        venv.display()
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start("serve", dir.path());
    let suite = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/pydruid");
    let output = Command::new(&python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE"])
        .arg(&suite)
        .env("GROVE_URL", &server.url)
        .current_dir(&suite)
        .output()
        .expect("running pytest");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        output.status.success(),
        "the pydruid acceptance suite failed (pytest {}):\n{stdout}\n{stderr}",
        output.status
    );
}
