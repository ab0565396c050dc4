//! Timestamps as text and fields, as Druid's Joda-Time based functions give them: Joda format
//! patterns ([`JodaPattern`]: `timestamp_format`, `timestamp_parse`, `TIME_FORMAT`,
//! `TIME_PARSE`, the `timeFormat` extraction function), ISO-8601 output with the zone's offset,
//! and the fields `timestamp_extract`/`EXTRACT` read ([`extract`]).
//!
//! Times are milliseconds since the epoch; zones come from [`crate::granularity::parse_zone`]
//! (`None` is UTC). Civil time is computed with `jiff` and its bundled tz database, so answers do
//! not depend on the host.

use jiff::Timestamp;
use jiff::civil::DateTime;
use jiff::tz::{Offset, TimeZone};

use crate::error::{QueryError, Result};

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const DAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// The civil date-time of `ms` in `zone`, and the zone's offset then (seconds).
pub fn civil(ms: i64, zone: Option<&TimeZone>) -> Option<(DateTime, i32)> {
    let t = Timestamp::from_millisecond(ms).ok()?;
    let offset = match zone {
        None => Offset::UTC,
        Some(z) => z.to_offset(t),
    };
    Some((offset.to_datetime(t), offset.seconds()))
}

/// The instant of civil time `dt` in `zone` (a gap moves forward, an overlap takes the earlier
/// instant, as Joda).
pub fn instant(dt: DateTime, zone: Option<&TimeZone>) -> Option<i64> {
    let t = match zone {
        None => Offset::UTC.to_timestamp(dt).ok()?,
        Some(z) => z.to_ambiguous_timestamp(dt).compatible().ok()?,
    };
    Some(t.as_millisecond())
}

/// One element of a Joda pattern.
#[derive(Clone, Debug, PartialEq)]
enum Part {
    Literal(String),
    /// A pattern letter repeated `count` times.
    Field(char, usize),
}

/// A parsed Joda-Time format pattern (`yyyy-MM-dd'T'HH:mm:ss.SSSZZ`).
#[derive(Clone, Debug, PartialEq)]
pub struct JodaPattern {
    parts: Vec<Part>,
}

const LETTERS: &str = "GCYyxwedDEMaKhHkmsSzZ";

