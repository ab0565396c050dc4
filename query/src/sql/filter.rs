//! SQL conditions → Druid native filters, for `WHERE` (over table columns), `HAVING` (over the
//! native query's output names) and aggregate `FILTER (WHERE ...)` clauses. What a name means is
//! decided by the caller through [`Operands`], so one translation serves all three.
//!
//! Translation: `=` → `equals`, `<>` → `not(equals)`, `<`/`<=`/`>`/`>=`/`BETWEEN` → `range`,
//! `IN` → `in`, `LIKE` → `like`, `IS [NOT] NULL` → `[not(]null[)]`, `AND`/`OR`/`NOT` →
//! `and`/`or`/`not`. `matchValueType` follows the column: STRING for strings, LONG for longs and
//! `__time` (milliseconds), DOUBLE for doubles or a fractional literal. [`plan_where`] also moves
//! top-level `__time` ranges into the query's `intervals`, as Druid does.
//!
//! `AND`/`OR` chains are flattened with an explicit stack (a 10,000-term `OR` is a 10,000-deep
//! tree), and `IN` lists are one loop, so neither recurses per element.

use grove_segment::time::format_iso;
use serde_json::{Map, Value, json};
use sqlparser::ast::{BinaryOperator, Expr, UnaryOperator, Value as SqlValue};

use super::SqlType;
use super::in_list::lifted_index;
use super::value::{Literal, literal};
use crate::{QueryError, Result};

/// How values of a filtered column compare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    String,
    Long,
    Double,
    /// `__time`: compared as LONG milliseconds, literals may be timestamps.
    Time,
    /// A complex column (sketch): cannot be filtered.
    Complex,
}

impl Kind {
    pub(crate) fn of(sql_type: &SqlType) -> Kind {
        match sql_type {
            SqlType::Timestamp => Kind::Time,
            SqlType::Varchar => Kind::String,
            SqlType::Bigint => Kind::Long,
            SqlType::Double => Kind::Double,
            SqlType::Other(_) => Kind::Complex,
        }
    }
}

/// A column a filter tests: its native name and kind.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Operand {
    pub name: String,
    pub kind: Kind,
}

/// Resolves the non-constant side of a condition to a native column.
pub(crate) trait Operands {
    fn operand(&mut self, expr: &Expr) -> Result<Operand>;
    /// The query's lifted `IN` lists ([`super::in_list`]).
    fn in_lists(&self) -> &[Vec<Literal>];
    /// A condition that is no column-against-constants test (columns compared with each other,
    /// functions in conditions): a native `expression` filter, where the operands allow it.
    fn expression(&mut self, expr: &Expr) -> Result<Value> {
        Err(QueryError::unsupported(format!(
            "SQL: the condition {expr} is not supported here"
        )))
    }
}

/// Druid's eternity: `JodaUtils.MIN_INSTANT` and `MAX_INSTANT`.
pub(crate) const ETERNITY_START_MS: i64 = i64::MIN / 2;
pub(crate) const ETERNITY_END_MS: i64 = i64::MAX / 2;

/// A `WHERE` clause as a native query carries it.
#[derive(Debug, PartialEq)]
pub(crate) struct Where {
    /// The query's `intervals` (ISO `start/end` strings).
    pub intervals: Value,
    pub filter: Option<Value>,
}

/// Plans a `WHERE` clause: top-level `__time` ranges (conjuncts comparing `__time` with a
/// constant) intersect into the one interval of the query; everything else is the filter.
pub(crate) fn plan_where(expr: Option<&Expr>, operands: &mut dyn Operands) -> Result<Where> {
    let mut start_ms = ETERNITY_START_MS;
    let mut end_ms = ETERNITY_END_MS;
    let mut filters = Vec::new();
    if let Some(expr) = expr {
        for conjunct in flatten(expr, &BinaryOperator::And) {
            match time_bounds(conjunct, operands)? {
                Some((start, end)) => {
                    start_ms = start_ms.max(start);
                    end_ms = end_ms.min(end);
                }
                None => filters.push(filter(conjunct, operands)?),
            }
        }
    }
    let intervals = if start_ms < end_ms {
        json!([format!("{}/{}", format_iso(start_ms), format_iso(end_ms))])
    } else {
        json!([])
    };
    let filter = match filters.len() {
        0 => None,
        1 => filters.pop(),
        _ => Some(object([
            ("type", json!("and")),
            ("fields", Value::Array(filters)),
        ])),
    };
    Ok(Where { intervals, filter })
}

