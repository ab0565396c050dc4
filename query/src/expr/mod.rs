//! Druid's native expression language, for `expression` virtual columns, `expression` filters,
//! `expression` post-aggregators and aggregator `expression` inputs (and SQL expressions, which
//! the planner writes in it).
//!
//! An expression is parsed and compiled once per query ([`Expr::compile`]): columns become
//! input slots, functions are resolved and their constant arguments (periods, time zones,
//! formats, patterns) prepared. It is then evaluated a batch at a time ([`Expr::eval`]): every
//! node takes whole [`Vector`]s (one value per row of the batch) and returns one, so the tree is
//! walked once per batch of up to 1,024 rows, never per row. Over a string column an expression
//! whose only input is that column is evaluated once per dictionary value instead (see
//! `virtual_columns`).
//!
//! Semantics (Druid's defaults: SQL-compatible nulls, strict booleans):
//! - types are LONG, DOUBLE and STRING; a vector's type depends only on its inputs' types, never
//!   on the data, so a column built batch by batch has one type;
//! - arithmetic on two longs stays long (`/` is integer division; a long division or modulo by
//!   zero is null), with a double it is double; `+` with a string operand concatenates;
//! - comparisons and logic yield longs 1 and 0; any null operand of arithmetic or a comparison
//!   gives null; `&&`/`||` are three-valued (`null && 0` is 0, `null || 1` is 1);
//! - truthiness: a number is true when non-zero, a string when it reads as a non-zero number or
//!   `true`;
//! - a missing column and the literal `null` are null longs.
//!
//! Functions: `if`, `case_searched`, `case_simple`, `nvl`, `coalesce`, `isnull`, `notnull`,
//! `concat`, `substring`, `strlen`, `lower`, `upper`, `trim`/`ltrim`/`rtrim`, `replace`,
//! `strpos`, `left`, `right`, `reverse`, `repeat`, `lpad`, `rpad`, `contains_string`,
//! `icontains_string`, `like`, `regexp_extract`, `regexp_like`, `cast`, `abs`, `floor`, `ceil`,
//! `round`, `sqrt`, `exp`, `ln`/`log`, `log10`, `pow`, `div`, `safe_divide`, `greatest`, `least`,
//! `timestamp_floor`, `timestamp_ceil`, `timestamp_shift`, `timestamp_extract`,
//! `timestamp_format`, `timestamp_parse` (alias `timestamp`). Anything else is refused by name.

mod functions;
mod parse;

use std::fmt::Write as _;

use crate::error::{QueryError, Result};

pub use functions::Func;
pub use parse::parse;

/// How many rows one evaluation batch holds.
pub const BATCH_ROWS: usize = 1024;

/// A constant.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Null,
    Long(i64),
    Double(f64),
    String(String),
}

/// A parsed, unresolved expression.
#[derive(Clone, Debug, PartialEq)]
pub enum Ast {
    Literal(Scalar),
    Column(String),
    Unary(UnaryOp, Box<Ast>),
    Binary(BinaryOp, Box<Ast>, Box<Ast>),
    /// A function call, its name lowercased.
    Call(String, Vec<Ast>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnaryOp {
    Neg,
    Not,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Pow,
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
    And,
    Or,
}

/// A value type of Druid's expressions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueType {
    Long,
    Double,
    String,
}

impl ValueType {
    /// Druid's type names (`LONG`, `DOUBLE`, `FLOAT` as double, `STRING`), case-insensitive.
    pub fn parse(name: &str) -> Option<ValueType> {
        match name.trim().to_ascii_uppercase().as_str() {
            "LONG" | "BIGINT" | "INTEGER" | "INT" => Some(ValueType::Long),
            "DOUBLE" | "FLOAT" | "REAL" => Some(ValueType::Double),
            "STRING" | "VARCHAR" => Some(ValueType::String),
            _ => None,
        }
    }
}

/// One value per row of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Vector {
    Long(Vec<Option<i64>>),
    Double(Vec<Option<f64>>),
    String(Vec<Option<String>>),
}