impl JodaPattern {
    pub fn parse(pattern: &str) -> Result<JodaPattern> {
        let chars: Vec<char> = pattern.chars().collect();
        let mut parts = Vec::new();
        let mut i = 0;
        let mut literal = String::new();
        while i < chars.len() {
            let c = chars[i];
            if c == '\'' {
                // '' is a quote; 'text' is literal text.
                if chars.get(i + 1) == Some(&'\'') {
                    literal.push('\'');
                    i += 2;
                    continue;
                }
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(QueryError::bad(format!(
                                "time format '{pattern}': unterminated quote"
                            )));
                        }
                        Some('\'') if chars.get(i + 1) == Some(&'\'') => {
                            literal.push('\'');
                            i += 2;
                        }
                        Some('\'') => {
                            i += 1;
                            break;
                        }
                        Some(&ch) => {
                            literal.push(ch);
                            i += 1;
                        }
                    }
                }
                continue;
            }
            if c.is_ascii_alphabetic() {
                if !LETTERS.contains(c) {
                    return Err(QueryError::bad(format!(
                        "time format '{pattern}': unknown pattern letter '{c}'"
                    )));
                }
                if !literal.is_empty() {
                    parts.push(Part::Literal(std::mem::take(&mut literal)));
                }
                let mut count = 1;
                while chars.get(i + count) == Some(&c) {
                    count += 1;
                }
                parts.push(Part::Field(c, count));
                i += count;
                continue;
            }
            literal.push(c);
            i += 1;
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(JodaPattern { parts })
    }

    /// `ms` written with this pattern in `zone`.
    pub fn format(&self, ms: i64, zone: Option<&TimeZone>) -> Option<String> {
        let (dt, offset) = civil(ms, zone)?;
        let mut out = String::with_capacity(32);
        for part in &self.parts {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Field(c, n) => write_field(&mut out, *c, *n, dt, offset, zone),
            }
        }
        Some(out)
    }

    /// Parses `text` with this pattern; fields it lacks default to 1970-01-01T00:00:00.000, and
    /// the time is civil time in `zone` unless the text carries an offset.
    pub fn parse_text(&self, text: &str, zone: Option<&TimeZone>) -> Option<i64> {
        let mut rest = text;
        let (mut year, mut month, mut day) = (1970i64, 1i64, 1i64);
        let (mut hour, mut minute, mut second, mut milli) = (0i64, 0i64, 0i64, 0i64);
        let mut pm: Option<bool> = None;
        let mut offset: Option<i64> = None;
        let mut day_of_year: Option<i64> = None;
        for (index, part) in self.parts.iter().enumerate() {
            // A numeric field followed by another numeric field reads exactly its width.
            let adjacent_number = matches!(
                self.parts.get(index + 1),
                Some(Part::Field(c, n)) if !("aEzZ".contains(*c) || (*c == 'M' && *n >= 3))
            );
            match part {
                Part::Literal(l) => rest = rest.strip_prefix(l.as_str())?,
                Part::Field('M', n) if *n >= 3 => {
                    let (m, len) = MONTHS.iter().enumerate().find_map(|(i, name)| {
                        let full = rest.len() >= name.len()
                            && rest[..name.len()].eq_ignore_ascii_case(name);
                        let short = rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(&name[..3]);
                        if full {
                            Some((i, name.len()))
                        } else if short {
                            Some((i, 3))
                        } else {
                            None
                        }
                    })?;
                    month = m as i64 + 1;
                    rest = &rest[len..];
                }
                Part::Field('E', _) => {
                    let len = DAYS.iter().find_map(|name| {
                        if rest.len() >= name.len() && rest[..name.len()].eq_ignore_ascii_case(name)
                        {
                            Some(name.len())
                        } else if rest.len() >= 3 && rest[..3].eq_ignore_ascii_case(&name[..3]) {
                            Some(3)
                        } else {
                            None
                        }
                    })?;
                    rest = &rest[len..];
                }
                Part::Field('a', _) => {
                    let upper = rest.get(..2)?.to_ascii_uppercase();
                    pm = Some(match upper.as_str() {
                        "AM" => false,
                        "PM" => true,
                        _ => return None,
                    });
                    rest = &rest[2..];
                }
                Part::Field('Z', _) | Part::Field('z', _) => {
                    if let Some(r) = rest.strip_prefix('Z') {
                        offset = Some(0);
                        rest = r;
                    } else if let Some(r) = rest.strip_prefix("UTC") {
                        offset = Some(0);
                        rest = r;
                    } else {
                        let sign = match rest.chars().next()? {
                            '+' => 1,
                            '-' => -1,
                            _ => return None,
                        };
                        let digits: String = rest[1..]
                            .chars()
                            .take_while(|c| c.is_ascii_digit() || *c == ':')
                            .collect();
                        let clean: String = digits.chars().filter(|c| *c != ':').collect();
                        if clean.len() != 4 {
                            return None;
                        }
                        let h: i64 = clean[..2].parse().ok()?;
                        let m: i64 = clean[2..].parse().ok()?;
                        offset = Some(sign * (h * 3600 + m * 60));
                        rest = &rest[1 + digits.len()..];
                    }
                }
                Part::Field(c, n) => {
                    let negative = *c == 'y' && rest.starts_with('-');
                    if negative {
                        rest = &rest[1..];
                    }
                    let take = rest
                        .char_indices()
                        .take_while(|(_, ch)| ch.is_ascii_digit())
                        .count();
                    let take = if adjacent_number { take.min(*n) } else { take };
                    if take == 0 {
                        return None;
                    }
                    let mut value: i64 = rest[..take].parse().ok()?;
                    if *c == 'S' {
                        // A fraction: its digits scale to milliseconds.
                        value = match take {
                            1 => value * 100,
                            2 => value * 10,
                            3 => value,
                            k => value / 10i64.pow(k as u32 - 3),
                        };
                    }
                    if negative {
                        value = -value;
                    }
                    rest = &rest[take..];
                    match c {
                        'y' | 'Y' | 'x' => {
                            year = if *n == 2 && take == 2 {
                                2000 + value
                            } else {
                                value
                            }
                        }
                        'M' => month = value,
                        'd' => day = value,
                        'D' => day_of_year = Some(value),
                        'H' | 'k' => hour = value % 24,
                        'h' | 'K' => hour = value % 12,
                        'm' => minute = value,
                        's' => second = value,
                        'S' => milli = value,
                        _ => {}
                    }
                }
            }
        }
        if !rest.is_empty() {
            return None;
        }
        if pm == Some(true) {
            hour += 12;
        }
        let date =
            jiff::civil::Date::new(i16::try_from(year).ok()?, month as i8, day as i8).ok()?;
        let date = match day_of_year {
            Some(d) => date
                .with()
                .day_of_year(i16::try_from(d).ok()?)
                .build()
                .ok()?,
            None => date,
        };
        let dt = date.at(
            hour as i8,
            minute as i8,
            second as i8,
            (milli * 1_000_000) as i32,
        );
        match offset {
            Some(seconds) => {
                let offset = Offset::from_seconds(seconds as i32).ok()?;
                Some(offset.to_timestamp(dt).ok()?.as_millisecond())
            }
            None => instant(dt, zone),
        }
    }
}

