//! Aggregating queries (`GROUP BY`, aggregates, `DISTINCT`, `HAVING`): the group keys (at most
//! one time floor, which becomes the granularity, and dimensions `d0`, `d1`...), the outputs
//! (aggregates `a0`..., arithmetic post-aggregators `p0`...), and the choice between
//! `timeBoundary`, `timeseries`, `topN` and `groupBy` described in [`super::native`].

use serde_json::{Map, Value, json};
use sqlparser::ast::Expr;

use super::clauses::{Item, SelectQuery, item_reference};
use super::filter::{self, Kind, Operand, Operands, object};
use super::lower::{
    AggregateFunction, Lowering, TIME_COLUMN, Term, aggregate_name, post_aggregator_field,
};
use super::native::{NativeKind, NativePlan, Source, unsupported};
use super::value::Literal;
use super::{ColumnInfo, SqlType};
use crate::{QueryError, Result};

/// An aggregating query: its group keys, outputs and the post-aggregators it needs.
pub(crate) struct Grouping<'a, 'q> {
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

/// One resolved `ORDER BY` key.
struct OrderKey {
    term: Term,
    output: Output,
    descending: bool,
}

impl<'a, 'q> Grouping<'a, 'q> {
    pub(crate) fn new(
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
            let key = grouping.lowering.intern(key);
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

    /// Lowers a `GROUP BY`/`HAVING` expression: an ordinal of the select list, an alias that
    /// is not also an input column (input columns win there, as in Druid), or an expression.
    fn resolve(&mut self, expr: &Expr) -> Result<Term> {
        let lowering = &self.lowering;
        match item_reference(expr, self.items, |n| lowering.find(n).is_some())? {
            Some(index) => Ok(self.terms[index].clone()),
            None => self.lowering.lower(expr),
        }
    }

    /// Lowers an `ORDER BY` key: a select-list alias or ordinal first (so `SUM(added) AS added
    /// ... ORDER BY added` orders by the sum), else an expression over the input.
    fn resolve_order(&mut self, expr: &Expr) -> Result<Term> {
        match item_reference(expr, self.items, |_| false)? {
            Some(index) => Ok(self.terms[index].clone()),
            None => self.lowering.lower(expr),
        }
    }

    /// Where `term` is in a native result row, registering post-aggregators as needed.
    fn output(&mut self, term: &Term) -> Result<Output> {
        let interned;
        let term = if matches!(term, Term::Expression { .. }) {
            interned = self.lowering.intern(term.clone());
            &interned
        } else {
            term
        };
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
            Term::Arithmetic { .. } | Term::PostExpression { .. } => {
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
            Term::Expression { .. } => unreachable!("interned above"),
        }
    }

    pub(crate) fn plan(
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
            let term = self.resolve_order(key.expr)?;
            let output = self.output(&term)?;
            order.push(OrderKey {
                term,
                output,
                descending: key.descending,
            });
        }
        if let Some(time_boundary) = self.time_boundary(native)? {
            return Ok(NativePlan {
                columns,
                ..time_boundary
            });
        }
        self.insert_aggregations(native)?;
        let mut kind = self.kind(having.is_some(), &order);
        // `useApproximateTopN: false` asks for the exact answer: Druid plans a groupBy.
        if kind == NativeKind::TopN
            && matches!(context.get("useApproximateTopN"), Some(Value::Bool(false)))
        {
            kind = NativeKind::GroupBy;
        }
        if matches!(context.get("useApproximateTopN"), Some(Value::String(s)) if s == "false")
            && kind == NativeKind::TopN
        {
            kind = NativeKind::GroupBy;
        }
        let mut plan = NativePlan {
            query: Value::Null,
            kind,
            columns,
            sources,
            offset: 0,
            limit: None,
            empty_row: None,
        };
        let query_type = match kind {
            NativeKind::Timeseries if self.time.is_none() => {
                // One row: ORDER BY is moot, LIMIT/OFFSET apply to it.
                plan.offset = self.query.offset;
                plan.limit = self.query.limit;
                plan.empty_row = Some(self.empty_row(&plan.sources));
                "timeseries"
            }
            NativeKind::Timeseries => {
                self.insert_buckets(native, context, &order);
                "timeseries"
            }
            NativeKind::TopN => {
                self.insert_top_n(native, &order);
                "topN"
            }
            _ => {
                self.insert_group_by(native, having, &order)?;
                "groupBy"
            }
        };
        native.insert("queryType".into(), json!(query_type));
        if let Some(columns) = self.lowering.virtual_columns_json() {
            native.insert("virtualColumns".into(), columns);
        }
        Ok(plan)
    }

