//! Virtual columns: columns a query computes from a segment's own, read by every engine exactly
//! as stored columns are.
//!
//! Three steps:
//! 1. [`lower`] (at parse time) rewrites what Druid evaluates through computed values into
//!    virtual columns plus plain native constructs: an `extraction` dimension spec groups on an
//!    extraction virtual column; an aggregator's `expression` input becomes an expression virtual
//!    column; a filter with an `extractionFn` filters the extracted column; `expression` and
//!    `columnComparison` filters become `equals 1` on a column holding their truth value. The
//!    engines never see extraction functions or expressions.
//! 2. [`VirtualColumns::new`] compiles the query's virtual columns once (expressions parsed,
//!    extraction functions prepared, dependencies between virtual columns ordered).
//! 3. [`VirtualProvider`] hands each segment out as a [`Segment::derived`] overlay: on first use
//!    of a virtual column in that segment, every virtual column is computed over the whole
//!    segment ([`DerivedColumns::build`]) and laid out as an in-memory segment of its own.
//!
//! Evaluation is batch-wise (expressions take 1,024-row vectors) and, where the only input is a
//! string column, per dictionary value: the expression or extraction function runs once per
//! distinct value and rows are mapped through their ids, so `upper(page)` over 10M rows costs
//! one call per distinct page. A multi-value column is supported as the only input (each value
//! mapped, as Druid's implicit mapping does) yielding strings.

use std::sync::Arc;

use roaring::RoaringBitmap;

use grove_segment::columns::{DimensionColumn, DimensionData, StringRows};
use grove_segment::filter::{ExtractionFn, Filter, MatchValueType, Scalar as FilterScalar};
use grove_segment::format::{DerivedColumns, Segment};
use grove_segment::time::Interval;

use crate::SegmentProvider;
use crate::column::Column;
use crate::error::{QueryError, Result};
use crate::expr::{BATCH_ROWS, Expr, Scalar, ValueType, Vector};
use crate::extraction::Extraction;
use crate::model::{Aggregator, DimensionSpec, Query, VirtualColumnSpec};

/// The prefix of the virtual columns Grove derives itself.
const DERIVED_PREFIX: &str = "__grove:";

/// Rewrites `query`'s extraction functions, aggregator expressions and expression-like filters
/// into virtual columns (see the module documentation).
pub fn lower(query: &mut Query) -> Result<()> {
    let mut l = Lowering::default();
    match query {
        Query::Timeseries(q) => {
            l.filter(&mut q.filter)?;
            l.aggregators(&mut q.aggregations)?;
            q.virtual_columns.append(&mut l.added);
        }
        Query::TopN(q) => {
            l.filter(&mut q.filter)?;
            l.aggregators(&mut q.aggregations)?;
            l.dimension(&mut q.dimension);
            q.virtual_columns.append(&mut l.added);
        }
        Query::GroupBy(q) => {
            l.filter(&mut q.filter)?;
            l.aggregators(&mut q.aggregations)?;
            for d in &mut q.dimensions {
                l.dimension(d);
            }
            q.virtual_columns.append(&mut l.added);
        }
        Query::Scan(q) => {
            l.filter(&mut q.filter)?;
            q.virtual_columns.append(&mut l.added);
        }
        Query::Search(q) => {
            if let Some(d) = q
                .search_dimensions
                .iter()
                .find(|d| d.extraction_fn.is_some())
            {
                return Err(QueryError::unsupported(format!(
                    "search: extraction dimension spec on '{}' is not supported (search the \
                     dimension itself)",
                    d.dimension
                )));
            }
            l.filter(&mut q.filter)?;
            q.virtual_columns.append(&mut l.added);
        }
        Query::TimeBoundary(q) => {
            l.filter(&mut q.filter)?;
            q.virtual_columns.append(&mut l.added);
        }
        Query::SegmentMetadata(_) | Query::DataSourceMetadata(_) => {}
    }
    // Compile now: a bad expression is an error of the query, before any segment is read.
    VirtualColumns::new(query.virtual_columns())?;
    Ok(())
}

#[derive(Default)]
struct Lowering {
    added: Vec<VirtualColumnSpec>,
}

/// An identifier in Druid's expression syntax.
fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

