//! SQL expressions over one datasource → [`Term`]s: columns, time floors, aggregate calls,
//! arithmetic and constants. Equal expressions lower to equal terms (aggregate calls are interned
//! in [`Lowering::aggregates`]), so the planner matches select items, `GROUP BY` keys, `HAVING`
//! and `ORDER BY` by comparing terms. Also the native JSON of aggregators and arithmetic
//! post-aggregators, and [`TableOperands`], which resolves `WHERE` operands to table columns.

use grove_segment::time::Period;
use serde_json::{Value, json};
use sqlparser::ast::{
    BinaryOperator, CeilFloorKind, DateTimeField, DuplicateTreatment, Expr, Function, FunctionArg,
    FunctionArgExpr, FunctionArguments,
};

use super::clauses::SelectQuery;
use super::filter::{self, Kind, Operand, Operands, object};
use super::scalar::{self, Native};
use super::value::{Literal, literal};
use super::{ColumnInfo, SqlType, TableInfo};
use crate::{QueryError, Result};

/// The time column.
pub(crate) const TIME_COLUMN: &str = "__time";

/// A lowered expression.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Term {
    /// A column other than `__time`.
    Column(ColumnInfo),
    /// `__time` bucketed by a granularity (`"none"` for plain `__time`).
    Time(Value),
    /// An aggregate call: an index into [`Lowering::aggregates`].
    Aggregate(usize),
    /// `+`, `-`, `*` or `/` (as Druid's arithmetic post-aggregator names them).
    Arithmetic {
        function: &'static str,
        left: Box<Term>,
        right: Box<Term>,
    },
    Constant(Literal),
    /// A native expression over aggregates (a post-aggregator), e.g. `CASE WHEN SUM(x) > 0 ...`
    /// or a BIGINT division of aggregates (long division, as Druid).
    PostExpression {
        text: String,
        sql_type: SqlType,
    },
    /// A native expression over columns: a virtual column once it is used as one
    /// ([`Lowering::intern`]).
    Expression {
        text: String,
        sql_type: SqlType,
    },
}

/// An `expression` virtual column the plan needs (an expression over columns).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct VirtualColumn {
    pub name: String,
    pub expression: String,
    pub sql_type: SqlType,
}

/// An aggregate function.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AggregateFunction {
    /// `COUNT(*)`.
    Count,
    /// `COUNT(column)`: rows where the column is not null.
    CountColumn,
    Sum,
    Min,
    Max,
    /// `AVG`: a sum, a non-null count and their quotient.
    Avg,
    /// `COUNT(DISTINCT x)`, `APPROX_COUNT_DISTINCT(x)`: a sketch.
    CountDistinct,
    /// `EARLIEST(x)`, `EARLIEST_BY(x, __time)`: the value of the earliest row.
    Earliest,
    /// `LATEST(x)`, `LATEST_BY(x, __time)`.
    Latest,
    /// `ANY_VALUE(x)`: some row's value (the earliest's, as Druid's `*Any` may give).
    AnyValue,
}

/// One aggregate call.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Aggregate {
    pub function: AggregateFunction,
    pub column: Option<ColumnInfo>,
    /// `FILTER (WHERE ...)`, as a native filter.
    pub filter: Option<Value>,
}

impl Aggregate {
    /// The SQL type of the aggregate's value.
    pub(crate) fn sql_type(&self) -> SqlType {
        match (self.function, &self.column) {
            (
                AggregateFunction::Sum
                | AggregateFunction::Min
                | AggregateFunction::Max
                | AggregateFunction::Earliest
                | AggregateFunction::Latest
                | AggregateFunction::AnyValue,
                Some(column),
            ) => column.sql_type.clone(),
            (AggregateFunction::Avg, _) => SqlType::Double,
            _ => SqlType::Bigint,
        }
    }

    /// Whether the aggregate of no rows is 0 (counts) rather than null.
    pub(crate) fn counts(&self) -> bool {
        matches!(
            self.function,
            AggregateFunction::Count
                | AggregateFunction::CountColumn
                | AggregateFunction::CountDistinct
        )
    }

