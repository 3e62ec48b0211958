//! The per-worker request pipeline: request id, readiness, drain answers, limits,
//! routing; then the handler's future and the response are finished in `finish`
//! (panics, `Connection: close`, metrics, access log).

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::future::LocalBoxFuture;
use http::header::{ALLOW, HeaderName, HeaderValue};
use http::{Method, StatusCode};
use nucleon_runtime::request_id::Id;
use nucleon_runtime::task::StaticLabel;
use nucleon_runtime::trace::TaskTrace;
use nucleon_runtime::{Drain, Health};

use crate::extract::{Params, RequestContext, limit_body};
use crate::finish::{Finish, Finisher, Started};
use crate::limits::Limits;
use crate::metrics::{HttpMetrics, Rejection};
use crate::request_ids::{IdSource, X_REQUEST_ID};
use crate::request_log::AccessStart;
use crate::response::{IntoResponse, Json, Response};
use crate::router::{Compiled, Dispatch, Endpoint};
use crate::server::HttpConfig;
use crate::server::conn::{CONNECTION_LABEL, InService};
use crate::{HttpError, Request, Router};

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
    /// What finishing its responses needs (the drain, request ids, metrics…), held by
    /// every request until its response is ready.
    finisher: Rc<Finisher>,
    probes: Probes,
    /// The probes' routes as metrics name them (`GET /readyz`), interned.
    probe_labels: [Option<&'static str>; 2],
}

impl HttpService {
    /// Compiles `router` for this thread with `config`'s limits; `drain` (from the
    /// runtime) turns readiness to 503 and closes connections when it starts.
    pub fn new(router: &Router, config: &HttpConfig, drain: Option<Drain>) -> Self {
        let compiled = Rc::new(router.compile(config.request_timeout, config.retry_after));
        let app = compiled.app_endpoint();
        Self {
            inner: Rc::new(Pipeline {
                compiled,
                app,
                config: Arc::new(config.clone()),
                finisher: Rc::new(Finisher {
                    drain,
                    closing: Cell::new(false),
                    ids: IdSource::new(),
                    connection_label: StaticLabel::intern(CONNECTION_LABEL),
                    metrics: HttpMetrics::for_this_worker(),
                    retry_after: config.retry_after,
                }),
                probes: Probes::new(config),
                probe_labels: [&config.readiness_path, &config.liveness_path].map(|path| {
                    path.as_deref()
                        .map(|path| StaticLabel::intern(&format!("GET {path}")).as_str())
                }),
            }),
        }
    }

    /// After the lame-duck delay (the listener closed): the requests still arriving on
    /// connections already accepted are served, each answer with `Connection: close`.
    pub(crate) fn set_closing(&self) {
        self.inner.finisher.closing.set(true);
    }

    /// `http.drain_idle_grace`: how long a connection idle in the drain waits for one
    /// more request.
    pub(crate) fn drain_idle_grace(&self) -> Duration {
        self.inner.config.drain_idle_grace
    }

    fn draining(&self) -> bool {
        self.inner.finisher.draining()
    }

    /// The request's id: the client's `x-request-id` when it is a sensible one (its
    /// bytes, shared with the request's header), or a new one (two numbers, written out
    /// only where it is shown).
    fn request_id(&self, request: &Request) -> Id {
        find_header(request.headers(), &X_REQUEST_ID)
            .and_then(given_request_id)
            .unwrap_or_else(|| self.new_request_id())
    }

    /// A new request id (also for a request hyper rejected before the pipeline).
    #[inline]
    pub(crate) fn new_request_id(&self) -> Id {
        self.inner.finisher.ids.next()
    }

