//! Text → one `sqlparser` statement, with `?` parameters bound.
//!
//! Parameters are bound at token level, before parsing: every `?` token is replaced, in textual
//! order, by the literal tokens of its [`SqlParameter`] (`'text'`, `42`, `-1.5`,
//! `TIMESTAMP '2024-01-01 00:00:00'`, `NULL`). Binding is one pass over the tokens, so a
//! 10,000-parameter `IN` list costs the same as 10,000 literals.

use serde_json::Value;
use sqlparser::ast::Statement;
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};

use super::SqlParameter;
use crate::{QueryError, Result};

/// How deeply expressions may nest (parentheses, `NOT`, `CASE`...). Flat lists (`IN`, the select
/// list) do not count against it.
const NESTING_DEPTH_MAX: usize = 200;

/// Parses `sql` into exactly one statement, binding `parameters` to its `?` placeholders.
pub(crate) fn parse(sql: &str, parameters: &[SqlParameter]) -> Result<Statement> {
    let dialect = GenericDialect {};
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| QueryError::bad(format!("SQL: {e}")))?;
    let tokens = bind_parameters(tokens, parameters)?;
    let mut statements = Parser::new(&dialect)
        .with_recursion_limit(NESTING_DEPTH_MAX)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(|e| QueryError::bad(format!("SQL: {e}")))?;
    match statements.len() {
        1 => Ok(statements.remove(0)),
        0 => Err(QueryError::bad("SQL: the query is empty")),
        n => Err(QueryError::bad(format!(
            "SQL: expected one statement, found {n}"
        ))),
    }
}

fn bind_parameters(
    tokens: Vec<TokenWithSpan>,
    parameters: &[SqlParameter],
) -> Result<Vec<TokenWithSpan>> {
    let mut bound = Vec::with_capacity(tokens.len() + parameters.len());
    let mut used = 0;
    for token in tokens {
        if !matches!(&token.token, Token::Placeholder(p) if p == "?") {
            bound.push(token);
            continue;
        }
        let parameter = parameters.get(used).ok_or_else(|| {
            QueryError::bad(format!(
                "SQL: parameter {} has no value ({} given)",
                used + 1,
                parameters.len()
            ))
        })?;
        used += 1;
        for literal in parameter_tokens(parameter, used)? {
            bound.push(TokenWithSpan::new(literal, token.span));
        }
    }
    if used < parameters.len() {
        return Err(QueryError::bad(format!(
            "SQL: {} parameters given but the query has {used} placeholders",
            parameters.len()
        )));
    }
    Ok(bound)
}

/// The tokens of one parameter's literal; `position` is 1-based, for errors.
fn parameter_tokens(parameter: &SqlParameter, position: usize) -> Result<Vec<Token>> {
    let sql_type = parameter.sql_type.to_ascii_uppercase();
    let invalid = || {
        QueryError::bad(format!(
            "SQL: parameter {position} of type {sql_type} has an invalid value {}",
            parameter.value
        ))
    };
    if parameter.value.is_null() {
        return Ok(vec![Token::make_keyword("NULL")]);
    }
    let text = match &parameter.value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        _ => return Err(invalid()),
    };
    match sql_type.as_str() {
        "VARCHAR" | "CHAR" | "STRING" => Ok(vec![Token::SingleQuotedString(text)]),
        "TIMESTAMP" | "DATE" => Ok(vec![
            Token::make_keyword(&sql_type),
            Token::SingleQuotedString(text),
        ]),
        "BOOLEAN" => match text.as_str() {
            "true" | "false" => Ok(vec![Token::make_keyword(&text.to_ascii_uppercase())]),
            _ => Err(invalid()),
        },
        "BIGINT" | "INTEGER" | "INT" | "SMALLINT" | "TINYINT" | "DOUBLE" | "FLOAT" | "REAL"
        | "DECIMAL" | "NUMERIC" => {
            let number: f64 = text.parse().map_err(|_| invalid())?;
            if !number.is_finite() {
                return Err(invalid());
            }
            Ok(match text.strip_prefix('-') {
                Some(digits) => vec![Token::Minus, Token::Number(digits.to_string(), false)],
                None => vec![Token::Number(text, false)],
            })
        }
        _ => Err(QueryError::unsupported(format!(
            "SQL: parameter {position} has unsupported type {sql_type}"
        ))),
    }
}
