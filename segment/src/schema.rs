//! The resolved schema of a datasource: what the ingestion spec says, checked and flattened into
//! the form the index, the segment format and the query engine work with.

use serde::{Deserialize, Serialize};

use crate::time::Granularity;

/// The type of a dimension's values (`__time` is a long).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ValueType {
    String,
    Long,
    Double,
}

/// How a string dimension stores rows that carry several values (Druid's `multiValueHandling`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MultiValueHandling {
    /// Sort the values, keep duplicates (Druid's default).
    #[default]
    SortedArray,
    /// Sort the values and drop duplicates.
    SortedSet,
    /// Keep the values as given.
    Array,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DimensionSchema {
    pub name: String,
    pub value_type: ValueType,
    /// For string dimensions only.
    pub multi_value_handling: MultiValueHandling,
    /// For string dimensions: whether to write one bitmap per value (Druid's `createBitmapIndex`).
    pub bitmap_index: bool,
}

impl DimensionSchema {
    pub fn string(name: impl Into<String>) -> DimensionSchema {
        DimensionSchema {
            name: name.into(),
            value_type: ValueType::String,
            multi_value_handling: MultiValueHandling::SortedArray,
            bitmap_index: true,
        }
    }

    pub fn long(name: impl Into<String>) -> DimensionSchema {
        DimensionSchema {
            value_type: ValueType::Long,
            ..DimensionSchema::string(name)
        }
    }

    pub fn double(name: impl Into<String>) -> DimensionSchema {
        DimensionSchema {
            value_type: ValueType::Double,
            ..DimensionSchema::string(name)
        }
    }
}

/// A metric's aggregator at ingestion time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind")]
pub enum MetricKind {
    Count,
    LongSum,
    LongMin,
    LongMax,
    DoubleSum,
    DoubleMin,
    DoubleMax,
    /// An HLL sketch of the input field's values (Apache DataSketches HLL, Druid's `HLLSketchBuild`).
    #[serde(rename_all = "camelCase")]
    HllSketch {
        lg_k: u8,
        /// Strings hash as UTF-16LE (Druid's default `stringEncoding`) rather than UTF-8.
        /// Absent in footers written before Grove honoured `stringEncoding`, whose sketches
        /// hashed UTF-8.
        #[serde(default, skip_serializing_if = "is_false")]
        utf16le: bool,
    },
}

impl<'de> Deserialize<'de> for MetricKind {
    /// As derived, but refusing unknown fields in every variant: serde lets the unit variants
    /// of an internally tagged enum ignore extra fields even under `deny_unknown_fields`, so
    /// they are read as empty struct variants.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase", tag = "kind", deny_unknown_fields)]
        enum Stored {
            Count {},
            LongSum {},
            LongMin {},
            LongMax {},
            DoubleSum {},
            DoubleMin {},
            DoubleMax {},
            #[serde(rename_all = "camelCase")]
            HllSketch {
                lg_k: u8,
                #[serde(default)]
                utf16le: bool,
            },
        }
        Ok(match Stored::deserialize(d)? {
            Stored::Count {} => MetricKind::Count,
            Stored::LongSum {} => MetricKind::LongSum,
            Stored::LongMin {} => MetricKind::LongMin,
            Stored::LongMax {} => MetricKind::LongMax,
            Stored::DoubleSum {} => MetricKind::DoubleSum,
            Stored::DoubleMin {} => MetricKind::DoubleMin,
            Stored::DoubleMax {} => MetricKind::DoubleMax,
            Stored::HllSketch { lg_k, utf16le } => MetricKind::HllSketch { lg_k, utf16le },
        })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a metric's values are stored in a segment column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricStorage {
    Long,
    Double,
    Sketch,
}

impl MetricKind {
    pub fn storage(&self) -> MetricStorage {
        match self {
            MetricKind::Count | MetricKind::LongSum | MetricKind::LongMin | MetricKind::LongMax => {
                MetricStorage::Long
            }
            MetricKind::DoubleSum | MetricKind::DoubleMin | MetricKind::DoubleMax => {
                MetricStorage::Double
            }
            MetricKind::HllSketch { .. } => MetricStorage::Sketch,
        }
    }

    /// The aggregator that combines two already-aggregated values of this metric (a count's
    /// partial counts are summed, not counted).
    pub fn combining(&self) -> MetricKind {
        match self {
            MetricKind::Count => MetricKind::LongSum,
            other => *other,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MetricSchema {
    pub name: String,
    /// The input field aggregated; `None` for `count`.
    pub field_name: Option<String>,
    pub kind: MetricKind,
}

/// Everything needed to roll rows up and lay them out in a segment. Stored in segment footers
/// and metadata records; like the other stored schema objects it refuses fields it does not
/// know, so a reader never takes a file or record that means more than it understands for one
/// that does not (see `format::FORMAT_VERSION`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Schema {
    pub data_source: String,
    pub dimensions: Vec<DimensionSchema>,
    pub metrics: Vec<MetricSchema>,
    pub query_granularity: Granularity,
    pub segment_granularity: Granularity,
    pub rollup: bool,
    /// Where `__time` sits in the rows' sort order: how many dimensions (in schema order) sort
    /// before it. 0, Druid's default, sorts by time first; a larger value is Druid's
    /// `forceSegmentSortByTime: false` with `__time` placed among the dimensions (or after all
    /// of them). Absent in older footers and records, which were all time-first.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub time_position: usize,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

impl Schema {
    pub fn dimension_index(&self, name: &str) -> Option<usize> {
        self.dimensions.iter().position(|d| d.name == name)
    }

    pub fn metric_index(&self, name: &str) -> Option<usize> {
        self.metrics.iter().position(|m| m.name == name)
    }

    /// Whether rows are sorted by `__time` first, so a time range is a contiguous run of rows.
    pub fn time_sorted(&self) -> bool {
        self.time_position == 0
    }

    /// Checks names are unique and not reserved.
    pub fn validate(&self) -> Result<(), String> {
        let mut names: Vec<&str> = self
            .dimensions
            .iter()
            .map(|d| d.name.as_str())
            .chain(self.metrics.iter().map(|m| m.name.as_str()))
            .collect();
        if names.contains(&"__time") {
            return Err(
                "'__time' is reserved for the timestamp and cannot be a dimension or metric".into(),
            );
        }
        if names.iter().any(|n| n.is_empty()) {
            return Err("dimension and metric names must not be empty".into());
        }
        if self.time_position > self.dimensions.len() {
            return Err(format!(
                "__time is placed after {} dimensions, but there are {}",
                self.time_position,
                self.dimensions.len()
            ));
        }
        names.sort_unstable();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(format!("column name '{}' is used more than once", w[0]));
        }
        for m in &self.metrics {
            if m.kind != MetricKind::Count && m.field_name.is_none() {
                return Err(format!("metric '{}' needs a fieldName", m.name));
            }
            if let MetricKind::HllSketch { lg_k, .. } = m.kind
                && !(4..=21).contains(&lg_k)
            {
                return Err(format!("metric '{}': lgK {lg_k} is outside 4..=21", m.name));
            }
        }
        Ok(())
    }
}
