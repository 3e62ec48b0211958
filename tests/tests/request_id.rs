//! One request followed across two services by its `x-request-id`, and by its W3C
//! trace context (`traceparent`).
//!
//! A "backend" app echoes the `x-request-id` it received. A "front" app, whose handler
//! calls the backend with the worker's `HttpClient::current()`, reaches it by a name
//! that only a temporary hosts file knows (its name server is a closed local port, so
//! nothing else answers). Both run as real runtimes on free ports
//! (`App::into_runtime`), are queried over real sockets, and are stopped with their
//! handles; their `run` returns `Ok`.

use std::net::SocketAddr;
use std::path::Path as FsPath;
use std::time::Duration;

use nucleon::http::HeaderMap;
use nucleon::runtime::{Phase, RuntimeError, RuntimeHandle};
use nucleon::{
    App, HttpClient, HttpError, Json, Path, Resolver, StartOptions, State, StatusCode, get,
};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The backend's name: in the temporary hosts file, and nowhere else.
const BACKEND_HOST: &str = "backend.nucleon-tests.internal";

/// A real runtime on a thread of its own.
struct Running {
    addr: SocketAddr,
    handle: RuntimeHandle,
    thread: std::thread::JoinHandle<Result<(), RuntimeError>>,
}

impl Running {
    /// Builds the app on a new thread (an `App` is `!Send`), runs it there, and waits
    /// until it serves.
    async fn start(make: impl FnOnce() -> App + Send + 'static, options: StartOptions) -> Self {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let runtime = make()
                .into_runtime(options)
                .unwrap_or_else(|e| panic!("into_runtime: {e}"));
            let _ = tx.send((
                runtime.addr().expect("the app has routes"),
                runtime.handle(),
            ));
            runtime.run()
        });
        let Ok((addr, handle)) = rx.await else {
            panic!("the runtime was not built: {:?}", thread.join());
        };
        let phase = tokio::time::timeout(Duration::from_secs(20), handle.wait_for(Phase::Serving))
            .await
            .expect("serving within 20 s");
        if phase != Phase::Serving {
            panic!("the runtime did not start: {:?}", thread.join());
        }
        Self {
            addr,
            handle,
            thread,
        }
    }

    /// Drains it with its handle; `run`'s result.
    async fn stop(self) -> Result<(), RuntimeError> {
        self.handle.shutdown();
        tokio::task::spawn_blocking(move || self.thread.join().expect("the runtime panicked"))
            .await
            .expect("joined")
    }
}

/// A response over the wire.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Value,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// `GET path` on a new connection, with `x-request-id` when given.
async fn get_over_tcp(addr: SocketAddr, path: &str, request_id: Option<&str>) -> Reply {
    let id = request_id.map_or_else(String::new, |id| format!("x-request-id: {id}\r\n"));
    get_with_headers(addr, path, &id).await
}

