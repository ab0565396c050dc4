//! `dataSchema`: datasource, timestamp, dimensions, metrics, granularities and the transform filter,
//! and its resolution into a [`crate::schema::Schema`].

use serde::de::{Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::SegmentError;
use crate::filter::Filter;
use crate::row::RowLayout;
use crate::schema::{DimensionSchema, MetricKind, MetricSchema, Schema};

use super::dimensions::DimensionsSpec;
use crate::time::{
    Granularity, Interval, MS_PER_DAY, TimestampFormat, format_iso, parse_iso_timestamp,
};

/// Druid's `dataSchema`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawDataSchema")]
pub struct DataSchema {
    pub data_source: String,
    pub timestamp_spec: TimestampSpec,
    pub dimensions_spec: DimensionsSpec,
    pub metrics_spec: Vec<MetricSpec>,
    pub granularity_spec: GranularitySpec,
    #[serde(skip_serializing_if = "TransformSpec::is_empty")]
    pub transform_spec: TransformSpec,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDataSchema {
    data_source: String,
    #[serde(default)]
    timestamp_spec: TimestampSpec,
    #[serde(default)]
    dimensions_spec: DimensionsSpec,
    #[serde(default)]
    metrics_spec: Vec<MetricSpec>,
    #[serde(default)]
    granularity_spec: GranularitySpec,
    #[serde(default)]
    transform_spec: TransformSpec,
    /// Accepted only to refuse it with a clear message.
    #[serde(default)]
    parser: Option<IgnoredAny>,
}

impl TryFrom<RawDataSchema> for DataSchema {
    type Error = String;

    fn try_from(raw: RawDataSchema) -> Result<Self, String> {
        if raw.parser.is_some() {
            return Err(
                "legacy parser specs are not supported; use inputFormat (in ioConfig) \
                        with timestampSpec and dimensionsSpec in dataSchema"
                    .into(),
            );
        }
        if raw.data_source.is_empty() {
            return Err("dataSource must not be empty".into());
        }
        Ok(DataSchema {
            data_source: raw.data_source,
            timestamp_spec: raw.timestamp_spec,
            dimensions_spec: raw.dimensions_spec,
            metrics_spec: raw.metrics_spec,
            granularity_spec: raw.granularity_spec,
            transform_spec: raw.transform_spec,
        })
    }
}

impl DataSchema {
    /// The resolved, validated schema. `float` dimensions and aggregators become `double`;
    /// `HLLSketchBuild` becomes [`MetricKind::HllSketch`].
    pub fn schema(&self) -> Result<Schema, SegmentError> {
        let dimensions = &self.dimensions_spec.dimensions;
        if dimensions.is_empty() {
            return Err(SegmentError::Spec(
                "dataSchema.dimensionsSpec.dimensions is empty: schemaless dimension discovery \
                 is not supported; list the dimensions"
                    .into(),
            ));
        }
        let schema = Schema {
            data_source: self.data_source.clone(),
            dimensions: dimensions
                .iter()
                .map(|d| DimensionSchema {
                    name: d.name.clone(),
                    value_type: d.value_type,
                    multi_value_handling: d.multi_value_handling,
                    bitmap_index: d.create_bitmap_index,
                })
                .collect(),
            metrics: self.metrics_spec.iter().map(MetricSpec::schema).collect(),
            query_granularity: self.granularity_spec.query_granularity,
            segment_granularity: self.granularity_spec.segment_granularity,
            rollup: self.granularity_spec.rollup,
            time_position: self.dimensions_spec.time_position.unwrap_or(0),
        };
        schema
            .validate()
            .map_err(|e| SegmentError::Spec(format!("dataSchema: {e}")))?;
        Ok(schema)
    }

    /// The row layout readers fill for this schema: dimensions, metric input fields, and the fields
    /// the transform filter reads.
    pub fn row_layout(&self) -> Result<RowLayout, SegmentError> {
        let schema = self.schema()?;
        let extra = self
            .transform_spec
            .filter
            .as_ref()
            .map(Filter::fields)
            .unwrap_or_default();
        Ok(RowLayout::new(&schema, &extra))
    }
}

/// Druid's `timestampSpec`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TimestampSpec {
    #[serde(default = "default_timestamp_column")]
    pub column: String,
    #[serde(default)]
    pub format: TimestampFormat,
    /// Used for rows without the timestamp column, in ms. JSON: ISO-8601 text or millis.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        serialize_with = "ser_missing_value",
        deserialize_with = "de_missing_value"
    )]
    pub missing_value: Option<i64>,
}

fn default_timestamp_column() -> String {
    "timestamp".into()
}

impl Default for TimestampSpec {
    fn default() -> Self {
        TimestampSpec {
            column: default_timestamp_column(),
            format: TimestampFormat::Auto,
            missing_value: None,
        }
    }
}

