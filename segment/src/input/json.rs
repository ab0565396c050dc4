//! The newline-delimited JSON reader: one object per line, the ingestion hot path.
//!
//! The input is read in large chunks (by `LineBlocks`) and split into lines with `memchr`; each line is parsed by
//! serde_json's streaming deserializer with a [`DeserializeSeed`] that reads keys as borrowed
//! `&str`, looks them up in a `FieldLookup`, writes wanted values straight into the reused
//! [`InputRow`] slot (reusing its string buffer) and skips the rest with [`IgnoredAny`]. A row
//! whose strings fit the reused buffers costs no allocation.
//!
//! Typing: string → `String`, integer → `Long` (above `i64::MAX` → `Double`), other number →
//! `Double`, bool → `String("true"/"false")`, null → `Null`, array → `Strings` (elements as text,
//! nested objects and arrays as their JSON text, null elements dropped), object → `String` of its
//! JSON text. Blank lines are skipped; a line that is not a JSON object is a parse error with
//! serde's message and the line number, and so is a line longer than [`MAX_LINE_BYTES`] (skipped
//! without being held in memory). Doubles in arrays become text by [`crate::row::format_double`].

use std::fmt::{self, Write as _};
use std::io::Read;

use memchr::memchr;
use serde::Deserialize as _;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::fields::{Block, FieldLookup, LineBlocks, SeenSlots, Target, TimestampReader};
use super::{MAX_LINE_BYTES, ParseError, RowPosition, RowVisitor};
use crate::error::{Result, SegmentError};
use crate::row::{InputRow, RowLayout, Value};
use crate::spec::TimestampSpec;

/// Reads newline-delimited JSON from `input`, named `source` in positions and errors. A line
/// longer than [`MAX_LINE_BYTES`] is one parse error; reading goes on after it.
pub fn read_json(
    input: impl Read,
    source: &str,
    layout: &RowLayout,
    timestamp: &TimestampSpec,
    visitor: &mut dyn RowVisitor,
) -> Result<()> {
    read_json_limited(input, source, layout, timestamp, visitor, MAX_LINE_BYTES)
}

/// [`read_json`] of a part of a file that starts after `lines_before` lines (positions and
/// errors number lines from the file's start).
pub fn read_json_from(
    input: impl Read,
    source: &str,
    layout: &RowLayout,
    timestamp: &TimestampSpec,
    visitor: &mut dyn RowVisitor,
    lines_before: u64,
) -> Result<()> {
    read_json_at(
        input,
        source,
        layout,
        timestamp,
        visitor,
        MAX_LINE_BYTES,
        lines_before,
    )
}

/// [`read_json`] with the line limit as a parameter (tests use a small one).
pub(crate) fn read_json_limited(
    input: impl Read,
    source: &str,
    layout: &RowLayout,
    timestamp: &TimestampSpec,
    visitor: &mut dyn RowVisitor,
    max_line: usize,
) -> Result<()> {
    read_json_at(input, source, layout, timestamp, visitor, max_line, 0)
}

fn read_json_at(
    input: impl Read,
    source: &str,
    layout: &RowLayout,
    timestamp: &TimestampSpec,
    visitor: &mut dyn RowVisitor,
    max_line: usize,
    lines_before: u64,
) -> Result<()> {
    let mut parser = JsonRowParser::new(layout, timestamp, source);
    parser.position.line = Some(lines_before);
    let mut blocks = LineBlocks::new(input, max_line);
    loop {
        match blocks
            .next_block()
            .map_err(|e| SegmentError::io(source, e))?
        {
            Block::Lines(range) => parser.block(blocks.bytes(range), visitor)?,
            Block::TooLong => parser.too_long(max_line, visitor)?,
            Block::End => return Ok(()),
        }
    }
}

/// One line: text already checked to be UTF-8 (the fast path: serde_json need not check each
/// string), or raw bytes (when the block around it was not valid UTF-8).
#[derive(Clone, Copy)]
enum Line<'b> {
    Text(&'b str),
    Bytes(&'b [u8]),
}

impl<'b> Line<'b> {
    fn as_bytes(&self) -> &'b [u8] {
        match *self {
            Line::Text(t) => t.as_bytes(),
            Line::Bytes(b) => b,
        }
    }

    /// The part `[from, to)`; both ends lie on ASCII bytes or the edges, so text stays text.
    fn slice(&self, from: usize, to: usize) -> Line<'b> {
        match *self {
            Line::Text(t) => t
                .get(from..to)
                .map_or(Line::Bytes(&t.as_bytes()[from..to]), Line::Text),
            Line::Bytes(b) => Line::Bytes(&b[from..to]),
        }
    }
}

