//! Time: ISO-8601 timestamps and intervals, Druid granularities, timestamp formats.
//!
//! All times are milliseconds since the Unix epoch, UTC. Calendar arithmetic uses the
//! days-from-civil algorithms (proleptic Gregorian), so no time-zone database is needed for UTC.
//! Named time zones other than UTC are refused with a clear error until the query engine needs them.

use std::fmt;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub const MS_PER_SECOND: i64 = 1_000;
pub const MS_PER_MINUTE: i64 = 60 * MS_PER_SECOND;
pub const MS_PER_HOUR: i64 = 60 * MS_PER_MINUTE;
pub const MS_PER_DAY: i64 = 24 * MS_PER_HOUR;
pub const MS_PER_WEEK: i64 = 7 * MS_PER_DAY;

/// Days since 1970-01-01 for a proleptic Gregorian date.
pub fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12, day 1..=31) for days since 1970-01-01.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn digits(bytes: &[u8], at: usize, count: usize) -> Option<i64> {
    let slice = bytes.get(at..at + count)?;
    let mut value = 0i64;
    for &b in slice {
        if !b.is_ascii_digit() {
            return None;
        }
        value = value * 10 + (b - b'0') as i64;
    }
    Some(value)
}

/// Whether `ms` lies within Druid's eternity ([`Interval::ETERNITY`], both ends included): the
/// instants Grove represents. Every parsed timestamp is one, so adding a bucket or an offset to
/// it cannot overflow.
pub fn in_eternity(ms: i64) -> bool {
    (Interval::ETERNITY.start_ms..=Interval::ETERNITY.end_ms).contains(&ms)
}

/// `Some(ms)` when `ms` is within Druid's eternity.
fn within_eternity(ms: i64) -> Option<i64> {
    in_eternity(ms).then_some(ms)
}

/// Parses an ISO-8601 timestamp: `YYYY-MM-DD` (the year may be signed and longer, as in
/// Druid's eternity), optionally followed by `T` (or a space) and
/// `HH[:MM[:SS[.fraction]]]`, optionally followed by `Z` or an offset `±HH[:MM]`. Without a zone the
/// time is UTC, as Druid assumes. Returns milliseconds since the epoch; `None` for text that is
/// not such a timestamp or an instant outside Druid's eternity (years -146136543 to 146140482),
/// so no year can wrap around.
pub fn parse_iso_timestamp(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    let (sign, start) = match b.first()? {
        b'-' => (-1, 1),
        b'+' => (1, 1),
        _ => (1, 0),
    };
    // Four digits, or more for the extended years of Druid's eternity (`146140482-04-24...`).
    let year_digits = b[start..].iter().take_while(|c| c.is_ascii_digit()).count();
    if !(4..=9).contains(&year_digits) {
        return None;
    }
    let year = sign * digits(b, start, year_digits)?;
    let mut i = start + year_digits;
    let (month, day) = if b.get(i) == Some(&b'-') {
        let month = digits(b, i + 1, 2)?;
        i += 3;
        let day = if b.get(i) == Some(&b'-') {
            let day = digits(b, i + 1, 2)?;
            i += 3;
            day
        } else {
            1
        };
        (month, day)
    } else {
        (1, 1)
    };
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month as u32) as i64 {
        return None;
    }
    // At most nine year digits: the days fit easily; their milliseconds may not.
    let mut ms = days_from_civil(year, month as u32, day as u32).checked_mul(MS_PER_DAY)?;
    if matches!(b.get(i), Some(b'T') | Some(b' ')) {
        i += 1;
        let hour = digits(b, i, 2)?;
        i += 2;
        let mut minute = 0;
        let mut second = 0;
        let mut millis = 0;
        if b.get(i) == Some(&b':') {
            minute = digits(b, i + 1, 2)?;
            i += 3;
            if b.get(i) == Some(&b':') {
                second = digits(b, i + 1, 2)?;
                i += 3;
                if matches!(b.get(i), Some(b'.') | Some(b',')) {
                    i += 1;
                    let mut scale = 100;
                    let mut count = 0;
                    while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
                        millis += (d - b'0') as i64 * scale;
                        scale /= 10;
                        i += 1;
                        count += 1;
                    }
                    if count == 0 {
                        return None;
                    }
                }
            }
        }
        let end_of_day = hour == 24 && minute == 0 && second == 0 && millis == 0;
        if (hour > 23 && !end_of_day) || minute > 59 || second > 59 {
            return None;
        }
        ms = ms.checked_add(
            hour * MS_PER_HOUR + minute * MS_PER_MINUTE + second * MS_PER_SECOND + millis,
        )?;
    }
    let ms = match b.get(i) {
        None => ms,
        Some(b'Z') | Some(b'z') if i + 1 == b.len() => ms,
        Some(&s @ (b'+' | b'-')) => {
            let hours = digits(b, i + 1, 2)?;
            let mut j = i + 3;
            if b.get(j) == Some(&b':') {
                j += 1;
            }
            let minutes = if j < b.len() { digits(b, j, 2)? } else { 0 };
            if j < b.len() && j + 2 != b.len() {
                return None;
            }
            if hours > 18 || minutes > 59 || (hours == 18 && minutes > 0) {
                return None;
            }
            let offset = hours * MS_PER_HOUR + minutes * MS_PER_MINUTE;
            if s == b'+' {
                ms.checked_sub(offset)?
            } else {
                ms.checked_add(offset)?
            }
        }
        _ => return None,
    };
    within_eternity(ms)
}

