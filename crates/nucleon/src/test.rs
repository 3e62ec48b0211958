//! In-process testing: call the app without a socket.

use std::net::{Ipv4Addr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt as _;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use nucleon_http::{Body, HttpConfig, HttpService, Request};
use nucleon_runtime::{BoxError, LocalWorker};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::App;
use crate::app::{App as AppInner, Hook};

/// Calls an [`App`] in-process, without a socket, on a single-threaded runtime of its
/// own, set up as one worker of the real runtime would be: its `on_initialise` hooks
/// run; then the worker setup runs as worker 0 on the client's thread (per-worker state,
/// with the `dns` feature the resolver and outbound HTTP client, every
/// [`App::per_worker`] setup) and those adapters start, in order; then its `on_start`
/// hooks. All of it in the `test` environment of its configuration, when there is one.
/// When the client drops (or [`TestClient::stop`] is called), the adapters stop in
/// reverse and the `on_stop` hooks run. Requests go through the same pipeline as on the
/// server (request id, limits, routing, JSON errors); only the HTTP server adapter (the
/// socket) is left out, and with it hyper's own headers: a response gets the
/// `content-length` hyper would write, not its `date`. While a request runs, the
/// client's worker is the thread's: [`nucleon_runtime::current_worker`] is `Some(0)`
/// and [`LocalState`](crate::LocalState)s are its own, even with several clients on one
/// thread.
///
/// The client blocks: use it from plain `#[test]` functions (not inside an async
/// runtime). Tasks that the setup or the handlers spawn run while the client is
/// handling a request (the client's loop only turns then), untracked by the watchdog.
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
    worker: Option<LocalWorker>,
    shutdown_timeout: Duration,
    stop: Vec<Hook>,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("worker", &self.worker)
            .finish_non_exhaustive()
    }
}

impl TestClient {
    /// Starts the app in-process.
    ///
    /// # Panics
    /// When the configuration is invalid, or a hook, the per-worker setup or an adapter
    /// fails to start (a test failure, with the reason).
    pub fn new(mut app: App) -> Self {
        let invalid =
            |e: &dyn std::fmt::Display| -> ! { panic!("TestClient: invalid configuration: {e}") };
        let config = crate::cli::config_for_tests(&app).unwrap_or_else(|e| invalid(&e));
        let http: HttpConfig = config.extract_at("http").unwrap_or_else(|e| invalid(&e));
        let settings = config.runtime_settings().unwrap_or_else(|e| invalid(&e));
        let shutdown_timeout = settings.shutdown_timeout;
        // The offload pools as `[test.runtime.offload]` says, as the runtime sets them
        // at start. They are the process's: the first client (or runtime) of a test
        // binary sets them, and a later one with other settings cannot.
        if !nucleon_runtime::offload::configure(&settings.offload) {
            tracing::warn!(target: "nucleon::test", "TestClient: the offload pools were already set up with other settings in this process; runtime.offload is not applied");
        }
        let plan = app.worker_plan(&config).unwrap_or_else(|e| invalid(&e));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("TestClient: cannot build a tokio runtime");
        let local = tokio::task::LocalSet::new();
        let AppInner {
            router,
            initialise,
            start,
            stop,
            ..
        } = app;
        let worker = local.block_on(&runtime, async {
            run_hooks("on_initialise", initialise).await;
            let worker = LocalWorker::start(config, |worker| plan.setup(worker))
                .await
                .unwrap_or_else(|e| panic!("TestClient: the worker did not start: {e}"));
            run_hooks("on_start", start).await;
            worker
        });
        let service = HttpService::new(&router, &http, Some(worker.drain().clone()));
        Self {
            runtime,
            local,
            service,
            worker: Some(worker),
            shutdown_timeout,
            stop,
        }
    }

    /// Sends any request.
    pub fn request(&self, request: Request) -> TestResponse {
        let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let _entered = self.worker.as_ref().map(LocalWorker::enter);
        self.local.block_on(&self.runtime, async {
            let response = self.service.call(request, remote).await;
            let (mut parts, body) = response.into_parts();
            // hyper writes the length of a body whose size is known (a HEAD response
            // has it already).
            if let Some(length) = http_body::Body::size_hint(&body).exact()
                && !parts.headers.contains_key(CONTENT_LENGTH)
                && !parts.headers.contains_key(TRANSFER_ENCODING)
                && parts.status != StatusCode::NO_CONTENT
                && parts.status != StatusCode::NOT_MODIFIED
            {
                parts
                    .headers
                    .insert(CONTENT_LENGTH, HeaderValue::from(length));
            }
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

    /// Stops the app as dropping the client does (its adapters in reverse, then its
    /// `on_stop` hooks), and returns the first hook's error, as the real server's exit
    /// status would show it (dropping the client only logs it).
    ///
    /// # Errors
    /// The first `on_stop` hook that failed, with its index.
    pub fn stop(mut self) -> Result<(), BoxError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), BoxError> {
        let hooks = std::mem::take(&mut self.stop);
        let worker = self.worker.take();
        let timeout = self.shutdown_timeout;
        self.local.block_on(&self.runtime, async {
            if let Some(worker) = worker {
                worker.stop(timeout).await;
            }
            // Every hook runs, as the runtime runs them; a panic is a failure like an
            // error (this may run in `Drop`, while a failed assertion unwinds: a
            // second panic there would abort the test binary).
            let mut first = None;
            for (index, hook) in hooks.into_iter().enumerate() {
                let outcome = match std::panic::catch_unwind(AssertUnwindSafe(hook)) {
                    Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
                    Err(panic) => Err(panic),
                };
                let result = outcome.unwrap_or_else(|panic| {
                    Err(format!(
                        "panicked: {}",
                        nucleon_runtime::task::panic_message(&*panic)
                    )
                    .into())
                });
                if let Err(e) = result {
                    tracing::error!(target: "nucleon::test", "on_stop hook #{index} failed: {e}");
                    first
                        .get_or_insert_with(|| format!("on_stop hook #{index} failed: {e}").into());
                }
            }
            first.map_or(Ok(()), Err)
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

/// Runs start hooks in order; a failure is a test failure.
async fn run_hooks(stage: &str, hooks: Vec<Hook>) {
    for (index, hook) in hooks.into_iter().enumerate() {
        if let Err(e) = hook().await {
            panic!("TestClient: {stage} hook #{index} failed: {e}");
        }
    }
}

impl Drop for TestClient {
    fn drop(&mut self) {
        // Logged in `shut_down`; `stop` returns it.
        let _ = self.shut_down();
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
