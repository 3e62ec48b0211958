//! The trace context a request comes with: W3C `traceparent` and `tracestate`, read
//! into the `TaskTrace` its handler runs in (`nucleon_runtime::trace`).

use http::{HeaderMap, HeaderName, HeaderValue};
use nucleon_runtime::trace::{TaskTrace, TraceContext};

/// The `traceparent` header.
pub(crate) static TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// The `tracestate` header.
pub(crate) static TRACESTATE: HeaderName = HeaderName::from_static("tracestate");

/// The request's trace context: the sender's, as this hop's (a new span whose parent is
/// the sender's), when it sent a valid `traceparent`; else none, started only if the
/// handler forwards one. Without the header: one pass over the header names (their
/// keys only: a standard name is told apart by its tag, a custom one by its length
/// first), and nothing else.
#[inline]
pub(crate) fn incoming(headers: &HeaderMap) -> TaskTrace {
    let present = if headers.len() > 8 {
        headers.contains_key(&TRACEPARENT)
    } else {
        headers.keys().any(|name| name == TRACEPARENT)
    };
    if present {
        received(headers)
    } else {
        TaskTrace::new()
    }
}

/// A request that came with a `traceparent`: out of the common path.
#[inline(never)]
fn received(headers: &HeaderMap) -> TaskTrace {
    // Both headers in one pass over a small map (no hashing), as `find_header` does.
    let (mut traceparent, mut state, mut states) = (None, None, 0);
    if headers.len() > 8 {
        traceparent = headers.get(&TRACEPARENT);
        let mut all = headers.get_all(&TRACESTATE).iter();
        state = all.next();
        states = usize::from(state.is_some()) + all.count();
    } else {
        for (name, value) in headers {
            if name == TRACEPARENT {
                traceparent.get_or_insert(value);
            } else if name == TRACESTATE {
                state.get_or_insert(value);
                states += 1;
            }
        }
    }
    let Some(traceparent) = traceparent else {
        return TaskTrace::new();
    };
    let parsed = if states > 1 {
        // Several fields are one list (RFC 9110's field order), joined by commas.
        let joined: Vec<&[u8]> = headers
            .get_all(&TRACESTATE)
            .iter()
            .map(HeaderValue::as_bytes)
            .collect();
        TraceContext::parse(traceparent.as_bytes(), Some(&joined.join(&b","[..])))
    } else {
        TraceContext::parse(traceparent.as_bytes(), state.map(HeaderValue::as_bytes))
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
