//! [`Deadline`]: the [`QueryControl`] of one HTTP query: its timeout, its [`Cancel`] flag and
//! the server's bounds on its answer. The timeout is `context.timeout` (ms; `0` means none, as
//! in Druid) or the server's default, never past the server's maximum
//! ([`super::NodeConfig::query_timeout_ms_max`]): `0` runs until that maximum, a larger
//! timeout is refused. Wall-clock time is read here, at the HTTP edge, and nowhere in the
//! engine.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

use grove_query::error::thousands;
use grove_query::{ErrorKind, QueryControl, QueryError, QueryLimits};
use serde_json::Value;

/// Why a query stopped before its end, set once by whoever stops it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// `DELETE /druid/v2/{queryId}`.
    Deleted,
    /// Its client closed the connection.
    Disconnected,
}

/// A query's cancellation flag, shared by the query's thread (which polls it through
/// [`QueryControl::check`]), its HTTP handler (which sets it when the client goes away) and the
/// registry of running queries (which sets it on `DELETE`). A waiter for a turn is woken.
#[derive(Default)]
pub struct Cancel {
    /// 0 while running; otherwise a [`Stop`] + 1.
    stop: AtomicU8,
    woken: tokio::sync::Notify,
}

impl Cancel {
    pub fn stop(&self, why: Stop) {
        let code = match why {
            Stop::Deleted => 1,
            Stop::Disconnected => 2,
        };
        if self
            .stop
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst)
            .is_ok()
        {
            self.woken.notify_waiters();
        }
    }

    pub fn stopped(&self) -> Option<Stop> {
        match self.stop.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(Stop::Deleted),
            _ => Some(Stop::Disconnected),
        }
    }

    /// Resolves once the query is stopped.
    pub async fn wait(&self) {
        loop {
            let woken = self.woken.notified();
            if self.stopped().is_some() {
                return;
            }
            woken.await;
        }
    }

    /// The error a stopped query ends with.
    pub fn error(&self, query_id: &str) -> Option<QueryError> {
        let message = match self.stopped()? {
            Stop::Deleted => {
                format!("query '{query_id}' was cancelled (DELETE /druid/v2/{query_id})")
            }
            Stop::Disconnected => {
                format!("query '{query_id}' was cancelled: its client disconnected")
            }
        };
        Some(QueryError {
            kind: ErrorKind::Cancelled,
            message,
        })
    }
}

pub struct Deadline {
    until: Instant,
    timeout_ms: u64,
    /// The timeout came from the server's maximum (`timeout: 0`), not the query.
    capped: bool,
    /// Threads the query may spread its segments over.
    cores: usize,
    cancel: Arc<Cancel>,
    query_id: String,
    limits: QueryLimits,
}

/// The server's bounds a [`Deadline`] applies.
#[derive(Clone, Copy, Debug)]
pub struct Bounds {
    pub timeout_ms_default: u64,
    pub timeout_ms_max: u64,
    pub limits: QueryLimits,
}

impl Deadline {
    /// The deadline for a query whose context is `context`, started now. A `timeout` that is not
    /// a non-negative integer (or a string of one, which Druid accepts too), or that is past the
    /// server's maximum, is a bad query; `0` (none) and the default are capped at the maximum.
    pub fn from_context(
        context: Option<&Value>,
        bounds: Bounds,
        cancel: Arc<Cancel>,
        query_id: String,
    ) -> Result<Deadline, QueryError> {
        let max = bounds.timeout_ms_max.max(1);
        let asked = match context.and_then(|c| c.get("timeout")) {
            None | Some(Value::Null) => None,
            Some(Value::Number(n)) => Some(n.as_u64().ok_or_else(|| bad_timeout(&n.to_string()))?),
            Some(Value::String(s)) => Some(s.trim().parse().map_err(|_| bad_timeout(s))?),
            Some(other) => return Err(bad_timeout(&other.to_string())),
        };
        if let Some(ms) = asked
            && ms > max
        {
            return Err(QueryError::bad(format!(
                "context.timeout {} ms is more than the server's limit of {} ms \
                 (--query-timeout-max-ms); lower the timeout or raise the limit",
                thousands(ms),
                thousands(max)
            )));
        }
        let wanted = asked.unwrap_or(bounds.timeout_ms_default);
        let (timeout_ms, capped) = match wanted {
            0 => (max, true),
            ms => (ms.min(max), ms > max),
        };
        Ok(Deadline {
            until: Instant::now() + Duration::from_millis(timeout_ms),
            timeout_ms,
            capped,
            cores: 1,
            cancel,
            query_id,
            limits: bounds.limits,
        })
    }