    /// The native aggregators computing this aggregate as `name`, and the post-aggregator
    /// finishing it (AVG's quotient), if any.
    pub(crate) fn native(&self, name: &str) -> (Vec<Value>, Option<Value>) {
        let column = self.column.as_ref().map(|c| c.name.as_str());
        let not_null =
            column.map(|c| json!({"type": "not", "field": {"type": "null", "column": c}}));
        let typed = |long: &str, double: &str| match self.column.as_ref().map(|c| &c.sql_type) {
            Some(SqlType::Double) => double.to_string(),
            _ => long.to_string(),
        };
        let count = |name: &str, condition: Option<Value>| {
            self.filtered(condition, json!({"type": "count", "name": name}))
        };
        let field = |kind: String, name: &str| {
            self.filtered(
                None,
                json!({"type": kind, "name": name, "fieldName": column}),
            )
        };
        match self.function {
            AggregateFunction::Count => (vec![count(name, None)], None),
            AggregateFunction::CountColumn => (vec![count(name, not_null)], None),
            AggregateFunction::Sum => (vec![field(typed("longSum", "doubleSum"), name)], None),
            AggregateFunction::Min => (vec![field(typed("longMin", "doubleMin"), name)], None),
            AggregateFunction::Max => (vec![field(typed("longMax", "doubleMax"), name)], None),
            AggregateFunction::Earliest
            | AggregateFunction::Latest
            | AggregateFunction::AnyValue => {
                let prefix = match self.column.as_ref().map(|c| &c.sql_type) {
                    Some(SqlType::Varchar) => "string",
                    Some(SqlType::Double) => "double",
                    _ => "long",
                };
                let suffix = match self.function {
                    AggregateFunction::Latest => "Last",
                    AggregateFunction::AnyValue => "Any",
                    _ => "First",
                };
                (vec![field(format!("{prefix}{suffix}"), name)], None)
            }
            AggregateFunction::Avg => {
                let sum = format!("{name}:sum");
                let count_name = format!("{name}:count");
                let quotient = json!({
                    "type": "arithmetic",
                    "name": name,
                    "fn": "quotient",
                    "fields": [
                        {"type": "fieldAccess", "fieldName": sum},
                        {"type": "fieldAccess", "fieldName": count_name},
                    ],
                });
                (
                    vec![
                        field(typed("longSum", "doubleSum"), &sum),
                        count(&count_name, not_null),
                    ],
                    Some(quotient),
                )
            }
            AggregateFunction::CountDistinct => {
                let sketch = match self.column.as_ref().map(|c| &c.sql_type) {
                    Some(SqlType::Other(_)) => json!({
                        "type": "HLLSketchMerge", "name": name, "fieldName": column, "round": true,
                    }),
                    _ => json!({
                        "type": "cardinality", "name": name, "fields": [column], "round": true,
                    }),
                };
                (vec![self.filtered(None, sketch)], None)
            }
        }
    }

    /// `aggregator` restricted to rows passing the `FILTER` clause and `condition`.
    fn filtered(&self, condition: Option<Value>, aggregator: Value) -> Value {
        let filter = match (self.filter.clone(), condition) {
            (None, None) => return aggregator,
            (Some(f), None) | (None, Some(f)) => f,
            (Some(a), Some(b)) => {
                object([("type", json!("and")), ("fields", Value::Array(vec![a, b]))])
            }
        };
        object([
            ("type", json!("filtered")),
            ("filter", filter),
            ("aggregator", aggregator),
        ])
    }
}

/// Lowers the expressions of one query over `table`, interning aggregate calls.
pub(crate) struct Lowering<'a> {
    pub table: &'a TableInfo,
    pub query: &'a SelectQuery<'a>,
    pub aggregates: Vec<Aggregate>,
    /// Expressions over columns, as virtual columns `v0`, `v1`... (interned by expression).
    pub virtual_columns: Vec<VirtualColumn>,
    /// How deep the expression being lowered is nested, against [`TERM_DEPTH_MAX`].
    depth: usize,
}

/// How deeply arithmetic may nest. The parser bounds parentheses but not a flat chain like
/// `a + b + c + ...`, which is a left-deep tree as long as the chain.
pub(crate) const TERM_DEPTH_MAX: usize = 64;

fn unsupported<T>(construct: impl std::fmt::Display) -> Result<T> {
    Err(QueryError::unsupported(format!(
        "SQL: {construct} is not supported"
    )))
}