/// Parses lines into one reused row.
struct JsonRowParser<'a> {
    lookup: FieldLookup,
    timestamp: TimestampReader<'a>,
    row: InputRow,
    seen: SeenSlots,
    position: RowPosition,
}

/// The timestamp value of one line, as read.
enum RawTimestamp {
    Absent,
    Parsed(i64),
    Bad(String),
}

impl<'a> JsonRowParser<'a> {
    fn new(layout: &RowLayout, timestamp: &'a TimestampSpec, source: &str) -> JsonRowParser<'a> {
        JsonRowParser {
            lookup: FieldLookup::new(layout, &timestamp.column),
            timestamp: TimestampReader { spec: timestamp },
            row: layout.empty_row(),
            seen: SeenSlots::new(layout.fields.len()),
            position: RowPosition {
                source: source.to_owned(),
                line: Some(0),
                row_group: None,
                row: None,
            },
        }
    }

    /// Reads the lines of a block of whole lines (the last may lack its newline).
    fn block(&mut self, block: &[u8], visitor: &mut dyn RowVisitor) -> Result<()> {
        let whole = match std::str::from_utf8(block) {
            Ok(text) => Line::Text(text),
            Err(_) => Line::Bytes(block),
        };
        let bytes = block;
        let mut from = 0;
        while from < bytes.len() {
            let to = memchr(b'\n', &bytes[from..]).map_or(bytes.len(), |at| from + at);
            self.line(whole.slice(from, to), visitor)?;
            from = to + 1;
        }
        Ok(())
    }

    /// Reports a line longer than `max_line` bytes, which [`LineBlocks`] skipped.
    fn too_long(&mut self, max_line: usize, visitor: &mut dyn RowVisitor) -> Result<()> {
        let number = self.position.line.unwrap_or(0) + 1;
        self.position.line = Some(number);
        visitor.unparseable(ParseError {
            position: self.position.clone(),
            message: format!("line is longer than {max_line} bytes"),
        })
    }

    fn line(&mut self, line: Line, visitor: &mut dyn RowVisitor) -> Result<()> {
        let number = self.position.line.unwrap_or(0) + 1;
        self.position.line = Some(number);
        let bytes = line.as_bytes();
        let mut from = 0;
        let mut to = bytes.len();
        if number == 1 && bytes.starts_with(b"\xEF\xBB\xBF") {
            from = 3;
        }
        if to > from && bytes[to - 1] == b'\r' {
            to -= 1;
        }
        let content = &bytes[from..to];
        if content.first().is_none_or(u8::is_ascii_whitespace)
            && content.iter().all(u8::is_ascii_whitespace)
        {
            return Ok(());
        }
        let parsed = match line.slice(from, to) {
            Line::Text(text) => self.parse(&mut serde_json::Deserializer::from_str(text)),
            Line::Bytes(raw) => self.parse(&mut serde_json::Deserializer::from_slice(raw)),
        };
        match parsed {
            Ok(timestamp_ms) => {
                self.row.timestamp_ms = timestamp_ms;
                visitor.row(&self.row, &self.position)
            }
            Err(message) => visitor.unparseable(ParseError {
                position: self.position.clone(),
                message,
            }),
        }
    }

    /// Fills the row from one line; returns its timestamp.
    fn parse<'de, R: serde_json::de::Read<'de>>(
        &mut self,
        de: &mut serde_json::Deserializer<R>,
    ) -> Result<i64, String> {
        self.seen.begin();
        let mut raw_ts = RawTimestamp::Absent;
        let seed = RowSeed {
            lookup: &self.lookup,
            timestamp: &self.timestamp,
            values: &mut self.row.values,
            seen: &mut self.seen,
            raw_ts: &mut raw_ts,
        };
        seed.deserialize(&mut *de)
            .and_then(|()| de.end())
            .map_err(json_error)?;
        self.seen.reset_unseen(&mut self.row.values);
        match raw_ts {
            RawTimestamp::Parsed(ms) => Ok(ms),
            RawTimestamp::Bad(message) => Err(message),
            RawTimestamp::Absent => self.timestamp.missing(),
        }
    }
}

/// serde_json's message without its " at line 1 column N" (every line is line 1 to it).
fn json_error(e: serde_json::Error) -> String {
    let text = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    match text.strip_suffix(&suffix) {
        Some(message) => format!("invalid JSON: {message} (column {})", e.column()),
        None => format!("invalid JSON: {text}"),
    }
}

/// Deserializes one top-level object into the row.
struct RowSeed<'r, 'a> {
    lookup: &'r FieldLookup,
    timestamp: &'r TimestampReader<'a>,
    values: &'r mut [Value],
    seen: &'r mut SeenSlots,
    raw_ts: &'r mut RawTimestamp,
}

impl<'de> DeserializeSeed<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut position = 0;
        while let Some(target) = map.next_key_seed(KeySeed(self.lookup, position))? {
            position += 1;
            match target {
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
                Some(Target {
                    slot: Some(slot), ..
                }) if slot < self.values.len() => {
                    let value = &mut self.values[slot];
                    map.next_value_seed(SlotSeed(value))?;
                    self.seen.mark(slot);
                    if target.is_some_and(|t| t.timestamp) {
                        *self.raw_ts = match self.timestamp.parse_value(value) {
                            Ok(ms) => RawTimestamp::Parsed(ms),
                            Err(_) if value.is_null() => RawTimestamp::Absent,
                            Err(message) => RawTimestamp::Bad(message),
                        };
                    }
                }
                Some(Target {
                    timestamp: true, ..
                }) => {
                    *self.raw_ts = map.next_value_seed(TimestampSeed(self.timestamp))?;
                }
                Some(_) => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

/// Reads a key and looks it up, without allocating.
struct KeySeed<'r>(&'r FieldLookup, usize);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Option<Target>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Option<Target>, D::Error> {
        d.deserialize_str(self)
    }
}

impl Visitor<'_> for KeySeed<'_> {
    type Value = Option<Target>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a field name")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<Option<Target>, E> {
        Ok(self.0.get_at(self.1, key))
    }
}

