//! Text → [`Ast`]: a tokenizer and a precedence-climbing parser for Druid's expression grammar.
//!
//! Precedence, loosest first: `||`, `&&`, comparisons (`<`, `<=`, `>`, `>=`, `==`, `!=`), `+` `-`,
//! `*` `/` `%`, `^` (right-associative), unary `-` and `!`. Literals: longs, doubles (`1.5`,
//! `1e3`, `NaN`, `Infinity`), `'single-quoted strings'` (backslash escapes), `null`.
//! Identifiers are bare (`[A-Za-z_$][A-Za-z0-9_$]*`) or `"double-quoted"`; an identifier followed
//! by `(` is a function call. Nesting is bounded by [`DEPTH_MAX`].

use super::{Ast, BinaryOp, Scalar, UnaryOp};
use crate::error::{QueryError, Result};

/// How deeply expressions may nest (parentheses, operators, calls).
pub const DEPTH_MAX: usize = 128;

#[derive(Clone, Debug, PartialEq)]
enum Token {
    Long(i64),
    Double(f64),
    String(String),
    Identifier(String),
    Op(&'static str),
    LParen,
    RParen,
    Comma,
}

fn bad(text: &str, message: impl std::fmt::Display) -> QueryError {
    QueryError::bad(format!("expression '{text}': {message}"))
}

fn tokenize(text: &str) -> Result<Vec<Token>> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        if c.is_ascii_digit() || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            let mut double = false;
            if i < chars.len() && chars[i] == '.' {
                double = true;
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            if i < chars.len() && (chars[i] == 'e' || chars[i] == 'E') {
                let mut j = i + 1;
                if j < chars.len() && (chars[j] == '+' || chars[j] == '-') {
                    j += 1;
                }
                if j < chars.len() && chars[j].is_ascii_digit() {
                    double = true;
                    i = j;
                    while i < chars.len() && chars[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            let literal: String = chars[start..i].iter().collect();
            out.push(if double {
                Token::Double(
                    literal
                        .parse()
                        .map_err(|_| bad(text, format!("bad number '{literal}'")))?,
                )
            } else {
                match literal.parse::<i64>() {
                    Ok(n) => Token::Long(n),
                    Err(_) => Token::Double(
                        literal
                            .parse()
                            .map_err(|_| bad(text, format!("bad number '{literal}'")))?,
                    ),
                }
            });
            continue;
        }
        if c == '\'' || c == '"' {
            let quote = c;
            i += 1;
            let mut value = String::new();
            loop {
                let Some(&ch) = chars.get(i) else {
                    return Err(bad(text, "unterminated quote"));
                };
                i += 1;
                if ch == quote {
                    break;
                }
                if ch == '\\' {
                    let Some(&esc) = chars.get(i) else {
                        return Err(bad(text, "unterminated escape"));
                    };
                    i += 1;
                    match esc {
                        'n' => value.push('\n'),
                        't' => value.push('\t'),
                        'r' => value.push('\r'),
                        'b' => value.push('\u{8}'),
                        'f' => value.push('\u{c}'),
                        'u' => {
                            let hex: String =
                                chars.get(i..i + 4).unwrap_or_default().iter().collect();
                            let code = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| bad(text, format!("bad escape \\u{hex}")))?;
                            value.push(code);
                            i += 4;
                        }
                        other => value.push(other),
                    }
                    continue;
                }
                value.push(ch);
            }
            out.push(if quote == '\'' {
                Token::String(value)
            } else {
                Token::Identifier(value)
            });
            continue;
        }
        if c.is_alphabetic() || c == '_' || c == '$' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            out.push(match word.as_str() {
                "NaN" => Token::Double(f64::NAN),
                "Infinity" => Token::Double(f64::INFINITY),
                _ => Token::Identifier(word),
            });
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let op = match two.as_str() {
            "<=" => Some("<="),
            ">=" => Some(">="),
            "==" => Some("=="),
            "!=" => Some("!="),
            "&&" => Some("&&"),
            "||" => Some("||"),
            _ => None,
        };
        if let Some(op) = op {
            out.push(Token::Op(op));
            i += 2;
            continue;
        }
        out.push(match c {
            '(' => Token::LParen,
            ')' => Token::RParen,
            ',' => Token::Comma,
            '+' => Token::Op("+"),
            '-' => Token::Op("-"),
            '*' => Token::Op("*"),
            '/' => Token::Op("/"),
            '%' => Token::Op("%"),
            '^' => Token::Op("^"),
            '<' => Token::Op("<"),
            '>' => Token::Op(">"),
            '!' => Token::Op("!"),
            other => return Err(bad(text, format!("unexpected character '{other}'"))),
        });
        i += 1;
    }
    Ok(out)
}

struct Parser<'t> {
    text: &'t str,
    tokens: Vec<Token>,
    at: usize,
    depth: usize,
}