impl Lowering {
    fn add(&mut self, make: impl FnOnce(String) -> VirtualColumnSpec) -> String {
        let name = format!("{DERIVED_PREFIX}{}", self.added.len());
        let spec = make(name.clone());
        // The same derivation twice reads one column.
        let same = |a: &VirtualColumnSpec, b: &VirtualColumnSpec| match (a, b) {
            (
                VirtualColumnSpec::Extraction {
                    dimension: d1,
                    extraction_fn: f1,
                    ..
                },
                VirtualColumnSpec::Extraction {
                    dimension: d2,
                    extraction_fn: f2,
                    ..
                },
            ) => d1 == d2 && f1 == f2,
            (
                VirtualColumnSpec::Expression {
                    expression: e1,
                    output_type: t1,
                    ..
                },
                VirtualColumnSpec::Expression {
                    expression: e2,
                    output_type: t2,
                    ..
                },
            ) => e1 == e2 && t1 == t2,
            _ => false,
        };
        if let Some(existing) = self.added.iter().find(|a| same(a, &spec)) {
            return existing.name().to_string();
        }
        self.added.push(spec);
        name
    }

    fn extraction(&mut self, dimension: &str, f: &ExtractionFn) -> String {
        self.add(|name| VirtualColumnSpec::Extraction {
            name,
            dimension: dimension.to_string(),
            extraction_fn: f.clone(),
        })
    }

    /// A column holding 1 where `expression` is true, 0 where false, null where unknown.
    fn truth(&mut self, expression: &str) -> String {
        let text = format!("({expression}) && 1");
        self.add(|name| VirtualColumnSpec::Expression {
            name,
            expression: text,
            output_type: Some("LONG".into()),
        })
    }

    fn dimension(&mut self, d: &mut DimensionSpec) {
        if let Some(f) = &d.extraction_fn {
            d.dimension = self.extraction(&d.dimension, f);
        }
    }

    fn aggregators(&mut self, aggregators: &mut [Aggregator]) -> Result<()> {
        for a in aggregators {
            self.aggregator(a)?;
        }
        Ok(())
    }

