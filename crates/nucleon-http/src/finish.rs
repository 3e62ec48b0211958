//! A request's end in the pipeline: its handler's future inside the pipeline's work
//! ([`Finish::run`]: the time limit, HEAD, the request id and trace context in
//! scope, a panic made a 500), then its response finished ([`Started::respond`]: the
//! request id header, `Connection: close` while draining, metrics, the access log
//! line), or its cancellation logged. Handlers box their future inside it, so it sits
//! below the router and the handlers: it knows nothing of routing.

use std::cell::Cell;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::header::{CONNECTION, HeaderValue};
use http::{Method, StatusCode, Version};
use nucleon_runtime::request_id::Id;
use nucleon_runtime::task::StaticLabel;
use nucleon_runtime::trace::TaskTrace;
use nucleon_runtime::{Drain, InFlightGuard};

use crate::HttpError;
use crate::error::{BodyLeftUnread, InternalCause};
use crate::limits::{Limited, Limits, strip_body};
use crate::metrics::{HttpMetrics, Rejection};
use crate::request_ids::{IdSource, X_REQUEST_ID};
use crate::request_log::{AccessStart, CLIENT_CLOSED_REQUEST, log_failure, response_body_size};
use crate::response::{IntoResponse, Response};
use crate::server::conn::{InService, name_task};

/// What finishing a worker's responses needs, shared by its requests: the pipeline
/// holds it, and each request's [`Started`] a count of it.
pub(crate) struct Finisher {
    /// The runtime's drain (none in-process without a runtime): guards for the
    /// requests in flight, and whether it has started.
    pub(crate) drain: Option<Drain>,
    /// The listener has closed (see `HttpService::set_closing`): every answer says
    /// `Connection: close`.
    pub(crate) closing: Cell<bool>,
    /// The worker's request ids: made for requests that come without one, and
    /// written as each response's `x-request-id`.
    pub(crate) ids: IdSource,
    /// [`CONNECTION_LABEL`](crate::server::conn::CONNECTION_LABEL), interned: a
    /// connection's task takes it back after each request without a lock.
    pub(crate) connection_label: StaticLabel,
    /// This worker's HTTP metrics, when the runtime records metrics.
    pub(crate) metrics: Option<HttpMetrics>,
    /// `http.retry_after`, for the 503 of a handler past its time limit.
    pub(crate) retry_after: u64,
}

impl Finisher {
    /// The drain has started.
    pub(crate) fn draining(&self) -> bool {
        self.drain.as_ref().is_some_and(Drain::is_draining)
    }
}

/// The pipeline's work around a handler's future: its time limit, HEAD, the request id
/// in scope, a panic made a 500, then the response finished.
pub(crate) struct Finish {
    started: Started,
    limits: Limits,
}

/// A request past [`HttpService::start`](crate::HttpService::start): what its response
/// and the access log need. Small, since it is moved into the request's future (the
/// access log's fields are on the heap, and only when the access log is on).
pub(crate) struct Started {
    /// The worker's side of finishing a response.
    pub(crate) finisher: Rc<Finisher>,
    pub(crate) span: tracing::Span,
    pub(crate) request_id: Id,
    /// The trace context received, or started by the handler (kept between polls).
    pub(crate) trace: TaskTrace,
    pub(crate) method: Method,
    pub(crate) version: Version,
    pub(crate) access: Option<Box<AccessStart>>,
    /// When the request started, when metrics or the access log are on (one clock
    /// read for both, and one at its end).
    pub(crate) start: Option<Instant>,
    /// The route that took the request (its interned label), once routed.
    pub(crate) route: Option<&'static str>,
    /// Held until the response is ready: the drain waits for it.
    pub(crate) _guard: Option<InFlightGuard>,
    /// The connection's count of requests in service, until the response is ready.
    pub(crate) _conn: Option<InService>,
}

impl Finish {
    pub(crate) fn new(started: Started, limits: Limits) -> Self {
        Finish { started, limits }
    }

    /// The handler's future within the pipeline's work: its limits, its request id in
    /// scope, a panic made a 500, then the response finished (the request id header,
    /// `Connection: close` while draining, the access log line). One future, built
    /// before it is boxed: the handler's future is moved into it once, not once per
    /// wrapper.
    pub(crate) fn run<F: Future<Output = Response>>(self, future: F) -> Finishing<F> {
        let Finish { started, limits } = self;
        let retry_after = started.finisher.retry_after;
        Finishing {
            inner: limits.run(future, retry_after),
            started: Some(started),
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's future: see [`Finish::run`].
    pub(crate) struct Finishing<F> {
        #[pin]
        inner: Limited<F>,
        started: Option<Started>,
    }

    impl<F> PinnedDrop for Finishing<F> {
        fn drop(this: Pin<&mut Self>) {
            // Dropped before its response was ready: the client went away.
            if let Some(started) = this.project().started.take() {
                started.cancelled();
            }
        }
    }
}

impl<F: Future<Output = Response>> Future for Finishing<F> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        let Some(started) = this.started.as_mut() else {
            // Polled again after its response: nothing more to give.
            return Poll::Pending;
        };
        let inner = this.inner;
        // The response is finished where it lies, in the `Poll` returned: a response
        // (152 bytes) is copied each time it moves.
        let mut polled = {
            let _entered = started.span.enter();
            // Outbound calls made by the handler forward this id and trace context.
            nucleon_runtime::request_id::sync_scope_with_trace(
                &started.request_id,
                &mut started.trace,
                || match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| inner.poll(cx))) {
                    Ok(polled) => polled,
                    Err(panic) => Poll::Ready(panic_response(&*panic)),
                },
            )
        };
        if let Poll::Ready(response) = &mut polled
            && let Some(started) = this.started.take()
        {
            started.respond(response);
        }
        polled
    }
}

