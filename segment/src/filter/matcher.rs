//! [`RowMatcher`]: a [`Filter`] compiled against a [`RowLayout`] into a tree of leaves that read
//! one slot (or `__time`) each, evaluated with three-valued logic (see the parent module).

use std::cmp::Ordering;
use std::fmt;

use regex::Regex;

use super::{BoundOrdering, Filter, MatchValueType, Scalar, SearchQuerySpec, TIME_COLUMN};
use crate::error::{Result, SegmentError};
use crate::row::{InputRow, NumberText, RowLayout, Value, write_double};

/// A [`Filter`] compiled against a [`RowLayout`].
#[derive(Clone, Debug)]
pub struct RowMatcher {
    root: Node,
}

impl RowMatcher {
    pub(super) fn new(filter: &Filter, layout: &RowLayout) -> Result<RowMatcher> {
        Ok(RowMatcher {
            root: compile_node(filter, layout)?,
        })
    }

    /// Whether `row` passes the filter (the filter is true, not false or unknown).
    #[inline]
    pub fn matches(&self, row: &InputRow) -> bool {
        self.root.eval(row) == Some(true)
    }

    /// The filter's three-valued result on `row`: `Some(true)`, `Some(false)`, or `None` when it
    /// is unknown (a comparison against null), so callers can combine results under `not`.
    #[inline]
    pub fn eval(&self, row: &InputRow) -> Option<bool> {
        self.root.eval(row)
    }
}

/// Where a leaf reads its value.
#[derive(Clone, Copy, Debug)]
enum Source {
    Time,
    Slot(usize),
}

#[derive(Clone, Debug)]
enum Node {
    Const(bool),
    IsNull(Source),
    TextEq(Source, String),
    NumEq(Source, Num),
    /// Sorted, unique values, and whether null is among them.
    In(Source, Vec<String>, bool),
    TextRange(Source, Option<(String, bool)>, Option<(String, bool)>),
    NumRange(Source, Option<(Num, bool)>, Option<(Num, bool)>),
    Pattern(Source, Regex),
    Search(Source, SearchMatcher),
    /// Every source holds the same value (as text); null equals nothing.
    SameValue(Vec<Source>),
    And(Vec<Node>),
    Or(Vec<Node>),
    Not(Box<Node>),
}

fn source(field: &str, layout: &RowLayout) -> Result<Source> {
    if field == TIME_COLUMN {
        return Ok(Source::Time);
    }
    layout.slot(field).map(Source::Slot).ok_or_else(|| {
        SegmentError::Schema(format!(
            "filter reads field '{field}', which the row layout does not carry \
             (add the filter's fields to the layout's extra fields)"
        ))
    })
}

fn spec_error(message: String) -> SegmentError {
    SegmentError::Spec(format!("filter: {message}"))
}

