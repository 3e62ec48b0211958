//! What the fuzz targets share: serving one request in-process (no socket), as the
//! property tests of `nucleon-http` do.

use std::net::{Ipv4Addr, SocketAddr};

use http::{HeaderMap, StatusCode, Uri};
use http_body_util::BodyExt;
use nucleon_http::{Body, HttpConfig, HttpService, Request, Router};

thread_local! {
    /// The runtime requests run on (the service and its handlers' futures are `!Send`).
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("a current-thread runtime");
}

/// `router`'s service, without probes or access log.
pub fn service(router: &Router) -> HttpService {
    let config = HttpConfig {
        readiness_path: None,
        liveness_path: None,
        access_log: false,
        ..HttpConfig::default()
    };
    HttpService::new(router, &config, None)
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body.
    pub body: Vec<u8>,
}

impl Reply {
    /// The body, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// A header's value, as text (lossy).
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }
}

/// Serves `method` `uri` with `service`.
pub fn send(service: &HttpService, method: &http::Method, uri: Uri) -> Reply {
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method.clone();
    *request.uri_mut() = uri;
    let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, 4000));
    RUNTIME.with(|runtime| {
        runtime.block_on(async {
            let (parts, body) = service.call(request, remote).await.into_parts();
            let body = body.collect().await.expect("a response body").to_bytes();
            Reply {
                status: parts.status,
                headers: parts.headers,
                body: body.to_vec(),
            }
        })
    })
}
