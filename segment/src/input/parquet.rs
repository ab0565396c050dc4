//! The Parquet reader, on the `parquet` crate's row API (no arrow), reading only the top-level
//! columns the layout and the timestamp need.
//!
//! Typing: INT32/INT64 (and the smaller and unsigned ints) → `Long`, FLOAT/DOUBLE/DECIMAL →
//! `Double`, UTF-8 `BYTE_ARRAY` → `String`, other `BYTE_ARRAY` → `String` only with
//! `binaryAsString` (otherwise the row is a parse error), BOOLEAN → `String("true"/"false")`,
//! lists → `Strings` (null elements dropped), TIMESTAMP_MILLIS/MICROS → `Long` ms, DATE → `Long`
//! ms at midnight UTC, structs and maps → `String` of their JSON text. A timestamp column of a
//! Parquet timestamp or date type is taken as is, whatever the `timestampSpec` format.
//!
//! Positions are (file, 0-based row group, 1-based row within the group). A file that cannot be
//! decoded is one `Io` error naming it: it cannot be resumed row by row.

use std::fmt::Write as _;
use std::fs::File;
use std::io::ErrorKind;
use std::path::Path;
use std::sync::Arc;

use ::parquet::file::reader::{FileReader, SerializedFileReader};
use ::parquet::record::Field;
use ::parquet::schema::types::Type;

use super::fields::{FieldLookup, Target, TimestampReader};
use super::{ParseError, RowPosition, RowVisitor};
use crate::error::{Result, SegmentError};
use crate::row::{RowLayout, Value, write_double};
use crate::spec::{ParquetFormat, TimestampSpec};
use crate::time::MS_PER_DAY;

/// Reads the Parquet file at `path`, named `source` in positions.
pub fn read_parquet(
    path: &Path,
    source: &str,
    format: &ParquetFormat,
    layout: &RowLayout,
    timestamp: &TimestampSpec,
    visitor: &mut dyn RowVisitor,
) -> Result<()> {
    let corrupt = |e: ::parquet::errors::ParquetError| {
        SegmentError::io(
            path,
            std::io::Error::new(ErrorKind::InvalidData, format!("cannot read parquet: {e}")),
        )
    };
    let file = File::open(path).map_err(|e| SegmentError::io(path, e))?;
    let reader = SerializedFileReader::new(file).map_err(corrupt)?;
    let lookup = FieldLookup::new(layout, &timestamp.column);
    let file_schema = reader.metadata().file_metadata().schema();
    let wanted: Vec<Arc<Type>> = file_schema
        .get_fields()
        .iter()
        .filter(|f| lookup.get(f.name()).is_some())
        .cloned()
        .collect();
    let targets: Vec<Option<Target>> = wanted.iter().map(|f| lookup.get(f.name())).collect();
    let projection = if wanted.is_empty() {
        None
    } else {
        Some(
            Type::group_type_builder(file_schema.name())
                .with_fields(wanted)
                .build()
                .map_err(corrupt)?,
        )
    };
    let ts = TimestampReader { spec: timestamp };
    let mut row = layout.empty_row();
    let mut position = RowPosition {
        source: source.to_owned(),
        ..RowPosition::default()
    };
    for group_index in 0..reader.num_row_groups() {
        let group = reader.get_row_group(group_index).map_err(corrupt)?;
        let rows = group.get_row_iter(projection.clone()).map_err(corrupt)?;
        position.row_group = Some(group_index as u64);
        for (row_index, record) in rows.enumerate() {
            let record = record.map_err(corrupt)?;
            position.row = Some(row_index as u64 + 1);
            let mut timestamp_ms = None;
            let mut error = None;
            // Without a projection `targets` is empty and no field is read.
            for ((name, field), target) in record.get_column_iter().zip(&targets) {
                let Some(target) = target else { continue };
                if target.timestamp {
                    timestamp_ms = Some(field_timestamp(field, &ts));
                }
                if let Some(value) = target.slot.and_then(|s| row.values.get_mut(s))
                    && let Err(message) = set_field(value, field, format.binary_as_string)
                {
                    error.get_or_insert(format!("column '{name}': {message}"));
                }
            }
            let result = match error {
                Some(message) => Err(message),
                None => timestamp_ms.unwrap_or_else(|| ts.missing()),
            };
            match result {
                Ok(ms) => {
                    row.timestamp_ms = ms;
                    visitor.row(&row, &position)?;
                }
                Err(message) => visitor.unparseable(ParseError {
                    position: position.clone(),
                    message,
                })?,
            }
        }
    }
    Ok(())
}

fn field_timestamp(field: &Field, ts: &TimestampReader) -> Result<i64, String> {
    match field {
        Field::Null => ts.missing(),
        // Not `field` itself in messages: its Display panics outside chrono's range.
        Field::TimestampMillis(ms) => ts.in_range(*ms, format_args!("{ms} ms")),
        Field::TimestampMicros(us) => ts.in_range(us.div_euclid(1000), format_args!("{us} µs")),
        Field::Date(days) => ts.in_range(*days as i64 * MS_PER_DAY, format_args!("{days} days")),
        Field::Str(s) => ts.parse_text(s),
        Field::Float(_) | Field::Double(_) | Field::Float16(_) | Field::Decimal(_) => {
            match number(field) {
                Some(d) => ts.parse_double(d),
                None => ts.parse_text(&field.to_string()),
            }
        }
        other => match integer(other) {
            Some(n) => ts.parse_long(n),
            None => ts.parse_text(&other.to_string()),
        },
    }
}

