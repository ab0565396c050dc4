//! Planning a `SELECT` over a datasource into one Druid native query, as Druid's SQL planner
//! chooses:
//! - no `GROUP BY`, aggregates only → `timeseries`, granularity `all` (one row even over no
//!   data); only `MIN(__time)`/`MAX(__time)` → `timeBoundary`;
//! - `GROUP BY` one time floor only (no `HAVING`/`OFFSET`, ordered by time if at all) →
//!   `timeseries` with that granularity and `skipEmptyBuckets`;
//! - `GROUP BY` one string dimension, `ORDER BY` one aggregate, `LIMIT`, no `OFFSET`/`HAVING` →
//!   `topN`;
//! - any other grouping → `groupBy` (a time floor becomes its granularity), `HAVING` → a `having`
//!   filter on output names, `ORDER BY`/`LIMIT`/`OFFSET` → a default `limitSpec`;
//! - no aggregates → `scan`, ordered only by `__time`.
//!
//! Native output names are internal (`d0` dimensions, `a0` aggregates, `p0` post-aggregators);
//! every SQL output column records its [`Source`] so shaping maps them back.

use serde_json::{Map, Value, json};
use sqlparser::ast::Expr;

use super::clauses::{Item, SelectQuery, item_reference};
use super::filter::plan_where;
use super::grouping::Grouping;
use super::lower::{Lowering, TIME_COLUMN, TableOperands, Term};
use super::{ColumnInfo, TableInfo};
use crate::{QueryError, Result};

/// Which native query a plan runs, and so how its result is shaped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NativeKind {
    Timeseries,
    TopN,
    GroupBy,
    Scan,
    TimeBoundary,
}

/// Where an output column's value comes from in a native result row.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    /// The row's (or bucket's) `timestamp`.
    Timestamp,
    /// A named field of the row (`a0`, `d0`, a scan column, `minTime`...).
    Field(String),
    /// A constant of the select list.
    Constant(Value),
}

/// A native query and how to shape its result.
#[derive(Clone, Debug, PartialEq)]
pub struct NativePlan {
    /// The Druid native query.
    pub query: Value,
    pub kind: NativeKind,
    pub columns: Vec<ColumnInfo>,
    /// One per column.
    pub sources: Vec<Source>,
    /// Rows to skip and keep after the native result, for shapes whose native query has no
    /// offset or limit of its own (a granularity-`all` timeseries): 0 and `None` otherwise.
    pub offset: u64,
    pub limit: Option<u64>,
    /// The row to return when the native result is empty (aggregates over no data return one
    /// row, as in SQL): counts are 0, other aggregates null.
    pub empty_row: Option<Vec<Value>>,
}

pub(crate) fn unsupported<T>(construct: impl std::fmt::Display) -> Result<T> {
    Err(QueryError::unsupported(format!(
        "SQL: {construct} is not supported"
    )))
}

/// Context keys that configure the SQL layer and are not passed to the native query.
const SQL_ONLY_CONTEXT: &[&str] = &[
    "sqlTimeZone",
    "sqlQueryId",
    "sqlCurrentTimestamp",
    "sqlStringifyArrays",
    "sqlOuterLimit",
    "useApproximateCountDistinct",
];

