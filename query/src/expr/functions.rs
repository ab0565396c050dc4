//! The functions of Druid's expression language: resolved once per query ([`Func::resolve`]:
//! name, argument count, constant arguments prepared) and evaluated a batch at a time
//! ([`Func::eval`]).

use jiff::tz::TimeZone;
use regex::Regex;

use grove_segment::time::{Granularity, Period};

use super::{Ast, Node, Scalar, ValueType, Vector, call_error, eval};
use crate::error::Result;
use crate::granularity::{QueryGranularity, parse_zone};
use crate::timefmt::{JodaPattern, Unit, civil, extract, instant, iso, parse_iso};

/// A resolved function with its prepared constant arguments.
#[derive(Clone, Debug)]
pub enum Func {
    If,
    CaseSearched,
    CaseSimple,
    Nvl,
    IsNull(bool),
    Concat,
    Substring,
    Strlen,
    Lower,
    Upper,
    Trim(Trim),
    Replace,
    Strpos,
    Left,
    Right,
    Reverse,
    Repeat,
    Pad {
        left: bool,
    },
    Contains {
        insensitive: bool,
    },
    /// `like(value, pattern[, escape])` with a constant pattern.
    Like(Regex),
    /// `regexp_extract(value, pattern[, index])`.
    RegexpExtract(Regex),
    RegexpLike(Regex),
    Cast(ValueType),
    Math(Math),
    Pow,
    Div,
    SafeDivide,
    Greatest,
    Least,
    TimestampFloor(QueryGranularity),
    TimestampCeil(QueryGranularity),
    TimestampShift(Period, Option<TimeZone>),
    TimestampExtract(Unit, Option<TimeZone>),
    TimestampFormat(Option<JodaPattern>, Option<TimeZone>),
    TimestampParse(Option<JodaPattern>, Option<TimeZone>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trim {
    Both,
    Left,
    Right,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Math {
    Abs,
    Floor,
    Ceil,
    Round,
    Sqrt,
    Exp,
    Ln,
    Log10,
}

/// The constant text of argument `i`, for arguments that must be literals.
fn constant_text(text: &str, name: &str, args: &[Ast], i: usize) -> Result<Option<String>> {
    match args.get(i) {
        None => Ok(None),
        Some(Ast::Literal(Scalar::Null)) => Ok(None),
        Some(Ast::Literal(s)) => Ok(super::scalar_text(s)),
        Some(_) => Err(call_error(
            text,
            format!("argument {} of {name} must be a constant", i + 1),
        )),
    }
}

fn zone_arg(text: &str, name: &str, args: &[Ast], i: usize) -> Result<Option<TimeZone>> {
    match constant_text(text, name, args, i)? {
        None => Ok(None),
        Some(z) => parse_zone(&z).map_err(|e| call_error(text, format!("{name}: {e}"))),
    }
}

fn count(text: &str, name: &str, args: &[Ast], min: usize, max: usize) -> Result<()> {
    if args.len() < min || args.len() > max {
        let expected = if min == max {
            format!("{min}")
        } else if max == usize::MAX {
            format!("at least {min}")
        } else {
            format!("{min} to {max}")
        };
        return Err(call_error(
            text,
            format!("{name} takes {expected} arguments, {} given", args.len()),
        ));
    }
    Ok(())
}

fn pattern(text: &str, name: &str, args: &[Ast], i: usize) -> Result<Regex> {
    let p = constant_text(text, name, args, i)?
        .ok_or_else(|| call_error(text, format!("{name} needs a pattern")))?;
    Regex::new(&p).map_err(|e| call_error(text, format!("{name}: bad pattern '{p}': {e}")))
}

/// The anchored regular expression of a SQL `LIKE` pattern.
pub fn like_regex(pattern: &str, escape: Option<char>) -> std::result::Result<Regex, String> {
    let mut out = String::from("(?s)^");
    let mut chars = pattern.chars();
    let mut buf = [0u8; 4];
    while let Some(c) = chars.next() {
        if Some(c) == escape {
            let quoted = chars
                .next()
                .ok_or_else(|| format!("pattern '{pattern}' ends with its escape character"))?;
            out.push_str(&regex::escape(quoted.encode_utf8(&mut buf)));
        } else if c == '%' {
            out.push_str(".*");
        } else if c == '_' {
            out.push('.');
        } else {
            out.push_str(&regex::escape(c.encode_utf8(&mut buf)));
        }
    }
    out.push('$');
    Regex::new(&out).map_err(|e| e.to_string())
}

impl Func {
    pub fn resolve(text: &str, name: &str, args: &[Ast]) -> Result<Func> {
        let n = |min, max| count(text, name, args, min, max);
        Ok(match name {
            "if" => {
                n(3, 3)?;
                Func::If
            }
            "case_searched" => {
                n(2, usize::MAX)?;
                Func::CaseSearched
            }
            "case_simple" => {
                n(3, usize::MAX)?;
                Func::CaseSimple
            }
            "nvl" | "coalesce" => {
                n(1, usize::MAX)?;
                Func::Nvl
            }
            "isnull" => {
                n(1, 1)?;
                Func::IsNull(true)
            }
            "notnull" => {
                n(1, 1)?;
                Func::IsNull(false)
            }
            "concat" => Func::Concat,
            "substring" => {
                n(2, 3)?;
                Func::Substring
            }
            "strlen" => {
                n(1, 1)?;
                Func::Strlen
            }
            "lower" => {
                n(1, 1)?;
                Func::Lower
            }
            "upper" => {
                n(1, 1)?;
                Func::Upper
            }
            "trim" | "btrim" => {
                n(1, 2)?;
                Func::Trim(Trim::Both)
            }
            "ltrim" => {
                n(1, 2)?;
                Func::Trim(Trim::Left)
            }
            "rtrim" => {
                n(1, 2)?;
                Func::Trim(Trim::Right)
            }
            "replace" => {
                n(3, 3)?;
                Func::Replace
            }
            "strpos" => {
                n(2, 3)?;
                Func::Strpos
            }
            "left" => {
                n(2, 2)?;
                Func::Left
            }
            "right" => {
                n(2, 2)?;
                Func::Right
            }
            "reverse" => {
                n(1, 1)?;
                Func::Reverse
            }
            "repeat" => {
                n(2, 2)?;
                Func::Repeat
            }
            "lpad" => {
                n(3, 3)?;
                Func::Pad { left: true }
            }
            "rpad" => {
                n(3, 3)?;
                Func::Pad { left: false }
            }
            "contains_string" => {
                n(2, 2)?;
                Func::Contains { insensitive: false }
            }
            "icontains_string" => {
                n(2, 2)?;
                Func::Contains { insensitive: true }
            }
            "like" => {
                n(2, 3)?;
                let p = constant_text(text, name, args, 1)?
                    .ok_or_else(|| call_error(text, "like needs a pattern"))?;
                let escape = match constant_text(text, name, args, 2)? {
                    None => None,
                    Some(e) if e.chars().count() == 1 => e.chars().next(),
                    Some(e) => {
                        return Err(call_error(
                            text,
                            format!("like: escape '{e}' must be one character"),
                        ));
                    }
                };
                Func::Like(like_regex(&p, escape).map_err(|e| call_error(text, e))?)
            }
            "regexp_extract" => {
                n(2, 3)?;
                Func::RegexpExtract(pattern(text, name, args, 1)?)
            }
            "regexp_like" => {
                n(2, 2)?;
                Func::RegexpLike(pattern(text, name, args, 1)?)
            }
            "cast" => {
                n(2, 2)?;
                let t = constant_text(text, name, args, 1)?
                    .ok_or_else(|| call_error(text, "cast needs a type"))?;
                Func::Cast(ValueType::parse(&t).ok_or_else(|| {
                    call_error(
                        text,
                        format!("cast to '{t}' is not supported (LONG, DOUBLE, STRING)"),
                    )
                })?)
            }
            "abs" | "floor" | "ceil" | "round" | "sqrt" | "exp" | "ln" | "log" | "log10" => {
                n(1, if name == "round" { 2 } else { 1 })?;
                Func::Math(match name {
                    "abs" => Math::Abs,
                    "floor" => Math::Floor,
                    "ceil" => Math::Ceil,
                    "round" => Math::Round,
                    "sqrt" => Math::Sqrt,
                    "exp" => Math::Exp,
                    "log10" => Math::Log10,
                    _ => Math::Ln,
                })
            }
            "pow" | "power" => {
                n(2, 2)?;
                Func::Pow
            }
            "div" => {
                n(2, 2)?;
                Func::Div
            }
            "safe_divide" => {
                n(2, 2)?;
                Func::SafeDivide
            }
            "greatest" => Func::Greatest,
            "least" => Func::Least,
            "timestamp_floor" | "timestamp_ceil" => {
                n(2, 4)?;
                let period = constant_text(text, name, args, 1)?
                    .ok_or_else(|| call_error(text, format!("{name} needs a period")))?;
                let origin = constant_text(text, name, args, 2)?;
                let origin = match origin {
                    Some(o) if o.parse::<i64>().is_ok() => {
                        Some(grove_segment::time::format_iso(o.parse().unwrap_or(0)))
                    }
                    other => other,
                };
                let base = Granularity::period(&period, None, origin.as_deref())
                    .map_err(|e| call_error(text, format!("{name}: {e}")))?;
                let g = QueryGranularity {
                    base,
                    zone: zone_arg(text, name, args, 3)?,
                };
                if name == "timestamp_floor" {
                    Func::TimestampFloor(g)
                } else {
                    Func::TimestampCeil(g)
                }
            }
            "timestamp_shift" => {
                n(3, 4)?;
                let period = constant_text(text, name, args, 1)?
                    .ok_or_else(|| call_error(text, "timestamp_shift needs a period"))?;
                let period =
                    Period::parse(&period).map_err(|e| call_error(text, format!("{name}: {e}")))?;
                Func::TimestampShift(period, zone_arg(text, name, args, 3)?)
            }
            "timestamp_extract" => {
                n(2, 3)?;
                let unit = constant_text(text, name, args, 1)?
                    .ok_or_else(|| call_error(text, "timestamp_extract needs a unit"))?;
                let unit = Unit::parse(&unit).ok_or_else(|| {
                    call_error(text, format!("timestamp_extract: unknown unit '{unit}'"))
                })?;
                Func::TimestampExtract(unit, zone_arg(text, name, args, 2)?)
            }
            "timestamp_format" => {
                n(1, 3)?;
                let format = constant_text(text, name, args, 1)?
                    .map(|f| JodaPattern::parse(&f))
                    .transpose()?;
                Func::TimestampFormat(format, zone_arg(text, name, args, 2)?)
            }
            "timestamp_parse" | "timestamp" => {
                n(1, 3)?;
                let format = constant_text(text, name, args, 1)?
                    .map(|f| JodaPattern::parse(&f))
                    .transpose()?;
                Func::TimestampParse(format, zone_arg(text, name, args, 2)?)
            }
            other => {
                return Err(call_error(
                    text,
                    format!("function '{other}' is not supported by Grove"),
                ));
            }
        })
    }

    pub(crate) fn eval(&self, args: &[Node], inputs: &[Vector], n: usize) -> Vector {
        let arg = |i: usize| eval(&args[i], inputs, n);
        match self {
            Func::If => {
                let cond = arg(0).truth();
                let (a, b) = unify(arg(1), arg(2));
                pick(&a, &b, |i| cond[i] == Some(true))
            }
            Func::CaseSearched => {
                // (cond, value)* [else]
                let pairs = args.len() / 2;
                let mut out = if args.len() % 2 == 1 {
                    arg(args.len() - 1)
                } else {
                    Vector::Long(vec![None; n])
                };
                for p in (0..pairs).rev() {
                    let cond = arg(2 * p).truth();
                    let (value, rest) = unify(arg(2 * p + 1), out);
                    out = pick(&value, &rest, |i| cond[i] == Some(true));
                }
                out
            }
            Func::CaseSimple => {
                let subject = arg(0);
                let pairs = (args.len() - 1) / 2;
                let mut out = if (args.len() - 1) % 2 == 1 {
                    arg(args.len() - 1)
                } else {
                    Vector::Long(vec![None; n])
                };
                for p in (0..pairs).rev() {
                    let hit =
                        super::binary(super::BinaryOp::Eq, subject.clone(), arg(1 + 2 * p)).truth();
                    let (value, rest) = unify(arg(2 + 2 * p), out);
                    out = pick(&value, &rest, |i| hit[i] == Some(true));
                }
                out
            }
            Func::Nvl => {
                let mut out = arg(args.len() - 1);
                for i in (0..args.len() - 1).rev() {
                    let (value, rest) = unify(arg(i), out);
                    out = pick(&value, &rest, |r| !value.is_null(r));
                }
                out
            }
            Func::IsNull(want) => {
                let v = arg(0);
                Vector::Long(
                    (0..n)
                        .map(|i| Some(i64::from(v.is_null(i) == *want)))
                        .collect(),
                )
            }
            Func::Concat => {
                let parts: Vec<Vec<Option<String>>> =
                    (0..args.len()).map(|i| arg(i).into_strings()).collect();
                Vector::String(
                    (0..n)
                        .map(|r| {
                            let mut s = String::new();
                            for p in &parts {
                                s.push_str(p[r].as_deref()?);
                            }
                            Some(s)
                        })
                        .collect(),
                )
            }
            Func::Substring => {
                let s = arg(0).into_strings();
                let start = arg(1).to_longs();
                let len = if args.len() > 2 {
                    arg(2).to_longs()
                } else {
                    vec![Some(-1); n]
                };
                Vector::String(
                    (0..n)
                        .map(|i| {
                            let s = s[i].as_deref()?;
                            let start = usize::try_from(start[i]?).ok()?;
                            let chars: Vec<char> = s.chars().collect();
                            if start > chars.len() {
                                return None;
                            }
                            let end = match len[i] {
                                Some(l) if l >= 0 => (start + l as usize).min(chars.len()),
                                _ => chars.len(),
                            };
                            Some(chars[start..end].iter().collect())
                        })
                        .collect(),
                )
            }
            Func::Strlen => Vector::Long(
                arg(0)
                    .into_strings()
                    .iter()
                    .map(|s| s.as_deref().map(|s| s.encode_utf16().count() as i64))
                    .collect(),
            ),
            Func::Lower => map_str(arg(0), |s| Some(s.to_lowercase())),
            Func::Upper => map_str(arg(0), |s| Some(s.to_uppercase())),
            Func::Trim(kind) => {
                let chars = if args.len() > 1 {
                    arg(1).into_strings()
                } else {
                    vec![Some(" ".to_string()); n]
                };
                let s = arg(0).into_strings();
                Vector::String(
                    (0..n)
                        .map(|i| {
                            let s = s[i].as_deref()?;
                            let set: Vec<char> = chars[i].as_deref()?.chars().collect();
                            let f = |c: char| set.contains(&c);
                            Some(
                                match kind {
                                    Trim::Both => s.trim_matches(f),
                                    Trim::Left => s.trim_start_matches(f),
                                    Trim::Right => s.trim_end_matches(f),
                                }
                                .to_string(),
                            )
                        })
                        .collect(),
                )
            }
            Func::Replace => {
                let (s, from, to) = (
                    arg(0).into_strings(),
                    arg(1).into_strings(),
                    arg(2).into_strings(),
                );
                Vector::String(
                    (0..n)
                        .map(|i| {
                            let (s, from, to) =
                                (s[i].as_deref()?, from[i].as_deref()?, to[i].as_deref()?);
                            Some(if from.is_empty() {
                                s.to_string()
                            } else {
                                s.replace(from, to)
                            })
                        })
                        .collect(),
                )
            }
            Func::Strpos => {
                let (s, sub) = (arg(0).into_strings(), arg(1).into_strings());
                let from = if args.len() > 2 {
                    arg(2).to_longs()
                } else {
                    vec![Some(0); n]
                };
                Vector::Long(
                    (0..n)
                        .map(|i| {
                            let (s, sub) = (s[i].as_deref()?, sub[i].as_deref()?);
                            let from = usize::try_from(from[i]?.max(0)).ok()?;
                            let byte = s.char_indices().nth(from).map_or(s.len(), |(b, _)| b);
                            Some(match s[byte..].find(sub) {
                                Some(at) => s[..byte + at].chars().count() as i64,
                                None => -1,
                            })
                        })
                        .collect(),
                )
            }
            Func::Left | Func::Right => {
                let (s, k) = (arg(0).into_strings(), arg(1).to_longs());
                let left = matches!(self, Func::Left);
                Vector::String(
                    (0..n)
                        .map(|i| {
                            let s = s[i].as_deref()?;
                            let k = usize::try_from(k[i]?).ok()?;
                            let len = s.chars().count();
                            Some(if left {
                                s.chars().take(k).collect()
                            } else {
                                s.chars().skip(len.saturating_sub(k)).collect()
                            })
                        })
                        .collect(),
                )
            }
            Func::Reverse => map_str(arg(0), |s| Some(s.chars().rev().collect())),
            Func::Repeat => {
                let (s, k) = (arg(0).into_strings(), arg(1).to_longs());
                Vector::String(
                    (0..n)
                        .map(|i| {
                            let times = usize::try_from(k[i]?).unwrap_or(0).min(1 << 16);
                            Some(s[i].as_deref()?.repeat(times))
                        })
                        .collect(),
                )
            }
            Func::Pad { left } => {
                let (s, len, pad) = (
                    arg(0).into_strings(),
                    arg(1).to_longs(),
                    arg(2).into_strings(),
                );
                Vector::String(
                    (0..n)
                        .map(|i| {
                            let s = s[i].as_deref()?;
                            let target = usize::try_from(len[i]?).unwrap_or(0).min(1 << 16);
                            let pad: Vec<char> = pad[i].as_deref()?.chars().collect();
                            let chars: Vec<char> = s.chars().collect();
                            if chars.len() >= target || pad.is_empty() {
                                return Some(chars[..target.min(chars.len())].iter().collect());
                            }
                            let fill: String =
                                pad.iter().cycle().take(target - chars.len()).collect();
                            Some(if *left {
                                fill + s
                            } else {
                                s.to_string() + &fill
                            })
                        })
                        .collect(),
                )
            }
            Func::Contains { insensitive } => {
                let (s, sub) = (arg(0).into_strings(), arg(1).into_strings());
                Vector::Long(
                    (0..n)
                        .map(|i| {
                            let (s, sub) = (s[i].as_deref()?, sub[i].as_deref()?);
                            Some(i64::from(if *insensitive {
                                s.to_lowercase().contains(&sub.to_lowercase())
                            } else {
                                s.contains(sub)
                            }))
                        })
                        .collect(),
                )
            }
            Func::Like(re) | Func::RegexpLike(re) => Vector::Long(
                arg(0)
                    .into_strings()
                    .iter()
                    .map(|s| s.as_deref().map(|s| i64::from(re.is_match(s))))
                    .collect(),
            ),
            Func::RegexpExtract(re) => {
                let index = if args.len() > 2 {
                    arg(2).to_longs()
                } else {
                    vec![Some(0); n]
                };
                let s = arg(0).into_strings();
                Vector::String(
                    (0..n)
                        .map(|i| {
                            let caps = re.captures(s[i].as_deref()?)?;
                            let group = usize::try_from(index[i]?).ok()?;
                            caps.get(group).map(|m| m.as_str().to_string())
                        })
                        .collect(),
                )
            }
            Func::Cast(to) => arg(0).cast(*to),
            Func::Math(m) => {
                let v = arg(0);
                match (m, &v) {
                    (Math::Abs, Vector::Long(x)) => {
                        Vector::Long(x.iter().map(|x| x.map(i64::wrapping_abs)).collect())
                    }
                    (Math::Floor | Math::Ceil | Math::Round, Vector::Long(_))
                        if args.len() == 1 =>
                    {
                        v
                    }
                    (Math::Round, _) => {
                        let scale = if args.len() > 1 {
                            arg(1).to_longs()
                        } else {
                            vec![Some(0); n]
                        };
                        let keep_long = matches!(v, Vector::Long(_));
                        let d = v.to_doubles();
                        let rounded: Vec<Option<f64>> = (0..n)
                            .map(|i| {
                                let f = 10f64.powi(scale[i]?.clamp(-30, 30) as i32);
                                // Half away from zero, as Java's BigDecimal HALF_UP.
                                d[i].map(|x| (x * f).round() / f)
                            })
                            .collect();
                        if keep_long {
                            Vector::Long(rounded.iter().map(|x| x.map(|x| x as i64)).collect())
                        } else {
                            Vector::Double(rounded)
                        }
                    }
                    _ => Vector::Double(
                        v.to_doubles()
                            .into_iter()
                            .map(|x| {
                                x.map(|x| match m {
                                    Math::Abs => x.abs(),
                                    Math::Floor => x.floor(),
                                    Math::Ceil => x.ceil(),
                                    Math::Sqrt => x.sqrt(),
                                    Math::Exp => x.exp(),
                                    Math::Log10 => x.log10(),
                                    _ => x.ln(),
                                })
                            })
                            .collect(),
                    ),
                }
            }
            Func::Pow => super::binary(super::BinaryOp::Pow, arg(0), arg(1)),
            Func::Div => {
                let (a, b) = (arg(0).to_longs(), arg(1).to_longs());
                Vector::Long(super::zip_with(&a, &b, |x, y| {
                    (y != 0).then(|| x.wrapping_div(y))
                }))
            }
            Func::SafeDivide => {
                let (a, b) = (arg(0), arg(1));
                match (&a, &b) {
                    (Vector::Long(x), Vector::Long(y)) => {
                        Vector::Long(super::zip_with(x, y, |x, y| {
                            (y != 0).then(|| x.wrapping_div(y))
                        }))
                    }
                    _ => {
                        Vector::Double(super::zip_with(&a.to_doubles(), &b.to_doubles(), |x, y| {
                            (y != 0.0).then(|| x / y)
                        }))
                    }
                }
            }
            Func::Greatest | Func::Least => {
                if args.is_empty() {
                    return Vector::Long(vec![None; n]);
                }
                let greatest = matches!(self, Func::Greatest);
                let values: Vec<Vector> = (0..args.len()).map(arg).collect();
                let ty = values
                    .iter()
                    .map(Vector::value_type)
                    .fold(ValueType::Long, widen);
                let cast: Vec<Vector> = values.into_iter().map(|v| v.cast(ty)).collect();
                let better = |a: &Scalar, b: &Scalar| -> bool {
                    let o = match (a, b) {
                        (Scalar::Long(x), Scalar::Long(y)) => x.cmp(y),
                        (Scalar::Double(x), Scalar::Double(y)) => x.total_cmp(y),
                        (Scalar::String(x), Scalar::String(y)) => x.cmp(y),
                        _ => std::cmp::Ordering::Equal,
                    };
                    if greatest { o.is_gt() } else { o.is_lt() }
                };
                let picked: Vec<Scalar> = (0..n)
                    .map(|i| {
                        // Nulls are skipped; all null gives null.
                        let mut best = Scalar::Null;
                        for v in &cast {
                            let x = v.get(i);
                            if x != Scalar::Null && (best == Scalar::Null || better(&x, &best)) {
                                best = x;
                            }
                        }
                        best
                    })
                    .collect();
                from_scalars(ty, picked)
            }
            Func::TimestampFloor(g) => map_long(arg(0), |t| Some(g.truncate(t))),
            Func::TimestampCeil(g) => map_long(arg(0), |t| {
                let floor = g.truncate(t);
                Some(if floor == t { t } else { g.next(floor) })
            }),
            Func::TimestampShift(period, zone) => {
                let (t, step) = (arg(0).to_longs(), arg(2).to_longs());
                Vector::Long(
                    (0..n)
                        .map(|i| shift(t[i]?, period, step[i]?, zone.as_ref()))
                        .collect(),
                )
            }
            Func::TimestampExtract(unit, zone) => {
                map_long(arg(0), |t| extract(t, *unit, zone.as_ref()))
            }
            Func::TimestampFormat(format, zone) => Vector::String(
                arg(0)
                    .to_longs()
                    .into_iter()
                    .map(|t| match format {
                        None => iso(t?, zone.as_ref()),
                        Some(f) => f.format(t?, zone.as_ref()),
                    })
                    .collect(),
            ),
            Func::TimestampParse(format, zone) => Vector::Long(
                arg(0)
                    .into_strings()
                    .iter()
                    .map(|s| {
                        let s = s.as_deref()?;
                        match format {
                            None => parse_iso(s, zone.as_ref()),
                            Some(f) => f.parse_text(s, zone.as_ref()),
                        }
                    })
                    .collect(),
            ),
        }
    }
}

/// `ms` moved by `step` periods in `zone`'s wall clock.
fn shift(ms: i64, period: &Period, step: i64, zone: Option<&TimeZone>) -> Option<i64> {
    let months = period.months.checked_mul(step)?;
    let fixed = period.fixed_ms.checked_mul(step)?;
    if months == 0 {
        return ms.checked_add(fixed);
    }
    let (dt, _) = civil(ms, zone)?;
    let span = jiff::Span::new()
        .try_months(months)
        .ok()?
        .try_milliseconds(fixed)
        .ok()?;
    instant(dt.checked_add(span).ok()?, zone)
}

fn widen(a: ValueType, b: ValueType) -> ValueType {
    match (a, b) {
        (ValueType::String, _) | (_, ValueType::String) => ValueType::String,
        (ValueType::Double, _) | (_, ValueType::Double) => ValueType::Double,
        _ => ValueType::Long,
    }
}

/// Two vectors cast to their common type.
fn unify(a: Vector, b: Vector) -> (Vector, Vector) {
    let ty = widen(a.value_type(), b.value_type());
    (a.cast(ty), b.cast(ty))
}

/// Row `i` from `a` where `take_a(i)`, else from `b` (same types).
fn pick(a: &Vector, b: &Vector, take_a: impl Fn(usize) -> bool) -> Vector {
    match (a, b) {
        (Vector::Long(x), Vector::Long(y)) => Vector::Long(
            (0..x.len())
                .map(|i| if take_a(i) { x[i] } else { y[i] })
                .collect(),
        ),
        (Vector::Double(x), Vector::Double(y)) => Vector::Double(
            (0..x.len())
                .map(|i| if take_a(i) { x[i] } else { y[i] })
                .collect(),
        ),
        (Vector::String(x), Vector::String(y)) => Vector::String(
            (0..x.len())
                .map(|i| {
                    if take_a(i) {
                        x[i].clone()
                    } else {
                        y[i].clone()
                    }
                })
                .collect(),
        ),
        _ => unreachable!("pick takes unified vectors"),
    }
}

fn from_scalars(ty: ValueType, values: Vec<Scalar>) -> Vector {
    match ty {
        ValueType::Long => Vector::Long(
            values
                .into_iter()
                .map(|s| match s {
                    Scalar::Long(v) => Some(v),
                    _ => None,
                })
                .collect(),
        ),
        ValueType::Double => Vector::Double(
            values
                .into_iter()
                .map(|s| match s {
                    Scalar::Double(v) => Some(v),
                    _ => None,
                })
                .collect(),
        ),
        ValueType::String => Vector::String(
            values
                .into_iter()
                .map(|s| match s {
                    Scalar::String(v) => Some(v),
                    _ => None,
                })
                .collect(),
        ),
    }
}

fn map_str(v: Vector, f: impl Fn(&str) -> Option<String>) -> Vector {
    Vector::String(
        v.into_strings()
            .iter()
            .map(|s| s.as_deref().and_then(&f))
            .collect(),
    )
}

fn map_long(v: Vector, f: impl Fn(i64) -> Option<i64>) -> Vector {
    Vector::Long(v.to_longs().into_iter().map(|x| x.and_then(&f)).collect())
}

#[cfg(test)]
mod tests {
    use super::super::{Expr, Scalar, Vector};

    fn one(text: &str) -> Scalar {
        Expr::compile(text)
            .unwrap_or_else(|e| panic!("{text}: {e}"))
            .constant()
            .unwrap()
    }

    fn s(text: &str) -> Scalar {
        Scalar::String(text.into())
    }

    #[test]
    fn conditionals_and_nulls() {
        assert_eq!(one("if(1 > 2, 'a', 'b')"), s("b"));
        assert_eq!(one("case_searched(0, 'a', 1, 'b', 'c')"), s("b"));
        assert_eq!(one("case_searched(0, 'a')"), Scalar::Null);
        assert_eq!(one("case_simple(2, 1, 'one', 2, 'two', 'many')"), s("two"));
        assert_eq!(one("nvl(null, 5)"), Scalar::Long(5));
        assert_eq!(one("coalesce(null, null, 2.5)"), Scalar::Double(2.5));
        assert_eq!(one("isnull(null)"), Scalar::Long(1));
        assert_eq!(one("notnull('x')"), Scalar::Long(1));
    }

    #[test]
    fn strings() {
        assert_eq!(one("concat('a', 1, 'b')"), s("a1b"));
        assert_eq!(one("concat('a', null)"), Scalar::Null);
        assert_eq!(one("substring('hello', 1, 3)"), s("ell"));
        assert_eq!(one("substring('hello', 2)"), s("llo"));
        assert_eq!(one("substring('hi', 5, 1)"), Scalar::Null);
        assert_eq!(one("strlen('héllo')"), Scalar::Long(5));
        assert_eq!(one("upper(lower('AbC'))"), s("ABC"));
        assert_eq!(one("trim('  x ')"), s("x"));
        assert_eq!(one("replace('a-b-c', '-', '+')"), s("a+b+c"));
        assert_eq!(one("strpos('banana', 'na')"), Scalar::Long(2));
        assert_eq!(one("left('abcdef', 2) + right('abcdef', 2)"), s("abef"));
        assert_eq!(one("lpad('7', 3, '0')"), s("007"));
        assert_eq!(one("like('Abc', 'A%')"), Scalar::Long(1));
        assert_eq!(one("regexp_extract('id-42', '(\\\\d+)', 1)"), s("42"));
        assert_eq!(one("cast('12', 'LONG') + 1"), Scalar::Long(13));
        assert_eq!(one("cast(3, 'STRING')"), s("3"));
        assert_eq!(one("cast(1.5, 'LONG')"), Scalar::Long(1));
    }

    #[test]
    fn math() {
        assert_eq!(one("abs(-3)"), Scalar::Long(3));
        assert_eq!(one("floor(2.7)"), Scalar::Double(2.0));
        assert_eq!(one("round(2.345, 2)"), Scalar::Double(2.35));
        assert_eq!(one("div(7, 2)"), Scalar::Long(3));
        assert_eq!(one("greatest(1, 5.5, 3)"), Scalar::Double(5.5));
        assert_eq!(one("least('b', 'a', null)"), s("a"));
        assert_eq!(one("safe_divide(1, 0)"), Scalar::Null);
    }

    #[test]
    fn time_functions() {
        let t = grove_segment::time::parse_iso_timestamp("2024-03-10T12:34:56.789Z").unwrap();
        let e = |text: &str| {
            Expr::compile(text)
                .unwrap_or_else(|e| panic!("{text}: {e}"))
                .eval(&[Vector::Long(vec![Some(t)])], 1)
                .get(0)
        };
        let ms = |text: &str| Scalar::Long(grove_segment::time::parse_iso_timestamp(text).unwrap());
        assert_eq!(
            e("timestamp_floor(__time, 'PT1H')"),
            ms("2024-03-10T12:00:00Z")
        );
        assert_eq!(
            e("timestamp_floor(__time, 'P1D', null, 'America/Los_Angeles')"),
            ms("2024-03-10T08:00:00Z")
        );
        assert_eq!(
            e("timestamp_ceil(__time, 'P1D')"),
            ms("2024-03-11T00:00:00Z")
        );
        assert_eq!(
            e("timestamp_shift(__time, 'P1M', -2)"),
            ms("2024-01-10T12:34:56.789Z")
        );
        assert_eq!(e("timestamp_extract(__time, 'HOUR')"), Scalar::Long(12));
        assert_eq!(e("timestamp_extract(__time, 'DOW')"), Scalar::Long(7));
        assert_eq!(
            e("timestamp_format(__time, 'yyyy-MM-dd HH')"),
            s("2024-03-10 12")
        );
        assert_eq!(e("timestamp_format(__time)"), s("2024-03-10T12:34:56.789Z"));
        assert_eq!(
            one("timestamp_parse('2024-03-10 01:02:03')"),
            ms("2024-03-10T01:02:03Z")
        );
        assert_eq!(
            one("timestamp_parse('10/03/2024', 'dd/MM/yyyy')"),
            ms("2024-03-10T00:00:00Z")
        );
        assert_eq!(one("timestamp_parse('nope')"), Scalar::Null);
    }

    #[test]
    fn bad_calls_are_errors_naming_them() {
        for (text, part) in [
            ("nope(1)", "'nope'"),
            ("if(1, 2)", "if takes 3"),
            ("timestamp_floor(__time, x)", "must be a constant"),
            ("timestamp_floor(__time, 'P1Q')", "period"),
            ("timestamp_extract(__time, 'FORTNIGHT')", "FORTNIGHT"),
            ("cast(1, 'ARRAY')", "ARRAY"),
            ("regexp_like(x, '(')", "bad pattern"),
        ] {
            let e = Expr::compile(text).unwrap_err();
            assert!(e.message.contains(part), "{text}: {e}");
        }
    }
}
