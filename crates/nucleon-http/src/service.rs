//! The per-worker request pipeline: request id, readiness, drain answers, limits,
//! routing, panics, access log.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use http::header::{ALLOW, CONNECTION, HeaderName, HeaderValue};
use http::{Method, StatusCode, Uri, Version};
use nucleon_runtime::{Drain, InFlightGuard};
use tracing::Instrument;

use crate::error::InternalCause;
use crate::extract::{Params, RequestContext, limit_body};
use crate::response::{IntoResponse, Json, Response};
use crate::router::{Compiled, Dispatch, Endpoint, Limits};
use crate::server::{HttpConfig, InService};
use crate::{HttpError, Request, Router};

/// The `x-request-id` header.
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The label of a connection task between requests.
pub(crate) const CONNECTION_LABEL: &str = "http connection";

/// An application ready to serve on the current thread: the router compiled for this
/// worker, with the server's pipeline around it (request id, readiness, drain answers,
/// header limit, panics as 500s, access log).
///
/// The server makes one per worker; [`HttpService::call`] also serves requests
/// in-process, without a socket (the umbrella crate's `TestClient` does).
#[derive(Clone)]
pub struct HttpService {
    inner: Rc<Pipeline>,
}

impl std::fmt::Debug for HttpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpService").finish_non_exhaustive()
    }
}

struct Pipeline {
    compiled: Rc<Compiled>,
    app: Option<Endpoint>,
    config: Arc<HttpConfig>,
    drain: Option<Drain>,
    closing: Cell<bool>,
    id_prefix: u32,
    id_counter: Cell<u64>,
}

impl HttpService {
    /// Compiles `router` for this thread with `config`'s limits; `drain` (from the
    /// runtime) turns readiness to 503 and closes connections when it starts.
    pub fn new(router: &Router, config: &HttpConfig, drain: Option<Drain>) -> Self {
        let compiled = Rc::new(router.compile(config.request_timeout, config.retry_after));
        let app = compiled.app_endpoint();
        let id_prefix = std::hash::RandomState::new().build_hasher().finish() as u32;
        Self {
            inner: Rc::new(Pipeline {
                compiled,
                app,
                config: Arc::new(config.clone()),
                drain,
                closing: Cell::new(false),
                id_prefix,
                id_counter: Cell::new(0),
            }),
        }
    }

    /// After the lame-duck delay: every new request gets 503 with `Retry-After`.
    pub(crate) fn set_closing(&self) {
        self.inner.closing.set(true);
    }

    fn draining(&self) -> bool {
        self.inner.drain.as_ref().is_some_and(Drain::is_draining)
    }

    /// The request's id: the client's `x-request-id` when it is a sensible one (and
    /// its header value, to send back as it came), or a new one. One allocation for a
    /// new id (the `Arc<str>`, shared by the request context, the handler's
    /// `request_id::scope` and the response header).
    fn request_id(&self, request: &Request) -> (Arc<str>, Option<HeaderValue>) {
        if let Some(given) = request.headers().get(&X_REQUEST_ID) {
            let ok = given.len() <= 128
                && !given.is_empty()
                && given.as_bytes().iter().all(|b| b.is_ascii_graphic());
            if let (true, Ok(text)) = (ok, given.to_str()) {
                return (Arc::from(text), Some(given.clone()));
            }
        }
        (self.new_request_id(), None)
    }

    /// A new request id, for a request hyper rejected before it reached the pipeline.
    #[inline]
    pub(crate) fn new_request_id(&self) -> Arc<str> {
        let n = self.inner.id_counter.get() + 1;
        self.inner.id_counter.set(n);
        new_id(self.inner.id_prefix, n)
    }

    /// The access log line of a request answered by the connection itself (408, or a
    /// head hyper could not parse): no method or path to tell.
    pub(crate) fn log_rejected(
        &self,
        remote: SocketAddr,
        status: StatusCode,
        bytes: usize,
        request_id: &str,
    ) {
        if self.inner.config.access_log {
            tracing::info!(
                target: "nucleon::access",
                remote = %remote,
                status = status.as_u16(),
                bytes = bytes as u64,
                request_id = %request_id,
            );
        }
    }

    /// Serves one request from `remote`.
    ///
    /// The request's tracing span (`request`, target `nucleon::http`, with the id,
    /// method and path) is at DEBUG, as tower-http's `TraceLayer` makes its own: at
    /// the default `info` level it costs nothing (`tracing_subscriber`'s fmt layer
    /// allocates and formats every enabled span's fields: 3.6 % of the server's CPU
    /// at INFO). The access log line, at INFO, carries the request id;
    /// `nucleon_runtime::request_id::current()` gives it to handlers.
    pub async fn call(&self, request: Request, remote: SocketAddr) -> Response {
        match self.start(request, remote, None) {
            Outcome::Ready(response) => response,
            Outcome::Pending(future) => future.await,
        }
    }