fn compile_node(filter: &Filter, layout: &RowLayout) -> Result<Node> {
    if filter.extraction_fn().is_some() {
        return Err(spec_error(format!(
            "extractionFn on '{}' is supported in queries only, not in ingestion filters",
            filter.leaf_column().unwrap_or_default()
        )));
    }
    Ok(match filter {
        Filter::True => Node::Const(true),
        Filter::False => Node::Const(false),
        Filter::Selector {
            dimension, value, ..
        } => {
            let src = source(dimension, layout)?;
            match value {
                None => Node::IsNull(src),
                Some(v) => Node::TextEq(src, v.clone()),
            }
        }
        Filter::Null { column } => Node::IsNull(source(column, layout)?),
        Filter::Equals {
            column,
            match_value_type,
            match_value,
        } => {
            let src = source(column, layout)?;
            match match_value_type {
                MatchValueType::String => Node::TextEq(src, match_value.text()),
                numeric => Node::NumEq(src, numeric_literal(column, *numeric, match_value)?),
            }
        }
        Filter::In {
            dimension, values, ..
        } => {
            let src = source(dimension, layout)?;
            let has_null = values.iter().any(Option::is_none);
            let mut set: Vec<String> = values.iter().flatten().cloned().collect();
            set.sort_unstable();
            set.dedup();
            Node::In(src, set, has_null)
        }
        Filter::Bound {
            dimension,
            lower,
            upper,
            lower_strict,
            upper_strict,
            ordering,
            alpha_numeric,
            ..
        } => {
            if *alpha_numeric {
                return Err(spec_error(format!(
                    "bound on '{dimension}': alphaNumeric ordering is not supported yet (use \
                     lexicographic or numeric)"
                )));
            }
            let src = source(dimension, layout)?;
            match ordering {
                BoundOrdering::Lexicographic => Node::TextRange(
                    src,
                    lower.clone().map(|l| (l, *lower_strict)),
                    upper.clone().map(|u| (u, *upper_strict)),
                ),
                BoundOrdering::Numeric => {
                    let parse = |text: &Option<String>, strict: bool, which: &str| {
                        text.as_deref()
                            .map(|t| {
                                Num::parse(t).map(|n| (n, strict)).ok_or_else(|| {
                                    spec_error(format!(
                                        "bound on '{dimension}': {which} '{t}' is not a number \
                                         (ordering is numeric)"
                                    ))
                                })
                            })
                            .transpose()
                    };
                    Node::NumRange(
                        src,
                        parse(lower, *lower_strict, "lower")?,
                        parse(upper, *upper_strict, "upper")?,
                    )
                }
            }
        }
        Filter::Range {
            column,
            match_value_type,
            lower,
            upper,
            lower_open,
            upper_open,
        } => {
            let src = source(column, layout)?;
            match match_value_type {
                MatchValueType::String => Node::TextRange(
                    src,
                    lower.as_ref().map(|l| (l.text(), *lower_open)),
                    upper.as_ref().map(|u| (u.text(), *upper_open)),
                ),
                numeric => {
                    let bound = |s: &Option<Scalar>, open: bool| {
                        s.as_ref()
                            .map(|s| numeric_literal(column, *numeric, s).map(|n| (n, open)))
                            .transpose()
                    };
                    Node::NumRange(src, bound(lower, *lower_open)?, bound(upper, *upper_open)?)
                }
            }
        }
        Filter::Like {
            dimension,
            pattern,
            escape,
            ..
        } => Node::Pattern(
            source(dimension, layout)?,
            like_regex(dimension, pattern, escape.as_deref())?,
        ),
        Filter::Regex {
            dimension, pattern, ..
        } => {
            let regex = Regex::new(pattern).map_err(|e| {
                spec_error(format!(
                    "regex on '{dimension}': bad pattern '{pattern}': {e}"
                ))
            })?;
            Node::Pattern(source(dimension, layout)?, regex)
        }
        Filter::And { fields } => Node::And(
            fields
                .iter()
                .map(|f| compile_node(f, layout))
                .collect::<Result<_>>()?,
        ),
        Filter::Or { fields } => Node::Or(
            fields
                .iter()
                .map(|f| compile_node(f, layout))
                .collect::<Result<_>>()?,
        ),
        Filter::Not { field } => Node::Not(Box::new(compile_node(field, layout)?)),
        Filter::Interval {
            dimension,
            intervals,
            ..
        } => {
            let src = source(dimension, layout)?;
            let mut ranges = Vec::with_capacity(intervals.len());
            for text in intervals {
                let interval = crate::time::Interval::parse(text)
                    .map_err(|e| spec_error(format!("interval on '{dimension}': '{text}': {e}")))?;
                ranges.push(Node::NumRange(
                    src,
                    Some((Num::Int(interval.start_ms), false)),
                    Some((Num::Int(interval.end_ms), true)),
                ));
            }
            Node::Or(ranges)
        }
        Filter::Search {
            dimension, query, ..
        } => Node::Search(
            source(dimension, layout)?,
            SearchMatcher::new(query)
                .map_err(|e| spec_error(format!("search on '{dimension}': {e}")))?,
        ),
        Filter::ColumnComparison { dimensions } => {
            if dimensions.iter().any(|d| d.extraction_fn.is_some()) {
                return Err(spec_error(
                    "columnComparison with extraction functions is supported in queries only"
                        .into(),
                ));
            }
            Node::SameValue(
                dimensions
                    .iter()
                    .map(|d| source(&d.dimension, layout))
                    .collect::<Result<_>>()?,
            )
        }
        Filter::Expression { .. } => {
            return Err(spec_error(
                "expression filters are evaluated by the query engine only, not in ingestion \
                 filters"
                    .into(),
            ));
        }
        Filter::Javascript(_) | Filter::Spatial(_) => {
            return Err(spec_error(
                "javascript and spatial filters are not supported".into(),
            ));
        }
    })
}