/// `GET path` on a new connection, with `headers` (header lines, each ending in CRLF).
async fn get_with_headers(addr: SocketAddr, path: &str, id: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: front\r\n{id}connection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let text = String::from_utf8(raw).expect("UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("a response head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let body = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    Reply {
        status,
        headers,
        body,
    }
}

/// The backend: what `x-request-id` did this request carry?
async fn echo(headers: HeaderMap) -> Json<Value> {
    let seen = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Json(json!({ "x-request-id": seen }))
}

/// The backend: what `traceparent` did this request carry, and what trace context did
/// its handler run in?
async fn trace_echo(headers: HeaderMap) -> Json<Value> {
    let traceparent = headers
        .get("traceparent")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    Json(json!({ "traceparent": traceparent, "here": trace_of_this_hop() }))
}

/// The current trace context (started if none came), as JSON.
fn trace_of_this_hop() -> Value {
    let here = nucleon::runtime::trace::current().expect("a handler runs in a trace scope");
    json!({
        "trace_id": here.trace_id().to_string(),
        "span_id": here.span_id().to_string(),
        "parent_id": here.parent_id().map(|id| id.to_string()),
    })
}

fn backend() -> App {
    // It calls nobody: no resolver, no client.
    App::new("backend")
        .without_dns()
        .route("/echo", get(echo))
        .route("/trace", get(trace_echo))
}

/// The backend's base URL, by name.
#[derive(Clone)]
struct BackendUrl(String);

/// The front: asks the backend what it saw, with the worker's outbound client.
async fn relay(State(BackendUrl(base)): State<BackendUrl>) -> Result<Json<Value>, HttpError> {
    let client = HttpClient::current().ok_or_else(|| HttpError::internal("no HttpClient"))?;
    let seen: Value = client
        .get_json(format!("{base}/echo"))
        .await
        .map_err(|e| HttpError::new(StatusCode::BAD_GATEWAY, "BAD_GATEWAY", e.to_string()))?;
    Ok(Json(seen))
}

/// The front: how does this worker's resolver answer for `name`?
async fn resolve(Path(name): Path<String>) -> Result<Json<Value>, HttpError> {
    let resolver = Resolver::current().ok_or_else(|| HttpError::internal("no Resolver"))?;
    Ok(Json(match resolver.lookup_ip(&name).await {
        Ok(ips) => json!({ "ips": ips.iter().map(ToString::to_string).collect::<Vec<_>>() }),
        Err(e) => json!({ "error": e.to_string() }),
    }))
}

/// The front: its own trace context, and what the backend saw of it.
async fn relay_trace(State(BackendUrl(base)): State<BackendUrl>) -> Result<Json<Value>, HttpError> {
    let client = HttpClient::current().ok_or_else(|| HttpError::internal("no HttpClient"))?;
    let backend: Value = client
        .get_json(format!("{base}/trace"))
        .await
        .map_err(|e| HttpError::new(StatusCode::BAD_GATEWAY, "BAD_GATEWAY", e.to_string()))?;
    Ok(Json(
        json!({ "front": trace_of_this_hop(), "backend": backend }),
    ))
}

fn front(backend_port: u16) -> App {
    App::new("front")
        .state(BackendUrl(format!("http://{BACKEND_HOST}:{backend_port}")))
        .route("/relay", get(relay))
        .route("/relay-trace", get(relay_trace))
        .route("/resolve/{name}", get(resolve))
}

/// The front's `app.toml`: the hosts file, a name server nobody listens on, a short DNS
/// timeout (no query should be needed for the backend's name anyway).
async fn write_front_config(dir: &FsPath) -> std::path::PathBuf {
    let hosts = dir.join("hosts");
    tokio::fs::write(&hosts, format!("127.0.0.1 {BACKEND_HOST}\n"))
        .await
        .expect("write the hosts file");
    // A local UDP port that was free a moment ago and is closed now.
    let closed = UdpSocket::bind("127.0.0.1:0")
        .await
        .and_then(|s| s.local_addr())
        .expect("a free UDP port");
    let config = dir.join("app.toml");
    let text = format!(
        r#"
[default.http]
host = "127.0.0.1"

[default.dns]
nameservers = ["{closed}"]
hosts_file = "{hosts}"
timeout = "1s"
attempts = 1
ip_preference = "ipv4_only"

[default.http_client]
native_roots = false
timeout = "10s"
"#,
        hosts = hosts.display(),
    );
    tokio::fs::write(&config, text)
        .await
        .expect("write app.toml");
    config
}

fn options() -> StartOptions {
    StartOptions::new()
        .port(0)
        .environment("default")
        .handle_signals(false)
}

#[tokio::test]
async fn the_request_id_travels_from_front_to_backend_and_back() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = write_front_config(dir.path()).await;

    let backend = Running::start(backend, options().workers(1)).await;
    let backend_port = backend.addr.port();
    let front = Running::start(
        move || front(backend_port),
        options().workers(2).config_file(config),
    )
    .await;

    // The backend's name resolves only through the hosts file: another name, which no
    // name server can answer, fails.
    let known = get_over_tcp(front.addr, &format!("/resolve/{BACKEND_HOST}"), None).await;
    assert_eq!(known.body, json!({ "ips": ["127.0.0.1"] }));
    let unknown = get_over_tcp(
        front.addr,
        "/resolve/elsewhere.nucleon-tests.internal",
        None,
    )
    .await;
    let error = unknown.body["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("elsewhere.nucleon-tests.internal"),
        "{}",
        unknown.body
    );

    // The client sends its own id: the backend receives it, and the front answers with it.
    let given = get_over_tcp(front.addr, "/relay", Some("client-chosen-42")).await;
    assert_eq!(given.status, 200, "{}", given.body);
    assert_eq!(given.header("x-request-id"), Some("client-chosen-42"));
    assert_eq!(given.body, json!({ "x-request-id": "client-chosen-42" }));

    // The client sends none: the front makes one, forwards it, and answers with it.
    for _ in 0..4 {
        let made = get_over_tcp(front.addr, "/relay", None).await;
        assert_eq!(made.status, 200, "{}", made.body);
        let id = made
            .header("x-request-id")
            .expect("the front answers with an x-request-id");
        assert!(!id.is_empty());
        assert_ne!(id, "client-chosen-42");
        assert_eq!(
            made.body,
            json!({ "x-request-id": id }),
            "the backend saw the id the front made"
        );
    }

    let front_stopped = front.stop().await;
    let backend_stopped = backend.stop().await;
    assert!(front_stopped.is_ok(), "front: {front_stopped:?}");
    assert!(backend_stopped.is_ok(), "backend: {backend_stopped:?}");
}

#[tokio::test]
async fn the_trace_context_travels_from_front_to_backend() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let config = write_front_config(dir.path()).await;
    let backend = Running::start(backend, options().workers(1)).await;
    let backend_port = backend.addr.port();
    let front = Running::start(
        move || front(backend_port),
        options().workers(1).config_file(config),
    )
    .await;

    // A caller's traceparent: the front continues its trace under the caller's span,
    // and the backend under the front's.
    let sent = "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n";
    let traced = get_with_headers(front.addr, "/relay-trace", sent).await;
    assert_eq!(traced.status, 200, "{}", traced.body);
    let (front_hop, backend_hop) = (&traced.body["front"], &traced.body["backend"]);
    assert_eq!(front_hop["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(front_hop["parent_id"], "00f067aa0ba902b7");
    let front_span = front_hop["span_id"].as_str().expect("a span id");
    assert_eq!(
        backend_hop["traceparent"],
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{front_span}-01"),
        "{}",
        traced.body
    );
    assert_eq!(backend_hop["here"]["trace_id"], front_hop["trace_id"]);
    assert_eq!(backend_hop["here"]["parent_id"], front_span);

    // None sent: the front starts a trace at its outbound call, and the backend is in it.
    let started = get_over_tcp(front.addr, "/relay-trace", None).await;
    assert_eq!(started.status, 200, "{}", started.body);
    let (front_hop, backend_hop) = (&started.body["front"], &started.body["backend"]);
    assert_eq!(
        front_hop["parent_id"],
        Value::Null,
        "a trace started at the front"
    );
    assert_ne!(front_hop["trace_id"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(backend_hop["here"]["trace_id"], front_hop["trace_id"]);
    assert_eq!(backend_hop["here"]["parent_id"], front_hop["span_id"]);

    assert!(front.stop().await.is_ok());
    assert!(backend.stop().await.is_ok());
}
