//! The outbound HTTP client, resolving through the test DNS server only.

mod support;

use nucleon_dns::{DnsError, HttpClient, HttpClientConfig, HttpError, Resolver, request_id};
use std::time::Duration;

use support::{Rec, SilentDns, TestDns, TestHttp, dns_config};

fn zone() -> Vec<Rec> {
    // `web.nucleon.test` exists only in the test DNS server.
    vec![Rec::A("web", 300, [127, 0, 0, 1])]
}

async fn client(dns: &TestDns) -> HttpClient {
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    HttpClient::new(resolver, &HttpClientConfig::default())
        .await
        .unwrap()
}

#[tokio::test]
async fn calls_a_loopback_server_by_a_name_only_the_test_dns_knows() {
    let dns = TestDns::start(zone());
    let http = TestHttp::start();
    let client = client(&dns).await;
    let url = format!("http://web.nucleon.test:{}/json", http.port);

    let body: serde_json::Value = client.get_json(&url).await.unwrap();
    assert_eq!(body, serde_json::json!({"hello": "world"}));
    let head = http.heads.recv().unwrap();
    assert!(head.starts_with("get /json http/1.1"), "{head}");
    assert!(
        head.contains(&format!("host: web.nucleon.test:{}", http.port)),
        "{head}"
    );
    assert!(head.contains("user-agent: nucleon/"), "{head}");
    assert!(!head.contains("x-request-id"), "{head}");
    assert_eq!(dns.queries(), 1);

    // Inside a request, its id is forwarded; the name comes from the cache.
    let body: serde_json::Value = request_id::scope("req-7", client.get_json(&url))
        .await
        .unwrap();
    assert_eq!(body["hello"], "world");
    let head = http.heads.recv().unwrap();
    assert!(head.contains("x-request-id: req-7"), "{head}");
    assert_eq!(dns.queries(), 1, "the client shares the resolver's cache");

    // An id the caller sets on the request replaces the current one: sent once.
    let response = request_id::scope("req-8", async {
        client
            .send(client.get(&url).header("x-request-id", "job-42"))
            .await
    })
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let head = http.heads.recv().unwrap();
    assert!(head.contains("x-request-id: job-42"), "{head}");
    assert_eq!(head.matches("x-request-id").count(), 1, "{head}");

    // An id the application set that cannot be a header: left off, the call made.
    let body: serde_json::Value = request_id::scope("line\nbreak", client.get_json(&url))
        .await
        .expect("the call is made without the id");
    assert_eq!(body["hello"], "world");
    let head = http.heads.recv().unwrap();
    assert!(!head.contains("x-request-id"), "{head}");
}

#[tokio::test]
async fn failures_are_typed_and_name_what_failed() {
    let dns = TestDns::start(zone());
    let http = TestHttp::start();
    let client = client(&dns).await;

    let error = client
        .get_json::<serde_json::Value>("http://nowhere.nucleon.test/json")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, HttpError::Dns { source: DnsError::NoSuchHost { host }, .. }
            if host == "nowhere.nucleon.test"),
        "{error:?}"
    );
    assert!(
        error.to_string().contains("nowhere.nucleon.test"),
        "{error}"
    );

    let missing = format!("http://web.nucleon.test:{}/missing", http.port);
    let error = client
        .get_json::<serde_json::Value>(&missing)
        .await
        .unwrap_err();
    assert_eq!(
        error.status(),
        Some(reqwest::StatusCode::NOT_FOUND),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(text.contains("GET") && text.contains("/missing"), "{text}");
    assert!(text.contains("no such thing here"), "{text}");

    let bad = format!("http://web.nucleon.test:{}/bad", http.port);
    let error = client
        .get_json::<serde_json::Value>(&bad)
        .await
        .unwrap_err();
    assert!(matches!(error, HttpError::Decode { .. }), "{error:?}");

    // A plain `send` hands back any status.
    let response = client.send(client.get(&missing)).await.unwrap();
    assert_eq!(response.status(), reqwest::StatusCode::NOT_FOUND);

    // Nothing listens: a connection error, marked transient.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    };
    let error = client
        .send(client.get(format!("http://web.nucleon.test:{closed}/")))
        .await
        .unwrap_err();
    assert!(matches!(error, HttpError::Connect { .. }), "{error:?}");
    assert!(error.is_transient());

    // HTTPS to a server that does not speak TLS: a TLS failure, which retrying will
    // not fix (as an untrusted or expired certificate).
    let plain = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let plain_port = plain.local_addr().unwrap().port();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        while let Ok((mut stream, _)) = plain.accept().await {
            let _ = stream
                .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n")
                .await;
        }
    });
    let error = client
        .send(client.get(format!("https://web.nucleon.test:{plain_port}/")))
        .await
        .unwrap_err();
    assert!(matches!(error, HttpError::Tls { .. }), "{error:?}");
    assert!(!error.is_transient(), "{error}");
    assert!(
        error.to_string().contains("TLS handshake failed"),
        "{error}"
    );
}

#[tokio::test]
async fn a_bad_ca_file_fails_the_build_naming_it() {
    let dns = TestDns::start(zone());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ca.pem");
    tokio::fs::write(&path, "not a certificate").await.unwrap();
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    let error = HttpClient::new(
        resolver,
        &HttpClientConfig {
            ca_file: Some(path.clone()),
            ..HttpClientConfig::default()
        },
    )
    .await
    .unwrap_err();
    assert!(matches!(error, HttpError::Build { .. }), "{error:?}");
    assert!(error.to_string().contains("ca.pem"), "{error}");
}

/// A name server that never answers: the call fails as a DNS timeout naming the host,
/// within `connect_timeout` (which includes name resolution), not as an anonymous
/// connection timeout.
#[tokio::test]
async fn a_silent_name_server_is_a_dns_timeout_within_connect_timeout() {
    let dns = SilentDns::start();
    let resolver = Resolver::from_config(&dns_config(dns.addr)).await.unwrap();
    let client = HttpClient::new(
        resolver,
        &HttpClientConfig {
            connect_timeout: Duration::from_millis(400),
            ..HttpClientConfig::default()
        },
    )
    .await
    .unwrap();
    let error = client
        .get_json::<serde_json::Value>("http://web.nucleon.test/json")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, HttpError::Dns { source: DnsError::Timeout { host, .. }, .. }
            if host == "web.nucleon.test"),
        "{error:?}"
    );
}

/// A JSON body past `http_client.max_body_size` is refused, not read whole.
#[tokio::test]
async fn a_body_past_max_body_size_is_refused() {
    let dns = TestDns::start(zone());
    let http = TestHttp::start();
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    let client = HttpClient::new(
        resolver,
        &HttpClientConfig {
            // The test server's `/json` is `{"hello":"world"}`: 17 bytes.
            max_body_size: 10,
            ..HttpClientConfig::default()
        },
    )
    .await
    .unwrap();
    let url = format!("http://web.nucleon.test:{}/json", http.port);
    let error = client
        .get_json::<serde_json::Value>(&url)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, HttpError::BodyTooLarge { limit: 10, .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains("max_body_size"), "{error}");
}
