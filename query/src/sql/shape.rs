//! Shaping: a Druid-shaped native result → [`SqlResult`] rows, as a pure function of the plan
//! and the result JSON. Each output column reads its [`Source`] (the row's `timestamp`, a named
//! field, or a constant) and is converted to its SQL type: timestamps as ISO strings
//! (`2024-01-01T00:00:00.000Z`, UTC), BIGINT as integers, DOUBLE as floats.

use grove_segment::time::format_iso;
use serde_json::{Map, Value, json};

use super::native::{NativeKind, NativePlan, Source};
use super::{SqlResult, SqlType};
use crate::{QueryError, Result};

/// Shapes the native `result` of `plan.query` into SQL rows.
pub fn shape(plan: &NativePlan, result: &Value) -> Result<SqlResult> {
    let malformed = |what: &str| {
        QueryError::internal(format!(
            "SQL: the native {:?} result is malformed: {what}",
            plan.kind
        ))
    };
    let entries = result.as_array().ok_or_else(|| malformed("not an array"))?;
    let empty = Map::new();
    let mut rows = Vec::new();
    let mut push = |timestamp: Option<&Value>, fields: &Map<String, Value>| {
        rows.push(row(plan, timestamp, fields));
    };
    for entry in entries {
        let timestamp = entry.get("timestamp");
        match plan.kind {
            NativeKind::Timeseries | NativeKind::TimeBoundary => push(
                timestamp,
                entry
                    .get("result")
                    .and_then(Value::as_object)
                    .ok_or_else(|| malformed("an entry has no result object"))?,
            ),
            NativeKind::GroupBy => push(
                timestamp,
                entry
                    .get("event")
                    .and_then(Value::as_object)
                    .ok_or_else(|| malformed("a row has no event object"))?,
            ),
            NativeKind::TopN => {
                let items = entry
                    .get("result")
                    .and_then(Value::as_array)
                    .ok_or_else(|| malformed("an entry has no result array"))?;
                for item in items {
                    push(timestamp, item.as_object().unwrap_or(&empty));
                }
            }
            NativeKind::Scan => {
                let events = entry
                    .get("events")
                    .and_then(Value::as_array)
                    .ok_or_else(|| malformed("a batch has no events array"))?;
                for event in events {
                    push(
                        None,
                        event
                            .as_object()
                            .ok_or_else(|| malformed("an event is not an object"))?,
                    );
                }
            }
        }
    }
    if rows.is_empty()
        && let Some(empty_row) = &plan.empty_row
    {
        rows.push(
            empty_row
                .iter()
                .zip(&plan.columns)
                .map(|(value, column)| convert(value.clone(), &column.sql_type))
                .collect(),
        );
    }
    let offset = usize::try_from(plan.offset).unwrap_or(usize::MAX);
    let limit = plan
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    if offset > 0 || limit < rows.len() {
        rows = rows.into_iter().skip(offset).take(limit).collect();
    }
    Ok(SqlResult {
        columns: plan.columns.clone(),
        rows,
    })
}

/// [`shape`] of a groupBy result kept as a table: cells are read in place, no JSON tree of
/// the rows is built first.
pub fn shape_events(plan: &NativePlan, table: &crate::result::EventTable) -> Result<SqlResult> {
    if plan.kind != NativeKind::GroupBy {
        return Err(QueryError::internal(format!(
            "SQL: a {:?} plan got a groupBy table",
            plan.kind
        )));
    }
    let places: Vec<Option<usize>> = plan
        .sources
        .iter()
        .map(|source| match source {
            Source::Field(name) => table.column(name),
            _ => None,
        })
        .collect();
    let offset = usize::try_from(plan.offset).unwrap_or(usize::MAX);
    let limit = plan
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    let end = offset.saturating_add(limit).min(table.len());
    let mut rows = Vec::with_capacity(end.saturating_sub(offset));
    for r in offset.min(end)..end {
        rows.push(
            plan.sources
                .iter()
                .zip(&plan.columns)
                .zip(&places)
                .map(|((source, column), place)| {
                    let value = match (source, place) {
                        (Source::Timestamp, _) => Value::String(table.timestamp(r).to_owned()),
                        (Source::Field(_), Some(c)) => table.cell(r, *c).clone(),
                        (Source::Field(_), None) => Value::Null,
                        (Source::Constant(value), _) => value.clone(),
                    };
                    convert(value, &column.sql_type)
                })
                .collect(),
        );
    }
    if table.is_empty()
        && let Some(empty_row) = &plan.empty_row
        && offset == 0
        && limit > 0
    {
        rows.push(
            empty_row
                .iter()
                .zip(&plan.columns)
                .map(|(value, column)| convert(value.clone(), &column.sql_type))
                .collect(),
        );
    }
    Ok(SqlResult {
        columns: plan.columns.clone(),
        rows,
    })
}

fn row(plan: &NativePlan, timestamp: Option<&Value>, fields: &Map<String, Value>) -> Vec<Value> {
    plan.sources
        .iter()
        .zip(&plan.columns)
        .map(|(source, column)| {
            let value = match source {
                Source::Timestamp => timestamp.cloned().unwrap_or(Value::Null),
                Source::Field(name) => fields.get(name).cloned().unwrap_or(Value::Null),
                Source::Constant(value) => value.clone(),
            };
            convert(value, &column.sql_type)
        })
        .collect()
}

/// A native value as its SQL type presents it.
fn convert(value: Value, sql_type: &SqlType) -> Value {
    let Value::Number(number) = &value else {
        return value;
    };
    match sql_type {
        SqlType::Timestamp => match number.as_i64() {
            Some(ms) => json!(format_iso(ms)),
            None => json!(format_iso(number.as_f64().unwrap_or(0.0) as i64)),
        },
        SqlType::Bigint => match (number.as_i64(), number.as_f64()) {
            (Some(_), _) => value,
            (None, Some(d)) if d.fract() == 0.0 && d.abs() < 9.0e15 => json!(d as i64),
            _ => value,
        },
        SqlType::Double => number.as_f64().map_or(value, |d| json!(d)),
        _ => value,
    }
}
