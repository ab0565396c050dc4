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
                AggregateFunction::Sum | AggregateFunction::Min | AggregateFunction::Max,
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
            depth: 0,
        }
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
                let function = match op {
                    BinaryOperator::Plus => "+",
                    BinaryOperator::Minus => "-",
                    BinaryOperator::Multiply => "*",
                    BinaryOperator::Divide => "quotient",
                    other => return unsupported(format!("operator {other} in an expression")),
                };
                Ok(Term::Arithmetic {
                    function,
                    left: Box::new(self.lower(left)?),
                    right: Box::new(self.lower(right)?),
                })
            }
            Expr::Floor {
                expr: inner,
                field: CeilFloorKind::DateTimeField(unit),
            } => {
                self.time_argument(inner, "FLOOR")?;
                let period = match unit {
                    DateTimeField::Second => "PT1S",
                    DateTimeField::Minute => "PT1M",
                    DateTimeField::Hour => "PT1H",
                    DateTimeField::Day => "P1D",
                    DateTimeField::Week(None) => "P1W",
                    DateTimeField::Month => "P1M",
                    DateTimeField::Quarter => "P3M",
                    DateTimeField::Year => "P1Y",
                    other => return unsupported(format!("FLOOR to {other}")),
                };
                Ok(time_floor(period))
            }
            Expr::Function(function) => self.function(function),
            Expr::Case { .. } => unsupported("CASE"),
            Expr::Cast { .. } => unsupported("CAST"),
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
        if name == "TIME_FLOOR" {
            if function.filter.is_some() || distinct {
                return unsupported("TIME_FLOOR with FILTER or DISTINCT");
            }
            return self.time_floor_function(&args);
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
            _ => return unsupported(format!("function {name}")),
        };
        if distinct && aggregate != AggregateFunction::CountDistinct {
            return unsupported(format!("{name}(DISTINCT ...)"));
        }
        let column = match (aggregate, args.as_slice()) {
            (AggregateFunction::Count, _) => None,
            (_, [FunctionArgExpr::Expr(arg)]) => Some(self.aggregate_column(&name, arg)?),
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

    fn aggregate_column(&self, function: &str, arg: &Expr) -> Result<ColumnInfo> {
        match self.column(arg)? {
            Some(column) => Ok(column.clone()),
            None => unsupported(format!(
                "{function} of the expression {arg} (aggregate a column)"
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
        _ => unsupported("arithmetic on anything but aggregates and numbers"),
    }
}

/// Resolves `WHERE` and `FILTER` operands: columns of the table.
pub(crate) struct TableOperands<'l, 'a> {
    pub lowering: &'l Lowering<'a>,
}

impl Operands for TableOperands<'_, '_> {
    fn operand(&mut self, expr: &Expr) -> Result<Operand> {
        match self.lowering.column(expr)? {
            Some(column) => Ok(Operand {
                name: column.name.clone(),
                kind: Kind::of(&column.sql_type),
            }),
            None => unsupported(format!(
                "the condition operand {expr} (conditions compare a column with constants)"
            )),
        }
    }

    fn in_lists(&self) -> &[Vec<Literal>] {
        self.lowering.query.in_lists
    }
}
