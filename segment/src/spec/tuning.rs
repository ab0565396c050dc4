//! `tuningConfig`: memory and segment-size limits and the parse-error budget, resolved to numbers.

use serde::de::{Error as _, IgnoredAny};
use serde::ser::SerializeMap;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

use super::{TaskType, from_object, take_type};

/// `tuningConfig` fields Grove accepts and ignores. Each only tunes how Druid itself runs a task
/// (parallelism, retries, timeouts, merge fan-in, the on-disk encoding of its own segments and
/// intermediate persists, perfect-vs-best-effort roll-up bookkeeping, when it pushes segments,
/// publishing waits), so none can change which rows are ingested or what a query returns.
/// Everything else unknown is an error.
pub const IGNORED_TUNING_FIELDS: &[&str] = &[
    // Only when Druid pushes the segments it is building (also accepted in a dynamic
    // partitionsSpec); segment contents follow maxRowsPerSegment either way.
    "maxTotalRows",
    "maxNumConcurrentSubTasks",
    "maxRetry",
    "taskStatusCheckPeriodMs",
    "chatHandlerTimeout",
    "chatHandlerNumRetries",
    "splitHintSpec",
    "indexSpec",
    "indexSpecForIntermediatePersists",
    "forceGuaranteedRollup",
    "forceExtendableShardSpecs",
    "totalNumMergeTasks",
    "maxNumSegmentsToMerge",
    "maxColumnsToMerge",
    "maxPendingPersists",
    "numPersistThreads",
    "pushTimeout",
    "awaitSegmentAvailabilityTimeoutMillis",
    "segmentWriteOutMediumFactory",
    "appendableIndexSpec",
    "skipBytesInMemoryOverheadCheck",
    "maxAllowedLockCount",
];

const MIB: u64 = 1024 * 1024;

/// Druid's "unlimited" `maxParseExceptions` (Java's `Integer.MAX_VALUE`): this value or more reads
/// as `u64::MAX`, and `u64::MAX` is written as this, so specs Grove writes stay valid for Druid.
const UNLIMITED_PARSE_EXCEPTIONS: u64 = i32::MAX as u64;

/// Resolved `tuningConfig`.
#[derive(Clone, Debug, PartialEq)]
pub struct TuningConfig {
    /// Rows the in-memory index holds before it persists.
    pub max_rows_in_memory: u64,
    /// Bytes the in-memory index holds before it persists (`u64::MAX` = unlimited).
    pub max_bytes_in_memory: u64,
    pub max_rows_per_segment: u64,
    /// Unparseable rows tolerated before ingestion fails (`u64::MAX` = unlimited).
    pub max_parse_exceptions: u64,
    /// Parse errors kept for the report (`None`: [`crate::input::ParseReport::ERRORS_KEPT`]); see
    /// [`TuningConfig::errors_kept_max`].
    pub max_saved_parse_exceptions: Option<u64>,
    /// Log each parse error as it happens (carried in [`crate::input::ParseReport`]).
    pub log_parse_exceptions: bool,
}

impl TuningConfig {
    pub const DEFAULT_MAX_ROWS_IN_MEMORY: u64 = 1_000_000;
    pub const DEFAULT_MAX_BYTES_IN_MEMORY: u64 = 512 * MIB;
    pub const DEFAULT_MAX_ROWS_PER_SEGMENT: u64 = 5_000_000;

    /// How many parse errors the report keeps: `maxSavedParseExceptions` when the spec sets it,
    /// else [`crate::input::ParseReport::ERRORS_KEPT`].
    pub fn errors_kept_max(&self) -> usize {
        match self.max_saved_parse_exceptions {
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            None => crate::input::ParseReport::ERRORS_KEPT,
        }
    }
}

