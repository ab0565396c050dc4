//! SQL scalar functions and operators → Druid native expression text, as Druid's SQL planner
//! writes them: the planner turns an expression over columns into an `expression` virtual
//! column (grouped on, aggregated, scanned or filtered like a column) and an expression over
//! aggregates into an `expression` post-aggregator.
//!
//! [`Native`] is one translated operand: its text and SQL type. SQL positions are 1-based where
//! Druid's expressions are 0-based (`SUBSTRING`, `STRPOS`); SQL integer division on BIGINTs is
//! native long division, as in Druid.

use super::SqlType;
use super::value::Literal;
use crate::{QueryError, Result};

/// A translated operand: native expression text and its SQL type.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Native {
    pub text: String,
    pub sql_type: SqlType,
}

impl Native {
    pub(crate) fn new(text: impl Into<String>, sql_type: SqlType) -> Native {
        Native {
            text: text.into(),
            sql_type,
        }
    }
}

fn unsupported<T>(construct: impl std::fmt::Display) -> Result<T> {
    Err(QueryError::unsupported(format!(
        "SQL: {construct} is not supported"
    )))
}

/// A column name as a native identifier.
pub(crate) fn identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A string as a native literal.
pub(crate) fn string(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// A constant as a native operand.
pub(crate) fn literal(value: &Literal) -> Native {
    match value {
        Literal::Null => Native::new("null", SqlType::Varchar),
        Literal::Bool(b) => Native::new(if *b { "1" } else { "0" }, SqlType::Bigint),
        Literal::Long(n) => Native::new(n.to_string(), SqlType::Bigint),
        Literal::Double(d) => Native::new(format!("{d:?}"), SqlType::Double),
        Literal::String(s) => Native::new(string(s), SqlType::Varchar),
        Literal::Timestamp(ms) => Native::new(ms.to_string(), SqlType::Timestamp),
    }
}

/// The wider of two numeric types (DOUBLE beats BIGINT); strings win over numbers.
pub(crate) fn widen(a: &SqlType, b: &SqlType) -> SqlType {
    match (a, b) {
        (SqlType::Varchar, _) | (_, SqlType::Varchar) => SqlType::Varchar,
        (SqlType::Double, _) | (_, SqlType::Double) => SqlType::Double,
        (SqlType::Timestamp, SqlType::Timestamp) => SqlType::Timestamp,
        _ => SqlType::Bigint,
    }
}

/// A binary SQL operator over two operands.
pub(crate) fn binary(op: &str, left: Native, right: Native) -> Result<Native> {
    let (l, r) = (&left.text, &right.text);
    Ok(match op {
        "+" | "-" | "*" | "%" => Native::new(
            format!("({l} {op} {r})"),
            match (&left.sql_type, &right.sql_type) {
                (SqlType::Timestamp, SqlType::Bigint) if op != "*" => SqlType::Timestamp,
                (a, b) => widen(a, b),
            },
        ),
        "/" => Native::new(
            format!("({l} / {r})"),
            widen(&left.sql_type, &right.sql_type),
        ),
        "||" => Native::new(format!("concat({l}, {r})"), SqlType::Varchar),
        "=" => Native::new(format!("({l} == {r})"), SqlType::Bigint),
        "<>" => Native::new(format!("({l} != {r})"), SqlType::Bigint),
        "<" | "<=" | ">" | ">=" => Native::new(format!("({l} {op} {r})"), SqlType::Bigint),
        "AND" => Native::new(format!("({l} && {r})"), SqlType::Bigint),
        "OR" => Native::new(format!("({l} || {r})"), SqlType::Bigint),
        other => return unsupported(format!("operator {other} in an expression")),
    })
}

fn constant_text<'a>(name: &str, args: &'a [Native], i: usize) -> Result<&'a str> {
    match args.get(i) {
        Some(a) if a.text.starts_with('\'') || a.text == "null" => Ok(&a.text),
        Some(_) => Err(QueryError::bad(format!(
            "SQL: argument {} of {name} must be a constant",
            i + 1
        ))),
        None => Err(QueryError::bad(format!(
            "SQL: {name} needs at least {} arguments",
            i + 1
        ))),
    }
}