/// The 500 for a handler that panicked (the panic's message goes to the log only).
#[cold]
#[inline(never)]
fn panic_response(panic: &(dyn std::any::Any + Send)) -> Response {
    let message = nucleon_runtime::task::panic_message(panic);
    HttpError::internal(format_args!("handler panicked: {message}")).into_response()
}

impl Started {
    /// Finishes the response: the request id header, `Connection: close` while
    /// draining, the error and access log lines; then the connection task's watchdog
    /// label goes back to the connection's.
    pub(crate) fn respond(self, response: &mut Response) {
        let Started {
            finisher,
            span,
            request_id,
            method,
            version,
            access,
            start,
            route,
            _conn: conn,
            ..
        } = self;
        let task_label = conn.as_ref().and_then(InService::label);
        if let Some(cause) = response.extensions_mut().remove::<InternalCause>() {
            log_failure(
                &cause,
                &span,
                &request_id,
                &method,
                access.as_deref(),
                task_label,
            );
        }
        let unread_body = response
            .extensions_mut()
            .remove::<BodyLeftUnread>()
            .is_some();
        let close = (finisher.closing.get()
            || unread_body
            || response.status() == StatusCode::SERVICE_UNAVAILABLE && finisher.draining())
            && version <= Version::HTTP_11;
        if unread_body && let Some(conn) = &conn {
            conn.body_left_unread();
        }
        if method == Method::HEAD && !http_body::Body::is_end_stream(response.body()) {
            // The pipeline's own answers (404, 405, 500…) and a route's explicit HEAD
            // handler: HTTP/2 has no rule that drops a HEAD answer's body (hyper's
            // HTTP/1 server does), and a client resets a stream that sends one.
            strip_body(response);
        }
        let headers = response.headers_mut();
        let id_header = finisher.ids.header(&request_id);
        headers.insert(X_REQUEST_ID.clone(), id_header);
        if close {
            headers.insert(CONNECTION, HeaderValue::from_static("close"));
        }
        let elapsed = start.map(|start| start.elapsed());
        if let (Some(elapsed), Some(metrics)) = (elapsed, &finisher.metrics) {
            record_response(
                metrics,
                elapsed,
                route,
                &method,
                response,
                finisher.draining(),
            );
        }
        if let (Some(access), Some(elapsed)) = (access, elapsed) {
            access.log(&method, response, &request_id, elapsed);
        }
        if !span.is_disabled() {
            record_outcome(&span, route, response.status());
        }
        if let Some(conn) = &conn
            && response.body().is_streaming()
        {
            count_sending(conn, response);
        }
        name_task(task_label, finisher.connection_label);
    }
}

impl Started {
    /// The request was dropped before its response was ready: its access-log line
    /// says so (status 499).
    #[cold]
    #[inline(never)]
    fn cancelled(self) {
        let elapsed = self.start.map(|start| start.elapsed());
        if let (Some(elapsed), Some(metrics)) = (elapsed, &self.finisher.metrics) {
            metrics.finished(
                elapsed,
                self.route,
                &self.method,
                CLIENT_CLOSED_REQUEST,
                None,
            );
        }
        if let (Some(access), Some(elapsed)) = (&self.access, elapsed) {
            access.log_cancelled(&self.method, &self.request_id, elapsed);
        }
    }
}

/// The request span's route and status, as OpenTelemetry's HTTP conventions name them:
/// the span is named by its route (`GET /users/{id}`), and a 5xx marks it an error.
#[cold]
#[inline(never)]
fn record_outcome(span: &tracing::Span, route: Option<&'static str>, status: StatusCode) {
    if let Some(route) = route {
        span.record("otel.name", route);
        // An exporter that started the span already takes its name this way.
        nucleon_runtime::trace::rename_span(span, route);
        if let Some((_, pattern)) = route.split_once(' ') {
            span.record("http.route", pattern);
        }
    }
    span.record("http.response.status_code", status.as_u16());
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
}

/// A response's figures in the worker's metrics: by route, method and status class,
/// its time, its body's size when known, and a refusal's reason.
#[inline]
fn record_response(
    metrics: &HttpMetrics,
    elapsed: Duration,
    route: Option<&'static str>,
    method: &Method,
    response: &Response,
    draining: bool,
) {
    let status = response.status();
    metrics.finished(
        elapsed,
        route,
        method,
        status.as_u16(),
        response_body_size(method, response),
    );
    if let Some(reason) = Rejection::of(status, draining) {
        metrics.rejected(reason);
    }
}

/// A streaming response body is counted by its connection until hyper has sent it
/// all (or dropped it): the connection is not idle meanwhile, however long the body
/// takes between frames.
#[cold]
#[inline(never)]
fn count_sending(conn: &InService, response: &mut Response) {
    let body = std::mem::take(response.body_mut());
    *response.body_mut() = body.sending(conn.sending_body());
}
