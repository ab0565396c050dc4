//! `ioConfig`: where the rows come from (`inputSource`) and how they are written (`inputFormat`).
//! Both are dispatched on their `"type"` by hand, so that a type Druid has and Grove lacks is a
//! clear "not supported yet" error rather than serde's "unknown variant".

use std::path::PathBuf;

use serde::de::{Error as _, IgnoredAny};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{TaskType, from_object, take_type};

/// Druid's `ioConfig` for batch tasks. `appendToExisting` and `dropExisting` are accepted only as
/// `false`: a batch ingestion replaces the time chunks it writes rows into, and Grove supports
/// neither appending to them nor dropping the chunks it leaves empty.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawIoConfig")]
pub struct IoConfig {
    pub input_source: InputSource,
    pub input_format: InputFormat,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawIoConfig {
    #[serde(rename = "type", default)]
    #[allow(dead_code)]
    task_type: Option<TaskType>,
    #[serde(default)]
    input_source: Option<InputSource>,
    #[serde(default)]
    input_format: Option<InputFormat>,
    #[serde(default)]
    append_to_existing: bool,
    #[serde(default)]
    drop_existing: bool,
    /// Accepted only to refuse it with a clear message.
    #[serde(default)]
    firehose: Option<IgnoredAny>,
}

impl TryFrom<RawIoConfig> for IoConfig {
    type Error = String;

    fn try_from(raw: RawIoConfig) -> Result<Self, String> {
        if raw.firehose.is_some() {
            return Err(
                "firehose is not supported (Druid removed it); use inputSource and \
                        inputFormat"
                    .into(),
            );
        }
        if raw.append_to_existing {
            return Err(
                "appendToExisting is not supported yet: batch ingestion replaces the \
                        intervals it writes; set appendToExisting to false"
                    .into(),
            );
        }
        if raw.drop_existing {
            return Err(
                "dropExisting is not supported yet: batch ingestion replaces only the \
                        intervals it writes rows into and drops nothing else; set dropExisting \
                        to false"
                    .into(),
            );
        }
        Ok(IoConfig {
            input_source: raw
                .input_source
                .ok_or("ioConfig needs an inputSource (local or inline)")?,
            input_format: raw
                .input_format
                .ok_or("ioConfig needs an inputFormat (json, csv, tsv or parquet)")?,
        })
    }
}

/// Druid's `inputSource`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "camelCase")]
pub enum InputSource {
    /// Files under `base_dir` whose name matches the wildcard `filter` (`*`, `?`), searched
    /// recursively, plus the explicit `files`.
    #[serde(rename_all = "camelCase")]
    Local {
        #[serde(skip_serializing_if = "Option::is_none")]
        base_dir: Option<PathBuf>,
        #[serde(skip_serializing_if = "Option::is_none")]
        filter: Option<String>,
        #[serde(skip_serializing_if = "Vec::is_empty")]
        files: Vec<PathBuf>,
    },
    /// Rows given in the spec itself.
    Inline { data: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawLocal {
    #[serde(default)]
    base_dir: Option<PathBuf>,
    #[serde(default)]
    filter: Option<String>,
    #[serde(default)]
    files: Vec<PathBuf>,
}

#[derive(Deserialize)]

struct RawInline {
    data: String,
}

/// Input source types Druid has that Grove does not read yet.
const UNSUPPORTED_SOURCES: &[&str] = &[
    "s3",
    "google",
    "azure",
    "azureStorage",
    "hdfs",
    "http",
    "druid",
    "sql",
    "combining",
    "oss",
    "delta",
    "iceberg",
];

impl<'de> Deserialize<'de> for InputSource {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(d)?;
        let kind = take_type(&mut map, "inputSource").map_err(D::Error::custom)?;
        match kind.as_str() {
            "local" => {
                let raw: RawLocal = from_object(map).map_err(D::Error::custom)?;
                if raw.base_dir.is_none() && raw.files.is_empty() {
                    return Err(D::Error::custom(
                        "local inputSource needs baseDir (with a filter) or files",
                    ));
                }
                if raw.base_dir.is_some() && raw.filter.is_none() {
                    return Err(D::Error::custom(
                        "local inputSource with a baseDir needs a filter (e.g. \"*.json\")",
                    ));
                }
                Ok(InputSource::Local {
                    base_dir: raw.base_dir,
                    filter: raw.filter,
                    files: raw.files,
                })
            }
            "inline" => {
                let raw: RawInline = from_object(map).map_err(D::Error::custom)?;
                Ok(InputSource::Inline { data: raw.data })
            }
            other if UNSUPPORTED_SOURCES.contains(&other) => Err(D::Error::custom(format!(
                "inputSource type '{other}' is not supported yet (supported: local, inline)"
            ))),
            other => Err(D::Error::custom(format!(
                "unknown inputSource type '{other}' (supported: local, inline)"
            ))),
        }
    }
}

/// Druid's `inputFormat`.
#[derive(Clone, Debug, PartialEq)]
pub enum InputFormat {
    Json(JsonFormat),
    Csv(DelimitedFormat),
    Tsv(DelimitedFormat),
    Parquet(ParquetFormat),
}

/// Newline-delimited JSON, one object per line; only top-level fields are read.
#[derive(Clone, Debug, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JsonFormat {
    /// Accepted for compatibility: Grove stores the dimensions the spec lists, null or not.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub keep_null_columns: bool,
}

/// CSV or TSV. Fields are positional, named by `columns` or by the header line.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DelimitedFormat {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub find_columns_from_header: bool,
    #[serde(skip_serializing_if = "is_zero")]
    pub skip_header_rows: u64,
    /// Separates the values of a multi-value field (default `\u0001`).
    pub list_delimiter: String,
    /// The field separator: `,` for csv; `\t` by default for tsv. Always one byte (serialized
    /// by [`InputFormat`], for tsv only).
    #[serde(skip_serializing)]
    pub delimiter: u8,
    /// Druid's `tryParseNumbers`: fields that look like numbers become longs or doubles.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub try_parse_numbers: bool,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Parquet files, read by column name; nested fields are not flattened.
#[derive(Clone, Debug, PartialEq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ParquetFormat {
    /// Read `BYTE_ARRAY` columns without a string annotation as UTF-8 text.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub binary_as_string: bool,
}

