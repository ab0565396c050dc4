//! Row filters: the model of Druid's filter JSON (used by `transformSpec.filter` at ingestion, and
//! meant to be reused by the query engine) and [`RowMatcher`], a filter compiled against a
//! [`RowLayout`] that evaluates it on raw [`crate::row::InputRow`]s.
//!
//! Main types: [`Filter`] (serde enum tagged by `"type"`: `selector`, `equals`, `in`, `bound`,
//! `range`, `like`, `regex`, `null`, `and`, `or`, `not`, `true`, `false`), [`Scalar`],
//! [`MatchValueType`], [`BoundOrdering`], [`RowMatcher`].
//!
//! Semantics (Druid's SQL-compatible mode, the default since Druid 28):
//! - values compare by their text form (a long `5` is `"5"`, a double `1` is `"1.0"` as Java prints
//!   it) except in numeric `bound`s, `equals`/`range` with a numeric `matchValueType`, which compare
//!   numbers (a string that is not a number never matches those);
//! - a multi-value row matches when any of its values matches; an empty list is null;
//! - `null` and `""` are different values;
//! - three-valued logic: a comparison against a null value is *unknown*, which `not` keeps unknown,
//!   so `not(selector x = "a")` matches neither `"a"` nor null rows, as in Druid; a row passes
//!   only when the whole filter is *true*;
//! - the field `__time` is the row's timestamp (a long, in ms), not an input field.
//!
//! Invariants: a [`RowMatcher`] never allocates per row for string and long values; `in` looks its
//! values up in a sorted `Vec` by binary search, so a 10,000-value list costs a few compares a row.

mod extraction;
mod matcher;

use std::fmt;

use serde::de::{self, Error as _};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Result;
use crate::row::RowLayout;

pub use extraction::{ExtractionFn, SearchQuerySpec};
pub use matcher::{RowMatcher, SearchMatcher};

/// The name filters use for the row timestamp.
pub const TIME_COLUMN: &str = "__time";

