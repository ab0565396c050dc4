//! Literal `IN` lists lifted out of the SQL text before tokenizing.
//!
//! Grove's hot clients send 1,000–10,000 ids in one `IN` list on every query. Tokenizing and
//! parsing each value as a general expression costs far more than executing the filter, so one
//! byte-level pass over the text finds every `IN (v1, v2, ...)` whose values are all string
//! literals, numbers, `NULL` or `?`, keeps the values as [`Literal`]s, and leaves
//! `IN ('\0in-list-N')` in the text. The filter planner maps that marker back to
//! [`Lifted::in_lists`]`[N]`. Anything the pass does not fully understand (comments inside the
//! list, expressions, escapes) is left in the text for the regular parser, so lifting never
//! changes what a query means. Queries containing NUL are refused, so the marker cannot clash
//! with user text; queries containing a backslash (escape-string literals) are not lifted.

use super::SqlParameter;
use super::parse::parameter_literal;
use super::value::{Literal, number};
use crate::{QueryError, Result};

const MARKER: &str = "\u{0}in-list-";

/// The index in [`Lifted::in_lists`] a lifted list's marker string stands for.
pub(crate) fn lifted_index(text: &str) -> Option<usize> {
    text.strip_prefix(MARKER)?.parse().ok()
}

/// The SQL text with its literal `IN` lists replaced by markers.
pub(crate) struct Lifted {
    pub sql: String,
    pub in_lists: Vec<Vec<Literal>>,
    /// For each `?` left in the text, in order, the index of its parameter (`?`s inside lifted
    /// lists consumed the others); `None` when nothing was lifted and `?`s bind in token order.
    pub parameter_order: Option<Vec<usize>>,
    /// How many `?` the lifting pass saw in all (0 when it did not run).
    pub placeholders: usize,
}

pub(crate) fn lift(sql: &str, parameters: &[SqlParameter]) -> Result<Lifted> {
    if sql.contains('\0') {
        return Err(QueryError::bad("SQL: the query contains a NUL character"));
    }
    let b = sql.as_bytes();
    let mut lifted = Lifted {
        sql: String::new(),
        in_lists: Vec::new(),
        parameter_order: None,
        placeholders: 0,
    };
    if sql.contains('\\') {
        lifted.sql = sql.to_string();
        return Ok(lifted);
    }
    let mut parameter_order = Vec::new();
    let mut copied = 0;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            quote @ (b'\'' | b'"' | b'`') => i = skip_quoted(b, i, quote),
            b'-' if b.get(i + 1) == Some(&b'-') => {
                i = memchr_newline(b, i);
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(b, i),
            b'?' if !b.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                parameter_order.push(lifted.placeholders);
                lifted.placeholders += 1;
                i += 1;
            }
            c if is_word_byte(c) => {
                let start = i;
                while i < b.len() && is_word_byte(b[i]) {
                    i += 1;
                }
                if !sql[start..i].eq_ignore_ascii_case("IN") {
                    continue;
                }
                let Some((end, items)) = scan_list(sql, i) else {
                    continue;
                };
                let mut literals = Vec::with_capacity(items.len());
                for item in items {
                    literals.push(match item {
                        Item::Literal(literal) => literal,
                        Item::Parameter => {
                            let index = lifted.placeholders;
                            lifted.placeholders += 1;
                            let parameter = parameters.get(index).ok_or_else(|| {
                                QueryError::bad(format!(
                                    "SQL: parameter {} has no value ({} given)",
                                    index + 1,
                                    parameters.len()
                                ))
                            })?;
                            parameter_literal(parameter, index + 1)?
                        }
                    });
                }
                lifted.sql.push_str(&sql[copied..i]);
                lifted.sql.push_str(" ('");
                lifted.sql.push_str(MARKER);
                lifted.sql.push_str(&lifted.in_lists.len().to_string());
                lifted.sql.push_str("')");
                lifted.in_lists.push(literals);
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    lifted.sql.push_str(&sql[copied..]);
    lifted.parameter_order = Some(parameter_order);
    Ok(lifted)
}

enum Item {
    Literal(Literal),
    Parameter,
}

fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$' || c >= 0x80
}

fn memchr_newline(b: &[u8], from: usize) -> usize {
    b[from..]
        .iter()
        .position(|&c| c == b'\n')
        .map_or(b.len(), |p| from + p + 1)
}

/// The index after the quoted text opening at `start` (a doubled quote is an escaped quote).
fn skip_quoted(b: &[u8], start: usize, quote: u8) -> usize {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == quote {
            if b.get(i + 1) == Some(&quote) {
                i += 2;
                continue;
            }
            return i + 1;
        }
        i += 1;
    }
    b.len()
}

