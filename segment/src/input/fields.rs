//! What every reader shares: where an input field goes ([`Target`], looked up by [`FieldLookup`]),
//! which slots a row has set ([`SeenSlots`], so fields absent from a row are reset to null and do
//! not leak from the previous row), and how a timestamp value becomes milliseconds
//! ([`TimestampReader`], with the parse-error messages users see).

use rustc_hash::FxHashMap;

use crate::row::{RowLayout, Value};
use crate::spec::TimestampSpec;
use crate::time::{TimestampFormat, parse_iso_timestamp};

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
    small: Vec<(Box<str>, Target)>,
    large: Option<FxHashMap<Box<str>, Target>>,
}

impl FieldLookup {
    const LINEAR_MAX: usize = 8;

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
        let large = (entries.len() > Self::LINEAR_MAX).then(|| entries.iter().cloned().collect());
        FieldLookup {
            small: entries,
            large,
        }
    }

    #[inline]
    pub fn get(&self, name: &str) -> Option<Target> {
        match &self.large {
            Some(map) => map.get(name).copied(),
            None => self
                .small
                .iter()
                .find(|(n, _)| n.len() == name.len() && **n == *name)
                .map(|(_, t)| *t),
        }
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
        parsed.ok_or_else(|| self.unparseable(text))
    }

    #[inline]
    pub fn parse_long(&self, value: i64) -> Result<i64, String> {
        self.spec
            .format
            .from_number(value as f64)
            .ok_or_else(|| self.unparseable(&value.to_string()))
    }

    #[inline]
    pub fn parse_double(&self, value: f64) -> Result<i64, String> {
        self.spec
            .format
            .from_number(value)
            .ok_or_else(|| self.unparseable(&value.to_string()))
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