fn scalar_number(value: &Scalar) -> Option<Num> {
    match value {
        Scalar::Long(v) => Some(Num::Int(*v)),
        Scalar::Double(v) => Some(Num::Float(*v)),
        Scalar::String(v) => Num::parse(v),
    }
}

fn numeric_literal(column: &str, kind: MatchValueType, value: &Scalar) -> Result<Num> {
    let n = scalar_number(value).ok_or_else(|| {
        spec_error(format!(
            "'{column}': value '{}' is not a number (matchValueType {kind:?})",
            value.text()
        ))
    })?;
    Ok(match (kind, n) {
        (MatchValueType::Double | MatchValueType::Float, Num::Int(i)) => Num::Float(i as f64),
        (_, n) => n,
    })
}

/// Translates a SQL `LIKE` pattern into an anchored regular expression.
fn like_regex(dimension: &str, pattern: &str, escape: Option<&str>) -> Result<Regex> {
    let escape = match escape {
        None => None,
        Some(e) => {
            let mut chars = e.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Some(c),
                _ => {
                    return Err(spec_error(format!(
                        "like on '{dimension}': escape '{e}' must be one character"
                    )));
                }
            }
        }
    };
    let mut out = String::with_capacity(pattern.len() + 8);
    out.push_str("(?s)^");
    let mut chars = pattern.chars();
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            let quoted = chars.next().ok_or_else(|| {
                spec_error(format!(
                    "like on '{dimension}': pattern '{pattern}' ends with its escape character"
                ))
            })?;
            out.push_str(&regex::escape(quoted.encode_utf8(&mut buf)));
        } else if c == '%' {
            out.push_str(".*");
        } else if c == '_' {
            out.push('.');
        } else {
            out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
        }
    }
    out.push('$');
    Regex::new(&out).map_err(|e| spec_error(format!("like on '{dimension}': {e}")))
}

/// A number as compared by numeric filters: integers exactly, anything else as `f64`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn parse(text: &str) -> Option<Num> {
        let text = text.trim();
        if let Ok(i) = text.parse::<i64>() {
            return Some(Num::Int(i));
        }
        text.parse::<f64>()
            .ok()
            .filter(|f| !f.is_nan())
            .map(Num::Float)
    }

    fn as_f64(self) -> f64 {
        match self {
            Num::Int(i) => i as f64,
            Num::Float(f) => f,
        }
    }

    fn compare(self, other: Num) -> Option<Ordering> {
        match (self, other) {
            (Num::Int(a), Num::Int(b)) => Some(a.cmp(&b)),
            _ => self.as_f64().partial_cmp(&other.as_f64()),
        }
    }
}

/// Whether `value` lies within the optional lower and upper bounds (each `(bound, open)`).
#[inline]
fn within<T>(
    value: &T,
    lower: &Option<(T, bool)>,
    upper: &Option<(T, bool)>,
    cmp: impl Fn(&T, &T) -> Option<Ordering>,
) -> bool {
    if let Some((l, open)) = lower {
        match cmp(value, l) {
            Some(Ordering::Greater) => {}
            Some(Ordering::Equal) if !open => {}
            _ => return false,
        }
    }
    if let Some((u, open)) = upper {
        match cmp(value, u) {
            Some(Ordering::Less) => {}
            Some(Ordering::Equal) if !open => {}
            _ => return false,
        }
    }
    true
}

