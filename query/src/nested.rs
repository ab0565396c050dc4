//! Queries over a `query` datasource (Druid's nested groupBy, which its SQL planner emits for an
//! exact `COUNT(DISTINCT x)`): the inner query runs first, then the outer query groups the
//! inner result's rows, each a row with `__time` (its bucket's timestamp) and one column per
//! inner output name.
//!
//! A plain inner groupBy (no having, limit, post-aggregators or subtotals; string output
//! types) is read straight from its merged groups: its rows are never finalized into JSON.
//! Any other inner query runs whole and its JSON rows are read back. The outer side evaluates
//! its filter and filtered aggregators with `grove-segment`'s row matcher over the columns it
//! reads, groups by its dimensions in one hash table, and emits a [`Merged`] like a segment
//! grouping would, so having, limits, post-aggregators and result shapes are the usual ones.

use std::sync::Arc;

use serde_json::{Map, Value as Json};

use grove_segment::filter::RowMatcher;
use grove_segment::format::Segment;
use grove_segment::row::{InputRow, RowLayout, Value};
use grove_segment::sketch::HllSketch;
use grove_segment::time::{Granularity, parse_iso_timestamp};

use crate::aggregate::{AggDef, AggKind, AggValue};
use crate::error::{QueryError, Result};
use crate::group::ALL_BUCKET;
use crate::model::{self, OutputType, Query};
use crate::partial::{self, AggColumn, KeyRef, Merged, Partial};
use crate::run::{Grouping, all_timestamp, group_all};
use crate::{QueryControl, SegmentProvider};

const TIME_COLUMN: &str = "__time";

/// The inner query's rows.
enum InnerRows {
    /// A plain groupBy's merged groups: dimension names, then aggregator names.
    Plain {
        merged: Merged,
        names: Vec<String>,
        dims: usize,
        aggs: Vec<AggDef>,
        all_ts: i64,
    },
    /// Any other query's result rows: (timestamp, columns).
    Rows(Vec<(i64, Map<String, Json>)>),
}