fn ser_missing_value<S: Serializer>(value: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(ms) => s.serialize_str(&format_iso(*ms)),
        None => s.serialize_none(),
    }
}

fn de_missing_value<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Form {
        Millis(i64),
        Text(String),
    }
    let ms = match Option::<Form>::deserialize(d)
        .map_err(|_| D::Error::custom("missingValue must be ISO-8601 text or milliseconds"))?
    {
        None => return Ok(None),
        Some(Form::Millis(ms)) => ms,
        Some(Form::Text(text)) => TimestampFormat::Auto
            .from_text(&text)
            .or_else(|| parse_iso_timestamp(&text))
            .ok_or_else(|| D::Error::custom(format!("cannot parse missingValue '{text}'")))?,
    };
    if !Interval::ETERNITY.contains(ms) {
        return Err(D::Error::custom(format!(
            "missingValue {ms} is outside the supported range {}",
            Interval::ETERNITY
        )));
    }
    Ok(Some(ms))
}

/// The HLL sketch representation Druid builds (`tgtHllType`). Grove accepts all three; the sketch
/// module decides its own storage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum TgtHllType {
    #[default]
    #[serde(rename = "HLL_4")]
    Hll4,
    #[serde(rename = "HLL_6")]
    Hll6,
    #[serde(rename = "HLL_8")]
    Hll8,
}

fn default_lg_k() -> u8 {
    12
}

/// One `metricsSpec` aggregator. `floatSum`/`floatMin`/`floatMax` are read as their double forms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum MetricSpec {
    #[serde(rename = "count")]
    Count { name: String },
    #[serde(rename = "longSum", rename_all = "camelCase")]
    LongSum { name: String, field_name: String },
    #[serde(rename = "longMin", rename_all = "camelCase")]
    LongMin { name: String, field_name: String },
    #[serde(rename = "longMax", rename_all = "camelCase")]
    LongMax { name: String, field_name: String },
    #[serde(rename = "doubleSum", alias = "floatSum", rename_all = "camelCase")]
    DoubleSum { name: String, field_name: String },
    #[serde(rename = "doubleMin", alias = "floatMin", rename_all = "camelCase")]
    DoubleMin { name: String, field_name: String },
    #[serde(rename = "doubleMax", alias = "floatMax", rename_all = "camelCase")]
    DoubleMax { name: String, field_name: String },
    #[serde(rename = "HLLSketchBuild", rename_all = "camelCase")]
    HllSketchBuild {
        name: String,
        field_name: String,
        #[serde(default = "default_lg_k")]
        lg_k: u8,
        #[serde(default)]
        tgt_hll_type: TgtHllType,
        #[serde(default)]
        round: bool,
        /// `utf16le` (Druid's default) or `utf8`: how strings are hashed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        string_encoding: Option<StringEncoding>,
    },
}

/// How an HLL sketch hashes strings (Druid's `stringEncoding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StringEncoding {
    Utf16le,
    Utf8,
}

impl MetricSpec {
    pub fn name(&self) -> &str {
        match self {
            MetricSpec::Count { name }
            | MetricSpec::LongSum { name, .. }
            | MetricSpec::LongMin { name, .. }
            | MetricSpec::LongMax { name, .. }
            | MetricSpec::DoubleSum { name, .. }
            | MetricSpec::DoubleMin { name, .. }
            | MetricSpec::DoubleMax { name, .. }
            | MetricSpec::HllSketchBuild { name, .. } => name,
        }
    }

    /// The input field aggregated (`None` for `count`).
    pub fn field_name(&self) -> Option<&str> {
        match self {
            MetricSpec::Count { .. } => None,
            MetricSpec::LongSum { field_name, .. }
            | MetricSpec::LongMin { field_name, .. }
            | MetricSpec::LongMax { field_name, .. }
            | MetricSpec::DoubleSum { field_name, .. }
            | MetricSpec::DoubleMin { field_name, .. }
            | MetricSpec::DoubleMax { field_name, .. }
            | MetricSpec::HllSketchBuild { field_name, .. } => Some(field_name),
        }
    }

    pub fn kind(&self) -> MetricKind {
        match self {
            MetricSpec::Count { .. } => MetricKind::Count,
            MetricSpec::LongSum { .. } => MetricKind::LongSum,
            MetricSpec::LongMin { .. } => MetricKind::LongMin,
            MetricSpec::LongMax { .. } => MetricKind::LongMax,
            MetricSpec::DoubleSum { .. } => MetricKind::DoubleSum,
            MetricSpec::DoubleMin { .. } => MetricKind::DoubleMin,
            MetricSpec::DoubleMax { .. } => MetricKind::DoubleMax,
            MetricSpec::HllSketchBuild {
                lg_k,
                string_encoding,
                ..
            } => MetricKind::HllSketch {
                lg_k: *lg_k,
                utf16le: *string_encoding != Some(StringEncoding::Utf8),
            },
        }
    }