impl Node {
    /// `Some(true)`/`Some(false)`, or `None` for unknown (a comparison against null).
    fn eval(&self, row: &InputRow) -> Option<bool> {
        match self {
            Node::Const(b) => Some(*b),
            Node::IsNull(src) => Some(with_value(row, *src, is_null)),
            Node::TextEq(src, target) => {
                with_value(row, *src, |v| any_text(v, |s| s == target.as_str()))
            }
            Node::NumEq(src, target) => with_value(row, *src, |v| {
                any_num(v, |n| n.compare(*target) == Some(Ordering::Equal))
            }),
            Node::In(src, set, has_null) => with_value(row, *src, |v| {
                if is_null(v) {
                    return if *has_null { Some(true) } else { None };
                }
                any_text(v, |s| {
                    set.binary_search_by(|probe| probe.as_str().cmp(s)).is_ok()
                })
            }),
            Node::TextRange(src, lower, upper) => with_value(row, *src, |v| {
                any_text(v, |s| {
                    within(&s, &text_bound(lower), &text_bound(upper), |a, b| {
                        Some(a.cmp(b))
                    })
                })
            }),
            Node::NumRange(src, lower, upper) => with_value(row, *src, |v| {
                any_num(v, |n| within(&n, lower, upper, |a, b| a.compare(*b)))
            }),
            Node::Pattern(src, regex) => {
                with_value(row, *src, |v| any_text(v, |s| regex.is_match(s)))
            }
            Node::Search(src, matcher) => {
                with_value(row, *src, |v| any_text(v, |s| matcher.matches(s)))
            }
            Node::SameValue(sources) => same_value(row, sources),
            Node::And(nodes) => {
                let mut unknown = false;
                for node in nodes {
                    match node.eval(row) {
                        Some(false) => return Some(false),
                        None => unknown = true,
                        Some(true) => {}
                    }
                }
                if unknown { None } else { Some(true) }
            }
            Node::Or(nodes) => {
                let mut unknown = false;
                for node in nodes {
                    match node.eval(row) {
                        Some(true) => return Some(true),
                        None => unknown = true,
                        Some(false) => {}
                    }
                }
                if unknown { None } else { Some(false) }
            }
            Node::Not(node) => node.eval(row).map(|b| !b),
        }
    }
}

/// Whether every source of `row` holds the same value, compared as text; a null value equals
/// nothing (SQL's `=`), and multi-value rows compare as whole lists.
fn same_value(row: &InputRow, sources: &[Source]) -> Option<bool> {
    let text = |src: Source| -> Option<Vec<String>> {
        with_value(row, src, |v| match v {
            Value::Null => None,
            Value::Strings(l) if l.is_empty() => None,
            Value::Strings(l) => Some(l.clone()),
            other => {
                let mut one = None;
                any_text(other, |s| {
                    one = Some(s.to_string());
                    true
                });
                one.map(|s| vec![s])
            }
        })
    };
    let mut first: Option<Vec<String>> = None;
    for (i, &src) in sources.iter().enumerate() {
        let value = text(src)?;
        if i == 0 {
            first = Some(value);
        } else if first.as_ref() != Some(&value) {
            return Some(false);
        }
    }
    Some(true)
}

/// A compiled [`SearchQuerySpec`].
#[derive(Clone, Debug)]
pub struct SearchMatcher {
    kind: SearchKind,
}

#[derive(Clone, Debug)]
enum SearchKind {
    /// Needles (lowercased when not case sensitive), all of which must occur.
    Contains(Vec<String>, bool),
    Regex(Regex),
}

