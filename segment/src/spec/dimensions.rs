//! `dimensionsSpec`: the dimension list (plain names or typed objects) and the schema-discovery
//! switches Grove refuses.

use std::fmt;

use serde::de::{self, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::schema::{MultiValueHandling, ValueType};

/// The timestamp column's name.
const TIME_COLUMN: &str = "__time";

/// Druid's `dimensionsSpec`.
#[derive(Clone, Debug, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawDimensionsSpec")]
pub struct DimensionsSpec {
    /// The stored dimensions, in sort order (`__time` is never one of them).
    pub dimensions: Vec<DimensionSpec>,
    pub dimension_exclusions: Vec<String>,
    /// `forceSegmentSortByTime: false`: how many of `dimensions` sort before `__time` (all of
    /// them when `__time` is not listed). `None` is Druid's default, time first.
    pub time_position: Option<usize>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDimensionsSpec {
    #[serde(default)]
    dimensions: Vec<DimensionSpec>,
    #[serde(default)]
    dimension_exclusions: Vec<String>,
    #[serde(default)]
    spatial_dimensions: Vec<IgnoredAny>,
    #[serde(default)]
    include_all_dimensions: bool,
    #[serde(default)]
    use_schema_discovery: bool,
    #[serde(default)]
    force_segment_sort_by_time: Option<bool>,
}

impl TryFrom<RawDimensionsSpec> for DimensionsSpec {
    type Error = String;

    fn try_from(raw: RawDimensionsSpec) -> Result<Self, String> {
        if !raw.spatial_dimensions.is_empty() {
            return Err("spatialDimensions are not supported yet".into());
        }
        if raw.include_all_dimensions || raw.use_schema_discovery {
            return Err(
                "schema discovery (includeAllDimensions, useSchemaDiscovery) is not \
                        supported; list the dimensions"
                    .into(),
            );
        }
        let time_first = raw.force_segment_sort_by_time != Some(false);
        // Druid lets `__time` be listed as a (long) dimension to place it in the sort order. With
        // time-first sorting (the default) it may only come first, where listing it changes
        // nothing. It is taken out of the list either way, so it never becomes a stored dimension.
        let mut dimensions = raw.dimensions;
        let listed_at = dimensions.iter().position(|d| d.name == TIME_COLUMN);
        if let Some(at) = listed_at {
            if time_first && at != 0 {
                return Err(format!(
                    "'{TIME_COLUMN}' may only be the first entry of dimensions unless \
                     forceSegmentSortByTime is false: segments are sorted by {TIME_COLUMN} first \
                     by default"
                ));
            }
            if dimensions[at].value_type != ValueType::Long && !dimensions[at].is_plain() {
                return Err(format!(
                    "'{TIME_COLUMN}' in dimensions must be a plain name or of type long"
                ));
            }
            dimensions.remove(at);
            if dimensions.iter().any(|d| d.name == TIME_COLUMN) {
                return Err(format!("'{TIME_COLUMN}' is listed twice in dimensions"));
            }
        }
        if let Some(d) = dimensions
            .iter()
            .find(|d| raw.dimension_exclusions.contains(&d.name))
        {
            return Err(format!(
                "dimension '{}' is also listed in dimensionExclusions",
                d.name
            ));
        }
        // Not listed: Druid leaves `__time` out of the sort order; Grove sorts by it last, one
        // of the orders that allows, so rows equal on every dimension stay in time order.
        let time_position = (!time_first).then(|| listed_at.unwrap_or(dimensions.len()));
        Ok(DimensionsSpec {
            dimensions,
            dimension_exclusions: raw.dimension_exclusions,
            time_position,
        })
    }
}

impl Serialize for DimensionsSpec {
    /// As Druid writes it: with `forceSegmentSortByTime: false`, `__time` is listed (as a long)
    /// at its place in the sort order, so the spec reads back the same.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        match self.time_position {
            None => map.serialize_entry("dimensions", &self.dimensions)?,
            Some(at) => {
                let mut listed = self.dimensions.clone();
                let time = DimensionSpec {
                    name: TIME_COLUMN.into(),
                    value_type: ValueType::Long,
                    multi_value_handling: MultiValueHandling::SortedArray,
                    create_bitmap_index: true,
                };
                listed.insert(at.min(listed.len()), time);
                map.serialize_entry("dimensions", &listed)?;
            }
        }
        if !self.dimension_exclusions.is_empty() {
            map.serialize_entry("dimensionExclusions", &self.dimension_exclusions)?;
        }
        if self.time_position.is_some() {
            map.serialize_entry("forceSegmentSortByTime", &false)?;
        }
        map.end()
    }
}