/// Reads the timestamp value when the timestamp column has no slot.
struct TimestampSeed<'r, 'a>(&'r TimestampReader<'a>);

impl<'de> DeserializeSeed<'de> for TimestampSeed<'_, '_> {
    type Value = RawTimestamp;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<RawTimestamp, D::Error> {
        d.deserialize_any(self)
    }
}

fn raw_timestamp(parsed: Result<i64, String>) -> RawTimestamp {
    match parsed {
        Ok(ms) => RawTimestamp::Parsed(ms),
        Err(message) => RawTimestamp::Bad(message),
    }
}

impl<'de> Visitor<'de> for TimestampSeed<'_, '_> {
    type Value = RawTimestamp;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a timestamp")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawTimestamp, E> {
        Ok(raw_timestamp(self.0.parse_text(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawTimestamp, E> {
        Ok(raw_timestamp(self.0.parse_long(v)))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawTimestamp, E> {
        Ok(raw_timestamp(match i64::try_from(v) {
            Ok(n) => self.0.parse_long(n),
            Err(_) => self.0.parse_double(v as f64),
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawTimestamp, E> {
        Ok(raw_timestamp(self.0.parse_double(v)))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<RawTimestamp, E> {
        Ok(raw_timestamp(self.0.parse_text(if v {
            "true"
        } else {
            "false"
        })))
    }
    fn visit_unit<E: de::Error>(self) -> Result<RawTimestamp, E> {
        Ok(RawTimestamp::Absent)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<RawTimestamp, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(raw_timestamp(self.0.parse_text(&value.to_string())))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawTimestamp, A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(raw_timestamp(self.0.parse_text(&value.to_string())))
    }
}

/// Deserializes one value into a row slot, reusing the slot's buffers.
struct SlotSeed<'r>(&'r mut Value);

impl<'de> DeserializeSeed<'de> for SlotSeed<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for SlotSeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.0.set_str(v);
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        *self.0 = Value::Long(v);
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        *self.0 = i64::try_from(v).map_or(Value::Double(v as f64), Value::Long);
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        *self.0 = Value::Double(v);
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.0.set_str(if v { "true" } else { "false" });
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        *self.0 = Value::Null;
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut list = match std::mem::take(self.0) {
            Value::Strings(list) => list,
            _ => Vec::new(),
        };
        let mut len = 0;
        while let Some(pushed) = seq.next_element_seed(ElementSeed {
            list: &mut list,
            index: len,
        })? {
            if pushed {
                len += 1;
            }
        }
        list.truncate(len);
        *self.0 = Value::Strings(list);
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        self.0.set_str(&value.to_string());
        Ok(())
    }
}

/// Writes one array element as text into `list[index]` (reusing that string) or appends it;
/// returns whether it wrote anything (null elements are dropped).
struct ElementSeed<'r> {
    list: &'r mut Vec<String>,
    index: usize,
}

impl<'de> DeserializeSeed<'de> for ElementSeed<'_> {
    type Value = bool;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl ElementSeed<'_> {
    fn write(self, f: impl FnOnce(&mut String)) -> bool {
        if self.index < self.list.len() {
            let s = &mut self.list[self.index];
            s.clear();
            f(s);
        } else {
            let mut s = String::new();
            f(&mut s);
            self.list.push(s);
        }
        true
    }
}

impl<'de> Visitor<'de> for ElementSeed<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
        Ok(self.write(|s| s.push_str(v)))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
        Ok(self.write(|s| {
            let _ = write!(s, "{v}");
        }))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
        Ok(self.write(|s| {
            let _ = write!(s, "{v}");
        }))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<bool, E> {
        Ok(self.write(|s| {
            let _ = crate::row::write_double(s, v);
        }))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
        Ok(self.write(|s| s.push_str(if v { "true" } else { "false" })))
    }
    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<bool, A::Error> {
        let value = serde_json::Value::deserialize(de::value::SeqAccessDeserializer::new(seq))?;
        Ok(self.write(|s| s.push_str(&value.to_string())))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<bool, A::Error> {
        let value = serde_json::Value::deserialize(de::value::MapAccessDeserializer::new(map))?;
        Ok(self.write(|s| s.push_str(&value.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::testing::{Collect, Trickle, layout, millis};

    fn read(data: &[u8], step: usize, max_line: usize) -> Collect {
        let mut out = Collect::default();
        let input = Trickle { data, step };
        read_json_limited(
            input,
            "t.json",
            &layout(&["a"]),
            &millis("t"),
            &mut out,
            max_line,
        )
        .unwrap();
        out
    }

    #[test]
    fn a_line_over_the_limit_is_one_error_and_reading_goes_on() {
        let long = format!("{{\"t\":1,\"a\":\"{}\"}}", "x".repeat(3000));
        let exact = format!("{{\"t\":2,\"a\":\"{}\"}}", "y".repeat(1024 - 14));
        assert_eq!(exact.len(), 1024);
        let text = format!(
            "{{\"t\":1,\"a\":\"first\"}}\n{long}\n{exact}\n{long}\r\n{long}\n\n{{\"t\":3,\"a\":\"last\"}}\n{long}"
        );
        let expected_rows = vec![
            (1, "first".to_string()),
            (3, "y".repeat(1024 - 14)),
            (7, "last".to_string()),
        ];
        let message = "line is longer than 1024 bytes".to_string();
        let expected_errors: Vec<(u64, String)> =
            [2, 4, 5, 8].iter().map(|&l| (l, message.clone())).collect();
        for step in [1, 7, 1000, 1 << 20] {
            let out = read(text.as_bytes(), step, 1024);
            assert_eq!(out.rows_by_line(), expected_rows, "step {step}");
            assert_eq!(out.errors_by_line(), expected_errors, "step {step}");
        }
        // The default limit reads the same text without errors.
        let mut out = Collect::default();
        read_json(
            text.as_bytes(),
            "t.json",
            &layout(&["a"]),
            &millis("t"),
            &mut out,
        )
        .unwrap();
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        assert_eq!(out.rows.len(), 7);
    }
}
