//! Segment ids: (datasource, interval, version, partition, optional namespace).
//!
//! Main type: [`SegmentId`], printed in Druid's form and parsed back with [`SegmentId::parse`]
//! given the datasource name. Invariant: for every id whose version does not end in `_<n>` (a
//! positive decimal), `SegmentId::parse(&id.data_source, &id.to_string()) == Some(id)`.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::time::{Interval, format_iso};

/// Identifies one segment. Ordering is (datasource, namespace, interval, version, partition), so a
/// sorted list groups a datasource's segments by time chunk.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SegmentId {
    pub data_source: String,
    /// Several pipelines may write different metrics with the same dimensions into one datasource,
    /// each with its own versioned timeline; `None` is the default namespace.
    pub namespace: Option<String>,
    pub interval: Interval,
    /// Higher versions overshadow lower ones for the same interval. ISO timestamps compare
    /// correctly as strings.
    pub version: String,
    pub partition: u32,
}

impl fmt::Display for SegmentId {
    /// Druid's form: `ds_start_end_version[_partition]`, with the namespace after the datasource
    /// when there is one (`ds@ns_start_end_version`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.data_source)?;
        if let Some(ns) = &self.namespace {
            write!(f, "@{ns}")?;
        }
        write!(
            f,
            "_{}_{}_{}",
            format_iso(self.interval.start_ms),
            format_iso(self.interval.end_ms),
            self.version
        )?;
        if self.partition != 0 {
            write!(f, "_{}", self.partition)?;
        }
        Ok(())
    }
}

impl SegmentId {
    pub fn new(
        data_source: impl Into<String>,
        namespace: Option<&str>,
        interval: Interval,
        version: impl Into<String>,
        partition: u32,
    ) -> SegmentId {
        SegmentId {
            data_source: data_source.into(),
            namespace: namespace.map(str::to_owned),
            interval,
            version: version.into(),
            partition,
        }
    }

    /// The time chunk this segment belongs to: (datasource, namespace, interval). The segments of
    /// one chunk and one version form a partition set.
    pub fn time_chunk(&self) -> (&str, Option<&str>, Interval) {
        (&self.data_source, self.namespace.as_deref(), self.interval)
    }

    /// Parses the [`Display`](fmt::Display) form back, given the datasource name (which, like
    /// the namespace and version, may itself contain `_`; Druid's `SegmentId.tryParse` needs the
    /// datasource for the same reason). Returns `None` when `text` is not an id of `data_source`.
    ///
    /// Ambiguities are resolved as the printed form allows: the namespace ends at the first `_`
    /// that is followed by two valid timestamps; a final `_<n>` with `n` a positive decimal
    /// without leading zeros is the partition (partition 0 is never printed), so a version that
    /// itself ends in such a suffix does not round-trip with partition 0.
    pub fn parse(data_source: &str, text: &str) -> Option<SegmentId> {
        let rest = text.strip_prefix(data_source)?;
        if let Some(rest) = rest.strip_prefix('_') {
            let (interval, version, partition) = parse_tail(rest)?;
            return Some(SegmentId::new(
                data_source,
                None,
                interval,
                version,
                partition,
            ));
        }
        let rest = rest.strip_prefix('@')?;
        rest.match_indices('_').find_map(|(at, _)| {
            let (interval, version, partition) = parse_tail(&rest[at + 1..])?;
            Some(SegmentId::new(
                data_source,
                Some(&rest[..at]),
                interval,
                version,
                partition,
            ))
        })
    }
}

/// Parses `start_end_version[_partition]`.
fn parse_tail(text: &str) -> Option<(Interval, &str, u32)> {
    let (start, rest) = text.split_once('_')?;
    let (end, rest) = rest.split_once('_')?;
    let start_ms = parse_printed_timestamp(start)?;
    let end_ms = parse_printed_timestamp(end)?;
    if end_ms < start_ms {
        return None;
    }
    let (version, partition) = match rest.rsplit_once('_') {
        Some((version, number))
            if !version.is_empty()
                && !number.starts_with('0')
                && number.bytes().all(|b| b.is_ascii_digit()) =>
        {
            match number.parse::<u32>() {
                Ok(partition) => (version, partition),
                Err(_) => (rest, 0),
            }
        }
        _ => (rest, 0),
    };
    if version.is_empty() {
        return None;
    }
    Some((Interval::new(start_ms, end_ms), version, partition))
}

