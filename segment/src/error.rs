//! The errors `grove-segment` returns at its boundary. Messages are lowercase and name what failed
//! and where (file and line, segment and column), so they can be shown to a user unchanged.

use std::path::PathBuf;

use crate::input::ParseReport;

#[derive(Debug, thiserror::Error)]
pub enum SegmentError {
    /// The ingestion spec is malformed, or uses a feature Grove does not support.
    #[error("invalid ingestion spec: {0}")]
    Spec(String),

    /// More rows failed to parse than `maxParseExceptions` allows.
    #[error("ingestion failed: {}", .0.summary())]
    TooManyParseErrors(Box<ParseReport>),

    /// A limit was reached; the message names it and how to raise it.
    #[error("limit reached: {0}")]
    Limit(String),

    /// A segment file failed validation: wrong checksum, truncated, bad encoding.
    #[error("segment {segment}: column {column}: {message}")]
    Corrupt {
        segment: String,
        column: String,
        message: String,
    },

    /// A segment file written by a format version this build does not read.
    #[error(
        "segment {segment}: format version {found} is not supported (this build reads {supported})"
    )]
    UnsupportedVersion {
        segment: String,
        found: u32,
        supported: String,
    },

    /// A file could not be read or written.
    #[error("{}: {source}", .path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// Deep storage failed to push, pull or delete a segment.
    #[error("deep storage: {0}")]
    DeepStorage(String),

    /// A query's derived (virtual) column could not be computed over a segment: the query's
    /// fault, not the data's.
    #[error("{0}")]
    Derived(String),

    /// Columns or rows that do not fit the schema they are written under (a programming error
    /// surfaced as an error rather than a panic).
    #[error("schema mismatch: {0}")]
    Schema(String),
}

impl SegmentError {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> SegmentError {
        SegmentError::Io {
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = SegmentError> = std::result::Result<T, E>;