/// `flattenSpec` is accepted only when it flattens nothing.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawFlattenSpec {
    #[serde(default = "yes")]
    use_field_discovery: bool,
    #[serde(default)]
    fields: Vec<IgnoredAny>,
}

fn yes() -> bool {
    true
}

fn check_flatten(spec: &Option<RawFlattenSpec>, format: &str) -> Result<(), String> {
    match spec {
        Some(f) if !f.use_field_discovery || !f.fields.is_empty() => Err(format!(
            "{format} flattenSpec with fields (or useFieldDiscovery false) is not supported yet; \
             only top-level fields are read"
        )),
        _ => Ok(()),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawJson {
    #[serde(default)]
    flatten_spec: Option<RawFlattenSpec>,
    #[serde(default)]
    keep_null_columns: bool,
    // Accepted and ignored: how Druid's parser splits and builds objects; Grove always reads one
    // object per line.
    #[serde(default)]
    #[allow(dead_code)]
    assume_newline_delimited: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    use_json_node_reader: Option<bool>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDelimited {
    #[serde(default)]
    columns: Vec<String>,
    #[serde(default, alias = "hasHeaderRow")]
    find_columns_from_header: bool,
    #[serde(default)]
    skip_header_rows: u64,
    #[serde(default)]
    list_delimiter: Option<String>,
    #[serde(default)]
    delimiter: Option<String>,
    #[serde(default)]
    try_parse_numbers: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawParquet {
    #[serde(default)]
    flatten_spec: Option<RawFlattenSpec>,
    #[serde(default)]
    binary_as_string: bool,
}

/// Input formats Druid has that Grove does not read yet.
const UNSUPPORTED_FORMATS: &[&str] = &[
    "avro_ocf",
    "avro_stream",
    "orc",
    "protobuf",
    "regex",
    "kafka",
    "kinesis",
    "delta",
    "iceberg",
];

impl DelimitedFormat {
    fn from_raw(raw: RawDelimited, tsv: bool) -> Result<DelimitedFormat, String> {
        let format = if tsv { "tsv" } else { "csv" };
        if !tsv && raw.delimiter.is_some() {
            return Err(
                "csv inputFormat has no delimiter field (it is always ','); use tsv \
                        with a delimiter"
                    .into(),
            );
        }
        let delimiter = match raw.delimiter.as_deref() {
            None if tsv => b'\t',
            None => b',',
            Some(d) if d.len() == 1 => d.as_bytes()[0],
            Some(d) => {
                return Err(format!(
                    "{format} delimiter '{d}' must be exactly one single-byte character"
                ));
            }
        };
        let list_delimiter = raw.list_delimiter.unwrap_or_else(|| "\u{1}".into());
        if list_delimiter.is_empty() || list_delimiter.as_bytes() == [delimiter] {
            return Err(format!(
                "{format} listDelimiter must be non-empty and differ from the delimiter"
            ));
        }
        match (raw.columns.is_empty(), raw.find_columns_from_header) {
            (true, false) => {
                return Err(format!(
                    "{format} inputFormat needs columns, or findColumnsFromHeader: true"
                ));
            }
            (false, true) => {
                return Err(format!(
                    "{format} inputFormat cannot take both columns and findColumnsFromHeader"
                ));
            }
            _ => {}
        }
        Ok(DelimitedFormat {
            columns: raw.columns,
            find_columns_from_header: raw.find_columns_from_header,
            skip_header_rows: raw.skip_header_rows,
            list_delimiter,
            delimiter,
            try_parse_numbers: raw.try_parse_numbers,
        })
    }
}

impl<'de> Deserialize<'de> for InputFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(d)?;
        let kind = take_type(&mut map, "inputFormat").map_err(D::Error::custom)?;
        let format = match kind.as_str() {
            "json" => {
                let raw: RawJson = from_object(map).map_err(D::Error::custom)?;
                check_flatten(&raw.flatten_spec, "json").map_err(D::Error::custom)?;
                InputFormat::Json(JsonFormat {
                    keep_null_columns: raw.keep_null_columns,
                })
            }
            "csv" | "tsv" => {
                let raw: RawDelimited = from_object(map).map_err(D::Error::custom)?;
                let format =
                    DelimitedFormat::from_raw(raw, kind == "tsv").map_err(D::Error::custom)?;
                if kind == "tsv" {
                    InputFormat::Tsv(format)
                } else {
                    InputFormat::Csv(format)
                }
            }
            "parquet" => {
                let raw: RawParquet = from_object(map).map_err(D::Error::custom)?;
                check_flatten(&raw.flatten_spec, "parquet").map_err(D::Error::custom)?;
                InputFormat::Parquet(ParquetFormat {
                    binary_as_string: raw.binary_as_string,
                })
            }
            other if UNSUPPORTED_FORMATS.contains(&other) => {
                return Err(D::Error::custom(format!(
                    "inputFormat type '{other}' is not supported yet (supported: json, csv, \
                     tsv, parquet)"
                )));
            }
            other => {
                return Err(D::Error::custom(format!(
                    "unknown inputFormat type '{other}' (supported: json, csv, tsv, parquet)"
                )));
            }
        };
        Ok(format)
    }
}

impl Serialize for InputFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let (kind, body) = match self {
            InputFormat::Json(f) => ("json", serde_json::to_value(f)),
            InputFormat::Csv(f) => ("csv", serde_json::to_value(f)),
            InputFormat::Tsv(f) => ("tsv", serde_json::to_value(f)),
            InputFormat::Parquet(f) => ("parquet", serde_json::to_value(f)),
        };
        let body = body.map_err(serde::ser::Error::custom)?;
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", kind)?;
        if let Value::Object(fields) = body {
            for (k, v) in &fields {
                map.serialize_entry(k, v)?;
            }
        }
        if let InputFormat::Tsv(f) = self {
            map.serialize_entry("delimiter", &char::from(f.delimiter).to_string())?;
        }
        map.end()
    }
}