/// Binding power of a binary operator (higher binds tighter) and whether it is
/// right-associative.
fn binary(op: &str) -> Option<(u8, BinaryOp, bool)> {
    Some(match op {
        "||" => (1, BinaryOp::Or, false),
        "&&" => (2, BinaryOp::And, false),
        "<" => (3, BinaryOp::Lt, false),
        "<=" => (3, BinaryOp::Le, false),
        ">" => (3, BinaryOp::Gt, false),
        ">=" => (3, BinaryOp::Ge, false),
        "==" => (3, BinaryOp::Eq, false),
        "!=" => (3, BinaryOp::Ne, false),
        "+" => (4, BinaryOp::Add, false),
        "-" => (4, BinaryOp::Sub, false),
        "*" => (5, BinaryOp::Mul, false),
        "/" => (5, BinaryOp::Div, false),
        "%" => (5, BinaryOp::Mod, false),
        "^" => (6, BinaryOp::Pow, true),
        _ => return None,
    })
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.at)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.at).cloned();
        self.at += 1;
        t
    }

    fn expect(&mut self, token: Token, what: &str) -> Result<()> {
        match self.next() {
            Some(t) if t == token => Ok(()),
            Some(t) => Err(bad(self.text, format!("expected {what}, found {t:?}"))),
            None => Err(bad(self.text, format!("expected {what}, found the end"))),
        }
    }

    fn expression(&mut self, min_power: u8) -> Result<Ast> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err(bad(
                self.text,
                format!("nested more than {DEPTH_MAX} levels deep"),
            ));
        }
        let mut left = self.unary()?;
        while let Some(Token::Op(op)) = self.peek() {
            let Some((power, op, right_assoc)) = binary(op) else {
                break;
            };
            if power < min_power {
                break;
            }
            self.next();
            let right = self.expression(if right_assoc { power } else { power + 1 })?;
            left = Ast::Binary(op, Box::new(left), Box::new(right));
        }
        self.depth -= 1;
        Ok(left)
    }

    fn unary(&mut self) -> Result<Ast> {
        self.depth += 1;
        if self.depth > DEPTH_MAX {
            return Err(bad(
                self.text,
                format!("nested more than {DEPTH_MAX} levels deep"),
            ));
        }
        let ast = self.unary_inner();
        self.depth -= 1;
        ast
    }

    fn unary_inner(&mut self) -> Result<Ast> {
        match self.peek() {
            Some(Token::Op("-")) => {
                self.next();
                Ok(match self.unary()? {
                    Ast::Literal(Scalar::Long(n)) => Ast::Literal(Scalar::Long(n.wrapping_neg())),
                    Ast::Literal(Scalar::Double(d)) => Ast::Literal(Scalar::Double(-d)),
                    inner => Ast::Unary(UnaryOp::Neg, Box::new(inner)),
                })
            }
            Some(Token::Op("!")) => {
                self.next();
                Ok(Ast::Unary(UnaryOp::Not, Box::new(self.unary()?)))
            }
            _ => self.primary(),
        }
    }

    fn primary(&mut self) -> Result<Ast> {
        match self.next() {
            Some(Token::Long(n)) => Ok(Ast::Literal(Scalar::Long(n))),
            Some(Token::Double(d)) => Ok(Ast::Literal(Scalar::Double(d))),
            Some(Token::String(s)) => Ok(Ast::Literal(Scalar::String(s))),
            Some(Token::LParen) => {
                let inner = self.expression(0)?;
                self.expect(Token::RParen, "')'")?;
                Ok(inner)
            }
            Some(Token::Identifier(name)) => {
                if self.peek() == Some(&Token::LParen) {
                    self.next();
                    let mut args = Vec::new();
                    if self.peek() != Some(&Token::RParen) {
                        loop {
                            args.push(self.expression(0)?);
                            match self.next() {
                                Some(Token::Comma) => continue,
                                Some(Token::RParen) => break,
                                _ => {
                                    return Err(bad(
                                        self.text,
                                        format!("expected ',' or ')' in the arguments of {name}"),
                                    ));
                                }
                            }
                        }
                    } else {
                        self.next();
                    }
                    Ok(Ast::Call(name.to_ascii_lowercase(), args))
                } else if name == "null" {
                    Ok(Ast::Literal(Scalar::Null))
                } else {
                    Ok(Ast::Column(name))
                }
            }
            Some(t) => Err(bad(self.text, format!("unexpected {t:?}"))),
            None => Err(bad(self.text, "unexpected end")),
        }
    }
}