    fn aggregator(&mut self, a: &mut Aggregator) -> Result<()> {
        match a {
            Aggregator::LongSum {
                name,
                field_name,
                expression,
            }
            | Aggregator::LongMin {
                name,
                field_name,
                expression,
            }
            | Aggregator::LongMax {
                name,
                field_name,
                expression,
            }
            | Aggregator::DoubleSum {
                name,
                field_name,
                expression,
            }
            | Aggregator::DoubleMin {
                name,
                field_name,
                expression,
            }
            | Aggregator::DoubleMax {
                name,
                field_name,
                expression,
            } => {
                if let Some(e) = expression.take() {
                    if !field_name.is_empty() {
                        return Err(QueryError::bad(format!(
                            "aggregator '{name}' has both a fieldName and an expression; give one"
                        )));
                    }
                    *field_name = self.add(|column| VirtualColumnSpec::Expression {
                        name: column,
                        expression: e,
                        output_type: None,
                    });
                }
            }
            Aggregator::Cardinality { fields, .. } => {
                for d in fields {
                    self.dimension(d);
                }
            }
            Aggregator::Filtered {
                filter, aggregator, ..
            } => {
                if needs_lowering(filter) {
                    *filter = self.lower_filter(filter)?;
                }
                self.aggregator(aggregator)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn filter(&mut self, filter: &mut Option<Filter>) -> Result<()> {
        // Most filters need nothing: leave them as parsed (a 10,000-value `in` is not copied).
        if let Some(f) = filter
            && needs_lowering(f)
        {
            *f = self.lower_filter(f)?;
        }
        Ok(())
    }

    fn lower_filter(&mut self, filter: &Filter) -> Result<Filter> {
        let equals_one = |column: String| Filter::Equals {
            column,
            match_value_type: MatchValueType::Long,
            match_value: FilterScalar::Long(1),
        };
        Ok(match filter {
            Filter::And { fields } => Filter::And {
                fields: fields
                    .iter()
                    .map(|f| self.lower_filter(f))
                    .collect::<Result<_>>()?,
            },
            Filter::Or { fields } => Filter::Or {
                fields: fields
                    .iter()
                    .map(|f| self.lower_filter(f))
                    .collect::<Result<_>>()?,
            },
            Filter::Not { field } => Filter::Not {
                field: Box::new(self.lower_filter(field)?),
            },
            Filter::Expression { expression } => {
                Expr::compile(expression)?;
                equals_one(self.truth(expression))
            }
            Filter::ColumnComparison { dimensions } => {
                if dimensions.len() < 2 {
                    return Ok(Filter::True);
                }
                let columns: Vec<String> = dimensions
                    .iter()
                    .map(|d| match &d.extraction_fn {
                        Some(f) => self.extraction(&d.dimension, f),
                        None => d.dimension.clone(),
                    })
                    .collect();
                let text = |c: &str| format!("cast({}, 'STRING')", quoted(c));
                let equal: Vec<String> = columns[1..]
                    .iter()
                    .map(|c| format!("{} == {}", text(&columns[0]), text(c)))
                    .collect();
                equals_one(self.truth(&equal.join(" && ")))
            }
            leaf => match (leaf.extraction_fn(), leaf.leaf_column()) {
                (Some(f), Some(column)) => {
                    let extracted = self.extraction(column, f);
                    with_column(&leaf.without_extraction(), extracted)
                }
                _ => leaf.clone(),
            },
        })
    }
}

/// Whether `filter` holds anything [`Lowering::lower_filter`] rewrites.
fn needs_lowering(filter: &Filter) -> bool {
    match filter {
        Filter::And { fields } | Filter::Or { fields } => fields.iter().any(needs_lowering),
        Filter::Not { field } => needs_lowering(field),
        Filter::Expression { .. } | Filter::ColumnComparison { .. } => true,
        leaf => leaf.extraction_fn().is_some(),
    }
}

/// `leaf` reading `column` instead of its own.
fn with_column(leaf: &Filter, column: String) -> Filter {
    let mut out = leaf.clone();
    match &mut out {
        Filter::Selector { dimension, .. }
        | Filter::In { dimension, .. }
        | Filter::Bound { dimension, .. }
        | Filter::Like { dimension, .. }
        | Filter::Regex { dimension, .. }
        | Filter::Interval { dimension, .. }
        | Filter::Search { dimension, .. } => *dimension = column,
        _ => {}
    }
    out
}

/// A compiled virtual column.
#[derive(Debug)]
enum Virtual {
    Expression {
        expr: Expr,
        output: Option<ValueType>,
    },
    Extraction {
        source: String,
        extraction: Extraction,
    },
}

impl Virtual {
    fn inputs(&self) -> Vec<&str> {
        match self {
            Virtual::Expression { expr, .. } => expr.columns().iter().map(String::as_str).collect(),
            Virtual::Extraction { source, .. } => vec![source],
        }
    }
}

/// A query's virtual columns, compiled and ordered so each comes after those it reads.
#[derive(Debug)]
pub struct VirtualColumns {
    /// In the query's order.
    names: Vec<String>,
    /// Evaluation order: indexes into `names` and the compiled column.
    ordered: Vec<(usize, Virtual)>,
}

impl VirtualColumns {
    pub fn new(specs: &[VirtualColumnSpec]) -> Result<VirtualColumns> {
        let mut names: Vec<String> = Vec::with_capacity(specs.len());
        let mut compiled = Vec::with_capacity(specs.len());
        for spec in specs {
            let name = spec.name().to_string();
            if name.is_empty() || name == "__time" {
                return Err(QueryError::bad(format!(
                    "virtual column name '{name}' is not allowed"
                )));
            }
            if names.contains(&name) {
                return Err(QueryError::bad(format!(
                    "virtual column '{name}' is defined twice"
                )));
            }
            let column = match spec {
                VirtualColumnSpec::Expression {
                    expression,
                    output_type,
                    ..
                } => Virtual::Expression {
                    expr: Expr::compile(expression)?,
                    output: match output_type {
                        None => None,
                        Some(t) => Some(ValueType::parse(t).ok_or_else(|| {
                            QueryError::bad(format!(
                                "virtual column '{name}': outputType '{t}' is not supported \
                                 (LONG, FLOAT, DOUBLE, STRING)"
                            ))
                        })?),
                    },
                },
                VirtualColumnSpec::Extraction {
                    dimension,
                    extraction_fn,
                    ..
                } => Virtual::Extraction {
                    source: dimension.clone(),
                    extraction: Extraction::new(extraction_fn)?,
                },
            };
            names.push(name);
            compiled.push(Some(column));
        }
        // Order by dependency: a column is placed once every virtual column it reads is.
        let mut ordered = Vec::with_capacity(compiled.len());
        let mut placed = vec![false; compiled.len()];
        while ordered.len() < compiled.len() {
            let ready = (0..compiled.len()).find(|&i| {
                !placed[i]
                    && compiled[i].as_ref().is_some_and(|c| {
                        c.inputs().iter().all(|input| {
                            names
                                .iter()
                                .position(|n| n == input)
                                .is_none_or(|j| placed[j] && j != i)
                        })
                    })
            });
            match ready {
                Some(i) => {
                    placed[i] = true;
                    ordered.push((i, compiled[i].take().expect("not placed yet")));
                }
                None => {
                    let stuck: Vec<&str> = (0..names.len())
                        .filter(|&i| !placed[i])
                        .map(|i| names[i].as_str())
                        .collect();
                    return Err(QueryError::bad(format!(
                        "virtual columns {stuck:?} read each other in a cycle"
                    )));
                }
            }
        }
        Ok(VirtualColumns { names, ordered })
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

impl DerivedColumns for VirtualColumns {
    fn names(&self) -> &[String] {
        &self.names
    }

    fn build(&self, base: &Segment) -> std::result::Result<Vec<DimensionColumn>, String> {
        let mut built: Vec<Option<DimensionData>> = vec![None; self.names.len()];
        for (index, column) in &self.ordered {
            let name = &self.names[*index];
            let data = build_one(column, base, &self.names, &built)
                .map_err(|e| format!("virtual column '{name}': {e}"))?;
            built[*index] = Some(data);
        }
        Ok(self
            .names
            .iter()
            .zip(built)
            .map(|(name, data)| DimensionColumn {
                name: name.clone(),
                data: data.expect("every virtual column is built"),
            })
            .collect())
    }
}

/// An input column of a virtual column, materialized for the segment.
enum Input<'a> {
    Owned(DimensionData),
    Built(&'a DimensionData),
}

impl Input<'_> {
    fn data(&self) -> &DimensionData {
        match self {
            Input::Owned(d) => d,
            Input::Built(d) => d,
        }
    }
}

fn input<'b>(
    name: &str,
    base: &Segment,
    names: &[String],
    built: &'b [Option<DimensionData>],
) -> std::result::Result<Input<'b>, String> {
    if let Some(i) = names.iter().position(|n| n == name)
        && let Some(data) = &built[i]
    {
        return Ok(Input::Built(data));
    }
    let n = base.num_rows();
    let column = Column::of(base, name).map_err(|e| e.message)?;
    Ok(Input::Owned(match column {
        Column::String(s) => {
            let mut dictionary = Vec::with_capacity(s.dictionary_len());
            s.for_each_value(|_, v| dictionary.push(v.map(str::to_string)))
                .map_err(|e| e.to_string())?;
            let rows = if s.is_multi_value() {
                let mut offsets = Vec::with_capacity(n + 1);
                let mut ids = Vec::new();
                offsets.push(0u32);
                s.for_each_row(|_, row| {
                    ids.extend_from_slice(row);
                    offsets.push(ids.len() as u32);
                });
                StringRows::Multi { offsets, ids }
            } else {
                let mut ids = vec![0u32; n];
                s.decode_ids(0, &mut ids).map_err(|e| e.to_string())?;
                StringRows::Single(ids)
            };
            DimensionData::String { dictionary, rows }
        }
        Column::Long { values, nulls } => DimensionData::Long {
            values: values.to_vec(),
            nulls: nulls.cloned().unwrap_or_default(),
        },
        Column::Double { values, nulls } => DimensionData::Double {
            values: values.to_vec(),
            nulls: nulls.cloned().unwrap_or_default(),
        },
        Column::Missing => DimensionData::Long {
            values: vec![0; n],
            nulls: (0..n as u32).collect(),
        },
        Column::Sketch(_) => {
            return Err(format!(
                "it reads '{name}', a sketch column, which expressions cannot read"
            ));
        }
    }))
}

fn build_one(
    column: &Virtual,
    base: &Segment,
    names: &[String],
    built: &[Option<DimensionData>],
) -> std::result::Result<DimensionData, String> {
    let n = base.num_rows();
    let inputs = column
        .inputs()
        .iter()
        .map(|c| input(c, base, names, built))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    match column {
        Virtual::Extraction { extraction, .. } => {
            let data = inputs[0].data();
            match data {
                DimensionData::String { dictionary, rows } => {
                    let mapped: Vec<Option<String>> = dictionary
                        .iter()
                        .map(|v| extraction.apply(&v.clone().map_or(Scalar::Null, Scalar::String)))
                        .collect();
                    let empty = extraction.apply(&Scalar::Null);
                    Ok(map_strings(
                        Vector::String(mapped),
                        Vector::String(vec![empty]),
                        rows,
                    ))
                }
                numeric => {
                    let mut out = Vec::with_capacity(n);
                    for r in 0..n {
                        out.push(extraction.apply(&numeric_at(numeric, r)));
                    }
                    Ok(strings_data(out))
                }
            }
        }
        Virtual::Expression { expr, output } => {
            let cast = |v: Vector| match output {
                Some(t) => v.cast(*t),
                None => v,
            };
            // One string column alone: evaluate once per dictionary value.
            if let [only] = inputs.as_slice()
                && let DimensionData::String { dictionary, rows } = only.data()
            {
                let values = Vector::String(dictionary.clone());
                let mapped = cast(eval_chunked(expr, &[values], dictionary.len()));
                let empty = cast(expr.eval(&[Vector::String(vec![None])], 1));
                return match (rows, mapped) {
                    (_, mapped @ Vector::String(_)) => Ok(map_strings(mapped, empty, rows)),
                    (StringRows::Single(ids), numeric) => {
                        let picked: Vec<usize> = ids.iter().map(|&id| id as usize).collect();
                        Ok(vector_data(numeric.select(&picked)))
                    }
                    (StringRows::Multi { .. }, _) => Err(format!(
                        "'{}' over multi-value column '{}' yields numbers; Grove maps \
                         multi-value columns only to strings",
                        expr.text(),
                        expr.columns()[0]
                    )),
                };
            }
            for (i, input) in inputs.iter().enumerate() {
                if let DimensionData::String {
                    rows: StringRows::Multi { .. },
                    ..
                } = input.data()
                {
                    return Err(format!(
                        "'{}' reads multi-value column '{}' with other columns; Grove evaluates \
                         an expression over a multi-value column only when it is the only input",
                        expr.text(),
                        expr.columns()[i]
                    ));
                }
            }
            let mut parts: Vec<Vector> = Vec::with_capacity(n.div_ceil(BATCH_ROWS));
            let mut start = 0;
            while start < n {
                let end = (start + BATCH_ROWS).min(n);
                let batch: Vec<Vector> =
                    inputs.iter().map(|i| slice(i.data(), start, end)).collect();
                parts.push(cast(expr.eval(&batch, end - start)));
                start = end;
            }
            Ok(vector_data(concat(
                parts,
                output.unwrap_or(ValueType::Long),
            )))
        }
    }
}

/// Evaluates `expr` over `n` values given whole, a batch at a time.
fn eval_chunked(expr: &Expr, inputs: &[Vector], n: usize) -> Vector {
    if n <= BATCH_ROWS {
        return expr.eval(inputs, n);
    }
    let mut parts = Vec::new();
    let mut start = 0;
    while start < n {
        let end = (start + BATCH_ROWS).min(n);
        let keep: Vec<usize> = (start..end).collect();
        let batch: Vec<Vector> = inputs.iter().map(|v| v.select(&keep)).collect();
        parts.push(expr.eval(&batch, end - start));
        start = end;
    }
    concat(parts, ValueType::Long)
}

/// Joins batches (all of one type, as expression types depend only on input types); an empty
/// list gives an empty vector of `empty_type`.
fn concat(parts: Vec<Vector>, empty_type: ValueType) -> Vector {
    let ty = parts.first().map_or(empty_type, Vector::value_type);
    let mut out = Vector::repeat(&Scalar::Null, 0).cast(ty);
    for part in parts {
        match (&mut out, part.cast(ty)) {
            (Vector::Long(a), Vector::Long(b)) => a.extend(b),
            (Vector::Double(a), Vector::Double(b)) => a.extend(b),
            (Vector::String(a), Vector::String(b)) => a.extend(b),
            _ => unreachable!("cast to one type"),
        }
    }
    out
}

fn numeric_at(data: &DimensionData, r: usize) -> Scalar {
    match data {
        DimensionData::Long { values, nulls } => {
            if nulls.contains(r as u32) {
                Scalar::Null
            } else {
                Scalar::Long(values[r])
            }
        }
        DimensionData::Double { values, nulls } => {
            if nulls.contains(r as u32) {
                Scalar::Null
            } else {
                Scalar::Double(values[r])
            }
        }
        DimensionData::String { .. } => Scalar::Null,
    }
}

/// Rows `start..end` of a (single-value) input as a vector.
fn slice(data: &DimensionData, start: usize, end: usize) -> Vector {
    match data {
        DimensionData::String {
            dictionary,
            rows: StringRows::Single(ids),
        } => Vector::String(
            ids[start..end]
                .iter()
                .map(|&id| dictionary[id as usize].clone())
                .collect(),
        ),
        DimensionData::String { .. } => Vector::String(vec![None; end - start]),
        DimensionData::Long { values, nulls } => Vector::Long(
            (start..end)
                .map(|r| (!nulls.contains(r as u32)).then(|| values[r]))
                .collect(),
        ),
        DimensionData::Double { values, nulls } => Vector::Double(
            (start..end)
                .map(|r| (!nulls.contains(r as u32)).then(|| values[r]))
                .collect(),
        ),
    }
}

/// A string column from per-dictionary-value results `mapped` (indexed by input id), through
/// the input's rows; an empty multi-value row takes `empty` (the result for null).
fn map_strings(mapped: Vector, empty: Vector, rows: &StringRows) -> DimensionData {
    let mapped = mapped.into_strings();
    let empty = empty.into_strings().pop().flatten();
    match rows {
        StringRows::Single(ids) => {
            strings_data(ids.iter().map(|&id| mapped[id as usize].clone()).collect())
        }
        StringRows::Multi { offsets, ids } => {
            // The output dictionary: every non-null result, sorted and unique.
            let mut dictionary: Vec<Option<String>> = mapped
                .iter()
                .chain(std::iter::once(&empty))
                .flatten()
                .cloned()
                .map(Some)
                .collect();
            dictionary.sort();
            dictionary.dedup();
            let id_of = |v: &str| {
                dictionary
                    .binary_search_by(|d| d.as_deref().cmp(&Some(v)))
                    .map(|i| i as u32)
                    .ok()
            };
            let remap: Vec<Option<u32>> = mapped
                .iter()
                .map(|v| v.as_deref().and_then(id_of))
                .collect();
            let empty_id = empty.as_deref().and_then(id_of);
            let mut out_offsets = Vec::with_capacity(offsets.len());
            let mut out_ids = Vec::with_capacity(ids.len());
            out_offsets.push(0u32);
            for w in offsets.windows(2) {
                let row = &ids[w[0] as usize..w[1] as usize];
                if row.is_empty() {
                    out_ids.extend(empty_id);
                }
                out_ids.extend(row.iter().filter_map(|&id| remap[id as usize]));
                out_offsets.push(out_ids.len() as u32);
            }
            DimensionData::String {
                dictionary,
                rows: StringRows::Multi {
                    offsets: out_offsets,
                    ids: out_ids,
                },
            }
        }
    }
}

/// A single-value string column from per-row values.
fn strings_data(values: Vec<Option<String>>) -> DimensionData {
    let mut unique: Vec<&Option<String>> = values.iter().collect();
    unique.sort();
    unique.dedup();
    let dictionary: Vec<Option<String>> = unique.into_iter().cloned().collect();
    let ids = values
        .iter()
        .map(|v| dictionary.binary_search(v).map_or(0, |i| i as u32))
        .collect();
    DimensionData::String {
        dictionary,
        rows: StringRows::Single(ids),
    }
}

fn vector_data(v: Vector) -> DimensionData {
    let nulls_of = |n: usize, is_null: &dyn Fn(usize) -> bool| -> RoaringBitmap {
        (0..n as u32).filter(|&r| is_null(r as usize)).collect()
    };
    match v {
        Vector::Long(values) => DimensionData::Long {
            nulls: nulls_of(values.len(), &|r| values[r].is_none()),
            values: values.iter().map(|x| x.unwrap_or(0)).collect(),
        },
        Vector::Double(values) => DimensionData::Double {
            nulls: nulls_of(values.len(), &|r| values[r].is_none()),
            values: values.iter().map(|x| x.unwrap_or(0.0)).collect(),
        },
        Vector::String(values) => strings_data(values),
    }
}

/// A [`SegmentProvider`] whose segments carry a query's virtual columns.
pub struct VirtualProvider<'p> {
    pub inner: &'p dyn SegmentProvider,
    pub columns: Arc<VirtualColumns>,
}

impl SegmentProvider for VirtualProvider<'_> {
    fn segments(&self, data_source: &str, intervals: &[Interval]) -> Vec<Arc<Segment>> {
        self.inner
            .segments(data_source, intervals)
            .into_iter()
            .map(|s| {
                let columns: Arc<dyn DerivedColumns> = self.columns.clone();
                Arc::new(Segment::derived(s, columns))
            })
            .collect()
    }
}
