//! Ingestion specs: a serde model of Druid's native batch ingestion spec, in the camelCase JSON
//! Druid writes, so existing `index_parallel`/`index` task specs parse unchanged.
//!
//! Main types: [`TaskSpec`] (the task envelope), [`IngestionSpec`] (`dataSchema` + `ioConfig` +
//! `tuningConfig`), [`DataSchema`], [`IoConfig`], [`TuningConfig`]; entry point [`parse_task`],
//! which accepts both the task form `{"type": "index_parallel", "spec": {...}}` and the bare
//! `{"dataSchema": ..., "ioConfig": ..., "tuningConfig": ...}`.
//!
//! Invariants:
//! - as Druid's JSON mapper, properties Grove does not know are ignored (logged at debug level with
//!   their path); malformed values of known properties are errors naming their path
//!   (`spec.tuningConfig.maxRowsPerSegment: invalid type ...`);
//! - properties Druid honours that Grove does not implement, where ignoring them would change what
//!   is ingested (legacy `parser`, `firehose`, expression transforms, schemaless dimensions,
//!   spatial dimensions, non-dynamic partitioning, cloud input sources, flattenSpec fields...) are
//!   clear errors, never silently dropped; the tuning fields that only tune Druid's own execution
//!   are listed in [`IGNORED_TUNING_FIELDS`];
//! - parsed values are resolved (defaults applied), and serializing a spec and parsing it again gives
//!   an equal value.
//!
//! Design note: `` does not combine with `#[serde(flatten)]`, so
//! objects that need checks or a `"type"` dispatch are read into a private strict `Raw*` struct (or a
//! JSON map for type dispatch) and converted with `try_from`.

mod data_schema;
mod dimensions;
mod io_config;
mod tuning;

use serde::de::{DeserializeOwned, Error as _, IgnoredAny};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::error::SegmentError;

pub use data_schema::{
    DataSchema, GranularitySpec, MetricSpec, StringEncoding, TgtHllType, TimestampSpec,
    TransformSpec,
};
pub use dimensions::{DimensionSpec, DimensionsSpec};
pub use io_config::{
    DelimitedFormat, InputFormat, InputSource, IoConfig, JsonFormat, ParquetFormat,
};
pub use tuning::{IGNORED_TUNING_FIELDS, TuningConfig};

/// The task types whose spec this module parses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TaskType {
    #[default]
    IndexParallel,
    Index,
}

impl TaskType {
    pub fn name(&self) -> &'static str {
        match self {
            TaskType::IndexParallel => "index_parallel",
            TaskType::Index => "index",
        }
    }
}

impl Serialize for TaskType {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TaskType {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        match name.as_str() {
            "index_parallel" => Ok(TaskType::IndexParallel),
            "index" => Ok(TaskType::Index),
            _ => Err(D::Error::custom(format!(
                "task type '{name}' is not supported here (use index_parallel or index)"
            ))),
        }
    }
}

/// A batch ingestion task: Druid's task JSON.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawTask")]
pub struct TaskSpec {
    #[serde(rename = "type")]
    pub task_type: TaskType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub spec: IngestionSpec,
    /// The task context, kept as given (Grove reads what it understands from it).
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub context: Map<String, Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTask {
    #[serde(rename = "type")]
    task_type: TaskType,
    #[serde(default)]
    id: Option<String>,
    spec: IngestionSpec,
    #[serde(default)]
    context: Option<Map<String, Value>>,
    /// Druid repeats the datasource at the top of a task; it must agree with the spec's.
    #[serde(default)]
    data_source: Option<String>,
    // Accepted and ignored: Druid's task grouping for locks and its worker-capacity hints
    // (`resource.availabilityGroup`, `requiredCapacity`) only schedule the task.
    #[serde(default)]
    #[allow(dead_code)]
    group_id: Option<IgnoredAny>,
    #[serde(default)]
    #[allow(dead_code)]
    resource: Option<IgnoredAny>,
}

impl TryFrom<RawTask> for TaskSpec {
    type Error = String;

