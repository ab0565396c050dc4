//! SQL: parsed with `sqlparser`, planned into a Druid native query, run by [`crate::run_native`]
//! and shaped into rows. System tables (`INFORMATION_SCHEMA.TABLES`, `INFORMATION_SCHEMA.COLUMNS`,
//! `sys.segments`) are answered from the [`Catalog`].
//!
//! The pipeline is three pure steps and one call into the engine:
//! 1. [`plan`]: literal `IN` lists are lifted out of the text (`in_list.rs`) and `?` parameters
//!    bound at token level (`parse.rs`); the one `SELECT` is checked for constructs Grove does not
//!    run (joins, subqueries, window functions, set operations...: `clauses.rs`); expressions are
//!    lowered to terms (`lower.rs`) and planned as Druid's SQL planner does (`native.rs`,
//!    `grouping.rs`): aggregates without `GROUP BY` → `timeseries` with granularity `all` (or
//!    `timeBoundary` for `MIN`/`MAX(__time)` alone); a single time floor → `timeseries` with that
//!    granularity; one string dimension ordered by an aggregate with a `LIMIT` → `topN`; other
//!    groupings → `groupBy`; no aggregates → `scan`. `WHERE` becomes a native filter (`filter.rs`),
//!    with top-level `__time` ranges moved into the query's `intervals`.
//! 2. [`crate::run_native`] runs the native JSON (system tables skip this step: `system.rs`).
//! 3. [`shape`]: the Druid-shaped result becomes [`SqlResult`] rows, mapping internal output names
//!    (`d0`, `a0`, `p0`) back to the SQL column names and types.
//!
//! Invariants: planning never looks at data or a clock (`CURRENT_TIMESTAMP` comes from the
//! `sqlCurrentTimestamp` context parameter), so a plan is a pure function of the SQL, its
//! parameters, its context and the catalog's schema; every output column of a plan has exactly
//! one source in the native result; planning is linear in the size of the SQL text (a
//! 10,000-value `IN` list is one flat loop, never 10,000 parsed expressions); recursion is
//! bounded by the parser's nesting limit, `lower.rs`'s term depth and a token limit, never by
//! list lengths. Unsupported SQL is an error naming the construct (`SQL: JOIN is not
//! supported`), never a silently different answer.

mod clauses;
mod filter;
mod grouping;
mod in_list;
mod lower;
mod native;
mod parse;
mod scalar;
mod shape;
mod system;
mod value;

use serde::{Deserialize, Serialize};

use crate::{QueryControl, QueryError, Result, SegmentProvider};

pub use native::{NativeKind, NativePlan, Source};
pub use shape::shape;
pub use system::{SystemPlan, SystemTable};

/// What SQL can see: tables (datasources) with their columns, and segments for `sys.segments`.
pub trait Catalog: Send + Sync {
    /// Every datasource, sorted by name.
    fn tables(&self) -> Vec<TableInfo>;
    /// Every used segment, for `sys.segments`.
    fn segments(&self) -> Vec<SegmentInfo>;
}

#[derive(Clone, Debug, PartialEq)]
pub struct TableInfo {
    pub name: String,
    /// `__time` first, then dimensions, then metrics.
    pub columns: Vec<ColumnInfo>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ColumnInfo {
    pub name: String,
    pub sql_type: SqlType,
}

/// SQL column types as Druid reports them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SqlType {
    Timestamp,
    Varchar,
    Bigint,
    Double,
    /// A complex column (e.g. `COMPLEX<HLLSketch>`), named as Druid names it.
    Other(String),
}

impl SqlType {
    /// The name `INFORMATION_SCHEMA.COLUMNS.DATA_TYPE` reports.
    pub fn name(&self) -> &str {
        match self {
            SqlType::Timestamp => "TIMESTAMP",
            SqlType::Varchar => "VARCHAR",
            SqlType::Bigint => "BIGINT",
            SqlType::Double => "DOUBLE",
            SqlType::Other(name) => name,
        }
    }
}

/// One row of `sys.segments`.
#[derive(Clone, Debug, PartialEq)]
pub struct SegmentInfo {
    pub segment_id: String,
    pub datasource: String,
    /// ISO-8601.
    pub start: String,
    pub end: String,
    pub version: String,
    pub partition_num: i64,
    pub num_rows: i64,
    pub size: i64,
    pub is_published: bool,
    pub is_available: bool,
}

