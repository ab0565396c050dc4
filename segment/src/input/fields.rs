//! What every reader shares: where an input field goes ([`Target`], looked up by [`FieldLookup`]),
//! which slots a row has set ([`SeenSlots`], so fields absent from a row are reset to null and do
//! not leak from the previous row), how a timestamp value becomes milliseconds
//! ([`TimestampReader`], with the parse-error messages users see, including timestamps outside
//! [`Interval::ETERNITY`]), and how text input is cut into blocks of whole lines of bounded length
//! ([`LineBlocks`], for the JSON and delimited readers).

use std::cell::Cell;
use std::fmt;

use rustc_hash::FxHashMap;

use crate::row::{RowLayout, Value, format_double, write_double};
use crate::spec::TimestampSpec;
use crate::time::{Interval, TimestampFormat, parse_iso_timestamp};

/// Where an input field goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The row slot, if the layout wants the field.
    pub slot: Option<usize>,
    /// Whether the field is the timestamp column.
    pub timestamp: bool,
}

/// Finds a field's [`Target`] by name: a linear scan over a few names, a hash map over many.
pub(crate) struct FieldLookup {
    entries: Vec<(Box<str>, Target)>,
    /// Name → index into `entries`, for rows with many fields.
    large: Option<FxHashMap<Box<str>, u32>>,
    /// For the n-th key of a row, the entry the n-th key of the previous row matched: rows of
    /// one file almost always list their keys in the same order, so one compare usually finds
    /// the field without hashing. `u32::MAX` when unknown.
    predicted: Vec<Cell<u32>>,
}

impl FieldLookup {
    const LINEAR_MAX: usize = 8;
    /// Key positions remembered per row.
    const PREDICTED_MAX: usize = 1024;

    pub fn new(layout: &RowLayout, timestamp_column: &str) -> FieldLookup {
        let mut entries: Vec<(Box<str>, Target)> = layout
            .fields
            .iter()
            .enumerate()
            .map(|(slot, name)| {
                let target = Target {
                    slot: Some(slot),
                    timestamp: name == timestamp_column,
                };
                (name.as_str().into(), target)
            })
            .collect();
        if !layout.fields.iter().any(|f| f == timestamp_column) {
            let target = Target {
                slot: None,
                timestamp: true,
            };
            entries.push((timestamp_column.into(), target));
        }
        let large = (entries.len() > Self::LINEAR_MAX).then(|| {
            entries
                .iter()
                .enumerate()
                .map(|(i, (name, _))| (name.clone(), i as u32))
                .collect()
        });
        // Rows usually carry a few more keys than the fields wanted.
        let positions = (entries.len() * 2 + 16).min(Self::PREDICTED_MAX);
        FieldLookup {
            entries,
            large,
            predicted: vec![Cell::new(u32::MAX); positions],
        }
    }

    #[inline]
    pub fn get(&self, name: &str) -> Option<Target> {
        self.index_of(name).map(|i| self.entries[i].1)
    }

    #[inline]
    fn index_of(&self, name: &str) -> Option<usize> {
        match &self.large {
            Some(map) => map.get(name).map(|&i| i as usize),
            None => self
                .entries
                .iter()
                .position(|(n, _)| n.len() == name.len() && **n == *name),
        }
    }

    /// Looks up the `position`-th key of a row, trying first the field the same position held
    /// in the previous row.
    #[inline]
    pub fn get_at(&self, position: usize, name: &str) -> Option<Target> {
        let memo = self.predicted.get(position);
        if let Some(memo) = memo {
            let guess = memo.get() as usize;
            if let Some((n, target)) = self.entries.get(guess)
                && **n == *name
            {
                return Some(*target);
            }
        }
        let found = self.index_of(name);
        if let (Some(memo), Some(i)) = (memo, found) {
            memo.set(i as u32);
        }
        found.map(|i| self.entries[i].1)
    }
}

/// Tracks which slots the current row set, by stamping each with the row's number.
pub(crate) struct SeenSlots {
    stamps: Vec<u64>,
    current: u64,
}

impl SeenSlots {
    pub fn new(slots: usize) -> SeenSlots {
        SeenSlots {
            stamps: vec![0; slots],
            current: 0,
        }
    }

    /// Starts a new row.
    #[inline]
    pub fn begin(&mut self) {
        self.current += 1;
    }

    #[inline]
    pub fn mark(&mut self, slot: usize) {
        if let Some(s) = self.stamps.get_mut(slot) {
            *s = self.current;
        }
    }

    /// Resets every slot the current row did not set to null.
    #[inline]
    pub fn reset_unseen(&self, values: &mut [Value]) {
        for (value, stamp) in values.iter_mut().zip(&self.stamps) {
            if *stamp != self.current && !value.is_null() {
                *value = Value::Null;
            }
        }
    }
}

/// Turns timestamp values into milliseconds as the `timestampSpec` says.
pub(crate) struct TimestampReader<'a> {
    pub spec: &'a TimestampSpec,
}

