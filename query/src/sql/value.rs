//! Literals: SQL constant expressions (numbers, strings, `TIMESTAMP '...'`, `NULL`, booleans)
//! read into [`Literal`], and their conversions to the native JSON values filters compare with.

use grove_segment::time::{Period, parse_iso_timestamp};
use serde_json::{Value, json};
use sqlparser::ast::{
    BinaryOperator, DataType, DateTimeField, Expr, FunctionArg, FunctionArgExpr, FunctionArguments,
    Interval as SqlInterval, UnaryOperator, Value as SqlValue,
};

use super::SqlType;
use crate::{QueryError, Result};

/// A SQL constant.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Literal {
    Null,
    Bool(bool),
    Long(i64),
    Double(f64),
    String(String),
    /// Milliseconds since the epoch, UTC.
    Timestamp(i64),
}

impl Literal {
    /// The SQL type of the constant as an output column.
    pub(crate) fn sql_type(&self) -> SqlType {
        match self {
            Literal::Null | Literal::String(_) => SqlType::Varchar,
            Literal::Bool(_) | Literal::Long(_) => SqlType::Bigint,
            Literal::Double(_) => SqlType::Double,
            Literal::Timestamp(_) => SqlType::Timestamp,
        }
    }

    /// The constant as a JSON value (timestamps as milliseconds).
    pub(crate) fn to_json(&self) -> Value {
        match self {
            Literal::Null => Value::Null,
            Literal::Bool(b) => json!(*b as i64),
            Literal::Long(n) | Literal::Timestamp(n) => json!(*n),
            Literal::Double(d) => json!(*d),
            Literal::String(s) => json!(s),
        }
    }

    /// The constant as text, as the native `in` filter matches values.
    pub(crate) fn into_text(self) -> Option<String> {
        match self {
            Literal::Null => None,
            Literal::Bool(b) => Some((b as i64).to_string()),
            Literal::Long(n) | Literal::Timestamp(n) => Some(n.to_string()),
            Literal::Double(d) => Some(d.to_string()),
            Literal::String(s) => Some(s),
        }
    }

    /// The constant as milliseconds since the epoch, for comparisons with `__time`: a timestamp,
    /// a number of milliseconds, or an ISO-8601 string.
    pub(crate) fn to_millis(&self) -> Result<i64> {
        match self {
            Literal::Timestamp(ms) | Literal::Long(ms) => Ok(*ms),
            Literal::String(s) => parse_iso_timestamp(s)
                .ok_or_else(|| QueryError::bad(format!("SQL: '{s}' is not a timestamp"))),
            other => Err(QueryError::bad(format!(
                "SQL: {other:?} cannot be compared with __time"
            ))),
        }
    }
}

/// The constant `expr` denotes, or `None` when `expr` is not a constant.
pub(crate) fn literal(expr: &Expr) -> Result<Option<Literal>> {
    match expr {
        Expr::Nested(inner) => literal(inner),
        Expr::Value(value) => value_literal(&value.value).map(Some),
        Expr::UnaryOp {
            op: op @ (UnaryOperator::Minus | UnaryOperator::Plus),
            expr: inner,
        } => match literal(inner)? {
            Some(Literal::Long(n)) if *op == UnaryOperator::Minus => Ok(Some(Literal::Long(-n))),
            Some(Literal::Double(d)) if *op == UnaryOperator::Minus => {
                Ok(Some(Literal::Double(-d)))
            }
            Some(number @ (Literal::Long(_) | Literal::Double(_))) => Ok(Some(number)),
            Some(_) => Err(QueryError::bad(format!("SQL: {expr} is not a number"))),
            None => Ok(None),
        },
        Expr::TypedString(typed) => {
            let text = match &typed.value.value {
                SqlValue::SingleQuotedString(s) => s,
                other => return Err(QueryError::bad(format!("SQL: bad literal {other}"))),
            };
            if !is_time_type(&typed.data_type) {
                return Err(QueryError::unsupported(format!(
                    "SQL: {} literals are not supported",
                    typed.data_type
                )));
            }
            timestamp(text).map(Some)
        }
        // `CAST('2024-01-01' AS TIMESTAMP)`, as Superset writes time bounds.
        Expr::Cast {
            expr: inner,
            data_type,
            format: None,
            ..
        } if is_time_type(data_type) => match literal(inner)? {
            Some(Literal::String(text)) => timestamp(&text).map(Some),
            Some(Literal::Long(ms) | Literal::Timestamp(ms)) => Ok(Some(Literal::Timestamp(ms))),
            Some(other) => Err(QueryError::bad(format!(
                "SQL: {other:?} cannot be cast to a timestamp"
            ))),
            None => Ok(None),
        },
        // `TIME_PARSE('2024-01-01T00:00:00')`.
        Expr::Function(function)
            if function.name.to_string().eq_ignore_ascii_case("TIME_PARSE") =>
        {
            let text = match &function.args {
                FunctionArguments::List(list) => match list.args.as_slice() {
                    [FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))] => literal(arg)?,
                    _ => None,
                },
                _ => None,
            };
            match text {
                Some(Literal::String(text)) => timestamp(&text).map(Some),
                _ => Err(QueryError::unsupported(
                    "SQL: TIME_PARSE is supported only on one constant ISO-8601 string",
                )),
            }
        }
        Expr::Function(function)
            if function
                .name
                .to_string()
                .eq_ignore_ascii_case("CURRENT_TIMESTAMP") =>
        {
            Err(QueryError::bad(
                "SQL: CURRENT_TIMESTAMP needs the sqlCurrentTimestamp context parameter",
            ))
        }
        // `TIMESTAMP '...' - INTERVAL '1' DAY`.
        Expr::BinaryOp {
            left,
            op: op @ (BinaryOperator::Plus | BinaryOperator::Minus),
            right,
        } if matches!(right.as_ref(), Expr::Interval(_)) => {
            let Some(Literal::Timestamp(ms)) = literal(left)? else {
                return Ok(None);
            };
            let Expr::Interval(interval) = right.as_ref() else {
                unreachable!("matched above");
            };
            let period = interval_period(interval)?;
            let moved = if *op == BinaryOperator::Plus {
                period.add_to(ms)
            } else {
                period.subtract_from(ms)
            };
            moved.map(|ms| Some(Literal::Timestamp(ms))).ok_or_else(|| {
                QueryError::bad(format!(
                    "SQL: {expr} reaches past Druid's eternity (years -146136543 to 146140482)"
                ))
            })
        }
        _ => Ok(None),
    }
}

