//! The server's settings: the `[<env>.http]` table, read and checked. The address
//! they name is claimed and bound in `listener`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use nucleon_runtime::config::duration;
use serde::Deserialize;

use crate::ServerError;

/// The default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The server's settings: the `[<env>.http]` table of `app.toml`.
///
/// ```toml
/// [default.http]
/// host = "127.0.0.1"
/// port = 8888
/// body_limit = 1048576
/// header_read_timeout = "10s"
/// body_read_timeout = "30s"
/// lame_duck = "5s"
/// drain_idle_grace = "1s"
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The address to listen on (default `127.0.0.1`; `0.0.0.0` for every interface).
    pub host: String,
    /// The port (default 8000; 0 picks a free one at start).
    pub port: u16,
    /// The listen backlog of each worker's socket (default 4096).
    pub backlog: u32,
    /// How long a client may take to send a request's headers, and how long an idle
    /// connection (a new one before its first byte, or a keep-alive one between
    /// requests) stays open (default 10 s). A client cut mid-headers gets 408. A
    /// connection is not idle while a handler runs or a response is being sent, a
    /// streaming body however slow included. An HTTP/2 connection with no request in
    /// service for as long gets a `GOAWAY` (its open streams finish), and is pinged at
    /// this interval: a peer that does not answer within it is closed. Connections in
    /// service are checked a few times per timeout (every quarter of it, 5 ms to 1 s),
    /// so one ends between 1 and 1.25 times the timeout after it went quiet.
    #[serde(with = "duration::nonzero")]
    pub header_read_timeout: Duration,
    /// The largest request head (path, query and headers) in bytes (default 16 KiB):
    /// past it, 431.
    pub max_header_size: usize,
    /// The largest request body in bytes (default 1 MiB): past it, 413.
    pub body_limit: usize,
    /// How long a response may wait on a client that does not read it (default 60 s):
    /// a write that stays blocked for as long ends the connection. A client that stops
    /// reading does not hold its connection and the response's memory for ever.
    #[serde(with = "duration::nonzero")]
    pub send_timeout: Duration,
    /// How long a request's body may go without a byte arriving while it is read
    /// (default 30 s): past it, reading fails, the extractors answer 408
    /// `REQUEST_TIMEOUT`, and the connection closes. An upload that stalls does not
    /// hold its connection and its handler for ever.
    #[serde(with = "duration::nonzero")]
    pub body_read_timeout: Duration,
    /// A time limit for every handler (default none; routes may set their own). Zero
    /// is refused (it would answer every request that waits on anything with 503):
    /// leave the key out for no limit.
    #[serde(with = "duration::nonzero::option")]
    pub request_timeout: Option<Duration>,
    /// The readiness route: 200 while serving, 503 from the moment a drain starts
    /// (default `/readyz`; an empty string turns it off). A path, so it starts with
    /// `/` (one without would never match, and is refused).
    /// Its body lists every adapter's health (this worker's and the per-process ones):
    /// `{"status":"ready","adapters":[{"adapter":"http","worker":0,"health":"healthy"}]}`;
    /// 503 with `Retry-After` and the same body when one is unhealthy.
    #[serde(deserialize_with = "probe_path")]
    pub readiness_path: Option<String>,
    /// The liveness route: 200 `{"status":"alive"}` while the process runs, draining
    /// or not, asking nothing of the adapters (default `/livez`; an empty string turns
    /// it off).
    #[serde(deserialize_with = "probe_path")]
    pub liveness_path: Option<String>,
    /// How long to keep serving normally after readiness turns 503, so a load balancer
    /// takes the instance out before the listener closes (default 0).
    #[serde(with = "duration")]
    pub lame_duck: Duration,
    /// How long a keep-alive connection that is idle when the listener closes (after
    /// the lame duck) is kept open for one more request (default 1 s). An HTTP/1.1
    /// client may be sending its next request on a connection the server sees idle:
    /// closing it at once would lose that request. Within the grace, the request is
    /// served, its answer with `Connection: close`; a connection that
    /// stays quiet for the grace is closed. The same holds for a connection accepted
    /// whose first request has not arrived yet. The grace ends by the drain's deadline
    /// at the latest; 0 closes idle connections at once (a request on its way then
    /// meets a closed connection). Every connection closed in the drain is closed with
    /// a lingering read, not with a reset that could destroy an answer its client has
    /// not read yet: the writing side first, then what the client still sends is read
    /// and dropped until it closes its side or sends nothing for as long as the grace
    /// (at least 0.1 s, at most 2 s; 5 s in all).
    #[serde(with = "duration")]
    pub drain_idle_grace: Duration,
    /// The `Retry-After` (seconds) of 503s: while draining, and for a handler past its
    /// time limit (503 `TIMEOUT`) (default 1).
    pub retry_after: u64,
    /// Serve HTTP/2 with prior knowledge (h2c) besides HTTP/1.1 (default true).
    pub http2: bool,
    /// One `nucleon::access` log line per request (default true).
    pub access_log: bool,
    /// Bind the port even while another process listens on it (default false): the
    /// new process of a restart without downtime (the command line's `--replace`), whose
    /// listeners join the old one's `SO_REUSEPORT` group before the old one drains.
    /// Both must run as the same user (the kernel's rule for the group). Without it, a
    /// second instance on a port in use is refused at start, a mistake more often than
    /// not.
    pub share_port: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            backlog: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_size: 16 * 1024,
            body_limit: DEFAULT_BODY_LIMIT,
            send_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: None,
            readiness_path: Some("/readyz".into()),
            liveness_path: Some("/livez".into()),
            lame_duck: Duration::ZERO,
            drain_idle_grace: Duration::from_secs(1),
            retry_after: 1,
            http2: true,
            access_log: true,
            share_port: false,
        }
    }
}