    /// The synchronous part of [`HttpService::call`]: checks, routing; then either the
    /// answer, or one boxed future holding the handler's future (its arguments not yet
    /// extracted) inside the pipeline's ([`Finish::run`]), not the request (264 bytes)
    /// a single `async fn` would carry along. `conn` is dropped once the response is
    /// ready.
    pub(crate) fn start(
        &self,
        request: Request,
        remote: SocketAddr,
        conn: Option<InService>,
    ) -> Outcome {
        let pipeline = &self.inner;
        let config = &pipeline.config;
        let start = config.access_log.then(Instant::now);
        let (request_id, given_id) = self.request_id(&request);
        let method = request.method().clone();
        let version = request.version();
        // Cheap: the path and query are shared bytes, not copied.
        let uri = request.uri().clone();
        let path = uri.path();
        let span = tracing::debug_span!(
            target: "nucleon::http",
            "request",
            id = %request_id,
            method = %method,
            path = %path,
        );
        let mut guard = None;
        let outcome = if config
            .readiness_path
            .as_deref()
            .is_some_and(|ready| ready == path)
        {
            Dispatch::Ready(if method != Method::GET && method != Method::HEAD {
                HttpError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "METHOD_NOT_ALLOWED",
                    format!("{method} is not allowed on {path}; allowed: GET, HEAD"),
                )
                .with_header(ALLOW, HeaderValue::from_static("GET, HEAD"))
                .into_response()
            } else if self.draining() {
                HttpError::unavailable(
                    "draining: this instance is shutting down",
                    config.retry_after,
                )
                .into_response()
            } else {
                Json(serde_json::json!({"status": "ready"})).into_response()
            })
        } else if pipeline.closing.get() {
            Dispatch::Ready(
                HttpError::unavailable(
                    "draining: this instance is shutting down; retry on another connection",
                    config.retry_after,
                )
                .into_response(),
            )
        } else if header_size(&request) > config.max_header_size {
            Dispatch::Ready(
                HttpError::new(
                    StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                    "HEADERS_TOO_LARGE",
                    format!(
                        "the request's headers are larger than the limit of {} bytes (http.max_header_size)",
                        config.max_header_size
                    ),
                )
                .into_response(),
            )
        } else if http_body::Body::size_hint(request.body()).lower() > config.body_limit as u64 {
            // A declared length past the limit: 413 whether or not the route reads it.
            Dispatch::Ready(HttpError::payload_too_large(config.body_limit).into_response())
        } else {
            guard = pipeline.drain.as_ref().map(Drain::guard);
            // Beside the request, not in its extensions (an extensions map is three
            // allocations): handlers' extractors get it by reference; layers and
            // mounted services find it in the extensions, put there for them only.
            let ctx = RequestContext {
                request_id: Arc::clone(&request_id),
                remote,
                route: None,
                params: Params::None,
                state: pipeline.compiled.state().cloned(),
                body_limit: config.body_limit,
            };
            // The one place request bodies are capped: whatever reads it (an
            // extractor, a layer, a mounted service) reads at most the body limit.
            match limit_body(request, config.body_limit) {
                Err(error) => Dispatch::Ready(error.into_response()),
                Ok(mut request) => match &pipeline.app {
                    Some(app) => {
                        request.extensions_mut().insert(ctx);
                        Dispatch::Future {
                            future: app.call(request),
                            limits: Limits::NONE,
                        }
                    }
                    None => pipeline.compiled.dispatch(request, ctx),
                },
            }
        };
        let started = Started {
            service: self.clone(),
            span,
            request_id,
            given_id,
            method,
            version,
            uri,
            start,
            remote,
            _guard: guard,
            _conn: conn,
        };
        match outcome {
            Dispatch::Ready(response) => Outcome::Ready(started.respond(response)),
            Dispatch::Handler {
                handler,
                request,
                ctx,
                limits,
            } => Outcome::Pending(handler.call_finished(request, ctx, Finish { started, limits })),
            Dispatch::Future { future, limits } => {
                Outcome::Pending(Box::pin(Finish { started, limits }.run(future)))
            }
        }
    }
}