fn integer(field: &Field) -> Option<i64> {
    Some(match *field {
        Field::Byte(n) => n as i64,
        Field::Short(n) => n as i64,
        Field::Int(n) => n as i64,
        Field::Long(n) => n,
        Field::UByte(n) => n as i64,
        Field::UShort(n) => n as i64,
        Field::UInt(n) => n as i64,
        Field::ULong(n) => i64::try_from(n).ok()?,
        _ => return None,
    })
}

fn number(field: &Field) -> Option<f64> {
    match field {
        Field::Float16(h) => Some(f64::from(*h)),
        Field::Float(f) => Some(*f as f64),
        Field::Double(d) => Some(*d),
        Field::ULong(n) => Some(*n as f64),
        // Field's Display prints a decimal as its exact decimal text.
        Field::Decimal(_) => field.to_string().parse().ok(),
        _ => None,
    }
}

/// Sets a slot from a field, reusing the slot's buffers.
fn set_field(value: &mut Value, field: &Field, binary_as_string: bool) -> Result<(), String> {
    match field {
        Field::Null => *value = Value::Null,
        Field::Bool(b) => value.set_str(if *b { "true" } else { "false" }),
        Field::Str(s) => value.set_str(s),
        Field::Bytes(b) => value.set_str(binary_text(b.data(), binary_as_string)?),
        Field::Date(days) => *value = Value::Long(*days as i64 * MS_PER_DAY),
        Field::TimeMillis(ms) => *value = Value::Long(*ms as i64),
        Field::TimeMicros(us) => *value = Value::Long(us.div_euclid(1000)),
        Field::TimestampMillis(ms) => *value = Value::Long(*ms),
        Field::TimestampMicros(us) => *value = Value::Long(us.div_euclid(1000)),
        Field::ListInternal(list) => {
            let mut out = match std::mem::take(value) {
                Value::Strings(out) => out,
                _ => Vec::new(),
            };
            let mut len = 0;
            for element in list.elements() {
                if matches!(element, Field::Null) {
                    continue;
                }
                match out.get_mut(len) {
                    Some(s) => s.clear(),
                    None => out.push(String::new()),
                }
                write_text(&mut out[len], element, binary_as_string)?;
                len += 1;
            }
            out.truncate(len);
            *value = Value::Strings(out);
        }
        Field::Group(_) | Field::MapInternal(_) => {
            value.set_str(&field_json(field, binary_as_string)?.to_string())
        }
        other => {
            *value = match (integer(other), number(other)) {
                (Some(n), _) => Value::Long(n),
                (None, Some(d)) => Value::Double(d),
                (None, None) => return Err(format!("cannot read value {other}")),
            }
        }
    }
    Ok(())
}

fn binary_text(bytes: &[u8], binary_as_string: bool) -> Result<&str, String> {
    if !binary_as_string {
        return Err(
            "binary value (BYTE_ARRAY without a string annotation); set \
                    inputFormat.binaryAsString to read it as text"
                .into(),
        );
    }
    std::str::from_utf8(bytes).map_err(|_| "binary value is not valid UTF-8".to_string())
}

/// Writes a list element as text.
fn write_text(out: &mut String, field: &Field, binary_as_string: bool) -> Result<(), String> {
    match field {
        Field::Str(s) => out.push_str(s),
        Field::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Field::Bytes(b) => out.push_str(binary_text(b.data(), binary_as_string)?),
        Field::Group(_) | Field::MapInternal(_) | Field::ListInternal(_) => {
            out.push_str(&field_json(field, binary_as_string)?.to_string())
        }
        Field::Date(_)
        | Field::TimeMillis(_)
        | Field::TimeMicros(_)
        | Field::TimestampMillis(_)
        | Field::TimestampMicros(_) => {
            let mut v = Value::Null;
            set_field(&mut v, field, binary_as_string)?;
            if let Value::Long(ms) = v {
                let _ = write!(out, "{ms}");
            }
        }
        other => match (integer(other), number(other)) {
            (Some(n), _) => {
                let _ = write!(out, "{n}");
            }
            (None, Some(d)) => {
                let _ = write_double(out, d);
            }
            (None, None) => return Err(format!("cannot read value {other}")),
        },
    }
    Ok(())
}

/// A nested field as JSON (structs and maps become text this way).
fn field_json(field: &Field, binary_as_string: bool) -> Result<serde_json::Value, String> {
    use serde_json::Value as J;
    Ok(match field {
        Field::Null => J::Null,
        Field::Bool(b) => J::Bool(*b),
        Field::Group(row) => J::Object(
            row.get_column_iter()
                .map(|(k, v)| Ok((k.clone(), field_json(v, binary_as_string)?)))
                .collect::<Result<_, String>>()?,
        ),
        Field::ListInternal(list) => J::Array(
            list.elements()
                .iter()
                .map(|f| field_json(f, binary_as_string))
                .collect::<Result<_, String>>()?,
        ),
        Field::MapInternal(map) => J::Object(
            map.entries()
                .iter()
                .map(|(k, v)| {
                    let mut key = String::new();
                    write_text(&mut key, k, binary_as_string)?;
                    Ok((key, field_json(v, binary_as_string)?))
                })
                .collect::<Result<_, String>>()?,
        ),
        other => match (integer(other), number(other)) {
            (Some(n), _) => J::from(n),
            (None, Some(d)) => J::from(d),
            (None, None) => {
                let mut text = String::new();
                write_text(&mut text, other, binary_as_string)?;
                J::String(text)
            }
        },
    })
}
