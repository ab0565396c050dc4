//! From merged groups to Druid's result JSON: post-aggregators, `having`, ordering and limits,
//! and the result shapes of timeseries, topN and groupBy.

use std::cmp::Ordering as CmpOrdering;

use serde_json::{Map, Value as Json};

use grove_segment::filter::Filter;
use grove_segment::row::{InputRow, RowLayout, Value};
use grove_segment::sketch::HllSketch;
use grove_segment::time::format_iso;

use crate::aggregate::{AggDef, AggValue};
use crate::column::double_json;
use crate::error::{QueryError, Result};
use crate::group::KeyValue;
use crate::model::{Having, OrderByColumn, Ordering, OutputType, PostAggregator};

/// Finishes a group's aggregates into `columns` and evaluates `post` in order.
pub fn finish_row(
    columns: &mut Map<String, Json>,
    aggs: &[AggDef],
    values: &[AggValue],
    post: &[PostAggregator],
) -> Result<()> {
    for (def, v) in aggs.iter().zip(values) {
        columns.insert(def.name.clone(), def.finalize(v));
    }
    for p in post {
        let value = match eval_post(p, columns, aggs, values)? {
            Post::Json(j) => j,
            Post::Sketch(s) => double_json(s.map_or(0.0, |s| s.estimate())),
        };
        columns.insert(p.name().to_string(), value);
    }
    Ok(())
}

enum Post<'v> {
    Json(Json),
    Sketch(Option<&'v HllSketch>),
}

fn number(p: &Post<'_>) -> Option<f64> {
    match p {
        Post::Json(j) => j.as_f64(),
        Post::Sketch(s) => Some(s.map_or(0.0, |s| s.estimate())),
    }
}

fn eval_post<'v>(
    p: &PostAggregator,
    columns: &Map<String, Json>,
    aggs: &[AggDef],
    values: &'v [AggValue],
) -> Result<Post<'v>> {
    let lookup = |field: &str, finalize: bool| -> Result<Post<'v>> {
        if let Some(i) = aggs.iter().position(|d| d.name == field) {
            if let (false, AggValue::Sketch(s)) = (finalize, &values[i]) {
                return Ok(Post::Sketch(s.as_deref()));
            }
            return Ok(Post::Json(aggs[i].finalize(&values[i])));
        }
        columns.get(field).cloned().map(Post::Json).ok_or_else(|| {
            QueryError::bad(format!(
                "post-aggregator '{}' reads '{field}', which is not an aggregator or an earlier \
                 post-aggregator",
                p.name()
            ))
        })
    };
    let numbers = |fields: &[PostAggregator]| -> Result<Vec<Option<f64>>> {
        fields
            .iter()
            .map(|f| eval_post(f, columns, aggs, values).map(|v| number(&v)))
            .collect()
    };
    Ok(match p {
        PostAggregator::FieldAccess { field_name, .. } => lookup(field_name, false)?,
        PostAggregator::FinalizingFieldAccess { field_name, .. } => lookup(field_name, true)?,
        PostAggregator::Constant { value, .. } => Post::Json(Json::Number(value.clone())),
        PostAggregator::HyperUniqueCardinality { field_name, .. } => Post::Json(double_json(
            number(&lookup(field_name, false)?).unwrap_or(0.0),
        )),
        PostAggregator::HllSketchEstimate { field, round, .. } => {
            let v = number(&eval_post(field, columns, aggs, values)?).unwrap_or(0.0);
            if *round {
                Post::Json((v.round() as i64).into())
            } else {
                Post::Json(double_json(v))
            }
        }
        PostAggregator::Arithmetic {
            function, fields, ..
        } => {
            let xs = numbers(fields)?;
            if xs.iter().any(Option::is_none) {
                return Ok(Post::Json(Json::Null));
            }
            let mut xs = xs.into_iter().flatten();
            let first = xs.next().ok_or_else(|| {
                QueryError::bad(format!(
                    "arithmetic post-aggregator '{}' has no fields",
                    p.name()
                ))
            })?;
            let mut acc = first;
            for x in xs {
                acc = match function.as_str() {
                    "+" => acc + x,
                    "-" => acc - x,
                    "*" => acc * x,
                    "/" => {
                        if x == 0.0 {
                            0.0
                        } else {
                            acc / x
                        }
                    }
                    "quotient" => acc / x,
                    "pow" => acc.powf(x),
                    other => {
                        return Err(QueryError::bad(format!(
                            "arithmetic post-aggregator '{}': unknown fn '{other}' \
                             (+, -, *, /, quotient, pow)",
                            p.name()
                        )));
                    }
                };
            }
            Post::Json(double_json(acc))
        }
        PostAggregator::Expression {
            expression,
            output_type,
            ..
        } => {
            let expr = &expression.0;
            let mut inputs = Vec::with_capacity(expr.columns().len());
            for column in expr.columns() {
                let value = match aggs.iter().position(|d| &d.name == column) {
                    Some(i) => aggs[i].finalize(&values[i]),
                    None => columns.get(column).cloned().unwrap_or(Json::Null),
                };
                inputs.push(crate::expr::json_scalar(&value));
            }
            let mut out = expr.eval_row(&inputs);
            if let Some(t) = output_type.as_deref() {
                let ty = crate::expr::ValueType::parse(t).ok_or_else(|| {
                    QueryError::bad(format!(
                        "post-aggregator '{}': outputType '{t}' (LONG, DOUBLE, STRING)",
                        p.name()
                    ))
                })?;
                out = crate::expr::Vector::repeat(&out, 1).cast(ty).get(0);
            }
            Post::Json(crate::expr::scalar_json(&out))
        }
        PostAggregator::DoubleGreatest { fields, .. }
        | PostAggregator::DoubleLeast { fields, .. }
        | PostAggregator::LongGreatest { fields, .. }
        | PostAggregator::LongLeast { fields, .. } => {
            let greatest = matches!(
                p,
                PostAggregator::DoubleGreatest { .. } | PostAggregator::LongGreatest { .. }
            );
            let long = matches!(
                p,
                PostAggregator::LongGreatest { .. } | PostAggregator::LongLeast { .. }
            );
            let best = numbers(fields)?
                .into_iter()
                .flatten()
                .reduce(|a, b| if greatest { a.max(b) } else { a.min(b) });
            Post::Json(match best {
                None => Json::Null,
                Some(v) if long => (v as i64).into(),
                Some(v) => double_json(v),
            })
        }
    })
}