/// Runs the inner query of `inner` and groups its rows as `g` (the outer query) says.
pub(crate) fn group_nested(
    inner: &Query,
    g: &Grouping<'_>,
    aggs: &[AggDef],
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<(Merged, Vec<Arc<Segment>>)> {
    let (rows, segments) = inner_rows(inner, provider, control)?;
    // The columns the outer query reads, in one layout.
    let mut fields: Vec<String> = Vec::new();
    let mut add = |name: &str| {
        if name != TIME_COLUMN && !fields.iter().any(|f| f == name) {
            fields.push(name.to_string());
        }
    };
    for d in &g.dimensions {
        add(d);
    }
    for a in aggs {
        if let Some(f) = &a.field {
            add(f);
        }
        if let AggKind::Distinct { fields: fs, .. } = &a.kind {
            fs.iter().for_each(|f| add(f));
        }
        if let AggKind::SketchMerge { .. } = a.kind {
            return Err(QueryError::unsupported(format!(
                "aggregator '{}' merges stored sketches, which a query datasource does not have",
                a.name
            )));
        }
        for f in a.filter.iter().flat_map(|f| f.fields()) {
            add(&f);
        }
    }
    for f in g.filter.iter().flat_map(|f| f.fields()) {
        add(&f);
    }
    let layout = RowLayout {
        fields: fields.clone(),
        metric_slots: Vec::new(),
    };
    let compile = |f: &grove_segment::filter::Filter| -> Result<RowMatcher> {
        f.compile(&layout)
            .map_err(|e| QueryError::bad(e.to_string()))
    };
    let matcher = g.filter.map(compile).transpose()?;
    let agg_matchers = aggs
        .iter()
        .map(|a| a.filter.as_ref().map(compile).transpose())
        .collect::<Result<Vec<_>>>()?;
    let slot = |name: &str| fields.iter().position(|f| f == name);
    let dim_slots: Vec<Option<usize>> = g.dimensions.iter().map(|d| slot(d)).collect();
    let agg_slots: Vec<Option<usize>> = aggs
        .iter()
        .map(|a| a.field.as_deref().and_then(slot))
        .collect();

    let mut outer = Outer {
        aggs,
        index: hashbrown::HashMap::new(),
        keys: Vec::new(),
        ends: Vec::new(),
        values: Vec::new(),
        max_groups: g.max_groups,
    };
    let mut row = InputRow {
        timestamp_ms: 0,
        values: vec![Value::Null; fields.len()],
    };
    let mut key = Vec::new();
    let mut visit = |row: &InputRow| -> Result<()> {
        let ts = row.timestamp_ms;
        if !g.intervals.iter().any(|i| i.contains(ts)) {
            return Ok(());
        }
        if matcher.as_ref().is_some_and(|m| !m.matches(row)) {
            return Ok(());
        }
        key.clear();
        let bucket = if g.granularity.base == Granularity::All {
            ALL_BUCKET
        } else {
            g.granularity.truncate(ts)
        };
        partial::push_bucket(&mut key, bucket);
        for s in &dim_slots {
            match s.map_or(&Value::Null, |s| &row.values[s]) {
                Value::Null => partial::push_null(&mut key),
                Value::Long(v) => partial::push_long(&mut key, *v),
                Value::Double(v) => partial::push_double(&mut key, *v),
                Value::String(s) => partial::push_str(&mut key, s.as_bytes()),
                Value::Strings(l) => match l.first() {
                    Some(s) => partial::push_str(&mut key, s.as_bytes()),
                    None => partial::push_null(&mut key),
                },
            }
        }
        let group = outer.group(&key)?;
        for (i, def) in aggs.iter().enumerate() {
            if agg_matchers[i].as_ref().is_some_and(|m| !m.matches(row)) {
                continue;
            }
            let one = row_value(def, row, agg_slots[i], &fields)?;
            def.combine(&mut outer.values[group][i], one);
        }
        Ok(())
    };
    match rows {
        InnerRows::Plain {
            merged,
            names,
            dims,
            aggs: inner_aggs,
            all_ts,
        } => {
            // Where each field comes from: a dimension of the key or an aggregator.
            let sources: Vec<Option<usize>> = fields
                .iter()
                .map(|f| names.iter().position(|n| n == f))
                .collect();
            let mut dim_values: Vec<KeyRef<'_>> = Vec::with_capacity(dims);
            for (n, r) in merged.refs().into_iter().enumerate() {
                if n % 4096 == 4095 {
                    control.check()?;
                }
                let k = merged.key(r);
                let b = partial::key_bucket(k);
                row.timestamp_ms = if b == ALL_BUCKET { all_ts } else { b };
                dim_values.clear();
                dim_values.extend(partial::key_dims(k));
                for (value, source) in row.values.iter_mut().zip(&sources) {
                    match source {
                        None => *value = Value::Null,
                        Some(c) if *c < dims => match dim_values[*c] {
                            KeyRef::Null => *value = Value::Null,
                            KeyRef::Long(v) => *value = Value::Long(v),
                            KeyRef::Double(v) => *value = Value::Double(v),
                            KeyRef::Str(s) => value.set_str(s),
                        },
                        Some(c) => {
                            let a = c - dims;
                            *value = json_value(&inner_aggs[a].finalize(&merged.value(r, a)));
                        }
                    }
                }
                visit(&row)?;
            }
        }
        InnerRows::Rows(rows) => {
            for (n, (ts, columns)) in rows.iter().enumerate() {
                if n % 4096 == 4095 {
                    control.check()?;
                }
                row.timestamp_ms = *ts;
                for (value, f) in row.values.iter_mut().zip(&fields) {
                    *value = columns.get(f).map_or(Value::Null, json_value);
                }
                visit(&row)?;
            }
        }
    }
    let groups = outer.ends.len();
    let mut columns: Vec<AggColumn> = aggs.iter().map(AggColumn::for_def).collect();
    for values in outer.values {
        for (c, v) in columns.iter_mut().zip(values) {
            c.push(v);
        }
    }
    debug_assert!(columns.iter().all(|c| c.len() == groups));
    let merged = partial::merge_partials(
        vec![Partial::from_parts(outer.keys, outer.ends, columns)],
        aggs,
    )?;
    Ok((merged, segments))
}

/// The outer query's groups as they fill.
struct Outer<'a> {
    aggs: &'a [AggDef],
    index: hashbrown::HashMap<Vec<u8>, usize>,
    keys: Vec<u8>,
    ends: Vec<u32>,
    values: Vec<Vec<AggValue>>,
    max_groups: u64,
}