impl<'a> Lowering<'a> {
    pub(crate) fn new(table: &'a TableInfo, query: &'a SelectQuery<'a>) -> Lowering<'a> {
        Lowering {
            table,
            query,
            aggregates: Vec::new(),
            virtual_columns: Vec::new(),
            depth: 0,
        }
    }

    /// The native expression of `term`, and whether it reads aggregates and columns.
    pub(crate) fn native_of(&self, term: &Term) -> Result<(Native, bool, bool)> {
        Ok(match term {
            Term::Column(c) => (
                Native::new(scalar::identifier(&c.name), c.sql_type.clone()),
                false,
                true,
            ),
            Term::Time(g) if g == "none" => (
                Native::new(scalar::identifier(TIME_COLUMN), SqlType::Timestamp),
                false,
                true,
            ),
            Term::Time(g) => {
                let period = g.get("period").and_then(Value::as_str).unwrap_or("PT1S");
                (
                    Native::new(
                        format!("timestamp_floor(\"__time\", {})", scalar::string(period)),
                        SqlType::Timestamp,
                    ),
                    false,
                    true,
                )
            }
            Term::Constant(l) => (scalar::literal(l), false, false),
            Term::Aggregate(i) => (
                Native::new(
                    scalar::identifier(&aggregate_name(*i)),
                    self.aggregates[*i].sql_type(),
                ),
                true,
                false,
            ),
            Term::Arithmetic {
                function,
                left,
                right,
            } => {
                let (l, la, lc) = self.native_of(left)?;
                let (r, ra, rc) = self.native_of(right)?;
                let op = if *function == "quotient" {
                    "/"
                } else {
                    function
                };
                let l = if *function == "quotient" {
                    Native::new(format!("cast({}, 'DOUBLE')", l.text), SqlType::Double)
                } else {
                    l
                };
                (scalar::binary(op, l, r)?, la || ra, lc || rc)
            }
            Term::PostExpression { text, sql_type } => {
                (Native::new(text.clone(), sql_type.clone()), true, false)
            }
            Term::Expression { text, sql_type } => {
                (Native::new(text.clone(), sql_type.clone()), false, true)
            }
        })
    }

    /// `term` as a column: an expression becomes a virtual column (interned by its text).
    pub(crate) fn intern(&mut self, term: Term) -> Term {
        let Term::Expression { text, sql_type } = term else {
            return term;
        };
        if let Some(v) = self.virtual_columns.iter().find(|v| v.expression == text) {
            return Term::Column(ColumnInfo {
                name: v.name.clone(),
                sql_type: v.sql_type.clone(),
            });
        }
        let mut k = self.virtual_columns.len();
        let name = loop {
            let candidate = format!("v{k}");
            if self.find(&candidate).is_none() {
                break candidate;
            }
            k += 1;
        };
        self.virtual_columns.push(VirtualColumn {
            name: name.clone(),
            expression: text,
            sql_type: sql_type.clone(),
        });
        Term::Column(ColumnInfo { name, sql_type })
    }

    /// A term for a translated expression: a virtual column over columns, a post-aggregator
    /// expression over aggregates, or a constant.
    fn term_of(&mut self, native: Native, aggregates: bool, columns: bool) -> Result<Term> {
        // The expression runs as Druid's native expression language: check it now, so a bad
        // period or pattern is an error of the SQL, before anything runs.
        crate::expr::Expr::compile(&native.text)
            .map_err(|e| QueryError::bad(format!("SQL: {}", e.message)))?;
        match (aggregates, columns) {
            (true, true) => unsupported(format!(
                "the expression {} mixing columns and aggregates",
                native.text
            )),
            (true, false) => Ok(Term::PostExpression {
                text: native.text,
                sql_type: native.sql_type,
            }),
            (false, _) => Ok(Term::Expression {
                text: native.text,
                sql_type: native.sql_type,
            }),
        }
    }

    /// Lowers every argument and translates a scalar call over them.
    fn scalar_call(&mut self, name: &str, args: &[&Expr]) -> Result<Term> {
        let mut natives = Vec::with_capacity(args.len());
        let (mut aggregates, mut columns) = (false, false);
        for arg in args {
            let term = self.lower(arg)?;
            let (n, a, c) = self.native_of(&term)?;
            aggregates |= a;
            columns |= c;
            natives.push(n);
        }
        let native = scalar::call(name, natives)?;
        self.term_of(native, aggregates, columns)
    }

    /// Lowers `expr` and returns its native expression with its flags.
    fn native(&mut self, expr: &Expr) -> Result<(Native, bool, bool)> {
        let term = self.lower(expr)?;
        self.native_of(&term)
    }

    /// The plan's virtual columns as native JSON.
    pub(crate) fn virtual_columns_json(&self) -> Option<Value> {
        if self.virtual_columns.is_empty() {
            return None;
        }
        Some(Value::Array(
            self.virtual_columns
                .iter()
                .map(|v| {
                    json!({
                        "type": "expression",
                        "name": v.name,
                        "expression": v.expression,
                        "outputType": match v.sql_type {
                            SqlType::Varchar => "STRING",
                            SqlType::Double => "DOUBLE",
                            _ => "LONG",
                        },
                    })
                })
                .collect(),
        ))
    }

    /// The table column `expr` references, `None` if `expr` is not a column reference.
    pub(crate) fn column(&self, expr: &Expr) -> Result<Option<&'a ColumnInfo>> {
        match self.query.column_name(expr)? {
            None => Ok(None),
            Some(name) => self
                .find(name)
                .map(Some)
                .ok_or_else(|| QueryError::bad(format!("Column '{name}' not found in any table"))),
        }
    }

