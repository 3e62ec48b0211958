//! `App::into_runtime`: the command line's `start` as an API. A real runtime on a free
//! port, queried over a socket, stopped with its handle; the adapters each worker gets,
//! in order; a bad configuration refused before anything starts.

use std::net::SocketAddr;
use std::time::Duration;

use nucleon::runtime::{
    Adapter, AdapterContext, BoxError, Health, Phase, RuntimeError, RuntimeHandle,
};
use nucleon::{App, AppError, Json, Local, StartOptions, get};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Name servers on a closed local port, no hosts file: nothing on this machine is read
/// or asked, and nothing in these tests looks a name up.
const CONFIG: &str = r#"
[default.http]
port = 8123

[default.dns]
nameservers = ["127.0.0.1:9"]
hosts_file = false

[default.http_client]
native_roots = false
"#;

/// Records, at its start, which adapters started before it on this worker.
struct Probe;

impl Adapter for Probe {
    type Handle = ();

    fn name(&self) -> &str {
        "probe"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<(), BoxError> {
        #[cfg(feature = "dns")]
        let before = json!({
            "resolver": nucleon::Resolver::current().is_some(),
            "client": nucleon::HttpClient::current().is_some(),
        });
        #[cfg(not(feature = "dns"))]
        let before = json!({});
        nucleon::runtime::LocalState::new(Seen {
            worker: ctx.worker(),
            before,
        })
        .register();
        Ok(())
    }

    async fn health(&self) -> Health {
        Health::Healthy
    }

    async fn stop(&mut self, _deadline: std::time::Instant) -> Result<(), BoxError> {
        Ok(())
    }
}

struct Seen {
    worker: Option<usize>,
    before: Value,
}

async fn seen(Local(seen): Local<Seen>) -> Json<Value> {
    #[cfg(feature = "dns")]
    let now = json!({
        "resolver": nucleon::Resolver::current().is_some(),
        "client": nucleon::HttpClient::current().is_some(),
    });
    #[cfg(not(feature = "dns"))]
    let now = json!({});
    Json(seen.with(|s| json!({ "worker": s.worker, "probe_start": s.before, "handler": now })))
}

fn app() -> App {
    App::new("embedded")
        .default_config(CONFIG)
        .per_worker(|worker| {
            worker.adapter(Probe);
            Ok(())
        })
        .route("/seen", get(seen))
}

/// Builds and runs `app` on a thread of its own; returns its address, handle and thread.
fn spawn(
    app: fn() -> App,
    options: StartOptions,
) -> (
    SocketAddr,
    RuntimeHandle,
    std::thread::JoinHandle<Result<(), RuntimeError>>,
) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = app().into_runtime(options).expect("into_runtime");
        tx.send((runtime.addr(), runtime.handle())).expect("send");
        runtime.run()
    });
    let (addr, handle) = rx.recv().expect("the runtime was built");
    (addr.expect("the app has routes"), handle, thread)
}

/// `GET path` over a new connection; the status and the JSON body.
async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.expect("read");
    let reply = String::from_utf8(reply).expect("UTF-8");
    let (head, body) = reply.split_once("\r\n\r\n").expect("a response head");
    let status = head
        .split(' ')
        .nth(1)
        .expect("a status")
        .parse()
        .expect("a number");
    (status, serde_json::from_str(body).expect("a JSON body"))
}

fn adapters_of_worker_0(health: &[nucleon::runtime::AdapterHealth]) -> Vec<&str> {
    health
        .iter()
        .filter(|h| h.worker == Some(0))
        .map(|h| h.adapter.as_str())
        .collect()
}

#[tokio::test]
async fn into_runtime_serves_on_a_free_port_and_stops_with_its_handle() {
    let options = StartOptions::new()
        .port(0)
        .workers(2)
        .environment("default")
        .handle_signals(false);
    let (addr, handle, thread) = spawn(app, options);
    assert_ne!(
        addr.port(),
        0,
        "port 0 was resolved before the workers bound it"
    );
    assert_ne!(addr.port(), 8123, "the option overrides http.port");
    let phase = tokio::time::timeout(Duration::from_secs(10), handle.wait_for(Phase::Serving))
        .await
        .expect("serving within 10 s");
    assert_eq!(phase, Phase::Serving, "{:?}", thread.join());
    assert_eq!(handle.workers(), 2);

    let (status, body) = get_json(addr, "/seen").await;
    assert_eq!(status, 200, "{body}");

    // A second instance on the same port is refused, not let in to share it.
    let second = app().into_runtime(
        StartOptions::new()
            .port(addr.port())
            .environment("default")
            .handle_signals(false),
    );
    match second {
        Err(AppError::Http(error)) => {
            let message = error.to_string();
            assert!(
                message.contains(&addr.to_string()) && message.contains("in use"),
                "{message}"
            );
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a second instance was let in on {addr}"),
    }
    #[cfg(feature = "dns")]
    {
        // The DNS adapters run before the per_worker setup's adapters, so those can use
        // them at start; handlers see them too.
        assert_eq!(
            body["probe_start"],
            json!({"resolver": true, "client": true})
        );
        assert_eq!(body["handler"], json!({"resolver": true, "client": true}));
        assert_eq!(
            adapters_of_worker_0(&handle.health().await),
            ["dns", "http-client", "probe", "http"]
        );
    }
    #[cfg(not(feature = "dns"))]
    assert_eq!(
        adapters_of_worker_0(&handle.health().await),
        ["probe", "http"]
    );

    handle.shutdown();
    let result = tokio::task::spawn_blocking(move || thread.join().expect("no panic"))
        .await
        .expect("joined");
    assert!(result.is_ok(), "run returned {result:?}");
    assert_eq!(handle.phase(), Phase::Stopped);
}

#[cfg(feature = "dns")]
#[tokio::test]
async fn without_dns_leaves_the_resolver_and_client_out() {
    let options = StartOptions::new()
        .port(0)
        .workers(1)
        .environment("default")
        .handle_signals(false);
    let (addr, handle, thread) = spawn(|| app().without_dns(), options);
    let phase = tokio::time::timeout(Duration::from_secs(10), handle.wait_for(Phase::Serving))
        .await
        .expect("serving within 10 s");
    assert_eq!(phase, Phase::Serving, "{:?}", thread.join());

    let (status, body) = get_json(addr, "/seen").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["handler"], json!({"resolver": false, "client": false}));
    assert_eq!(
        adapters_of_worker_0(&handle.health().await),
        ["probe", "http"]
    );

    handle.shutdown();
    let result = tokio::task::spawn_blocking(move || thread.join().expect("no panic"))
        .await
        .expect("joined");
    assert!(result.is_ok(), "run returned {result:?}");
}

#[test]
fn a_bad_configuration_is_refused_before_anything_starts() {
    // An app with routes reads its `http` table (one without starts no listener).
    let error = App::new("bad")
        .route("/", get(seen))
        .default_config("[default.http]\nport = \"eighty\"\n")
        .into_runtime(StartOptions::new().handle_signals(false))
        .expect_err("invalid http.port");
    assert!(matches!(error, AppError::Config(_)), "{error:?}");
    assert_eq!(error.exit_code(), 3);
    assert!(error.to_string().contains("port"), "{error}");

    let error = App::new("bad")
        .route("/", get(seen))
        .into_runtime(StartOptions::new().host("not an address"))
        .expect_err("invalid host");
    assert_eq!(error.exit_code(), 3, "{error}");
}