impl Outer<'_> {
    fn group(&mut self, key: &[u8]) -> Result<usize> {
        if let Some(&g) = self.index.get(key) {
            return Ok(g);
        }
        let g = self.values.len();
        if g as u64 >= self.max_groups {
            return Err(crate::group::too_many_groups(self.max_groups));
        }
        self.index.insert(key.to_vec(), g);
        self.keys.extend_from_slice(key);
        self.ends.push(self.keys.len() as u32);
        self.values
            .push(self.aggs.iter().map(AggDef::empty).collect());
        Ok(g)
    }
}

/// The value one inner row adds to aggregator `def`.
fn row_value(
    def: &AggDef,
    row: &InputRow,
    slot: Option<usize>,
    fields: &[String],
) -> Result<AggValue> {
    let value = slot.map_or(&Value::Null, |s| &row.values[s]);
    let long = || match value {
        Value::Long(v) => Some(*v),
        Value::Double(v) => Some(*v as i64),
        Value::String(s) => s.trim().parse::<f64>().ok().map(|v| v as i64),
        _ => None,
    };
    let double = || match value {
        Value::Long(v) => Some(*v as f64),
        Value::Double(v) => Some(*v),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    };
    let text = || match value {
        Value::String(s) => Some(s.clone()),
        Value::Long(v) => Some(v.to_string()),
        Value::Double(v) => Some(grove_segment::row::format_double(*v)),
        Value::Strings(l) => l.first().cloned(),
        Value::Null => None,
    };
    let ts = row.timestamp_ms;
    Ok(match &def.kind {
        AggKind::Count => AggValue::Long(Some(1)),
        AggKind::LongSum | AggKind::LongMin | AggKind::LongMax => AggValue::Long(long()),
        AggKind::DoubleSum | AggKind::DoubleMin | AggKind::DoubleMax => AggValue::Double(double()),
        AggKind::LongFirst | AggKind::LongLast => AggValue::TimedLong(Some((ts, long()))),
        AggKind::DoubleFirst | AggKind::DoubleLast => AggValue::TimedDouble(Some((ts, double()))),
        AggKind::StringFirst { max_bytes } | AggKind::StringLast { max_bytes } => {
            let t = text().map(|mut t| {
                let mut end = (*max_bytes).min(t.len());
                while !t.is_char_boundary(end) {
                    end -= 1;
                }
                t.truncate(end);
                t
            });
            AggValue::TimedString(Some((ts, t)))
        }
        AggKind::Distinct {
            fields: fs,
            by_row,
            lg_k,
            ..
        } => {
            let mut sketch = HllSketch::new(*lg_k);
            let mut tuple = String::new();
            for (k, f) in fs.iter().enumerate() {
                let v = fields
                    .iter()
                    .position(|x| x == f)
                    .map_or(&Value::Null, |s| &row.values[s]);
                if *by_row {
                    if k > 0 {
                        tuple.push('\u{1}');
                    }
                    match v {
                        Value::String(s) => tuple.push_str(s),
                        Value::Long(n) => tuple.push_str(&n.to_string()),
                        Value::Double(d) => tuple.push_str(&grove_segment::row::format_double(*d)),
                        _ => {}
                    }
                    continue;
                }
                match v {
                    Value::Null => {}
                    Value::String(s) => sketch.update_str(s),
                    Value::Strings(l) => l.iter().for_each(|s| sketch.update_str(s)),
                    Value::Long(n) => sketch.update_i64(*n),
                    Value::Double(d) => sketch.update_f64(*d),
                }
            }
            if *by_row && !tuple.is_empty() {
                sketch.update_str(&tuple);
            }
            AggValue::Sketch(Some(Box::new(sketch)))
        }
        AggKind::SketchMerge { .. } => unreachable!("refused before the rows are read"),
    })
}