/// A dimension value as it appears in results, converted to the spec's output type.
pub fn key_json(value: KeyValue, output: OutputType) -> Json {
    match (value, output) {
        (KeyValue::Null, _) => Json::Null,
        (v, OutputType::Long) => v.as_f64().map(|f| (f as i64).into()).unwrap_or(Json::Null),
        (v, OutputType::Double | OutputType::Float) => {
            v.as_f64().map(double_json).unwrap_or(Json::Null)
        }
        (KeyValue::String(s), OutputType::String) => Json::String(s),
        (KeyValue::Long(v), OutputType::String) => Json::String(v.to_string()),
        (KeyValue::Double(v), OutputType::String) => {
            Json::String(grove_segment::row::format_double(v))
        }
    }
}

/// Druid's result timestamp text.
pub fn timestamp(ms: i64) -> Json {
    Json::String(format_iso(ms))
}

/// Whether a result row passes a `having` spec.
pub fn having_passes(having: &Having, row: &Map<String, Json>) -> Result<bool> {
    let num = |name: &str| row.get(name).and_then(Json::as_f64);
    Ok(match having {
        Having::GreaterThan { aggregation, value } => num(aggregation).is_some_and(|v| v > *value),
        Having::LessThan { aggregation, value } => num(aggregation).is_some_and(|v| v < *value),
        Having::EqualTo { aggregation, value } => num(aggregation).is_some_and(|v| v == *value),
        Having::DimSelector {
            dimension,
            value,
            extraction_fn: None,
        } => match (row.get(dimension), value) {
            (None | Some(Json::Null), None) => true,
            (Some(Json::String(s)), Some(v)) => s == v,
            (Some(Json::Number(n)), Some(v)) => &n.to_string() == v,
            _ => false,
        },
        Having::DimSelector {
            dimension,
            value,
            extraction_fn: Some(f),
        } => {
            let extraction = crate::extraction::Extraction::new(f)?;
            let input = row
                .get(dimension)
                .map_or(crate::expr::Scalar::Null, crate::expr::json_scalar);
            extraction.apply(&input).as_ref() == value.as_ref()
        }
        Having::Filter { filter } => filter_row(filter, row)?,
        Having::And { having_specs } => {
            for h in having_specs {
                if !having_passes(h, row)? {
                    return Ok(false);
                }
            }
            true
        }
        Having::Or { having_specs } => {
            for h in having_specs {
                if having_passes(h, row)? {
                    return Ok(true);
                }
            }
            false
        }
        Having::Not { having_spec } => !having_passes(having_spec, row)?,
    })
}

