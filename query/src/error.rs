//! [`QueryError`]: every failure a query can end in, with the Druid error class and HTTP status an
//! API layer returns for it (a malformed query is a 400, a timeout a 504, never a 500 for user
//! input).

use std::fmt;

/// What went wrong, in the categories Druid's error bodies distinguish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The query (JSON or SQL) is malformed or refers to something that does not fit (HTTP 400).
    BadQuery,
    /// A valid construct Grove does not implement (HTTP 400, `Unsupported operation`).
    Unsupported,
    /// The query ran past its `timeout` (HTTP 504).
    Timeout,
    /// The query would exceed a resource limit, e.g. too many groups (HTTP 400, as Druid's
    /// `ResourceLimitExceededException`).
    ResourceLimit,
    /// The query was cancelled (HTTP 500 in Druid; 499-like, reported as `Query cancelled`).
    Cancelled,
    /// Stored data could not be read (a corrupt segment): not the user's fault (HTTP 500).
    Internal,
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueryError {
    pub kind: ErrorKind,
    pub message: String,
}

impl QueryError {
    pub fn bad(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: ErrorKind::BadQuery,
            message: message.into(),
        }
    }

    pub fn unsupported(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: ErrorKind::Unsupported,
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: ErrorKind::Internal,
            message: message.into(),
        }
    }

    pub fn timeout(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: ErrorKind::Timeout,
            message: message.into(),
        }
    }

    pub fn resource_limit(message: impl Into<String>) -> QueryError {
        QueryError {
            kind: ErrorKind::ResourceLimit,
            message: message.into(),
        }
    }

    /// The HTTP status Druid answers this error with.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::BadQuery | ErrorKind::Unsupported | ErrorKind::ResourceLimit => 400,
            ErrorKind::Timeout => 504,
            ErrorKind::Cancelled | ErrorKind::Internal => 500,
        }
    }

    /// Druid's `error` field (the legacy error code).
    pub fn error_code(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadQuery => "Plan validation failed",
            ErrorKind::Unsupported => "Unsupported operation",
            ErrorKind::Timeout => "Query timeout",
            ErrorKind::ResourceLimit => "Resource limit exceeded",
            ErrorKind::Cancelled => "Query cancelled",
            ErrorKind::Internal => "Unknown exception",
        }
    }

    /// Druid's `errorClass` field.
    pub fn error_class(&self) -> &'static str {
        match self.kind {
            ErrorKind::BadQuery => "org.apache.druid.query.BadQueryException",
            ErrorKind::Unsupported => "java.lang.UnsupportedOperationException",
            ErrorKind::Timeout => "org.apache.druid.query.QueryTimeoutException",
            ErrorKind::ResourceLimit => "org.apache.druid.query.ResourceLimitExceededException",
            ErrorKind::Cancelled => "org.apache.druid.query.QueryInterruptedException",
            ErrorKind::Internal => "org.apache.druid.java.util.common.ISE",
        }
    }

    /// The Druid-style error body: `error`, `errorMessage`, `errorClass`, `host`.
    pub fn to_druid_json(&self, host: Option<&str>) -> serde_json::Value {
        serde_json::json!({
            "error": self.error_code(),
            "errorMessage": self.message,
            "errorClass": self.error_class(),
            "host": host,
        })
    }
}

impl fmt::Display for QueryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.error_code(), self.message)
    }
}

impl std::error::Error for QueryError {}

impl From<grove_segment::error::SegmentError> for QueryError {
    fn from(e: grove_segment::error::SegmentError) -> QueryError {
        match e {
            grove_segment::error::SegmentError::Derived(message) => QueryError::bad(message),
            e => QueryError::internal(e.to_string()),
        }
    }
}

pub type Result<T, E = QueryError> = std::result::Result<T, E>;

/// `n` with thousands separators, as Druid's messages print counts (`100,000`).
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(100_000), "100,000");
        assert_eq!(thousands(67_108_864), "67,108,864");
        assert_eq!(thousands(u64::MAX), "18,446,744,073,709,551,615");
    }
}
