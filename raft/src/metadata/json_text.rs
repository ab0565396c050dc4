//! A serde adapter for fields whose values are free-form JSON (Druid's load specs, task specs,
//! rules, dynamic configs, supervisor specs) or whose serde form needs a self-describing format
//! (a datasource [`grove_segment::schema::Schema`]: its granularities are untagged, its metric
//! kinds internally tagged).
//!
//! In a human-readable format (JSON: the HTTP API, the watch stream's items) the field is
//! written as itself, so the record's JSON shape is unchanged. In a binary format (bincode: Raft
//! log entries, messages and snapshots) it is written as one string holding its JSON text,
//! because bincode cannot decode values that need `deserialize_any`. Everything around such a
//! field stays native bincode.
//!
//! Use: `#[serde(with = "crate::metadata::json_text")]` on the field.

use serde::de::{DeserializeOwned, Error as _};
use serde::ser::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub fn serialize<T: Serialize, S: Serializer>(value: &T, serializer: S) -> Result<S::Ok, S::Error> {
    if serializer.is_human_readable() {
        return value.serialize(serializer);
    }
    let text = serde_json::to_string(value).map_err(S::Error::custom)?;
    serializer.serialize_str(&text)
}

pub fn deserialize<'de, T: DeserializeOwned, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<T, D::Error> {
    if deserializer.is_human_readable() {
        return T::deserialize(deserializer);
    }
    let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
    serde_json::from_str(&text).map_err(D::Error::custom)
}
