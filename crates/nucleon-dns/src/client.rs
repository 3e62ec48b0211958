//! The outbound HTTP client: reqwest with the worker's resolver, rustls, timeouts, JSON
//! helpers, typed errors, request-id and trace-context forwarding.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use nucleon_runtime::LocalState;
use nucleon_runtime::config::SecretUrl;
use nucleon_runtime::trace::{self, TRACEPARENT, TRACESTATE};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{IntoUrl, Method, RequestBuilder, Response};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::HttpClientConfig;
use crate::error::{DnsError, HttpError};
use crate::request_id;
use crate::resolver::Resolver;

/// The header carrying the request id.
const REQUEST_ID_HEADER: &str = "x-request-id";
/// How much of an error response's body goes into [`HttpError::Status`].
const BODY_EXCERPT: usize = 1024;

/// An outbound HTTP client whose name lookups go through a [`Resolver`] (the worker's
/// cache, never `getaddrinfo`). Cheap to clone; clones share one connection pool.
///
/// One per worker: [`crate::HttpClientAdapter`] builds it at start and registers it
/// ([`HttpClient::current`]). Inside a request (see [`crate::request_id`]), calls carry
/// the request's id as `x-request-id`, and its trace context (see
/// `nucleon_runtime::trace`) as W3C `traceparent` and `tracestate`: the same trace,
/// this service's span as the parent (a trace is started for a request that came
/// without one, at its first call).
///
/// ```no_run
/// # async fn handler() -> Result<(), nucleon_dns::HttpError> {
/// use nucleon_dns::HttpClient;
///
/// #[derive(serde::Deserialize)]
/// struct Country { name: String }
///
/// let client = HttpClient::current().expect("HttpClientAdapter is added on this worker");
/// let country: Country = client.get_json("http://countries.internal/countries/fr").await?;
/// let created: serde_json::Value = client
///     .post_json("http://audit.internal/events", &serde_json::json!({"seen": country.name}))
///     .await?;
/// // Anything else: build with reqwest, send through the client for typed errors.
/// let response = client.send(client.delete("http://cache.internal/keys/fr")).await?;
/// # let _ = (created, response); Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpClient {
    inner: reqwest::Client,
    forward_request_id: bool,
    forward_trace_context: bool,
    max_body_size: usize,
}

impl HttpClient {
    /// Builds a client that resolves names with `resolver`.
    ///
    /// Loads root certificates here (the system's, off the loop, once per process; and
    /// `ca_file`'s), so the first TLS handshake does no file IO.
    ///
    /// TLS is rustls with the process's default crypto provider when the application
    /// installed one before (`rustls::crypto::CryptoProvider::install_default`: aws-lc-rs
    /// for post-quantum key exchange, say), else with ring, as the rest of the framework.
    ///
    /// # Errors
    /// [`HttpError::Build`] when `ca_file` cannot be read or holds no certificate, the
    /// system's root certificates cannot be loaded (`native_roots`; the blocking pool
    /// refused the job, say), or the settings are invalid.
    pub async fn new(resolver: Resolver, config: &HttpClientConfig) -> Result<Self, HttpError> {
        let tls = tls_config(config).await?;
        let redirect = if config.max_redirects == 0 {
            reqwest::redirect::Policy::none()
        } else {
            reqwest::redirect::Policy::limited(config.max_redirects)
        };
        let inner = reqwest::Client::builder()
            .dns_resolver(ResolveWith {
                resolver,
                budget: dns_budget(config.connect_timeout),
            })
            .tls_backend_preconfigured(tls)
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(config.pool_idle_timeout)
            .pool_max_idle_per_host(config.pool_max_idle_per_host)
            .user_agent(config.user_agent.clone())
            .redirect(redirect)
            .build()
            .map_err(|e| HttpError::Build {
                reason: error_chain(&e),
            })?;
        Ok(Self {
            inner,
            forward_request_id: config.forward_request_id,
            forward_trace_context: config.forward_trace_context,
            max_body_size: config.max_body_size,
        })
    }