/// Parses exactly what [`format_iso`] prints (`YYYY-MM-DDTHH:MM:SS.mmmZ`, where the year may
/// have a sign and more than four digits), and nothing else.
fn parse_printed_timestamp(text: &str) -> Option<i64> {
    use crate::time::{MS_PER_DAY, days_from_civil};
    // Years beyond this would overflow milliseconds; Druid's eternity is within ±146 million.
    const YEAR_LIMIT: i64 = 200_000_000;
    let b = text.as_bytes();
    let split = b.len().checked_sub(20)?;
    let (year, suffix) = (text.get(..split)?, &b[split..]);
    let year: i64 = year.parse().ok()?;
    if year.abs() > YEAR_LIMIT || !suffix.ends_with(b"Z") {
        return None;
    }
    let num = |at: usize, len: usize| -> Option<i64> {
        let digits = suffix.get(at..at + len)?;
        digits.iter().try_fold(0i64, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0'))
        })
    };
    let (month, day) = (num(1, 2)?, num(4, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    let (hour, minute, second, milli) = (num(7, 2)?, num(10, 2)?, num(13, 2)?, num(16, 3)?);
    let ms = days_from_civil(year, month as u32, day as u32)
        .checked_mul(MS_PER_DAY)?
        .checked_add(((hour * 60 + minute) * 60 + second) * 1_000 + milli)?;
    // Reprinting rejects anything that is not in canonical form (Feb 30, 24:00, separators).
    (format_iso(ms) == text).then_some(ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{Interval, MS_PER_DAY, parse_iso_timestamp};

    fn day(date: &str) -> Interval {
        let start = parse_iso_timestamp(date).expect("test date");
        Interval::new(start, start + MS_PER_DAY)
    }

    #[test]
    fn display_parses_back() {
        let version = "2024-05-17T13:45:12.345Z";
        let cases = [
            SegmentId::new("wiki", None, day("2024-01-01"), version, 0),
            SegmentId::new("wiki", None, day("2024-01-01"), version, 7),
            SegmentId::new("wiki_edits", Some("metrics"), day("2024-01-01"), version, 0),
            SegmentId::new(
                "wiki_edits",
                Some("by_user_x"),
                day("2024-02-29"),
                version,
                42,
            ),
            SegmentId::new("w", Some(""), day("1969-12-31"), "v1_final", 0),
            SegmentId::new("a@b", Some("c@d"), day("2024-01-01"), "v", u32::MAX),
            SegmentId::new("all", None, Interval::ETERNITY, "v", 3),
            SegmentId::new("pre", None, Interval::new(-62_200_000_000_000, 0), "v", 1),
        ];
        for id in cases {
            let text = id.to_string();
            assert_eq!(
                SegmentId::parse(&id.data_source, &text),
                Some(id.clone()),
                "{text}"
            );
        }
    }

    #[test]
    fn printed_forms() {
        let id = SegmentId::new("wiki", Some("ns"), day("2024-01-01"), "v2", 3);
        assert_eq!(
            id.to_string(),
            "wiki@ns_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z_v2_3"
        );
        assert_eq!(id.time_chunk(), ("wiki", Some("ns"), day("2024-01-01")));
        let plain = SegmentId::new("wiki", None, day("2024-01-01"), "v2", 0);
        assert_eq!(
            plain.to_string(),
            "wiki_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z_v2"
        );
        assert_eq!(plain.time_chunk().1, None);
    }

    #[test]
    fn rejects_other_text() {
        let text = "wiki_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z_v2";
        assert!(SegmentId::parse("wiki", text).is_some());
        // The datasource is a prefix of another one's name: the id belongs to "wiki".
        assert_eq!(SegmentId::parse("wik", text), None);
        assert_eq!(SegmentId::parse("wikipedia", text), None);
        for bad in [
            "wiki",
            "wiki_",
            "wiki_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z",
            "wiki_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z_",
            "wiki_2024-01-01_2024-01-02_v1",
            "wiki_2024-02-30T00:00:00.000Z_2024-03-01T00:00:00.000Z_v1",
            "wiki_2024-01-02T00:00:00.000Z_2024-01-01T00:00:00.000Z_v1",
            "wiki_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000+01:00_v1",
            "wiki@ns2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z_v1",
            "wiki_99999999999-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z_v1",
        ] {
            assert_eq!(SegmentId::parse("wiki", bad), None, "{bad}");
        }
        // `_0` and `_007` are not printed partitions, so they stay part of the version.
        let id = SegmentId::parse(
            "wiki",
            "wiki_2024-01-01T00:00:00.000Z_2024-01-02T00:00:00.000Z_v_007",
        )
        .expect("valid id");
        assert_eq!((id.version.as_str(), id.partition), ("v_007", 0));
    }
}
