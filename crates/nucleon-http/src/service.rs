//! The per-worker request pipeline: request id, readiness, drain answers, limits,
//! routing, panics, access log.

use std::cell::Cell;
use std::hash::{BuildHasher, Hasher};
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;
use http::header::{CONNECTION, HeaderName, HeaderValue};
use http::{StatusCode, Version};
use nucleon_runtime::Drain;
use tracing::Instrument;

use crate::error::InternalCause;
use crate::extract::RequestContext;
use crate::response::{IntoResponse, Json, Response};
use crate::router::{Compiled, Endpoint};
use crate::server::HttpConfig;
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
        let compiled = Rc::new(router.compile(config.request_timeout));
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

    fn request_id(&self, request: &Request) -> HeaderValue {
        if let Some(given) = request.headers().get(&X_REQUEST_ID) {
            let ok = given.len() <= 128
                && !given.is_empty()
                && given.as_bytes().iter().all(|b| b.is_ascii_graphic());
            if ok {
                return given.clone();
            }
        }
        let n = self.inner.id_counter.get() + 1;
        self.inner.id_counter.set(n);
        let text = format!("{:08x}-{n:x}", self.inner.id_prefix);
        HeaderValue::from_str(&text).unwrap_or(HeaderValue::from_static("unknown"))
    }

    /// Serves one request from `remote`.
    pub async fn call(&self, mut request: Request, remote: SocketAddr) -> Response {
        let start = Instant::now();
        let pipeline = &self.inner;
        let config = &pipeline.config;
        let request_id = self.request_id(&request);
        let method = request.method().clone();
        let version = request.version();
        let path = request.uri().path().to_owned();
        let span = tracing::info_span!(
            target: "nucleon::http",
            "request",
            id = %request_id.to_str().unwrap_or_default(),
            method = %method,
            path = %path,
        );

        let mut response = if config
            .readiness_path
            .as_deref()
            .is_some_and(|ready| ready == path)
        {
            if self.draining() {
                HttpError::unavailable(
                    "draining: this instance is shutting down",
                    config.retry_after,
                )
                .into_response()
            } else {
                Json(serde_json::json!({"status": "ready"})).into_response()
            }
        } else if pipeline.closing.get() {
            HttpError::unavailable(
                "draining: this instance is shutting down; retry on another connection",
                config.retry_after,
            )
            .into_response()
        } else if header_size(&request) > config.max_header_size {
            HttpError::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "HEADERS_TOO_LARGE",
                format!(
                    "the request's headers are larger than the limit of {} bytes (http.max_header_size)",
                    config.max_header_size
                ),
            )
            .into_response()
        } else {
            let _guard = pipeline.drain.as_ref().map(Drain::guard);
            request.extensions_mut().insert(RequestContext {
                request_id: request_id.clone(),
                remote,
                route: None,
                params: Vec::new(),
                state: pipeline.compiled.state().cloned(),
                body_limit: config.body_limit,
            });
            let future = match &pipeline.app {
                Some(app) => app.call(request),
                None => Rc::clone(&pipeline.compiled).dispatch(request),
            };
            // Outbound calls made by the handler forward this id (see request_id).
            let scoped =
                nucleon_runtime::request_id::scope(request_id.to_str().unwrap_or_default(), future);
            let outcome = std::panic::AssertUnwindSafe(scoped)
                .catch_unwind()
                .instrument(span.clone())
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
                    HttpError::internal(format_args!("handler panicked: {message}")).into_response()
                }
            }
        };

        if let Some(cause) = response.extensions_mut().remove::<InternalCause>() {
            span.in_scope(|| {
                tracing::error!(
                    target: "nucleon::http",
                    request_id = %request_id.to_str().unwrap_or_default(),
                    "{method} {path} failed: {}", cause.0
                );
            });
        }
        let close = (pipeline.closing.get()
            || response.status() == StatusCode::SERVICE_UNAVAILABLE && self.draining())
            && version <= Version::HTTP_11;
        let headers = response.headers_mut();
        headers.insert(X_REQUEST_ID.clone(), request_id.clone());
        if close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        if config.access_log {
            let bytes = http_body::Body::size_hint(response.body()).exact();
            tracing::info!(
                target: "nucleon::access",
                remote = %remote,
                method = %method,
                path = %path,
                status = response.status().as_u16(),
                bytes = bytes.unwrap_or(0),
                duration_us = start.elapsed().as_micros() as u64,
                request_id = %request_id.to_str().unwrap_or_default(),
            );
        }
        response
    }
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