/// Formats milliseconds since the epoch as Druid does: `2024-01-01T00:00:00.000Z`.
pub fn format_iso(ms: i64) -> String {
    let days = ms.div_euclid(MS_PER_DAY);
    let rem = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / MS_PER_HOUR,
        rem % MS_PER_HOUR / MS_PER_MINUTE,
        rem % MS_PER_MINUTE / MS_PER_SECOND,
        rem % MS_PER_SECOND
    )
}

/// A half-open time range `[start_ms, end_ms)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub start_ms: i64,
    pub end_ms: i64,
}

impl Interval {
    /// Druid's eternity: the widest interval it accepts.
    /// (`-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z`, Joda's
    /// `Long.MIN_VALUE / 2 .. Long.MAX_VALUE / 2`).
    pub const ETERNITY: Interval = Interval {
        start_ms: i64::MIN / 2,
        end_ms: i64::MAX / 2,
    };

    pub fn new(start_ms: i64, end_ms: i64) -> Interval {
        debug_assert!(start_ms <= end_ms, "interval start after end");
        Interval { start_ms, end_ms }
    }

    pub fn contains(&self, ms: i64) -> bool {
        self.start_ms <= ms && ms < self.end_ms
    }

    pub fn contains_interval(&self, other: &Interval) -> bool {
        self.start_ms <= other.start_ms && other.end_ms <= self.end_ms
    }

    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start_ms < other.end_ms && other.start_ms < self.end_ms
    }

    pub fn duration_ms(&self) -> i64 {
        self.end_ms - self.start_ms
    }

    /// Parses `start/end`, `start/period` or `period/end` in ISO-8601.
    pub fn parse(text: &str) -> Result<Interval, String> {
        let (a, b) = text
            .split_once('/')
            .ok_or_else(|| format!("interval '{text}' is not of the form start/end"))?;
        let bad = |part: &str| format!("interval '{text}': cannot parse '{part}'");
        let beyond = |period: &str| {
            format!(
                "interval '{text}': {period} reaches past Druid's eternity (years -146136543 to \
                 146140482)"
            )
        };
        let interval = if a.starts_with('P') {
            let end = parse_iso_timestamp(b).ok_or_else(|| bad(b))?;
            let period = Period::parse(a)?;
            let start = period.subtract_from(end).ok_or_else(|| beyond(a))?;
            Interval::new(start, end)
        } else if b.starts_with('P') {
            let start = parse_iso_timestamp(a).ok_or_else(|| bad(a))?;
            let period = Period::parse(b)?;
            let end = period.add_to(start).ok_or_else(|| beyond(b))?;
            Interval::new(start, end)
        } else {
            let start = parse_iso_timestamp(a).ok_or_else(|| bad(a))?;
            let end = parse_iso_timestamp(b).ok_or_else(|| bad(b))?;
            if end < start {
                return Err(format!("interval '{text}': end is before start"));
            }
            Interval::new(start, end)
        };
        Ok(interval)
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}/{}",
            format_iso(self.start_ms),
            format_iso(self.end_ms)
        )
    }
}

impl Serialize for Interval {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Interval::parse(&text).map_err(D::Error::custom)
    }
}

/// An ISO-8601 period (`P1D`, `PT1H`, `P3M`, `P1W`, `PT15M`, `P1Y2M`...).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Period {
    pub months: i64,
    /// The fixed-length part in milliseconds (weeks, days, hours, minutes, seconds).
    pub fixed_ms: i64,
}

impl Period {
    pub fn parse(text: &str) -> Result<Period, String> {
        let bad = || format!("cannot parse ISO-8601 period '{text}'");
        let rest = text.strip_prefix('P').ok_or_else(bad)?;
        if rest.is_empty() {
            return Err(bad());
        }
        let mut period = Period::default();
        let mut in_time = false;
        let mut number = String::new();
        for c in rest.chars() {
            match c {
                'T' if !in_time && number.is_empty() => in_time = true,
                '0'..='9' | '.' => number.push(c),
                unit => {
                    let value: f64 = number.parse().map_err(|_| bad())?;
                    number.clear();
                    let whole = value as i64;
                    let too_large = || format!("ISO-8601 period '{text}' is too large");
                    let (months, ms) = match (in_time, unit) {
                        (false, 'Y') => (whole.checked_mul(12), Some(0)),
                        (false, 'M') => (Some(whole), Some(0)),
                        (false, 'W') => (Some(0), whole.checked_mul(MS_PER_WEEK)),
                        (false, 'D') => (Some(0), whole.checked_mul(MS_PER_DAY)),
                        (true, 'H') => (Some(0), whole.checked_mul(MS_PER_HOUR)),
                        (true, 'M') => (Some(0), whole.checked_mul(MS_PER_MINUTE)),
                        (true, 'S') => (Some(0), Some((value * 1000.0).round() as i64)),
                        _ => return Err(bad()),
                    };
                    period.months = months
                        .and_then(|m| period.months.checked_add(m))
                        .filter(|m| m.abs() <= 12 * 1_000_000)
                        .ok_or_else(too_large)?;
                    period.fixed_ms = ms
                        .and_then(|ms| period.fixed_ms.checked_add(ms))
                        .filter(|ms| *ms <= Interval::ETERNITY.duration_ms())
                        .ok_or_else(too_large)?;
                    if unit != 'S' && value.fract() != 0.0 {
                        return Err(bad());
                    }
                }
            }
        }
        if !number.is_empty() || (period.months == 0 && period.fixed_ms == 0) {
            return Err(bad());
        }
        Ok(period)
    }