/// A Druid filter. Field names and JSON shapes follow Druid's native filter docs. Properties
/// Druid ignores are ignored here too (`filterTuning`, unknown keys); `extractionFn` is parsed
/// into [`ExtractionFn`] and evaluated by the query engine (ingestion filters refuse it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum Filter {
    /// `dimension` equals `value` (as text); a null `value` matches null rows.
    #[serde(rename_all = "camelCase")]
    Selector {
        dimension: String,
        #[serde(default, deserialize_with = "opt_text")]
        value: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extraction_fn: Option<ExtractionFn>,
    },
    /// `column` equals `matchValue`, compared as `matchValueType`.
    #[serde(rename_all = "camelCase")]
    Equals {
        column: String,
        match_value_type: MatchValueType,
        match_value: Scalar,
    },
    /// `dimension` is one of `values` (as text; a null entry matches null rows).
    #[serde(rename_all = "camelCase")]
    In {
        dimension: String,
        #[serde(deserialize_with = "opt_texts")]
        values: Vec<Option<String>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extraction_fn: Option<ExtractionFn>,
    },
    /// `dimension` lies between `lower` and `upper` (either may be absent), in `ordering`.
    #[serde(rename_all = "camelCase")]
    Bound {
        dimension: String,
        #[serde(default, deserialize_with = "opt_text")]
        lower: Option<String>,
        #[serde(default, deserialize_with = "opt_text")]
        upper: Option<String>,
        #[serde(default)]
        lower_strict: bool,
        #[serde(default)]
        upper_strict: bool,
        #[serde(default)]
        ordering: BoundOrdering,
        /// Druid's legacy spelling of `ordering: alphanumeric` (refused when true).
        #[serde(default, skip_serializing_if = "is_false")]
        alpha_numeric: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extraction_fn: Option<ExtractionFn>,
    },
    /// `column` lies between `lower` and `upper` (either may be absent), compared as
    /// `matchValueType`.
    #[serde(rename_all = "camelCase")]
    Range {
        column: String,
        match_value_type: MatchValueType,
        #[serde(default)]
        lower: Option<Scalar>,
        #[serde(default)]
        upper: Option<Scalar>,
        #[serde(default)]
        lower_open: bool,
        #[serde(default)]
        upper_open: bool,
    },
    /// SQL `LIKE`: `%` is any run of characters, `_` any one character, `escape` quotes the next.
    #[serde(rename_all = "camelCase")]
    Like {
        dimension: String,
        pattern: String,
        #[serde(default)]
        escape: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extraction_fn: Option<ExtractionFn>,
    },
    /// The value contains a match of the regular expression `pattern` (not anchored, as Java's
    /// `Matcher.find`).
    #[serde(rename_all = "camelCase")]
    Regex {
        dimension: String,
        pattern: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extraction_fn: Option<ExtractionFn>,
    },
    /// `column` is null.
    Null {
        column: String,
    },
    /// The value, read as milliseconds, lies in one of `intervals` (ISO-8601 `start/end`): on
    /// `__time` and long columns (Druid's numeric bound per interval).
    #[serde(rename_all = "camelCase")]
    Interval {
        dimension: String,
        intervals: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extraction_fn: Option<ExtractionFn>,
    },
    /// The value matches a search query spec (contains, insensitive_contains, fragment, regex).
    #[serde(rename_all = "camelCase")]
    Search {
        dimension: String,
        query: SearchQuerySpec,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        extraction_fn: Option<ExtractionFn>,
    },
    /// Rows whose `dimensions` all hold the same value (compared as text).
    ColumnComparison {
        dimensions: Vec<ComparedColumn>,
    },
    /// Rows where a Druid expression is true (evaluated by the query engine only).
    Expression {
        expression: String,
    },
    And {
        fields: Vec<Filter>,
    },
    Or {
        fields: Vec<Filter>,
    },
    Not {
        field: Box<Filter>,
    },
    True,
    False,
    /// Refused by name: Grove runs no JavaScript.
    Javascript(NoJavascript),
    /// Refused by name: Grove has no spatial indexes.
    Spatial(NoSpatial),
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// Declares a marker for a type Druid has and Grove refuses by name: deserializing one is an
/// error saying what it is and why.
macro_rules! refused {
    ($(#[$doc:meta])* $name:ident, $message:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        pub struct $name;

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                s.serialize_map(Some(0))?.end()
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
                de::IgnoredAny::deserialize(d)?;
                Err(D::Error::custom($message))
            }
        }
    };
}

refused!(
    /// `javascript` filters and extraction functions.
    NoJavascript,
    "type 'javascript' is not supported by Grove (it runs no JavaScript; use an expression)"
);
refused!(
    /// `spatial` filters.
    NoSpatial,
    "type 'spatial' is not supported by Grove (it has no spatial indexes)"
);
refused!(
    /// `lookup` and `registeredLookup` extraction functions.
    NoLookup,
    "lookups ('lookup', 'registeredLookup') are not supported by Grove"
);

/// One column of a `columnComparison` filter: a name, or a dimension spec (`default` or
/// `extraction`).
#[derive(Clone, Debug, PartialEq)]
pub struct ComparedColumn {
    pub dimension: String,
    pub extraction_fn: Option<ExtractionFn>,
}

