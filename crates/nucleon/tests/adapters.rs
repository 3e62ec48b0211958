//! Adapters through the umbrella crate: per-process and per-worker adapters reached by
//! handlers, background tasks tested through the test client, `app check` refusing a
//! route whose handle no adapter gives, the drain's phases over real sockets, and a
//! service without routes.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nucleon::runtime::{Adapter, AdapterContext, BoxError, Phase, RuntimeError};
use nucleon::test::{Probe, TestClient};
use nucleon::{App, AppError, Dep, Json, StartOptions, get};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// No name server, no system roots: nothing here calls out.
const CONFIG: &str = r#"
[default.dns]
nameservers = ["127.0.0.1:9"]
hosts_file = false

[default.http_client]
native_roots = false

[default.http]
port = 0
lame_duck = "5s"
"#;

/// A broker connection stand-in: counts what was published; one per process.
#[derive(Clone, Default)]
struct Broker {
    published: Arc<AtomicU32>,
}

/// The broker's adapter: `stop` needs `flush` to send what is still buffered, and says
/// whether it had it (its deadline was far enough).
struct BrokerAdapter {
    broker: Broker,
    flush: Duration,
    flushed: Arc<Mutex<Option<Result<(), String>>>>,
}

impl BrokerAdapter {
    fn new(flush: Duration) -> Self {
        Self {
            broker: Broker::default(),
            flush,
            flushed: Arc::default(),
        }
    }
}

impl Adapter for BrokerAdapter {
    type Handle = Broker;

    fn name(&self) -> &str {
        "broker"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<Broker, BoxError> {
        Ok(self.broker.clone())
    }

    async fn stop(&mut self, deadline: Instant) -> Result<(), BoxError> {
        let outcome = if Instant::now() + self.flush <= deadline {
            tokio::time::sleep(self.flush).await;
            Ok(())
        } else {
            Err(format!(
                "{:?} left for a {:?} flush",
                deadline.saturating_duration_since(Instant::now()),
                self.flush
            ))
        };
        *self.flushed.lock().unwrap() = Some(outcome.clone());
        outcome.map_err(Into::into)
    }
}

/// A per-worker cache: refuses to be used once stopped.
#[derive(Clone)]
struct Cache {
    open: Arc<std::sync::atomic::AtomicBool>,
}

struct CacheAdapter(Cache);

impl CacheAdapter {
    fn new() -> Self {
        Self(Cache {
            open: Arc::new(std::sync::atomic::AtomicBool::new(false)),
        })
    }
}

impl Adapter for CacheAdapter {
    type Handle = Cache;

    fn name(&self) -> &str {
        "cache"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<Cache, BoxError> {
        self.0.open.store(true, Ordering::SeqCst);
        Ok(self.0.clone())
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        self.0.open.store(false, Ordering::SeqCst);
        Ok(())
    }
}

/// Publishes through the process's broker, after `?wait` ms, and reads the worker's
/// cache, which must still be open.
async fn publish(Dep(broker): Dep<Broker>, Dep(cache): Dep<Cache>) -> Json<Value> {
    tokio::time::sleep(Duration::from_millis(300)).await;
    let published = broker.published.fetch_add(1, Ordering::SeqCst) + 1;
    Json(json!({
        "published": published,
        "cache_open": cache.open.load(Ordering::SeqCst),
        "worker": nucleon::runtime::current_worker(),
    }))
}

#[test]
fn the_test_client_runs_the_app_s_adapters_and_its_background_tasks() {
    let ticks = Probe::new("three ticks of the background task");
    let seen = ticks.clone();
    let app = App::new("service")
        .default_config(CONFIG)
        .adapter(BrokerAdapter::new(Duration::ZERO))
        .per_worker_adapter(CacheAdapter::new)
        .per_worker(move |worker| {
            let seen = seen.clone();
            worker.spawn("ticker", async move {
                for tick in 1..=3_u32 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    let broker = nucleon::runtime::handle::get::<Broker>().expect("the broker");
                    broker.published.fetch_add(1, Ordering::SeqCst);
                    seen.record(tick);
                }
            });
            Ok(())
        })
        .route("/publish", get(publish));
    let client = TestClient::new(app);
    // The task runs with no request under way: the client's worker is a real one.
    for expected in 1..=3 {
        assert_eq!(ticks.wait(Duration::from_secs(5)), expected);
    }
    let reply = client.get("/publish");
    assert_eq!(reply.status(), 200, "{}", reply.text());
    let body: Value = reply.json();
    assert_eq!(body["published"], 4, "the ticker's three, and this one");
    assert_eq!(body["cache_open"], true);
    assert_eq!(body["worker"], 0);
    // Readiness lists the per-process and the per-worker adapters.
    let ready: Value = client.get("/readyz").json();
    let adapters: Vec<&str> = ready["adapters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["adapter"].as_str().unwrap())
        .collect();
    assert!(
        adapters.contains(&"broker") && adapters.contains(&"cache"),
        "{ready}"
    );
    client.stop().expect("a clean drain");
}

#[test]
#[should_panic(expected = "waited 50ms for a message nobody sends: it did not happen")]
fn a_probe_that_waits_in_vain_fails_naming_what_it_waited_for() {
    Probe::<()>::new("a message nobody sends").wait(Duration::from_millis(50));
}

#[test]
fn check_refuses_a_route_whose_handle_no_adapter_gives() {
    let app = || {
        App::new("service")
            .default_config(CONFIG)
            .per_worker_adapter(CacheAdapter::new)
            .route("/publish", get(publish))
    };
    let error = nucleon::run_from(app(), ["app", "check"]).expect_err("no broker");
    let message = error.to_string();
    assert!(
        matches!(
            error,
            AppError::Runtime(RuntimeError::MissingHandles { .. })
        ),
        "{error:?}"
    );
    assert!(
        message.contains("GET /publish needs `") && message.contains("Broker`"),
        "{message}"
    );
    // With the broker, the check passes.
    nucleon::run_from(
        app().adapter(BrokerAdapter::new(Duration::ZERO)),
        ["app", "check"],
    )
    .expect("every handle is given");
}

async fn exchange(addr: SocketAddr, path: &str) -> Option<(u16, Value)> {
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply).await.ok()?;
    let reply = String::from_utf8(reply).ok()?;
    let (head, body) = reply.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// The issue's timeline, over real sockets: a 10 s shutdown timeout, HTTP's lame duck
/// of 5 s, a per-process broker that needs 2 s to flush after the workers ended; a
/// request in flight at the drain still reaches its worker's cache, not yet stopped.
#[tokio::test]
async fn the_broker_gets_its_flush_after_the_lame_duck_and_in_flight_work_its_cache() {
    // CONFIG's lame duck: 5 s.
    const PHASES: &str = r#"
[default.runtime]
shutdown_timeout = "10s"

"#;
    let broker = BrokerAdapter::new(Duration::from_secs(2));
    let flushed = Arc::clone(&broker.flushed);
    let broker = Arc::new(Mutex::new(Some(broker)));
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let app = App::new("phases")
            .default_config(format!("{CONFIG}{PHASES}").leak())
            .adapter(broker.lock().unwrap().take().unwrap())
            .per_worker_adapter(CacheAdapter::new)
            .route("/publish", get(publish));
        let runtime = app
            .into_runtime(StartOptions::new().workers(1).handle_signals(false))
            .expect("valid");
        let _ = tx.send((runtime.addr().expect("routes"), runtime.handle()));
        runtime.run()
    });
    let (addr, handle) = rx.await.unwrap();
    assert_eq!(handle.wait_for(Phase::Serving).await, Phase::Serving);
    let in_flight = tokio::spawn(exchange(addr, "/publish"));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let drain_started = Instant::now();
    handle.shutdown();
    let (status, body) = in_flight.await.unwrap().expect("an answer");
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["cache_open"], true,
        "the cache was not stopped under it"
    );
    let result = tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap();
    let took = drain_started.elapsed();
    assert_eq!(
        *flushed.lock().unwrap(),
        Some(Ok(())),
        "the broker had its 2 s ({took:?} in all)"
    );
    result.expect("a clean drain");
}

