//! The lines a request leaves in the log: its access-log line (target
//! `nucleon::access`) and, when it failed with a 500, its error line. Out of the
//! request's hot path: neither is inlined into it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use http::{Method, StatusCode};
use nucleon_runtime::request_id::Id;
use nucleon_runtime::task::LabelHandle;
use nucleon_runtime::trace::{TraceContext, TraceId};

use crate::Request;
use crate::error::InternalCause;
use crate::response::Response;
use crate::server::conn::InService;

/// The access log's fields known when a request starts.
pub(crate) struct AccessStart {
    /// The request's path, copied: a clone of the request's `Uri` would share the
    /// connection's read buffer, an atomic count taken and released on every request
    /// (and an atomic operation waits for the stores before it, the access line's
    /// among them).
    pub(crate) path: Box<str>,
    /// The client's address as text (written once per connection).
    remote: Rc<str>,
    /// The trace id the request came with (`traceparent`), if any.
    trace_id: Option<TraceId>,
}

impl AccessStart {
    #[inline(never)]
    pub(crate) fn new(
        request: &Request,
        remote: SocketAddr,
        conn: Option<&InService>,
        trace: Option<&TraceContext>,
    ) -> Box<Self> {
        Box::new(AccessStart {
            path: Box::from(request.uri().path()),
            remote: conn.map_or_else(|| Rc::from(remote.to_string()), InService::remote_text),
            trace_id: trace.map(TraceContext::trace_id),
        })
    }

    /// The request's line in the access log, under the target `nucleon::access`.
    /// `duration_us` runs from the request's head to its response's head: how long
    /// the server took to answer, not how long the body took to send.
    #[inline(never)]
    pub(crate) fn log(
        &self,
        method: &Method,
        response: &Response,
        request_id: &Id,
        elapsed: Duration,
    ) {
        let bytes = response_body_size(method, response);
        let status = response.status().as_u16();
        self.line(method, status, bytes, None, request_id, elapsed);
    }

    /// The line of a request dropped before its response was ready (the client
    /// closed its connection, or reset its HTTP/2 stream): status 499, as nginx logs
    /// it, so the slowest requests do not vanish from the access log.
    #[cold]
    #[inline(never)]
    pub(crate) fn log_cancelled(&self, method: &Method, request_id: &Id, elapsed: Duration) {
        self.line(
            method,
            CLIENT_CLOSED_REQUEST,
            Some(0),
            Some(true),
            request_id,
            elapsed,
        );
    }

    /// One access-log line. Text fields as `&str`, numbers as numbers: a subscriber
    /// records them without formatting; a `None` field is left out.
    fn line(
        &self,
        method: &Method,
        status: u16,
        bytes: Option<u64>,
        cancelled: Option<bool>,
        request_id: &Id,
        elapsed: Duration,
    ) {
        let duration_us = elapsed.as_micros() as u64;
        let trace_id = self.trace_id.map(TraceId::to_hex);
        request_id.with_str(|id| {
            if let Some(sink) = ACCESS_SINK.get() {
                sink(&AccessRecord {
                    remote: &self.remote,
                    method: method.as_str(),
                    path: &self.path,
                    status,
                    bytes,
                    duration_us,
                    request_id: id,
                    trace_id: trace_id.as_ref().map(|hex| hex.as_str()),
                    cancelled,
                });
                return;
            }
            tracing::info!(
                target: "nucleon::access",
                remote = &*self.remote,
                method = method.as_str(),
                path = &*self.path,
                status,
                bytes,
                duration_us,
                request_id = id,
                trace_id = trace_id.as_ref().map(|hex| hex.as_str()),
                cancelled,
            );
        });
    }
}

/// One request's access-log line, as given to an [`AccessSink`]: the fields of the
/// `nucleon::access` event, in its order.
#[derive(Debug)]
#[non_exhaustive]
pub struct AccessRecord<'a> {
    /// The client's address.
    pub remote: &'a str,
    /// The request's method.
    pub method: &'a str,
    /// The request's path (no query).
    pub path: &'a str,
    /// The response's status (499: the client went away first).
    pub status: u16,
    /// The response body's size, when known before it was sent.
    pub bytes: Option<u64>,
    /// From the request's head to the response's head.
    pub duration_us: u64,
    /// The request id (the `x-request-id` answered).
    pub request_id: &'a str,
    /// The trace id, when the request came with a `traceparent`.
    pub trace_id: Option<&'a str>,
    /// `Some(true)` for a request dropped before its response.
    pub cancelled: Option<bool>,
}

impl<'a> AccessRecord<'a> {
    /// A record with the fields every line has (no size, no trace id, 0 µs): to test a
    /// sink with.
    pub fn new(
        remote: &'a str,
        method: &'a str,
        path: &'a str,
        status: u16,
        request_id: &'a str,
    ) -> Self {
        Self {
            remote,
            method,
            path,
            status,
            bytes: None,
            duration_us: 0,
            request_id,
            trace_id: None,
            cancelled: None,
        }
    }

    /// With the body's size.
    pub fn with_bytes(mut self, bytes: u64) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// With the time from head to head.
    pub fn with_duration_us(mut self, duration_us: u64) -> Self {
        self.duration_us = duration_us;
        self
    }
}

/// Writes access-log lines without going through `tracing` (see [`set_access_sink`]).
pub type AccessSink = fn(&AccessRecord<'_>);

static ACCESS_SINK: std::sync::OnceLock<AccessSink> = std::sync::OnceLock::new();

/// Hands every request's access-log line to `sink` instead of a `nucleon::access`
/// event: for a log whose writer formats the line itself (the umbrella's text log
/// does, when `nucleon::access` is enabled), this saves the event's dispatch and its
/// filters on every request. Process-wide, set once: `false` if a sink was set
/// already. The lines of connections refused before a request (408, 431 on the
/// socket) stay events.
pub fn set_access_sink(sink: AccessSink) -> bool {
    ACCESS_SINK.set(sink).is_ok()
}

/// nginx's status for a request whose client went away before its answer.
pub(crate) const CLIENT_CLOSED_REQUEST: u16 = 499;

/// The response body's exact size when it is known before it is sent (a buffer, a
/// known length); a streamed body's is not known yet: `None`, not 0. Zero for the
/// answers HTTP sends without one (HEAD, 1xx, 204, 304), whatever body they were given.
#[inline]
pub(crate) fn response_body_size(method: &Method, response: &Response) -> Option<u64> {
    let status = response.status();
    let bodiless = method == Method::HEAD
        || status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED;
    if bodiless {
        Some(0)
    } else {
        http_body::Body::size_hint(response.body()).exact()
    }
}

/// The error line of a request that failed (a handler's error or panic, answered
/// with a 500): its method, its path when the access log keeps it (else its route,
/// still the task's label at this point), its request id and the cause.
#[cold]
#[inline(never)]
pub(crate) fn log_failure(
    cause: &InternalCause,
    span: &tracing::Span,
    request_id: &Id,
    method: &Method,
    access: Option<&AccessStart>,
    task_label: Option<&LabelHandle>,
) {
    let target = match access {
        Some(access) => access.path.to_string(),
        None => task_label
            .map(LabelHandle::get)
            .or_else(nucleon_runtime::task::current_label)
            .map_or_else(String::new, |label| label.to_string()),
    };
    span.in_scope(|| {
        tracing::error!(
            target: "nucleon::http",
            request_id = %request_id,
            "{method} {target} failed: {}", cause.0
        );
    });
}
