//! Span export (the umbrella's `otel` feature), end to end: a service started by
//! `nucleon::run`, told by the standard OpenTelemetry variables to export to a collector
//! this test runs on loopback (OTLP/HTTP, protobuf bodies, decoded with the protocol's
//! own message types). The exported spans carry the trace a request came with, nest
//! as the request's calls do, and name the same span the forwarded `traceparent` names.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::{Span, span::SpanKind, status::StatusCode};
use prost::Message as _;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER: &str = "00f067aa0ba902b7";
const OTHER_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";

/// An exported span, with the `service.name` of the resource it came under.
#[derive(Clone)]
struct Exported {
    service: String,
    span: Span,
}

impl Exported {
    fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    fn parent_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    fn attribute(&self, key: &str) -> Option<String> {
        let value = self.span.attributes.iter().find(|kv| kv.key == key)?;
        Some(match value.value.as_ref()?.value.as_ref()? {
            Value::StringValue(text) => text.clone(),
            Value::IntValue(n) => n.to_string(),
            Value::BoolValue(b) => b.to_string(),
            other => format!("{other:?}"),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A collector: OTLP/HTTP `POST /v1/traces` with protobuf bodies, each answered 200.
struct Collector {
    addr: SocketAddr,
    spans: Arc<Mutex<Vec<Exported>>>,
}

impl Collector {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let spans = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&spans);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                tokio::spawn(serve(stream, Arc::clone(&kept)));
            }
        });
        Self { addr, spans }
    }

    fn endpoint(&self) -> String {
        format!("http://{}/v1/traces", self.addr)
    }

    /// The first span exported that `matches`, waiting up to 20 s for it.
    async fn span(&self, what: &str, matches: impl Fn(&Exported) -> bool) -> Exported {
        for _ in 0..400 {
            if let Some(found) = self.spans.lock().unwrap().iter().find(|s| matches(s)) {
                return found.clone();
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let seen: Vec<String> = self
            .spans
            .lock()
            .unwrap()
            .iter()
            .map(|s| format!("{} {} parent {}", s.span.name, s.span_id(), s.parent_id()))
            .collect();
        panic!("no exported span {what} within 20 s; exported: {seen:#?}");
    }
}

/// One collector connection: requests one after the other (keep-alive).
async fn serve(stream: TcpStream, spans: Arc<Mutex<Vec<Exported>>>) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut head = HashMap::new();
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
            return;
        }
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).await.unwrap();
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                head.insert(name.to_ascii_lowercase(), value.trim().to_owned());
            }
        }
        assert!(
            request_line.starts_with("POST /v1/traces "),
            "{request_line}"
        );
        assert_eq!(
            head.get("content-type").map(String::as_str),
            Some("application/x-protobuf"),
            "{head:?}"
        );
        let length: usize = head["content-length"].parse().unwrap();
        let mut body = vec![0; length];
        reader.read_exact(&mut body).await.unwrap();
        let request = ExportTraceServiceRequest::decode(&body[..]).expect("an OTLP request");
        for resource in request.resource_spans {
            let service = resource
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                    Value::StringValue(name) => Some(name.clone()),
                    _ => None,
                })
                .unwrap_or_default();
            for scope in resource.scope_spans {
                for span in scope.spans {
                    spans.lock().unwrap().push(Exported {
                        service: service.clone(),
                        span,
                    });
                }
            }
        }
        let answer =
            b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\n\r\n";
        if reader.get_mut().write_all(answer).await.is_err() {
            return;
        }
    }
}

/// The service, started with the exporter pointed at `collector`; its address from its
/// start line.
async fn start_service(collector: &Collector, amqp_url: Option<&str>) -> (Child, SocketAddr) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_otel-child"));
    match amqp_url {
        Some(url) => command.env("NUCLEON_AMQP__URL", url),
        None => command.env_remove("NUCLEON_AMQP__URL"),
    };
    let mut child = command
        .args(["--port", "0", "-j", "1"])
        .env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", collector.endpoint())
        .env("OTEL_SERVICE_NAME", "otel-test")
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env_remove("OTEL_SDK_DISABLED")
        .env_remove("NUCLEON_LOG")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start otel-child");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // The address from the start line; then the line that says the workers serve.
    let addr = tokio::time::timeout(Duration::from_secs(20), async {
        let mut addr = None;
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.split("starting on http://").nth(1) {
                addr = rest.split_whitespace().next().map(|a| a.parse().unwrap());
            } else if line.contains("nucleon::runtime: serving") {
                return addr.expect("the start line came first");
            }
        }
        panic!("the service's stdout closed before it served");
    })
    .await
    .expect("the service starts within 20 s");
    // The rest of its log, read so that it never waits on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, addr)
}