    /// `ms` plus this period (months on the calendar, then the fixed part); `None` when `ms` or
    /// the result is outside Druid's eternity, so the arithmetic never overflows.
    pub fn add_to(&self, ms: i64) -> Option<i64> {
        let ms = within_eternity(ms)?;
        within_eternity(add_months(ms, self.months)?.checked_add(self.fixed_ms)?)
    }

    /// `ms` minus this period (the fixed part, then months on the calendar); `None` when `ms`
    /// or the result is outside Druid's eternity.
    pub fn subtract_from(&self, ms: i64) -> Option<i64> {
        let ms = within_eternity(ms)?;
        let back = within_eternity(ms.checked_sub(self.fixed_ms)?)?;
        within_eternity(add_months(back, self.months.checked_neg()?)?)
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("P")?;
        if self.months % 12 == 0 && self.months != 0 {
            write!(f, "{}Y", self.months / 12)?;
        } else if self.months != 0 {
            write!(f, "{}M", self.months)?;
        }
        let mut rest = self.fixed_ms;
        if rest % MS_PER_WEEK == 0 && rest != 0 && self.months == 0 {
            return write!(f, "{}W", rest / MS_PER_WEEK);
        }
        if rest >= MS_PER_DAY {
            write!(f, "{}D", rest / MS_PER_DAY)?;
            rest %= MS_PER_DAY;
        }
        if rest != 0 {
            f.write_str("T")?;
            if rest >= MS_PER_HOUR {
                write!(f, "{}H", rest / MS_PER_HOUR)?;
                rest %= MS_PER_HOUR;
            }
            if rest >= MS_PER_MINUTE {
                write!(f, "{}M", rest / MS_PER_MINUTE)?;
                rest %= MS_PER_MINUTE;
            }
            if rest != 0 {
                if rest % 1000 == 0 {
                    write!(f, "{}S", rest / 1000)?;
                } else {
                    write!(f, "{}.{:03}S", rest / 1000, rest % 1000)?;
                }
            }
        }
        Ok(())
    }
}

/// `ms` moved by `months` calendar months (the day clamped to the new month's length); `None`
/// on overflow.
fn add_months(ms: i64, months: i64) -> Option<i64> {
    if months == 0 {
        return Some(ms);
    }
    let days = ms.div_euclid(MS_PER_DAY);
    let time_of_day = ms.rem_euclid(MS_PER_DAY);
    let (y, m, d) = civil_from_days(days);
    let total = y
        .checked_mul(12)?
        .checked_add(m as i64 - 1)?
        .checked_add(months)?;
    let (ny, nm) = (total.div_euclid(12), total.rem_euclid(12) as u32 + 1);
    // Years beyond ±2^40 cannot be instants; stopping here keeps the day arithmetic in range.
    if ny.unsigned_abs() > 1 << 40 {
        return None;
    }
    let nd = d.min(days_in_month(ny, nm));
    days_from_civil(ny, nm, nd)
        .checked_mul(MS_PER_DAY)?
        .checked_add(time_of_day)
}

/// The start of the month bucket `skip` buckets after the one holding `ms`. Buckets start at
/// `origin_ms + k·months` months for whole `k`, each computed from the origin (so an origin on the
/// 31st gives the 30th, 29th or 28th in shorter months without drifting).
fn month_bucket_start(ms: i64, months: i64, origin_ms: i64, skip: i64) -> i64 {
    // Calendar arithmetic is exact inside Druid's eternity; clamp so nothing can overflow.
    let ms = ms.clamp(Interval::ETERNITY.start_ms, Interval::ETERNITY.end_ms);
    let month_index = |t: i64| {
        let (y, m, _) = civil_from_days(t.div_euclid(MS_PER_DAY));
        y * 12 + m as i64 - 1
    };
    // Inside the eternity (origin included) every bucket start is a few buckets from one, so
    // the calendar arithmetic fits; a start past it clamps to its edge.
    let origin_ms = origin_ms.clamp(Interval::ETERNITY.start_ms, Interval::ETERNITY.end_ms);
    let start_of = |k: i64| {
        k.checked_mul(months)
            .and_then(|m| add_months(origin_ms, m))
            .unwrap_or(if k < 0 { i64::MIN } else { i64::MAX })
    };
    let mut k = (month_index(ms) - month_index(origin_ms)).div_euclid(months);
    while start_of(k) > ms {
        k -= 1;
    }
    while start_of(k + 1) <= ms {
        k += 1;
    }
    start_of(k + skip)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    let next = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    (next - days_from_civil(year, month, 1)) as u32
}

/// How time is bucketed: a segment's interval (`segmentGranularity`) or the truncation applied to
/// `__time` before roll-up (`queryGranularity`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Granularity {
    /// One bucket for all time.
    All,
    /// No truncation (millisecond buckets).
    None,
    /// Fixed-length buckets aligned to `origin_ms`.
    Fixed { period_ms: i64, origin_ms: i64 },
    /// Calendar buckets of whole months (month, quarter, year, `P1M`...), aligned to `origin_ms`.
    Months { months: i64, origin_ms: i64 },
}

