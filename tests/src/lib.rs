//! # grove-tests — cross-crate integration tests (not built yet)
//!
//! Role: tests that run real Grove processes against a real Kafka-compatible broker and a real
//! S3-compatible server. Unit and property tests live next to the code in each crate; this crate
//! gains its suites with the cluster work. `tests/pydruid/` holds the pydruid acceptance suite
//! (Python), which `node/tests/pydruid.rs` runs against the `grove` binary.
