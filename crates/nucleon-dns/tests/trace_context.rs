//! The outbound HTTP client forwards the current W3C trace context: `traceparent` with
//! this hop's span as the parent, `tracestate` as received; a caller's own
//! `traceparent` replaces it; nothing outside a scope, or with forwarding off.

mod support;

use nucleon_dns::{HttpClient, HttpClientConfig, Resolver};
use nucleon_runtime::trace::{self, TraceContext};

use support::{Rec, TestDns, TestHttp};

const SENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn client(dns: &TestDns, config: HttpClientConfig) -> HttpClient {
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    HttpClient::new(resolver, &config).await.unwrap()
}

/// A header's values in a request head (lower-cased by the test server).
fn values<'a>(head: &'a str, name: &str) -> Vec<&'a str> {
    head.lines()
        .filter_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
        .collect()
}

#[tokio::test]
async fn calls_carry_the_current_trace_context_with_this_hops_span_as_parent() {
    let dns = TestDns::start(vec![Rec::A("web", 300, [127, 0, 0, 1])]);
    let http = TestHttp::start();
    let client = client(&dns, HttpClientConfig::default()).await;
    let url = format!("http://web.nucleon.test:{}/json", http.port);

    // Outside any scope: nothing to forward, nothing started.
    let _: serde_json::Value = client.get_json(&url).await.unwrap();
    let head = http.heads.recv().unwrap();
    assert!(values(&head, "traceparent").is_empty(), "{head}");

    // A context received: its trace, this hop's span as the parent, its tracestate.
    let here = TraceContext::received(SENT, Some(b"congo=t61rcwkgmze".as_slice())).unwrap();
    let expected = here.traceparent().to_string();
    let _: serde_json::Value = trace::scope(here.clone(), client.get_json(&url))
        .await
        .unwrap();
    let head = http.heads.recv().unwrap();
    assert_eq!(values(&head, "traceparent"), [expected.as_str()], "{head}");
    assert!(
        expected.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{expected}"
    );
    assert!(!expected.contains("00f067aa0ba902b7"), "a span of its own");
    assert_eq!(values(&head, "tracestate"), ["congo=t61rcwkgmze"], "{head}");

    // A scope with none yet (a request that came without one): one trace is started
    // at the first call and kept for the next.
    let (first, second) = trace::scope(None, async {
        let _: serde_json::Value = client.get_json(&url).await.unwrap();
        let first = http.heads.recv().unwrap();
        let _: serde_json::Value = client.get_json(&url).await.unwrap();
        (first, http.heads.recv().unwrap())
    })
    .await;
    let first = values(&first, "traceparent");
    assert_eq!(first.len(), 1, "{first:?}");
    assert_eq!(
        first,
        values(&second, "traceparent"),
        "the same trace and span"
    );
    let started = TraceContext::parse(first[0].as_bytes(), None).expect("a valid traceparent");
    assert!(
        !started.is_sampled(),
        "nothing here records it: {}",
        first[0]
    );

    // The caller's own traceparent wins, and ours goes with our tracestate.
    let theirs = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let response = trace::scope(here.clone(), async {
        client
            .send(client.get(&url).header("traceparent", theirs))
            .await
    })
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let head = http.heads.recv().unwrap();
    assert_eq!(values(&head, "traceparent"), [theirs], "{head}");
    assert!(values(&head, "tracestate").is_empty(), "{head}");
}

#[tokio::test]
async fn forwarding_can_be_turned_off() {
    let dns = TestDns::start(vec![Rec::A("web", 300, [127, 0, 0, 1])]);
    let http = TestHttp::start();
    let config = HttpClientConfig {
        forward_trace_context: false,
        ..HttpClientConfig::default()
    };
    let client = client(&dns, config).await;
    let url = format!("http://web.nucleon.test:{}/json", http.port);
    let here = TraceContext::received(SENT, None).unwrap();
    let _: serde_json::Value = trace::scope(here, client.get_json(&url)).await.unwrap();
    let head = http.heads.recv().unwrap();
    assert!(values(&head, "traceparent").is_empty(), "{head}");
}
