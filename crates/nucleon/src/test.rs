//! In-process testing: call the app without a socket.

use std::net::{Ipv4Addr, SocketAddr};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use nucleon_http::{Body, HttpConfig, HttpService, Request};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::App;
use crate::app::App as AppInner;

type Hook = Box<
    dyn FnOnce()
        -> futures_util::future::LocalBoxFuture<'static, Result<(), nucleon_http::BoxError>>,
>;

/// Calls an [`App`] in-process, without a socket, on a single-threaded runtime of its
/// own: the app's per-worker state is registered, its `on_initialise` and `on_start`
/// hooks run (in the `test` environment of its configuration, when there is one), and
/// its `on_stop` hooks run when the client drops. Requests go through the same
/// pipeline as on the server (request id, limits, routing, JSON errors).
///
/// The client blocks: use it from plain `#[test]` functions (not inside an async
/// runtime). Per-worker setup added with [`App::per_worker`] does not run.
///
/// ```
/// use nucleon::test::TestClient;
/// use nucleon::{App, Json, get};
///
/// async fn list() -> Json<Vec<&'static str>> { Json(vec!["gb"]) }
///
/// let client = TestClient::new(App::new("t").route("/countries/", get(list)));
/// let response = client.get("/countries/");
/// assert_eq!(response.status(), 200);
/// assert_eq!(response.json::<Vec<String>>(), ["gb"]);
/// assert_eq!(client.get("/nowhere").json::<serde_json::Value>()["error"], "NOT_FOUND");
/// ```
pub struct TestClient {
    runtime: tokio::runtime::Runtime,
    local: tokio::task::LocalSet,
    service: HttpService,
    stop: Vec<Hook>,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient").finish_non_exhaustive()
    }
}

impl TestClient {
    /// Starts the app in-process.
    ///
    /// # Panics
    /// When the configuration is invalid or a start hook fails (a test failure, with
    /// the reason).
    pub fn new(app: App) -> Self {
        let config = crate::cli::config_for_tests(&app)
            .unwrap_or_else(|e| panic!("TestClient: invalid configuration: {e}"));
        let http: HttpConfig = config
            .extract_at("http")
            .unwrap_or_else(|e| panic!("TestClient: invalid configuration: {e}"));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("TestClient: cannot build a tokio runtime");
        let local = tokio::task::LocalSet::new();
        for register in &app.locals {
            register();
        }
        let AppInner {
            router,
            initialise,
            start,
            stop,
            ..
        } = app;
        local.block_on(&runtime, async {
            for (stage, hooks) in [("on_initialise", initialise), ("on_start", start)] {
                for (index, hook) in hooks.into_iter().enumerate() {
                    if let Err(e) = hook().await {
                        panic!("TestClient: {stage} hook #{index} failed: {e}");
                    }
                }
            }
        });
        let service = HttpService::new(&router, &http, None);
        Self {
            runtime,
            local,
            service,
            stop,
        }
    }

    /// Sends any request.
    pub fn request(&self, request: Request) -> TestResponse {
        let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        self.local.block_on(&self.runtime, async {
            let response = self.service.call(request, remote).await;
            let (parts, body) = response.into_parts();
            let body = match body.collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(e) => panic!("TestClient: cannot read the response body: {e}"),
            };
            TestResponse {
                status: parts.status,
                headers: parts.headers,
                body,
            }
        })
    }

    fn simple(
        &self,
        method: Method,
        path: &str,
        content_type: Option<&'static str>,
        body: Body,
    ) -> TestResponse {
        let mut request = Request::new(body);
        *request.method_mut() = method;
        *request.uri_mut() = path
            .parse()
            .unwrap_or_else(|e| panic!("TestClient: `{path}` is not a valid path: {e}"));
        if let Some(content_type) = content_type {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        self.request(request)
    }

    /// `GET path`.
    pub fn get(&self, path: &str) -> TestResponse {
        self.simple(Method::GET, path, None, Body::empty())
    }

    /// `DELETE path`.
    pub fn delete(&self, path: &str) -> TestResponse {
        self.simple(Method::DELETE, path, None, Body::empty())
    }

    /// `POST path` with `value` as JSON.
    pub fn post_json(&self, path: &str, value: &impl Serialize) -> TestResponse {
        let body = serde_json::to_vec(value).expect("TestClient: the value serializes");
        self.simple(
            Method::POST,
            path,
            Some("application/json"),
            Body::from(body),
        )
    }

    /// `PUT path` with `value` as JSON.
    pub fn put_json(&self, path: &str, value: &impl Serialize) -> TestResponse {
        let body = serde_json::to_vec(value).expect("TestClient: the value serializes");
        self.simple(
            Method::PUT,
            path,
            Some("application/json"),
            Body::from(body),
        )
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        let hooks = std::mem::take(&mut self.stop);
        self.local.block_on(&self.runtime, async {
            for hook in hooks {
                if let Err(e) = hook().await {
                    tracing::error!(target: "nucleon::test", "on_stop hook failed: {e}");
                }
            }
        });
    }
}

/// A response received by [`TestClient`].
#[derive(Debug, Clone)]
pub struct TestResponse {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl TestResponse {
    /// The status.
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// One header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body.
    pub fn bytes(&self) -> &Bytes {
        &self.body
    }

    /// The body as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON.
    ///
    /// # Panics
    /// When it is not a `T` in JSON (a test failure, showing the body).
    pub fn json<T: DeserializeOwned>(&self) -> T {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "TestClient: the body is not the JSON expected ({e}): {}",
                self.text()
            )
        })
    }
}