fn arity(name: &str, args: &[Native], min: usize, max: usize) -> Result<()> {
    if args.len() < min || args.len() > max {
        return Err(QueryError::bad(format!(
            "SQL: {name} takes {} arguments, {} given",
            if min == max {
                min.to_string()
            } else {
                format!("{min} to {max}")
            },
            args.len()
        )));
    }
    Ok(())
}

fn join(args: &[Native]) -> String {
    args.iter()
        .map(|a| a.text.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// A scalar SQL function call (name upper-cased) over translated arguments.
pub(crate) fn call(name: &str, args: Vec<Native>) -> Result<Native> {
    use SqlType::{Bigint, Double, Timestamp, Varchar};
    let a = |i: usize| args[i].text.as_str();
    let n = |min, max| arity(name, &args, min, max);
    Ok(match name {
        "UPPER" | "LOWER" | "REVERSE" => {
            n(1, 1)?;
            Native::new(format!("{}({})", name.to_lowercase(), a(0)), Varchar)
        }
        "CONCAT" => Native::new(format!("concat({})", join(&args)), Varchar),
        "TEXTCAT" => {
            n(2, 2)?;
            Native::new(format!("concat({}, {})", a(0), a(1)), Varchar)
        }
        "SUBSTRING" | "SUBSTR" => {
            n(2, 3)?;
            let start = format!("({} - 1)", a(1));
            match args.get(2) {
                Some(len) => Native::new(
                    format!("substring({}, {start}, {})", a(0), len.text),
                    Varchar,
                ),
                None => Native::new(format!("substring({}, {start}, -1)", a(0)), Varchar),
            }
        }
        "CHAR_LENGTH" | "CHARACTER_LENGTH" | "LENGTH" | "STRLEN" => {
            n(1, 1)?;
            Native::new(format!("strlen({})", a(0)), Bigint)
        }
        "TRIM" | "BTRIM" | "LTRIM" | "RTRIM" => {
            n(1, 2)?;
            let f = match name {
                "LTRIM" => "ltrim",
                "RTRIM" => "rtrim",
                _ => "trim",
            };
            Native::new(format!("{f}({})", join(&args)), Varchar)
        }
        "REPLACE" => {
            n(3, 3)?;
            Native::new(format!("replace({})", join(&args)), Varchar)
        }
        "STRPOS" => {
            n(2, 2)?;
            Native::new(format!("(strpos({}, {}) + 1)", a(0), a(1)), Bigint)
        }
        "LEFT" | "RIGHT" | "REPEAT" | "LPAD" | "RPAD" => {
            n(2, 3)?;
            Native::new(format!("{}({})", name.to_lowercase(), join(&args)), Varchar)
        }
        "CONTAINS_STRING" | "ICONTAINS_STRING" => {
            n(2, 2)?;
            Native::new(format!("{}({})", name.to_lowercase(), join(&args)), Bigint)
        }
        "REGEXP_EXTRACT" => {
            n(2, 3)?;
            constant_text(name, &args, 1)?;
            let index = args.get(2).map_or("0", |i| i.text.as_str());
            Native::new(
                format!("regexp_extract({}, {}, {index})", a(0), a(1)),
                Varchar,
            )
        }
        "REGEXP_LIKE" => {
            n(2, 2)?;
            constant_text(name, &args, 1)?;
            Native::new(format!("regexp_like({}, {})", a(0), a(1)), Bigint)
        }
        "ABS" | "ROUND" | "FLOOR" | "CEIL" | "CEILING" => {
            n(1, if name == "ROUND" { 2 } else { 1 })?;
            let f = match name {
                "CEILING" => "ceil".to_string(),
                other => other.to_lowercase(),
            };
            let t = match &args[0].sql_type {
                Bigint => Bigint,
                _ => Double,
            };
            Native::new(format!("{f}({})", join(&args)), t)
        }
        "SQRT" | "EXP" | "LN" | "LOG10" => {
            n(1, 1)?;
            Native::new(format!("{}({})", name.to_lowercase(), a(0)), Double)
        }
        "POWER" | "POW" => {
            n(2, 2)?;
            Native::new(format!("pow({}, {})", a(0), a(1)), Double)
        }
        "MOD" => {
            n(2, 2)?;
            binary("%", args[0].clone(), args[1].clone())?
        }
        "DIV" => {
            n(2, 2)?;
            Native::new(format!("div({}, {})", a(0), a(1)), Bigint)
        }
        "COALESCE" | "NVL" | "IFNULL" => {
            n(2, usize::MAX)?;
            let t = args[1..]
                .iter()
                .fold(args[0].sql_type.clone(), |t, x| widen(&t, &x.sql_type));
            Native::new(format!("coalesce({})", join(&args)), t)
        }
        "NULLIF" => {
            n(2, 2)?;
            Native::new(
                format!("if({} == {}, null, {})", a(0), a(1), a(0)),
                args[0].sql_type.clone(),
            )
        }
        "GREATEST" | "LEAST" => {
            let t = args.iter().skip(1).fold(
                args.first().map_or(Bigint, |x| x.sql_type.clone()),
                |t, x| widen(&t, &x.sql_type),
            );
            Native::new(format!("{}({})", name.to_lowercase(), join(&args)), t)
        }
        "TIME_FLOOR" | "TIME_CEIL" => {
            n(2, 4)?;
            let f = if name == "TIME_FLOOR" {
                "timestamp_floor"
            } else {
                "timestamp_ceil"
            };
            Native::new(format!("{f}({})", join(&args)), Timestamp)
        }
        "TIME_SHIFT" => {
            n(3, 4)?;
            Native::new(format!("timestamp_shift({})", join(&args)), Timestamp)
        }
        "TIME_EXTRACT" => {
            n(1, 3)?;
            let unit = if args.len() > 1 {
                a(1)
            } else {
                "'MILLISECOND'"
            };
            let zone = args
                .get(2)
                .map_or(String::new(), |z| format!(", {}", z.text));
            Native::new(format!("timestamp_extract({}, {unit}{zone})", a(0)), Bigint)
        }
        "TIME_FORMAT" => {
            n(1, 3)?;
            Native::new(format!("timestamp_format({})", join(&args)), Varchar)
        }
        "TIME_PARSE" => {
            n(1, 3)?;
            Native::new(format!("timestamp_parse({})", join(&args)), Timestamp)
        }
        "MILLIS_TO_TIMESTAMP" => {
            n(1, 1)?;
            Native::new(a(0), Timestamp)
        }
        "TIMESTAMP_TO_MILLIS" => {
            n(1, 1)?;
            Native::new(a(0), Bigint)
        }
        "TIME_IN_INTERVAL" => {
            n(2, 2)?;
            let text = constant_text(name, &args, 1)?;
            let inner = &text[1..text.len() - 1];
            let interval = grove_segment::time::Interval::parse(inner).map_err(|e| {
                QueryError::bad(format!("SQL: TIME_IN_INTERVAL interval {text}: {e}"))
            })?;
            Native::new(
                format!(
                    "({t} >= {} && {t} < {})",
                    interval.start_ms,
                    interval.end_ms,
                    t = a(0)
                ),
                Bigint,
            )
        }
        other => return unsupported(format!("function {other}")),
    })
}

/// `CAST(x AS type)`.
pub(crate) fn cast(value: Native, to: &SqlType) -> Result<Native> {
    let x = &value.text;
    Ok(match (to, &value.sql_type) {
        (SqlType::Bigint, _) => Native::new(format!("cast({x}, 'LONG')"), SqlType::Bigint),
        (SqlType::Double, _) => Native::new(format!("cast({x}, 'DOUBLE')"), SqlType::Double),
        (SqlType::Varchar, SqlType::Timestamp) => {
            Native::new(format!("timestamp_format({x})"), SqlType::Varchar)
        }
        (SqlType::Varchar, _) => Native::new(format!("cast({x}, 'STRING')"), SqlType::Varchar),
        (SqlType::Timestamp, SqlType::Varchar) => {
            Native::new(format!("timestamp_parse({x})"), SqlType::Timestamp)
        }
        (SqlType::Timestamp, _) => Native::new(format!("cast({x}, 'LONG')"), SqlType::Timestamp),
        (other, _) => return unsupported(format!("CAST to {}", other.name())),
    })
}

/// `EXTRACT(unit FROM t)`, the unit as Druid names it (`YEAR`, `DOW`...).
pub(crate) fn extract(unit: &str, value: Native) -> Native {
    Native::new(
        format!("timestamp_extract({}, '{unit}')", value.text),
        SqlType::Bigint,
    )
}
