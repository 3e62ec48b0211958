//! Typed errors: each names the host (or URL) it is about and says what to do.

use std::net::SocketAddr;
use std::time::Duration;

/// Why a name could not be resolved.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The name does not exist (NXDOMAIN) under any of the names tried.
    #[error(
        "no such host `{host}` (NXDOMAIN): check the name, or the search domains in the `dns` \
         settings / resolv.conf"
    )]
    NoSuchHost {
        /// The name looked up.
        host: String,
    },
    /// The name exists but has no records of the type asked for.
    #[error("host `{host}` exists but has no {record_type} records")]
    NoRecords {
        /// The name looked up.
        host: String,
        /// What was asked for: `A/AAAA`, `SRV`, `TXT`.
        record_type: String,
    },
    /// No name server answered in time.
    #[error(
        "DNS lookup of `{host}` timed out after {after:?}: no name server answered; check that \
         the name servers in the `dns` settings / resolv.conf are reachable"
    )]
    Timeout {
        /// The name looked up.
        host: String,
        /// How long the lookup waited.
        after: Duration,
    },
    /// A name server answered with an error (SERVFAIL, REFUSED…), or could not be reached.
    #[error("DNS lookup of `{host}` failed: {reason}")]
    Failed {
        /// The name looked up.
        host: String,
        /// What the resolver said.
        reason: String,
    },
    /// The text is not a valid host name.
    #[error("`{host}` is not a valid host name: {reason}")]
    InvalidName {
        /// The text given.
        host: String,
        /// Why it is not a name.
        reason: String,
    },
    /// The resolver cannot be built from its configuration.
    #[error("DNS resolver misconfigured ({source_of}): {reason}")]
    Misconfigured {
        /// Where the configuration came from (a file, or `dns.<key>`).
        source_of: String,
        /// What is wrong, and what to do.
        reason: String,
    },
}

impl DnsError {
    /// The host the error is about (`None` for a misconfiguration found at start).
    pub fn host(&self) -> Option<&str> {
        match self {
            DnsError::NoSuchHost { host }
            | DnsError::NoRecords { host, .. }
            | DnsError::Timeout { host, .. }
            | DnsError::Failed { host, .. }
            | DnsError::InvalidName { host, .. } => Some(host),
            DnsError::Misconfigured { .. } => None,
        }
    }

    /// Whether the name is definitely absent (NXDOMAIN, or no records of the type): a
    /// retry will not help until the zone changes.
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            DnsError::NoSuchHost { .. } | DnsError::NoRecords { .. }
        )
    }
}

/// Why [`crate::Resolver::connect_tcp`] found no connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The name did not resolve.
    #[error(transparent)]
    Dns(#[from] DnsError),
    /// Every address was tried and none accepted a connection.
    #[error("could not connect to `{host}:{port}`: {}", describe(attempts))]
    Unreachable {
        /// The host asked for.
        host: String,
        /// The port asked for.
        port: u16,
        /// Each address tried, with its failure (a per-attempt timeout shows as
        /// `TimedOut`).
        attempts: Vec<(SocketAddr, std::io::Error)>,
    },
}

fn describe(attempts: &[(SocketAddr, std::io::Error)]) -> String {
    if attempts.is_empty() {
        return "no address to try".to_owned();
    }
    attempts
        .iter()
        .map(|(addr, error)| format!("{addr}: {error}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why an outbound HTTP call failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The URL's host did not resolve.
    #[error("{method} {url}: {source}")]
    Dns {
        /// The request's method.
        method: String,
        /// The URL called.
        url: String,
        /// The DNS failure, naming the host.
        source: DnsError,
    },
    /// The TLS handshake failed: the server's certificate is not trusted, expired or
    /// for another name, or the server does not speak TLS there. Retrying will not
    /// help; the server's or the client's setup must change (`http_client.ca_file`).
    #[error("{method} {url}: TLS handshake failed: {reason}")]
    Tls {
        /// The request's method.
        method: String,
        /// The URL called.
        url: String,
        /// What TLS said.
        reason: String,
    },
    /// No connection could be made (refused, unreachable, reset).
    #[error("{method} {url}: could not connect: {reason}")]
    Connect {
        /// The request's method.
        method: String,
        /// The URL called.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The call did not finish within its deadline.
    #[error("{method} {url}: timed out (see http_client.timeout / connect_timeout)")]
    Timeout {
        /// The request's method.
        method: String,
        /// The URL called.
        url: String,
    },
    /// The server answered with an error status.
    #[error("{method} {url}: the server answered {status}{}", body_excerpt(body))]
    Status {
        /// The request's method.
        method: String,
        /// The URL called.
        url: String,
        /// The status.
        status: reqwest::StatusCode,
        /// The start of the response body (up to 1 KiB), for the logs.
        body: String,
    },
    /// The response body is not the JSON expected.
    #[error("{method} {url}: the response is not the JSON expected: {reason}")]
    Decode {
        /// The request's method.
        method: String,
        /// The URL called.
        url: String,
        /// What the decoder said.
        reason: String,
    },
    /// The response body is larger than `http_client.max_body_size`.
    #[error(
        "{method} {url}: the response body is larger than {limit} bytes (http_client.max_body_size)"
    )]
    BodyTooLarge {
        /// The request's method.
        method: String,
        /// The URL called.
        url: String,
        /// The limit, in bytes.
        limit: usize,
    },
    /// Any other failure of the request (a malformed URL, a body error, a redirect loop).
    #[error("{method} {url}: {reason}")]
    Request {
        /// The request's method.
        method: String,
        /// The URL called.
        url: String,
        /// What failed.
        reason: String,
    },
    /// The client could not be built (bad root certificates, bad settings).
    #[error("outbound HTTP client misconfigured: {reason}")]
    Build {
        /// What is wrong.
        reason: String,
    },
}

fn body_excerpt(body: &str) -> String {
    if body.is_empty() {
        String::new()
    } else {
        format!(": {body}")
    }
}

impl HttpError {
    /// The response status, for [`HttpError::Status`].
    pub fn status(&self) -> Option<reqwest::StatusCode> {
        match self {
            HttpError::Status { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether retrying the same call later could succeed (a timeout, a connection
    /// failure, a DNS timeout, a 502/503/504, a 429; not a TLS failure).
    pub fn is_transient(&self) -> bool {
        match self {
            HttpError::Timeout { .. } | HttpError::Connect { .. } => true,
            HttpError::Dns { source, .. } => matches!(source, DnsError::Timeout { .. }),
            HttpError::Status { status, .. } => matches!(status.as_u16(), 429 | 502 | 503 | 504),
            _ => false,
        }
    }
}
