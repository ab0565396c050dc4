//! # grove-query — native queries, per-segment engines, merging and SQL (not built yet)
//!
//! Role: Druid-compatible native JSON queries evaluated over `grove-segment` segments and
//! incremental indexes, with one associative merge path shared by historicals and brokers, and SQL
//! translated to native queries. Its issue has not been taken up; this crate holds no code yet.
//!
//! Must never depend on: tokio, actix, quinn, openraft (query logic stays runtime-free).