    /// `aggregations` and `postAggregations` (AVG quotients, then arithmetic `p0`, `p1`...).
    fn insert_aggregations(&self, native: &mut Map<String, Value>) -> Result<()> {
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
        Ok(())
    }

    /// Which native query answers this grouping (see the module documentation).
    fn kind(&self, has_having: bool, order: &[OrderKey]) -> NativeKind {
        let plain = !has_having && self.query.offset == 0;
        if self.dimensions.is_empty() && self.time.is_none() && !has_having {
            return NativeKind::Timeseries;
        }
        if self.dimensions.is_empty()
            && plain
            && order
                .iter()
                .all(|key| matches!(key.output, Output::Timestamp))
        {
            return NativeKind::Timeseries;
        }
        let one_string_dimension =
            matches!(self.dimensions.as_slice(), [d] if d.sql_type == SqlType::Varchar);
        let by_one_metric = matches!(
            order,
            [OrderKey {
                term: Term::Aggregate(_) | Term::Arithmetic { .. },
                ..
            }]
        );
        if one_string_dimension
            && self.time.is_none()
            && plain
            && self.query.limit.is_some()
            && by_one_metric
        {
            NativeKind::TopN
        } else {
            NativeKind::GroupBy
        }
    }

    /// A timeseries over time buckets: the time floor's granularity, ordered by time.
    fn insert_buckets(
        &self,
        native: &mut Map<String, Value>,
        context: &mut Map<String, Value>,
        order: &[OrderKey],
    ) {
        let granularity = self
            .time
            .clone()
            .expect("bucketed timeseries has a time key");
        native.insert("granularity".into(), granularity);
        if order.first().is_some_and(|key| key.descending) {
            native.insert("descending".into(), json!(true));
        }
        if let Some(limit) = self.query.limit {
            native.insert("limit".into(), json!(limit));
        }
        context.insert("skipEmptyBuckets".into(), json!(true));
    }

    fn insert_top_n(&self, native: &mut Map<String, Value>, order: &[OrderKey]) {
        let [dimension] = self.dimensions.as_slice() else {
            unreachable!("topN has one dimension");
        };
        let [key] = order else {
            unreachable!("topN has one ORDER BY key");
        };
        let Output::Field(metric) = &key.output else {
            unreachable!("topN orders by a metric");
        };
        let numeric = json!({"type": "numeric", "metric": metric});
        let metric = if key.descending {
            numeric
        } else {
            json!({"type": "inverted", "metric": numeric})
        };
        native.insert("dimension".into(), dimension_spec(dimension, 0));
        native.insert("metric".into(), metric);
        native.insert("threshold".into(), json!(self.query.limit));
    }

    fn insert_group_by(
        &self,
        native: &mut Map<String, Value>,
        having: Option<Value>,
        order: &[OrderKey],
    ) -> Result<()> {
        if let Some(granularity) = &self.time {
            native.insert("granularity".into(), granularity.clone());
        }
        let dimensions: Vec<Value> = self
            .dimensions
            .iter()
            .enumerate()
            .map(|(index, d)| dimension_spec(d, index))
            .collect();
        native.insert("dimensions".into(), Value::Array(dimensions));
        if let Some(having) = having {
            let having = object([("type", json!("filter")), ("filter", having)]);
            native.insert("having".into(), having);
        }
        if let Some(limit_spec) = self.limit_spec(order)? {
            native.insert("limitSpec".into(), limit_spec);
        }
        Ok(())
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
    fn limit_spec(&self, order: &[OrderKey]) -> Result<Option<Value>> {
        let mut columns = Vec::new();
        for (index, key) in order.iter().enumerate() {
            let descending = key.descending;
            match &key.output {
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
                    let numeric = self.lowering.sql_type(&key.term) != SqlType::Varchar;
                    columns.push(json!({
                        "dimension": name,
                        "direction": if descending { "descending" } else { "ascending" },
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
        SqlType::Bigint | SqlType::Timestamp => "LONG",
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

    fn in_lists(&self) -> &[Vec<Literal>] {
        self.0.query.in_lists
    }
}