/// A SQL request as `POST /druid/v2/sql` carries it.
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SqlRequest {
    pub query: String,
    #[serde(default)]
    pub parameters: Vec<SqlParameter>,
    #[serde(default)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// A `?` parameter: `{"type": "VARCHAR", "value": "x"}`.
#[derive(Clone, Debug, Deserialize, Serialize)]
pub struct SqlParameter {
    #[serde(rename = "type")]
    pub sql_type: String,
    pub value: serde_json::Value,
}

/// A SQL result: column names and types, and rows of JSON values in column order.
#[derive(Clone, Debug, PartialEq)]
pub struct SqlResult {
    pub columns: Vec<ColumnInfo>,
    pub rows: Vec<Vec<serde_json::Value>>,
}

/// A planned SQL query: a native query for a datasource, or a query over a system table.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    Native(NativePlan),
    System(SystemPlan),
    /// `UNION ALL` at the top level: each branch planned on its own, rows concatenated.
    Union(Vec<Plan>),
    /// Rows known at planning: `SELECT` of constants without `FROM`, `EXPLAIN PLAN FOR`.
    Rows(SqlResult),
}

impl Plan {
    /// The result's columns, in order.
    pub fn columns(&self) -> &[ColumnInfo] {
        match self {
            Plan::Native(plan) => &plan.columns,
            Plan::System(plan) => &plan.columns,
            Plan::Union(plans) => plans.first().map_or(&[], |p| p.columns()),
            Plan::Rows(result) => &result.columns,
        }
    }
}

/// Plans `request` against the schema in `catalog`, without running anything.
pub fn plan(request: &SqlRequest, catalog: &dyn Catalog) -> Result<Plan> {
    let now_ms = match request.context.get("sqlCurrentTimestamp") {
        None => None,
        Some(now) => Some(
            now.as_str()
                .and_then(grove_segment::time::parse_iso_timestamp)
                .ok_or_else(|| {
                    QueryError::bad(format!(
                        "SQL: sqlCurrentTimestamp {now} is not an ISO-8601 timestamp"
                    ))
                })?,
        ),
    };
    // Calcite's `EXPLAIN PLAN FOR <query>`: the native query as Druid shows it.
    let text = request.query.trim_start();
    if text.len() > 16 && text[..16].eq_ignore_ascii_case("EXPLAIN PLAN FOR") {
        let inner = SqlRequest {
            query: text[16..].to_string(),
            ..request.clone()
        };
        return explain(&plan(&inner, catalog)?);
    }
    let parsed = parse::parse(&request.query, &request.parameters, now_ms)?;
    plan_statement(
        &parsed.statement,
        &parsed.in_lists,
        catalog,
        &request.context,
    )
}

fn plan_statement(
    statement: &sqlparser::ast::Statement,
    in_lists: &[Vec<value::Literal>],
    catalog: &dyn Catalog,
    context: &serde_json::Map<String, serde_json::Value>,
) -> Result<Plan> {
    use sqlparser::ast::{SetExpr, SetOperator, SetQuantifier, Statement};
    if let Statement::Query(query) = statement {
        match query.body.as_ref() {
            SetExpr::SetOperation {
                op: SetOperator::Union,
                set_quantifier: SetQuantifier::All,
                ..
            } => {
                if query.order_by.is_some() || query.limit_clause.is_some() {
                    return Err(QueryError::unsupported(
                        "SQL: ORDER BY or LIMIT over a UNION ALL is not supported (order or \
                         limit each branch)",
                    ));
                }
                let mut branches = Vec::new();
                let mut stack = vec![query.body.as_ref()];
                while let Some(body) = stack.pop() {
                    match body {
                        SetExpr::SetOperation {
                            op: SetOperator::Union,
                            set_quantifier: SetQuantifier::All,
                            left,
                            right,
                        } => {
                            stack.push(right);
                            stack.push(left);
                        }
                        other => branches.push(other.clone()),
                    }
                }
                let mut plans = Vec::with_capacity(branches.len());
                for branch in branches {
                    let mut one = (**query).clone();
                    one.body = Box::new(branch);
                    plans.push(plan_statement(
                        &Statement::Query(Box::new(one)),
                        in_lists,
                        catalog,
                        context,
                    )?);
                }
                let width = plans[0].columns().len();
                if plans.iter().any(|p| p.columns().len() != width) {
                    return Err(QueryError::bad(
                        "SQL: the branches of a UNION ALL select different numbers of columns",
                    ));
                }
                return Ok(Plan::Union(plans));
            }
            SetExpr::Select(select) if select.from.is_empty() => {
                return constants(select);
            }
            _ => {}
        }
    }
    let query = clauses::SelectQuery::from_statement(statement, in_lists)?;
    match clauses::resolve_table(query.table, catalog)? {
        clauses::TableRef::System(table) => Ok(Plan::System(system::plan(table, &query)?)),
        clauses::TableRef::Datasource(table) => {
            Ok(Plan::Native(native::plan(&table, &query, context)?))
        }
    }
}