    /// The client of this worker: the [`crate::HttpClientAdapter`]'s handle, else one
    /// registered with [`HttpClient::register`]; `None` elsewhere.
    pub fn current() -> Option<Self> {
        nucleon_runtime::handle::get::<HttpClient>()
            .or_else(|| LocalState::<HttpClient>::current().map(|state| state.with(Clone::clone)))
    }

    /// Registers this client as the current thread's (worker's), for
    /// [`HttpClient::current`].
    pub fn register(&self) {
        LocalState::new(self.clone()).register();
    }

    /// Starts a request; the current request id, if any, is attached (unless it
    /// cannot be a header value: an id an application set itself, with a newline or
    /// non-ASCII text in it, is left off rather than failing the request), and so is
    /// the current trace context (`traceparent`, and `tracestate` when there is one).
    /// An `x-request-id` or a `traceparent` the caller sets on the builder replaces
    /// ours when the request goes through this client's `send` (and its `json`,
    /// `send_ok`… helpers), our `tracestate` going with our `traceparent`; reqwest's
    /// own `RequestBuilder::send` would send both.
    pub fn request(&self, method: Method, url: impl IntoUrl) -> RequestBuilder {
        let mut builder = self.inner.request(method, url);
        let id = request_id::current()
            .filter(|_| self.forward_request_id)
            .and_then(|id| {
                id.with_bytes(|bytes| reqwest::header::HeaderValue::from_bytes(bytes).ok())
            })
            .filter(|value| value.to_str().is_ok());
        if let Some(value) = id {
            builder = builder.header(REQUEST_ID_HEADER, value);
        }
        if self.forward_trace_context
            && let Some(context) = trace::current()
        {
            builder = builder.header(TRACEPARENT, context.traceparent().as_str());
            if let Some(state) = context.tracestate() {
                builder = builder.header(TRACESTATE, state);
            }
        }
        builder
    }