    /// The access log line of a request answered by the connection itself (408, or a
    /// head hyper could not parse): no method or path to tell.
    pub(crate) fn log_rejected(
        &self,
        remote: SocketAddr,
        status: StatusCode,
        bytes: usize,
        request_id: &Id,
    ) {
        if let Some(metrics) = &self.inner.finisher.metrics
            && let Some(reason) = Rejection::of(status, false)
        {
            metrics.rejected(reason);
        }
        if self.inner.config.access_log {
            let remote = remote.to_string();
            request_id.with_str(|id| {
                tracing::info!(
                    target: "nucleon::access",
                    remote = remote.as_str(),
                    status = status.as_u16(),
                    bytes = bytes as u64,
                    request_id = id,
                );
            });
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

    /// What the pipeline answers itself, before routing: the readiness route, headers
    /// past the limit, a declared body past the limit.
    /// The checks only; the answers are made out of line (the checks run for every
    /// request, and the code of answers that are seldom made would spread the hot
    /// path over more of the instruction cache).
    #[inline]
    fn early_answer(&self, request: &Request) -> Option<Response> {
        let config = &*self.inner.config;
        if header_size(request) > config.max_header_size {
            return Some(headers_too_large(config.max_header_size));
        }
        if http_body::Body::size_hint(request.body()).lower() > config.body_limit as u64 {
            // A declared length past the limit: 413 whether or not the route reads it.
            return Some(payload_too_large(config.body_limit));
        }
        None
    }

    /// The probe's route label, as metrics name it.
    #[cold]
    fn probe_label(&self, path: &str) -> Option<&'static str> {
        let [readiness, liveness] = self.inner.probe_labels;
        if self.inner.config.readiness_path.as_deref() == Some(path) {
            readiness
        } else {
            liveness
        }
    }

    /// The probes' answer when `request` is for one: the liveness route's at once, the
    /// readiness route's as a future (it asks the adapters).
    #[cold]
    #[inline(never)]
    fn probe(
        &self,
        request: &Request,
    ) -> Option<Result<Response, LocalBoxFuture<'static, Response>>> {
        let config = &*self.inner.config;
        let path = request.uri().path();
        let readiness = config.readiness_path.as_deref() == Some(path);
        if !readiness && config.liveness_path.as_deref() != Some(path) {
            return None;
        }
        let method = request.method();
        if method != Method::GET && method != Method::HEAD {
            return Some(Ok(HttpError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "METHOD_NOT_ALLOWED",
                format!("{method} is not allowed on {path}; allowed: GET, HEAD"),
            )
            .with_header(ALLOW, HeaderValue::from_static("GET, HEAD"))
            .into_response()));
        }
        if !readiness {
            return Some(Ok(
                Json(serde_json::json!({"status": "alive"})).into_response()
            ));
        }
        if self.draining() {
            return Some(Ok(readiness_answer(
                "draining",
                "draining: this instance is shutting down".into(),
                Vec::new(),
                config.retry_after,
            )));
        }
        let retry_after = config.retry_after;
        Some(Err(Box::pin(async move {
            let report = nucleon_runtime::health::report().await;
            let sick: Vec<String> = report
                .iter()
                .filter(|entry| !entry.health.is_serving())
                .map(|entry| {
                    let Health::Unhealthy(reason) = &entry.health else {
                        return entry.adapter.clone();
                    };
                    format!(
                        "adapter `{}`{}: {reason}",
                        entry.adapter,
                        on_worker(entry.worker)
                    )
                })
                .collect();
            if sick.is_empty() {
                readiness_answer("ready", String::new(), report, retry_after)
            } else {
                readiness_answer("unhealthy", sick.join("; "), report, retry_after)
            }
        })))
    }

    /// The synchronous part of [`HttpService::call`]: checks, routing; then either the
    /// answer, or one boxed future holding the handler's future (its arguments not yet
    /// extracted) inside the pipeline's ([`Finish::run`]). The request moves once,
    /// into what serves it. `conn` is dropped once the response is ready.
    pub(crate) fn start(
        &self,
        mut request: Request,
        remote: SocketAddr,
        conn: Option<InService>,
    ) -> Outcome {
        let pipeline = &*self.inner;
        let config = &*pipeline.config;
        let request_id = self.request_id(&request);
        let mut trace = crate::trace_context::incoming(request.headers());
        let span = if tracing::level_enabled!(tracing::Level::DEBUG) {
            request_span(&request_id, &mut trace, &request)
        } else {
            tracing::Span::none()
        };
        let access = config
            .access_log
            .then(|| AccessStart::new(&request, remote, conn.as_ref(), trace.get()));
        if let Some(metrics) = &pipeline.finisher.metrics {
            metrics.started(http_body::Body::size_hint(request.body()).exact());
        }
        // One clock read for the metrics and the access log both.
        let start = (access.is_some() || pipeline.finisher.metrics.is_some()).then(Instant::now);
        let mut started = Started {
            finisher: Rc::clone(&pipeline.finisher),
            span,
            request_id,
            trace,
            method: request.method().clone(),
            version: request.version(),
            access,
            start,
            route: None,
            _guard: None,
            _conn: conn,
        };
        if self.inner.probes.contains(request.uri().path())
            && let Some(answer) = self.probe(&request)
        {
            started.route = self.probe_label(request.uri().path());
            return match answer {
                Ok(mut response) => {
                    started.respond(&mut response);
                    Outcome::Ready(response)
                }
                Err(future) => {
                    Outcome::Pending(Box::pin(Finish::new(started, Limits::NONE).run(future)))
                }
            };
        }
        if let Some(mut response) = self.early_answer(&request) {
            started.respond(&mut response);
            return Outcome::Ready(response);
        }
        started._guard = pipeline.finisher.drain.as_ref().map(Drain::guard);
        // The one place request bodies are capped: whatever reads it (an extractor, a
        // layer, a mounted service) reads at most the body limit.
        if let Err(error) = limit_body(&mut request, config.body_limit) {
            let mut response = error.into_response();
            started.respond(&mut response);
            return Outcome::Ready(response);
        }
        // Beside the request, not in its extensions (an extensions map is three
        // allocations): handlers' extractors get it by reference; layers and mounted
        // services find it in the extensions, put there for them only.
        let mut ctx = RequestContext {
            request_id: started.request_id.clone(),
            remote,
            route: None,
            params: Params::None,
            state: pipeline.compiled.state().cloned(),
            body_limit: config.body_limit,
        };
        if let Some(app) = &pipeline.app {
            return call_service(app, request, ctx, Finish::new(started, Limits::NONE));
        }
        let label = started._conn.as_ref().and_then(InService::label);
        let dispatched = pipeline.compiled.dispatch(&mut request, &mut ctx, label);
        started.route = ctx.route;
        match dispatched {
            Dispatch::Handler { handler, limits } => {
                Outcome::Pending(handler.call_finished(request, ctx, Finish::new(started, limits)))
            }
            Dispatch::Ready(mut response) => {
                started.respond(&mut response);
                Outcome::Ready(response)
            }
            Dispatch::Service { endpoint, limits } => {
                call_service(endpoint, request, ctx, Finish::new(started, limits))
            }
        }
    }
}

