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
use super::filter::{self, Kind, Operand, Operands, object, plan_where};
use super::lower::{
    AggregateFunction, Lowering, TIME_COLUMN, TableOperands, Term, aggregate_name,
    post_aggregator_field,
};
use super::{ColumnInfo, SqlType, TableInfo};
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

fn unsupported<T>(construct: impl std::fmt::Display) -> Result<T> {
    Err(QueryError::unsupported(format!(
        "SQL: {construct} is not supported"
    )))
}

/// Context keys that configure the SQL layer and are not passed to the native query.
const SQL_ONLY_CONTEXT: &[&str] = &[
    "sqlTimeZone",
    "sqlQueryId",
    "sqlStringifyArrays",
    "sqlOuterLimit",
    "useApproximateCountDistinct",
    "useApproximateTopN",
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
    if context.get("useApproximateCountDistinct") == Some(&json!(false)) {
        return unsupported("exact COUNT(DISTINCT) (useApproximateCountDistinct=false)");
    }
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
            lowering: &lowering,
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
        scan(query, &items, &terms, &lowering, &mut native)?
    } else {
        Grouping::new(lowering, query, &items, terms)?.plan(&mut native, &mut native_context)?
    };
    if !native_context.is_empty() {
        native.insert("context".into(), Value::Object(native_context));
    }
    plan.query = Value::Object(native);
    Ok(plan)
}