    /// Starts a GET.
    pub fn get(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::GET, url)
    }

    /// Starts a POST.
    pub fn post(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::POST, url)
    }

    /// Starts a PUT.
    pub fn put(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PUT, url)
    }

    /// Starts a PATCH.
    pub fn patch(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::PATCH, url)
    }

    /// Starts a DELETE.
    pub fn delete(&self, url: impl IntoUrl) -> RequestBuilder {
        self.request(Method::DELETE, url)
    }

    /// Sends a request built with this client, mapping failures to [`HttpError`]. The
    /// response may have any status: see [`HttpClient::send_ok`] to reject errors.
    ///
    /// # Errors
    /// [`HttpError::Dns`], [`HttpError::Connect`], [`HttpError::Tls`], [`HttpError::Timeout`],
    /// [`HttpError::Request`].
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, HttpError> {
        let (client, request) = request.build_split();
        let request = request.map_err(|e| {
            let (method, url) = describe(None, e.url());
            HttpError::Request {
                method,
                url,
                reason: error_chain(&e),
            }
        })?;
        let mut request = request;
        keep_the_callers_request_id(request.headers_mut());
        keep_the_callers_trace_context(request.headers_mut());
        let (method, url) = describe(Some(request.method()), Some(request.url()));
        client
            .execute(request)
            .await
            .map_err(|e| map_error(e, method, url))
    }

    /// Sends a request and fails on a 4xx/5xx status, keeping the start of the body.
    ///
    /// # Errors
    /// As [`HttpClient::send`], and [`HttpError::Status`].
    pub async fn send_ok(&self, request: RequestBuilder) -> Result<Response, HttpError> {
        let (client, request) = request.build_split();
        let method = request.as_ref().map(|r| r.method().clone()).ok();
        let response = self
            .send(RequestBuilder::from_parts(client, request?))
            .await;
        let mut response = response?;
        let status = response.status();
        if !(status.is_client_error() || status.is_server_error()) {
            return Ok(response);
        }
        let (method, url) = describe(method.as_ref(), Some(response.url()));
        // The start of the body only (a character is 4 bytes at most): an error page
        // may be large, or never end.
        let (body, more) = read_capped(&mut response, BODY_EXCERPT * 4)
            .await
            .unwrap_or_default();
        let body = String::from_utf8_lossy(&body);
        let mut excerpt: String = body.chars().take(BODY_EXCERPT).collect();
        if more || excerpt.len() < body.len() {
            excerpt.push('…');
        }
        Err(HttpError::Status {
            method,
            url,
            status,
            body: excerpt,
        })
    }

    /// Sends a request, fails on an error status, decodes the JSON body.
    ///
    /// # Errors
    /// As [`HttpClient::send_ok`], and [`HttpError::Decode`].
    pub async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T, HttpError> {
        let (client, request) = request.build_split();
        let method = request.as_ref().map(|r| r.method().clone()).ok();
        let response = self
            .send_ok(RequestBuilder::from_parts(client, request?))
            .await?;
        let mut response = response;
        let (method, url) = describe(method.as_ref(), Some(response.url()));
        let limit = self.max_body_size;
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(HttpError::BodyTooLarge { method, url, limit });
        }
        let (bytes, more) = read_capped(&mut response, limit)
            .await
            .map_err(|e| map_error(e, method.clone(), url.clone()))?;
        if more {
            return Err(HttpError::BodyTooLarge { method, url, limit });
        }
        serde_json::from_slice(&bytes).map_err(|e| HttpError::Decode {
            method,
            url,
            reason: e.to_string(),
        })
    }

    /// GETs `url` and decodes its JSON body.
    ///
    /// # Errors
    /// As [`HttpClient::json`].
    pub async fn get_json<T: DeserializeOwned>(&self, url: impl IntoUrl) -> Result<T, HttpError> {
        self.json(self.get(url)).await
    }

    /// POSTs `body` as JSON to `url` and decodes the JSON answer.
    ///
    /// # Errors
    /// As [`HttpClient::json`].
    pub async fn post_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: impl IntoUrl,
        body: &B,
    ) -> Result<T, HttpError> {
        self.json(self.post(url).json(body)).await
    }

    /// PUTs `body` as JSON to `url` and decodes the JSON answer.
    ///
    /// # Errors
    /// As [`HttpClient::json`].
    pub async fn put_json<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        url: impl IntoUrl,
        body: &B,
    ) -> Result<T, HttpError> {
        self.json(self.put(url).json(body)).await
    }

    /// The reqwest client underneath.
    pub fn reqwest(&self) -> &reqwest::Client {
        &self.inner
    }
}

impl fmt::Debug for HttpClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpClient")
            .field("forward_request_id", &self.forward_request_id)
            .field("forward_trace_context", &self.forward_trace_context)
            .finish_non_exhaustive()
    }
}

impl From<reqwest::Error> for HttpError {
    fn from(error: reqwest::Error) -> Self {
        let (method, url) = describe(None, error.url());
        map_error(error, method, url)
    }
}

/// reqwest's resolver hook, answered by our [`Resolver`].
/// reqwest's name resolution through the [`Resolver`]. It runs inside reqwest's
/// `connect_timeout`; the lookup gets `budget` of it, so a name server too slow to
/// answer in time gives [`DnsError::Timeout`] naming the host, not an anonymous
/// connection timeout.
struct ResolveWith {
    resolver: Resolver,
    budget: Duration,
}