/// Druid's named granularities, in the order Druid lists them.
const NAMED: &[(&str, Granularity)] = &[
    ("all", Granularity::All),
    ("none", Granularity::None),
    ("second", fixed(MS_PER_SECOND)),
    ("minute", fixed(MS_PER_MINUTE)),
    ("five_minute", fixed(5 * MS_PER_MINUTE)),
    ("ten_minute", fixed(10 * MS_PER_MINUTE)),
    ("fifteen_minute", fixed(15 * MS_PER_MINUTE)),
    ("thirty_minute", fixed(30 * MS_PER_MINUTE)),
    ("hour", fixed(MS_PER_HOUR)),
    ("six_hour", fixed(6 * MS_PER_HOUR)),
    ("eight_hour", fixed(8 * MS_PER_HOUR)),
    ("day", fixed(MS_PER_DAY)),
    // ISO weeks start on Monday; 1970-01-05 was a Monday.
    (
        "week",
        Granularity::Fixed {
            period_ms: MS_PER_WEEK,
            origin_ms: 4 * MS_PER_DAY,
        },
    ),
    (
        "month",
        Granularity::Months {
            months: 1,
            origin_ms: 0,
        },
    ),
    (
        "quarter",
        Granularity::Months {
            months: 3,
            origin_ms: 0,
        },
    ),
    (
        "year",
        Granularity::Months {
            months: 12,
            origin_ms: 0,
        },
    ),
];

const fn fixed(period_ms: i64) -> Granularity {
    Granularity::Fixed {
        period_ms,
        origin_ms: 0,
    }
}

impl Granularity {
    pub const DAY: Granularity = fixed(MS_PER_DAY);
    pub const HOUR: Granularity = fixed(MS_PER_HOUR);
    pub const MINUTE: Granularity = fixed(MS_PER_MINUTE);

    /// A named granularity (`hour`, `DAY`, `fifteen_minute`...), case-insensitive.
    pub fn named(name: &str) -> Option<Granularity> {
        NAMED
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, g)| *g)
    }

    /// The name Druid uses for this granularity, if it has one.
    pub fn name(&self) -> Option<&'static str> {
        NAMED.iter().find(|(_, g)| g == self).map(|(n, _)| *n)
    }

    /// `{"type":"period","period":"PT1H","timeZone":"UTC","origin":...}`.
    pub fn period(
        period: &str,
        time_zone: Option<&str>,
        origin: Option<&str>,
    ) -> Result<Granularity, String> {
        if let Some(zone) = time_zone {
            let utc = ["UTC", "Etc/UTC", "Z", "+00:00", "GMT", "Etc/GMT"];
            if !utc.iter().any(|z| z.eq_ignore_ascii_case(zone)) {
                return Err(format!(
                    "time zone '{zone}' is not supported yet (only UTC); use a UTC granularity"
                ));
            }
        }
        let origin_ms = match origin {
            Some(o) => {
                parse_iso_timestamp(o).ok_or_else(|| format!("cannot parse origin '{o}'"))?
            }
            None => 0,
        };
        let p = Period::parse(period)?;
        match (p.months, p.fixed_ms) {
            (0, period_ms) => Ok(Granularity::Fixed {
                period_ms,
                origin_ms: if origin.is_none() && period_ms % MS_PER_WEEK == 0 {
                    4 * MS_PER_DAY
                } else {
                    origin_ms
                },
            }),
            (months, 0) => Ok(Granularity::Months { months, origin_ms }),
            _ => Err(format!(
                "period '{period}' mixes months and fixed durations, which Grove does not support as a granularity"
            )),
        }
    }

    /// The start of the bucket holding `ms`.
    #[inline]
    pub fn truncate(&self, ms: i64) -> i64 {
        match *self {
            Granularity::All => Interval::ETERNITY.start_ms,
            Granularity::None => ms,
            Granularity::Fixed {
                period_ms,
                origin_ms,
            } => ms.saturating_sub(ms.saturating_sub(origin_ms).rem_euclid(period_ms)),
            Granularity::Months { months, origin_ms } => {
                month_bucket_start(ms, months, origin_ms, 0)
            }
        }
    }

    /// The start of the bucket after the one holding `bucket_start_ms` (normally a bucket start).
    pub fn next(&self, bucket_start_ms: i64) -> i64 {
        match *self {
            Granularity::All => Interval::ETERNITY.end_ms,
            Granularity::None => bucket_start_ms.saturating_add(1),
            Granularity::Fixed { period_ms, .. } => bucket_start_ms.saturating_add(period_ms),
            Granularity::Months { months, origin_ms } => {
                month_bucket_start(bucket_start_ms, months, origin_ms, 1)
            }
        }
    }

    /// The bucket holding `ms`.
    pub fn bucket(&self, ms: i64) -> Interval {
        if *self == Granularity::All {
            return Interval::ETERNITY;
        }
        let start = self.truncate(ms);
        Interval::new(start, self.next(start))
    }

    /// The buckets that together cover `interval` (each overlapping it), in time order.
    pub fn buckets(&self, interval: Interval) -> Vec<Interval> {
        let mut out = Vec::new();
        let mut start = self.truncate(interval.start_ms);
        while start < interval.end_ms {
            let end = self.next(start);
            out.push(Interval::new(start, end));
            if *self == Granularity::All {
                break;
            }
            start = end;
        }
        out
    }
}