/// A result value as an input value (numbers stay numbers, anything else its text).
fn json_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::String(s) => Value::String(s.clone()),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Long(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::Bool(b) => Value::Long(*b as i64),
        Json::Array(a) => Value::Strings(
            a.iter()
                .map(|v| match v {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect(),
        ),
        Json::Object(_) => Value::String(j.to_string()),
    }
}

/// Runs the inner query and returns its rows and the segments it read.
fn inner_rows(
    inner: &Query,
    provider: &dyn SegmentProvider,
    control: &dyn QueryControl,
) -> Result<(InnerRows, Vec<Arc<Segment>>)> {
    if let Query::GroupBy(q) = inner
        && q.data_source.1.is_none()
        && q.having.is_none()
        && q.post_aggregations.is_empty()
        && q.subtotals_spec.is_none()
        && q.limit_spec
            .as_ref()
            .is_none_or(|l| l.columns.is_empty() && l.limit.is_none() && l.offset.is_none())
        && q.dimensions
            .iter()
            .all(|d| d.output_type == OutputType::String)
    {
        let aggs = AggDef::resolve(&q.aggregations)?;
        let grouping = Grouping {
            max_groups: q.context.max_results.unwrap_or(model::MAX_GROUPS_DEFAULT),
            max_bytes: crate::run::max_merge_bytes(&q.context)?,
            ..Grouping::new(
                &q.data_source,
                &q.intervals,
                &q.granularity,
                q.filter.as_ref(),
                q.dimensions.iter().map(|d| d.dimension.clone()).collect(),
            )
        };
        let (merged, segments) = group_all(&grouping, &aggs, provider, control)?;
        let all_ts = all_timestamp(&q.intervals.0, &segments);
        let names = q
            .dimensions
            .iter()
            .map(|d| d.output_name.clone())
            .chain(aggs.iter().map(|a| a.name.clone()))
            .collect();
        return Ok((
            InnerRows::Plain {
                merged,
                names,
                dims: q.dimensions.len(),
                aggs,
                all_ts,
            },
            segments,
        ));
    }
    let (table, intervals) = match inner {
        Query::GroupBy(q) => (&q.data_source, &q.intervals),
        Query::Timeseries(q) => (&q.data_source, &q.intervals),
        Query::TopN(q) => (&q.data_source, &q.intervals),
        _ => {
            return Err(QueryError::unsupported(
                "a query datasource's query must be a groupBy, timeseries or topN",
            ));
        }
    };
    let segments = provider.segments(&table.0, &intervals.0);
    let result = crate::run::run(inner, provider, control)?.into_json();
    let Json::Array(items) = result else {
        return Err(QueryError::internal("a query's result is not an array"));
    };
    let stamp = |item: &Json| -> Result<i64> {
        item.get("timestamp")
            .and_then(Json::as_str)
            .and_then(parse_iso_timestamp)
            .ok_or_else(|| QueryError::internal("an inner result row has no timestamp"))
    };
    let mut rows = Vec::with_capacity(items.len());
    for item in &items {
        let ts = stamp(item)?;
        match (item.get("event"), item.get("result")) {
            (Some(Json::Object(event)), _) => rows.push((ts, event.clone())),
            (_, Some(Json::Object(result))) => rows.push((ts, result.clone())),
            (_, Some(Json::Array(list))) => {
                for r in list {
                    if let Json::Object(r) = r {
                        rows.push((ts, r.clone()));
                    }
                }
            }
            _ => return Err(QueryError::internal("an inner result row has no columns")),
        }
    }
    Ok((InnerRows::Rows(rows), segments))
}
