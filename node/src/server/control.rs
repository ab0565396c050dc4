//! [`Deadline`]: the [`QueryControl`] of one HTTP query, from its `context.timeout` (ms; `0`
//! means none, as in Druid) or the server's default. Wall-clock time is read here, at the HTTP
//! edge, and nowhere in the engine.

use std::time::{Duration, Instant};

use grove_query::{QueryControl, QueryError};
use serde_json::Value;

pub struct Deadline {
    until: Option<Instant>,
    timeout_ms: u64,
    /// Threads the query may spread its segments over.
    cores: usize,
}

impl Deadline {
    /// The deadline for a query whose context is `context`, started now. A `timeout` that is not
    /// a non-negative integer (or a string of one, which Druid accepts too) is a bad query.
    pub fn from_context(
        context: Option<&Value>,
        default_timeout_ms: u64,
    ) -> Result<Deadline, QueryError> {
        let timeout_ms = match context.and_then(|c| c.get("timeout")) {
            None | Some(Value::Null) => default_timeout_ms,
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| bad_timeout(&n.to_string()))?,
            Some(Value::String(s)) => s.trim().parse().map_err(|_| bad_timeout(s))?,
            Some(other) => return Err(bad_timeout(&other.to_string())),
        };
        Ok(Deadline {
            until: (timeout_ms > 0).then(|| Instant::now() + Duration::from_millis(timeout_ms)),
            timeout_ms,
            cores: 1,
        })
    }

    /// The same deadline for a query that may use `cores` threads.
    pub fn on_cores(self, cores: usize) -> Deadline {
        Deadline {
            cores: cores.max(1),
            ..self
        }
    }
}

fn bad_timeout(value: &str) -> QueryError {
    QueryError::bad(format!(
        "context.timeout must be a non-negative number of milliseconds, not {value}"
    ))
}

impl QueryControl for Deadline {
    fn check(&self) -> grove_query::Result<()> {
        match self.until {
            Some(until) if Instant::now() >= until => Err(QueryError::timeout(format!(
                "query did not finish within its timeout of {} ms (raise context.timeout, or set it \
                 to 0 for none)",
                self.timeout_ms
            ))),
            _ => Ok(()),
        }
    }

    /// The query's share of the cores (see [`Deadline::on_cores`]).
    fn parallelism(&self) -> usize {
        self.cores
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn timeout_from_context() {
        let expired = Deadline::from_context(Some(&json!({"timeout": 1})), 0).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        let err = expired.check().unwrap_err();
        assert_eq!(err.http_status(), 504);
        assert!(err.message.contains("timeout of 1 ms"), "{}", err.message);
        let none = Deadline::from_context(Some(&json!({"timeout": "0"})), 1).unwrap();
        std::thread::sleep(Duration::from_millis(5));
        assert!(none.check().is_ok());
        assert!(
            Deadline::from_context(None, 60_000)
                .unwrap()
                .check()
                .is_ok()
        );
        let err = Deadline::from_context(Some(&json!({"timeout": -5})), 0)
            .err()
            .unwrap();
        assert_eq!(err.http_status(), 400);
        assert!(Deadline::from_context(Some(&json!({"timeout": true})), 0).is_err());
    }
}