/// The request's tracing span (at DEBUG: made only when that level is on), with the
/// fields OpenTelemetry's HTTP conventions name, the route and status recorded when the
/// response is ready ([`crate::finish`]). An exporter of spans installed as the trace
/// context's binder ([`nucleon_runtime::trace::bind_span`]) gives the request's
/// context the exported span's ids.
#[cold]
#[inline(never)]
fn request_span(request_id: &Id, trace: &mut TaskTrace, request: &Request) -> tracing::Span {
    let span = tracing::debug_span!(
        target: "nucleon::http",
        "request",
        id = %request_id,
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = trace.get().map(|trace| tracing::field::display(trace.trace_id())),
        otel.name = tracing::field::Empty,
        otel.kind = "server",
        otel.status_code = tracing::field::Empty,
        http.request.method = %request.method(),
        http.route = tracing::field::Empty,
        http.response.status_code = tracing::field::Empty,
    );
    *trace = TaskTrace::from(nucleon_runtime::trace::bind_span(&span, trace.take()));
    span
}

/// The probes' paths, told from others with one length compare on the hot path.
struct Probes {
    lengths: [Option<usize>; 2],
}

impl Probes {
    fn new(config: &HttpConfig) -> Self {
        Self {
            lengths: [
                config.readiness_path.as_deref().map(str::len),
                config.liveness_path.as_deref().map(str::len),
            ],
        }
    }

    /// Whether `path` may be a probe's (its length is one of theirs).
    #[inline]
    fn contains(&self, path: &str) -> bool {
        self.lengths.contains(&Some(path.len()))
    }
}

