//! The one duration syntax of netmit, shared by the command line and the daemon's
//! configuration: a decimal number and a unit (`200us`, `1.5s`, `2m`), or `0`.
//!
//! Parsing is exact (decimal digits into integer nanoseconds, no floating point), so
//! `0.1s` is 100 ms to the nanosecond, and a value too large for [`Duration`] is an error
//! that names the limit instead of a panic. Where a bare number is meant as seconds (the
//! CLI's `--duration 1.5`), [`parse_secs`] accepts that too.
//!
//! Why not the `humantime` crate: it rejects decimals (`1.5s`) and bare numbers, which
//! netmit's command line has always accepted, and its errors do not say what is allowed.

use std::{fmt, time::Duration};

/// Units, longest suffix first, with their length in nanoseconds.
const UNITS: [(&str, u128); 8] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
    ("d", 86_400_000_000_000),
];

/// Why a duration was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DurationError {
    /// Nothing was given.
    #[error("an empty duration: give a number and a unit, e.g. 200us, 1.5s or 2m")]
    Empty,
    /// No unit after the number.
    #[error("`{0}` needs a unit: ns, us, ms, s, m, h or d (e.g. 200us, 1s)")]
    NoUnit(String),
    /// An unknown unit.
    #[error("`{input}`: unknown unit `{unit}`; use ns, us, ms, s, m, h or d")]
    Unit {
        /// What was given.
        input: String,
        /// The unit part.
        unit: String,
    },
    /// The number part is not a plain decimal number.
    #[error(
        "`{0}` is not a number and a unit: use digits with at most one `.`, no sign or \
         spaces (e.g. 0.5s)"
    )]
    Number(String),
    /// Too large for any duration.
    #[error(
        "`{0}` is too long: durations go up to {max} seconds; give at most {max}s",
        max = u64::MAX
    )]
    Overflow(String),
    /// Outside the range a setting accepts.
    #[error("{what} `{input}` is out of range: use {min} to {max}")]
    Range {
        /// The setting.
        what: String,
        /// What was given.
        input: String,
        /// Smallest accepted, as text.
        min: String,
        /// Largest accepted, as text.
        max: String,
    },
}

/// Parses a number and a unit (`500ms`, `1.5s`, `2m`, `250us`, `100000ns`), or `0`.
///
/// # Errors
///
/// [`DurationError`] naming what is wrong: no unit, an unknown unit, a malformed number
/// (signs, spaces, several dots) or a value beyond [`Duration::MAX`].
pub fn parse(s: &str) -> Result<Duration, DurationError> {
    if s.is_empty() {
        return Err(DurationError::Empty);
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| DurationError::NoUnit(s.into()))?;
    let (number, unit) = s.split_at(split);
    let Some(&(_, scale)) = UNITS.iter().find(|(u, _)| *u == unit) else {
        if number.is_empty() {
            return Err(DurationError::Number(s.into()));
        }
        return Err(DurationError::Unit {
            input: s.into(),
            unit: unit.into(),
        });
    };
    let nanos = scaled(number, scale).ok_or_else(|| {
        if number.bytes().filter(|&b| b == b'.').count() > 1 || number.is_empty() || number == "." {
            DurationError::Number(s.into())
        } else {
            DurationError::Overflow(s.into())
        }
    })?;
    from_nanos(nanos).ok_or_else(|| DurationError::Overflow(s.into()))
}

/// Like [`parse`], and a bare number (`2`, `0.5`) is seconds.
///
/// # Errors
///
/// As [`parse`].
pub fn parse_secs(s: &str) -> Result<Duration, DurationError> {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let nanos = scaled(s, 1_000_000_000).ok_or_else(|| {
            if s.bytes().filter(|&b| b == b'.').count() > 1 || s == "." {
                DurationError::Number(s.into())
            } else {
                DurationError::Overflow(s.into())
            }
        })?;
        return from_nanos(nanos).ok_or_else(|| DurationError::Overflow(s.into()));
    }
    parse(s)
}

/// Checks that `d` (parsed from `input`) lies in `min..=max`.
///
/// # Errors
///
/// [`DurationError::Range`] naming `what` and the range.
pub fn check_range(
    what: &str,
    input: &str,
    d: Duration,
    min: Duration,
    max: Duration,
) -> Result<Duration, DurationError> {
    if d < min || d > max {
        return Err(DurationError::Range {
            what: what.into(),
            input: input.into(),
            min: display(min),
            max: display(max),
        });
    }
    Ok(d)
}