impl Serialize for ComparedColumn {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        match &self.extraction_fn {
            None => {
                map.serialize_entry("type", "default")?;
                map.serialize_entry("dimension", &self.dimension)?;
            }
            Some(f) => {
                map.serialize_entry("type", "extraction")?;
                map.serialize_entry("dimension", &self.dimension)?;
                map.serialize_entry("extractionFn", f)?;
            }
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for ComparedColumn {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Object {
            #[serde(rename = "type", default)]
            kind: Option<String>,
            dimension: String,
            #[serde(default)]
            extraction_fn: Option<ExtractionFn>,
        }
        let value = serde_json::Value::deserialize(d)?;
        if let serde_json::Value::String(name) = value {
            return Ok(ComparedColumn {
                dimension: name,
                extraction_fn: None,
            });
        }
        let object: Object = serde_json::from_value(value).map_err(D::Error::custom)?;
        match object.kind.as_deref() {
            None | Some("default") | Some("extraction") => Ok(ComparedColumn {
                dimension: object.dimension,
                extraction_fn: object.extraction_fn,
            }),
            Some(other) => Err(D::Error::custom(format!(
                "dimension spec type '{other}' is not supported in columnComparison (default or \
                 extraction)"
            ))),
        }
    }
}

/// A literal in `equals` and `range` filters: JSON number or string.
#[derive(Clone, Debug, PartialEq)]
pub enum Scalar {
    Long(i64),
    Double(f64),
    String(String),
}

impl Serialize for Scalar {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match self {
            Scalar::Long(v) => s.serialize_i64(*v),
            Scalar::Double(v) => s.serialize_f64(*v),
            Scalar::String(v) => s.serialize_str(v),
        }
    }
}

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Long(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> std::result::Result<Scalar, E> {
                Ok(i64::try_from(v).map_or(Scalar::Double(v as f64), Scalar::Long))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> std::result::Result<Scalar, E> {
                Ok(Scalar::Double(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<Scalar, E> {
                Ok(Scalar::String(v.to_owned()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> std::result::Result<Scalar, E> {
                Ok(Scalar::String(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

impl Scalar {
    /// The literal as text, as Druid compares it with string values.
    pub fn text(&self) -> String {
        match self {
            Scalar::Long(v) => v.to_string(),
            Scalar::Double(v) => crate::row::format_double(*v),
            Scalar::String(v) => v.clone(),
        }
    }

    /// [`Scalar::text`], moving a string rather than copying it.
    pub fn into_text(self) -> String {
        match self {
            Scalar::String(v) => v,
            other => other.text(),
        }
    }
}

/// How `equals` and `range` compare (Druid's `matchValueType`). `FLOAT` compares as `DOUBLE`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MatchValueType {
    String,
    Long,
    Double,
    Float,
}

impl Serialize for MatchValueType {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            MatchValueType::String => "STRING",
            MatchValueType::Long => "LONG",
            MatchValueType::Double => "DOUBLE",
            MatchValueType::Float => "FLOAT",
        })
    }
}

impl<'de> Deserialize<'de> for MatchValueType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.to_ascii_uppercase().as_str() {
            "STRING" => MatchValueType::String,
            "LONG" => MatchValueType::Long,
            "DOUBLE" => MatchValueType::Double,
            "FLOAT" => MatchValueType::Float,
            _ => {
                return Err(D::Error::custom(format!(
                    "matchValueType '{name}' is not supported yet (use STRING, LONG, DOUBLE or FLOAT)"
                )));
            }
        })
    }
}

/// The order a `bound` filter compares in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BoundOrdering {
    #[default]
    Lexicographic,
    Numeric,
}

impl Serialize for BoundOrdering {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            BoundOrdering::Lexicographic => "lexicographic",
            BoundOrdering::Numeric => "numeric",
        })
    }
}

impl<'de> Deserialize<'de> for BoundOrdering {
    /// Druid writes an ordering as a name or as `{"type": name}`.
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Object {
                #[serde(rename = "type")]
                kind: String,
            },
        }
        let name = match Form::deserialize(d)
            .map_err(|_| D::Error::custom("bound ordering must be a name or {\"type\": name}"))?
        {
            Form::Name(name) | Form::Object { kind: name } => name,
        };
        match name.to_ascii_lowercase().as_str() {
            "lexicographic" => Ok(BoundOrdering::Lexicographic),
            "numeric" => Ok(BoundOrdering::Numeric),
            _ => Err(D::Error::custom(format!(
                "bound ordering '{name}' is not supported yet (use lexicographic or numeric)"
            ))),
        }
    }
}

/// A JSON scalar or null as text (Druid coerces numbers and booleans in these places to strings).
fn opt_text<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<String>, D::Error> {
    Option::<Scalar>::deserialize(d).map(|v| v.map(Scalar::into_text))
}

fn opt_texts<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Vec<Option<String>>, D::Error> {
    Vec::<Option<Scalar>>::deserialize(d)
        .map(|v| v.into_iter().map(|s| s.map(Scalar::into_text)).collect())
}

