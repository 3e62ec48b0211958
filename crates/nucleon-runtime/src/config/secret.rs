//! Values that must never reach logs, errors or `Debug` output.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer};
use url::Url;

/// A secret value (a password, a token). `Debug` and `Display` print `***`; the value is
/// only reachable through [`Secret::expose`], so every use is explicit and greppable.
///
/// ```
/// use nucleon_runtime::config::Secret;
///
/// let token = Secret::new("hunter2".to_owned());
/// assert_eq!(format!("{token:?}"), "Secret(***)");
/// assert_eq!(token.expose(), "hunter2");
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Secret<T> {
    /// As `T`'s, but a refused value is not echoed: serde's messages quote it
    /// (`invalid type: string "hunter2", expected u32`).
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        T::deserialize(deserializer).map(Self).map_err(|_| {
            serde::de::Error::custom("invalid value (not shown: the setting is a secret)")
        })
    }
}

impl<T> Secret<T> {
    /// Wraps a value.
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The secret itself. Do not log it.
    pub fn expose(&self) -> &T {
        &self.0
    }

    /// Unwraps the secret.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// A URL that may carry credentials (`postgres://user:secret@host/db`).
///
/// `Display` and `Debug` show it with the password (and query parameters named like
/// secrets: `password`, `token`, `secret`, `key`…) replaced by `***`. The full URL is
/// only reachable through [`SecretUrl::expose`].
///
/// ```
/// use nucleon_runtime::config::SecretUrl;
///
/// let url: SecretUrl = "postgres://app:s3cret@db.internal/orders?sslpassword=x".parse().unwrap();
/// assert_eq!(url.to_string(), "postgres://app:***@db.internal/orders?sslpassword=***");
/// assert!(!format!("{url:?}").contains("s3cret"));
/// assert_eq!(url.expose().password(), Some("s3cret"));
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct SecretUrl {
    url: Url,
    masked: String,
}

impl SecretUrl {
    /// The full URL, credentials included. Do not log it.
    pub fn expose(&self) -> &Url {
        &self.url
    }

    /// The URL with secrets masked (what `Display` prints).
    pub fn masked(&self) -> &str {
        &self.masked
    }
}

fn is_secret_key(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    ["pass", "pwd", "secret", "token", "key", "credential"]
        .iter()
        .any(|s| key.contains(s))
}

fn mask(url: &Url) -> String {
    let mut masked = url.clone();
    if masked.password().is_some() {
        // Only fails for URLs that cannot have credentials, which have no password.
        let _ = masked.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_key(&k) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        let query = pairs
            .iter()
            .map(|(k, v)| {
                if v == "***" {
                    format!("{k}=***")
                } else {
                    url::form_urlencoded::Serializer::new(String::new())
                        .append_pair(k, v)
                        .finish()
                }
            })
            .collect::<Vec<_>>()
            .join("&");
        masked.set_query(Some(&query));
    }
    masked.to_string()
}

/// A string that is not a URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid URL: {reason}")]
pub struct InvalidUrl {
    reason: String,
}

impl FromStr for SecretUrl {
    type Err = InvalidUrl;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // The parser's message never includes the input, so no secret leaks through it.
        let url = Url::parse(s).map_err(|e| InvalidUrl {
            reason: e.to_string(),
        })?;
        Ok(Self::from(url))
    }
}

impl From<Url> for SecretUrl {
    fn from(url: Url) -> Self {
        let masked = mask(&url);
        Self { url, masked }
    }
}

impl fmt::Display for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl fmt::Debug for SecretUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretUrl({:?})", self.masked)
    }
}

impl<'de> Deserialize<'de> for SecretUrl {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_password_and_secret_query_values() {
        let url: SecretUrl = "amqp://guest:pa55@127.0.0.1:5672/%2f?heartbeat=10&token=abc"
            .parse()
            .unwrap();
        let shown = format!("{url} {url:?}");
        assert!(!shown.contains("pa55") && !shown.contains("abc"), "{shown}");
        assert!(shown.contains("heartbeat=10"));
        assert_eq!(url.expose().password(), Some("pa55"));
    }

    #[test]
    fn url_without_password_is_unchanged() {
        let url: SecretUrl = "postgres://postgres@127.0.0.1:5432/test".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://postgres@127.0.0.1:5432/test");
    }

    #[test]
    fn parse_error_does_not_echo_input() {
        let err = "postgres://u:topsecret@[bad"
            .parse::<SecretUrl>()
            .unwrap_err();
        assert!(!err.to_string().contains("topsecret"));
    }
}