impl SearchMatcher {
    pub fn new(spec: &SearchQuerySpec) -> std::result::Result<SearchMatcher, String> {
        let fold = |s: &str, case_sensitive: bool| {
            if case_sensitive {
                s.to_string()
            } else {
                s.to_lowercase()
            }
        };
        let kind = match spec {
            SearchQuerySpec::Contains {
                value,
                case_sensitive,
            } => SearchKind::Contains(vec![fold(value, *case_sensitive)], *case_sensitive),
            SearchQuerySpec::InsensitiveContains { value } => {
                SearchKind::Contains(vec![value.to_lowercase()], false)
            }
            SearchQuerySpec::Fragment {
                values,
                case_sensitive,
            } => SearchKind::Contains(
                values.iter().map(|v| fold(v, *case_sensitive)).collect(),
                *case_sensitive,
            ),
            SearchQuerySpec::Regex { pattern } => SearchKind::Regex(
                Regex::new(pattern).map_err(|e| format!("bad pattern '{pattern}': {e}"))?,
            ),
        };
        Ok(SearchMatcher { kind })
    }

    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match &self.kind {
            SearchKind::Contains(needles, true) => needles.iter().all(|n| value.contains(n)),
            SearchKind::Contains(needles, false) => {
                let folded = value.to_lowercase();
                needles.iter().all(|n| folded.contains(n.as_str()))
            }
            SearchKind::Regex(regex) => regex.is_match(value),
        }
    }
}

fn text_bound(bound: &Option<(String, bool)>) -> Option<(&str, bool)> {
    bound.as_ref().map(|(s, open)| (s.as_str(), *open))
}

#[inline]
fn with_value<R>(row: &InputRow, src: Source, f: impl FnOnce(&Value) -> R) -> R {
    match src {
        Source::Time => f(&Value::Long(row.timestamp_ms)),
        Source::Slot(i) => f(row.values.get(i).unwrap_or(&Value::Null)),
    }
}

fn is_null(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Strings(v) => v.is_empty(),
        _ => false,
    }
}

/// Applies `pred` to the text of each value; `None` when the value is null.
#[inline]
fn any_text(value: &Value, mut pred: impl FnMut(&str) -> bool) -> Option<bool> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(pred(s)),
        Value::Strings(v) if v.is_empty() => None,
        Value::Strings(v) => Some(v.iter().any(|s| pred(s))),
        Value::Long(n) => {
            let mut buf = NumberText::default();
            // A long always fits NumberText.
            let _ = fmt::Write::write_fmt(&mut buf, format_args!("{n}"));
            Some(pred(buf.as_str()))
        }
        Value::Double(d) => {
            let mut buf = NumberText::default();
            if write_double(&mut buf, *d).is_ok() {
                Some(pred(buf.as_str()))
            } else {
                let mut text = String::new();
                let _ = write_double(&mut text, *d);
                Some(pred(&text))
            }
        }
    }
}