    /// The table column named `name`.
    pub(crate) fn find(&self, name: &str) -> Option<&'a ColumnInfo> {
        self.table.columns.iter().find(|c| c.name == name)
    }

    pub(crate) fn lower(&mut self, expr: &Expr) -> Result<Term> {
        if self.depth >= TERM_DEPTH_MAX {
            return unsupported(format!(
                "an expression nested more than {TERM_DEPTH_MAX} levels deep"
            ));
        }
        self.depth += 1;
        let term = self.lower_nested(expr);
        self.depth -= 1;
        term
    }

    fn lower_nested(&mut self, expr: &Expr) -> Result<Term> {
        if let Some(column) = self.column(expr)? {
            return Ok(if column.name == TIME_COLUMN {
                Term::Time(json!("none"))
            } else {
                Term::Column(column.clone())
            });
        }
        if let Some(value) = literal(expr)? {
            return Ok(Term::Constant(value));
        }
        match expr {
            Expr::Nested(inner) => self.lower(inner),
            Expr::BinaryOp { left, op, right } => {
                let arithmetic = match op {
                    BinaryOperator::Plus => Some("+"),
                    BinaryOperator::Minus => Some("-"),
                    BinaryOperator::Multiply => Some("*"),
                    BinaryOperator::Divide => Some("quotient"),
                    _ => None,
                };
                let left_term = self.lower(left)?;
                let right_term = self.lower(right)?;
                let (l, la, lc) = self.native_of(&left_term)?;
                let (r, ra, rc) = self.native_of(&right_term)?;
                if let Some(function) = arithmetic
                    && (la || ra)
                    && !(lc || rc)
                {
                    // Over aggregates: BIGINT / BIGINT divides as longs (Druid's SQL); other
                    // arithmetic is a floating-point post-aggregator.
                    if function == "quotient"
                        && l.sql_type == SqlType::Bigint
                        && r.sql_type == SqlType::Bigint
                    {
                        return self.term_of(scalar::binary("/", l, r)?, true, false);
                    }
                    return Ok(Term::Arithmetic {
                        function,
                        left: Box::new(left_term),
                        right: Box::new(right_term),
                    });
                }
                let op_text = match op {
                    BinaryOperator::Plus => "+",
                    BinaryOperator::Minus => "-",
                    BinaryOperator::Multiply => "*",
                    BinaryOperator::Divide => "/",
                    BinaryOperator::Modulo => "%",
                    BinaryOperator::StringConcat => "||",
                    BinaryOperator::Eq => "=",
                    BinaryOperator::NotEq => "<>",
                    BinaryOperator::Lt => "<",
                    BinaryOperator::LtEq => "<=",
                    BinaryOperator::Gt => ">",
                    BinaryOperator::GtEq => ">=",
                    BinaryOperator::And => "AND",
                    BinaryOperator::Or => "OR",
                    other => return unsupported(format!("operator {other} in an expression")),
                };
                let native = scalar::binary(op_text, l, r)?;
                self.term_of(native, la || ra, lc || rc)
            }
            Expr::UnaryOp { op, expr: inner } => {
                let (n, a, c) = self.native(inner)?;
                let text = match op {
                    sqlparser::ast::UnaryOperator::Not => format!("(!{})", n.text),
                    sqlparser::ast::UnaryOperator::Minus => format!("(-{})", n.text),
                    sqlparser::ast::UnaryOperator::Plus => n.text.clone(),
                    other => return unsupported(format!("operator {other}")),
                };
                let t = if matches!(op, sqlparser::ast::UnaryOperator::Not) {
                    SqlType::Bigint
                } else {
                    n.sql_type
                };
                self.term_of(Native::new(text, t), a, c)
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let (n, a, c) = self.native(inner)?;
                let f = if matches!(expr, Expr::IsNull(_)) {
                    "isnull"
                } else {
                    "notnull"
                };
                self.term_of(
                    Native::new(format!("{f}({})", n.text), SqlType::Bigint),
                    a,
                    c,
                )
            }
            Expr::Floor {
                expr: inner,
                field: CeilFloorKind::DateTimeField(unit),
            }
            | Expr::Ceil {
                expr: inner,
                field: CeilFloorKind::DateTimeField(unit),
            } => {
                let period = match unit {
                    DateTimeField::Second => "PT1S",
                    DateTimeField::Minute => "PT1M",
                    DateTimeField::Hour => "PT1H",
                    DateTimeField::Day => "P1D",
                    DateTimeField::Week(None) => "P1W",
                    DateTimeField::Month => "P1M",
                    DateTimeField::Quarter => "P3M",
                    DateTimeField::Year => "P1Y",
                    other => return unsupported(format!("FLOOR/CEIL to {other}")),
                };
                let floor = matches!(expr, Expr::Floor { .. });
                if floor && self.column(inner)?.is_some_and(|c| c.name == TIME_COLUMN) {
                    return Ok(time_floor(period));
                }
                let (n, a, c) = self.native(inner)?;
                let f = if floor {
                    "timestamp_floor"
                } else {
                    "timestamp_ceil"
                };
                self.term_of(
                    Native::new(format!("{f}({}, '{period}')", n.text), SqlType::Timestamp),
                    a,
                    c,
                )
            }
            Expr::Floor { expr: inner, .. } => self.scalar_call("FLOOR", &[inner]),
            Expr::Ceil { expr: inner, .. } => self.scalar_call("CEIL", &[inner]),
            Expr::Function(function) => self.function(function),
            Expr::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let (mut a, mut c) = (false, false);
                let mut parts = Vec::new();
                let mut result_type: Option<SqlType> = None;
                let subject = match operand {
                    Some(o) => {
                        let (n, oa, oc) = self.native(o)?;
                        a |= oa;
                        c |= oc;
                        Some(n.text)
                    }
                    None => None,
                };
                for when in conditions {
                    let (cond, ca, cc) = self.native(&when.condition)?;
                    let (result, ra, rc) = self.native(&when.result)?;
                    a |= ca || ra;
                    c |= cc || rc;
                    if result.text != "null" {
                        result_type = Some(match &result_type {
                            None => result.sql_type.clone(),
                            Some(t) => scalar::widen(t, &result.sql_type),
                        });
                    }
                    parts.push(cond.text);
                    parts.push(result.text);
                }
                if let Some(e) = else_result {
                    let (n, ea, ec) = self.native(e)?;
                    a |= ea;
                    c |= ec;
                    if n.text != "null" {
                        result_type = Some(match &result_type {
                            None => n.sql_type.clone(),
                            Some(t) => scalar::widen(t, &n.sql_type),
                        });
                    }
                    parts.push(n.text);
                }
                let text = match subject {
                    Some(s) => format!("case_simple({s}, {})", parts.join(", ")),
                    None => format!("case_searched({})", parts.join(", ")),
                };
                self.term_of(
                    Native::new(text, result_type.unwrap_or(SqlType::Varchar)),
                    a,
                    c,
                )
            }
            Expr::Cast {
                expr: inner,
                data_type,
                format: None,
                ..
            } => {
                let to = sql_type_of(data_type)?;
                let (n, a, c) = self.native(inner)?;
                self.term_of(scalar::cast(n, &to)?, a, c)
            }
            Expr::Substring {
                expr: inner,
                substring_from,
                substring_for,
                ..
            } => {
                let mut args: Vec<&Expr> = vec![inner];
                let one = Expr::value(sqlparser::ast::Value::Number("1".into(), false));
                args.push(substring_from.as_deref().unwrap_or(&one));
                if let Some(f) = substring_for {
                    args.push(f);
                }
                self.scalar_call("SUBSTRING", &args)
            }
            Expr::Trim {
                expr: inner,
                trim_where,
                trim_what,
                trim_characters: None,
            } => {
                let name = match trim_where {
                    Some(sqlparser::ast::TrimWhereField::Leading) => "LTRIM",
                    Some(sqlparser::ast::TrimWhereField::Trailing) => "RTRIM",
                    _ => "TRIM",
                };
                match trim_what {
                    Some(what) => self.scalar_call(name, &[inner, what]),
                    None => self.scalar_call(name, &[inner]),
                }
            }
            Expr::Position { expr: what, r#in } => self.scalar_call("STRPOS", &[r#in, what]),
            Expr::Extract {
                field, expr: inner, ..
            } => {
                let unit = match field {
                    DateTimeField::Epoch => "EPOCH",
                    DateTimeField::Millisecond | DateTimeField::Milliseconds => "MILLISECOND",
                    DateTimeField::Second => "SECOND",
                    DateTimeField::Minute => "MINUTE",
                    DateTimeField::Hour => "HOUR",
                    DateTimeField::Day => "DAY",
                    DateTimeField::Dow | DateTimeField::DayOfWeek => "DOW",
                    DateTimeField::Isodow => "ISODOW",
                    DateTimeField::Doy | DateTimeField::DayOfYear => "DOY",
                    DateTimeField::Week(None) => "WEEK",
                    DateTimeField::Month => "MONTH",
                    DateTimeField::Quarter => "QUARTER",
                    DateTimeField::Year => "YEAR",
                    DateTimeField::Isoyear => "ISOYEAR",
                    DateTimeField::Decade => "DECADE",
                    DateTimeField::Century => "CENTURY",
                    DateTimeField::Millennium => "MILLENNIUM",
                    other => return unsupported(format!("EXTRACT({other})")),
                };
                let (n, a, c) = self.native(inner)?;
                self.term_of(scalar::extract(unit, n), a, c)
            }
            Expr::Like {
                negated,
                any: false,
                expr: inner,
                pattern,
                escape_char,
            } => {
                let (n, a, c) = self.native(inner)?;
                let Some(Literal::String(p)) = literal(pattern)? else {
                    return unsupported("LIKE with a pattern that is not a string constant");
                };
                let escape = match escape_char {
                    Some(e) => match literal(e)? {
                        Some(Literal::String(e)) => format!(", {}", scalar::string(&e)),
                        _ => return unsupported("this ESCAPE"),
                    },
                    None => String::new(),
                };
                let text = format!("like({}, {}{escape})", n.text, scalar::string(&p));
                let text = if *negated { format!("(!{text})") } else { text };
                self.term_of(Native::new(text, SqlType::Bigint), a, c)
            }
            Expr::Cast { .. } => unsupported("CAST with a FORMAT"),
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                unsupported("subqueries")
            }
            other => unsupported(format!("expression {other}")),
        }
    }

    fn time_argument(&self, expr: &Expr, function: &str) -> Result<()> {
        match self.column(expr)? {
            Some(column) if column.name == TIME_COLUMN => Ok(()),
            _ => unsupported(format!("{function} of {expr} (only of __time)")),
        }
    }

    fn function(&mut self, function: &Function) -> Result<Term> {
        let name = function.name.to_string().to_ascii_uppercase();
        if function.over.is_some() {
            return unsupported("window functions");
        }
        if !function.within_group.is_empty() || function.null_treatment.is_some() {
            return unsupported(format!("{name} with WITHIN GROUP or null treatment"));
        }
        let (distinct, args) = match &function.args {
            FunctionArguments::List(list) => {
                if !list.clauses.is_empty() {
                    return unsupported(format!("clauses inside {name}(...)"));
                }
                let args = list
                    .args
                    .iter()
                    .map(|arg| match arg {
                        FunctionArg::Unnamed(arg) => Ok(arg),
                        _ => unsupported("named function arguments"),
                    })
                    .collect::<Result<Vec<_>>>()?;
                (
                    matches!(list.duplicate_treatment, Some(DuplicateTreatment::Distinct)),
                    args,
                )
            }
            FunctionArguments::None => (false, Vec::new()),
            FunctionArguments::Subquery(_) => return unsupported("subqueries"),
        };
        let exprs = || -> Result<Vec<&Expr>> {
            args.iter()
                .map(|a| match a {
                    FunctionArgExpr::Expr(e) => Ok(e),
                    _ => unsupported(format!("{name} with a wildcard argument")),
                })
                .collect()
        };
        if name == "TIME_FLOOR" {
            if function.filter.is_some() || distinct {
                return unsupported("TIME_FLOOR with FILTER or DISTINCT");
            }
            // On `__time` in UTC without an origin: the query's granularity; otherwise an
            // expression (time zones, origins, floors of other timestamps).
            match self.time_floor_function(&args) {
                Ok(term) => return Ok(term),
                Err(e) if e.kind == crate::ErrorKind::BadQuery => return Err(e),
                Err(_) => return self.scalar_call(&name, &exprs()?),
            }
        }
        let aggregate = match name.as_str() {
            "COUNT" if distinct => AggregateFunction::CountDistinct,
            "COUNT" => match args.as_slice() {
                [FunctionArgExpr::Wildcard] => AggregateFunction::Count,
                _ => AggregateFunction::CountColumn,
            },
            "SUM" => AggregateFunction::Sum,
            "MIN" => AggregateFunction::Min,
            "MAX" => AggregateFunction::Max,
            "AVG" => AggregateFunction::Avg,
            "APPROX_COUNT_DISTINCT" | "APPROX_COUNT_DISTINCT_DS_HLL" => {
                AggregateFunction::CountDistinct
            }
            "EARLIEST" | "EARLIEST_BY" => AggregateFunction::Earliest,
            "LATEST" | "LATEST_BY" => AggregateFunction::Latest,
            "ANY_VALUE" => AggregateFunction::AnyValue,
            "APPROX_QUANTILE" | "APPROX_QUANTILE_DS" | "APPROX_QUANTILE_FIXED_BUCKETS" => {
                return unsupported(format!("{name} (quantile sketches)"));
            }
            _ => {
                if function.filter.is_some() || distinct {
                    return unsupported(format!("{name} with FILTER or DISTINCT"));
                }
                return self.scalar_call(&name, &exprs()?);
            }
        };
        if distinct && aggregate != AggregateFunction::CountDistinct {
            return unsupported(format!("{name}(DISTINCT ...)"));
        }
        let column = match (aggregate, args.as_slice()) {
            (AggregateFunction::Count, _) => None,
            (_, [FunctionArgExpr::Expr(arg)]) => Some(self.aggregate_column(&name, arg)?),
            (
                AggregateFunction::Earliest
                | AggregateFunction::Latest
                | AggregateFunction::AnyValue,
                [FunctionArgExpr::Expr(arg), FunctionArgExpr::Expr(second)],
            ) => {
                if name.ends_with("_BY") {
                    if self.column(second)?.is_none_or(|c| c.name != TIME_COLUMN) {
                        return unsupported(format!(
                            "{name} by {second} (only by __time: first/last aggregators read \
                             __time)"
                        ));
                    }
                } else if !matches!(literal(second)?, Some(Literal::Long(_))) {
                    return Err(QueryError::bad(format!(
                        "SQL: the second argument of {name} is a byte limit (an integer)"
                    )));
                }
                Some(self.aggregate_column(&name, arg)?)
            }
            _ => {
                return Err(QueryError::bad(format!(
                    "SQL: {name} takes one column argument"
                )));
            }
        };
        check_aggregate_type(&name, aggregate, column.as_ref())?;
        let filter = match &function.filter {
            Some(condition) => Some(filter::filter(
                condition,
                &mut TableOperands { lowering: self },
            )?),
            None => None,
        };
        let call = Aggregate {
            function: aggregate,
            column,
            filter,
        };
        let index = match self.aggregates.iter().position(|a| *a == call) {
            Some(index) => index,
            None => {
                self.aggregates.push(call);
                self.aggregates.len() - 1
            }
        };
        Ok(Term::Aggregate(index))
    }

    /// The column an aggregate reads: a table column, or a virtual column for an expression.
    fn aggregate_column(&mut self, function: &str, arg: &Expr) -> Result<ColumnInfo> {
        if let Some(column) = self.column(arg)? {
            return Ok(column.clone());
        }
        let term = match self.lower(arg)? {
            Term::Time(g) if g != "none" => {
                let (n, _, _) = self.native_of(&Term::Time(g))?;
                self.term_of(n, false, true)?
            }
            other => other,
        };
        match self.intern(term) {
            Term::Column(column) => Ok(column),
            _ => unsupported(format!(
                "{function} of {arg} (aggregate a column or an expression over columns)"
            )),
        }
    }

    /// `TIME_FLOOR(__time, 'period' [, origin [, 'UTC']])`, origin `NULL` only.
    fn time_floor_function(&self, args: &[&FunctionArgExpr]) -> Result<Term> {
        let exprs = args
            .iter()
            .map(|arg| match arg {
                FunctionArgExpr::Expr(e) => Ok(e),
                _ => Err(QueryError::bad("SQL: bad TIME_FLOOR argument")),
            })
            .collect::<Result<Vec<_>>>()?;
        if !(2..=4).contains(&exprs.len()) {
            return Err(QueryError::bad(
                "SQL: TIME_FLOOR takes (__time, period [, origin [, time zone]])",
            ));
        }
        self.time_argument(exprs[0], "TIME_FLOOR")?;
        let Some(Literal::String(period)) = literal(exprs[1])? else {
            return Err(QueryError::bad(
                "SQL: the TIME_FLOOR period must be a string like 'PT1H'",
            ));
        };
        Period::parse(&period)
            .map_err(|e| QueryError::bad(format!("SQL: TIME_FLOOR period '{period}': {e}")))?;
        if let Some(origin) = exprs.get(2)
            && literal(origin)? != Some(Literal::Null)
        {
            return unsupported("a TIME_FLOOR origin");
        }
        if let Some(zone) = exprs.get(3) {
            match literal(zone)? {
                Some(Literal::String(z)) if z == "UTC" || z == "Etc/UTC" => {}
                _ => return unsupported(format!("TIME_FLOOR in time zone {zone} (only UTC)")),
            }
        }
        Ok(time_floor(&period))
    }

    /// The SQL type of a term's value.
    pub(crate) fn sql_type(&self, term: &Term) -> SqlType {
        match term {
            Term::Column(column) => column.sql_type.clone(),
            Term::Time(_) => SqlType::Timestamp,
            Term::Aggregate(index) => self.aggregates[*index].sql_type(),
            Term::Arithmetic { .. } => SqlType::Double,
            Term::Constant(value) => value.sql_type(),
            Term::PostExpression { sql_type, .. } | Term::Expression { sql_type, .. } => {
                sql_type.clone()
            }
        }
    }

    /// The native aggregators of every interned aggregate (`a0`, `a1`...), and the
    /// post-aggregators that finish some of them.
    pub(crate) fn native_aggregations(&self) -> (Vec<Value>, Vec<Value>) {
        let mut aggregators = Vec::new();
        let mut post_aggregators = Vec::new();
        for (index, aggregate) in self.aggregates.iter().enumerate() {
            let (native, post) = aggregate.native(&aggregate_name(index));
            aggregators.extend(native);
            post_aggregators.extend(post);
        }
        (aggregators, post_aggregators)
    }
}

