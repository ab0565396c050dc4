//! Literals: SQL constant expressions (numbers, strings, `TIMESTAMP '...'`, `NULL`, booleans)
//! read into [`Literal`], and their conversions to the native JSON values filters compare with.

use grove_segment::time::parse_iso_timestamp;
use serde_json::{Value, json};
use sqlparser::ast::{DataType, Expr, UnaryOperator, Value as SqlValue};

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
            match &typed.data_type {
                DataType::Timestamp(..) | DataType::Datetime(_) | DataType::Date => {
                    parse_iso_timestamp(text.trim())
                        .map(|ms| Some(Literal::Timestamp(ms)))
                        .ok_or_else(|| {
                            QueryError::bad(format!("SQL: '{text}' is not a valid timestamp"))
                        })
                }
                other => Err(QueryError::unsupported(format!(
                    "SQL: {other} literals are not supported"
                ))),
            }
        }
        _ => Ok(None),
    }
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
