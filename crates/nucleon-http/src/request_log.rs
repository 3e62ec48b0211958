//! The lines a request leaves in the log: its access-log line (target
//! `nucleon::access`) and, when it failed with a 500, its error line. Out of the
//! request's hot path: neither is inlined into it.

use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use http::{Method, StatusCode, Uri};
use nucleon_runtime::request_id::Id;
use nucleon_runtime::task::LabelHandle;
use nucleon_runtime::trace::{TraceContext, TraceId};

use crate::Request;
use crate::error::InternalCause;
use crate::response::Response;
use crate::server::conn::InService;

/// The access log's fields known when a request starts.
pub(crate) struct AccessStart {
    pub(crate) uri: Uri,
    /// The client's address as text (written once per connection).
    remote: Rc<str>,
    start: Instant,
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
            // Cheap: the path and query are shared bytes, not copied.
            uri: request.uri().clone(),
            remote: conn.map_or_else(|| Rc::from(remote.to_string()), InService::remote_text),
            start: Instant::now(),
            trace_id: trace.map(TraceContext::trace_id),
        })
    }

    /// The request's line in the access log, under the target `nucleon::access`.
    /// `duration_us` runs from the request's head to its response's head: how long
    /// the server took to answer, not how long the body took to send.
    #[inline(never)]
    pub(crate) fn log(&self, method: &Method, response: &Response, request_id: &Id) {
        let bytes = response_body_size(method, response);
        self.line(method, response.status().as_u16(), bytes, None, request_id);
    }

    /// The line of a request dropped before its response was ready (the client
    /// closed its connection, or reset its HTTP/2 stream): status 499, as nginx logs
    /// it, so the slowest requests do not vanish from the access log.
    #[cold]
    #[inline(never)]
    pub(crate) fn log_cancelled(&self, method: &Method, request_id: &Id) {
        self.line(
            method,
            CLIENT_CLOSED_REQUEST,
            Some(0),
            Some(true),
            request_id,
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
    ) {
        let trace_id = self.trace_id.map(TraceId::to_hex);
        request_id.with_str(|id| {
            tracing::info!(
                target: "nucleon::access",
                remote = &*self.remote,
                method = method.as_str(),
                path = self.uri.path(),
                status,
                bytes,
                duration_us = self.start.elapsed().as_micros() as u64,
                request_id = id,
                trace_id = trace_id.as_ref().map(|hex| hex.as_str()),
                cancelled,
            );
        });
    }
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
        Some(access) => access.uri.path().to_owned(),
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