pub(crate) fn plan(
    table: &TableInfo,
    query: &SelectQuery<'_>,
    context: &Map<String, Value>,
) -> Result<NativePlan> {
    if let Some(zone) = context.get("sqlTimeZone")
        && !matches!(zone.as_str(), Some("UTC" | "Etc/UTC"))
    {
        return unsupported(format!("sqlTimeZone {zone} (only UTC)"));
    }
    let exact_distinct = matches!(
        context.get("useApproximateCountDistinct"),
        Some(Value::Bool(false))
    ) || matches!(context.get("useApproximateCountDistinct"), Some(Value::String(s)) if s == "false");
    let mut native_context: Map<String, Value> = context
        .iter()
        .filter(|(key, _)| !SQL_ONLY_CONTEXT.contains(&key.as_str()))
        .map(|(key, value)| (key.clone(), value.clone()))
        .collect();
    let items = query.items(&table.columns)?;
    let mut lowering = Lowering::new(table, query);
    let terms = items
        .iter()
        .map(|item| lowering.lower(&item.expr))
        .collect::<Result<Vec<_>>>()?;
    let where_ = plan_where(
        query.selection,
        &mut TableOperands {
            lowering: &mut lowering,
        },
    )?;
    let mut native = Map::new();
    native.insert("dataSource".into(), json!(table.name));
    native.insert("intervals".into(), where_.intervals);
    if let Some(filter) = where_.filter {
        native.insert("filter".into(), filter);
    }
    let grouped = !query.group_by.is_empty() || query.distinct || query.having.is_some();
    let mut plan = if !grouped && lowering.aggregates.is_empty() {
        let plan = scan(query, &items, &terms, &mut lowering, &mut native)?;
        if let Some(columns) = lowering.virtual_columns_json() {
            native.insert("virtualColumns".into(), columns);
        }
        plan
    } else {
        Grouping::new(lowering, query, &items, terms)?.plan(&mut native, &mut native_context)?
    };
    if !native_context.is_empty() {
        native.insert("context".into(), Value::Object(native_context));
    }
    if exact_distinct {
        exact_count_distinct(&mut native)?;
    }
    plan.query = Value::Object(native);
    Ok(plan)
}

/// The output name of the counted column in the inner query of an exact `COUNT(DISTINCT)`.
const DISTINCT_COLUMN: &str = "_distinct";

