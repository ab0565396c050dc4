#!/usr/bin/env bash
# Installs what a fresh machine lacks for the gate. Idempotent: a warm machine skips everything.
# Grove needs the Rust toolchain (with rustfmt and clippy), a C compiler (zstd's bundled C code)
# and, for the pydruid acceptance suite (node/tests/pydruid.rs runs tests/pydruid/), a Python venv
# with pydruid, DuckDB, SQLAlchemy and pytest at $GROVE_PYTHON_VENV (default
# ~/.cache/grove/pyvenv). The Kafka-compatible broker and the S3 server join with the cluster work.
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
command -v python3 >/dev/null || need_apt+=(python3)
python3 -m venv --help >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v make >/dev/null || need_apt+=(make)
# grove-raft's durability test watches the log's fdatasync/fsync calls with strace.
command -v strace >/dev/null || need_apt+=(strace)
if ((${#need_apt[@]})); then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${need_apt[@]}"
fi

command -v cargo >/dev/null || { echo "cargo is missing: install the Rust toolchain (rustup)" >&2; exit 1; }
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy

# The pydruid acceptance suite's Python environment, pinned so answers do not move under it
# (SQLAlchemy 1.4: pydruid 0.6.9's dialect predates the 2.x inspector API, as Superset's does).
venv="${GROVE_PYTHON_VENV:-$HOME/.cache/grove/pyvenv}"
if ! "$venv/bin/python" -c "import pydruid, duckdb, sqlalchemy, pytest" >/dev/null 2>&1; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    pydruid==0.6.9 duckdb==2.0.1 SQLAlchemy==1.4.54 pytest==9.2.0 requests==2.34.2
fi
