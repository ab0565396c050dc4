//! The models of Druid's extraction functions ([`ExtractionFn`], on filters and dimension specs)
//! and search query specs ([`SearchQuerySpec`], of `search` filters, `searchQuery` extraction
//! functions and search queries). Data only: the query engine evaluates them (`grove-query`'s
//! `extraction` module), and ingestion filters refuse extraction functions.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize};

use super::{NoJavascript, NoLookup};

/// A Druid extraction function: maps a value (text, or a number, or null) to text or null.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum ExtractionFn {
    /// Group `index` of the first match of `expr`; no match gives the value itself, or
    /// `replaceMissingValueWith` when `replaceMissingValue` is set.
    #[serde(rename_all = "camelCase")]
    Regex {
        expr: String,
        #[serde(default = "one")]
        index: usize,
        #[serde(default, deserialize_with = "lenient_bool")]
        replace_missing_value: bool,
        #[serde(default)]
        replace_missing_value_with: Option<String>,
    },
    /// The value when `expr` finds a match in it, else null.
    Partial {
        expr: String,
    },
    /// The value when it matches `query`, else null.
    SearchQuery {
        query: SearchQuerySpec,
    },
    /// `length` characters from character `index` (0-based); null when `index` is past the end.
    Substring {
        index: usize,
        #[serde(default)]
        length: Option<usize>,
    },
    /// The number of UTF-16 code units (Java's `String.length`), as text.
    Strlen,
    /// A timestamp (milliseconds, or ISO text) formatted with a Joda pattern in a time zone,
    /// after truncating to `granularity`; `asMillis` reads text values as milliseconds.
    #[serde(rename_all = "camelCase")]
    TimeFormat {
        #[serde(default)]
        format: Option<String>,
        #[serde(default)]
        time_zone: Option<String>,
        #[serde(default)]
        locale: Option<String>,
        #[serde(default)]
        granularity: Option<serde_json::Value>,
        #[serde(default, deserialize_with = "lenient_bool")]
        as_millis: bool,
    },
    /// Parses text with `timeFormat` and writes it with `resultFormat`.
    #[serde(rename_all = "camelCase")]
    Time {
        time_format: String,
        result_format: String,
        #[serde(default, deserialize_with = "lenient_bool")]
        joda: bool,
    },
    /// The functions applied in order.
    #[serde(rename_all = "camelCase")]
    Cascade {
        extraction_fns: Vec<ExtractionFn>,
    },
    /// `format` with `%s` replaced by the value; `nullHandling` is `nullString` (default: the
    /// text "null"), `emptyString` or `returnNull`.
    #[serde(rename_all = "camelCase")]
    StringFormat {
        format: String,
        #[serde(default)]
        null_handling: Option<String>,
    },
    Upper {
        #[serde(default)]
        locale: Option<String>,
    },
    Lower {
        #[serde(default)]
        locale: Option<String>,
    },
    /// A number bucketed to `size` from `offset` (`floor((x - offset) / size) * size + offset`).
    Bucket {
        #[serde(default = "one_f64")]
        size: f64,
        #[serde(default)]
        offset: f64,
    },
    Javascript(NoJavascript),
    Lookup(NoLookup),
    RegisteredLookup(NoLookup),
}

fn one() -> usize {
    1
}

fn one_f64() -> f64 {
    1.0
}

/// What a search matches (search queries, `search` filters, `searchQuery` extraction functions).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum SearchQuerySpec {
    #[serde(rename_all = "camelCase")]
    Contains {
        value: String,
        #[serde(default, deserialize_with = "lenient_bool")]
        case_sensitive: bool,
    },
    InsensitiveContains {
        value: String,
    },
    #[serde(rename_all = "camelCase")]
    Fragment {
        values: Vec<String>,
        #[serde(default, deserialize_with = "lenient_bool")]
        case_sensitive: bool,
    },
    Regex {
        pattern: String,
    },
}

/// A boolean, or its text (`"true"`, `"false"`), as Druid's JSON mapper coerces it.
pub(crate) fn lenient_bool<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => Ok(false),
        serde_json::Value::Bool(b) => Ok(b),
        serde_json::Value::String(s) if s.trim().eq_ignore_ascii_case("true") => Ok(true),
        serde_json::Value::String(s) if s.trim().eq_ignore_ascii_case("false") => Ok(false),
        other => Err(D::Error::custom(format!("expected a boolean, got {other}"))),
    }
}
