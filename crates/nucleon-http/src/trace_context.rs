//! The trace context a request comes with: W3C `traceparent` and `tracestate`, read
//! into the `TaskTrace` its handler runs in (`nucleon_runtime::trace`).

use http::{HeaderMap, HeaderName, HeaderValue};
use nucleon_runtime::trace::{TaskTrace, TraceContext};

use crate::service::find_header;

/// The `traceparent` header.
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The request's trace context: the sender's, as this hop's (a new span whose parent is
/// the sender's), when it sent a valid `traceparent`; else none, started only if the
/// handler forwards one. Without the header, one scan of the headers and nothing else.
#[inline]
pub(crate) fn incoming(headers: &HeaderMap) -> TaskTrace {
    match find_header(headers, &TRACEPARENT) {
        None => TaskTrace::new(),
        Some(traceparent) => received(headers, traceparent),
    }
}

/// A request that came with a `traceparent`: out of the common path.
#[inline(never)]
fn received(headers: &HeaderMap, traceparent: &HeaderValue) -> TaskTrace {
    let mut states = headers.get_all(&TRACESTATE).iter();
    let parsed = match (states.next(), states.next()) {
        (None, _) => TraceContext::parse(traceparent.as_bytes(), None),
        (Some(one), None) => TraceContext::parse(traceparent.as_bytes(), Some(one.as_bytes())),
        (Some(_), Some(_)) => {
            // Several fields are one list (RFC 9110's field order), joined by commas.
            let joined: Vec<&[u8]> = headers
                .get_all(&TRACESTATE)
                .iter()
                .map(HeaderValue::as_bytes)
                .collect();
            TraceContext::parse(traceparent.as_bytes(), Some(&joined.join(&b","[..])))
        }
    };
    match parsed {
        Ok(sent) => TaskTrace::from(sent.child()),
        Err(error) => {
            // The specification's answer: ignore it (a trace is started if needed).
            tracing::debug!(target: "nucleon::http", %error, "ignored the request's traceparent");
            TaskTrace::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn a_valid_traceparent_becomes_this_hops_context() {
        let trace = incoming(&headers(&[
            ("host", "x"),
            ("TraceParent", SENT),
            ("tracestate", "rojo=1"),
            ("tracestate", "congo=2"),
        ]));
        let here = trace.get().expect("received");
        assert_eq!(
            here.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
        assert_eq!(here.parent_id().unwrap().to_string(), "00f067aa0ba902b7");
        assert_eq!(here.tracestate(), Some("rojo=1,congo=2"));
    }

    #[test]
    fn no_or_an_invalid_traceparent_gives_none_yet() {
        assert!(incoming(&headers(&[("host", "x")])).get().is_none());
        let invalid = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
        let trace = incoming(&headers(&[("traceparent", invalid), ("tracestate", "a=1")]));
        assert!(trace.get().is_none());
    }
}
