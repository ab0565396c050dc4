//! Text → one `sqlparser` statement, with literal `IN` lists lifted out ([`super::in_list`]) and
//! `?` parameters bound.
//!
//! Parameters are bound at token level, before parsing: every `?` is replaced by the literal of
//! its [`SqlParameter`] (`'text'`, `42`, `-1.5`, `TIMESTAMP '2024-01-01 00:00:00.000Z'`, `NULL`), in
//! textual order (the lifting pass already bound those inside `IN` lists and says which
//! parameter each remaining `?` takes).

use grove_segment::time::{format_iso, parse_iso_timestamp};
use serde_json::Value;
use sqlparser::ast::Statement;
use sqlparser::dialect::GenericDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::SqlParameter;
use super::in_list::{Lifted, lift};
use super::value::{Literal, number};
use crate::{QueryError, Result};

/// How deeply expressions may nest (parentheses, `NOT`, `CASE`...). Flat lists (`IN`, the select
/// list) do not count against it.
const NESTING_DEPTH_MAX: usize = 200;

/// How many tokens (whitespace aside) a query may have once its literal `IN` lists are lifted.
/// A flat chain (`a = 1 OR a = 2 OR ...`) parses into a tree as deep as it is long, which the
/// parser builds and drops recursively; this bound keeps that within a thread's stack.
pub(crate) const TOKENS_MAX: usize = 40_000;

/// A parsed statement and the `IN` lists lifted out of it.
pub(crate) struct Parsed {
    pub statement: Statement,
    pub in_lists: Vec<Vec<Literal>>,
}

/// Parses `sql` into exactly one statement, binding `parameters` to its `?` placeholders.
/// `now_ms` (Druid's `sqlCurrentTimestamp` context parameter) is what `CURRENT_TIMESTAMP`
/// stands for; without it `CURRENT_TIMESTAMP` is an error, so planning never reads a clock.
pub(crate) fn parse(sql: &str, parameters: &[SqlParameter], now_ms: Option<i64>) -> Result<Parsed> {
    let dialect = GenericDialect {};
    let lifted = lift(sql, parameters)?;
    let tokens = Tokenizer::new(&dialect, &lifted.sql)
        .tokenize_with_location()
        .map_err(|e| QueryError::bad(format!("SQL: {e}")))?;
    let tokens = bind(tokens, parameters, &lifted, now_ms)?;
    let mut statements = Parser::new(&dialect)
        .with_recursion_limit(NESTING_DEPTH_MAX)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| QueryError::bad(format!("SQL: {e}")))?;
    let statement = match statements.len() {
        1 => statements.remove(0),
        0 => return Err(QueryError::bad("SQL: the query is empty")),
        n => {
            return Err(QueryError::bad(format!(
                "SQL: expected one statement, found {n}"
            )));
        }
    };
    Ok(Parsed {
        statement,
        in_lists: lifted.in_lists,
    })
}

/// Replaces each `?` token by its parameter's literal tokens.
fn bind(
    tokens: Vec<TokenWithSpan>,
    parameters: &[SqlParameter],
    lifted: &Lifted,
    now_ms: Option<i64>,
) -> Result<Vec<TokenWithSpan>> {
    let mut bound = Vec::with_capacity(tokens.len());
    let mut seen = 0;
    let mut significant = 0;
    for token in tokens {
        if !matches!(token.token, Token::Whitespace(_)) {
            significant += 1;
            if significant > TOKENS_MAX {
                return Err(QueryError::resource_limit(format!(
                    "SQL: the query has more than {TOKENS_MAX} tokens outside literal IN lists; \
                     send long lists of values as IN lists"
                )));
            }
        }
        if let (Token::Word(word), Some(now_ms)) = (&token.token, now_ms)
            && word.keyword == Keyword::CURRENT_TIMESTAMP
            && word.quote_style.is_none()
        {
            let span = token.span;
            bound.extend(
                literal_tokens(Literal::Timestamp(now_ms))
                    .into_iter()
                    .map(|literal| TokenWithSpan::new(literal, span)),
            );
            continue;
        }
        if !matches!(&token.token, Token::Placeholder(p) if p == "?") {
            bound.push(token);
            continue;
        }
        let index = match &lifted.parameter_order {
            Some(order) => order
                .get(seen)
                .copied()
                .ok_or_else(|| QueryError::internal("SQL: a `?` the IN-list pass did not see"))?,
            None => seen,
        };
        seen += 1;
        let parameter = parameters.get(index).ok_or_else(|| {
            QueryError::bad(format!(
                "SQL: parameter {} has no value ({} given)",
                index + 1,
                parameters.len()
            ))
        })?;
        let literal = parameter_literal(parameter, index + 1)?;
        bound.extend(
            literal_tokens(literal)
                .into_iter()
                .map(|literal| TokenWithSpan::new(literal, token.span)),
        );
    }
    let placeholders = lifted.placeholders.max(seen);
    if placeholders < parameters.len() {
        return Err(QueryError::bad(format!(
            "SQL: {} parameters given but the query has {placeholders} placeholders",
            parameters.len()
        )));
    }
    Ok(bound)
}

/// The tokens that spell `literal` in SQL.
fn literal_tokens(literal: Literal) -> Vec<Token> {
    let number = |text: String| match text.strip_prefix('-') {
        Some(digits) => vec![Token::Minus, Token::Number(digits.to_string(), false)],
        None => vec![Token::Number(text, false)],
    };
    match literal {
        Literal::Null => vec![Token::make_keyword("NULL")],
        Literal::Bool(b) => vec![Token::make_keyword(if b { "TRUE" } else { "FALSE" })],
        Literal::Long(n) => number(n.to_string()),
        Literal::Double(d) => number(format!("{d:?}")),
        Literal::String(s) => vec![Token::SingleQuotedString(s)],
        Literal::Timestamp(ms) => vec![
            Token::make_keyword("TIMESTAMP"),
            Token::SingleQuotedString(format_iso(ms)),
        ],
    }
}

/// The literal a parameter stands for; `position` is 1-based, for errors.
pub(crate) fn parameter_literal(parameter: &SqlParameter, position: usize) -> Result<Literal> {
    let sql_type = parameter.sql_type.to_ascii_uppercase();
    let invalid = || {
        QueryError::bad(format!(
            "SQL: parameter {position} of type {sql_type} has an invalid value {}",
            parameter.value
        ))
    };
    let text = match &parameter.value {
        Value::Null => return Ok(Literal::Null),
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(invalid()),
    };
    match sql_type.as_str() {
        "VARCHAR" | "CHAR" | "STRING" => Ok(Literal::String(text)),
        "TIMESTAMP" | "DATE" => parse_iso_timestamp(text.trim())
            .map(Literal::Timestamp)
            .ok_or_else(invalid),
        "BOOLEAN" => match text.as_str() {
            "true" => Ok(Literal::Bool(true)),
            "false" => Ok(Literal::Bool(false)),
            _ => Err(invalid()),
        },
        "BIGINT" | "INTEGER" | "INT" | "SMALLINT" | "TINYINT" | "DOUBLE" | "FLOAT" | "REAL"
        | "DECIMAL" | "NUMERIC" => number(text.trim()).map_err(|_| invalid()),
        _ => Err(QueryError::unsupported(format!(
            "SQL: parameter {position} has unsupported type {sql_type}"
        ))),
    }
}
