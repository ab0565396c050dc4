#!/usr/bin/env bash
# Installs what a fresh machine lacks for the gate. Idempotent: a warm machine skips everything.
# Today Grove needs only the Rust toolchain (with rustfmt and clippy) and a C compiler (zstd's
# bundled C code); the Kafka-compatible broker and the S3 server join when the cluster work lands.
set -euo pipefail

need_apt=()
command -v cc >/dev/null || need_apt+=(gcc)
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
