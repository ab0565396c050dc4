//! Input readers: newline JSON, CSV/TSV and Parquet, turning files into [`InputRow`]s for a
//! [`RowLayout`]. A malformed row is reported to the visitor with its position and skipped; the
//! visitor decides (by `maxParseExceptions`) whether ingestion goes on.

use std::fmt;

use crate::error::Result;
use crate::row::InputRow;

/// The longest input line (JSON, CSV, TSV) read, in bytes, without its newline. A longer line is
/// one parse error at its line ("line is longer than 67108864 bytes"), skipped without being held
/// in memory; reading goes on with the next line.
pub const MAX_LINE_BYTES: usize = 64 << 20;

/// Where a row came from: a file (or `inline`) and a line, or a Parquet row group and row.
/// Lines and rows are 1-based as editors show them; row groups are 0-based as Parquet tools show
/// them.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct RowPosition {
    pub source: String,
    pub line: Option<u64>,
    pub row_group: Option<u64>,
    pub row: Option<u64>,
}

impl fmt::Display for RowPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)?;
        if let Some(line) = self.line {
            write!(f, " line {line}")?;
        }
        if let Some(group) = self.row_group {
            write!(f, " row group {group}")?;
        }
        if let Some(row) = self.row {
            write!(f, " row {row}")?;
        }
        Ok(())
    }
}

/// One row that could not be ingested, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub position: RowPosition,
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.position, self.message)
    }
}

/// What an ingestion made of its input: counts as Druid's task reports give them, and the first
/// [`ParseReport::errors_kept_max`] parse errors with their positions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseReport {
    /// Rows ingested.
    pub processed: u64,
    /// Rows that could not be parsed or converted, and were skipped.
    pub unparseable: u64,
    /// Rows dropped on purpose: by the transform filter or outside the spec's intervals.
    pub thrown_away: u64,
    /// `maxParseExceptions` in force.
    pub max_parse_exceptions: u64,
    /// How many errors [`ParseReport::record`] keeps in `errors` (`maxSavedParseExceptions`, or
    /// [`ParseReport::ERRORS_KEPT`] when the spec does not set it).
    pub errors_kept_max: usize,
    /// `logParseExceptions`: the driver should log each parse error as it happens (not only the
    /// kept ones). The report only carries the flag; [`ParseReport::record`] does not print.
    pub log_parse_exceptions: bool,
    /// The first errors, in input order.
    pub errors: Vec<ParseError>,
}

impl Default for ParseReport {
    fn default() -> Self {
        ParseReport {
            processed: 0,
            unparseable: 0,
            thrown_away: 0,
            max_parse_exceptions: 0,
            errors_kept_max: Self::ERRORS_KEPT,
            log_parse_exceptions: false,
            errors: Vec::new(),
        }
    }
}

impl ParseReport {
    /// Errors kept when the spec does not set `maxSavedParseExceptions`.
    pub const ERRORS_KEPT: usize = 100;

    /// A report failing past `max_parse_exceptions` errors, keeping the first
    /// [`ParseReport::ERRORS_KEPT`].
    pub fn new(max_parse_exceptions: u64) -> ParseReport {
        ParseReport {
            max_parse_exceptions,
            ..ParseReport::default()
        }
    }

    /// A report failing past `max_parse_exceptions` errors, keeping the first `errors_kept_max`
    /// (see [`crate::spec::TuningConfig::errors_kept_max`]).
    pub fn with_limits(max_parse_exceptions: u64, errors_kept_max: usize) -> ParseReport {
        ParseReport {
            max_parse_exceptions,
            errors_kept_max,
            ..ParseReport::default()
        }
    }

    /// Sets [`ParseReport::log_parse_exceptions`].
    pub fn with_log_parse_exceptions(mut self, log: bool) -> ParseReport {
        self.log_parse_exceptions = log;
        self
    }

    /// Counts one unparseable row; returns whether the limit is now exceeded.
    pub fn record(&mut self, error: ParseError) -> bool {
        self.unparseable += 1;
        if self.errors.len() < self.errors_kept_max {
            self.errors.push(error);
        }
        self.unparseable > self.max_parse_exceptions
    }