impl Resolve for ResolveWith {
    fn resolve(&self, name: Name) -> Resolving {
        let resolver = self.resolver.clone();
        let budget = self.budget;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs = tokio::time::timeout(budget, resolver.lookup_socket_addrs(&host, 0))
                .await
                .map_err(|_| DnsError::Timeout {
                    host: host.clone(),
                    after: budget,
                })??;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Reads `response`'s body up to `cap` bytes: the bytes, and whether more was left
/// unread (the rest is dropped with the response, not read).
async fn read_capped(
    response: &mut Response,
    cap: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// The share of `connect_timeout` name resolution may take: nine tenths, so that the
/// lookup's own timeout strikes first and says what it was.
fn dns_budget(connect_timeout: Duration) -> Duration {
    connect_timeout.mul_f64(0.9)
}

/// `(method, url)` for messages, the URL masked as [`SecretUrl`] does (its password and
/// secret-looking query values, `?token=…`, shown as `***`).
fn describe(method: Option<&Method>, url: Option<&reqwest::Url>) -> (String, String) {
    let method = method.map_or_else(|| "HTTP".to_owned(), ToString::to_string);
    let url = url.map_or_else(
        || "<no url>".to_owned(),
        |url| SecretUrl::from(url.clone()).to_string(),
    );
    (method, url)
}

fn map_error(error: reqwest::Error, method: String, url: String) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(&error);
    while let Some(cause) = source {
        if let Some(dns) = cause.downcast_ref::<DnsError>() {
            return HttpError::Dns {
                method,
                url,
                source: dns.clone(),
            };
        }
        source = cause.source();
    }
    if error.is_timeout() {
        HttpError::Timeout { method, url }
    } else if let Some(tls) = tls_failure(&error) {
        HttpError::Tls {
            method,
            url,
            reason: tls.to_string(),
        }
    } else if error.is_connect() {
        HttpError::Connect {
            method,
            url,
            reason: error_chain(&error),
        }
    } else if error.is_decode() {
        HttpError::Decode {
            method,
            url,
            reason: error_chain(&error),
        }
    } else {
        HttpError::Request {
            method,
            url,
            reason: error_chain(&error),
        }
    }
}

/// The TLS error among an error's causes. The TLS stream reports it inside an
/// `io::Error` (itself inside another), whose `source` skips what it wraps: each
/// `io::Error`'s inner error is looked into.
fn tls_failure(error: &reqwest::Error) -> Option<&rustls::Error> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        source = match cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            Some(inner) => Some(inner as &(dyn std::error::Error + 'static)),
            None => cause.source(),
        };
    }
    None
}

/// An error and its causes, `: `-separated, without the URL reqwest repeats.
fn error_chain(error: &reqwest::Error) -> String {
    let mut text = error.without_url_ref().to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The current request id goes in first ([`HttpClient::request`]); an `x-request-id`
/// the caller added to the builder after it is the one sent.
fn keep_the_callers_request_id(headers: &mut reqwest::header::HeaderMap) {
    let mut values = headers.get_all(REQUEST_ID_HEADER).iter();
    if values.next().is_some() && values.next().is_some() {
        let callers: Vec<_> = headers
            .get_all(REQUEST_ID_HEADER)
            .iter()
            .skip(1)
            .cloned()
            .collect();
        headers.remove(REQUEST_ID_HEADER);
        for value in callers {
            headers.append(REQUEST_ID_HEADER, value);
        }
    }
}

/// The current trace context goes in first ([`HttpClient::request`]); a `traceparent`
/// the caller added after it is the one sent, and our `tracestate` (the first value,
/// when the current context has one) goes with ours.
fn keep_the_callers_trace_context(headers: &mut reqwest::header::HeaderMap) {
    if headers.get_all(TRACEPARENT).iter().nth(1).is_none() {
        return;
    }
    let ours = trace::peek();
    let keep = |name: &str, headers: &reqwest::header::HeaderMap, skip: usize| {
        headers
            .get_all(name)
            .iter()
            .skip(skip)
            .cloned()
            .collect::<Vec<_>>()
    };
    let parents = keep(TRACEPARENT, headers, 1);
    let our_state = ours.as_ref().and_then(|context| context.tracestate());
    let first_state_is_ours =
        our_state.is_some() && headers.get(TRACESTATE).and_then(|v| v.to_str().ok()) == our_state;
    let states = keep(TRACESTATE, headers, usize::from(first_state_is_ours));
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    for value in parents {
        headers.append(TRACEPARENT, value);
    }
    for value in states {
        headers.append(TRACESTATE, value);
    }
}

trait WithoutUrlRef {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrlRef for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let text = self.to_string();
        match self.url() {
            Some(url) => text.replace(&format!(" for url ({url})"), ""),
            None => text,
        }
    }
}

/// The system's root certificates, loaded once per process off the loop: the first
/// worker to ask loads them, the others wait for that load, and a load that failed is
/// not kept (the next worker to start tries again).
static NATIVE_ROOTS: tokio::sync::OnceCell<Arc<Vec<CertificateDer<'static>>>> =
    tokio::sync::OnceCell::const_new();

async fn native_roots() -> Result<Arc<Vec<CertificateDer<'static>>>, HttpError> {
    NATIVE_ROOTS
        .get_or_try_init(|| async {
            let certs = nucleon_runtime::offload::blocking(|| {
                let result = rustls_native_certs::load_native_certs();
                for error in &result.errors {
                    tracing::warn!(target: "nucleon::dns", %error, "could not load a system root certificate");
                }
                result.certs
            })
            .await
            .map_err(|error| HttpError::Build {
                reason: format!(
                    "could not load the system root certificates ({error}); without them no \
                     HTTPS server would be trusted (http_client.native_roots = false to use \
                     http_client.ca_file alone)"
                ),
            })?;
            Ok(Arc::new(certs))
        })
        .await
        .map(Arc::clone)
}