/// Evaluates a native filter on one result row (its output columns are the fields).
fn filter_row(filter: &Filter, row: &Map<String, Json>) -> Result<bool> {
    let layout = RowLayout {
        fields: row.keys().cloned().collect(),
        metric_slots: Vec::new(),
    };
    for f in filter.fields() {
        if !row.contains_key(&f) {
            return Err(QueryError::bad(format!(
                "having filter reads '{f}', which is not a column of the result"
            )));
        }
    }
    let matcher = filter
        .compile(&layout)
        .map_err(|e| QueryError::bad(e.to_string()))?;
    let values = row.values().map(json_value).collect();
    Ok(matcher.matches(&InputRow {
        timestamp_ms: 0,
        values,
    }))
}

fn json_value(j: &Json) -> Value {
    match j {
        Json::Null => Value::Null,
        Json::String(s) => Value::String(s.clone()),
        Json::Number(n) => match n.as_i64() {
            Some(i) => Value::Long(i),
            None => Value::Double(n.as_f64().unwrap_or(f64::NAN)),
        },
        Json::Bool(b) => Value::String(b.to_string()),
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

/// Compares two result values under a string ordering (numbers compare numerically under every
/// ordering but `strlen`); nulls first.
pub fn compare_json(a: &Json, b: &Json, ordering: Ordering) -> CmpOrdering {
    match (a, b) {
        (Json::Null, Json::Null) => return CmpOrdering::Equal,
        (Json::Null, _) => return CmpOrdering::Less,
        (_, Json::Null) => return CmpOrdering::Greater,
        (Json::Number(x), Json::Number(y)) if ordering != Ordering::Strlen => {
            return x
                .as_f64()
                .unwrap_or(f64::NAN)
                .total_cmp(&y.as_f64().unwrap_or(f64::NAN));
        }
        _ => {}
    }
    let (x, y) = (text(a), text(b));
    let (x, y) = (x.as_ref(), y.as_ref());
    match ordering {
        Ordering::Lexicographic => x.cmp(y),
        Ordering::Strlen => x.len().cmp(&y.len()).then_with(|| x.cmp(y)),
        Ordering::Numeric => {
            let p = |s: &str| s.trim().parse::<f64>().ok();
            match (p(x), p(y)) {
                (Some(u), Some(v)) => u.total_cmp(&v),
                (None, Some(_)) => CmpOrdering::Less,
                (Some(_), None) => CmpOrdering::Greater,
                (None, None) => x.cmp(y),
            }
        }
        Ordering::Alphanumeric => alphanumeric(x, y),
    }
}

/// A result value's text: strings borrowed, anything else printed.
fn text(j: &Json) -> std::borrow::Cow<'_, str> {
    match j {
        Json::String(s) => std::borrow::Cow::Borrowed(s),
        other => std::borrow::Cow::Owned(other.to_string()),
    }
}

/// Druid's alphanumeric ordering: runs of digits compare as numbers, the rest as text.
fn alphanumeric(a: &str, b: &str) -> CmpOrdering {
    let (mut x, mut y) = (a, b);
    loop {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return CmpOrdering::Equal,
            (true, false) => return CmpOrdering::Less,
            (false, true) => return CmpOrdering::Greater,
            _ => {}
        }
        let dx = x.len() - x.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        let dy = y.len() - y.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if dx > 0 && dy > 0 {
            let (nx, ny) = (
                x[..dx].trim_start_matches('0'),
                y[..dy].trim_start_matches('0'),
            );
            let c = nx.len().cmp(&ny.len()).then_with(|| nx.cmp(ny));
            if c != CmpOrdering::Equal {
                return c;
            }
            x = &x[dx..];
            y = &y[dy..];
        } else {
            let cx = x.chars().next().expect("non-empty");
            let cy = y.chars().next().expect("non-empty");
            if cx != cy {
                return cx.cmp(&cy);
            }
            x = &x[cx.len_utf8()..];
            y = &y[cy.len_utf8()..];
        }
    }
}

/// Sorts rows by a limit spec's columns. Columns naming aggregators or post-aggregators compare
/// numerically; dimensions by their `dimensionOrder`.
pub fn sort_rows(rows: &mut [Map<String, Json>], columns: &[OrderByColumn], metrics: &[&str]) {
    rows.sort_by(|a, b| {
        for c in columns {
            let ordering = if metrics.contains(&c.dimension.as_str()) {
                Ordering::Numeric
            } else {
                c.ordering
            };
            let null = Json::Null;
            let x = a.get(&c.dimension).unwrap_or(&null);
            let y = b.get(&c.dimension).unwrap_or(&null);
            let ord = compare_json(x, y, ordering);
            let ord = if c.descending { ord.reverse() } else { ord };
            if ord != CmpOrdering::Equal {
                return ord;
            }
        }
        CmpOrdering::Equal
    });
}
