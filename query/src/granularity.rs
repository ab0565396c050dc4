//! Query granularities: `grove-segment`'s [`Granularity`] (all, none, named, period, duration),
//! optionally in a time zone (`{"type":"period","period":"P1D","timeZone":"America/Los_Angeles"}`),
//! as Druid's `PeriodGranularity` with a `timeZone`: buckets follow the zone's wall clock, so a
//! day bucket starts at local midnight and is 23 or 25 hours long across a DST change.
//!
//! Zones are IANA names (from a time zone database bundled into the binary, so answers do not
//! depend on the host's tzdata) or fixed offsets such as `+05:30`.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};
use serde::{Deserialize, Deserializer};

use grove_segment::time::Granularity;

#[derive(Clone, Debug, PartialEq)]
pub struct QueryGranularity {
    pub base: Granularity,
    /// `None` is UTC.
    pub zone: Option<TimeZone>,
}

impl QueryGranularity {
    pub const ALL: QueryGranularity = QueryGranularity {
        base: Granularity::All,
        zone: None,
    };

    /// The start of the bucket holding `ms`.
    pub fn truncate(&self, ms: i64) -> i64 {
        match &self.zone {
            None => self.base.truncate(ms),
            Some(zone) => {
                let local = ms + offset_ms(zone, ms);
                to_instant(zone, self.base.truncate(local))
            }
        }
    }

    /// The start of the bucket after the one starting at `bucket_start_ms`.
    pub fn next(&self, bucket_start_ms: i64) -> i64 {
        match &self.zone {
            None => self.base.next(bucket_start_ms),
            Some(zone) => {
                let local = bucket_start_ms + offset_ms(zone, bucket_start_ms);
                let next = to_instant(zone, self.base.next(local));
                // A wall-clock bucket that a DST change swallowed still moves time forward.
                next.max(bucket_start_ms + 1)
            }
        }
    }
}

fn offset_ms(zone: &TimeZone, ms: i64) -> i64 {
    match Timestamp::from_millisecond(ms) {
        Ok(t) => zone.to_offset(t).seconds() as i64 * 1000,
        Err(_) => 0,
    }
}

/// The instant of local wall-clock time `local_ms` (ms since the local epoch) in `zone`; times
/// in a DST gap move forward, repeated times take the earlier instant (Joda's behaviour).
fn to_instant(zone: &TimeZone, local_ms: i64) -> i64 {
    let as_utc = match Timestamp::from_millisecond(local_ms) {
        Ok(t) => t,
        Err(_) => return local_ms,
    };
    let civil: DateTime = Offset::UTC.to_datetime(as_utc);
    match zone.to_ambiguous_timestamp(civil).compatible() {
        Ok(t) => t.as_millisecond(),
        Err(_) => local_ms - offset_ms(zone, local_ms),
    }
}

/// Parses a time zone as Druid accepts it: an IANA name, `UTC`, or a fixed offset.
pub fn parse_zone(name: &str) -> Result<Option<TimeZone>, String> {
    let utc = ["UTC", "Etc/UTC", "Z", "GMT", "Etc/GMT", "+00:00", "-00:00"];
    if utc.iter().any(|z| z.eq_ignore_ascii_case(name)) {
        return Ok(None);
    }
    if let Some(sign) = name.chars().next().filter(|c| *c == '+' || *c == '-') {
        let digits = &name[1..];
        let (h, m) = match digits.split_once(':') {
            Some((h, m)) => (h, m),
            None if digits.len() == 4 => (&digits[..2], &digits[2..]),
            None => (digits, "0"),
        };
        let (h, m): (i32, i32) = match (h.parse(), m.parse()) {
            (Ok(h), Ok(m)) if h <= 18 && m < 60 => (h, m),
            _ => return Err(format!("cannot parse time zone offset '{name}'")),
        };
        let seconds = (h * 3600 + m * 60) * if sign == '-' { -1 } else { 1 };
        let offset =
            Offset::from_seconds(seconds).map_err(|e| format!("time zone offset '{name}': {e}"))?;
        return Ok(Some(TimeZone::fixed(offset)));
    }
    TimeZone::get(name).map(Some).map_err(|_| {
        format!("unknown time zone '{name}' (use an IANA name or an offset like +05:30)")
    })
}

impl<'de> Deserialize<'de> for QueryGranularity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let mut value = serde_json::Value::deserialize(d)?;
        let zone = match value.as_object_mut().and_then(|o| o.remove("timeZone")) {
            None | Some(serde_json::Value::Null) => None,
            Some(serde_json::Value::String(z)) => parse_zone(&z).map_err(D::Error::custom)?,
            Some(other) => {
                return Err(D::Error::custom(format!(
                    "timeZone must be a string, got {other}"
                )));
            }
        };
        let base: Granularity = serde_json::from_value(value).map_err(D::Error::custom)?;
        Ok(QueryGranularity {
            base,
            zone: zone.filter(|_| !matches!(base, Granularity::All | Granularity::None)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use grove_segment::time::{format_iso, parse_iso_timestamp};

    fn g(json: &str) -> QueryGranularity {
        serde_json::from_str(json).unwrap()
    }

    fn ms(text: &str) -> i64 {
        parse_iso_timestamp(text).unwrap()
    }

    #[test]
    fn days_follow_the_local_wall_clock_across_dst() {
        let day = g(r#"{"type":"period","period":"P1D","timeZone":"America/Los_Angeles"}"#);
        // 2024-03-10 is the spring-forward day in Los Angeles: 23 hours long.
        let start = day.truncate(ms("2024-03-10T12:00:00Z"));
        assert_eq!(format_iso(start), "2024-03-10T08:00:00.000Z");
        let next = day.next(start);
        assert_eq!(format_iso(next), "2024-03-11T07:00:00.000Z");
        assert_eq!(day.truncate(ms("2024-03-11T06:59:59Z")), start);
    }

    #[test]
    fn fixed_offsets_and_utc_names() {
        let hour = g(r#"{"type":"period","period":"PT1H","timeZone":"+05:30"}"#);
        assert_eq!(
            format_iso(hour.truncate(ms("2024-01-01T00:10:00Z"))),
            "2023-12-31T23:30:00.000Z"
        );
        assert_eq!(
            g(r#"{"type":"period","period":"PT1H","timeZone":"UTC"}"#).zone,
            None
        );
        assert_eq!(
            g(r#""hour""#),
            QueryGranularity {
                base: Granularity::HOUR,
                zone: None
            }
        );
        let err = serde_json::from_str::<QueryGranularity>(
            r#"{"type":"period","period":"P1D","timeZone":"Mars/Olympus"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("Mars/Olympus"), "{err}");
    }
}
