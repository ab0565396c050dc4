//! `dimensionsSpec`: the dimension list (plain names or typed objects) and the schema-discovery
//! switches Grove refuses.

use std::fmt;

use serde::de::{self, Error as _, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::schema::{MultiValueHandling, ValueType};

/// The timestamp column's name.
const TIME_COLUMN: &str = "__time";

/// Druid's `dimensionsSpec`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", try_from = "RawDimensionsSpec")]
pub struct DimensionsSpec {
    pub dimensions: Vec<DimensionSpec>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub dimension_exclusions: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
        if raw.force_segment_sort_by_time == Some(false) {
            return Err(
                "forceSegmentSortByTime false is not supported: Grove always sorts \
                        segments by __time first"
                    .into(),
            );
        }
        // Druid lets `__time` be listed as a (long) dimension to place it in the sort order. With
        // time-first sorting, the only order Grove builds, it may only come first, where listing it
        // changes nothing; it is dropped so it never becomes a stored dimension.
        let mut dimensions = raw.dimensions;
        if let Some(at) = dimensions.iter().position(|d| d.name == TIME_COLUMN) {
            if at != 0 {
                return Err(format!(
                    "'{TIME_COLUMN}' may only be the first entry of dimensions: segments are \
                     sorted by {TIME_COLUMN} first (forceSegmentSortByTime false is not \
                     supported)"
                ));
            }
            if dimensions[0].value_type != ValueType::Long && !dimensions[0].is_plain() {
                return Err(format!(
                    "'{TIME_COLUMN}' in dimensions must be a plain name or of type long"
                ));
            }
            dimensions.remove(0);
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
        Ok(DimensionsSpec {
            dimensions,
            dimension_exclusions: raw.dimension_exclusions,
        })
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
#[serde(rename_all = "camelCase", deny_unknown_fields)]
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
