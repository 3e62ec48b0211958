//! What the properties share: a runtime to run requests on, and sending one.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, StatusCode};
use http_body_util::BodyExt;
use nucleon_http::{Body, HttpConfig, HttpService, Request, Router};

/// Cases per property: 256 (proptest's usual count, written out, as it bounds the
/// time the properties add to `cargo test`), or `PROPTEST_CASES` when set, for a
/// longer search by hand (`PROPTEST_CASES=20000 cargo test …`).
pub(crate) fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

thread_local! {
    /// One runtime per test thread (the service and its handlers' futures are `!Send`,
    /// and a runtime per case would cost more than the case).
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// The service of `router`, without probes or access log (nothing to route around, no
/// log line per request).
pub(crate) fn service(router: &Router) -> HttpService {
    let config = HttpConfig {
        readiness_path: None,
        liveness_path: None,
        access_log: false,
        ..HttpConfig::default()
    };
    HttpService::new(router, &config, None)
}

/// An answer, read whole.
pub(crate) struct Reply {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

impl Reply {
    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Sends `method` `uri` (a path and query) through `service`; `None` when `uri` is not
/// one an HTTP client could send (`http::Uri` refuses it).
pub(crate) fn send(service: &HttpService, method: &str, uri: &str) -> Option<Reply> {
    let uri: http::Uri = uri.parse().ok()?;
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method.parse().expect("a method");
    *request.uri_mut() = uri;
    let remote: SocketAddr = "127.0.0.1:4000".parse().expect("an address");
    let reply = RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let (parts, body) = service.call(request, remote).await.into_parts();
            let body = body.collect().await.expect("a response body").to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
    });
    Some(reply)
}