impl HttpConfig {
    /// The address to listen on.
    ///
    /// # Errors
    /// [`ServerError::InvalidHost`] when `host` is not an IP address.
    pub fn addr(&self) -> Result<SocketAddr, ServerError> {
        let ip: IpAddr = self.host.parse().map_err(|_| ServerError::InvalidHost {
            host: self.host.clone(),
        })?;
        Ok(SocketAddr::new(ip, self.port))
    }

    pub(super) fn normalised(mut self) -> Self {
        if self.liveness_path.as_deref() == Some("") {
            self.liveness_path = None;
        }
        if self.readiness_path.as_deref() == Some("") {
            self.readiness_path = None;
        }
        self
    }
}

/// `http.readiness_path`, `http.liveness_path`: empty (off) or a path.
fn probe_path<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let path = Option::<String>::deserialize(deserializer)?;
    match path.as_deref() {
        Some(path) if !path.is_empty() && !path.starts_with('/') => Err(serde::de::Error::custom(
            format!("`{path}` is not a path: write \"/{path}\" (or \"\" for no such route)"),
        )),
        _ => Ok(path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_that_could_not_work_are_refused_with_their_key() {
        let http = |toml: &str| {
            nucleon_runtime::Config::from_toml(&format!("[default.http]\n{toml}\n"), "default")
                .and_then(|config| config.extract_at::<HttpConfig>("http"))
        };
        for (toml, key, says) in [
            ("request_timeout = \"0s\"", "request_timeout", "more than 0"),
            (
                "readiness_path = \"readyz\"",
                "readiness_path",
                "write \"/readyz\"",
            ),
        ] {
            let error = http(toml).expect_err(toml).to_string();
            assert!(
                error.contains(key) && error.contains(says),
                "{toml}: {error}"
            );
        }
        let fine = http("request_timeout = \"2s\"\nreadiness_path = \"/health\"").unwrap();
        assert_eq!(fine.request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(fine.readiness_path.as_deref(), Some("/health"));
        let off = http("readiness_path = \"\"").unwrap().normalised();
        assert_eq!(off.readiness_path, None);
        assert_eq!(http("").unwrap(), HttpConfig::default());
    }
}