impl Filter {
    /// The input fields this filter reads, sorted and unique. `__time` is not an input field and
    /// is left out.
    pub fn fields(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_fields(&mut out);
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The column a leaf filter reads (`__time` included); `None` for `and`, `or`, `not`,
    /// `true` and `false`.
    pub fn leaf_column(&self) -> Option<&str> {
        match self {
            Filter::Selector { dimension, .. }
            | Filter::In { dimension, .. }
            | Filter::Bound { dimension, .. }
            | Filter::Like { dimension, .. }
            | Filter::Regex { dimension, .. }
            | Filter::Interval { dimension, .. }
            | Filter::Search { dimension, .. }
            | Filter::Equals {
                column: dimension, ..
            }
            | Filter::Range {
                column: dimension, ..
            }
            | Filter::Null { column: dimension } => Some(dimension),
            Filter::And { .. }
            | Filter::Or { .. }
            | Filter::Not { .. }
            | Filter::True
            | Filter::False
            | Filter::ColumnComparison { .. }
            | Filter::Expression { .. }
            | Filter::Javascript(_)
            | Filter::Spatial(_) => None,
        }
    }

    /// The extraction function of a leaf, if it has one.
    pub fn extraction_fn(&self) -> Option<&ExtractionFn> {
        match self {
            Filter::Selector { extraction_fn, .. }
            | Filter::In { extraction_fn, .. }
            | Filter::Bound { extraction_fn, .. }
            | Filter::Like { extraction_fn, .. }
            | Filter::Regex { extraction_fn, .. }
            | Filter::Interval { extraction_fn, .. }
            | Filter::Search { extraction_fn, .. } => extraction_fn.as_ref(),
            _ => None,
        }
    }

    /// This leaf without its extraction function (the matcher of the extracted values).
    pub fn without_extraction(&self) -> Filter {
        let mut out = self.clone();
        match &mut out {
            Filter::Selector { extraction_fn, .. }
            | Filter::In { extraction_fn, .. }
            | Filter::Bound { extraction_fn, .. }
            | Filter::Like { extraction_fn, .. }
            | Filter::Regex { extraction_fn, .. }
            | Filter::Interval { extraction_fn, .. }
            | Filter::Search { extraction_fn, .. } => *extraction_fn = None,
            _ => {}
        }
        out
    }

    fn collect_fields(&self, out: &mut Vec<String>) {
        if let Some(column) = self.leaf_column() {
            if column != TIME_COLUMN {
                out.push(column.to_string());
            }
            return;
        }
        match self {
            Filter::And { fields } | Filter::Or { fields } => {
                fields.iter().for_each(|f| f.collect_fields(out))
            }
            Filter::Not { field } => field.collect_fields(out),
            Filter::ColumnComparison { dimensions } => out.extend(
                dimensions
                    .iter()
                    .filter(|d| d.dimension != TIME_COLUMN)
                    .map(|d| d.dimension.clone()),
            ),
            _ => {}
        }
    }

    /// Compiles this filter for rows laid out by `layout`. Every field it reads (see
    /// [`Filter::fields`]) must have a slot in the layout.
    pub fn compile(&self, layout: &RowLayout) -> Result<RowMatcher> {
        RowMatcher::new(self, layout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: &str) -> Filter {
        serde_json::from_str(json).unwrap_or_else(|e| panic!("{json}: {e}"))
    }

    #[test]
    fn every_type_round_trips() {
        let filters = [
            r#"{"type":"selector","dimension":"a","value":"x"}"#,
            r#"{"type":"selector","dimension":"a","value":null}"#,
            r#"{"type":"equals","column":"a","matchValueType":"LONG","matchValue":5}"#,
            r#"{"type":"in","dimension":"a","values":["x",null,"y"]}"#,
            r#"{"type":"bound","dimension":"a","lower":"1","upper":null,"lowerStrict":true,"upperStrict":false,"ordering":"numeric"}"#,
            r#"{"type":"range","column":"a","matchValueType":"DOUBLE","lower":1.5,"upper":null,"lowerOpen":false,"upperOpen":true}"#,
            r#"{"type":"like","dimension":"a","pattern":"a%","escape":null}"#,
            r#"{"type":"regex","dimension":"a","pattern":"^x"}"#,
            r#"{"type":"null","column":"a"}"#,
            r#"{"type":"and","fields":[{"type":"true"},{"type":"or","fields":[{"type":"false"}]}]}"#,
            r#"{"type":"not","field":{"type":"null","column":"a"}}"#,
            r#"{"type":"interval","dimension":"__time","intervals":["2024-01-01/2024-01-02"]}"#,
            r#"{"type":"search","dimension":"a","query":{"type":"insensitive_contains","value":"x"}}"#,
            r#"{"type":"columnComparison","dimensions":[{"type":"default","dimension":"a"},{"type":"default","dimension":"b"}]}"#,
            r#"{"type":"expression","expression":"a > 1"}"#,
            r#"{"type":"in","dimension":"a","values":["x"],"extractionFn":{"type":"cascade","extractionFns":[{"type":"upper","locale":null},{"type":"strlen"}]}}"#,
        ];
        for json in filters {
            let filter = parse(json);
            let text = serde_json::to_string(&filter).unwrap();
            assert_eq!(text, json);
            assert_eq!(parse(&text), filter);
        }
    }

    #[test]
    fn druid_coercions_and_errors() {
        let f = parse(r#"{"type":"selector","dimension":"a","value":5}"#);
        assert_eq!(
            f,
            Filter::Selector {
                dimension: "a".into(),
                value: Some("5".into()),
                extraction_fn: None,
            }
        );
        let f =
            parse(r#"{"type":"bound","dimension":"a","ordering":{"type":"numeric"},"upper":10}"#);
        assert!(matches!(
            f,
            Filter::Bound {
                ordering: BoundOrdering::Numeric,
                ..
            }
        ));
        // An extraction function with a type it does not have is an error naming the type.
        let err = serde_json::from_str::<Filter>(
            r#"{"type":"selector","dimension":"a","extractionFn":{"type":"nope"}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("nope"), "{err}");
        for refused in [
            r#"{"type":"javascript","dimension":"a","function":"x"}"#,
            r#"{"type":"spatial","dimension":"a","bound":{}}"#,
            r#"{"type":"selector","dimension":"a","value":"x","extractionFn":{"type":"javascript","function":"f"}}"#,
        ] {
            let err = serde_json::from_str::<Filter>(refused)
                .unwrap_err()
                .to_string();
            assert!(err.contains("not supported"), "{refused}: {err}");
        }
        let err = serde_json::from_str::<Filter>(
            r#"{"type":"bound","dimension":"a","ordering":"strlen"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("strlen"), "{err}");
    }

    /// Properties Druid ignores (`filterTuning`, keys it does not know) are ignored; those it
    /// honours are parsed.
    #[test]
    fn unknown_properties_are_ignored() {
        let f = parse(
            r#"{"type":"selector","dimension":"a","value":"x","filterTuning":{"useBitmapIndex":false},"whatever":1}"#,
        );
        assert_eq!(f.leaf_column(), Some("a"));
        let f = parse(
            r#"{"type":"search","dimension":"a","query":{"type":"contains","value":"X","caseSensitive":"false"}}"#,
        );
        assert!(matches!(
            f,
            Filter::Search {
                query: SearchQuerySpec::Contains {
                    case_sensitive: false,
                    ..
                },
                ..
            }
        ));
        let f = parse(
            r#"{"type":"selector","dimension":"a","value":"x","extractionFn":{"type":"substring","index":1,"length":2}}"#,
        );
        assert_eq!(
            f.extraction_fn(),
            Some(&ExtractionFn::Substring {
                index: 1,
                length: Some(2)
            })
        );
        assert_eq!(f.without_extraction().extraction_fn(), None);
        let f = parse(
            r#"{"type":"columnComparison","dimensions":["a",{"type":"default","dimension":"b","outputName":"b"}]}"#,
        );
        assert_eq!(f.fields(), vec!["a".to_string(), "b".to_string()]);
    }

    #[test]
    fn fields_are_sorted_unique_and_skip_time() {
        let f = parse(
            r#"{"type":"and","fields":[{"type":"selector","dimension":"b","value":"x"},
                {"type":"not","field":{"type":"in","dimension":"a","values":["1"]}},
                {"type":"bound","dimension":"__time","lower":"0"},
                {"type":"null","column":"b"}]}"#,
        );
        assert_eq!(f.fields(), vec!["a".to_string(), "b".to_string()]);
    }
}