/// A back-end worker: no routes, so no listener; a per-process adapter and a task per
/// worker; it starts, works and drains.
#[test]
fn a_service_without_routes_starts_no_listener_and_drains() {
    let worked = Probe::new("the worker's task");
    let seen = worked.clone();
    let app = App::new("consumer")
        .default_config(CONFIG)
        .adapter(BrokerAdapter::new(Duration::ZERO))
        .per_worker(move |worker| {
            let seen = seen.clone();
            worker.spawn("consume", async move {
                let broker = nucleon::runtime::handle::get::<Broker>().expect("the broker");
                broker.published.fetch_add(1, Ordering::SeqCst);
                seen.record(nucleon::runtime::current_worker());
            });
            Ok(())
        });
    let runtime = app
        .into_runtime(StartOptions::new().workers(2).handle_signals(false))
        .expect("valid");
    assert_eq!(runtime.addr(), None, "no listener");
    let handle = runtime.handle();
    let thread = std::thread::spawn(move || runtime.run());
    let mut workers = vec![
        worked.wait(Duration::from_secs(5)),
        worked.wait(Duration::from_secs(5)),
    ];
    workers.sort();
    assert_eq!(workers, [Some(0), Some(1)]);
    let health = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(handle.health());
    assert!(
        health.iter().all(|h| h.adapter != "http"),
        "no HTTP server: {health:?}"
    );
    handle.shutdown();
    thread.join().unwrap().expect("a clean drain");
}

/// A typo'd table is refused by `check` and at start, naming it, with the table it
/// was meant to be; a table the app declares is known.
#[test]
fn an_unknown_table_is_refused_with_the_closest_name() {
    let app = || {
        App::new("typo").default_config("[default.htp]\nport = 1\n\n[default.ticker]\nevery = 5\n")
    };
    let error = nucleon::run_from(app().config_table("ticker"), ["app", "check"]).expect_err("htp");
    let message = error.to_string();
    assert!(
        message.contains("`htp`") && message.contains("did you mean `http`?"),
        "{message}"
    );
    assert_eq!(error.exit_code(), 3);
    let start = app()
        .config_table("ticker")
        .into_runtime(StartOptions::new().handle_signals(false));
    assert!(matches!(start, Err(AppError::Config(_))), "{start:?}");
    let undeclared = nucleon::run_from(
        App::new("own").default_config("[default.ticker]\nevery = 5\n"),
        ["app", "check"],
    )
    .expect_err("ticker is not declared");
    assert!(
        undeclared.to_string().contains("App::config_table"),
        "{undeclared}"
    );
    nucleon::run_from(
        App::new("own")
            .default_config("[default.ticker]\nevery = 5\n")
            .config_table("ticker"),
        ["app", "check"],
    )
    .expect("declared");
}