/// `d` in the largest unit that shows it exactly (`20ms`, `1500us`, `0`).
pub fn display(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0".into();
    }
    let (unit, scale) = UNITS
        .iter()
        .rev()
        .filter(|(u, _)| *u != "µs")
        .find(|(_, scale)| nanos.is_multiple_of(*scale))
        .copied()
        .unwrap_or(("ns", 1));
    format!("{}{unit}", nanos / scale)
}

/// A [`Duration`] that prints in netmit's syntax (for messages and reports).
pub struct Display(pub Duration);

impl fmt::Display for Display {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&display(self.0))
    }
}

/// `number` (digits with at most one dot) times `scale` nanoseconds, truncated to whole
/// nanoseconds; `None` when malformed or beyond u128.
fn scaled(number: &str, scale: u128) -> Option<u128> {
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
        return None;
    }
    let mut nanos: u128 = 0;
    for b in int.bytes() {
        nanos = nanos.checked_mul(10)?.checked_add(u128::from(b - b'0'))?;
    }
    nanos = nanos.checked_mul(scale)?;
    // The fraction: at most as many digits as the scale has, beyond that they are below
    // a nanosecond.
    let mut unit = scale;
    for b in frac.bytes() {
        unit /= 10;
        if unit == 0 {
            break;
        }
        nanos = nanos.checked_add(u128::from(b - b'0') * unit)?;
    }
    Some(nanos)
}

fn from_nanos(nanos: u128) -> Option<Duration> {
    let secs = u64::try_from(nanos / 1_000_000_000).ok()?;
    Some(Duration::new(secs, (nanos % 1_000_000_000) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_decimals_are_exact() {
        assert_eq!(parse("200us"), Ok(Duration::from_micros(200)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0.1s"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("100000ns"), Ok(Duration::from_micros(100)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("0ms"), Ok(Duration::ZERO));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("5.s"), Ok(Duration::from_secs(5)));
        assert_eq!(
            parse("1.0000000001s"),
            Ok(Duration::from_secs(1)),
            "below 1 ns"
        );
    }

    #[test]
    fn bad_input_is_an_error_that_says_why() {
        for (input, want) in [
            ("", "empty"),
            ("10", "needs a unit"),
            ("10x", "unknown unit `x`"),
            ("10 ms", "unknown unit ` ms`"),
            ("-1s", "not a number"),
            ("+1s", "not a number"),
            ("1.2.3s", "not a number"),
            (".s", "not a number"),
            ("s", "not a number"),
            ("99999999999999999999s", "too long"),
            ("18446744073709551616s", "too long"),
            ("999999999999999999999999999999999999999999ns", "too long"),
        ] {
            let e = parse(input).expect_err(input).to_string();
            assert!(e.contains(want), "{input}: {e}");
        }
        // The largest representable second count is fine, one more is not.
        assert_eq!(
            parse("18446744073709551615s"),
            Ok(Duration::from_secs(u64::MAX))
        );
        assert!(
            parse("18446744073709551616ns").is_ok(),
            "2^64 ns is 584 years"
        );
    }

    #[test]
    fn bare_seconds() {
        assert_eq!(parse_secs("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_secs("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_secs("500ms"), Ok(Duration::from_millis(500)));
        assert!(parse_secs("99999999999999999999").is_err());
        assert!(parse_secs("1..2").is_err());
        assert!(parse_secs("-1").is_err());
    }

    #[test]
    fn ranges_and_display() {
        let d = parse("5ms").unwrap();
        let e = check_range(
            "interval",
            "5ms",
            d,
            Duration::from_millis(10),
            Duration::from_secs(3600),
        )
        .unwrap_err()
        .to_string();
        assert_eq!(e, "interval `5ms` is out of range: use 10ms to 1h");
        assert_eq!(display(Duration::from_micros(1500)), "1500us");
        assert_eq!(display(Duration::from_secs(120)), "2m");
        assert_eq!(display(Duration::new(1, 1)), "1000000001ns");
        for s in ["20ms", "1500us", "2m", "7ns", "3d"] {
            assert_eq!(display(parse(s).unwrap()), s);
        }
    }
}
