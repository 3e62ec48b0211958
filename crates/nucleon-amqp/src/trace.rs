//! Trace context in AMQP messages: W3C `traceparent` and `tracestate` as text headers
//! of the message (the convention of OpenTelemetry's AMQP instrumentations), put on
//! what a service publishes while a context is current, and read from what its
//! consumers receive: each delivery is handled inside the context it carries.

use lapin::types::{AMQPValue, FieldTable};
use nucleon_runtime::trace::{self, TRACEPARENT, TRACESTATE, TraceContext};

/// Adds the current trace context to `headers`, unless they have a `traceparent`
/// already (the publisher's own, or a message forwarded: a dead letter, a retry).
pub(crate) fn add_current(headers: &mut FieldTable) {
    if headers.contains_key(TRACEPARENT) {
        return;
    }
    if let Some(context) = trace::current() {
        insert(headers, &context);
    }
}

/// Writes `context` into `headers`: what the next hop receives.
pub(crate) fn insert(headers: &mut FieldTable, context: &TraceContext) {
    headers.insert(
        TRACEPARENT.into(),
        AMQPValue::LongString(context.traceparent().as_str().into()),
    );
    if let Some(state) = context.tracestate() {
        headers.insert(TRACESTATE.into(), AMQPValue::LongString(state.into()));
    }
}

/// The context a message carries, as this hop's (a new span under the sender's);
/// `None` without a valid `traceparent`.
pub(crate) fn received(headers: Option<&FieldTable>) -> Option<TraceContext> {
    let headers = headers?;
    TraceContext::received(text(headers, TRACEPARENT)?, text(headers, TRACESTATE))
}

/// A header's bytes, for the types a publisher may have sent text as.
fn text<'a>(headers: &'a FieldTable, name: &str) -> Option<&'a [u8]> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(text) => Some(text.as_bytes()),
        AMQPValue::ShortString(text) => Some(text.as_str().as_bytes()),
        AMQPValue::ByteArray(bytes) => Some(bytes.as_slice()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn what_is_published_is_what_is_received() {
        let context = TraceContext::received(SENT.as_bytes(), Some(b"rojo=1".as_slice())).unwrap();
        let mut headers = FieldTable::default();
        insert(&mut headers, &context);
        let next = received(Some(&headers)).expect("valid");
        assert_eq!(next.trace_id(), context.trace_id());
        assert_eq!(next.parent_id(), Some(context.span_id()));
        assert_eq!(next.tracestate(), Some("rojo=1"));
        // Sent as a short string or bytes by another publisher: read all the same.
        for value in [
            AMQPValue::ShortString(SENT.into()),
            AMQPValue::ByteArray(SENT.as_bytes().into()),
        ] {
            let mut headers = FieldTable::default();
            headers.insert(TRACEPARENT.into(), value);
            assert!(received(Some(&headers)).is_some());
        }
        let mut invalid = FieldTable::default();
        invalid.insert(TRACEPARENT.into(), AMQPValue::LongLongInt(1));
        assert!(received(Some(&invalid)).is_none());
        assert!(received(None).is_none());
    }

    #[test]
    fn a_traceparent_already_there_is_kept() {
        let mut headers = FieldTable::default();
        headers.insert(TRACEPARENT.into(), AMQPValue::LongString(SENT.into()));
        let mut holder = nucleon_runtime::trace::TaskTrace::from(TraceContext::start());
        nucleon_runtime::trace::sync_scope(&mut holder, || add_current(&mut headers));
        assert_eq!(
            text(&headers, TRACEPARENT),
            Some(SENT.as_bytes()),
            "the message's own"
        );
        let mut empty = FieldTable::default();
        add_current(&mut empty);
        assert!(empty.inner().is_empty(), "outside a scope: nothing");
    }
}
