//! In-process testing: call the app without a socket, on the real runtime.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use nucleon_http::{Body, HttpConfig, HttpService, Request, Router};
use nucleon_runtime::{BoxError, Phase, RuntimeError, RuntimeHandle, WorkerSetup};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;

use crate::App;
use crate::start::{Front, StartOptions};

pub use nucleon_testkit::{amqp_url, postgres_url, require_tool, wait_until, wait_until_async};

/// Calls an [`App`] in-process, without a socket, on the app's real runtime: one
/// worker, the `test` environment of its configuration when there is one (else
/// `default`), signals left alone. Everything the runtime does for a service happens:
/// `on_initialise` hooks, per-process adapters on the process loop, the worker's setup
/// (per-worker state, with the `dns` feature the resolver and outbound HTTP client,
/// every per-worker adapter and [`App::per_worker`] setup) and its adapters, `on_start`
/// hooks; tasks the app spawns run on the worker's loop all along, between requests
/// too, tracked by the watchdog. When the client drops (or [`TestClient::stop`] is
/// called), the runtime drains as on SIGTERM and its `on_stop` hooks run.
///
/// Requests go to the worker through the same pipeline as on the server (request id,
/// readiness, limits, routing, JSON errors); only the listener is left out, and with it
/// hyper's own headers: a response gets the `content-length` hyper would write, not its
/// `date`. Handlers run on the worker: [`nucleon_runtime::current_worker`] is `Some(0)`
/// and [`LocalState`](crate::LocalState)s are the worker's.
///
/// The client blocks: use it from plain `#[test]` functions (not inside an async
/// runtime). To wait for what a background task does, see [`Probe`] and
/// [`wait_until`]; tests that need PostgreSQL or RabbitMQ get their URL from
/// [`postgres_url`] and [`amqp_url`] (a server that is not there fails the test, unless
/// skipped on purpose).
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
    calls: mpsc::UnboundedSender<Call>,
    handle: RuntimeHandle,
    thread: Option<std::thread::JoinHandle<Result<(), RuntimeError>>>,
    timeout: Duration,
}

impl std::fmt::Debug for TestClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestClient")
            .field("runtime", &self.handle)
            .finish_non_exhaustive()
    }
}

/// How long a request may take before the client fails the test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// One request on its way to the worker, and where its answer goes.
struct Call {
    request: Request,
    reply: std::sync::mpsc::SyncSender<TestResponse>,
}

/// The test client's way into its worker: the requests it sends, served there by the
/// app's pipeline.
#[derive(Clone)]
pub(crate) struct Gateway {
    calls: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Call>>>,
    http: HttpConfig,
}

impl Gateway {
    /// Serves the client's requests on `worker` (a restarted worker takes over).
    pub(crate) fn serve_on(&self, worker: &mut WorkerSetup, router: &Router) {
        let service = HttpService::new(router, &self.http, Some(worker.drain().clone()));
        let calls = Arc::clone(&self.calls);
        worker.spawn("test client", async move {
            let mut calls = calls.lock().await;
            while let Some(call) = calls.recv().await {
                let service = service.clone();
                nucleon_runtime::spawn("test request", async move {
                    let response = answer(&service, call.request).await;
                    let _ = call.reply.send(response);
                });
            }
        });
    }
}