/// The native output name of aggregate `index`.
pub(crate) fn aggregate_name(index: usize) -> String {
    format!("a{index}")
}

fn time_floor(period: &str) -> Term {
    Term::Time(json!({"type": "period", "period": period}))
}

fn check_aggregate_type(
    name: &str,
    function: AggregateFunction,
    column: Option<&ColumnInfo>,
) -> Result<()> {
    let Some(column) = column else { return Ok(()) };
    let allowed = match function {
        AggregateFunction::Sum | AggregateFunction::Avg => {
            matches!(column.sql_type, SqlType::Bigint | SqlType::Double)
        }
        AggregateFunction::Min | AggregateFunction::Max => matches!(
            column.sql_type,
            SqlType::Bigint | SqlType::Double | SqlType::Timestamp
        ),
        AggregateFunction::CountDistinct => match &column.sql_type {
            SqlType::Other(complex) => complex.contains("HLLSketch"),
            _ => true,
        },
        AggregateFunction::Count | AggregateFunction::CountColumn => true,
        AggregateFunction::Earliest | AggregateFunction::Latest | AggregateFunction::AnyValue => {
            !matches!(column.sql_type, SqlType::Other(_))
        }
    };
    if allowed {
        Ok(())
    } else {
        Err(QueryError::bad(format!(
            "SQL: cannot apply {name} to column '{}' of type {}",
            column.name,
            column.sql_type.name()
        )))
    }
}

