//! W3C trace context on incoming requests: a valid `traceparent` becomes the handler's
//! context (same trace, the sender's span as parent), in the request's span and its
//! access line; none, or an invalid one, gives a trace started only when asked for.
//! Its own test binary: the capturing subscriber is the global one (the workers log on
//! their own threads).

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};

use common::{Captured, CapturedEvent, Server};
use nucleon_http::{Json, Router, get};
use nucleon_runtime::trace;
use tokio::net::TcpStream;
use tracing_subscriber::layer::SubscriberExt;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const SENDER_SPAN: &str = "00f067aa0ba902b7";

/// The `request` spans' fields, as text.
#[derive(Clone, Default)]
struct Spans(Arc<Mutex<Vec<BTreeMap<String, String>>>>);

struct SpanFields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for SpanFields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _id: &tracing::span::Id,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        if attrs.metadata().name() == "request" {
            let mut fields = BTreeMap::new();
            attrs.record(&mut SpanFields(&mut fields));
            self.0.lock().expect("not poisoned").push(fields);
        }
    }
}

fn captured() -> &'static (Captured, Spans) {
    static CAPTURED: OnceLock<(Captured, Spans)> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let (events, spans) = (Captured::default(), Spans::default());
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry()
                .with(events.clone())
                .with(spans.clone()),
        )
        .expect("the only subscriber of this test binary");
        (events, spans)
    })
}

/// What the handler sees of its trace context: before asking for one (`peek`), then
/// twice around an await (`current`, which starts one if none came).
async fn traced() -> Json<serde_json::Value> {
    let peeked = trace::peek().map(|c| c.trace_id().to_string());
    let first = trace::current().expect("a handler runs in a trace scope");
    tokio::task::yield_now().await;
    let again = trace::current().expect("still in scope after an await");
    Json(serde_json::json!({
        "peeked": peeked,
        "trace_id": first.trace_id().to_string(),
        "span_id": first.span_id().to_string(),
        "parent_id": first.parent_id().map(|id| id.to_string()),
        "sampled": first.is_sampled(),
        "tracestate": first.tracestate(),
        "same_after_await": first == again,
        "traceparent": first.traceparent().to_string(),
    }))
}

/// The access line of the client at `remote`.
fn access_line(remote: &str) -> CapturedEvent {
    let lines: Vec<CapturedEvent> = captured()
        .0
        .events("nucleon::access")
        .into_iter()
        .filter(|e| e.fields.get("remote").map(String::as_str) == Some(remote))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:#?}");
    lines.into_iter().next().unwrap()
}

/// One request from a connection of its own: the reply's JSON, and the client's
/// address (to find its access line).
async fn call(server: &Server, headers: &[(&str, &str)]) -> (serde_json::Value, String) {
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let remote = stream.local_addr().unwrap().to_string();
    let mut text = String::from("GET /traced HTTP/1.1\r\nhost: t\r\nconnection: close\r\n");
    for (name, value) in headers {
        text.push_str(&format!("{name}: {value}\r\n"));
    }
    text.push_str("\r\n");
    tokio::io::AsyncWriteExt::write_all(&mut stream, text.as_bytes())
        .await
        .unwrap();
    let reply = common::read_reply(&mut stream, false).await;
    assert_eq!(reply.status, 200);
    (reply.json(), remote)
}

#[tokio::test]
async fn a_received_traceparent_is_the_handlers_trace_with_the_sender_as_parent() {
    captured();
    let server = Server::start(Router::new().route("/traced", get(traced)), |_| {}).await;
    let traceparent = format!("00-{TRACE_ID}-{SENDER_SPAN}-01");
    let (seen, remote) = call(
        &server,
        &[
            ("traceparent", &traceparent),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    server.stop().await.expect("clean stop");

    assert_eq!(seen["peeked"], TRACE_ID, "there before anything asked");
    assert_eq!(seen["trace_id"], TRACE_ID, "{seen}");
    assert_eq!(seen["parent_id"], SENDER_SPAN, "{seen}");
    let span_id = seen["span_id"].as_str().unwrap();
    assert_ne!(span_id, SENDER_SPAN, "a span of its own");
    assert_eq!(seen["sampled"], true);
    assert_eq!(
        seen["tracestate"],
        "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
    );
    assert_eq!(seen["same_after_await"], true);
    assert_eq!(
        seen["traceparent"],
        format!("00-{TRACE_ID}-{span_id}-01"),
        "what it would send on"
    );

    let line = access_line(&remote);
    assert_eq!(line.fields["trace_id"], TRACE_ID, "{line:?}");
    let spans = captured().1.0.lock().unwrap().clone();
    assert!(
        spans
            .iter()
            .any(|span| span.get("trace_id").map(String::as_str) == Some(TRACE_ID)),
        "the request span carries the trace id: {spans:#?}"
    );
}

#[tokio::test]
async fn without_a_valid_traceparent_a_trace_is_started_when_asked_for() {
    captured();
    let server = Server::start(Router::new().route("/traced", get(traced)), |_| {}).await;
    let (none, none_remote) = call(&server, &[]).await;
    let zero = "00-00000000000000000000000000000000-00f067aa0ba902b7-01";
    let uppercase = format!("00-{}-{SENDER_SPAN}-01", TRACE_ID.to_uppercase());
    let (invalid, invalid_remote) =
        call(&server, &[("traceparent", zero), ("tracestate", "a=1")]).await;
    let (upper, _) = call(&server, &[("traceparent", &uppercase)]).await;
    server.stop().await.expect("clean stop");

    for seen in [&none, &invalid, &upper] {
        assert_eq!(seen["peeked"], serde_json::Value::Null, "none yet: {seen}");
        assert_eq!(seen["parent_id"], serde_json::Value::Null, "a root: {seen}");
        assert_ne!(seen["trace_id"], TRACE_ID, "{seen}");
        assert_eq!(seen["sampled"], false, "{seen}");
        assert_eq!(seen["tracestate"], serde_json::Value::Null, "{seen}");
        assert_eq!(seen["same_after_await"], true, "started once: {seen}");
    }
    assert_ne!(
        none["trace_id"], invalid["trace_id"],
        "one trace per request"
    );
    for remote in [none_remote, invalid_remote] {
        let line = access_line(&remote);
        assert!(!line.fields.contains_key("trace_id"), "{line:?}");
    }
}