/// Applies `pred` to each value as a number; text that is not a number does not match; `None`
/// when the value is null.
#[inline]
fn any_num(value: &Value, mut pred: impl FnMut(Num) -> bool) -> Option<bool> {
    match value {
        Value::Null => None,
        Value::Long(n) => Some(pred(Num::Int(*n))),
        Value::Double(d) => Some(pred(Num::Float(*d))),
        Value::String(s) => Some(Num::parse(s).is_some_and(pred)),
        Value::Strings(v) if v.is_empty() => None,
        Value::Strings(v) => Some(v.iter().any(|s| Num::parse(s).is_some_and(&mut pred))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::{DimensionSchema, Schema};
    use crate::time::Granularity;

    fn layout(fields: &[&str]) -> RowLayout {
        let schema = Schema {
            data_source: "t".into(),
            dimensions: fields.iter().map(|f| DimensionSchema::string(*f)).collect(),
            metrics: vec![],
            query_granularity: Granularity::None,
            segment_granularity: Granularity::DAY,
            rollup: false,
            time_position: 0,
        };
        RowLayout::new(&schema, &[])
    }

    fn parse(json: &str) -> Filter {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    fn row(ts: i64, values: Vec<Value>) -> InputRow {
        InputRow {
            timestamp_ms: ts,
            values,
        }
    }

    fn s(text: &str) -> Value {
        Value::String(text.into())
    }

    fn check(json: &str, fields: &[&str], cases: &[(Vec<Value>, bool)]) {
        let matcher = parse(json).compile(&layout(fields)).unwrap();
        for (values, expected) in cases {
            assert_eq!(
                matcher.matches(&row(0, values.clone())),
                *expected,
                "{json} on {values:?}"
            );
        }
    }

    #[test]
    fn selector_in_and_null_semantics() {
        let sel = r#"{"type":"selector","dimension":"a","value":"x"}"#;
        check(
            sel,
            &["a"],
            &[
                (vec![s("x")], true),
                (vec![s("y")], false),
                (vec![Value::Null], false),
                (vec![Value::Strings(vec!["y".into(), "x".into()])], true),
                (vec![Value::Strings(vec![])], false),
            ],
        );
        let not_sel = r#"{"type":"not","field":{"type":"selector","dimension":"a","value":"x"}}"#;
        check(
            not_sel,
            &["a"],
            &[
                (vec![s("x")], false),
                (vec![s("y")], true),
                // Unknown stays unknown under NOT, as in Druid's SQL-compatible mode.
                (vec![Value::Null], false),
            ],
        );
        let sel_null = r#"{"type":"selector","dimension":"a","value":null}"#;
        check(
            sel_null,
            &["a"],
            &[
                (vec![Value::Null], true),
                (vec![s("")], false),
                (vec![Value::Strings(vec![])], true),
            ],
        );
        let in_f = r#"{"type":"in","dimension":"a","values":["b","a",null,"7"]}"#;
        check(
            in_f,
            &["a"],
            &[
                (vec![s("a")], true),
                (vec![s("c")], false),
                (vec![Value::Null], true),
                (vec![Value::Long(7)], true),
            ],
        );
        let or_f = r#"{"type":"or","fields":[{"type":"selector","dimension":"a","value":"x"},{"type":"true"}]}"#;
        check(or_f, &["a"], &[(vec![Value::Null], true)]);
    }

    #[test]
    fn large_in_list() {
        let values: Vec<String> = (0..10_000).map(|i| format!("\"id{i}\"")).collect();
        let json = format!(
            r#"{{"type":"in","dimension":"a","values":[{}]}}"#,
            values.join(",")
        );
        let m = parse(&json).compile(&layout(&["a"])).unwrap();
        assert!(m.matches(&row(0, vec![s("id9999")])));
        assert!(m.matches(&row(0, vec![s("id0")])));
        assert!(!m.matches(&row(0, vec![s("id10000")])));
    }

    #[test]
    fn numeric_and_text_comparisons() {
        let bound = r#"{"type":"bound","dimension":"a","lower":"2","upper":"10","upperStrict":true,"ordering":"numeric"}"#;
        check(
            bound,
            &["a"],
            &[
                (vec![s("2")], true),
                (vec![s("9.5")], true),
                (vec![Value::Long(10)], false),
                (vec![Value::Double(3.0)], true),
                (vec![s("abc")], false),
            ],
        );
        // Lexicographically "10" < "2".
        let lex = r#"{"type":"bound","dimension":"a","lower":"2"}"#;
        check(lex, &["a"], &[(vec![s("10")], false), (vec![s("3")], true)]);
        let range =
            r#"{"type":"range","column":"a","matchValueType":"LONG","lower":5,"lowerOpen":true}"#;
        check(
            range,
            &["a"],
            &[
                (vec![Value::Long(5)], false),
                (vec![Value::Long(6)], true),
                (vec![s("7")], true),
            ],
        );
        let eq = r#"{"type":"equals","column":"a","matchValueType":"DOUBLE","matchValue":1}"#;
        check(
            eq,
            &["a"],
            &[
                (vec![Value::Double(1.0)], true),
                (vec![Value::Long(1)], true),
                (vec![s("1.5")], false),
            ],
        );
        let eq_text =
            r#"{"type":"equals","column":"a","matchValueType":"STRING","matchValue":"1.0"}"#;
        check(
            eq_text,
            &["a"],
            &[
                (vec![Value::Double(1.0)], true),
                (vec![Value::Long(1)], false),
            ],
        );
    }

    #[test]
    fn like_and_regex() {
        let like = r#"{"type":"like","dimension":"a","pattern":"a\\%b_%","escape":"\\"}"#;
        check(
            like,
            &["a"],
            &[
                (vec![s("a%bcdef")], true),
                (vec![s("a%b")], false),
                (vec![s("axbc")], false),
                (vec![s("A%bc")], false),
            ],
        );
        let like_dot = r#"{"type":"like","dimension":"a","pattern":"a.c"}"#;
        check(
            like_dot,
            &["a"],
            &[(vec![s("a.c")], true), (vec![s("abc")], false)],
        );
        let regex = r#"{"type":"regex","dimension":"a","pattern":"b+c"}"#;
        check(
            regex,
            &["a"],
            &[
                (vec![s("abbcd")], true),
                (vec![s("ac")], false),
                (vec![Value::Null], false),
            ],
        );
        let bad = parse(r#"{"type":"regex","dimension":"a","pattern":"("}"#);
        assert!(bad.compile(&layout(&["a"])).is_err());
    }

    #[test]
    fn interval_search_and_column_comparison() {
        let interval = r#"{"type":"interval","dimension":"a","intervals":["1970-01-01T00:00:00.010Z/1970-01-01T00:00:00.020Z","1970-01-01T00:00:01Z/1970-01-01T00:00:02Z"]}"#;
        check(
            interval,
            &["a"],
            &[
                (vec![Value::Long(10)], true),
                (vec![Value::Long(19)], true),
                (vec![Value::Long(20)], false),
                (vec![Value::Long(1500)], true),
                (vec![s("15")], true),
                (vec![Value::Null], false),
            ],
        );
        let search =
            r#"{"type":"search","dimension":"a","query":{"type":"contains","value":"Ab"}}"#;
        check(
            search,
            &["a"],
            &[
                (vec![s("xaby")], true),
                (vec![s("xy")], false),
                (vec![Value::Null], false),
            ],
        );
        let sensitive = r#"{"type":"search","dimension":"a","query":{"type":"fragment","values":["Ab","c"],"caseSensitive":true}}"#;
        check(
            sensitive,
            &["a"],
            &[(vec![s("xAbc")], true), (vec![s("xabc")], false)],
        );
        let compare = r#"{"type":"columnComparison","dimensions":["a","b"]}"#;
        check(
            compare,
            &["a", "b"],
            &[
                (vec![s("1"), s("1")], true),
                (vec![s("1"), Value::Long(1)], true),
                (vec![s("1"), s("2")], false),
                (vec![Value::Null, Value::Null], false),
            ],
        );
        let with_extraction = parse(
            r#"{"type":"selector","dimension":"a","value":"x","extractionFn":{"type":"upper"}}"#,
        );
        assert!(with_extraction.compile(&layout(&["a"])).is_err());
        let alpha = parse(r#"{"type":"bound","dimension":"a","lower":"1","alphaNumeric":true}"#);
        assert!(alpha.compile(&layout(&["a"])).is_err());
    }

    #[test]
    fn time_column_and_missing_fields() {
        let f = parse(
            r#"{"type":"range","column":"__time","matchValueType":"LONG","lower":1000,"upper":2000,"upperOpen":true}"#,
        );
        let m = f.compile(&layout(&["a"])).unwrap();
        assert!(m.matches(&row(1000, vec![Value::Null])));
        assert!(!m.matches(&row(2000, vec![Value::Null])));
        let err = parse(r#"{"type":"null","column":"zzz"}"#)
            .compile(&layout(&["a"]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("'zzz'"), "{err}");
    }
}