/// The native post-aggregator field computing `term`, whose leaves are aggregates and numeric
/// constants. Recursion is bounded: terms nest at most [`TERM_DEPTH_MAX`] deep.
pub(crate) fn post_aggregator_field(term: &Term) -> Result<Value> {
    match term {
        Term::Aggregate(index) => {
            Ok(json!({"type": "fieldAccess", "fieldName": aggregate_name(*index)}))
        }
        Term::Constant(value @ (Literal::Long(_) | Literal::Double(_))) => {
            Ok(json!({"type": "constant", "name": "", "value": value.to_json()}))
        }
        Term::Arithmetic {
            function,
            left,
            right,
        } => Ok(object([
            ("type", json!("arithmetic")),
            ("name", json!("")),
            ("fn", json!(function)),
            (
                "fields",
                Value::Array(vec![
                    post_aggregator_field(left)?,
                    post_aggregator_field(right)?,
                ]),
            ),
        ])),
        Term::PostExpression { text, .. } => {
            Ok(json!({"type": "expression", "name": "", "expression": text}))
        }
        _ => unsupported("arithmetic on anything but aggregates and numbers"),
    }
}

/// Resolves `WHERE` and `FILTER` operands: columns of the table.
pub(crate) struct TableOperands<'l, 'a> {
    pub lowering: &'l mut Lowering<'a>,
}