/// `[start, end)` in milliseconds when `expr` is a range condition on `__time`.
fn time_bounds(expr: &Expr, operands: &mut dyn Operands) -> Result<Option<(i64, i64)>> {
    let time_operand = |e: &Expr, operands: &mut dyn Operands| -> Result<bool> {
        Ok(literal(e)?.is_none() && operands.operand(e)?.kind == Kind::Time)
    };
    match expr {
        Expr::Nested(inner) => time_bounds(inner, operands),
        Expr::BinaryOp { left, right, .. }
            if literal(left)?.is_none() && literal(right)?.is_none() =>
        {
            Ok(None)
        }
        Expr::BinaryOp { left, op, right } if *op != BinaryOperator::NotEq => {
            let Some((column, op, value)) = comparison(left, op, right)? else {
                return Ok(None);
            };
            if !time_operand(column, operands)? {
                return Ok(None);
            }
            let ms = value.to_millis()?;
            Ok(Some(match op {
                BinaryOperator::Eq => (ms, ms.saturating_add(1)),
                BinaryOperator::Lt => (ETERNITY_START_MS, ms),
                BinaryOperator::LtEq => (ETERNITY_START_MS, ms.saturating_add(1)),
                BinaryOperator::Gt => (ms.saturating_add(1), ETERNITY_END_MS),
                BinaryOperator::GtEq => (ms, ETERNITY_END_MS),
                _ => return Ok(None),
            }))
        }
        Expr::Between {
            expr,
            negated: false,
            low,
            high,
        } if time_operand(expr, operands)? => {
            let low = constant(low)?.to_millis()?;
            let high = constant(high)?.to_millis()?;
            Ok(Some((low, high.saturating_add(1))))
        }
        _ => Ok(None),
    }
}

/// The operands of a comparison `expr op constant` or `constant op expr`, with the operator
/// turned so the expression is on the left. `None` when `op` is not a comparison.
fn comparison<'e>(
    left: &'e Expr,
    op: &BinaryOperator,
    right: &'e Expr,
) -> Result<Option<(&'e Expr, BinaryOperator, Literal)>> {
    let flipped = match op {
        BinaryOperator::Eq => BinaryOperator::Eq,
        BinaryOperator::NotEq => BinaryOperator::NotEq,
        BinaryOperator::Lt => BinaryOperator::Gt,
        BinaryOperator::LtEq => BinaryOperator::GtEq,
        BinaryOperator::Gt => BinaryOperator::Lt,
        BinaryOperator::GtEq => BinaryOperator::LtEq,
        _ => return Ok(None),
    };
    if let Some(value) = literal(right)? {
        return Ok(Some((left, op.clone(), value)));
    }
    if let Some(value) = literal(left)? {
        return Ok(Some((right, flipped, value)));
    }
    Err(QueryError::unsupported(format!(
        "SQL: comparing {left} with {right} is not supported: one side must be a constant"
    )))
}

fn constant(expr: &Expr) -> Result<Literal> {
    literal(expr)?
        .ok_or_else(|| QueryError::unsupported(format!("SQL: {expr} must be a constant here")))
}

/// The operands of a chain of `op` (`a AND b AND c`), left to right, without recursion.
pub(crate) fn flatten<'e>(expr: &'e Expr, op: &BinaryOperator) -> Vec<&'e Expr> {
    let mut terms = Vec::new();
    let mut stack = vec![expr];
    while let Some(e) = stack.pop() {
        match e {
            Expr::BinaryOp {
                left,
                op: this,
                right,
            } if this == op => {
                stack.push(right);
                stack.push(left);
            }
            Expr::Nested(inner) if matches!(inner.as_ref(), Expr::BinaryOp { op: this, .. } if this == op) => {
                stack.push(inner)
            }
            _ => terms.push(e),
        }
    }
    terms
}