    fn schema(&self) -> MetricSchema {
        MetricSchema {
            name: self.name().to_owned(),
            field_name: self.field_name().map(str::to_owned),
            kind: self.kind(),
        }
    }
}

/// Druid's `granularitySpec` (type `uniform`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawGranularitySpec")]
pub struct GranularitySpec {
    pub segment_granularity: Granularity,
    pub query_granularity: Granularity,
    pub rollup: bool,
    /// Rows outside these intervals are thrown away; `None` keeps every row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intervals: Option<Vec<Interval>>,
}

impl Default for GranularitySpec {
    fn default() -> Self {
        GranularitySpec {
            segment_granularity: Granularity::DAY,
            query_granularity: Granularity::None,
            rollup: true,
            intervals: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawGranularitySpec {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    segment_granularity: Option<Granularity>,
    #[serde(default)]
    query_granularity: Option<Granularity>,
    #[serde(default)]
    rollup: Option<bool>,
    #[serde(default)]
    intervals: Option<Vec<Interval>>,
}

impl TryFrom<RawGranularitySpec> for GranularitySpec {
    type Error = String;

    fn try_from(raw: RawGranularitySpec) -> Result<Self, String> {
        if let Some(kind) = raw.kind.as_deref()
            && kind != "uniform"
        {
            return Err(format!(
                "granularitySpec type '{kind}' is not supported (use uniform)"
            ));
        }
        let default = GranularitySpec::default();
        let spec = GranularitySpec {
            segment_granularity: raw
                .segment_granularity
                .unwrap_or(default.segment_granularity),
            query_granularity: raw.query_granularity.unwrap_or(default.query_granularity),
            rollup: raw.rollup.unwrap_or(default.rollup),
            intervals: raw.intervals.filter(|i| !i.is_empty()),
        };
        if !nests_in(spec.query_granularity, spec.segment_granularity) {
            let name = |g: &Granularity| serde_json::to_string(g).unwrap_or_default();
            return Err(format!(
                "queryGranularity {} does not fit segmentGranularity {}: every segment must \
                 hold whole query-granularity buckets",
                name(&spec.query_granularity),
                name(&spec.segment_granularity)
            ));
        }
        Ok(spec)
    }
}

/// Whether every `segment` bucket is a union of `query` buckets (so truncating a row's time to
/// `query` keeps it in its segment). Checked on bucket edges around a spread of probe times, which
/// catches every mismatch between the periods and origins Druid granularities use.
fn nests_in(query: Granularity, segment: Granularity) -> bool {
    if segment == Granularity::All || query == Granularity::None {
        return true;
    }
    if query == Granularity::All {
        return false;
    }
    const PROBES_MS: [i64; 7] = [
        0,
        1,
        45 * MS_PER_DAY + 7,
        400 * MS_PER_DAY + 3,
        -1000 * MS_PER_DAY - 5,
        951_782_400_000,
        1_700_000_000_123,
    ];
    PROBES_MS.iter().all(|&probe| {
        let start = segment.truncate(probe);
        let end = segment.next(start);
        query.truncate(start) == start && query.truncate(end) == end
    })
}

/// Druid's `transformSpec`: only the row filter; expression `transforms` are refused.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawTransformSpec")]
pub struct TransformSpec {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

#[derive(Deserialize)]

struct RawTransformSpec {
    #[serde(default)]
    filter: Option<Filter>,
    #[serde(default)]
    transforms: Vec<serde_json::Value>,
}

impl TransformSpec {
    pub fn is_empty(&self) -> bool {
        self.filter.is_none()
    }
}

impl TryFrom<RawTransformSpec> for TransformSpec {
    type Error = String;

    fn try_from(raw: RawTransformSpec) -> Result<Self, String> {
        if let Some(t) = raw.transforms.first() {
            let text = |key: &str| {
                t.get(key)
                    .and_then(|v| v.as_str())
                    .unwrap_or("?")
                    .to_owned()
            };
            return Err(format!(
                "transform '{}' (expression '{}') is not supported: expression transforms are \
                 not supported yet; compute the field before ingestion",
                text("name"),
                text("expression")
            ));
        }
        if let Some(filter) = &raw.filter {
            // Query-only features (extraction functions, expressions) are refused here, before
            // any row is read.
            let layout = crate::row::RowLayout {
                fields: filter.fields(),
                metric_slots: Vec::new(),
            };
            filter
                .compile(&layout)
                .map_err(|e| format!("transformSpec.filter: {e}"))?;
        }
        Ok(TransformSpec { filter: raw.filter })
    }
}