async fn tls_config(config: &HttpClientConfig) -> Result<rustls::ClientConfig, HttpError> {
    let mut roots = RootCertStore::empty();
    if config.native_roots {
        let (added, ignored) =
            roots.add_parsable_certificates(native_roots().await?.iter().cloned());
        tracing::debug!(target: "nucleon::dns", added, ignored, "system root certificates");
    }
    if let Some(path) = &config.ca_file {
        let build = |reason: String| HttpError::Build {
            reason: format!("http_client.ca_file `{}`: {reason}", path.display()),
        };
        let pem = tokio::fs::read(path)
            .await
            .map_err(|e| build(format!("cannot read it: {e}")))?;
        let certs = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| build(format!("not PEM certificates: {e}")))?;
        if certs.is_empty() {
            return Err(build("it holds no certificate".to_owned()));
        }
        let (_, ignored) = roots.add_parsable_certificates(certs);
        if ignored > 0 {
            return Err(build(format!("{ignored} certificate(s) could not be used")));
        }
    }
    if roots.is_empty() {
        tracing::warn!(
            target: "nucleon::dns",
            "the outbound HTTP client trusts no root certificate: HTTPS calls will fail \
             (install ca-certificates, or set http_client.ca_file)"
        );
    }
    let mut tls = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Build {
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tls)
}

/// The TLS crypto provider: the process's default when the application installed one
/// (aws-lc-rs's, say, for post-quantum key exchange), else ring's, which the rest of
/// the framework's TLS uses too (sqlx, lapin).
fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    if let Some(provider) = rustls::crypto::CryptoProvider::get_default() {
        return Arc::clone(provider);
    }
    // rustls 0.23.48 deprecates ring's provider as it lacks post-quantum key exchange;
    // aws-lc-rs would add a C library to every app's build beside ring, and an app can
    // install it as the default itself (taken above).
    #[allow(deprecated, reason = "ring stays the framework's provider; see above")]
    let ring = rustls::crypto::ring::default_provider();
    Arc::new(ring)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn described_urls_hide_passwords_and_tokens() {
        let url: reqwest::Url = "https://u:hunter2@api.example/v1?token=abc123&page=2"
            .parse()
            .unwrap();
        let (method, shown) = describe(Some(&Method::GET), Some(&url));
        assert_eq!(method, "GET");
        assert!(
            !shown.contains("hunter2") && !shown.contains("abc123"),
            "{shown}"
        );
        assert!(shown.contains("page=2"), "{shown}");
    }
}