impl Vector {
    pub fn len(&self) -> usize {
        match self {
            Vector::Long(v) => v.len(),
            Vector::Double(v) => v.len(),
            Vector::String(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn value_type(&self) -> ValueType {
        match self {
            Vector::Long(_) => ValueType::Long,
            Vector::Double(_) => ValueType::Double,
            Vector::String(_) => ValueType::String,
        }
    }

    /// `n` copies of `value` (null as a null long).
    pub fn repeat(value: &Scalar, n: usize) -> Vector {
        match value {
            Scalar::Null => Vector::Long(vec![None; n]),
            Scalar::Long(v) => Vector::Long(vec![Some(*v); n]),
            Scalar::Double(v) => Vector::Double(vec![Some(*v); n]),
            Scalar::String(v) => Vector::String(vec![Some(v.clone()); n]),
        }
    }

    /// Whether row `i` is null.
    pub fn is_null(&self, i: usize) -> bool {
        match self {
            Vector::Long(v) => v[i].is_none(),
            Vector::Double(v) => v[i].is_none(),
            Vector::String(v) => v[i].is_none(),
        }
    }

    /// Row `i` as a scalar.
    pub fn get(&self, i: usize) -> Scalar {
        match self {
            Vector::Long(v) => v[i].map_or(Scalar::Null, Scalar::Long),
            Vector::Double(v) => v[i].map_or(Scalar::Null, Scalar::Double),
            Vector::String(v) => v[i].clone().map_or(Scalar::Null, Scalar::String),
        }
    }

    /// The values as doubles (strings that are not numbers are null).
    pub fn to_doubles(&self) -> Vec<Option<f64>> {
        match self {
            Vector::Long(v) => v.iter().map(|x| x.map(|x| x as f64)).collect(),
            Vector::Double(v) => v.clone(),
            Vector::String(v) => v
                .iter()
                .map(|x| x.as_deref().and_then(parse_double))
                .collect(),
        }
    }

    /// The values as longs (doubles truncate toward zero; strings that are not numbers are
    /// null).
    pub fn to_longs(&self) -> Vec<Option<i64>> {
        match self {
            Vector::Long(v) => v.clone(),
            Vector::Double(v) => v.iter().map(|x| x.map(double_to_long)).collect(),
            Vector::String(v) => v
                .iter()
                .map(|x| {
                    x.as_deref().and_then(|s| {
                        s.trim()
                            .parse::<i64>()
                            .ok()
                            .or_else(|| parse_double(s).map(double_to_long))
                    })
                })
                .collect(),
        }
    }

    /// The values as text (longs in decimal, doubles as Druid prints them).
    pub fn to_strings(&self) -> Vec<Option<String>> {
        match self {
            Vector::String(v) => v.clone(),
            Vector::Long(v) => v.iter().map(|x| x.map(|x| x.to_string())).collect(),
            Vector::Double(v) => v
                .iter()
                .map(|x| x.map(grove_segment::row::format_double))
                .collect(),
        }
    }

    /// Consumes the vector into text values.
    pub fn into_strings(self) -> Vec<Option<String>> {
        match self {
            Vector::String(v) => v,
            other => other.to_strings(),
        }
    }

    /// Truthiness of each value (`None` for null).
    pub fn truth(&self) -> Vec<Option<bool>> {
        match self {
            Vector::Long(v) => v.iter().map(|x| x.map(|x| x != 0)).collect(),
            Vector::Double(v) => v.iter().map(|x| x.map(|x| x != 0.0)).collect(),
            Vector::String(v) => v.iter().map(|x| x.as_deref().map(text_truth)).collect(),
        }
    }

    /// The vector converted to `to`.
    pub fn cast(self, to: ValueType) -> Vector {
        match (to, self) {
            (ValueType::Long, v @ Vector::Long(_)) => v,
            (ValueType::Double, v @ Vector::Double(_)) => v,
            (ValueType::String, v @ Vector::String(_)) => v,
            (ValueType::Long, v) => Vector::Long(v.to_longs()),
            (ValueType::Double, v) => Vector::Double(v.to_doubles()),
            (ValueType::String, v) => Vector::String(v.to_strings()),
        }
    }

    /// The rows `keep` (indexes, in order).
    pub fn select(&self, keep: &[usize]) -> Vector {
        match self {
            Vector::Long(v) => Vector::Long(keep.iter().map(|&i| v[i]).collect()),
            Vector::Double(v) => Vector::Double(keep.iter().map(|&i| v[i]).collect()),
            Vector::String(v) => Vector::String(keep.iter().map(|&i| v[i].clone()).collect()),
        }
    }
}

fn double_to_long(d: f64) -> i64 {
    if d.is_nan() { 0 } else { d as i64 }
}

/// A number read from text as Druid's expressions read it (`1`, `-2.5`, `1e3`).
pub fn parse_double(text: &str) -> Option<f64> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    t.parse::<f64>().ok()
}

fn text_truth(text: &str) -> bool {
    match parse_double(text) {
        Some(d) => d != 0.0,
        None => text.trim().eq_ignore_ascii_case("true"),
    }
}

/// A compiled expression: its input columns, in slot order, and the evaluation tree.
#[derive(Clone, Debug)]
pub struct Expr {
    text: String,
    columns: Vec<String>,
    root: Node,
}

#[derive(Clone, Debug)]
pub(crate) enum Node {
    Const(Scalar),
    Column(usize),
    Unary(UnaryOp, Box<Node>),
    Binary(BinaryOp, Box<Node>, Box<Node>),
    Call(Box<Func>, Vec<Node>),
}

impl Expr {
    /// Parses and compiles `text`.
    pub fn compile(text: &str) -> Result<Expr> {
        let ast = parse(text)?;
        Expr::from_ast(text, &ast)
    }

    /// Compiles a parsed expression; `text` names it in errors.
    pub fn from_ast(text: &str, ast: &Ast) -> Result<Expr> {
        let mut columns = Vec::new();
        let root = resolve(text, ast, &mut columns)?;
        Ok(Expr {
            text: text.to_string(),
            columns,
            root,
        })
    }

    /// The expression's text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The columns the expression reads, in input-slot order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// The constant value of an expression that reads no column.
    pub fn constant(&self) -> Option<Scalar> {
        if !self.columns.is_empty() {
            return None;
        }
        Some(self.eval(&[], 1).get(0))
    }

    /// Evaluates the expression over one batch of `rows` rows; `inputs[i]` holds the values of
    /// [`Expr::columns`]`[i]` for those rows.
    pub fn eval(&self, inputs: &[Vector], rows: usize) -> Vector {
        eval(&self.root, inputs, rows)
    }

    /// Evaluates over one row of scalars (post-aggregators: result rows, not the scan).
    pub fn eval_row(&self, inputs: &[Scalar]) -> Scalar {
        let vectors: Vec<Vector> = inputs.iter().map(|s| Vector::repeat(s, 1)).collect();
        self.eval(&vectors, 1).get(0)
    }
}

fn resolve(text: &str, ast: &Ast, columns: &mut Vec<String>) -> Result<Node> {
    Ok(match ast {
        Ast::Literal(s) => Node::Const(s.clone()),
        Ast::Column(name) => {
            let slot = match columns.iter().position(|c| c == name) {
                Some(slot) => slot,
                None => {
                    columns.push(name.clone());
                    columns.len() - 1
                }
            };
            Node::Column(slot)
        }
        Ast::Unary(op, inner) => Node::Unary(*op, Box::new(resolve(text, inner, columns)?)),
        Ast::Binary(op, l, r) => Node::Binary(
            *op,
            Box::new(resolve(text, l, columns)?),
            Box::new(resolve(text, r, columns)?),
        ),
        Ast::Call(name, args) => {
            let func = Func::resolve(text, name, args)?;
            let nodes = args
                .iter()
                .map(|a| resolve(text, a, columns))
                .collect::<Result<Vec<_>>>()?;
            Node::Call(Box::new(func), nodes)
        }
    })
}

pub(crate) fn eval(node: &Node, inputs: &[Vector], n: usize) -> Vector {
    match node {
        Node::Const(s) => Vector::repeat(s, n),
        Node::Column(slot) => match inputs.get(*slot) {
            Some(v) => v.clone(),
            None => Vector::Long(vec![None; n]),
        },
        Node::Unary(UnaryOp::Neg, inner) => match eval(inner, inputs, n) {
            Vector::Long(v) => {
                Vector::Long(v.into_iter().map(|x| x.map(i64::wrapping_neg)).collect())
            }
            Vector::Double(v) => Vector::Double(v.into_iter().map(|x| x.map(|x| -x)).collect()),
            s => Vector::Double(s.to_doubles().into_iter().map(|x| x.map(|x| -x)).collect()),
        },
        Node::Unary(UnaryOp::Not, inner) => Vector::Long(
            eval(inner, inputs, n)
                .truth()
                .into_iter()
                .map(|x| x.map(|b| i64::from(!b)))
                .collect(),
        ),
        Node::Binary(op, l, r) => {
            let left = eval(l, inputs, n);
            let right = eval(r, inputs, n);
            binary(*op, left, right)
        }
        Node::Call(func, args) => func.eval(args, inputs, n),
    }
}

fn zip_with<A: Copy, B: Copy, C>(
    a: &[Option<A>],
    b: &[Option<B>],
    f: impl Fn(A, B) -> Option<C>,
) -> Vec<Option<C>> {
    a.iter()
        .zip(b)
        .map(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => f(*x, *y),
            _ => None,
        })
        .collect()
}

fn binary(op: BinaryOp, left: Vector, right: Vector) -> Vector {
    use BinaryOp::*;
    match op {
        And | Or => {
            let (a, b) = (left.truth(), right.truth());
            Vector::Long(
                a.iter()
                    .zip(&b)
                    .map(|(x, y)| {
                        let v = match (op, x, y) {
                            (And, Some(false), _) | (And, _, Some(false)) => Some(false),
                            (And, Some(true), Some(true)) => Some(true),
                            (Or, Some(true), _) | (Or, _, Some(true)) => Some(true),
                            (Or, Some(false), Some(false)) => Some(false),
                            _ => None,
                        };
                        v.map(i64::from)
                    })
                    .collect(),
            )
        }
        Lt | Le | Gt | Ge | Eq | Ne => {
            let test = move |o: std::cmp::Ordering| match op {
                Lt => o.is_lt(),
                Le => o.is_le(),
                Gt => o.is_gt(),
                Ge => o.is_ge(),
                Eq => o.is_eq(),
                _ => o.is_ne(),
            };
            let out = match (&left, &right) {
                (Vector::String(a), Vector::String(b)) => a
                    .iter()
                    .zip(b)
                    .map(|(x, y)| match (x, y) {
                        (Some(x), Some(y)) => Some(i64::from(test(x.as_str().cmp(y.as_str())))),
                        _ => None,
                    })
                    .collect(),
                (Vector::Long(a), Vector::Long(b)) => {
                    zip_with(a, b, |x, y| Some(i64::from(test(x.cmp(&y)))))
                }
                _ => zip_with(&left.to_doubles(), &right.to_doubles(), |x: f64, y: f64| {
                    x.partial_cmp(&y).map(|o| i64::from(test(o)))
                }),
            };
            Vector::Long(out)
        }
        Add if matches!(left, Vector::String(_)) || matches!(right, Vector::String(_)) => {
            let (a, b) = (left.into_strings(), right.into_strings());
            Vector::String(
                a.into_iter()
                    .zip(b)
                    .map(|(x, y)| match (x, y) {
                        (Some(mut x), Some(y)) => {
                            x.push_str(&y);
                            Some(x)
                        }
                        _ => None,
                    })
                    .collect(),
            )
        }
        Pow => Vector::Double(zip_with(&left.to_doubles(), &right.to_doubles(), |x, y| {
            Some(x.powf(y))
        })),
        _ => match (&left, &right) {
            (Vector::Long(a), Vector::Long(b)) => Vector::Long(zip_with(a, b, |x, y| match op {
                Add => Some(x.wrapping_add(y)),
                Sub => Some(x.wrapping_sub(y)),
                Mul => Some(x.wrapping_mul(y)),
                Div => (y != 0).then(|| x.wrapping_div(y)),
                _ => (y != 0).then(|| x.wrapping_rem(y)),
            })),
            _ => Vector::Double(zip_with(&left.to_doubles(), &right.to_doubles(), |x, y| {
                Some(match op {
                    Add => x + y,
                    Sub => x - y,
                    Mul => x * y,
                    Div => x / y,
                    _ => x % y,
                })
            })),
        },
    }
}

/// Writes `value` as the text Druid gives it in a string context.
pub fn scalar_text(value: &Scalar) -> Option<String> {
    match value {
        Scalar::Null => None,
        Scalar::Long(v) => Some(v.to_string()),
        Scalar::Double(v) => Some(grove_segment::row::format_double(*v)),
        Scalar::String(s) => Some(s.clone()),
    }
}

/// A scalar as JSON (doubles that JSON cannot hold as their text).
pub fn scalar_json(value: &Scalar) -> serde_json::Value {
    match value {
        Scalar::Null => serde_json::Value::Null,
        Scalar::Long(v) => (*v).into(),
        Scalar::Double(v) => crate::column::double_json(*v),
        Scalar::String(s) => serde_json::Value::String(s.clone()),
    }
}

/// A JSON value as a scalar (numbers as longs when integral and stored as such).
pub fn json_scalar(value: &serde_json::Value) -> Scalar {
    match value {
        serde_json::Value::Null => Scalar::Null,
        serde_json::Value::Bool(b) => Scalar::Long(i64::from(*b)),
        serde_json::Value::Number(n) => match n.as_i64() {
            Some(v) => Scalar::Long(v),
            None => Scalar::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        serde_json::Value::String(s) => Scalar::String(s.clone()),
        other => {
            let mut text = String::new();
            let _ = write!(text, "{other}");
            Scalar::String(text)
        }
    }
}

/// An error for a function called wrongly, naming the expression.
pub(crate) fn call_error(text: &str, message: impl std::fmt::Display) -> QueryError {
    QueryError::bad(format!("expression '{text}': {message}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, inputs: &[(&str, Vector)]) -> Vector {
        let e = Expr::compile(text).unwrap();
        let n = inputs.first().map_or(1, |(_, v)| v.len());
        let vectors: Vec<Vector> = e
            .columns()
            .iter()
            .map(|c| {
                inputs
                    .iter()
                    .find(|(name, _)| name == c)
                    .map(|(_, v)| v.clone())
                    .unwrap_or(Vector::Long(vec![None; n]))
            })
            .collect();
        e.eval(&vectors, n)
    }

    fn one(text: &str) -> Scalar {
        Expr::compile(text).unwrap().constant().unwrap()
    }

    #[test]
    fn arithmetic_keeps_longs_and_nulls() {
        assert_eq!(one("7 / 2"), Scalar::Long(3));
        assert_eq!(one("7.0 / 2"), Scalar::Double(3.5));
        assert_eq!(one("7 % 4 + 2 * 3"), Scalar::Long(9));
        assert_eq!(one("2 ^ 3"), Scalar::Double(8.0));
        assert_eq!(one("1 / 0"), Scalar::Null);
        assert_eq!(one("null + 1"), Scalar::Null);
        assert_eq!(one("'a' + 1"), Scalar::String("a1".into()));
        assert_eq!(one("-(3 - 5)"), Scalar::Long(2));
        let v = run(
            "x * 2 + y",
            &[
                ("x", Vector::Long(vec![Some(1), None, Some(3)])),
                ("y", Vector::Double(vec![Some(0.5), Some(1.0), None])),
            ],
        );
        assert_eq!(v, Vector::Double(vec![Some(2.5), None, None]));
    }

    #[test]
    fn comparisons_and_three_valued_logic() {
        assert_eq!(one("1 < 2"), Scalar::Long(1));
        assert_eq!(one("'b' > 'a'"), Scalar::Long(1));
        assert_eq!(one("'10' > 9"), Scalar::Long(1));
        assert_eq!(one("null == null"), Scalar::Null);
        assert_eq!(one("null && 0"), Scalar::Long(0));
        assert_eq!(one("null || 1"), Scalar::Long(1));
        assert_eq!(one("null && 1"), Scalar::Null);
        assert_eq!(one("!0"), Scalar::Long(1));
        assert_eq!(one("!'true'"), Scalar::Long(0));
    }

    #[test]
    fn types_follow_inputs_not_data() {
        let empty = run("x + 1", &[("x", Vector::Long(vec![None, None]))]);
        assert_eq!(empty.value_type(), ValueType::Long);
        let mixed = run(
            "if(x > 1, x, 0.5)",
            &[("x", Vector::Long(vec![Some(5), Some(0)]))],
        );
        assert_eq!(mixed, Vector::Double(vec![Some(5.0), Some(0.5)]));
    }
}