#[tokio::test]
async fn a_requests_spans_are_exported_in_the_trace_it_came_with() {
    let collector = Collector::start().await;
    let (mut child, addr) = start_service(&collector, None).await;

    // A request with a trace context: /hop calls /down, which answers the
    // traceparent it was sent.
    let traceparent = format!("00-{TRACE_ID}-{CALLER}-01");
    let reply = nucleon_testkit::http::request(
        addr,
        "GET",
        &format!("/hop?to={addr}"),
        &[("traceparent", &traceparent), ("tracestate", "congo=t61")],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let forwarded = reply.json()["traceparent"]
        .as_str()
        .expect("/down was sent a traceparent")
        .to_owned();

    // The request's span: in the caller's trace, the caller's span its parent, named
    // by its route, with the HTTP fields.
    let hop = collector
        .span("GET /hop", |s| s.span.name == "GET /hop")
        .await;
    assert_eq!(hop.service, "otel-test");
    assert_eq!(hop.trace_id(), TRACE_ID);
    assert_eq!(hop.parent_id(), CALLER);
    assert_eq!(hop.span.kind, SpanKind::Server as i32);
    assert_eq!(hop.attribute("http.route").as_deref(), Some("/hop"));
    assert_eq!(
        hop.attribute("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(hop.attribute("http.request.method").as_deref(), Some("GET"));
    assert_eq!(hop.span.trace_state, "congo=t61");

    // What the client forwarded names the exported span: the collector can join them.
    assert_eq!(
        forwarded,
        format!("00-{TRACE_ID}-{}-01", hop.span_id()),
        "the forwarded traceparent names the exported request span"
    );

    // The handler's own span nests under the request's; /down's request span is the
    // child of the span that called it.
    let lookup = collector
        .span("lookup", |s| {
            s.span.name == "lookup" && s.trace_id() == TRACE_ID
        })
        .await;
    assert_eq!(lookup.parent_id(), hop.span_id());
    assert_eq!(lookup.attribute("what").as_deref(), Some("down"));
    let down = collector
        .span("GET /down", |s| {
            s.span.name == "GET /down" && s.trace_id() == TRACE_ID
        })
        .await;
    assert_eq!(down.parent_id(), hop.span_id());

    // No trace context sent: the request's span starts a trace, sampled (the SDK's
    // default sampler), and what is forwarded continues it.
    let reply = nucleon_testkit::http::get(addr, &format!("/hop?to={addr}")).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let forwarded = reply.json()["traceparent"].as_str().unwrap().to_owned();
    let root = collector
        .span("a root GET /hop", |s| {
            s.span.name == "GET /hop" && s.span.parent_span_id.is_empty()
        })
        .await;
    assert_ne!(root.trace_id(), TRACE_ID);
    assert_eq!(
        forwarded,
        format!("00-{}-{}-01", root.trace_id(), root.span_id())
    );

    // A 500 marks its span an error.
    let reply = nucleon_testkit::http::get(addr, "/fail").await;
    assert_eq!(reply.status, 500);
    let failed = collector
        .span("GET /fail", |s| s.span.name == "GET /fail")
        .await;
    assert_eq!(
        failed.span.status.as_ref().map(|status| status.code),
        Some(StatusCode::Error as i32)
    );

    child.kill().await.unwrap();
}

#[tokio::test]
async fn a_task_submitted_by_a_request_is_processed_in_its_trace() {
    let Some(amqp_url) = nucleon_testkit::amqp_url() else {
        return;
    };
    let collector = Collector::start().await;
    let (mut child, addr) = start_service(&collector, Some(&amqp_url)).await;

    // Over AMQP: the task's delivery is processed in the trace of the request that
    // submitted it, the child of that request's span.
    let reply = nucleon_testkit::http::request(
        addr,
        "GET",
        "/submit",
        &[("traceparent", &format!("00-{OTHER_TRACE}-{CALLER}-01"))],
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let submit = collector
        .span("GET /submit", |s| {
            s.span.name == "GET /submit" && s.trace_id() == OTHER_TRACE
        })
        .await;
    let delivery = collector
        .span("process nucleon-tests.otel", |s| {
            s.span.name.starts_with("process ") && s.trace_id() == OTHER_TRACE
        })
        .await;
    assert_eq!(delivery.parent_id(), submit.span_id());
    assert_eq!(delivery.span.kind, SpanKind::Consumer as i32);
    assert_eq!(
        delivery.attribute("messaging.system").as_deref(),
        Some("rabbitmq")
    );

    child.kill().await.unwrap();
}
