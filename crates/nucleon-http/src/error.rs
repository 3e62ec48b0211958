//! JSON errors with a stable shape, and the server's own errors. How an error becomes
//! a response is in `response`, beside every other `IntoResponse`.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use http::header::{HeaderName, HeaderValue};
use http::{HeaderMap, StatusCode};

/// An HTTP error answered as JSON: `{"error":"NOT_FOUND","message":"…"}`, with per-field
/// `messages` for invalid parameters.
///
/// The `error` code is stable (clients branch on it); the message is for people.
/// Applications add their own codes with [`HttpError::new`].
///
/// ```
/// use nucleon_http::{HttpError, StatusCode};
///
/// let missing = HttpError::not_found("no country with code `zz`");
/// assert_eq!(missing.status(), StatusCode::NOT_FOUND);
/// assert_eq!(missing.code(), "NOT_FOUND");
///
/// let mine = HttpError::new(StatusCode::CONFLICT, "ALREADY_EXISTS", "country `gb` exists");
/// assert_eq!(mine.code(), "ALREADY_EXISTS");
/// ```
#[derive(Debug, Clone)]
pub struct HttpError {
    pub(crate) status: StatusCode,
    pub(crate) code: Cow<'static, str>,
    pub(crate) message: Cow<'static, str>,
    pub(crate) messages: Option<BTreeMap<String, String>>,
    pub(crate) headers: Option<Box<HeaderMap>>,
    pub(crate) cause: Option<String>,
    /// Answered before the request's body was read to its end (see [`BodyLeftUnread`]).
    pub(crate) body_left_unread: bool,
}

impl HttpError {
    /// An error with its status, stable code and message.
    pub fn new(
        status: StatusCode,
        code: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status,
            code: code.into(),
            message: message.into(),
            messages: None,
            headers: None,
            cause: None,
            body_left_unread: false,
        }
    }

    /// 404 `NOT_FOUND`.
    pub fn not_found(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "NOT_FOUND", message)
    }

    /// 400 `BAD_REQUEST`.
    pub fn bad_request(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "BAD_REQUEST", message)
    }

    /// 400 `INVALID_PARAMETERS`, with one message per field.
    ///
    /// ```
    /// use nucleon_http::HttpError;
    ///
    /// let error = HttpError::invalid_parameters([("code", "must be two lowercase letters")]);
    /// assert_eq!(error.messages().unwrap()["code"], "must be two lowercase letters");
    /// ```
    pub fn invalid_parameters<K, V>(messages: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<String>,
        V: Into<String>,
    {
        let messages: BTreeMap<String, String> = messages
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let fields: Vec<&str> = messages.keys().map(String::as_str).collect();
        let message = format!("invalid parameters: {}", fields.join(", "));
        Self::new(StatusCode::BAD_REQUEST, "INVALID_PARAMETERS", message).with_messages(messages)
    }

    /// 500 `INTERNAL_ERROR`. The cause is logged (with the request id), never sent to
    /// the client.
    pub fn internal(cause: impl fmt::Display) -> Self {
        let mut error = Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "INTERNAL_ERROR",
            "internal error: the server log has the details under this request's id",
        );
        error.cause = Some(cause.to_string());
        error
    }

    /// 413 `PAYLOAD_TOO_LARGE`: a request body past `limit` bytes.
    pub(crate) fn payload_too_large(limit: usize) -> Self {
        let mut error = Self::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PAYLOAD_TOO_LARGE",
            format!("the request body is larger than the limit of {limit} bytes"),
        );
        error.body_left_unread = true;
        error
    }

    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After: <seconds>`.
    pub fn unavailable(message: impl Into<Cow<'static, str>>, retry_after_secs: u64) -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SERVICE_UNAVAILABLE",
            message,
        )
        .with_header(
            http::header::RETRY_AFTER,
            HeaderValue::from(retry_after_secs),
        )
    }

    /// Adds per-field messages (`"messages": {"field": "…"}`).
    pub fn with_messages(mut self, messages: BTreeMap<String, String>) -> Self {
        self.messages = Some(messages);
        self
    }

    /// Sets a response header (`Allow`, `Retry-After`, `Location`…), replacing a value
    /// the error already has for that name (`HttpError::unavailable(…, 1)
    /// .with_header(RETRY_AFTER, 30.into())` sends `Retry-After: 30`). For a header
    /// that may have several values, see [`HttpError::append_header`]. On the
    /// response, the error's values of a name replace any the response had.
    ///
    /// ```
    /// use nucleon_http::{HttpError, IntoResponse};
    /// use nucleon_http::header::{HeaderValue, RETRY_AFTER};
    ///
    /// let response = HttpError::unavailable("busy", 1)
    ///     .with_header(RETRY_AFTER, HeaderValue::from(30))
    ///     .into_response();
    /// let values: Vec<_> = response.headers().get_all(RETRY_AFTER).iter().collect();
    /// assert_eq!(values, ["30"]);
    /// ```
    pub fn with_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .insert(name, value);
        self
    }

    /// Adds a value to a header that may have several (`WWW-Authenticate` with one
    /// challenge per scheme, `Link`, `Vary`), keeping those already set.
    ///
    /// ```
    /// use nucleon_http::{HttpError, IntoResponse, StatusCode};
    /// use nucleon_http::header::{HeaderValue, WWW_AUTHENTICATE};
    ///
    /// let response = HttpError::new(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "sign in")
    ///     .append_header(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))
    ///     .append_header(WWW_AUTHENTICATE, HeaderValue::from_static("Basic realm=\"api\""))
    ///     .into_response();
    /// assert_eq!(response.headers().get_all(WWW_AUTHENTICATE).iter().count(), 2);
    /// ```
    pub fn append_header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers
            .get_or_insert_with(Default::default)
            .append(name, value);
        self
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code (`NOT_FOUND`, `INVALID_JSON`…).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for people.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Per-field messages, if any.
    pub fn messages(&self) -> Option<&BTreeMap<String, String>> {
        self.messages.as_ref()
    }

    /// The cause kept for the log (internal errors), if any.
    pub fn cause(&self) -> Option<&str> {
        self.cause.as_deref()
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )?;
        if let Some(cause) = &self.cause {
            write!(f, " (cause: {cause})")?;
        }
        Ok(())
    }
}

impl std::error::Error for HttpError {}

/// Marks an answer made before the request's body was read to its end (past the body
/// limit, or stopped arriving): its connection closes after it, reading what the
/// client still sends first (the server's `linger_close`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct BodyLeftUnread;

/// The cause of a 500, carried in the response's extensions so the access log can
/// name it with the request id.
#[derive(Debug, Clone)]
pub(crate) struct InternalCause(pub(crate) String);

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listening socket could not be set up.
    #[error(
        "cannot listen on {addr}: {source} (is another process using the port? change http.port or pass --port)"
    )]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another socket is bound to the address: most likely another process listens
    /// on it (another instance of this service?).
    #[error(
        "{addr} is in use: another process listens on it (another instance of this service?); stop it, or change http.port or pass --port"
    )]
    AddrInUse {
        /// The address.
        addr: std::net::SocketAddr,
    },
    /// `http.host` is not an IP address.
    #[error("http.host `{host}` is not an IP address (e.g. \"127.0.0.1\" or \"0.0.0.0\")")]
    InvalidHost {
        /// What was given.
        host: String,
    },
    /// A route could not be added.
    #[error("invalid route `{path}`: {message}")]
    Route {
        /// The route's pattern.
        path: String,
        /// What is wrong.
        message: String,
    },
}