fn pad(out: &mut String, value: i64, width: usize) {
    use std::fmt::Write;
    if value < 0 {
        let _ = write!(out, "-{:0width$}", -value, width = width);
    } else {
        let _ = write!(out, "{:0width$}", value, width = width);
    }
}

fn write_offset(out: &mut String, seconds: i32, colon: bool) {
    if seconds == 0 && colon {
        out.push('Z');
        return;
    }
    let sign = if seconds < 0 { '-' } else { '+' };
    let s = seconds.abs();
    out.push(sign);
    pad(out, i64::from(s / 3600), 2);
    if colon {
        out.push(':');
    }
    pad(out, i64::from(s % 3600 / 60), 2);
}

fn write_field(
    out: &mut String,
    c: char,
    n: usize,
    dt: DateTime,
    offset: i32,
    zone: Option<&TimeZone>,
) {
    let hour = i64::from(dt.hour());
    match c {
        'G' => out.push_str(if dt.year() > 0 { "AD" } else { "BC" }),
        'C' => pad(out, i64::from(dt.year()) / 100, n),
        'y' | 'Y' => {
            let year = i64::from(dt.year());
            if n == 2 {
                pad(out, year.rem_euclid(100), 2)
            } else {
                pad(out, year, n)
            }
        }
        'x' => {
            let year = i64::from(dt.iso_week_date().year());
            if n == 2 {
                pad(out, year.rem_euclid(100), 2)
            } else {
                pad(out, year, n)
            }
        }
        'w' => pad(out, i64::from(dt.iso_week_date().week()), n),
        'e' => pad(out, i64::from(dt.weekday().to_monday_one_offset()), n),
        'E' => {
            let name = DAYS[dt.weekday().to_monday_zero_offset() as usize];
            out.push_str(if n >= 4 { name } else { &name[..3] });
        }
        'D' => pad(out, i64::from(dt.day_of_year()), n),
        'M' => {
            let month = dt.month() as usize;
            match n {
                1 | 2 => pad(out, month as i64, n),
                3 => out.push_str(&MONTHS[month - 1][..3]),
                _ => out.push_str(MONTHS[month - 1]),
            }
        }
        'd' => pad(out, i64::from(dt.day()), n),
        'a' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
        'K' => pad(out, hour % 12, n),
        'h' => pad(out, if hour % 12 == 0 { 12 } else { hour % 12 }, n),
        'H' => pad(out, hour, n),
        'k' => pad(out, if hour == 0 { 24 } else { hour }, n),
        'm' => pad(out, i64::from(dt.minute()), n),
        's' => pad(out, i64::from(dt.second()), n),
        'S' => {
            let millis = format!("{:03}", dt.millisecond());
            let mut digits = millis;
            while digits.len() < n {
                digits.push('0');
            }
            out.push_str(&digits[..n]);
        }
        'z' => match zone.and_then(|z| z.iana_name()) {
            Some(_) if offset != 0 => write_offset(out, offset, true),
            _ => out.push_str("UTC"),
        },
        'Z' => match n {
            1 => write_offset(out, offset, false),
            2 => write_offset(out, offset, true),
            _ => out.push_str(zone.and_then(|z| z.iana_name()).unwrap_or("UTC")),
        },
        _ => {}
    }
}