impl Operands for TableOperands<'_, '_> {
    fn operand(&mut self, expr: &Expr) -> Result<Operand> {
        if let Some(column) = self.lowering.column(expr)? {
            return Ok(Operand {
                name: column.name.clone(),
                kind: Kind::of(&column.sql_type),
            });
        }
        // An expression over columns: compared through its virtual column.
        let column = self.lowering.aggregate_column("a condition", expr)?;
        Ok(Operand {
            name: column.name,
            kind: Kind::of(&column.sql_type),
        })
    }

    fn expression(&mut self, expr: &Expr) -> Result<Value> {
        let (native, aggregates, _) = self.lowering.native(expr)?;
        if aggregates {
            return Err(QueryError::bad(format!(
                "SQL: aggregate functions are not allowed in WHERE ({expr})"
            )));
        }
        Ok(json!({"type": "expression", "expression": native.text}))
    }

    fn in_lists(&self) -> &[Vec<Literal>] {
        self.lowering.query.in_lists
    }
}

/// The SQL type a `CAST` names.
pub(crate) fn sql_type_of(data_type: &sqlparser::ast::DataType) -> Result<SqlType> {
    use sqlparser::ast::DataType as D;
    Ok(match data_type {
        D::BigInt(_) | D::Int(_) | D::Integer(_) | D::SmallInt(_) | D::TinyInt(_) => {
            SqlType::Bigint
        }
        D::Double(_)
        | D::DoublePrecision
        | D::Float(_)
        | D::Real
        | D::Decimal(_)
        | D::Numeric(_) => SqlType::Double,
        D::Varchar(_) | D::Char(_) | D::Text | D::String(_) | D::CharacterVarying(_) => {
            SqlType::Varchar
        }
        D::Timestamp(..) | D::Datetime(_) | D::Date => SqlType::Timestamp,
        other => return unsupported(format!("CAST to {other}")),
    })
}