/// One entry of `dimensions`: a plain name (a string dimension) or an object.
#[derive(Clone, Debug, PartialEq)]
pub struct DimensionSpec {
    pub name: String,
    /// `float` is read as `double`.
    pub value_type: ValueType,
    pub multi_value_handling: MultiValueHandling,
    pub create_bitmap_index: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawDimension {
    #[serde(rename = "type", default)]
    value_type: Option<String>,
    name: String,
    #[serde(default)]
    multi_value_handling: Option<String>,
    #[serde(default)]
    create_bitmap_index: Option<bool>,
}

impl DimensionSpec {
    fn from_raw(raw: RawDimension) -> Result<DimensionSpec, String> {
        let value_type = match raw.value_type.as_deref().unwrap_or("string") {
            "string" => ValueType::String,
            "long" => ValueType::Long,
            "float" | "double" => ValueType::Double,
            other => {
                return Err(format!(
                    "dimension '{}': type '{other}' is not supported yet (use string, long, \
                     float or double)",
                    raw.name
                ));
            }
        };
        let multi_value_handling = match raw.multi_value_handling.as_deref() {
            None => MultiValueHandling::SortedArray,
            Some(m) => match m.to_ascii_uppercase().as_str() {
                "SORTED_ARRAY" => MultiValueHandling::SortedArray,
                "SORTED_SET" => MultiValueHandling::SortedSet,
                "ARRAY" => MultiValueHandling::Array,
                _ => {
                    return Err(format!(
                        "dimension '{}': multiValueHandling '{m}' is not one of SORTED_ARRAY, \
                         SORTED_SET, ARRAY",
                        raw.name
                    ));
                }
            },
        };
        if raw.name.is_empty() {
            return Err("dimension name must not be empty".into());
        }
        Ok(DimensionSpec {
            name: raw.name,
            value_type,
            multi_value_handling,
            create_bitmap_index: raw.create_bitmap_index.unwrap_or(true),
        })
    }

    fn is_plain(&self) -> bool {
        self.value_type == ValueType::String
            && self.multi_value_handling == MultiValueHandling::SortedArray
            && self.create_bitmap_index
    }
}

impl Serialize for DimensionSpec {
    /// A plain name when everything is default, as Druid users write it; an object otherwise.
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if self.is_plain() {
            return s.serialize_str(&self.name);
        }
        let mut map = s.serialize_map(None)?;
        let type_name = match self.value_type {
            ValueType::String => "string",
            ValueType::Long => "long",
            ValueType::Double => "double",
        };
        map.serialize_entry("type", type_name)?;
        map.serialize_entry("name", &self.name)?;
        if self.value_type == ValueType::String {
            map.serialize_entry("multiValueHandling", &self.multi_value_handling)?;
            map.serialize_entry("createBitmapIndex", &self.create_bitmap_index)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for DimensionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DimensionSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a dimension name or a dimension object")
            }
            fn visit_str<E: de::Error>(self, name: &str) -> Result<DimensionSpec, E> {
                DimensionSpec::from_raw(RawDimension {
                    value_type: None,
                    name: name.to_owned(),
                    multi_value_handling: None,
                    create_bitmap_index: None,
                })
                .map_err(E::custom)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<DimensionSpec, A::Error> {
                let raw = RawDimension::deserialize(de::value::MapAccessDeserializer::new(map))?;
                DimensionSpec::from_raw(raw).map_err(A::Error::custom)
            }
        }
        d.deserialize_any(V)
    }
}
