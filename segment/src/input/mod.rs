//! Input readers: newline JSON, CSV/TSV and Parquet, turning files into [`InputRow`]s for a
//! [`RowLayout`]. A malformed row is reported to the visitor with its position and skipped; the
//! visitor decides (by `maxParseExceptions`) whether ingestion goes on.

use std::fmt;

use crate::error::Result;
use crate::row::InputRow;

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
/// [`ParseReport::ERRORS_KEPT`] parse errors with their positions.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct ParseReport {
    /// Rows ingested.
    pub processed: u64,
    /// Rows that could not be parsed or converted, and were skipped.
    pub unparseable: u64,
    /// Rows dropped on purpose: by the transform filter or outside the spec's intervals.
    pub thrown_away: u64,
    /// `maxParseExceptions` in force.
    pub max_parse_exceptions: u64,
    /// The first errors, in input order.
    pub errors: Vec<ParseError>,
}

impl ParseReport {
    pub const ERRORS_KEPT: usize = 100;

    pub fn new(max_parse_exceptions: u64) -> ParseReport {
        ParseReport {
            max_parse_exceptions,
            ..ParseReport::default()
        }
    }

    /// Counts one unparseable row; returns whether the limit is now exceeded.
    pub fn record(&mut self, error: ParseError) -> bool {
        self.unparseable += 1;
        if self.errors.len() < Self::ERRORS_KEPT {
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
        for error in self.errors.iter().take(5) {
            out.push_str("; ");
            out.push_str(&error.to_string());
        }
        if self.errors.len() > 5 {
            out.push_str(&format!("; and {} more", self.unparseable - 5));
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