    /// One line for logs and errors: the counts and the first few errors.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{} rows processed, {} unparseable (maxParseExceptions {}), {} thrown away",
            self.processed, self.unparseable, self.max_parse_exceptions, self.thrown_away
        );
        let shown = self.errors.len().min(5);
        for error in &self.errors[..shown] {
            out.push_str("; ");
            out.push_str(&error.to_string());
        }
        if self.unparseable > shown as u64 {
            out.push_str(&format!("; and {} more", self.unparseable - shown as u64));
        }
        out
    }
}

/// Receives what a reader reads. `position` is updated in place by the reader, so taking it by
/// reference costs nothing per row; clone it only when keeping it.
pub trait RowVisitor {
    /// A row that parsed. An error stops the reader and is returned from it.
    fn row(&mut self, row: &InputRow, position: &RowPosition) -> Result<()>;
    /// A row that did not parse. An error (too many parse errors) stops the reader.
    fn unparseable(&mut self, error: ParseError) -> Result<()>;
}

pub mod delimited;
mod fields;
pub mod json;
pub mod parquet;
pub mod source;

use crate::row::RowLayout;

/// Reads every item of `io`'s input source, in order (see [`source::list_inputs`]), in its input
/// format, handing rows laid out by `layout` and parse errors to `visitor`. Stops at the first
/// error the visitor returns, or at an I/O error.
pub fn read_input(
    io: &crate::spec::IoConfig,
    layout: &RowLayout,
    timestamp: &crate::spec::TimestampSpec,
    visitor: &mut dyn RowVisitor,
) -> Result<()> {
    use crate::spec::InputFormat;
    for item in source::list_inputs(&io.input_source)? {
        let name = item.name();
        match (&io.input_format, &item) {
            (InputFormat::Json(_), _) => {
                json::read_json(item.open()?, &name, layout, timestamp, visitor)?
            }
            (InputFormat::Csv(format) | InputFormat::Tsv(format), _) => {
                delimited::read_delimited(item.open()?, &name, format, layout, timestamp, visitor)?
            }
            (InputFormat::Parquet(format), source::InputItem::File(path)) => {
                parquet::read_parquet(path, &name, format, layout, timestamp, visitor)?
            }
            (InputFormat::Parquet(_), source::InputItem::Inline(_)) => {
                return Err(crate::error::SegmentError::Spec(
                    "parquet input needs a local inputSource (inline data is text)".into(),
                ));
            }
        }
    }
    Ok(())
}

/// What the readers' unit tests share: a visitor that keeps everything.
#[cfg(test)]
pub(crate) mod testing {
    use super::{ParseError, RowPosition, RowVisitor};
    use crate::error::Result;
    use crate::row::{InputRow, RowLayout, Value};
    use crate::spec::TimestampSpec;
    use crate::time::TimestampFormat;

    #[derive(Default)]
    pub struct Collect {
        pub rows: Vec<(i64, Vec<Value>, Option<u64>)>,
        pub errors: Vec<ParseError>,
    }

    impl RowVisitor for Collect {
        fn row(&mut self, row: &InputRow, position: &RowPosition) -> Result<()> {
            self.rows
                .push((row.timestamp_ms, row.values.clone(), position.line));
            Ok(())
        }

        fn unparseable(&mut self, error: ParseError) -> Result<()> {
            self.errors.push(error);
            Ok(())
        }
    }

    impl Collect {
        /// `(line, first value as text)` of each row.
        pub fn rows_by_line(&self) -> Vec<(u64, String)> {
            self.rows
                .iter()
                .map(|(_, values, line)| {
                    let text = match values.first() {
                        Some(Value::String(s)) => s.clone(),
                        other => format!("{other:?}"),
                    };
                    (line.unwrap_or(0), text)
                })
                .collect()
        }

        /// `(line, message)` of each error.
        pub fn errors_by_line(&self) -> Vec<(u64, String)> {
            self.errors
                .iter()
                .map(|e| (e.position.line.unwrap_or(0), e.message.clone()))
                .collect()
        }
    }

    pub fn layout(fields: &[&str]) -> RowLayout {
        RowLayout {
            fields: fields.iter().map(|f| f.to_string()).collect(),
            metric_slots: vec![],
        }
    }

    pub fn millis(column: &str) -> TimestampSpec {
        TimestampSpec {
            column: column.into(),
            format: TimestampFormat::Millis,
            missing_value: None,
        }
    }

    /// A reader handing out at most `step` bytes per read, to exercise buffer edges.
    pub struct Trickle<'a> {
        pub data: &'a [u8],
        pub step: usize,
    }

    impl std::io::Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.step.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }
}