impl Serialize for Granularity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        if let Some(name) = self.name() {
            return s.serialize_str(&name.to_ascii_uppercase());
        }
        let (period, origin_ms) = match *self {
            Granularity::Fixed {
                period_ms,
                origin_ms,
            } => (
                Period {
                    months: 0,
                    fixed_ms: period_ms,
                },
                origin_ms,
            ),
            Granularity::Months { months, origin_ms } => (
                Period {
                    months,
                    fixed_ms: 0,
                },
                origin_ms,
            ),
            Granularity::All | Granularity::None => unreachable!("named above"),
        };
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", "period")?;
        map.serialize_entry("period", &period.to_string())?;
        map.serialize_entry("timeZone", "UTC")?;
        // Omitted only when reading it back restores it: whole weeks default to Monday.
        let default_origin = if period.months == 0 && period.fixed_ms % MS_PER_WEEK == 0 {
            4 * MS_PER_DAY
        } else {
            0
        };
        if origin_ms != default_origin {
            map.serialize_entry("origin", &format_iso(origin_ms))?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for Granularity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Name(String),
            Object(Object),
        }
        #[derive(Deserialize)]
        #[serde(tag = "type", rename_all = "camelCase")]
        enum Object {
            #[serde(rename_all = "camelCase")]
            Period {
                period: String,
                time_zone: Option<String>,
                origin: Option<String>,
            },
            Duration {
                duration: i64,
                origin: Option<String>,
            },
            All,
            None,
        }
        match Form::deserialize(d).map_err(|_| {
            D::Error::custom(
                "granularity must be a name (all, none, second, minute, five_minute, ten_minute, \
                 fifteen_minute, thirty_minute, hour, six_hour, eight_hour, day, week, month, \
                 quarter, year) or an object of type period, duration, all or none",
            )
        })? {
            Form::Name(name) => Granularity::named(&name)
                .ok_or_else(|| D::Error::custom(format!("unknown granularity '{name}'"))),
            Form::Object(Object::All) => Ok(Granularity::All),
            Form::Object(Object::None) => Ok(Granularity::None),
            Form::Object(Object::Period {
                period,
                time_zone,
                origin,
            }) => Granularity::period(&period, time_zone.as_deref(), origin.as_deref())
                .map_err(D::Error::custom),
            Form::Object(Object::Duration { duration, origin }) => {
                if duration <= 0 {
                    return Err(D::Error::custom("duration granularity must be positive"));
                }
                let origin_ms = match origin {
                    Some(o) => parse_iso_timestamp(&o)
                        .ok_or_else(|| D::Error::custom(format!("cannot parse origin '{o}'")))?,
                    None => 0,
                };
                Ok(Granularity::Fixed {
                    period_ms: duration,
                    origin_ms,
                })
            }
        }
    }
}

/// How a timestamp column is written in the input (`timestampSpec.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum TimestampFormat {
    Iso,
    Millis,
    Posix,
    Micro,
    Nano,
    #[default]
    Auto,
}

impl TimestampFormat {
    pub fn parse_name(name: &str) -> Option<TimestampFormat> {
        Some(match name.to_ascii_lowercase().as_str() {
            "iso" => TimestampFormat::Iso,
            "millis" => TimestampFormat::Millis,
            "posix" => TimestampFormat::Posix,
            "micro" => TimestampFormat::Micro,
            "nano" => TimestampFormat::Nano,
            "auto" => TimestampFormat::Auto,
            _ => return None,
        })
    }

    pub fn name(&self) -> &'static str {
        match self {
            TimestampFormat::Iso => "iso",
            TimestampFormat::Millis => "millis",
            TimestampFormat::Posix => "posix",
            TimestampFormat::Micro => "micro",
            TimestampFormat::Nano => "nano",
            TimestampFormat::Auto => "auto",
        }
    }

    /// Interprets a number in this format (saturating: the ingestion readers refuse instants
    /// outside Druid's eternity with an error naming the value as written).
    pub fn from_number(&self, value: f64) -> Option<i64> {
        if !value.is_finite() {
            return None;
        }
        let ms = match self {
            TimestampFormat::Iso => return None,
            TimestampFormat::Millis | TimestampFormat::Auto => value,
            TimestampFormat::Posix => value * 1000.0,
            TimestampFormat::Micro => value / 1000.0,
            TimestampFormat::Nano => value / 1_000_000.0,
        };
        Some(ms as i64)
    }

    /// Interprets text in this format (`auto` accepts ISO-8601 or a number of milliseconds).
    pub fn from_text(&self, text: &str) -> Option<i64> {
        let text = text.trim();
        match self {
            TimestampFormat::Iso => parse_iso_timestamp(text),
            TimestampFormat::Auto => {
                let numeric = text.bytes().all(|b| b.is_ascii_digit() || b == b'-')
                    && text.len() > 4
                    && !text[1..].contains('-');
                if numeric {
                    text.parse::<i64>().ok()
                } else {
                    parse_iso_timestamp(text)
                }
            }
            _ => self.from_number(text.parse::<f64>().ok()?),
        }
    }
}

