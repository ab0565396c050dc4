//! Druid's extraction functions, compiled once per query ([`Extraction::new`]) and applied to
//! single values ([`Extraction::apply`]): on a string column once per dictionary value, on a
//! numeric column or `__time` once per row. They serve `extraction` dimension specs (through a
//! virtual column), `extractionFn` on filters and `dimSelector` havings.
//!
//! Semantics follow Druid's SQL-compatible mode: a null input stays null unless the function
//! maps it (`regex` with `replaceMissingValue`, `stringFormat` with `nullString`); numbers are
//! read as their text, except by `timeFormat` (milliseconds) and `bucket` (the number).

use jiff::tz::TimeZone;
use regex::Regex;

use grove_segment::filter::{ExtractionFn, SearchMatcher};
use grove_segment::time::Granularity;

use crate::error::{QueryError, Result};
use crate::expr::Scalar;
use crate::granularity::{QueryGranularity, parse_zone};
use crate::timefmt::{JodaPattern, iso, parse_iso};

/// A compiled extraction function.
#[derive(Clone, Debug)]
pub struct Extraction {
    step: Step,
}

#[derive(Clone, Debug)]
enum Step {
    Regex {
        regex: Regex,
        index: usize,
        replace: Option<Option<String>>,
    },
    Partial(Regex),
    Search(SearchMatcher),
    Substring {
        index: usize,
        length: Option<usize>,
    },
    Strlen,
    TimeFormat {
        format: Option<JodaPattern>,
        zone: Option<TimeZone>,
        granularity: Option<QueryGranularity>,
        as_millis: bool,
    },
    Time {
        parse: JodaPattern,
        format: JodaPattern,
    },
    Cascade(Vec<Extraction>),
    StringFormat {
        parts: Vec<Option<String>>,
        null: NullHandling,
    },
    Upper,
    Lower,
    Bucket {
        size: f64,
        offset: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NullHandling {
    NullString,
    EmptyString,
    ReturnNull,
}

fn bad(message: impl std::fmt::Display) -> QueryError {
    QueryError::bad(format!("extractionFn: {message}"))
}

impl Extraction {
    pub fn new(spec: &ExtractionFn) -> Result<Extraction> {
        let step = match spec {
            ExtractionFn::Regex {
                expr,
                index,
                replace_missing_value,
                replace_missing_value_with,
            } => {
                let regex = Regex::new(expr).map_err(|e| bad(format!("regex '{expr}': {e}")))?;
                if *index >= regex.captures_len() {
                    return Err(bad(format!(
                        "regex '{expr}' has no group {index} (it has {})",
                        regex.captures_len() - 1
                    )));
                }
                Step::Regex {
                    regex,
                    index: *index,
                    replace: replace_missing_value.then(|| replace_missing_value_with.clone()),
                }
            }
            ExtractionFn::Partial { expr } => {
                Step::Partial(Regex::new(expr).map_err(|e| bad(format!("partial '{expr}': {e}")))?)
            }
            ExtractionFn::SearchQuery { query } => {
                Step::Search(SearchMatcher::new(query).map_err(bad)?)
            }
            ExtractionFn::Substring { index, length } => Step::Substring {
                index: *index,
                length: *length,
            },
            ExtractionFn::Strlen => Step::Strlen,
            ExtractionFn::TimeFormat {
                format,
                time_zone,
                granularity,
                as_millis,
                ..
            } => {
                let zone = match time_zone {
                    Some(z) => parse_zone(z).map_err(bad)?,
                    None => None,
                };
                let granularity = match granularity {
                    None => None,
                    Some(g) => {
                        let base: Granularity = serde_json::from_value(g.clone())
                            .map_err(|e| bad(format!("timeFormat granularity: {e}")))?;
                        Some(QueryGranularity {
                            base,
                            zone: zone.clone(),
                        })
                    }
                };
                Step::TimeFormat {
                    format: format.as_deref().map(JodaPattern::parse).transpose()?,
                    zone,
                    granularity,
                    as_millis: *as_millis,
                }
            }
            ExtractionFn::Time {
                time_format,
                result_format,
                ..
            } => Step::Time {
                parse: JodaPattern::parse(time_format)?,
                format: JodaPattern::parse(result_format)?,
            },
            ExtractionFn::Cascade { extraction_fns } => Step::Cascade(
                extraction_fns
                    .iter()
                    .map(Extraction::new)
                    .collect::<Result<_>>()?,
            ),
            ExtractionFn::StringFormat {
                format,
                null_handling,
            } => {
                let null = match null_handling.as_deref() {
                    None | Some("nullString") => NullHandling::NullString,
                    Some("emptyString") => NullHandling::EmptyString,
                    Some("returnNull") => NullHandling::ReturnNull,
                    Some(other) => {
                        return Err(bad(format!(
                            "stringFormat nullHandling '{other}' (nullString, emptyString or \
                             returnNull)"
                        )));
                    }
                };
                Step::StringFormat {
                    parts: format_parts(format)?,
                    null,
                }
            }
            ExtractionFn::Upper { .. } => Step::Upper,
            ExtractionFn::Lower { .. } => Step::Lower,
            ExtractionFn::Bucket { size, offset } => {
                if size.is_nan() || *size <= 0.0 {
                    return Err(bad("bucket size must be positive"));
                }
                Step::Bucket {
                    size: *size,
                    offset: *offset,
                }
            }
            ExtractionFn::Javascript(_)
            | ExtractionFn::Lookup(_)
            | ExtractionFn::RegisteredLookup(_) => {
                return Err(QueryError::unsupported(
                    "javascript and lookup extraction functions are not supported by Grove",
                ));
            }
        };
        Ok(Extraction { step })
    }

    /// Whether the function reads numbers as numbers (so a numeric column is applied per row
    /// with its values, not their text).
    pub fn reads_numbers(&self) -> bool {
        match &self.step {
            Step::TimeFormat { .. } | Step::Bucket { .. } => true,
            Step::Cascade(steps) => steps.first().is_some_and(Extraction::reads_numbers),
            _ => false,
        }
    }

    /// The extracted text of `value`, or null.
    pub fn apply(&self, value: &Scalar) -> Option<String> {
        let text = || crate::expr::scalar_text(value);
        match &self.step {
            Step::Regex {
                regex,
                index,
                replace,
            } => {
                let input = text();
                let found = regex
                    .captures(input.as_deref().unwrap_or(""))
                    .and_then(|c| c.get(*index).map(|m| m.as_str().to_string()));
                match (found, replace) {
                    (Some(m), _) => Some(m),
                    (None, Some(with)) => with.clone(),
                    (None, None) => input,
                }
            }
            Step::Partial(regex) => text().filter(|t| regex.is_match(t)),
            Step::Search(matcher) => text().filter(|t| matcher.matches(t)),
            Step::Substring { index, length } => {
                let t = text()?;
                let chars: Vec<char> = t.chars().collect();
                if *index >= chars.len() {
                    return None;
                }
                let end = length.map_or(chars.len(), |l| (index + l).min(chars.len()));
                Some(chars[*index..end].iter().collect())
            }
            Step::Strlen => text().map(|t| t.encode_utf16().count().to_string()),
            Step::TimeFormat {
                format,
                zone,
                granularity,
                as_millis,
            } => {
                let ms = match value {
                    Scalar::Null => return None,
                    Scalar::Long(v) => *v,
                    Scalar::Double(d) => *d as i64,
                    Scalar::String(s) if *as_millis => s.trim().parse().ok()?,
                    Scalar::String(s) => parse_iso(s, None)?,
                };
                let ms = granularity.as_ref().map_or(ms, |g| g.truncate(ms));
                match format {
                    None => iso(ms, zone.as_ref()),
                    Some(f) => f.format(ms, zone.as_ref()),
                }
            }
            Step::Time { parse, format } => {
                let t = text()?;
                match parse.parse_text(&t, None) {
                    Some(ms) => format.format(ms, None),
                    None => Some(t),
                }
            }
            Step::Cascade(steps) => {
                let mut current = value.clone();
                for step in steps {
                    current = step.apply(&current).map_or(Scalar::Null, Scalar::String);
                }
                crate::expr::scalar_text(&current)
            }
            Step::StringFormat { parts, null } => {
                let t = match (text(), null) {
                    (Some(t), _) => t,
                    (None, NullHandling::ReturnNull) => return None,
                    (None, NullHandling::EmptyString) => String::new(),
                    (None, NullHandling::NullString) => "null".to_string(),
                };
                let mut out = String::new();
                for part in parts {
                    match part {
                        Some(literal) => out.push_str(literal),
                        None => out.push_str(&t),
                    }
                }
                Some(out)
            }
            Step::Upper => text().map(|t| t.to_uppercase()),
            Step::Lower => text().map(|t| t.to_lowercase()),
            Step::Bucket { size, offset } => {
                let x = match value {
                    Scalar::Long(v) => *v as f64,
                    Scalar::Double(d) => *d,
                    Scalar::String(s) => crate::expr::parse_double(s)?,
                    Scalar::Null => return None,
                };
                let bucket = ((x - offset) / size).floor() * size + offset;
                Some(if bucket.fract() == 0.0 && bucket.abs() < 9.0e15 {
                    (bucket as i64).to_string()
                } else {
                    grove_segment::row::format_double(bucket)
                })
            }
        }
    }
}

/// A `stringFormat` pattern cut into literal text and `%s` slots (`None`); `%%` is a percent
/// sign. Other conversions are refused.
fn format_parts(format: &str) -> Result<Vec<Option<String>>> {
    let mut parts = Vec::new();
    let mut literal = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            literal.push(c);
            continue;
        }
        match chars.next() {
            Some('%') => literal.push('%'),
            Some('s') => {
                parts.push(Some(std::mem::take(&mut literal)));
                parts.push(None);
            }
            other => {
                return Err(QueryError::unsupported(format!(
                    "extractionFn: stringFormat conversion '%{}' is not supported (only %s)",
                    other.map(String::from).unwrap_or_default()
                )));
            }
        }
    }
    parts.push(Some(literal));
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(json: serde_json::Value) -> Extraction {
        Extraction::new(&serde_json::from_value(json).unwrap()).unwrap()
    }