/// A `scan`: columns only, ordered by `__time` if at all.
fn scan(
    query: &SelectQuery<'_>,
    items: &[Item<'_>],
    terms: &[Term],
    lowering: &Lowering<'_>,
    native: &mut Map<String, Value>,
) -> Result<NativePlan> {
    let mut columns = Vec::with_capacity(items.len());
    let mut sources = Vec::with_capacity(items.len());
    let mut scanned: Vec<String> = Vec::new();
    for (item, term) in items.iter().zip(terms) {
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
                    match item_reference(expr, items, |n| lowering.find(n).is_some())? {
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

/// An aggregating query: its group keys, outputs and the post-aggregators it needs.
struct Grouping<'a, 'q> {
    lowering: Lowering<'a>,
    query: &'q SelectQuery<'a>,
    items: &'q [Item<'a>],
    terms: Vec<Term>,
    /// Dimension keys, output as `d0`, `d1`...
    dimensions: Vec<ColumnInfo>,
    /// The time floor key, if any: the query's granularity.
    time: Option<Value>,
    /// Arithmetic over aggregates, output as `p0`, `p1`...
    post: Vec<Term>,
}

/// A term's place in a native result row.
enum Output {
    Timestamp,
    Field(String),
}

impl<'a, 'q> Grouping<'a, 'q> {
    fn new(
        lowering: Lowering<'a>,
        query: &'q SelectQuery<'a>,
        items: &'q [Item<'a>],
        terms: Vec<Term>,
    ) -> Result<Grouping<'a, 'q>> {
        let mut grouping = Grouping {
            lowering,
            query,
            items,
            terms,
            dimensions: Vec::new(),
            time: None,
            post: Vec::new(),
        };
        let keys = if query.distinct {
            if !query.group_by.is_empty() || !grouping.lowering.aggregates.is_empty() {
                return unsupported("SELECT DISTINCT with GROUP BY or aggregates");
            }
            grouping.terms.clone()
        } else {
            query
                .group_by
                .iter()
                .map(|expr| grouping.resolve(expr))
                .collect::<Result<Vec<_>>>()?
        };
        for key in keys {
            match key {
                Term::Column(column) => {
                    if matches!(column.sql_type, SqlType::Other(_)) {
                        return Err(QueryError::bad(format!(
                            "SQL: cannot group by complex column '{}'",
                            column.name
                        )));
                    }
                    if !grouping.dimensions.contains(&column) {
                        grouping.dimensions.push(column);
                    }
                }
                Term::Time(granularity) => match &grouping.time {
                    Some(existing) if *existing != granularity => {
                        return unsupported("grouping by more than one time floor");
                    }
                    _ => grouping.time = Some(granularity),
                },
                Term::Aggregate(_) => {
                    return Err(QueryError::bad(
                        "SQL: aggregate functions are not allowed in GROUP BY",
                    ));
                }
                other => return unsupported(format!("GROUP BY on {other:?}")),
            }
        }
        Ok(grouping)
    }

    /// Lowers a `GROUP BY`/`ORDER BY`/`HAVING` expression: an ordinal or alias of the select
    /// list, or an expression.
    fn resolve(&mut self, expr: &Expr) -> Result<Term> {
        let lowering = &self.lowering;
        match item_reference(expr, self.items, |n| lowering.find(n).is_some())? {
            Some(index) => Ok(self.terms[index].clone()),
            None => self.lowering.lower(expr),
        }
    }

    /// Where `term` is in a native result row, registering post-aggregators as needed.
    fn output(&mut self, term: &Term) -> Result<Output> {
        match term {
            Term::Column(column) => match self.dimensions.iter().position(|d| d == column) {
                Some(index) => Ok(Output::Field(format!("d{index}"))),
                None => Err(QueryError::bad(format!(
                    "SQL: column '{}' must appear in GROUP BY or in an aggregate",
                    column.name
                ))),
            },
            Term::Time(granularity) if self.time.as_ref() == Some(granularity) => {
                Ok(Output::Timestamp)
            }
            Term::Time(_) => Err(QueryError::bad(
                "SQL: __time (or its floor) must appear in GROUP BY or in an aggregate",
            )),
            Term::Aggregate(index) => Ok(Output::Field(aggregate_name(*index))),
            Term::Arithmetic { .. } => {
                let index = match self.post.iter().position(|p| p == term) {
                    Some(index) => index,
                    None => {
                        self.post.push(term.clone());
                        self.post.len() - 1
                    }
                };
                Ok(Output::Field(format!("p{index}")))
            }
            Term::Constant(_) => unsupported("a constant here"),
        }
    }

    fn plan(
        mut self,
        native: &mut Map<String, Value>,
        context: &mut Map<String, Value>,
    ) -> Result<NativePlan> {
        let mut columns = Vec::with_capacity(self.items.len());
        let mut sources = Vec::with_capacity(self.items.len());
        for index in 0..self.items.len() {
            let term = self.terms[index].clone();
            columns.push(ColumnInfo {
                name: self.items[index].name.clone(),
                sql_type: self.lowering.sql_type(&term),
            });
            sources.push(match term {
                Term::Constant(value) => Source::Constant(value.to_json()),
                term => match self.output(&term)? {
                    Output::Timestamp => Source::Timestamp,
                    Output::Field(name) => Source::Field(name),
                },
            });
        }
        let having = match self.query.having {
            Some(condition) => Some(filter::filter(condition, &mut HavingOperands(&mut self))?),
            None => None,
        };
        let mut order = Vec::with_capacity(self.query.order_by.len());
        for key in &self.query.order_by {
            let term = self.resolve(key.expr)?;
            order.push((term, key.descending));
        }
        let outputs = order
            .iter()
            .map(|(term, _)| self.output(term))
            .collect::<Result<Vec<_>>>()?;
        if let Some(time_boundary) = self.time_boundary(native)? {
            return Ok(NativePlan {
                columns,
                ..time_boundary
            });
        }
        let (aggregations, mut post_aggregations) = self.lowering.native_aggregations();
        for (index, term) in self.post.iter().enumerate() {
            let mut field = post_aggregator_field(term)?;
            field["name"] = json!(format!("p{index}"));
            post_aggregations.push(field);
        }
        native.insert("granularity".into(), json!("all"));
        native.insert("aggregations".into(), Value::Array(aggregations));
        if !post_aggregations.is_empty() {
            native.insert("postAggregations".into(), Value::Array(post_aggregations));
        }
        let mut plan = NativePlan {
            query: Value::Null,
            kind: NativeKind::GroupBy,
            columns,
            sources,
            offset: 0,
            limit: None,
            empty_row: None,
        };
        let query = self.query;
        let plain = having.is_none() && query.offset == 0;
        if self.dimensions.is_empty() && self.time.is_none() && having.is_none() {
            // One row: ORDER BY is moot, LIMIT/OFFSET apply to it.
            plan.kind = NativeKind::Timeseries;
            plan.offset = query.offset;
            plan.limit = query.limit;
            plan.empty_row = Some(self.empty_row(&plan.sources));
        } else if self.dimensions.is_empty()
            && plain
            && outputs.iter().all(|o| matches!(o, Output::Timestamp))
        {
            let granularity = self
                .time
                .clone()
                .expect("a time key: no dimensions, grouped");
            plan.kind = NativeKind::Timeseries;
            native.insert("granularity".into(), granularity);
            if order.first().is_some_and(|(_, descending)| *descending) {
                native.insert("descending".into(), json!(true));
            }
            if let Some(limit) = query.limit {
                native.insert("limit".into(), json!(limit));
            }
            context.insert("skipEmptyBuckets".into(), json!(true));
        } else if let (
            [dimension],
            None,
            true,
            Some(limit),
            [(term, descending)],
            [Output::Field(metric)],
        ) = (
            self.dimensions.as_slice(),
            &self.time,
            plain,
            query.limit,
            order.as_slice(),
            outputs.as_slice(),
        ) && dimension.sql_type == SqlType::Varchar
            && matches!(term, Term::Aggregate(_) | Term::Arithmetic { .. })
        {
            plan.kind = NativeKind::TopN;
            let numeric = json!({"type": "numeric", "metric": metric});
            let metric = if *descending {
                numeric
            } else {
                json!({"type": "inverted", "metric": numeric})
            };
            native.insert("dimension".into(), dimension_spec(dimension, 0));
            native.insert("metric".into(), metric);
            native.insert("threshold".into(), json!(limit));
        } else {
            if let Some(granularity) = &self.time {
                native.insert("granularity".into(), granularity.clone());
            }
            let dimensions: Vec<Value> = self
                .dimensions
                .iter()
                .enumerate()
                .map(|(index, d)| dimension_spec(d, index))
                .collect();
            native.insert("dimensions".into(), json!(dimensions));
            if let Some(having) = having {
                let having = object([("type", json!("filter")), ("filter", having)]);
                native.insert("having".into(), having);
            }
            if let Some(limit_spec) = self.limit_spec(&order, outputs)? {
                native.insert("limitSpec".into(), limit_spec);
            }
        }
        let query_type = match plan.kind {
            NativeKind::Timeseries => "timeseries",
            NativeKind::TopN => "topN",
            _ => "groupBy",
        };
        native.insert("queryType".into(), json!(query_type));
        Ok(plan)
    }

    /// A `timeBoundary` plan when every output is `MIN(__time)` or `MAX(__time)` over an
    /// ungrouped query.
    fn time_boundary(&self, native: &mut Map<String, Value>) -> Result<Option<NativePlan>> {
        let boundary = |term: &Term| match term {
            Term::Aggregate(index) => {
                let aggregate = &self.lowering.aggregates[*index];
                let on_time = aggregate.filter.is_none()
                    && aggregate
                        .column
                        .as_ref()
                        .is_some_and(|c| c.name == TIME_COLUMN);
                match aggregate.function {
                    AggregateFunction::Min if on_time => Some("minTime"),
                    AggregateFunction::Max if on_time => Some("maxTime"),
                    _ => None,
                }
            }
            _ => None,
        };
        let grouped = !self.dimensions.is_empty() || self.time.is_some();
        let bounds: Option<Vec<&str>> = self.terms.iter().map(boundary).collect();
        let Some(bounds) = bounds else {
            return Ok(None);
        };
        let only_bounds =
            (0..self.lowering.aggregates.len()).all(|i| boundary(&Term::Aggregate(i)).is_some());
        if grouped || self.query.having.is_some() || bounds.is_empty() || !only_bounds {
            return Ok(None);
        }
        native.insert("queryType".into(), json!("timeBoundary"));
        if bounds.iter().all(|b| *b == bounds[0]) {
            native.insert("bound".into(), json!(bounds[0]));
        }
        Ok(Some(NativePlan {
            query: Value::Null,
            kind: NativeKind::TimeBoundary,
            columns: Vec::new(),
            sources: bounds
                .iter()
                .map(|b| Source::Field(b.to_string()))
                .collect(),
            offset: self.query.offset,
            limit: self.query.limit,
            empty_row: Some(vec![Value::Null; bounds.len()]),
        }))
    }

    /// The row an ungrouped aggregate query returns over no data.
    fn empty_row(&self, sources: &[Source]) -> Vec<Value> {
        sources
            .iter()
            .map(|source| match source {
                Source::Constant(value) => value.clone(),
                Source::Field(name) => {
                    let counts = self
                        .lowering
                        .aggregates
                        .iter()
                        .enumerate()
                        .any(|(index, a)| a.counts() && aggregate_name(index) == *name);
                    if counts { json!(0) } else { Value::Null }
                }
                Source::Timestamp => Value::Null,
            })
            .collect()
    }

    /// The groupBy `limitSpec`. With a time floor granularity the native query orders by time
    /// first, so `ORDER BY` must start with the time floor ascending (or not order at all).
    fn limit_spec(&self, order: &[(Term, bool)], outputs: Vec<Output>) -> Result<Option<Value>> {
        let mut columns = Vec::new();
        for (index, ((term, descending), output)) in order.iter().zip(outputs).enumerate() {
            match output {
                Output::Timestamp if index == 0 && !descending => continue,
                Output::Timestamp => {
                    return unsupported(
                        "ORDER BY the time floor other than first and ascending in a groupBy",
                    );
                }
                Output::Field(_) if index == 0 && self.time.is_some() => {
                    return unsupported(
                        "ORDER BY that does not start with the time floor when grouping by a \
                         time floor and dimensions",
                    );
                }
                Output::Field(name) => {
                    let numeric = self.lowering.sql_type(term) != SqlType::Varchar;
                    columns.push(json!({
                        "dimension": name,
                        "direction": if *descending { "descending" } else { "ascending" },
                        "dimensionOrder": if numeric { "numeric" } else { "lexicographic" },
                    }));
                }
            }
        }
        if columns.is_empty() && self.query.limit.is_none() && self.query.offset == 0 {
            return Ok(None);
        }
        let mut spec = Map::new();
        spec.insert("type".into(), json!("default"));
        spec.insert("columns".into(), json!(columns));
        if let Some(limit) = self.query.limit {
            spec.insert("limit".into(), json!(limit));
        }
        if self.query.offset > 0 {
            spec.insert("offset".into(), json!(self.query.offset));
        }
        Ok(Some(Value::Object(spec)))
    }
}

fn dimension_spec(column: &ColumnInfo, index: usize) -> Value {
    let output_type = match column.sql_type {
        SqlType::Bigint => "LONG",
        SqlType::Double => "DOUBLE",
        _ => "STRING",
    };
    json!({
        "type": "default",
        "dimension": column.name,
        "outputName": format!("d{index}"),
        "outputType": output_type,
    })
}

/// Resolves `HAVING` operands to the native query's output names.
struct HavingOperands<'g, 'a, 'q>(&'g mut Grouping<'a, 'q>);

impl Operands for HavingOperands<'_, '_, '_> {
    fn operand(&mut self, expr: &Expr) -> Result<Operand> {
        let term = self.0.resolve(expr)?;
        let kind = match self.0.lowering.sql_type(&term) {
            SqlType::Varchar => Kind::String,
            SqlType::Bigint => Kind::Long,
            SqlType::Double => Kind::Double,
            _ => return unsupported(format!("HAVING on {expr}")),
        };
        match self.0.output(&term)? {
            Output::Field(name) => Ok(Operand { name, kind }),
            Output::Timestamp => unsupported(format!("HAVING on {expr}")),
        }
    }

    fn in_lists(&self) -> &[Vec<super::value::Literal>] {
        self.0.query.in_lists
    }
}
