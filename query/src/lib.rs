//! # grove-query — native queries, per-segment engines, merging and SQL
//!
//! Role: Druid-compatible native JSON queries evaluated over `grove-segment` segments (on disk,
//! or the in-memory snapshot of an incremental index), with one associative merge path shared by
//! historicals and brokers, and SQL translated to native queries (no second engine).
//!
//! Entry points: [`run_native`] (a native query's JSON in, Druid's result out as a
//! [`QueryResult`], which serializes to Druid's JSON) and
//! [`sql::execute`]. Druid's expression language lives in [`expr`], extraction functions in
//! [`extraction`]; [`virtual_columns`] lowers both into per-segment virtual columns that every
//! engine reads like stored ones. Both read segments through [`SegmentProvider`] and check for timeouts and
//! cancellation through [`QueryControl`], so the same code runs in a server, a test and the
//! simulator.
//!
//! Must never depend on: tokio, actix, quinn, openraft (query logic stays runtime-free).

pub mod aggregate;
pub mod column;
pub mod error;
pub mod expr;
pub mod extraction;
pub mod filter;
pub mod finalize;
pub mod granularity;
pub mod group;
pub mod model;
mod nested;
pub mod partial;
pub mod result;
mod run;
mod scan;
pub mod snapshot;
pub mod sql;
pub mod timefmt;
pub mod virtual_columns;

use std::sync::Arc;

use grove_segment::format::Segment;
use grove_segment::time::Interval;

pub use error::{ErrorKind, QueryError, Result};
pub use result::QueryResult;

/// Where queries find their data: the visible (not overshadowed) segments of a datasource.
pub trait SegmentProvider: Send + Sync {
    /// The visible segments of `data_source` that overlap any of `intervals`, in any order. An
    /// unknown datasource has none.
    fn segments(&self, data_source: &str, intervals: &[Interval]) -> Vec<Arc<Segment>>;
}

/// Bounds on one query's answer, set by whoever runs it (a server from its flags); a query
/// past one fails with a resource-limit error that names it and how to raise it, before the
/// answer outgrows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueryLimits {
    /// Rows a scan may return when its context sets no `maxScanRows` (which may raise it).
    pub scan_rows_max: u64,
    /// Rows a time-ordered scan may hold to order them (its offset + limit) when its context
    /// sets no `maxRowsQueuedForOrdering` (Druid's name and default, 100,000).
    pub rows_queued_for_ordering_max: u64,
    /// Bytes of an answer's JSON text. Scans stop building an answer past it; other answers
    /// are refused before their text outgrows it. Not raised by the query.
    pub result_bytes_max: u64,
}

impl QueryLimits {
    pub const DEFAULT: QueryLimits = QueryLimits {
        scan_rows_max: 1_000_000,
        rows_queued_for_ordering_max: 100_000,
        result_bytes_max: 64 << 20,
    };
}

impl Default for QueryLimits {
    fn default() -> Self {
        QueryLimits::DEFAULT
    }
}

/// How a running query learns that it must stop, and how large its answer may grow. The
/// engine calls [`QueryControl::check`] between segments and every few thousand rows.
pub trait QueryControl: Send + Sync {
    /// `Err` (a timeout or a cancellation) when the query must stop.
    fn check(&self) -> Result<()>;

    /// The bounds on this query's answer.
    fn limits(&self) -> QueryLimits {
        QueryLimits::DEFAULT
    }

    /// How many segments one query may process at once on scoped threads. The default, 1, runs
    /// everything on the caller's thread (what the deterministic simulator needs); a server
    /// returns its core count.
    fn parallelism(&self) -> usize {
        1
    }
}

/// A [`QueryControl`] that never stops a query.
pub struct Unbounded;

impl QueryControl for Unbounded {
    fn check(&self) -> Result<()> {
        Ok(())
    }
}

/// Runs a Druid native query (its JSON) and returns its result as Druid shapes it.
pub fn run_native(
    query: &serde_json::Value,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<QueryResult> {
    let query = model::Query::parse(query)?;
    if query.virtual_columns().is_empty() {
        return run::run(&query, provider, control);
    }
    let columns = virtual_columns::VirtualColumns::new(query.virtual_columns())?;
    let provider = virtual_columns::VirtualProvider {
        inner: provider,
        columns: Arc::new(columns),
    };
    run::run(&query, &provider, control)
}