impl TimestampReader<'_> {
    /// The timestamp of a row without one: `missingValue`, or an error.
    pub fn missing(&self) -> Result<i64, String> {
        self.spec
            .missing_value
            .ok_or_else(|| format!("missing timestamp column '{}'", self.spec.column))
    }

    fn unparseable(&self, text: &str) -> String {
        format!(
            "unparseable timestamp '{text}' in column '{}' (format {})",
            self.spec.column,
            self.spec.format.name()
        )
    }

    /// `ms` if it lies in [`Interval::ETERNITY`] (the range Druid and the time arithmetic
    /// support), else the parse error naming the value as read (`shown`).
    #[inline]
    pub fn in_range(&self, ms: i64, shown: impl fmt::Display) -> Result<i64, String> {
        if Interval::ETERNITY.contains(ms) {
            Ok(ms)
        } else {
            Err(self.out_of_range(&shown.to_string()))
        }
    }

    #[cold]
    fn out_of_range(&self, shown: &str) -> String {
        format!(
            "timestamp '{shown}' in column '{}' is outside the supported range {}",
            self.spec.column,
            Interval::ETERNITY
        )
    }

    #[inline]
    pub fn parse_text(&self, text: &str) -> Result<i64, String> {
        // Fast path for the common `2024-01-01T...` under `auto`/`iso`: exactly what
        // `TimestampFormat::from_text` does for such text, minus its trim and numeric pre-scan.
        let b = text.as_bytes();
        let iso_like = b.len() > 4
            && b[..4].iter().all(u8::is_ascii_digit)
            && b[4] == b'-'
            && !b[b.len() - 1].is_ascii_whitespace();
        let parsed = match self.spec.format {
            TimestampFormat::Auto | TimestampFormat::Iso if iso_like => parse_iso_timestamp(text),
            format => format.from_text(text),
        };
        match parsed {
            Some(ms) => self.in_range(ms, text),
            None => Err(self.unparseable(text)),
        }
    }

    #[inline]
    pub fn parse_long(&self, value: i64) -> Result<i64, String> {
        match self.spec.format.from_number(value as f64) {
            Some(ms) => self.in_range(ms, value),
            None => Err(self.unparseable(&value.to_string())),
        }
    }

    #[inline]
    pub fn parse_double(&self, value: f64) -> Result<i64, String> {
        match self.spec.format.from_number(value) {
            Some(ms) => self.in_range(ms, DoubleText(value)),
            None => Err(self.unparseable(&format_double(value))),
        }
    }

    /// The timestamp held in a row slot (when the timestamp column is also a dimension or metric
    /// input).
    pub fn parse_value(&self, value: &Value) -> Result<i64, String> {
        match value {
            Value::Null => self.missing(),
            Value::String(s) => self.parse_text(s),
            Value::Long(n) => self.parse_long(*n),
            Value::Double(d) => self.parse_double(*d),
            Value::Strings(list) => Err(self.unparseable(&list.join(","))),
        }
    }
}

/// A double shown as [`format_double`] does, formatted only when displayed.
struct DoubleText(f64);

impl fmt::Display for DoubleText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_double(f, self.0)
    }
}

/// What [`LineBlocks::next_block`] found.
pub(crate) enum Block {
    /// `range` of [`LineBlocks::bytes`]: whole lines, each at most the limit long, every one
    /// ending with `\n` except a last line at the end of the input.
    Lines(std::ops::Range<usize>),
    /// One line longer than the limit, now skipped through its `\n` (or the end of the input).
    TooLong,
    /// The end of the input.
    End,
}

/// Splits input into blocks of whole lines, read in large chunks, without ever holding more than
/// one line of `max_line` bytes (plus its newline): a longer line is skipped as it streams by and
/// reported as [`Block::TooLong`], so one huge line cannot exhaust memory.
pub(crate) struct LineBlocks<R> {
    input: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    max_line: usize,
    /// Inside a too-long line: dropping bytes up to its newline.
    skipping: bool,
    eof: bool,
}

impl<R: std::io::Read> LineBlocks<R> {
    /// Bytes read from the input at a time, unless `max_line` is smaller.
    const CHUNK_BYTES: usize = 1 << 20;

    pub fn new(input: R, max_line: usize) -> LineBlocks<R> {
        // The buffer never grows past `max_line + 1` bytes, so it cannot hold a whole line that
        // is too long: such a line always shows up as a newline-free tail to skip.
        let size = Self::CHUNK_BYTES.min(max_line.saturating_add(1));
        LineBlocks {
            input,
            buf: vec![0; size],
            start: 0,
            end: 0,
            max_line,
            skipping: false,
            eof: false,
        }
    }

    /// The bytes of a [`Block::Lines`] range, valid until the next call to `next_block`.
    pub fn bytes(&self, range: std::ops::Range<usize>) -> &[u8] {
        &self.buf[range]
    }

    pub fn next_block(&mut self) -> std::io::Result<Block> {
        loop {
            let pending = &self.buf[self.start..self.end];
            if self.skipping {
                if let Some(at) = memchr::memchr(b'\n', pending) {
                    self.start += at + 1;
                    self.skipping = false;
                    return Ok(Block::TooLong);
                }
                self.start = self.end;
                if self.eof {
                    self.skipping = false;
                    return Ok(Block::TooLong);
                }
            } else if let Some(last) = memchr::memrchr(b'\n', pending) {
                let block = self.start..self.start + last + 1;
                self.start = block.end;
                return Ok(Block::Lines(block));
            } else if pending.len() > self.max_line {
                self.skipping = true;
                self.start = self.end;
                continue;
            } else if self.eof {
                if pending.is_empty() {
                    return Ok(Block::End);
                }
                let block = self.start..self.end;
                self.start = self.end;
                return Ok(Block::Lines(block));
            }
            self.fill()?;
        }
    }

    /// Moves the pending tail to the front and reads more after it.
    fn fill(&mut self) -> std::io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            // Only reached with a newline-free tail of at most `max_line` bytes.
            let size = (self.buf.len() * 2).min(self.max_line.saturating_add(1));
            self.buf.resize(size.max(self.buf.len() + 1), 0);
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    return Ok(());
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}