/// Druid's default timestamp text: ISO-8601 with milliseconds and the zone's offset (`Z` in
/// UTC), as Joda's `ISODateTimeFormat.dateTime()`.
pub fn iso(ms: i64, zone: Option<&TimeZone>) -> Option<String> {
    if zone.is_none() {
        return Some(grove_segment::time::format_iso(ms));
    }
    let (dt, offset) = civil(ms, zone)?;
    let mut out = String::with_capacity(29);
    pad(&mut out, i64::from(dt.year()), 4);
    out.push('-');
    pad(&mut out, i64::from(dt.month()), 2);
    out.push('-');
    pad(&mut out, i64::from(dt.day()), 2);
    out.push('T');
    pad(&mut out, i64::from(dt.hour()), 2);
    out.push(':');
    pad(&mut out, i64::from(dt.minute()), 2);
    out.push(':');
    pad(&mut out, i64::from(dt.second()), 2);
    out.push('.');
    pad(&mut out, i64::from(dt.millisecond()), 3);
    write_offset(&mut out, offset, true);
    Some(out)
}

/// Parses an ISO-8601 timestamp (or `yyyy-MM-dd HH:mm:ss`, as SQL writes them) as civil time in
/// `zone` unless it carries an offset.
pub fn parse_iso(text: &str, zone: Option<&TimeZone>) -> Option<i64> {
    let text = text.trim();
    let has_offset = text.ends_with('Z')
        || text
            .rfind(['+', '-'])
            .is_some_and(|i| i > 10 && text[i..].len() >= 3);
    let normalized = text.replacen(' ', "T", 1);
    match zone {
        None => grove_segment::time::parse_iso_timestamp(&normalized),
        Some(_) if has_offset => grove_segment::time::parse_iso_timestamp(&normalized),
        Some(z) => {
            let utc = grove_segment::time::parse_iso_timestamp(&normalized)?;
            let (dt, _) = civil(utc, None)?;
            instant(dt, Some(z))
        }
    }
}

/// The field `unit` of `ms` in `zone` (Druid's `timestamp_extract` units).
pub fn extract(ms: i64, unit: Unit, zone: Option<&TimeZone>) -> Option<i64> {
    let (dt, _) = civil(ms, zone)?;
    let year = i64::from(dt.year());
    Some(match unit {
        Unit::Epoch => ms.div_euclid(1000),
        Unit::Millisecond => i64::from(dt.millisecond()) + 1000 * i64::from(dt.second()),
        Unit::Second => i64::from(dt.second()),
        Unit::Minute => i64::from(dt.minute()),
        Unit::Hour => i64::from(dt.hour()),
        Unit::Day => i64::from(dt.day()),
        Unit::DayOfWeek => i64::from(dt.weekday().to_monday_one_offset()),
        Unit::IsoDayOfWeek => i64::from(dt.weekday().to_monday_one_offset()),
        Unit::DayOfYear => i64::from(dt.day_of_year()),
        Unit::Week => i64::from(dt.iso_week_date().week()),
        Unit::Month => i64::from(dt.month()),
        Unit::Quarter => (i64::from(dt.month()) - 1) / 3 + 1,
        Unit::Year => year,
        Unit::IsoYear => i64::from(dt.iso_week_date().year()),
        Unit::Decade => year.div_euclid(10),
        Unit::Century => (year - 1).div_euclid(100) + 1,
        Unit::Millennium => (year - 1).div_euclid(1000) + 1,
    })
}

/// A unit of [`extract`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Epoch,
    Millisecond,
    Second,
    Minute,
    Hour,
    Day,
    DayOfWeek,
    IsoDayOfWeek,
    DayOfYear,
    Week,
    Month,
    Quarter,
    Year,
    IsoYear,
    Decade,
    Century,
    Millennium,
}