/// Parses `text` into an [`Ast`].
pub fn parse(text: &str) -> Result<Ast> {
    let tokens = tokenize(text)?;
    if tokens.is_empty() {
        return Err(bad(text, "the expression is empty"));
    }
    let mut parser = Parser {
        text,
        tokens,
        at: 0,
        depth: 0,
    };
    let ast = parser.expression(0)?;
    if let Some(t) = parser.peek() {
        return Err(bad(text, format!("unexpected {t:?} after the expression")));
    }
    Ok(ast)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str) -> String {
        format!("{:?}", parse(text).unwrap())
    }

    #[test]
    fn precedence_and_associativity() {
        assert_eq!(p("1 + 2 * 3"), p("1 + (2 * 3)"));
        assert_eq!(p("1 - 2 - 3"), p("(1 - 2) - 3"));
        assert_eq!(p("2 ^ 3 ^ 2"), p("2 ^ (3 ^ 2)"));
        assert_eq!(p("a < 1 && b || c"), p("((a < 1) && b) || c"));
        assert_eq!(p("-x ^ 2"), p("(-x) ^ 2"));
        assert_eq!(p("!a && b"), p("(!a) && b"));
    }

    #[test]
    fn literals_identifiers_and_calls() {
        assert_eq!(
            parse("concat(\"my col\", 'it\\'s', null, -1.5e1, 7)").unwrap(),
            Ast::Call(
                "concat".into(),
                vec![
                    Ast::Column("my col".into()),
                    Ast::Literal(Scalar::String("it's".into())),
                    Ast::Literal(Scalar::Null),
                    Ast::Literal(Scalar::Double(-15.0)),
                    Ast::Literal(Scalar::Long(7)),
                ]
            )
        );
        assert_eq!(parse("NOW()").unwrap(), Ast::Call("now".into(), Vec::new()));
    }

    #[test]
    fn errors_name_the_problem() {
        for (text, part) in [
            ("1 +", "end"),
            ("(1", "')'"),
            ("'abc", "unterminated"),
            ("1 # 2", "'#'"),
            ("f(1 2)", "arguments of f"),
            ("", "empty"),
        ] {
            let e = parse(text).unwrap_err();
            assert!(e.message.contains(part), "{text}: {e}");
        }
        let deep = "(".repeat(500) + "1" + &")".repeat(500);
        assert!(parse(&deep).unwrap_err().message.contains("nested"));
    }
}
