//! The CSV/TSV reader, on the `csv` crate (its quote handling), with the spec's delimiter.
//!
//! Columns come from `columns` or from the first line after `skipHeaderRows` lines
//! (`findColumnsFromHeader`). Typing: empty field → `Null`; a field containing `listDelimiter` →
//! `Strings`; otherwise `String` (or, with `tryParseNumbers`, `Long`/`Double` when the text is a
//! number). A record with the wrong number of fields, or with bytes that are not UTF-8, is a parse
//! error with its line and the csv crate's cause; the reader goes on with the next record. So is a
//! line longer than [`MAX_LINE_BYTES`] (skipped without being held in memory). A leading UTF-8 BOM
//! is skipped.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, ErrorKind, Read};
use std::ops::Range;

use super::fields::{Block, FieldLookup, LineBlocks, Target, TimestampReader};
use super::{MAX_LINE_BYTES, ParseError, RowPosition, RowVisitor};
use crate::error::{Result, SegmentError};
use crate::row::{RowLayout, Value};
use crate::spec::{DelimitedFormat, TimestampSpec};

/// Reads CSV or TSV (as `format` says) from `input`, named `source` in positions and errors. A
/// line longer than [`MAX_LINE_BYTES`] is one parse error; reading goes on after it.
pub fn read_delimited(
    input: impl Read,
    source: &str,
    format: &DelimitedFormat,
    layout: &RowLayout,
    timestamp: &TimestampSpec,
    visitor: &mut dyn RowVisitor,
) -> Result<()> {
    read_delimited_limited(
        input,
        source,
        format,
        layout,
        timestamp,
        visitor,
        MAX_LINE_BYTES,
    )
}

/// [`read_delimited`] with the line limit as a parameter (tests use a small one).
pub(crate) fn read_delimited_limited(
    input: impl Read,
    source: &str,
    format: &DelimitedFormat,
    layout: &RowLayout,
    timestamp: &TimestampSpec,
    visitor: &mut dyn RowVisitor,
    max_line: usize,
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
        .from_reader(LimitedLines::new(input, max_line, format.delimiter));
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
    // Reports the too-long lines before line `end` (all of them at the end), in line order;
    // returns whether the last was line `end - 1`: then the record just read, which ends on that
    // line, is (or contains) the placeholder that stands for it, and is skipped.
    let too_long = |reader: &mut csv::Reader<LimitedLines<_>>,
                    end: Option<u64>,
                    visitor: &mut dyn RowVisitor|
     -> Result<bool> {
        let lines = reader.get_mut();
        let mut ends_record = false;
        while let Some(&line) = lines.too_long.front() {
            if end.is_some_and(|end| line >= end) {
                break;
            }
            lines.too_long.pop_front();
            ends_record = end == Some(line + 1);
            visitor.unparseable(ParseError {
                position: RowPosition {
                    source: source.to_owned(),
                    line: Some(line),
                    ..RowPosition::default()
                },
                message: format!("line is longer than {max_line} bytes"),
            })?;
        }
        Ok(ends_record)
    };
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(true) => {}
            Ok(false) => return too_long(&mut reader, None, visitor).map(|_| ()),
            Err(e) => {
                let line = e.position().map(|p| p.line());
                let message = malformed(&e);
                if let csv::ErrorKind::Io(io) = e.into_kind() {
                    return Err(SegmentError::io(source, io));
                }
                too_long(&mut reader, line, visitor)?;
                position.line = line;
                visitor.unparseable(ParseError {
                    position: position.clone(),
                    message,
                })?;
                continue;
            }
        }
        position.line = record.position().map(|p| p.line());
        let end = Some(reader.position().line());
        if !reader.get_ref().too_long.is_empty() && too_long(&mut reader, end, visitor)? {
            continue;
        }
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

/// The parse error for a record the csv crate refused, with the crate's cause.
fn malformed(e: &csv::Error) -> String {
    format!("malformed record: {e}")
}

/// The input as the csv crate reads it: whole lines from [`LineBlocks`], with each line longer
/// than the limit replaced by a placeholder line (one delimiter: a record of two empty fields)
/// and its number queued in `too_long` for the reader loop to report in order and to skip the
/// placeholder record. A placeholder keeps csv's line count, and unlike an empty line (which csv
/// skips, starting the next record's position there) it keeps the next record's position right.
struct LimitedLines<R> {
    blocks: LineBlocks<R>,
    /// The part of the current block not yet handed out.
    current: Range<usize>,
    /// Newlines handed out so far.
    lines: u64,
    too_long: VecDeque<u64>,
    placeholder: [u8; 2],
    /// Bytes of `placeholder` not yet handed out (from its end).
    placeholder_left: usize,
}