/// The index after a (possibly nested) block comment opening at `start`.
fn skip_block_comment(b: &[u8], start: usize) -> usize {
    let mut depth = 0;
    let mut i = start;
    while i + 1 < b.len() {
        match (b[i], b[i + 1]) {
            (b'/', b'*') => {
                depth += 1;
                i += 2;
            }
            (b'*', b'/') => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    b.len()
}

fn skip_spaces(b: &[u8], mut i: usize) -> usize {
    while i < b.len() && matches!(b[i], b' ' | b'\t' | b'\n' | b'\r') {
        i += 1;
    }
    i
}

/// `( item [, item]* )` from `start` (after the `IN` keyword): the index after `)` and the items,
/// or `None` if the list is anything else.
fn scan_list(sql: &str, start: usize) -> Option<(usize, Vec<Item>)> {
    let b = sql.as_bytes();
    let mut i = skip_spaces(b, start);
    if b.get(i) != Some(&b'(') {
        return None;
    }
    let mut items = Vec::new();
    loop {
        i = skip_spaces(b, i + 1);
        let (item, next) = scan_item(sql, i)?;
        items.push(item);
        i = skip_spaces(b, next);
        match b.get(i)? {
            b',' => continue,
            b')' => return Some((i + 1, items)),
            _ => return None,
        }
    }
}

/// One list item at `i`: a string, a number, `NULL` or `?`, and the index after it.
fn scan_item(sql: &str, i: usize) -> Option<(Item, usize)> {
    let b = sql.as_bytes();
    match *b.get(i)? {
        b'\'' => {
            let end = skip_quoted(b, i, b'\'');
            if b.get(end - 1) != Some(&b'\'') || end - i < 2 {
                return None;
            }
            let body = &sql[i + 1..end - 1];
            let text = if body.as_bytes().contains(&b'\'') {
                body.replace("''", "'")
            } else {
                body.to_string()
            };
            Some((Item::Literal(Literal::String(text)), end))
        }
        b'?' if !b.get(i + 1).is_some_and(|c| is_word_byte(*c)) => Some((Item::Parameter, i + 1)),
        b'-' | b'.' | b'0'..=b'9' => {
            let mut end = i + usize::from(b[i] == b'-');
            let digits_start = end;
            while end < b.len() && (b[end].is_ascii_digit() || b[end] == b'.') {
                end += 1;
            }
            if end < b.len() && matches!(b[end], b'e' | b'E') {
                end += 1;
                if end < b.len() && matches!(b[end], b'+' | b'-') {
                    end += 1;
                }
                while end < b.len() && b[end].is_ascii_digit() {
                    end += 1;
                }
            }
            if !b[digits_start..end].iter().any(u8::is_ascii_digit)
                || b.get(end).is_some_and(|c| is_word_byte(*c))
            {
                return None;
            }
            let literal = number(&sql[i..end]).ok()?;
            Some((Item::Literal(literal), end))
        }
        _ => {
            let end = i + 4;
            let word = sql.get(i..end)?;
            if word.eq_ignore_ascii_case("NULL") && !b.get(end).is_some_and(|c| is_word_byte(*c)) {
                Some((Item::Literal(Literal::Null), end))
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lifted(sql: &str) -> Lifted {
        lift(sql, &[]).unwrap()
    }

    #[test]
    fn lifts_literal_lists_and_keeps_everything_else() {
        let l = lifted("SELECT * FROM t WHERE a IN ('x', 'it''s', -1, 2.5e1, NULL) AND b in(1)");
        assert_eq!(
            l.sql,
            "SELECT * FROM t WHERE a IN ('\0in-list-0') AND b in ('\0in-list-1')"
        );
        assert_eq!(
            l.in_lists,
            vec![
                vec![
                    Literal::String("x".into()),
                    Literal::String("it's".into()),
                    Literal::Long(-1),
                    Literal::Double(25.0),
                    Literal::Null,
                ],
                vec![Literal::Long(1)],
            ]
        );
    }

    #[test]
    fn leaves_what_it_does_not_understand() {
        for sql in [
            "SELECT * FROM t WHERE a IN (SELECT b FROM u)",
            "SELECT * FROM t WHERE a IN ('x' || 'y')",
            "SELECT * FROM t WHERE a IN (1 /* one */, 2)",
            "SELECT * FROM t WHERE a IN (b, 1)",
            "SELECT * FROM t WHERE 'IN (1)' = a -- IN (2)",
            "SELECT * FROM t WHERE \"IN\" = 1 /* IN (3) /* nested */ IN (4) */",
            "SELECT * FROM t WHERE a IN (0x1F)",
            "SELECT * FROM t WHERE a IN (E'x\\'')",
            "SELECT * FROM t WHERE join_in (1)",
        ] {
            let l = lifted(sql);
            assert_eq!(l.sql, sql);
            assert!(l.in_lists.is_empty(), "{sql}");
        }
    }

    #[test]
    fn parameters_inside_and_outside_lists_keep_their_order() {
        let parameters: Vec<SqlParameter> = (0..4)
            .map(|i| SqlParameter {
                sql_type: "BIGINT".into(),
                value: i.into(),
            })
            .collect();
        let l = lift(
            "SELECT * FROM t WHERE a = ? AND b IN (?, 7, ?) AND c = '?' AND d = ?",
            &parameters,
        )
        .unwrap();
        assert_eq!(
            l.in_lists,
            vec![vec![Literal::Long(1), Literal::Long(7), Literal::Long(2)]]
        );
        assert_eq!(l.parameter_order, Some(vec![0, 3]));
        assert_eq!(l.placeholders, 4);
    }

    #[test]
    fn refuses_nul() {
        assert!(lift("SELECT '\0'", &[]).is_err());
    }
}
