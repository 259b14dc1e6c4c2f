//! Conversions from configuration text to typed values.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::Secret;

/// A type that can be read from a YAML scalar or an environment variable's text.
pub trait FromConfig: Sized {
    /// Converts `text`; the error says what was expected, e.g. "expected a duration like 10s".
    fn from_text(text: &str) -> Result<Self, String>;

    /// Whether a YAML list is accepted (environment variables then split on commas).
    fn from_list(_items: Vec<String>) -> Option<Result<Self, String>> {
        None
    }
}

impl FromConfig for String {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(text.to_string())
    }
}

impl FromConfig for Secret {
    fn from_text(text: &str) -> Result<Self, String> {
        Ok(Secret::new(text))
    }
}

impl FromConfig for PathBuf {
    fn from_text(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("expected a file path, got an empty string".into());
        }
        Ok(PathBuf::from(text))
    }
}

impl FromConfig for bool {
    fn from_text(text: &str) -> Result<Self, String> {
        match text.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("expected true or false, got {text:?}")),
        }
    }
}

macro_rules! int_from_config {
    ($($t:ty),*) => {$(
        impl FromConfig for $t {
            fn from_text(text: &str) -> Result<Self, String> {
                text.trim().parse::<$t>().map_err(|_| {
                    format!("expected a whole number from {} to {}, got {text:?}", <$t>::MIN, <$t>::MAX)
                })
            }
        }
    )*};
}
int_from_config!(u16, u32, u64, usize, i64);

impl FromConfig for SocketAddr {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_listen_address(text)
    }
}

impl FromConfig for Duration {
    fn from_text(text: &str) -> Result<Self, String> {
        parse_duration(text)
    }
}

impl<T: FromConfig> FromConfig for Vec<T> {
    fn from_text(text: &str) -> Result<Self, String> {
        text.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(T::from_text)
            .collect()
    }

    fn from_list(items: Vec<String>) -> Option<Result<Self, String>> {
        Some(items.iter().map(|s| T::from_text(s)).collect())
    }
}

/// A listen address: `host:port`, or MediaMTX's `:port` meaning every interface.
fn parse_listen_address(text: &str) -> Result<SocketAddr, String> {
    let full = if text.starts_with(':') {
        format!("0.0.0.0{text}")
    } else {
        text.to_string()
    };
    full.parse().map_err(|_| {
        format!("expected an address like 127.0.0.1:9997, [::1]:9997 or :9997, got {text:?}")
    })
}

/// Parses a Go-style duration as MediaMTX writes them: `10s`, `500ms`, `1m30s`, `2h`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let bad = || format!("expected a duration like 10s, 500ms or 1m30s, got {text:?}");
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut total = Duration::ZERO;
    let mut rest = s;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if digits == 0 {
            return Err(bad());
        }
        let number: f64 = rest[..digits].parse().map_err(|_| bad())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let nanos_per_unit: f64 = match &rest[..unit_len] {
            "ns" => 1.0,
            "us" | "µs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            _ => return Err(bad()),
        };
        rest = &rest[unit_len..];
        let nanos = number * nanos_per_unit;
        if !nanos.is_finite() || nanos > 1e18 {
            return Err(format!("duration {text:?} is too long"));
        }
        total = total
            .checked_add(Duration::from_nanos(nanos as u64))
            .ok_or_else(|| format!("duration {text:?} is too long"))?;
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        for bad in ["", "10", "s", "10x", "-1s", "1e99h", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn listen_addresses() {
        assert_eq!(
            SocketAddr::from_text(":9997"),
            Ok("0.0.0.0:9997".parse().unwrap_or_else(|_| unreachable!()))
        );
        assert!(SocketAddr::from_text("[::1]:1").is_ok());
        assert!(SocketAddr::from_text("localhost").is_err());
    }

    #[test]
    fn numbers_and_bools() {
        assert_eq!(u16::from_text("8554"), Ok(8554));
        assert!(u16::from_text("70000").is_err());
        assert_eq!(bool::from_text("yes"), Ok(true));
        assert!(bool::from_text("maybe").is_err());
        assert_eq!(
            Vec::<u16>::from_text("1, 2,3"),
            Ok(vec![1, 2, 3]),
            "comma-separated in the environment"
        );
    }
}