    fn s(text: &str) -> Scalar {
        Scalar::String(text.into())
    }

    #[test]
    fn druid_extraction_functions() {
        use serde_json::json;
        let regex = ex(json!({"type": "regex", "expr": "(\\w)\\w*", "index": 1}));
        assert_eq!(regex.apply(&s("hello world")), Some("h".into()));
        assert_eq!(regex.apply(&s("!!")), Some("!!".into()));
        let replaced = ex(
            json!({"type": "regex", "expr": "^a(b)", "replaceMissingValue": true, "replaceMissingValueWith": "none"}),
        );
        assert_eq!(replaced.apply(&s("xyz")), Some("none".into()));
        assert_eq!(replaced.apply(&Scalar::Null), Some("none".into()));
        let partial = ex(json!({"type": "partial", "expr": "^U"}));
        assert_eq!(partial.apply(&s("US")), Some("US".into()));
        assert_eq!(partial.apply(&s("FR")), None);
        let search = ex(
            json!({"type": "searchQuery", "query": {"type": "insensitive_contains", "value": "r"}}),
        );
        assert_eq!(search.apply(&s("FR")), Some("FR".into()));
        let sub = ex(json!({"type": "substring", "index": 1, "length": 2}));
        assert_eq!(sub.apply(&s("abcd")), Some("bc".into()));
        assert_eq!(sub.apply(&s("a")), None);
        assert_eq!(sub.apply(&Scalar::Long(12345)), Some("23".into()));
        assert_eq!(
            ex(json!({"type": "strlen"})).apply(&s("héllo")),
            Some("5".into())
        );
        assert_eq!(ex(json!({"type": "strlen"})).apply(&Scalar::Null), None);
        let day = grove_segment::time::parse_iso_timestamp("2024-03-10T12:34:56Z").unwrap();
        let time = ex(json!({"type": "timeFormat", "format": "EEEE", "timeZone": "Asia/Tokyo"}));
        assert_eq!(time.apply(&Scalar::Long(day)), Some("Sunday".into()));
        let hour = ex(json!({"type": "timeFormat", "granularity": "hour"}));
        assert_eq!(
            hour.apply(&Scalar::Long(day)),
            Some("2024-03-10T12:00:00.000Z".into())
        );
        let reformat =
            ex(json!({"type": "time", "timeFormat": "dd/MM/yyyy", "resultFormat": "yyyy-MM-dd"}));
        assert_eq!(reformat.apply(&s("10/03/2024")), Some("2024-03-10".into()));
        let cascade = ex(json!({"type": "cascade", "extractionFns": [
            {"type": "substring", "index": 0, "length": 3}, {"type": "upper"}]}));
        assert_eq!(cascade.apply(&s("france")), Some("FRA".into()));
        let format = ex(json!({"type": "stringFormat", "format": "[%s] 100%%"}));
        assert_eq!(format.apply(&s("x")), Some("[x] 100%".into()));
        assert_eq!(format.apply(&Scalar::Null), Some("[null] 100%".into()));
        let bucket = ex(json!({"type": "bucket", "size": 10, "offset": 2}));
        assert_eq!(bucket.apply(&Scalar::Long(25)), Some("22".into()));
        assert_eq!(bucket.apply(&s("x")), None);
    }

    #[test]
    fn bad_functions_are_errors() {
        use serde_json::json;
        for (spec, part) in [
            (json!({"type": "regex", "expr": "("}), "regex"),
            (json!({"type": "regex", "expr": "a", "index": 2}), "group 2"),
            (
                json!({"type": "timeFormat", "timeZone": "Mars/Base"}),
                "Mars/Base",
            ),
            (json!({"type": "stringFormat", "format": "%d"}), "%d"),
        ] {
            let f: ExtractionFn = serde_json::from_value(spec).unwrap();
            let e = Extraction::new(&f).unwrap_err();
            assert!(e.message.contains(part), "{e}");
        }
    }
}