impl Serialize for TimestampFormat {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for TimestampFormat {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        TimestampFormat::parse_name(&name).ok_or_else(|| {
            D::Error::custom(format!(
                "timestamp format '{name}' is not supported (use iso, millis, posix, micro, nano or auto; \
                 Joda patterns are not supported)"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn druid_eternity_round_trips() {
        let text = "-146136543-09-08T08:23:32.096Z/146140482-04-24T15:36:27.903Z";
        let eternity = Interval::parse(text).unwrap();
        assert_eq!(eternity, Interval::ETERNITY);
        assert_eq!(eternity.to_string(), text);
        assert_eq!(
            parse_iso_timestamp("12345-01-01"),
            Some(days_from_civil(12345, 1, 1) * MS_PER_DAY)
        );
        assert_eq!(parse_iso_timestamp("1234567890-01-01"), None);
        assert_eq!(parse_iso_timestamp("999-01-01"), None);
    }

    #[test]
    fn iso_round_trip() {
        for text in [
            "2024-01-01T00:00:00.000Z",
            "1969-12-31T23:59:59.999Z",
            "2000-02-29T12:34:56.789Z",
        ] {
            assert_eq!(format_iso(parse_iso_timestamp(text).unwrap()), text);
        }
        assert_eq!(parse_iso_timestamp("1970-01-01"), Some(0));
        assert_eq!(parse_iso_timestamp("1970-01-01T01:00:00+01:00"), Some(0));
        assert_eq!(parse_iso_timestamp("1970-01-01T00:00:00.5Z"), Some(500));
        assert_eq!(parse_iso_timestamp("1970-01-01 00:00:01"), Some(1000));
        assert_eq!(parse_iso_timestamp("1970-13-01"), None);
        assert_eq!(parse_iso_timestamp("yesterday"), None);
        assert_eq!(parse_iso_timestamp("2024-01-01T00:00:00Zjunk"), None);
    }

    #[test]
    fn civil_days_agree() {
        for days in -800_000..800_000 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn granularities_truncate() {
        let t = parse_iso_timestamp("2024-05-17T13:45:12.345Z").unwrap();
        let cases = [
            ("hour", "2024-05-17T13:00:00.000Z"),
            ("fifteen_minute", "2024-05-17T13:45:00.000Z"),
            ("day", "2024-05-17T00:00:00.000Z"),
            ("week", "2024-05-13T00:00:00.000Z"),
            ("month", "2024-05-01T00:00:00.000Z"),
            ("quarter", "2024-04-01T00:00:00.000Z"),
            ("year", "2024-01-01T00:00:00.000Z"),
        ];
        for (name, expected) in cases {
            let g = Granularity::named(name).unwrap();
            assert_eq!(format_iso(g.truncate(t)), expected, "{name}");
            let bucket = g.bucket(t);
            assert!(bucket.contains(t));
        }
        assert_eq!(
            format_iso(Granularity::named("month").unwrap().next(t)),
            "2024-06-01T00:00:00.000Z"
        );
    }

    #[test]
    fn month_buckets_with_an_origin_hold_their_rows() {
        let at = |t: &str| parse_iso_timestamp(t).unwrap();
        let quarter_from_feb = Granularity::period("P3M", None, Some("1970-02-01")).unwrap();
        let bucket = quarter_from_feb.bucket(at("1970-05-01"));
        assert_eq!(
            bucket.to_string(),
            "1970-05-01T00:00:00.000Z/1970-08-01T00:00:00.000Z"
        );
        let month_from_31st = Granularity::period("P1M", None, Some("2020-01-31")).unwrap();
        for (t, expected) in [
            (
                "2020-03-01",
                "2020-02-29T00:00:00.000Z/2020-03-31T00:00:00.000Z",
            ),
            (
                "2020-02-29",
                "2020-02-29T00:00:00.000Z/2020-03-31T00:00:00.000Z",
            ),
            (
                "2020-01-30",
                "2019-12-31T00:00:00.000Z/2020-01-31T00:00:00.000Z",
            ),
            (
                "2020-04-30T12:00:00Z",
                "2020-04-30T00:00:00.000Z/2020-05-31T00:00:00.000Z",
            ),
        ] {
            let bucket = month_from_31st.bucket(at(t));
            assert_eq!(bucket.to_string(), expected, "{t}");
            assert!(bucket.contains(at(t)));
        }
        // Consecutive buckets tile time with no gap or overlap.
        let buckets = month_from_31st.buckets(Interval::new(at("2019-11-15"), at("2021-01-01")));
        assert!(buckets.windows(2).all(|w| w[0].end_ms == w[1].start_ms));
    }

    #[test]
    fn invalid_dates_times_and_offsets_are_rejected() {
        for text in [
            "2024-02-30",
            "2023-02-29",
            "2024-04-31",
            "2024-01-01T24:59:00Z",
            "2024-01-01T23:60:00Z",
            "2024-01-01T23:59:60Z",
            "2024-01-01T00:00:00+99:99",
            "2024-01-01T00:00:00+18:30",
        ] {
            assert_eq!(parse_iso_timestamp(text), None, "{text}");
        }
        assert_eq!(
            parse_iso_timestamp("2024-02-29"),
            Some(days_from_civil(2024, 2, 29) * MS_PER_DAY)
        );
        assert_eq!(
            parse_iso_timestamp("2024-01-01T24:00:00Z"),
            parse_iso_timestamp("2024-01-02T00:00:00Z")
        );
    }

    /// A year that does not fit (Druid's eternity ends in year 146140482; 440000000-01-01 is
    /// past `i64` milliseconds) is not a timestamp, in every form that reaches the parser;
    /// period arithmetic that leaves the eternity is an error, not a wrapped instant.
    #[test]
    fn years_that_do_not_fit_are_parse_errors_not_wrapped_instants() {
        for text in [
            "440000000-01-01",
            "-440000000-01-01",
            "292278995-01-01T00:00:00Z",
            "146140482-04-24T15:36:27.904Z",
            "-146136543-09-08T08:23:32.095Z",
            "146140482-04-24T15:36:27.903-01:00",
            "999999999-12-31T23:59:59.999Z",
        ] {
            assert_eq!(parse_iso_timestamp(text), None, "{text}");
            assert_eq!(TimestampFormat::Iso.from_text(text), None, "{text}");
            assert_eq!(TimestampFormat::Auto.from_text(text), None, "{text}");
            assert!(
                Interval::parse(&format!("2024-01-01/{text}")).is_err(),
                "{text}"
            );
            assert!(Interval::parse(&format!("{text}/P1D")).is_err(), "{text}");
            assert!(
                Granularity::period("P1D", None, Some(text)).is_err(),
                "{text}"
            );
        }
        let end = Interval::ETERNITY.end_ms;
        assert_eq!(Period::parse("P1D").unwrap().add_to(end), None);
        assert_eq!(Period::parse("P1M").unwrap().add_to(end), None);
        assert_eq!(Period::parse("P1M").unwrap().add_to(i64::MAX), None);
        assert_eq!(Period::parse("P1D").unwrap().subtract_from(i64::MIN), None);
        let err = Interval::parse("146140482-01-01/P1000000Y").unwrap_err();
        assert!(err.contains("eternity"), "{err}");
        assert!(Interval::parse("P1000000Y/-146136543-12-31").is_err());
    }

    #[test]
    fn huge_periods_and_extreme_times_do_not_overflow() {
        assert!(Period::parse("P99999999999999999W").is_err());
        assert!(Period::parse("P99999999999999999Y").is_err());
        for g in ["week", "month", "day", "none"] {
            let g = Granularity::named(g).unwrap();
            for ms in [
                i64::MIN,
                i64::MAX,
                Interval::ETERNITY.start_ms,
                Interval::ETERNITY.end_ms - 1,
            ] {
                let start = g.truncate(ms);
                let _ = g.next(start);
            }
        }
    }

    #[test]
    fn granularity_json_forms() {
        let g: Granularity = serde_json::from_str("\"HOUR\"").unwrap();
        assert_eq!(g, Granularity::HOUR);
        let g: Granularity =
            serde_json::from_str(r#"{"type":"period","period":"PT1H","timeZone":"UTC"}"#).unwrap();
        assert_eq!(g, Granularity::HOUR);
        let g: Granularity =
            serde_json::from_str(r#"{"type":"duration","duration":7200000}"#).unwrap();
        assert_eq!(
            serde_json::to_string(&g).unwrap(),
            r#"{"type":"period","period":"PT2H","timeZone":"UTC"}"#
        );
        let err = serde_json::from_str::<Granularity>(
            r#"{"type":"period","period":"P1D","timeZone":"America/Los_Angeles"}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("America/Los_Angeles"), "{err}");
        assert!(serde_json::from_str::<Granularity>("\"fortnight\"").is_err());
    }

    #[test]
    fn intervals_parse_and_print() {
        let i = Interval::parse("2024-01-01/2024-01-02").unwrap();
        assert_eq!(
            i.to_string(),
            "2024-01-01T00:00:00.000Z/2024-01-02T00:00:00.000Z"
        );
        assert_eq!(
            Interval::parse("2024-01-01/P1M").unwrap().end_ms,
            parse_iso_timestamp("2024-02-01").unwrap()
        );
        assert_eq!(
            Interval::parse("P1D/2024-01-02").unwrap().start_ms,
            parse_iso_timestamp("2024-01-01").unwrap()
        );
        assert!(Interval::parse("2024-01-02/2024-01-01").is_err());
        assert_eq!(Period::parse("PT15M").unwrap().to_string(), "PT15M");
        assert_eq!(Period::parse("P1W").unwrap().to_string(), "P1W");
    }

    #[test]
    fn timestamp_formats() {
        assert_eq!(
            TimestampFormat::Posix.from_text("1700000000"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            TimestampFormat::Auto.from_text("1700000000000"),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            TimestampFormat::Auto.from_text("1970-01-02"),
            Some(MS_PER_DAY)
        );
        assert_eq!(TimestampFormat::Millis.from_text("abc"), None);
        assert_eq!(TimestampFormat::Nano.from_number(2e6), Some(2));
    }

    #[test]
    fn week_multiples_keep_their_origin_through_json() {
        for g in [
            Granularity::Fixed {
                period_ms: MS_PER_WEEK,
                origin_ms: 0,
            },
            Granularity::Fixed {
                period_ms: 2 * MS_PER_WEEK,
                origin_ms: 0,
            },
            Granularity::Fixed {
                period_ms: MS_PER_WEEK,
                origin_ms: 4 * MS_PER_DAY,
            },
            Granularity::Fixed {
                period_ms: MS_PER_DAY,
                origin_ms: MS_PER_HOUR,
            },
            Granularity::named("week").unwrap(),
        ] {
            let json = serde_json::to_string(&g).unwrap();
            let back: Granularity = serde_json::from_str(&json).unwrap();
            assert_eq!(back, g, "{json}");
        }
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        fn eternity_i128() -> std::ops::RangeInclusive<i128> {
            Interval::ETERNITY.start_ms as i128..=Interval::ETERNITY.end_ms as i128
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

            /// Every well-formed ISO timestamp, whatever its year (up to nine digits) and
            /// offset, parses to exactly its instant when that is inside the eternity and to
            /// `None` otherwise: never a wrapped value, never a panic.
            #[test]
            fn iso_timestamps_parse_exactly_or_not_at_all(
                year in -999_999_999i64..=999_999_999,
                month in 1u32..=12,
                day in 1u32..=28,
                hour in 0i64..24,
                minute in 0i64..60,
                second in 0i64..60,
                millis in 0i64..1000,
                offset_minutes in -18 * 60i64..=18 * 60,
            ) {
                let sign = if year < 0 { "-" } else { "" };
                let zone = if offset_minutes == 0 {
                    "Z".to_string()
                } else {
                    let a = offset_minutes.abs();
                    format!("{}{:02}:{:02}", if offset_minutes < 0 { '-' } else { '+' }, a / 60, a % 60)
                };
                let text = format!(
                    "{sign}{:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}.{millis:03}{zone}",
                    year.abs()
                );
                let exact = days_from_civil(year, month, day) as i128 * MS_PER_DAY as i128
                    + (hour * MS_PER_HOUR + minute * MS_PER_MINUTE + second * 1000 + millis) as i128
                    - offset_minutes as i128 * MS_PER_MINUTE as i128;
                let expected = eternity_i128().contains(&exact).then_some(exact as i64);
                prop_assert_eq!(parse_iso_timestamp(&text), expected, "{}", text);
            }

            /// Arbitrary text (digits, signs, separators) never panics the timestamp, interval,
            /// period or granularity parsers, and whatever they accept is inside the eternity.
            #[test]
            fn time_text_never_panics_and_stays_in_the_eternity(
                text in "[-+0-9PTYMWDHS:./ Z]{0,40}"
            ) {
                if let Some(ms) = parse_iso_timestamp(&text) {
                    prop_assert!(in_eternity(ms));
                }
                for format in [TimestampFormat::Auto, TimestampFormat::Millis, TimestampFormat::Posix, TimestampFormat::Nano] {
                    let _ = format.from_text(&text);
                }
                if let Some(ms) = TimestampFormat::Iso.from_text(&text) {
                    prop_assert!(in_eternity(ms));
                }
                if let Ok(interval) = Interval::parse(&text) {
                    prop_assert!(interval.start_ms <= interval.end_ms);
                    prop_assert!(in_eternity(interval.start_ms) && in_eternity(interval.end_ms));
                }
                if let Ok(period) = Period::parse(&text) {
                    for ms in [0, i64::MIN, i64::MAX, Interval::ETERNITY.start_ms, Interval::ETERNITY.end_ms] {
                        if let Some(moved) = period.add_to(ms) {
                            prop_assert!(in_eternity(moved));
                        }
                        if let Some(moved) = period.subtract_from(ms) {
                            prop_assert!(in_eternity(moved));
                        }
                    }
                }
                let _ = Granularity::period(&text, None, None);
            }

            /// Period arithmetic from any instant: exact for fixed periods (checked against
            /// 128-bit arithmetic), inside the eternity or `None` for calendar ones, and adding
            /// then subtracting a fixed period comes back.
            #[test]
            fn period_arithmetic_is_exact_or_an_error(
                ms in any::<i64>(),
                months in 0i64..=12_000_000,
                fixed_ms in 0i64..=i64::MAX / 2,
            ) {
                let fixed = Period { months: 0, fixed_ms };
                let exact = ms as i128 + fixed_ms as i128;
                let expected = (in_eternity(ms) && eternity_i128().contains(&exact)).then_some(exact as i64);
                prop_assert_eq!(fixed.add_to(ms), expected);
                if let Some(later) = fixed.add_to(ms) {
                    prop_assert_eq!(fixed.subtract_from(later), Some(ms));
                }
                let calendar = Period { months, fixed_ms: 0 };
                for moved in [calendar.add_to(ms), calendar.subtract_from(ms)].into_iter().flatten() {
                    prop_assert!(in_eternity(moved));
                }
                if months > 0
                    && let Some(later) = calendar.add_to(ms)
                {
                    prop_assert!(later > ms);
                }
            }

            /// Bucketing any instant with any granularity never panics, and a bucket's next
            /// start is after it.
            #[test]
            fn granularities_bucket_any_instant(
                ms in any::<i64>(),
                months in 1i64..=12_000_000,
                period_ms in 1i64..=i64::MAX / 4,
                origin in -(1i64 << 62)..(1i64 << 62),
            ) {
                for g in [
                    Granularity::Months { months, origin_ms: origin },
                    Granularity::Fixed { period_ms, origin_ms: origin },
                ] {
                    let start = g.truncate(ms);
                    let next = g.next(start);
                    prop_assert!(next >= start);
                }
            }
        }
    }
}
