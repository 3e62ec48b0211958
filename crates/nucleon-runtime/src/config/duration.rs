//! Durations in configuration: `"50ms"`, `"10s"`, `"1.5s"`, `"2m"`, `"1h"`, `"1h 30m"`,
//! or a bare number of seconds; 100 years at most ([`MAX`]).
//!
//! The units are humantime's (`ms`, `s`, `m`/`min`, `h`, `d`…, fractions included);
//! this module adds what it does not do: a bare number of seconds (`3`, `1.5`, as TOML
//! and variables write them), the cap, and errors that name the accepted forms.
//!
//! Use with serde: `#[serde(with = "nucleon_runtime::config::duration")]`, or
//! `duration::option` for an `Option<Duration>`.

use std::fmt;
use std::time::Duration;

use serde::Deserializer;
use serde::de::{self, Visitor};

/// The longest duration configuration takes: 100 years. A longer one is a mistake,
/// and one long enough (from some 6 × 10¹⁸ s) makes the runtime's arithmetic
/// overflow and panic: a deadline `Instant::now() + timeout`, 30 % of a timeout.
pub const MAX: Duration = Duration::from_secs(36_525 * 24 * 3600);

/// Parses `"250ms"`, `"10s"`, `"1.5s"`, `"2m"`, `"1h"` or `"3"` (seconds), up to
/// [`MAX`].
///
/// ```
/// use std::time::Duration;
/// use nucleon_runtime::config::duration::parse;
///
/// assert_eq!(parse("250ms"), Ok(Duration::from_millis(250)));
/// assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
/// assert!(parse("soon").is_err());
/// assert!(parse("1000000000000h").is_err(), "more than 100 years");
/// ```
///
/// # Errors
/// A message naming the accepted forms, or the limit.
pub fn parse(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // A bare number is seconds: humantime takes only `0` without a unit.
        let value: f64 = text.parse().map_err(|_| invalid(text))?;
        let duration = Duration::try_from_secs_f64(value).map_err(|_| invalid(text))?;
        return at_most_max(duration, text);
    }
    match humantime::parse_duration(text) {
        Ok(duration) => at_most_max(duration, text),
        // Beyond what a `Duration` holds: far beyond the cap too.
        Err(humantime::DurationError::NumberOverflow) => Err(too_long(text)),
        Err(_) => Err(invalid(text)),
    }
}

fn at_most_max(duration: Duration, text: &str) -> Result<Duration, String> {
    if duration > MAX {
        return Err(too_long(text));
    }
    Ok(duration)
}

fn too_long(text: &str) -> String {
    format!("`{text}` is too long: a duration may be 100 years at most")
}

fn invalid(text: &str) -> String {
    format!(
        "`{text}` is not a duration: write e.g. \"250ms\", \"10s\", \"1.5s\", \"2m\", \"1h\" or a number of seconds"
    )
}

struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"250ms\", \"10s\" or a number of seconds")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
        parse(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
        at_most_max(Duration::from_secs(v), &v.to_string()).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
        let v = u64::try_from(v).map_err(|_| E::custom("a duration cannot be negative"))?;
        self.visit_u64(v)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
        Duration::try_from_secs_f64(v)
            .map_err(|_| invalid(&v.to_string()))
            .and_then(|duration| at_most_max(duration, &v.to_string()))
            .map_err(E::custom)
    }
}

/// Deserializes a [`Duration`] (see the module docs for the forms).
///
/// # Errors
/// When the value is not one of the accepted forms.
pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    deserializer.deserialize_any(DurationVisitor)
}

/// The same for `Option<Duration>`.
pub mod option {
    use super::*;

    /// Deserializes an optional [`Duration`].
    ///
    /// # Errors
    /// When the value is present and not a duration.
    pub fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Option<Duration>, D::Error> {
        super::deserialize(deserializer).map(Some)
    }
}

/// A [`Duration`] that must be more than zero (a timeout, an interval: zero would
/// end everything at once, or spin).
pub mod nonzero {
    use super::*;

    /// Deserializes a [`Duration`] above zero.
    ///
    /// # Errors
    /// When the value is not a duration, or is zero.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let duration = super::deserialize(deserializer)?;
        if duration.is_zero() {
            return Err(de::Error::custom(
                "must be more than 0 (write e.g. \"100ms\" or \"10s\")",
            ));
        }
        Ok(duration)
    }

    /// The same for `Option<Duration>`.
    pub mod option {
        use super::*;

        /// Deserializes an optional [`Duration`] above zero.
        ///
        /// # Errors
        /// When the value is present and not a duration, or is zero.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<Duration>, D::Error> {
            super::deserialize(deserializer).map(Some)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_forms() {
        assert_eq!(parse("50ms").unwrap(), Duration::from_millis(50));
        assert_eq!(parse("10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse("2m").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse("2min").unwrap(), Duration::from_secs(120));
        assert_eq!(parse("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse("0.25h").unwrap(), Duration::from_secs(900));
        assert_eq!(parse("1h 30m").unwrap(), Duration::from_secs(5400));
        assert_eq!(parse(" 10s ").unwrap(), Duration::from_secs(10));
        assert!(parse(".").is_err());
        assert!(parse("1.2.3").is_err());
        assert!(parse("s").is_err());
        assert!(
            parse("99999999999999999999h")
                .unwrap_err()
                .contains("100 years at most")
        );
        assert!(parse("36525d").is_ok());
        assert!(parse("36526d").unwrap_err().contains("100 years at most"));
        assert!(parse("").is_err());
        assert!(parse("10 parsecs").unwrap_err().contains("10 parsecs"));
        assert!(parse("-1s").is_err());
    }
}