fn is_time_type(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Timestamp(..) | DataType::Datetime(_) | DataType::Date
    )
}

fn timestamp(text: &str) -> Result<Literal> {
    parse_iso_timestamp(text.trim())
        .map(Literal::Timestamp)
        .ok_or_else(|| QueryError::bad(format!("SQL: '{text}' is not a valid timestamp")))
}

/// `INTERVAL 'n' UNIT` as a period.
fn interval_period(interval: &SqlInterval) -> Result<Period> {
    let count = match literal(&interval.value)? {
        Some(Literal::Long(n)) => Some(n),
        Some(Literal::String(text)) => text.trim().parse::<i64>().ok(),
        _ => None,
    };
    let period = match (count, &interval.leading_field, &interval.last_field) {
        (Some(n), Some(unit), None) if n >= 0 => match unit {
            DateTimeField::Second | DateTimeField::Seconds => format!("PT{n}S"),
            DateTimeField::Minute | DateTimeField::Minutes => format!("PT{n}M"),
            DateTimeField::Hour | DateTimeField::Hours => format!("PT{n}H"),
            DateTimeField::Day | DateTimeField::Days => format!("P{n}D"),
            DateTimeField::Week(_) | DateTimeField::Weeks => format!("P{n}W"),
            DateTimeField::Month | DateTimeField::Months => format!("P{n}M"),
            DateTimeField::Year | DateTimeField::Years => format!("P{n}Y"),
            _ => String::new(),
        },
        _ => String::new(),
    };
    Period::parse(&period).map_err(|_| {
        QueryError::unsupported(format!(
            "SQL: INTERVAL {interval} is not supported (use INTERVAL 'n' SECOND/MINUTE/HOUR/DAY/WEEK/MONTH/YEAR)"
        ))
    })
}

fn value_literal(value: &SqlValue) -> Result<Literal> {
    match value {
        SqlValue::Number(text, _) => number(text),
        SqlValue::SingleQuotedString(s) if super::in_list::lifted_index(s).is_some() => Err(
            QueryError::unsupported("SQL: an IN list is supported only in a condition"),
        ),
        SqlValue::SingleQuotedString(s) | SqlValue::NationalStringLiteral(s) => {
            Ok(Literal::String(s.clone()))
        }
        SqlValue::Boolean(b) => Ok(Literal::Bool(*b)),
        SqlValue::Null => Ok(Literal::Null),
        SqlValue::Placeholder(p) => Err(QueryError::bad(format!(
            "SQL: placeholder {p} has no value"
        ))),
        other => Err(QueryError::unsupported(format!(
            "SQL: literal {other} is not supported"
        ))),
    }
}

pub(crate) fn number(text: &str) -> Result<Literal> {
    if let Ok(n) = text.parse::<i64>() {
        return Ok(Literal::Long(n));
    }
    match text.parse::<f64>() {
        Ok(d) if d.is_finite() => Ok(Literal::Double(d)),
        _ => Err(QueryError::bad(format!(
            "SQL: {text} is not a valid number"
        ))),
    }
}

/// A non-negative integer constant, for `LIMIT` and `OFFSET`.
pub(crate) fn count(expr: &Expr, clause: &str) -> Result<u64> {
    match literal(expr)? {
        Some(Literal::Long(n)) if n >= 0 => Ok(n as u64),
        _ => Err(QueryError::bad(format!(
            "SQL: {clause} must be a non-negative integer, not {expr}"
        ))),
    }
}