impl Default for TuningConfig {
    fn default() -> Self {
        TuningConfig {
            max_rows_in_memory: Self::DEFAULT_MAX_ROWS_IN_MEMORY,
            max_bytes_in_memory: Self::DEFAULT_MAX_BYTES_IN_MEMORY,
            max_rows_per_segment: Self::DEFAULT_MAX_ROWS_PER_SEGMENT,
            max_parse_exceptions: u64::MAX,
            max_saved_parse_exceptions: None,
            log_parse_exceptions: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawTuning {
    #[serde(rename = "type", default)]
    #[allow(dead_code)]
    task_type: Option<TaskType>,
    #[serde(default)]
    max_rows_in_memory: Option<u64>,
    #[serde(default)]
    max_bytes_in_memory: Option<i64>,
    #[serde(default, alias = "targetPartitionSize")]
    max_rows_per_segment: Option<u64>,
    #[serde(default)]
    partitions_spec: Option<Map<String, Value>>,
    #[serde(default)]
    max_parse_exceptions: Option<u64>,
    #[serde(default)]
    max_saved_parse_exceptions: Option<u64>,
    #[serde(default)]
    log_parse_exceptions: Option<bool>,
    /// Druid's older switch: true means "fail on the first unparseable row".
    #[serde(default)]
    report_parse_exceptions: Option<bool>,
    /// Legacy hashed partitioning (`numShards`, `partitionDimensions`): refused unless unset.
    #[serde(default)]
    num_shards: Option<i64>,
    #[serde(default)]
    partition_dimensions: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDynamic {
    #[serde(default)]
    max_rows_per_segment: Option<u64>,
    /// Ignored: see [`IGNORED_TUNING_FIELDS`].
    #[serde(default)]
    #[allow(dead_code)]
    max_total_rows: Option<IgnoredAny>,
}

/// Both ways of giving a limit must agree when both are given.
fn agree(name: &str, top: Option<u64>, inner: Option<u64>) -> Result<Option<u64>, String> {
    match (top, inner) {
        (Some(a), Some(b)) if a != b => Err(format!(
            "{name} is {a} in tuningConfig but {b} in partitionsSpec"
        )),
        (a, b) => Ok(a.or(b)),
    }
}

impl TuningConfig {
    fn from_raw(raw: RawTuning) -> Result<TuningConfig, String> {
        if raw.num_shards.is_some_and(|n| n != -1)
            || raw
                .partition_dimensions
                .as_ref()
                .is_some_and(|d| !d.is_empty())
        {
            return Err(
                "hashed partitioning (numShards, partitionDimensions) is not supported \
                        yet; use partitionsSpec type dynamic"
                    .into(),
            );
        }
        let dynamic = match raw.partitions_spec {
            None => RawDynamic {
                max_rows_per_segment: None,
                max_total_rows: None,
            },
            Some(mut map) => {
                let kind = take_type(&mut map, "partitionsSpec")?;
                match kind.as_str() {
                    "dynamic" => from_object(map).map_err(|e| format!("partitionsSpec: {e}"))?,
                    "hashed" | "range" | "single_dim" => {
                        return Err(format!(
                            "partitionsSpec type '{kind}' is not supported yet (only dynamic)"
                        ));
                    }
                    other => {
                        return Err(format!(
                            "unknown partitionsSpec type '{other}' (only dynamic is supported)"
                        ));
                    }
                }
            }
        };
        let default = TuningConfig::default();
        let max_rows_per_segment = agree(
            "maxRowsPerSegment",
            raw.max_rows_per_segment,
            dynamic.max_rows_per_segment,
        )?
        .unwrap_or(default.max_rows_per_segment);
        let max_bytes_in_memory = match raw.max_bytes_in_memory {
            None | Some(0) => default.max_bytes_in_memory,
            Some(-1) => u64::MAX,
            Some(n) if n > 0 => n as u64,
            Some(n) => {
                return Err(format!(
                    "maxBytesInMemory {n} is invalid (use a positive number, 0 for the default \
                     or -1 for unlimited)"
                ));
            }
        };
        let max_rows_in_memory = raw.max_rows_in_memory.unwrap_or(default.max_rows_in_memory);
        for (name, value) in [
            ("maxRowsInMemory", max_rows_in_memory),
            ("maxRowsPerSegment", max_rows_per_segment),
        ] {
            if value == 0 {
                return Err(format!("{name} must be at least 1"));
            }
        }
        let max_parse_exceptions = if raw.report_parse_exceptions == Some(true) {
            0
        } else {
            match raw.max_parse_exceptions {
                Some(n) if n < UNLIMITED_PARSE_EXCEPTIONS => n,
                _ => u64::MAX,
            }
        };
        Ok(TuningConfig {
            max_rows_in_memory,
            max_bytes_in_memory,
            max_rows_per_segment,
            max_parse_exceptions,
            max_saved_parse_exceptions: raw.max_saved_parse_exceptions,
            log_parse_exceptions: raw.log_parse_exceptions.unwrap_or(false),
        })
    }
}

impl<'de> Deserialize<'de> for TuningConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut map = Map::<String, Value>::deserialize(d)?;
        for field in IGNORED_TUNING_FIELDS {
            map.remove(*field);
        }
        let raw: RawTuning = from_object(map).map_err(D::Error::custom)?;
        TuningConfig::from_raw(raw).map_err(D::Error::custom)
    }
}

impl Serialize for TuningConfig {
    /// Druid's form: limits at the top, segment sizes in a dynamic `partitionsSpec`.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Dynamic {
            #[serde(rename = "type")]
            kind: &'static str,
            max_rows_per_segment: u64,
        }
        let partitions = Dynamic {
            kind: "dynamic",
            max_rows_per_segment: self.max_rows_per_segment,
        };
        let max_bytes: i64 = if self.max_bytes_in_memory == u64::MAX {
            -1
        } else {
            i64::try_from(self.max_bytes_in_memory).unwrap_or(-1)
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", TaskType::IndexParallel.name())?;
        map.serialize_entry("partitionsSpec", &partitions)?;
        map.serialize_entry("maxRowsInMemory", &self.max_rows_in_memory)?;
        map.serialize_entry("maxBytesInMemory", &max_bytes)?;
        let max_parse_exceptions = self.max_parse_exceptions.min(UNLIMITED_PARSE_EXCEPTIONS);
        map.serialize_entry("maxParseExceptions", &max_parse_exceptions)?;
        if let Some(n) = self.max_saved_parse_exceptions {
            map.serialize_entry("maxSavedParseExceptions", &n)?;
        }
        map.serialize_entry("logParseExceptions", &self.log_parse_exceptions)?;
        map.end()
    }
}