    fn try_from(raw: RawTask) -> Result<Self, String> {
        if let Some(ds) = &raw.data_source
            && *ds != raw.spec.data_schema.data_source
        {
            return Err(format!(
                "task dataSource '{ds}' differs from spec.dataSchema.dataSource '{}'",
                raw.spec.data_schema.data_source
            ));
        }
        Ok(TaskSpec {
            task_type: raw.task_type,
            id: raw.id,
            spec: raw.spec,
            context: raw.context.unwrap_or_default(),
        })
    }
}

/// What to ingest, from where, and how: Druid's `spec` object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestionSpec {
    pub data_schema: DataSchema,
    pub io_config: IoConfig,
    #[serde(default)]
    pub tuning_config: TuningConfig,
}

impl IngestionSpec {
    /// Checks what the JSON shape alone cannot: the resolved schema is valid and the input format
    /// fits the input source.
    pub fn validate(&self) -> Result<(), SegmentError> {
        self.data_schema.schema()?;
        if matches!(self.io_config.input_format, InputFormat::Parquet(_))
            && matches!(self.io_config.input_source, InputSource::Inline { .. })
        {
            return Err(SegmentError::Spec(
                "spec.ioConfig: parquet input needs a local inputSource (inline data is text)"
                    .into(),
            ));
        }
        Ok(())
    }
}

/// Parses a task spec (task form or bare spec) and validates it (see [`IngestionSpec::validate`]).
/// A bare spec becomes an `index_parallel` task without id or context.
pub fn parse_task(json: &str) -> Result<TaskSpec, SegmentError> {
    #[derive(Deserialize)]
    struct Probe {
        #[serde(default, rename = "type")]
        task_type: Option<IgnoredAny>,
        #[serde(default)]
        spec: Option<IgnoredAny>,
    }
    let probe: Probe = serde_json::from_str(json)
        .map_err(|e| SegmentError::Spec(format!("not a JSON object: {e}")))?;
    let task = if probe.task_type.is_some() || probe.spec.is_some() {
        parse_json::<TaskSpec>(json)?
    } else {
        TaskSpec {
            task_type: TaskType::IndexParallel,
            id: None,
            spec: parse_json::<IngestionSpec>(json)?,
            context: Map::new(),
        }
    };
    task.spec.validate()?;
    Ok(task)
}

/// Deserializes `json`, turning an error into [`SegmentError::Spec`] that names the path of the
/// offending object (`spec.ioConfig.inputFormat: ...`); ignored properties are logged.
fn parse_json<T: DeserializeOwned>(json: &str) -> Result<T, SegmentError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let mut ignored = Vec::new();
    let mut record = |path: serde_ignored::Path<'_>| ignored.push(path.to_string());
    let tracked = serde_ignored::Deserializer::new(&mut de, &mut record);
    let value = serde_path_to_error::deserialize(tracked).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        SegmentError::Spec(if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        })
    })?;
    de.end()
        .map_err(|e| SegmentError::Spec(format!("trailing characters after the spec: {e}")))?;
    if !ignored.is_empty() {
        tracing::debug!(properties = ?ignored, "ingestion spec: ignored unknown properties");
    }
    Ok(value)
}

/// Deserializes `T` from a JSON object already read into a map (after a `"type"` dispatch),
/// keeping the path of an error inside it.
fn from_object<T: DeserializeOwned>(map: Map<String, Value>) -> Result<T, String> {
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            inner.to_string()
        } else {
            format!("{path}: {inner}")
        }
    })
}

/// Removes and returns the `"type"` of a JSON object that must have one.
fn take_type(map: &mut Map<String, Value>, what: &str) -> Result<String, String> {
    match map.remove("type") {
        Some(Value::String(t)) => Ok(t),
        Some(other) => Err(format!("{what} type must be a string, found {other}")),
        None => Err(format!("{what} needs a \"type\"")),
    }
}