/// Translates a condition into a native filter.
pub(crate) fn filter(expr: &Expr, operands: &mut dyn Operands) -> Result<Value> {
    match expr {
        Expr::Nested(inner) => filter(inner, operands),
        Expr::BinaryOp {
            op: op @ (BinaryOperator::And | BinaryOperator::Or),
            ..
        } => {
            let fields = flatten(expr, op)
                .into_iter()
                .map(|term| filter(term, operands))
                .collect::<Result<Vec<_>>>()?;
            let kind = if *op == BinaryOperator::And {
                "and"
            } else {
                "or"
            };
            Ok(object([
                ("type", json!(kind)),
                ("fields", Value::Array(fields)),
            ]))
        }
        Expr::UnaryOp {
            op: UnaryOperator::Not,
            expr,
        } => Ok(not(filter(expr, operands)?)),
        Expr::BinaryOp { left, right, .. }
            if literal(left)?.is_none() && literal(right)?.is_none() =>
        {
            operands.expression(expr)
        }
        Expr::Function(function)
            if function
                .name
                .to_string()
                .eq_ignore_ascii_case("TIME_IN_INTERVAL") =>
        {
            operands.expression(expr)
        }
        Expr::BinaryOp { left, op, right } => {
            let Some((column, op, value)) = comparison(left, op, right)? else {
                return Err(QueryError::unsupported(format!(
                    "SQL: operator {op} in a condition is not supported"
                )));
            };
            let operand = operands.operand(column)?;
            match op {
                BinaryOperator::Eq => equals(&operand, &value),
                BinaryOperator::NotEq => Ok(not(equals(&operand, &value)?)),
                BinaryOperator::Lt => range(&operand, None, Some((&value, true))),
                BinaryOperator::LtEq => range(&operand, None, Some((&value, false))),
                BinaryOperator::Gt => range(&operand, Some((&value, true)), None),
                BinaryOperator::GtEq => range(&operand, Some((&value, false)), None),
                _ => unreachable!("comparison() returns comparison operators only"),
            }
        }
        Expr::Between {
            expr,
            negated,
            low,
            high,
        } => {
            let operand = operands.operand(expr)?;
            let between = range(
                &operand,
                Some((&constant(low)?, false)),
                Some((&constant(high)?, false)),
            )?;
            Ok(negate_if(*negated, between))
        }
        Expr::InList {
            expr,
            list,
            negated,
        } => {
            let operand = operands.operand(expr)?;
            let lifted = match list.as_slice() {
                [Expr::Value(value)] => match &value.value {
                    SqlValue::SingleQuotedString(marker) => lifted_index(marker),
                    _ => None,
                },
                _ => None,
            };
            let values = match lifted {
                Some(index) => {
                    in_list(&operand, operands.in_lists()[index].iter().cloned().map(Ok))?
                }
                None => in_list(&operand, list.iter().map(constant))?,
            };
            Ok(negate_if(*negated, values))
        }
        Expr::Like {
            negated,
            any: false,
            expr,
            pattern,
            escape_char,
        } => {
            let operand = operands.operand(expr)?;
            let Literal::String(pattern) = constant(pattern)? else {
                return Err(QueryError::bad("SQL: a LIKE pattern must be a string"));
            };
            let mut like = Map::new();
            like.insert("type".into(), json!("like"));
            like.insert("dimension".into(), json!(operand.name));
            like.insert("pattern".into(), json!(pattern));
            if let Some(escape) = escape_char {
                match constant(escape)? {
                    Literal::String(e) if e.chars().count() == 1 => {
                        like.insert("escape".into(), json!(e));
                    }
                    _ => return Err(QueryError::bad("SQL: ESCAPE must be one character")),
                }
            }
            Ok(negate_if(*negated, Value::Object(like)))
        }
        Expr::IsNull(expr) => Ok(is_null(&operands.operand(expr)?)),
        Expr::IsNotNull(expr) => Ok(not(is_null(&operands.operand(expr)?))),
        Expr::InSubquery { .. } | Expr::Exists { .. } | Expr::Subquery(_) => {
            Err(QueryError::unsupported("SQL: subqueries are not supported"))
        }
        other => operands.expression(other),
    }
}

pub(crate) fn not(field: Value) -> Value {
    object([("type", json!("not")), ("field", field)])
}

/// A JSON object of `pairs`, moving the values in: `json!` deep-copies every interpolated
/// `Value`, which would copy a 10,000-value `in` filter once per enclosing `and`/`not`.
pub(crate) fn object<const N: usize>(pairs: [(&str, Value); N]) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_string(), v)).collect())
}

fn negate_if(negated: bool, field: Value) -> Value {
    if negated { not(field) } else { field }
}

fn is_null(operand: &Operand) -> Value {
    json!({"type": "null", "column": operand.name})
}