impl<R: Read> LimitedLines<R> {
    fn new(input: R, max_line: usize, delimiter: u8) -> LimitedLines<R> {
        LimitedLines {
            blocks: LineBlocks::new(input, max_line),
            current: 0..0,
            lines: 0,
            too_long: VecDeque::new(),
            placeholder: [delimiter, b'\n'],
            placeholder_left: 0,
        }
    }
}

impl<R: Read> Read for LimitedLines<R> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        loop {
            if self.placeholder_left > 0 {
                let from = self.placeholder.len() - self.placeholder_left;
                let n = out.len().min(self.placeholder_left);
                out[..n].copy_from_slice(&self.placeholder[from..from + n]);
                self.placeholder_left -= n;
                return Ok(n);
            }
            if !self.current.is_empty() {
                let n = out.len().min(self.current.len());
                let from = self.current.start;
                let bytes = self.blocks.bytes(from..from + n);
                out[..n].copy_from_slice(bytes);
                self.lines += memchr::memchr_iter(b'\n', bytes).count() as u64;
                self.current.start += n;
                return Ok(n);
            }
            match self.blocks.next_block()? {
                Block::Lines(range) => self.current = range,
                Block::TooLong => {
                    self.lines += 1;
                    self.too_long.push_back(self.lines);
                    self.placeholder_left = self.placeholder.len();
                }
                Block::End => return Ok(0),
            }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::testing::{Collect, Trickle, layout, millis};

    fn csv_format(columns: &[&str]) -> DelimitedFormat {
        DelimitedFormat {
            columns: columns.iter().map(|c| c.to_string()).collect(),
            find_columns_from_header: false,
            skip_header_rows: 0,
            list_delimiter: "\u{1}".into(),
            delimiter: b',',
            try_parse_numbers: false,
        }
    }

    #[test]
    fn a_line_over_the_limit_is_one_error_and_reading_goes_on() {
        let long = format!("1,{}", "x".repeat(3000));
        let exact = format!("2,{}", "y".repeat(1022));
        let text = format!(
            "1,first\n{long}\n{exact}\n{long}\r\n\"3\",\"quoted\nacross lines\"\n{long}\n4,last\n{long}"
        );
        let expected_rows = vec![
            (1, "first".to_string()),
            (3, "y".repeat(1022)),
            (5, "quoted\nacross lines".to_string()),
            (8, "last".to_string()),
        ];
        let message = "line is longer than 1024 bytes".to_string();
        let expected_errors: Vec<(u64, String)> =
            [2, 4, 7, 9].iter().map(|&l| (l, message.clone())).collect();
        let format = csv_format(&["t", "a"]);
        for step in [1, 7, 1000, 1 << 20] {
            let mut out = Collect::default();
            let input = Trickle {
                data: text.as_bytes(),
                step,
            };
            read_delimited_limited(
                input,
                "t.csv",
                &format,
                &layout(&["a"]),
                &millis("t"),
                &mut out,
                1024,
            )
            .unwrap();
            assert_eq!(out.rows_by_line(), expected_rows, "step {step}");
            assert_eq!(out.errors_by_line(), expected_errors, "step {step}");
        }
        // Errors stay in line order with the other parse errors.
        let text = format!("1,a\n{long}\nbad,b\n{long}\n2,c\n");
        let mut out = Collect::default();
        let (input, fields) = (text.as_bytes(), layout(&["a"]));
        read_delimited_limited(
            input,
            "t.csv",
            &format,
            &fields,
            &millis("t"),
            &mut out,
            1024,
        )
        .unwrap();
        let lines: Vec<u64> = out.errors_by_line().iter().map(|e| e.0).collect();
        assert_eq!(lines, vec![2, 3, 4]);
        assert_eq!(out.rows_by_line(), vec![(1, "a".into()), (5, "c".into())]);
        // The default limit reads them all.
        let mut out = Collect::default();
        read_delimited(input, "t.csv", &format, &fields, &millis("t"), &mut out).unwrap();
        assert_eq!(out.rows.len(), 4);
    }

    #[test]
    fn malformed_records_name_the_cause() {
        // The reader's own settings (flexible, byte records) leave only I/O errors, so take a
        // parse error from a stricter reader to check the message.
        let mut strict = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(&b"a,b\nc\n"[..]);
        let e = strict
            .records()
            .find_map(|r| r.err())
            .expect("unequal lengths");
        let message = malformed(&e);
        assert!(message.starts_with("malformed record: "), "{message}");
        assert!(message.contains("found record with 1 fields"), "{message}");
    }
}