impl Unit {
    /// Druid's unit names (`timestamp_extract` and SQL's `EXTRACT`), case-insensitive.
    pub fn parse(name: &str) -> Option<Unit> {
        Some(match name.to_ascii_uppercase().as_str() {
            "EPOCH" => Unit::Epoch,
            "MILLISECOND" | "MILLISECONDS" => Unit::Millisecond,
            "SECOND" => Unit::Second,
            "MINUTE" => Unit::Minute,
            "HOUR" => Unit::Hour,
            "DAY" => Unit::Day,
            "DOW" => Unit::DayOfWeek,
            "ISODOW" => Unit::IsoDayOfWeek,
            "DOY" => Unit::DayOfYear,
            "WEEK" => Unit::Week,
            "MONTH" => Unit::Month,
            "QUARTER" => Unit::Quarter,
            "YEAR" => Unit::Year,
            "ISOYEAR" => Unit::IsoYear,
            "DECADE" => Unit::Decade,
            "CENTURY" => Unit::Century,
            "MILLENNIUM" => Unit::Millennium,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::granularity::parse_zone;

    fn ms(text: &str) -> i64 {
        grove_segment::time::parse_iso_timestamp(text).unwrap()
    }

    #[test]
    fn joda_patterns_format_as_joda() {
        let t = ms("2024-03-05T07:08:09.012Z");
        let f = |p: &str| JodaPattern::parse(p).unwrap().format(t, None).unwrap();
        assert_eq!(f("yyyy-MM-dd'T'HH:mm:ss.SSSZZ"), "2024-03-05T07:08:09.012Z");
        assert_eq!(f("yy/M/d h:mm a"), "24/3/5 7:08 AM");
        assert_eq!(f("EEEE, MMMM d, yyyy"), "Tuesday, March 5, 2024");
        assert_eq!(f("EEE MMM dd 'o''clock' D"), "Tue Mar 05 o'clock 65");
        assert_eq!(f("xxxx-'W'ww-e"), "2024-W10-2");
        assert_eq!(f("Z"), "+0000");
        let la = parse_zone("America/Los_Angeles").unwrap();
        assert_eq!(
            JodaPattern::parse("yyyy-MM-dd HH:mm ZZ")
                .unwrap()
                .format(t, la.as_ref())
                .unwrap(),
            "2024-03-04 23:08 -08:00"
        );
        assert_eq!(
            iso(t, la.as_ref()).unwrap(),
            "2024-03-04T23:08:09.012-08:00"
        );
        assert!(JodaPattern::parse("yyyy-qq").is_err());
    }

    #[test]
    fn joda_patterns_parse_back() {
        for (pattern, text, expected) in [
            ("yyyy-MM-dd", "2024-03-05", "2024-03-05T00:00:00Z"),
            ("yyyyMMddHH", "2024030507", "2024-03-05T07:00:00Z"),
            (
                "dd/MMM/yyyy:HH:mm:ss Z",
                "05/Mar/2024:07:08:09 +0100",
                "2024-03-05T06:08:09Z",
            ),
            ("M/d/yy h:mm a", "3/5/24 7:08 PM", "2024-03-05T19:08:00Z"),
            (
                "yyyy-MM-dd HH:mm:ss.SSS",
                "2024-03-05 07:08:09.5",
                "2024-03-05T07:08:09.500Z",
            ),
        ] {
            let parsed = JodaPattern::parse(pattern).unwrap().parse_text(text, None);
            assert_eq!(parsed, Some(ms(expected)), "{pattern} {text}");
        }
        let p = JodaPattern::parse("yyyy-MM-dd").unwrap();
        assert_eq!(p.parse_text("2024-13-01", None), None);
        assert_eq!(p.parse_text("2024-01-01x", None), None);
        let tokyo = parse_zone("Asia/Tokyo").unwrap();
        assert_eq!(
            p.parse_text("2024-01-02", tokyo.as_ref()),
            Some(ms("2024-01-01T15:00:00Z"))
        );
        assert_eq!(
            parse_iso("2024-01-02 03:04:05", None),
            Some(ms("2024-01-02T03:04:05Z"))
        );
        assert_eq!(
            parse_iso("2024-01-02T00:00:00", tokyo.as_ref()),
            Some(ms("2024-01-01T15:00:00Z"))
        );
    }

    #[test]
    fn extracted_fields() {
        let t = ms("2024-12-30T23:59:58.250Z");
        let e = |u: &str| extract(t, Unit::parse(u).unwrap(), None).unwrap();
        assert_eq!(e("year"), 2024);
        assert_eq!(e("isoyear"), 2025);
        assert_eq!(e("week"), 1);
        assert_eq!(e("dow"), 1);
        assert_eq!(e("doy"), 365);
        assert_eq!(e("quarter"), 4);
        assert_eq!(e("millisecond"), 58_250);
        assert_eq!(e("epoch"), t / 1000);
        assert_eq!(e("century"), 21);
        let tokyo = parse_zone("Asia/Tokyo").unwrap();
        assert_eq!(extract(t, Unit::Day, tokyo.as_ref()), Some(31));
    }
}