/// The readiness route's answer: 200 with each adapter's health while all serve, 503
/// with `Retry-After` and the same body (and the error's code and message) when one
/// does not, or the drain started.
fn readiness_answer(
    status: &str,
    problem: String,
    report: Vec<nucleon_runtime::AdapterHealth>,
    retry_after: u64,
) -> Response {
    let adapters: Vec<serde_json::Value> = report
        .into_iter()
        .map(|entry| {
            let (health, reason) = match entry.health {
                Health::Healthy => ("healthy", None),
                Health::Degraded(reason) => ("degraded", Some(reason)),
                Health::Unhealthy(reason) => ("unhealthy", Some(reason)),
            };
            let mut value = serde_json::json!({
                "adapter": entry.adapter,
                "worker": entry.worker,
                "health": health,
            });
            if let Some(reason) = reason {
                value["reason"] = reason.into();
            }
            value
        })
        .collect();
    let mut body = serde_json::json!({"status": status, "adapters": adapters});
    if status == "ready" {
        return Json(body).into_response();
    }
    body["error"] = "SERVICE_UNAVAILABLE".into();
    body["message"] = problem.into();
    let mut response = (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response();
    response
        .headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

fn on_worker(worker: Option<usize>) -> String {
    worker.map_or_else(
        || " (per process)".to_owned(),
        |w| format!(" on worker {w}"),
    )
}

/// A request for a service (the app's layers, a route's layers, a mounted service):
/// its context goes in its extensions, where layers and services find it.
#[inline(never)]
fn call_service(
    endpoint: &Endpoint,
    mut request: Request,
    ctx: RequestContext,
    finish: Finish,
) -> Outcome {
    request.extensions_mut().insert(ctx);
    Outcome::Pending(Box::pin(finish.run(endpoint.call(request))))
}

/// What [`HttpService::start`] makes of a request.
pub(crate) enum Outcome {
    /// The response, finished (request id header, access log).
    Ready(Response),
    /// The handler's future inside the pipeline's, in one box.
    Pending(LocalBoxFuture<'static, Response>),
}

/// A client's `x-request-id`, when it is a sensible one: 1 to 128 visible ASCII
/// characters (anything else is replaced by a made id, not echoed back).
#[inline(never)]
fn given_request_id(value: &HeaderValue) -> Option<Id> {
    let bytes = value.as_bytes();
    let ok = !bytes.is_empty() && bytes.len() <= 128 && bytes.iter().all(u8::is_ascii_graphic);
    ok.then(|| Id::given(Bytes::copy_from_slice(bytes)))
}

/// 431 for headers past `http.max_header_size`.
#[cold]
#[inline(never)]
fn headers_too_large(limit: usize) -> Response {
    HttpError::new(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "HEADERS_TOO_LARGE",
        format!(
            "the request's headers are larger than the limit of {limit} bytes (http.max_header_size)"
        ),
    )
    .into_response()
}

/// 413 for a declared body length past `http.body_limit`.
#[cold]
#[inline(never)]
fn payload_too_large(limit: usize) -> Response {
    HttpError::payload_too_large(limit).into_response()
}

/// The first value of `name` in `headers`. A request usually has a handful of headers:
/// comparing names (a tag for a standard name, the bytes for another) is then cheaper
/// than hashing `name` for the map (~20 instructions against ~90 for `x-request-id`).
fn find_header<'a>(headers: &'a http::HeaderMap, name: &HeaderName) -> Option<&'a HeaderValue> {
    if headers.len() > 8 {
        return headers.get(name);
    }
    headers
        .iter()
        .find_map(|(each, value)| (each == name).then_some(value))
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

    fn map(names: &[&str]) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        for (i, name) in names.iter().enumerate() {
            let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
            headers.append(name, HeaderValue::from_str(&i.to_string()).unwrap());
        }
        headers
    }

    #[test]
    fn a_header_is_found_as_the_map_finds_it_in_small_and_large_maps() {
        let few = ["host", "x-request-id", "accept", "x-request-id"];
        let many = [
            "host",
            "a-1",
            "a-2",
            "a-3",
            "a-4",
            "a-5",
            "a-6",
            "a-7",
            "a-8",
            "x-request-id",
            "x-request-id",
        ];
        for names in [&few[..], &many[..], &["host"][..], &[][..]] {
            let headers = map(names);
            for name in [
                X_REQUEST_ID.clone(),
                http::header::HOST,
                http::header::ACCEPT,
            ] {
                assert_eq!(
                    find_header(&headers, &name),
                    headers.get(&name),
                    "{name} in {names:?}"
                );
            }
        }
        // The first of repeated values, in both ways of looking.
        assert_eq!(find_header(&map(&few), &X_REQUEST_ID).unwrap(), "1");
        assert_eq!(find_header(&map(&many), &X_REQUEST_ID).unwrap(), "9");
    }
}
