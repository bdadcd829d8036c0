//! Sizes and durations as the configuration writes them (TiKV's `ReadableSize` and
//! `ReadableDuration`): a size is a number of bytes or a string with a unit (`"96MiB"`, `"64KiB"`,
//! `"1GB"`, `"1.5GiB"`); a duration is a number of milliseconds or a string with a unit (`"10s"`,
//! `"500ms"`, `"1m"`, `"1h30m"`).
//!
//! As in TiKV, every size unit is binary: `KB`, `KiB` and `K` all mean 1024 bytes, `MB`, `MiB`
//! and `M` 1024², and so on up to `PB`/`PiB`/`P`. Fractions are allowed and round down to a
//! whole byte (or a whole millisecond).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

/// A size in bytes, read from a number or a string with a unit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadableSize(pub u64);

/// A span of time, read from a number of milliseconds or a string with units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadableDuration(pub Duration);

/// Parses a size: `"1024"`, `"64KiB"`, `"96MB"`, `"1.5 GiB"`, `"0"`; units are binary and their
/// case is ignored. The error is one line.
pub fn parse_size(text: &str) -> Result<u64, String> {
    let bad = |why: &str| {
        format!("{text:?} is not a size ({why}; e.g. 1048576, \"64KiB\", \"96MiB\", \"1GB\")")
    };
    let s = text.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(bad("no number"));
    }
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        "T" | "TB" | "TIB" => 40,
        "P" | "PB" | "PIB" => 50,
        _ => return Err(bad("unknown unit")),
    };
    let unit_bytes = 1u64 << shift;
    if let Ok(n) = number.parse::<u64>() {
        return n.checked_mul(unit_bytes).ok_or_else(|| bad("too large"));
    }
    let n: f64 = number.parse().map_err(|_| bad("not a number"))?;
    let bytes = n * unit_bytes as f64;
    // 2^64 as f64 is exact; anything at or past it does not fit.
    if !bytes.is_finite() || bytes >= 18_446_744_073_709_551_616.0 {
        return Err(bad("too large"));
    }
    Ok(bytes as u64)
}

/// Parses a duration: a bare number is milliseconds (`"250"`); otherwise numbers with units
/// `ms`, `s`, `m`, `h`, one after another (`"10s"`, `"1.5s"`, `"1m30s"`). The error is one line.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = |why: &str| {
        format!("{text:?} is not a duration ({why}; e.g. 500, \"500ms\", \"10s\", \"1m\")")
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    let mut rest = s;
    let mut total = 0f64;
    while !rest.is_empty() {
        let n_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| bad("a number without a unit"))?;
        let (number, tail) = rest.split_at(n_end);
        let u_end = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(u_end);
        let n: f64 = number.parse().map_err(|_| bad("not a number"))?;
        let ms_per_unit = match unit.trim() {
            "ms" => 1.0,
            "s" => 1e3,
            "m" => 60e3,
            "h" => 3600e3,
            _ => return Err(bad("unknown unit")),
        };
        total += n * ms_per_unit;
        rest = tail.trim_start();
    }
    // A year is far past any setting here; the bound keeps the conversion exact and finite.
    if !total.is_finite() || total > 365.0 * 24.0 * 3600e3 {
        return Err(bad("too long"));
    }
    Ok(Duration::from_millis(total as u64))
}

impl FromStr for ReadableSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_size(s).map(ReadableSize)
    }
}

impl FromStr for ReadableDuration {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        parse_duration(s).map(ReadableDuration)
    }
}

impl<'de> Deserialize<'de> for ReadableSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ReadableSize;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of bytes or a size string such as \"96MiB\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ReadableSize, E> {
                u64::try_from(v)
                    .map(ReadableSize)
                    .map_err(|_| E::custom(format!("{v} is not a size (negative)")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ReadableSize, E> {
                Ok(ReadableSize(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ReadableSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for ReadableDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = ReadableDuration;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of milliseconds or a duration string such as \"10s\"")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ReadableDuration, E> {
                u64::try_from(v)
                    .map(|ms| ReadableDuration(Duration::from_millis(ms)))
                    .map_err(|_| E::custom(format!("{v} is not a duration (negative)")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ReadableDuration, E> {
                Ok(ReadableDuration(Duration::from_millis(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<ReadableDuration, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_with_and_without_units() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("1024", 1024),
            ("512B", 512),
            ("64KiB", 64 << 10),
            ("64KB", 64 << 10),
            ("64k", 64 << 10),
            ("96MiB", 96 << 20),
            ("144MB", 144 << 20),
            ("1GB", 1 << 30),
            ("1 GiB", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("0.5KiB", 512),
            ("2TB", 2 << 40),
            ("1PiB", 1 << 50),
            (" 7 mib ", 7 << 20),
        ];
        for &(text, want) in cases {
            assert_eq!(parse_size(text), Ok(want), "{text:?}");
        }
        for bad in [
            "",
            "MiB",
            "12XB",
            "1.2.3MB",
            "-1",
            "99999999999PiB",
            "16384PiB",
            "1e3",
        ] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.contains("is not a size"), "{bad:?}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    #[test]
    fn durations_with_and_without_units() {
        let cases: &[(&str, u64)] = &[
            ("0", 0),
            ("250", 250),
            ("500ms", 500),
            ("10s", 10_000),
            ("1.5s", 1_500),
            ("1m", 60_000),
            ("1m30s", 90_000),
            ("2h", 7_200_000),
            (" 3s ", 3_000),
        ];
        for &(text, ms) in cases {
            assert_eq!(
                parse_duration(text),
                Ok(Duration::from_millis(ms)),
                "{text:?}"
            );
        }
        for bad in [
            "",
            "s",
            "10x",
            "10 parsecs",
            "1.2.3s",
            "-5s",
            "9999999h",
            "10s5",
        ] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("is not a duration"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn toml_takes_numbers_and_strings() {
        #[derive(Deserialize)]
        struct T {
            a: ReadableSize,
            b: ReadableSize,
            c: ReadableDuration,
            d: ReadableDuration,
        }
        let t: T = toml::from_str("a = 1048576\nb = \"96MiB\"\nc = 500\nd = \"10s\"").unwrap();
        assert_eq!((t.a.0, t.b.0), (1 << 20, 96 << 20));
        assert_eq!(
            (t.c.0, t.d.0),
            (Duration::from_millis(500), Duration::from_secs(10))
        );
        assert!(toml::from_str::<T>("a = -1\nb = 1\nc = 1\nd = 1").is_err());
        assert!(toml::from_str::<T>("a = \"1QB\"\nb = 1\nc = 1\nd = 1").is_err());
    }
}
