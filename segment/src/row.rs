//! Input rows as readers hand them to the index: a timestamp and the raw values of the fields the
//! schema needs, in the slots a [`RowLayout`] assigns.

use std::fmt::{self, Write as _};

use crate::schema::Schema;

/// A raw input value, typed as the input format typed it. Conversion to a dimension's type happens
/// in the index, so every reader treats values the same way.
#[derive(Clone, Debug, PartialEq, Default)]
pub enum Value {
    #[default]
    Null,
    String(String),
    /// A list (JSON array, delimited multi-value, Parquet repeated field), elements as text.
    Strings(Vec<String>),
    Long(i64),
    Double(f64),
}

impl Value {
    /// Sets this slot to `text`, reusing the slot's string buffer when it has one.
    #[inline]
    pub fn set_str(&mut self, text: &str) {
        if let Value::String(s) = self {
            s.clear();
            s.push_str(text);
        } else {
            *self = Value::String(text.to_owned());
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }
}

/// One parsed input row. `values[slot]` holds the field `RowLayout::fields[slot]`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct InputRow {
    pub timestamp_ms: i64,
    pub values: Vec<Value>,
}

/// Which input fields a reader extracts, and where each lands in [`InputRow::values`]:
/// dimensions first (slot = dimension index), then metric input fields, then extra fields
/// (e.g. those a transform filter reads). A field used twice has one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RowLayout {
    pub fields: Vec<String>,
    /// For each metric, the slot of its input field (`None` for `count`).
    pub metric_slots: Vec<Option<usize>>,
}

impl RowLayout {
    pub fn new(schema: &Schema, extra_fields: &[String]) -> RowLayout {
        let mut fields: Vec<String> = schema.dimensions.iter().map(|d| d.name.clone()).collect();
        let slot_of =
            |name: &str, fields: &mut Vec<String>| match fields.iter().position(|f| f == name) {
                Some(i) => i,
                None => {
                    fields.push(name.to_owned());
                    fields.len() - 1
                }
            };
        let metric_slots = schema
            .metrics
            .iter()
            .map(|m| m.field_name.as_deref().map(|f| slot_of(f, &mut fields)))
            .collect();
        for extra in extra_fields {
            slot_of(extra, &mut fields);
        }
        RowLayout {
            fields,
            metric_slots,
        }
    }

    pub fn slot(&self, field: &str) -> Option<usize> {
        self.fields.iter().position(|f| f == field)
    }

    /// An empty row with one `Null` per slot, for readers to fill and reuse.
    pub fn empty_row(&self) -> InputRow {
        InputRow {
            timestamp_ms: 0,
            values: vec![Value::Null; self.fields.len()],
        }
    }
}

/// A double as text, as Druid prints it (Java's `Double.toString`): `1.0`, `2.5`, `0.001`,
/// `100000.0` for magnitudes in `[1e-3, 1e7)`; `1.0E8`, `1.0E-5`, `-3.0E-4`, `1.2345E10` outside
/// it; `NaN`, `Infinity`, `-Infinity`, `0.0`, `-0.0`. Digits are the shortest that read back as
/// the same double. Every place a double becomes text (dictionaries, filters, readers) uses this.
pub fn format_double(value: f64) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_double(&mut out, value);
    out
}

/// [`format_double`] into any writer (a `String`, or a stack buffer to avoid allocating). Fails
/// only when `out` does.
pub fn write_double<W: fmt::Write + ?Sized>(out: &mut W, value: f64) -> fmt::Result {
    if value.is_nan() {
        return out.write_str("NaN");
    }
    if value.is_infinite() {
        return out.write_str(if value > 0.0 { "Infinity" } else { "-Infinity" });
    }
    if value == 0.0 {
        return out.write_str(if value.is_sign_negative() {
            "-0.0"
        } else {
            "0.0"
        });
    }
    if (1e-3..1e7).contains(&value.abs()) {
        // Display gives the shortest round-trip digits and never an exponent; in this range it
        // prints a fraction exactly when the value is not an integer.
        write!(out, "{value}")?;
        if value.fract() == 0.0 {
            out.write_str(".0")?;
        }
        return Ok(());
    }
    let mut text = NumberText::default();
    write!(text, "{value:e}")?;
    let (mut mantissa, mut exponent) = text
        .as_str()
        .split_once('e')
        .unwrap_or((text.as_str(), "0"));
    // Java never prints one significant digit: among the shortest decimals it takes those of
    // length 1 or 2 and picks the one nearest the value. That differs from `d.0` only for
    // subnormals (`4.9E-324`, not `5.0E-324`).
    let mut two_digits = NumberText::default();
    if !mantissa.contains('.') {
        write!(two_digits, "{value:.1e}")?;
        if two_digits.as_str().parse::<f64>() == Ok(value)
            && let Some((m, e)) = two_digits.as_str().split_once('e')
            && !m.ends_with(".0")
        {
            (mantissa, exponent) = (m, e);
        }
    }
    out.write_str(mantissa)?;
    if !mantissa.contains('.') {
        out.write_str(".0")?;
    }
    out.write_str("E")?;
    out.write_str(exponent)
}

/// A stack buffer for the text of one number.
pub(crate) struct NumberText {
    bytes: [u8; 40],
    len: usize,
}

impl Default for NumberText {
    fn default() -> Self {
        NumberText {
            bytes: [0; 40],
            len: 0,
        }
    }
}

impl NumberText {
    pub(crate) fn as_str(&self) -> &str {
        // Only whole `&str`s are copied in, so the prefix is valid UTF-8.
        std::str::from_utf8(&self.bytes[..self.len]).unwrap_or("")
    }
}

impl fmt::Write for NumberText {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let slot = self.bytes.get_mut(self.len..end).ok_or(fmt::Error)?;
        slot.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_java() {
        let cases: &[(f64, &str)] = &[
            (1.0, "1.0"),
            (2.5, "2.5"),
            (-3.0, "-3.0"),
            (0.25, "0.25"),
            (100000.0, "100000.0"),
            (0.001, "0.001"),
            (-0.001, "-0.001"),
            (1234567.125, "1234567.125"),
            (9999999.0, "9999999.0"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e7, "1.0E7"),
            (1e8, "1.0E8"),
            (1e16, "1.0E16"),
            (1e21, "1.0E21"),
            (1.2345e10, "1.2345E10"),
            (-1.2345e10, "-1.2345E10"),
            (1e-5, "1.0E-5"),
            (1.5e-5, "1.5E-5"),
            (-3.0e-4, "-3.0E-4"),
            (0.000999, "9.99E-4"),
            (f64::MAX, "1.7976931348623157E308"),
            (f64::MIN_POSITIVE, "2.2250738585072014E-308"),
            (f64::from_bits(1), "4.9E-324"),
            (f64::NAN, "NaN"),
            (f64::INFINITY, "Infinity"),
            (f64::NEG_INFINITY, "-Infinity"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
        ];
        for &(value, text) in cases {
            assert_eq!(format_double(value), text, "{value:?}");
            let mut s = String::from("x");
            write_double(&mut s, value).unwrap();
            assert_eq!(s, format!("x{text}"));
            if value.is_finite() {
                assert_eq!(text.parse::<f64>(), Ok(value), "{text} round-trips");
            }
        }
    }
}
