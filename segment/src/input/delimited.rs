//! The CSV/TSV reader, on the `csv` crate (its quote handling), with the spec's delimiter.
//!
//! Columns come from `columns` or from the first line after `skipHeaderRows` lines
//! (`findColumnsFromHeader`). Typing: empty field → `Null`; a field containing `listDelimiter` →
//! `Strings`; otherwise `String` (or, with `tryParseNumbers`, `Long`/`Double` when the text is a
//! number). A record with the wrong number of fields, or with bytes that are not UTF-8, is a parse
//! error with its line; the reader goes on with the next record. A leading UTF-8 BOM is skipped.

use std::io::{BufRead, BufReader, ErrorKind, Read};

use super::fields::{FieldLookup, Target, TimestampReader};
use super::{ParseError, RowPosition, RowVisitor};
use crate::error::{Result, SegmentError};
use crate::row::{RowLayout, Value};
use crate::spec::{DelimitedFormat, TimestampSpec};

/// Reads CSV or TSV (as `format` says) from `input`, named `source` in positions and errors.
pub fn read_delimited(
    input: impl Read,
    source: &str,
    format: &DelimitedFormat,
    layout: &RowLayout,
    timestamp: &TimestampSpec,
    visitor: &mut dyn RowVisitor,
) -> Result<()> {
    let mut input = BufReader::new(input);
    let starts_with_bom = input
        .fill_buf()
        .map_err(|e| SegmentError::io(source, e))?
        .starts_with(b"\xEF\xBB\xBF");
    if starts_with_bom {
        input.consume(3);
    }
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(format.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(input);
    let lookup = FieldLookup::new(layout, &timestamp.column);
    let ts = TimestampReader { spec: timestamp };
    let mut targets: Option<Vec<Option<Target>>> = (!format.find_columns_from_header)
        .then(|| format.columns.iter().map(|c| lookup.get(c)).collect());
    let mut row = layout.empty_row();
    let mut record = csv::ByteRecord::new();
    let mut position = RowPosition {
        source: source.to_owned(),
        ..RowPosition::default()
    };
    let mut skipped_rows = 0u64;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return Ok(()),
            Err(e) => {
                let line = e.position().map(|p| p.line());
                if let csv::ErrorKind::Io(io) = e.into_kind() {
                    return Err(SegmentError::io(source, io));
                }
                position.line = line;
                visitor.unparseable(ParseError {
                    position: position.clone(),
                    message: "malformed record".into(),
                })?;
                continue;
            }
        }
        position.line = record.position().map(|p| p.line());
        if skipped_rows < format.skip_header_rows {
            skipped_rows += 1;
            continue;
        }
        let Some(columns) = &targets else {
            let mut header = Vec::with_capacity(record.len());
            for (i, field) in record.iter().enumerate() {
                let name = std::str::from_utf8(field).map_err(|_| {
                    let message = format!("{position}: header field {} is not UTF-8", i + 1);
                    SegmentError::io(source, std::io::Error::new(ErrorKind::InvalidData, message))
                })?;
                header.push(lookup.get(name));
            }
            targets = Some(header);
            continue;
        };
        let fill = fill_row(&record, columns, format, &ts, &mut row.values);
        match fill {
            Ok(timestamp_ms) => {
                row.timestamp_ms = timestamp_ms;
                visitor.row(&row, &position)?;
            }
            Err(message) => visitor.unparseable(ParseError {
                position: position.clone(),
                message,
            })?,
        }
    }
}

/// Fills the row's slots from one record; returns the row's timestamp. Every slot a column maps to
/// is written for every good record, so nothing leaks between rows.
fn fill_row(
    record: &csv::ByteRecord,
    columns: &[Option<Target>],
    format: &DelimitedFormat,
    ts: &TimestampReader,
    values: &mut [Value],
) -> Result<i64, String> {
    if record.len() != columns.len() {
        return Err(format!(
            "expected {} fields, found {}",
            columns.len(),
            record.len()
        ));
    }
    let mut timestamp = None;
    for (i, (field, target)) in record.iter().zip(columns).enumerate() {
        let Some(target) = target else { continue };
        let text = std::str::from_utf8(field)
            .map_err(|_| format!("field {} is not valid UTF-8", i + 1))?;
        if target.timestamp {
            timestamp = Some(if text.is_empty() {
                ts.missing()
            } else {
                ts.parse_text(text)
            });
        }
        if let Some(value) = target.slot.and_then(|s| values.get_mut(s)) {
            set_text(value, text, format);
        }
    }
    timestamp.unwrap_or_else(|| ts.missing())
}

fn set_text(value: &mut Value, text: &str, format: &DelimitedFormat) {
    if text.is_empty() {
        *value = Value::Null;
    } else if text.contains(format.list_delimiter.as_str()) {
        let mut list = match std::mem::take(value) {
            Value::Strings(list) => list,
            _ => Vec::new(),
        };
        let mut len = 0;
        for (i, part) in text.split(format.list_delimiter.as_str()).enumerate() {
            match list.get_mut(i) {
                Some(s) => {
                    s.clear();
                    s.push_str(part);
                }
                None => list.push(part.to_owned()),
            }
            len = i + 1;
        }
        list.truncate(len);
        *value = Value::Strings(list);
    } else if format.try_parse_numbers
        && let Some(number) = parse_number(text)
    {
        *value = number;
    } else {
        value.set_str(text);
    }
}

fn parse_number(text: &str) -> Option<Value> {
    let first = *text.as_bytes().first()?;
    if !(first.is_ascii_digit() || first == b'-' || first == b'+' || first == b'.') {
        return None;
    }
    if let Ok(n) = text.parse::<i64>() {
        return Some(Value::Long(n));
    }
    text.parse::<f64>()
        .ok()
        .filter(|d| d.is_finite())
        .map(Value::Double)
}