/// The `matchValueType` and value a native filter compares `operand` with.
fn match_value(operand: &Operand, value: &Literal) -> Result<(&'static str, Value)> {
    let mismatch = || {
        QueryError::bad(format!(
            "SQL: column '{}' cannot be compared with {}",
            operand.name,
            value.to_json()
        ))
    };
    match (operand.kind, value) {
        (_, Literal::Null) => Err(QueryError::bad(format!(
            "SQL: comparing '{}' with NULL is never true; use IS NULL",
            operand.name
        ))),
        (Kind::Complex, _) => Err(QueryError::bad(format!(
            "SQL: complex column '{}' cannot be filtered",
            operand.name
        ))),
        (Kind::Time, value) => Ok(("LONG", json!(value.to_millis()?))),
        (Kind::String, Literal::String(s)) => Ok(("STRING", json!(s))),
        (Kind::Double, Literal::Long(n)) => Ok(("DOUBLE", json!(*n as f64))),
        (_, Literal::Long(n) | Literal::Timestamp(n)) => Ok(("LONG", json!(n))),
        (_, Literal::Bool(b)) => Ok(("LONG", json!(*b as i64))),
        (_, Literal::Double(d)) => Ok(("DOUBLE", json!(d))),
        (Kind::Long, Literal::String(s)) => match s.trim().parse::<i64>() {
            Ok(n) => Ok(("LONG", json!(n))),
            Err(_) => match s.trim().parse::<f64>() {
                Ok(d) if d.is_finite() => Ok(("DOUBLE", json!(d))),
                _ => Err(mismatch()),
            },
        },
        (Kind::Double, Literal::String(s)) => match s.trim().parse::<f64>() {
            Ok(d) if d.is_finite() => Ok(("DOUBLE", json!(d))),
            _ => Err(mismatch()),
        },
    }
}

fn equals(operand: &Operand, value: &Literal) -> Result<Value> {
    let (match_type, match_value) = match_value(operand, value)?;
    Ok(json!({
        "type": "equals",
        "column": operand.name,
        "matchValueType": match_type,
        "matchValue": match_value,
    }))
}

/// A `range` filter; each bound is a constant and whether it is open (excluded).
fn range(
    operand: &Operand,
    lower: Option<(&Literal, bool)>,
    upper: Option<(&Literal, bool)>,
) -> Result<Value> {
    let lower = lower
        .map(|(v, open)| Ok::<_, QueryError>((match_value(operand, v)?, open)))
        .transpose()?;
    let upper = upper
        .map(|(v, open)| Ok::<_, QueryError>((match_value(operand, v)?, open)))
        .transpose()?;
    let types: Vec<&str> = lower.iter().chain(&upper).map(|((t, _), _)| *t).collect();
    // A LONG bound and a DOUBLE bound compare as doubles.
    let match_type = if types.windows(2).any(|w| w[0] != w[1]) {
        if types.contains(&"STRING") {
            return Err(QueryError::bad(format!(
                "SQL: the bounds on '{}' have different types",
                operand.name
            )));
        }
        "DOUBLE"
    } else {
        types[0]
    };
    let coerce = |v: Value| match (match_type, v.as_f64()) {
        ("DOUBLE", Some(d)) => json!(d),
        _ => v,
    };
    let mut range = Map::new();
    range.insert("type".into(), json!("range"));
    range.insert("column".into(), json!(operand.name));
    range.insert("matchValueType".into(), json!(match_type));
    if let Some(((_, value), open)) = lower {
        range.insert("lower".into(), coerce(value));
        range.insert("lowerOpen".into(), json!(open));
    }
    if let Some(((_, value), open)) = upper {
        range.insert("upper".into(), coerce(value));
        range.insert("upperOpen".into(), json!(open));
    }
    Ok(Value::Object(range))
}

/// An `in` filter: values as the strings Druid's `in` matches (`__time` as milliseconds).
fn in_list(
    operand: &Operand,
    list: impl ExactSizeIterator<Item = Result<Literal>>,
) -> Result<Value> {
    if operand.kind == Kind::Complex {
        return Err(QueryError::bad(format!(
            "SQL: complex column '{}' cannot be filtered",
            operand.name
        )));
    }
    let mut values = Vec::with_capacity(list.len());
    for item in list {
        let value = item?;
        values.push(match (&value, operand.kind) {
            (Literal::Null, _) => Value::Null,
            (_, Kind::Time) => Value::String(value.to_millis()?.to_string()),
            _ => Value::String(value.into_text().expect("only NULL has no text")),
        });
    }
    Ok(object([
        ("type", json!("in")),
        ("dimension", json!(operand.name)),
        ("values", Value::Array(values)),
    ]))
}