/// Rewrites a planned query whose aggregates are `COUNT(DISTINCT x)` (cardinality sketches)
/// into Druid's exact plan: an inner groupBy by the query's keys and `x`, and the same query
/// over it counting the inner rows where `x` is not null. Other aggregates beside it, or
/// distinct counts of different columns, are refused (Druid joins them; Grove does not yet).
fn exact_count_distinct(native: &mut Map<String, Value>) -> Result<()> {
    let aggregations = native
        .get("aggregations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let distinct: Vec<(String, String)> = aggregations
        .iter()
        .filter(|a| a["type"] == "cardinality")
        .filter_map(|a| {
            let field = a["fields"].as_array()?.first()?.as_str()?.to_string();
            Some((a["name"].as_str()?.to_string(), field))
        })
        .collect();
    if distinct.is_empty() {
        return Ok(());
    }
    if distinct.len() != aggregations.len() || distinct.iter().any(|(_, f)| *f != distinct[0].1) {
        return unsupported(
            "exact COUNT(DISTINCT) beside other aggregates, FILTER clauses or distinct counts of \
             other columns (useApproximateCountDistinct=false)",
        );
    }
    let column = distinct[0].1.clone();
    let query_type = native["queryType"].as_str().unwrap_or_default().to_string();
    let keys: Vec<Value> = match query_type.as_str() {
        "groupBy" => native["dimensions"].as_array().cloned().unwrap_or_default(),
        "topN" => vec![native["dimension"].clone()],
        "timeseries" => Vec::new(),
        other => return unsupported(format!("exact COUNT(DISTINCT) in a {other} plan")),
    };
    let mut inner = Map::new();
    inner.insert("queryType".into(), json!("groupBy"));
    for key in [
        "dataSource",
        "intervals",
        "filter",
        "granularity",
        "context",
    ] {
        if let Some(v) = native.get(key) {
            inner.insert(key.into(), v.clone());
        }
    }
    let mut dimensions = keys.clone();
    dimensions.push(json!({"type": "default", "dimension": column, "outputName": DISTINCT_COLUMN}));
    inner.insert("dimensions".into(), Value::Array(dimensions));
    // The outer query reads the inner rows' output names.
    let outer_key = |spec: &Value| {
        let name = spec["outputName"].clone();
        let mut out = json!({"type": "default", "dimension": name, "outputName": name});
        if let Some(t) = spec.get("outputType") {
            out["outputType"] = t.clone();
        }
        out
    };
    match query_type.as_str() {
        "groupBy" => {
            native.insert(
                "dimensions".into(),
                Value::Array(keys.iter().map(outer_key).collect()),
            );
        }
        "topN" => {
            native.insert("dimension".into(), outer_key(&keys[0]));
        }
        _ => {}
    }
    native.remove("filter");
    native.insert(
        "dataSource".into(),
        json!({"type": "query", "query": Value::Object(inner)}),
    );
    native.insert(
        "aggregations".into(),
        Value::Array(
            distinct
                .iter()
                .map(|(name, _)| {
                    json!({
                        "type": "filtered", "name": name,
                        "filter": {"type": "not", "field": {"type": "null", "column": DISTINCT_COLUMN}},
                        "aggregator": {"type": "count", "name": name},
                    })
                })
                .collect(),
        ),
    );
    Ok(())
}

/// A `scan`: columns only, ordered by `__time` if at all.
fn scan(
    query: &SelectQuery<'_>,
    items: &[Item<'_>],
    terms: &[Term],
    lowering: &mut Lowering<'_>,
    native: &mut Map<String, Value>,
) -> Result<NativePlan> {
    let mut columns = Vec::with_capacity(items.len());
    let mut sources = Vec::with_capacity(items.len());
    let mut scanned: Vec<String> = Vec::new();
    for (item, term) in items.iter().zip(terms) {
        let interned = lowering.intern(term.clone());
        let term = &interned;
        let column = match term {
            Term::Column(column) => column.name.clone(),
            Term::Time(granularity) if granularity == "none" => TIME_COLUMN.to_string(),
            _ => {
                return unsupported(format!(
                    "{} without GROUP BY or aggregates (a scan returns columns)",
                    item.expr
                ));
            }
        };
        if !scanned.contains(&column) {
            scanned.push(column.clone());
        }
        columns.push(ColumnInfo {
            name: item.name.clone(),
            sql_type: lowering.sql_type(term),
        });
        sources.push(Source::Field(column));
    }
    native.insert("queryType".into(), json!("scan"));
    native.insert("resultFormat".into(), json!("list"));
    match query.order_by.as_slice() {
        [] => {}
        [key] => {
            let is_time = |expr: &Expr| -> Result<bool> {
                Ok(
                    // ORDER BY: select-list aliases first.
                    match item_reference(expr, items, |_| false)? {
                        Some(index) => terms[index] == Term::Time(json!("none")),
                        None => lowering
                            .column(expr)?
                            .is_some_and(|c| c.name == TIME_COLUMN),
                    },
                )
            };
            if !is_time(key.expr)? {
                return unsupported(format!(
                    "ORDER BY {} without GROUP BY or aggregates (a scan orders by __time only)",
                    key.expr
                ));
            }
            let order = if key.descending {
                "descending"
            } else {
                "ascending"
            };
            native.insert("order".into(), json!(order));
            // Druid orders a scan by time only when `__time` is among its columns.
            if !scanned.iter().any(|c| c == TIME_COLUMN) {
                scanned.push(TIME_COLUMN.to_string());
            }
        }
        _ => return unsupported("ORDER BY more than __time without GROUP BY or aggregates"),
    }
    native.insert("columns".into(), json!(scanned));
    if let Some(limit) = query.limit {
        native.insert("limit".into(), json!(limit));
    }
    if query.offset > 0 {
        native.insert("offset".into(), json!(query.offset));
    }
    Ok(NativePlan {
        query: Value::Null,
        kind: NativeKind::Scan,
        columns,
        sources,
        offset: 0,
        limit: None,
        empty_row: None,
    })
}