/// Serves one request; the response as the client reads it.
async fn answer(service: &HttpService, request: Request) -> TestResponse {
    let remote = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let response = service.call(request, remote).await;
    let (mut parts, body) = response.into_parts();
    // hyper writes the length of a body whose size is known (a HEAD response has it
    // already).
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
        Err(e) => Bytes::from(format!("TestClient: cannot read the response body: {e}")),
    };
    TestResponse {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

impl TestClient {
    /// Starts the app in-process, and waits until it serves.
    ///
    /// # Panics
    /// When the configuration is invalid, or a hook, the per-worker setup or an adapter
    /// fails to start (a test failure, with the reason).
    pub fn new(app: App) -> Self {
        let invalid =
            |e: &dyn std::fmt::Display| -> ! { panic!("TestClient: invalid configuration: {e}") };
        let config = crate::cli::config_for_tests(&app).unwrap_or_else(|e| invalid(&e));
        let http: HttpConfig = config.extract_at("http").unwrap_or_else(|e| invalid(&e));
        let (calls, receiver) = mpsc::unbounded_channel();
        let gateway = Gateway {
            calls: Arc::new(tokio::sync::Mutex::new(receiver)),
            http,
        };
        let options = StartOptions::new().workers(1).handle_signals(false);
        let runtime = app
            .build_runtime(config, &options, Front::InProcess(gateway))
            .unwrap_or_else(|e| invalid(&e));
        let handle = runtime.handle();
        let thread = std::thread::Builder::new()
            .name("nucleon-test-client".into())
            .spawn(move || runtime.run())
            .expect("TestClient: cannot start the runtime's thread");
        let phase = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("TestClient: cannot build a tokio runtime")
            .block_on(handle.wait_for(Phase::Serving));
        if phase != Phase::Serving {
            let outcome = thread.join();
            match outcome {
                Ok(Err(error)) => panic!("TestClient: the app did not start: {error}"),
                Ok(Ok(())) => panic!("TestClient: the app stopped before it served"),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        Self {
            calls,
            handle,
            thread: Some(thread),
            timeout: REQUEST_TIMEOUT,
        }
    }

    /// The runtime's handle: its phase, its watchdog's figures, its health.
    pub fn handle(&self) -> &RuntimeHandle {
        &self.handle
    }

    /// Sends any request, and waits for its response.
    ///
    /// # Panics
    /// When no answer comes within 60 s, or the app has stopped.
    pub fn request(&self, request: Request) -> TestResponse {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        let what = format!("{} {}", request.method(), request.uri());
        if self.calls.send(Call { request, reply }).is_err() {
            panic!("TestClient: {what}: the app has stopped");
        }
        answer.recv_timeout(self.timeout).unwrap_or_else(|error| {
            panic!(
                "TestClient: {what}: no answer within {:?} ({error})",
                self.timeout
            )
        })
    }

    /// Stops the app as dropping the client does (the drain, then the `on_stop` hooks),
    /// and returns what the runtime returned: the first `on_stop` hook that failed, an
    /// adapter that did not stop cleanly… (dropping the client only logs it).
    ///
    /// # Errors
    /// The runtime's error, as the real server's exit status would show it.
    pub fn stop(mut self) -> Result<(), BoxError> {
        self.shut_down()
    }

    fn shut_down(&mut self) -> Result<(), BoxError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.handle.shutdown();
        match thread.join() {
            Ok(result) => result.map_err(Into::into),
            Err(panic) => Err(format!(
                "the runtime panicked: {}",
                nucleon_runtime::task::panic_message(&*panic)
            )
            .into()),
        }
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

    /// `PATCH path` with `value` as JSON.
    pub fn patch_json(&self, path: &str, value: &impl Serialize) -> TestResponse {
        let body = serde_json::to_vec(value).expect("TestClient: the value serializes");
        self.simple(
            Method::PATCH,
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
        if let Err(error) = self.shut_down() {
            tracing::error!(target: "nucleon::test", "TestClient: the app did not stop cleanly: {error}");
        }
    }
}

/// What background code saw, for a test to wait for: nameko's `entrypoint_waiter`, as
/// a value. The app's code (a consumer, a ticker, a hook) calls [`Probe::record`] with
/// what happened; the test calls [`Probe::wait`], which returns the first value not
/// yet taken, or fails the test, naming the probe, when none comes in time.
///
/// ```
/// use std::time::Duration;
/// use nucleon::test::{Probe, TestClient};
/// use nucleon::App;
///
/// let ticks = Probe::new("a tick");
/// let seen = ticks.clone();
/// let app = App::new("ticker").per_worker(move |worker| {
///     let seen = seen.clone();
///     worker.spawn("ticker", async move {
///         tokio::time::sleep(Duration::from_millis(10)).await;
///         seen.record(1_u32);
///     });
///     Ok(())
/// });
/// let client = TestClient::new(app);
/// assert_eq!(ticks.wait(Duration::from_secs(5)), 1);
/// # drop(client);
/// ```
pub struct Probe<T> {
    name: Arc<str>,
    seen: Arc<(Mutex<std::collections::VecDeque<T>>, std::sync::Condvar)>,
}

impl<T> Clone for Probe<T> {
    fn clone(&self) -> Self {
        Self {
            name: Arc::clone(&self.name),
            seen: Arc::clone(&self.seen),
        }
    }
}

impl<T> std::fmt::Debug for Probe<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Probe")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T> Probe<T> {
    /// A probe named `name` (what the test waits for, in its failure message).
    pub fn new(name: impl Into<Arc<str>>) -> Self {
        Self {
            name: name.into(),
            seen: Arc::default(),
        }
    }

    /// Records that it happened (never blocks: a short lock, a notification).
    pub fn record(&self, value: T) {
        let (seen, arrived) = &*self.seen;
        seen.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push_back(value);
        arrived.notify_all();
    }

    /// Takes the first value recorded and not yet taken, waiting up to `timeout`.
    ///
    /// # Panics
    /// When nothing is recorded in time: `waited 5s for a tick: it did not happen`.
    pub fn wait(&self, timeout: Duration) -> T {
        let (seen, arrived) = &*self.seen;
        let guard = seen
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (mut guard, _) = arrived
            .wait_timeout_while(guard, timeout, |seen| seen.is_empty())
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match guard.pop_front() {
            Some(value) => value,
            None => panic!("waited {timeout:?} for {}: it did not happen", self.name),
        }
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