    /// The same deadline for a query that may use `cores` threads.
    pub fn on_cores(self, cores: usize) -> Deadline {
        Deadline {
            cores: cores.max(1),
            ..self
        }
    }

    /// When the query must have ended.
    pub fn until(&self) -> Instant {
        self.until
    }

    /// The error of a query past its deadline.
    pub fn expired(&self) -> QueryError {
        let advice = if self.capped {
            "the server's limit (--query-timeout-max-ms), which also bounds timeout 0"
        } else {
            "its timeout; raise context.timeout up to the server's --query-timeout-max-ms"
        };
        QueryError::timeout(format!(
            "query '{}' did not finish within {} ms ({advice})",
            self.query_id,
            thousands(self.timeout_ms)
        ))
    }
}

fn bad_timeout(value: &str) -> QueryError {
    QueryError::bad(format!(
        "context.timeout must be a non-negative number of milliseconds, not {value}"
    ))
}

impl QueryControl for Deadline {
    fn check(&self) -> grove_query::Result<()> {
        if let Some(error) = self.cancel.error(&self.query_id) {
            return Err(error);
        }
        if Instant::now() >= self.until {
            return Err(self.expired());
        }
        Ok(())
    }

    /// The query's share of the cores (see [`Deadline::on_cores`]).
    fn parallelism(&self) -> usize {
        self.cores
    }

    fn limits(&self) -> QueryLimits {
        self.limits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bounds(default: u64, max: u64) -> Bounds {
        Bounds {
            timeout_ms_default: default,
            timeout_ms_max: max,
            limits: QueryLimits::DEFAULT,
        }
    }

    fn deadline(context: Value, bounds: Bounds) -> Result<Deadline, QueryError> {
        Deadline::from_context(Some(&context), bounds, Arc::default(), "q1".into())
    }

    #[test]
    fn timeout_from_context() {
        let expired = deadline(json!({"timeout": 1}), bounds(0, 60_000)).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let err = expired.check().unwrap_err();
        assert_eq!(err.http_status(), 504);
        assert!(err.message.contains("within 1 ms"), "{}", err.message);
        assert!(
            deadline(json!({}), bounds(60_000, 60_000))
                .unwrap()
                .check()
                .is_ok()
        );
        let err = deadline(json!({"timeout": -5}), bounds(0, 60_000))
            .err()
            .unwrap();
        assert_eq!(err.http_status(), 400);
        assert!(deadline(json!({"timeout": true}), bounds(0, 60_000)).is_err());
    }

    /// `timeout: 0` (none) and a default of none run until the server's maximum, never
    /// forever; a timeout past the maximum is refused naming it.
    #[test]
    fn the_server_maximum_bounds_every_timeout() {
        for context in [json!({"timeout": 0}), json!({"timeout": "0"}), json!({})] {
            let d = deadline(context.clone(), bounds(0, 50)).unwrap();
            assert!(d.check().is_ok());
            std::thread::sleep(Duration::from_millis(60));
            let err = d.check().unwrap_err();
            assert_eq!(err.http_status(), 504, "{context}");
            assert!(err.message.contains("--query-timeout-max-ms"), "{err}");
        }
        let err = deadline(json!({"timeout": 7_200_000}), bounds(0, 3_600_000))
            .err()
            .unwrap();
        assert_eq!(err.http_status(), 400);
        assert!(
            err.message
                .contains("7,200,000 ms is more than the server's limit of 3,600,000 ms"),
            "{err}"
        );
        // A default past the maximum is capped, not refused.
        let d = deadline(json!({}), bounds(10_000, 50)).unwrap();
        assert_eq!(d.timeout_ms, 50);
    }

    #[test]
    fn a_stopped_query_fails_its_next_check_naming_why() {
        let cancel = Arc::new(Cancel::default());
        let d =
            Deadline::from_context(None, bounds(0, 60_000), cancel.clone(), "q7".into()).unwrap();
        assert!(d.check().is_ok());
        cancel.stop(Stop::Deleted);
        cancel.stop(Stop::Disconnected);
        let err = d.check().unwrap_err();
        assert_eq!(err.kind, ErrorKind::Cancelled);
        assert!(err.message.contains("DELETE /druid/v2/q7"), "{err}");
    }
}