/// What [`HttpService::start`] makes of a request.
pub(crate) enum Outcome {
    /// The response, finished (request id header, access log).
    Ready(Response),
    /// The handler's future inside the pipeline's, in one box.
    Pending(LocalBoxFuture<'static, Response>),
}

/// The pipeline's work around a handler's future: its time limit, HEAD, the request id
/// in scope, a panic made a 500, then the response finished.
pub(crate) struct Finish {
    started: Started,
    limits: Limits,
}

/// A request past [`HttpService::start`]: its handler's future (or its answer), and
/// what the response and the access log need.
pub(crate) struct Started {
    service: HttpService,
    span: tracing::Span,
    request_id: Arc<str>,
    given_id: Option<HeaderValue>,
    method: Method,
    version: Version,
    uri: Uri,
    start: Option<Instant>,
    remote: SocketAddr,
    /// Held until the response is ready: the drain waits for it.
    _guard: Option<InFlightGuard>,
    /// The connection's count of requests in service, until the response is ready.
    _conn: Option<InService>,
}

impl Finish {
    /// Runs the handler's future (its request id in scope, a panic made a 500) and
    /// finishes the response: the request id header, `Connection: close` while
    /// draining, the access log line.
    pub(crate) async fn run<F: Future<Output = Response>>(self, future: F) -> Response {
        let Finish { started, limits } = self;
        let response = {
            {
                let retry_after = started.service.inner.compiled.retry_after();
                // Outbound calls made by the handler forward this id.
                let scoped = nucleon_runtime::request_id::scope(
                    Arc::clone(&started.request_id),
                    limits.run(future, retry_after),
                );
                let outcome = std::panic::AssertUnwindSafe(scoped)
                    .catch_unwind()
                    .instrument(started.span.clone())
                    .await;
                nucleon_runtime::task::set_label(CONNECTION_LABEL);
                match outcome {
                    Ok(response) => response,
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<&str>()
                            .map(|s| (*s).to_owned())
                            .or_else(|| panic.downcast_ref::<String>().cloned())
                            .unwrap_or_else(|| "<non-string panic payload>".into());
                        HttpError::internal(format_args!("handler panicked: {message}"))
                            .into_response()
                    }
                }
            }
        };
        started.respond(response)
    }
}

impl Started {
    fn respond(self, mut response: Response) -> Response {
        let Started {
            service,
            span,
            request_id,
            given_id,
            method,
            version,
            uri,
            start,
            remote,
            ..
        } = self;
        let path = uri.path();
        if let Some(cause) = response.extensions_mut().remove::<InternalCause>() {
            span.in_scope(|| {
                tracing::error!(
                    target: "nucleon::http",
                    request_id = %request_id,
                    "{method} {path} failed: {}", cause.0
                );
            });
        }
        let close = (service.inner.closing.get()
            || response.status() == StatusCode::SERVICE_UNAVAILABLE && service.draining())
            && version <= Version::HTTP_11;
        let headers = response.headers_mut();
        let id_header = given_id.unwrap_or_else(|| id_header(&request_id));
        headers.insert(X_REQUEST_ID.clone(), id_header);
        if close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if let Some(start) = start {
            // The body's exact size when it is known before it is sent (a buffer, a
            // known length); a streamed body's is not known yet, and the field is
            // left out rather than logged as 0.
            let bytes = http_body::Body::size_hint(response.body()).exact();
            tracing::info!(
                target: "nucleon::access",
                remote = %remote,
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                bytes,
                duration_us = start.elapsed().as_micros() as u64,
                request_id = %request_id,
            );
        }
        response
    }
}

/// A new request id, `{prefix:08x}-{n:x}`, written without `format!`.
fn new_id(prefix: u32, n: u64) -> Arc<str> {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = [0_u8; 8 + 1 + 16];
    for (i, slot) in buf[..8].iter_mut().enumerate() {
        *slot = HEX[(prefix >> (28 - 4 * i) & 0xf) as usize];
    }
    buf[8] = b'-';
    let digits = (64 - n.leading_zeros() as usize).div_ceil(4).max(1);
    for i in 0..digits {
        buf[9 + i] = HEX[(n >> (4 * (digits - 1 - i)) & 0xf) as usize];
    }
    let text = std::str::from_utf8(&buf[..9 + digits]).unwrap_or("unknown");
    Arc::from(text)
}

/// The id's bytes, shared with the `Arc<str>`.
struct IdBytes(Arc<str>);

impl AsRef<[u8]> for IdBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

/// The `x-request-id` header for an id the server made: its bytes, not a copy.
fn id_header(id: &Arc<str>) -> HeaderValue {
    HeaderValue::from_maybe_shared(Bytes::from_owner(IdBytes(Arc::clone(id))))
        .unwrap_or(HeaderValue::from_static("unknown"))
}

fn header_size(request: &Request) -> usize {
    request.uri().path().len()
        + request.uri().query().map_or(0, str::len)
        + request
            .headers()
            .iter()
            .map(|(name, value)| name.as_str().len() + value.len() + 4)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_prefix_dash_counter_in_hex() {
        assert_eq!(&*new_id(0xdead_beef, 1), "deadbeef-1");
        assert_eq!(&*new_id(0x0000_00ff, 0x1f), "000000ff-1f");
        assert_eq!(&*new_id(1, u64::MAX), "00000001-ffffffffffffffff");
        assert_eq!(&*new_id(1, 0), "00000001-0");
        let header = id_header(&new_id(7, 42));
        assert_eq!(header.to_str().unwrap(), "00000007-2a");
    }
}