/// `SELECT <constants>` without `FROM`: one row (what clients send to check a connection).
fn constants(select: &sqlparser::ast::Select) -> Result<Plan> {
    use sqlparser::ast::SelectItem;
    let mut columns = Vec::new();
    let mut row = Vec::new();
    for (index, item) in select.projection.iter().enumerate() {
        let (expr, name) = match item {
            SelectItem::UnnamedExpr(e) => (e, format!("EXPR${index}")),
            SelectItem::ExprWithAlias { expr, alias } => (expr, alias.value.clone()),
            _ => {
                return Err(QueryError::unsupported(
                    "SQL: SELECT without FROM of anything but constants is not supported",
                ));
            }
        };
        let Some(literal) = value::literal(expr)? else {
            return Err(QueryError::unsupported(format!(
                "SQL: SELECT without FROM of {expr} is not supported (constants only)"
            )));
        };
        columns.push(ColumnInfo {
            name,
            sql_type: literal.sql_type(),
        });
        row.push(match literal {
            value::Literal::Timestamp(ms) => {
                serde_json::json!(grove_segment::time::format_iso(ms))
            }
            other => other.to_json(),
        });
    }
    if select.selection.is_some()
        || !matches!(&select.group_by, sqlparser::ast::GroupByExpr::Expressions(e, _) if e.is_empty())
    {
        return Err(QueryError::unsupported(
            "SQL: WHERE or GROUP BY without FROM is not supported",
        ));
    }
    Ok(Plan::Rows(SqlResult {
        columns,
        rows: vec![row],
    }))
}

/// `EXPLAIN PLAN FOR`: Druid's three columns, the plan as the native query it runs.
fn explain(plan: &Plan) -> Result<Plan> {
    fn queries(plan: &Plan, out: &mut Vec<serde_json::Value>) -> Result<()> {
        match plan {
            Plan::Native(native) => {
                out.push(serde_json::json!({
                    "query": native.query,
                    "signature": native.columns.iter().map(|c| serde_json::json!({
                        "name": c.name, "type": c.sql_type.name(),
                    })).collect::<Vec<_>>(),
                }));
                Ok(())
            }
            Plan::Union(plans) => plans.iter().try_for_each(|p| queries(p, out)),
            Plan::System(_) | Plan::Rows(_) => Err(QueryError::unsupported(
                "SQL: EXPLAIN of a query that runs no native query is not supported",
            )),
        }
    }
    let mut out = Vec::new();
    queries(plan, &mut out)?;
    let resources: Vec<serde_json::Value> = out
        .iter()
        .filter_map(|q| q["query"]["dataSource"].as_str())
        .map(|ds| serde_json::json!({"name": ds, "type": "DATASOURCE"}))
        .collect();
    let varchar = |name: &str| ColumnInfo {
        name: name.to_string(),
        sql_type: SqlType::Varchar,
    };
    Ok(Plan::Rows(SqlResult {
        columns: vec![varchar("PLAN"), varchar("RESOURCES"), varchar("ATTRIBUTES")],
        rows: vec![vec![
            serde_json::Value::String(serde_json::Value::Array(out).to_string()),
            serde_json::Value::String(serde_json::Value::Array(resources).to_string()),
            serde_json::Value::String(r#"{"statementType":"SELECT"}"#.to_string()),
        ]],
    }))
}

/// Plans and runs `request`.
pub fn execute(
    request: &SqlRequest,
    catalog: &dyn Catalog,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<SqlResult> {
    let mut result = run_plan(&plan(request, catalog)?, catalog, provider, control)?;
    // `sqlOuterLimit`: the most rows the answer may have.
    if let Some(limit) = request.context.get("sqlOuterLimit") {
        let limit = limit
            .as_u64()
            .or_else(|| limit.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| {
                QueryError::bad(format!(
                    "SQL: sqlOuterLimit {limit} is not a non-negative integer"
                ))
            })?;
        result
            .rows
            .truncate(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    Ok(result)
}

fn run_plan(
    plan: &Plan,
    catalog: &dyn Catalog,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<SqlResult> {
    match plan {
        Plan::System(plan) => system::run(plan, catalog),
        Plan::Native(plan) => match crate::run_native(&plan.query, provider, control)? {
            crate::QueryResult::Events(table) if plan.kind == NativeKind::GroupBy => {
                shape::shape_events(plan, &table)
            }
            result => shape(plan, &result.into_json()),
        },
        Plan::Rows(result) => Ok(result.clone()),
        Plan::Union(plans) => {
            let mut out = SqlResult {
                columns: plan.columns().to_vec(),
                rows: Vec::new(),
            };
            for p in plans {
                control.check()?;
                out.rows
                    .extend(run_plan(p, catalog, provider, control)?.rows);
            }
            Ok(out)
        }
    }
}
