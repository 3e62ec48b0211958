//! `/metrics`: real traffic over real sockets, then the scrape read and its values
//! checked: requests by route pattern (one series for 10,000 paths), status classes,
//! a 413, a watchdog slow poll, the process's figures; the endpoint on a port of its
//! own; metrics turned off.
//!
//! The recorder is the process's: each test uses routes of its own, so their series
//! do not mix.

use std::net::SocketAddr;
use std::time::Duration;

use nucleon::runtime::{Phase, RuntimeError, RuntimeHandle};
use nucleon::{App, Json, Path, StartOptions, get, post};
use nucleon_testkit::http::{Connection, get as http_get, request};
use nucleon_testkit::prometheus::Scrape;

const CONFIG: &str = r#"
[default.http]
body_limit = 1024

[default.runtime.watchdog]
threshold = "50ms"

[default.metrics]
flush_interval = "100ms"

[default.dns]
nameservers = ["127.0.0.1:9"]
hosts_file = false

[default.http_client]
native_roots = false
"#;

async fn item(Path(id): Path<u32>) -> Json<u32> {
    Json(id)
}

async fn upload(body: bytes::Bytes) -> Json<usize> {
    Json(body.len())
}

/// Blocks its worker for 200 ms: the watchdog's slow poll.
#[allow(
    clippy::disallowed_methods,
    reason = "the test's point: a handler that blocks its worker"
)]
async fn block() -> &'static str {
    std::thread::sleep(Duration::from_millis(200));
    "done"
}

async fn offloaded() -> Json<u32> {
    Json(nucleon::runtime::offload::blocking(|| 7).await.unwrap_or(0))
}

fn start(
    app: App,
) -> (
    SocketAddr,
    RuntimeHandle,
    std::thread::JoinHandle<Result<(), RuntimeError>>,
) {
    let options = StartOptions::new()
        .port(0)
        .workers(2)
        .environment("default")
        .handle_signals(false);
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = app.into_runtime(options).expect("into_runtime");
        tx.send((runtime.addr(), runtime.handle())).expect("send");
        runtime.run()
    });
    let (addr, handle) = rx.recv().expect("the runtime was built");
    (addr.expect("the app has routes"), handle, thread)
}

async fn serving(handle: &RuntimeHandle) {
    let phase = tokio::time::timeout(Duration::from_secs(10), handle.wait_for(Phase::Serving))
        .await
        .expect("serving within 10 s");
    assert_eq!(phase, Phase::Serving);
}

async fn stop(handle: RuntimeHandle, thread: std::thread::JoinHandle<Result<(), RuntimeError>>) {
    handle.shutdown();
    tokio::task::spawn_blocking(move || thread.join().expect("no panic"))
        .await
        .expect("joined")
        .expect("a clean drain");
}

async fn scrape(addr: SocketAddr) -> Scrape {
    let reply = http_get(addr, "/metrics").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Scrape::parse(&reply.text())
}

/// Scrapes until `ready` holds (the workers flush every 100 ms), 30 s at most.
async fn scrape_until(addr: SocketAddr, ready: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        let scrape = scrape(addr).await;
        if ready(&scrape) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the figures did not arrive within 30 s: {:#?}",
            scrape
                .series(REQUESTS)
                .into_iter()
                .chain(scrape.series("nucleon_http_request_duration_seconds_count"))
                .chain(scrape.series("nucleon_http_request_body_bytes_total"))
                .chain(scrape.series("nucleon_watchdog_slow_polls_total"))
                .collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

const REQUESTS: &str = "nucleon_http_requests_total";

#[tokio::test]
async fn the_scrape_counts_real_traffic_by_route_pattern() {
    let app = App::new("metrics")
        .default_config(CONFIG)
        .route("/items/{id}", get(item))
        .route("/upload", post(upload))
        .route("/block", get(block))
        .route("/offloaded", get(offloaded));
    let (addr, handle, thread) = start(app);
    serving(&handle).await;

    // 10,000 distinct paths on one pattern, over two keep-alive connections.
    let half = |from: u32| async move {
        let mut conn = Connection::open(addr).await;
        for id in from..from + 5_000 {
            let reply = conn.send("GET", &format!("/items/{id}"), &[], b"").await;
            assert_eq!(reply.status, 200);
        }
    };
    tokio::join!(half(0), half(5_000));
    // A 413: a declared body past the limit (refused before routing).
    let big = vec![b'x'; 2048];
    let reply = request(addr, "POST", "/upload", &[], &big).await;
    assert_eq!(reply.status, 413, "{}", reply.text());
    // A body within the limit, a 404, a slow poll, an offloaded call.
    assert_eq!(
        request(addr, "POST", "/upload", &[], b"12345").await.status,
        200
    );
    assert_eq!(
        request(addr, "DELETE", "/nowhere", &[], b"").await.status,
        404
    );
    assert_eq!(http_get(addr, "/block").await.status, 200);
    assert_eq!(http_get(addr, "/offloaded").await.status, 200);

    let items = [
        ("route", "/items/{id}"),
        ("method", "GET"),
        ("status", "2xx"),
    ];
    // Each worker hands its figures over on its own tick: wait until every one the
    // test checks has arrived (a scrape can fall between two workers' flushes).
    let scrape = scrape_until(addr, |s| {
        s.value(REQUESTS, &items) == Some(10_000.0)
            && s.value(
                "nucleon_http_request_duration_seconds_count",
                &[("route", "/items/{id}"), ("method", "GET")],
            ) == Some(10_000.0)
            && s.value(
                REQUESTS,
                &[("route", "/block"), ("method", "GET"), ("status", "2xx")],
            ) == Some(1.0)
            && s.value(
                REQUESTS,
                &[("route", "/upload"), ("method", "POST"), ("status", "2xx")],
            ) == Some(1.0)
            && s.value(
                REQUESTS,
                &[("route", "none"), ("method", "POST"), ("status", "4xx")],
            ) == Some(1.0)
            && s.value(
                REQUESTS,
                &[("route", "none"), ("method", "DELETE"), ("status", "4xx")],
            ) == Some(1.0)
            && s.value("nucleon_http_request_body_bytes_total", &[]) == Some(2048.0 + 5.0)
            && s.sum(
                "nucleon_watchdog_slow_polls_total",
                &[("task", "GET /block")],
            ) >= 1.0
    })
    .await;

    // One series for the 10,000 paths, none named by a path.
    let item_series: Vec<_> = scrape
        .series(REQUESTS)
        .into_iter()
        .filter(|s| s.labels["route"].starts_with("/items"))
        .collect();
    assert_eq!(item_series.len(), 1, "{item_series:#?}");
    assert_eq!(
        scrape.value(
            "nucleon_http_request_duration_seconds_count",
            &[("route", "/items/{id}"), ("method", "GET")]
        ),
        Some(10_000.0)
    );
    // Status classes and the unrouted.
    assert_eq!(
        scrape.value(
            REQUESTS,
            &[("route", "/upload"), ("method", "POST"), ("status", "2xx")]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value(
            REQUESTS,
            &[("route", "none"), ("method", "POST"), ("status", "4xx")]
        ),
        Some(1.0),
        "the 413, refused before routing"
    );
    assert_eq!(
        scrape.value(
            REQUESTS,
            &[("route", "none"), ("method", "DELETE"), ("status", "4xx")]
        ),
        Some(1.0),
        "the 404"
    );
    assert_eq!(
        scrape.value(
            "nucleon_http_rejected_total",
            &[("reason", "body_too_large")]
        ),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("nucleon_http_request_body_bytes_total", &[]),
        Some(2048.0 + 5.0),
        "the declared bodies"
    );
    assert!(scrape.value("nucleon_http_response_body_bytes_total", &[]) > Some(10_000.0));
    assert_eq!(
        scrape.value("nucleon_http_requests_in_flight", &[]),
        Some(1.0),
        "the scrape itself"
    );
    // The watchdog's slow poll, named by its route, and its duration.
    assert_eq!(
        scrape.sum(
            "nucleon_watchdog_slow_polls_total",
            &[("task", "GET /block")]
        ),
        1.0
    );
    assert!(
        scrape.value("nucleon_watchdog_slow_poll_seconds_sum", &[]) >= Some(0.19),
        "{:#?}",
        scrape.series("nucleon_watchdog_slow_poll_seconds_sum")
    );
    // The offload pool, the drain, the process.
    assert!(scrape.value("nucleon_offload_completed_total", &[("pool", "blocking")]) >= Some(1.0));
    assert_eq!(scrape.value("nucleon_draining", &[]), Some(0.0));
    assert!(scrape.value("process_resident_memory_bytes", &[]) > Some(0.0));
    assert!(scrape.value("process_open_fds", &[]) > Some(0.0));

    stop(handle, thread).await;
}

#[tokio::test]
async fn the_endpoint_can_have_a_port_of_its_own() {
    let port = {
        let probe = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        probe.local_addr().expect("addr").port()
    };
    let config: &'static str = Box::leak(
        CONFIG
            .replace(
                "flush_interval = \"100ms\"",
                &format!("flush_interval = \"100ms\"\nport = {port}\npath = \"/internal/metrics\""),
            )
            .into_boxed_str(),
    );
    let app = App::new("own-port")
        .default_config(config)
        .route("/own/{n}", get(item));
    let (addr, handle, thread) = start(app);
    serving(&handle).await;
    assert_eq!(http_get(addr, "/own/1").await.status, 200);
    assert_eq!(
        http_get(addr, "/internal/metrics").await.status,
        404,
        "not on the app's listener"
    );
    let admin: SocketAddr = format!("127.0.0.1:{port}").parse().expect("addr");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let reply = http_get(admin, "/internal/metrics").await;
        assert_eq!(reply.status, 200);
        let scrape = Scrape::parse(&reply.text());
        if scrape.value(
            REQUESTS,
            &[("route", "/own/{n}"), ("method", "GET"), ("status", "2xx")],
        ) == Some(1.0)
        {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{scrape:#?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop(handle, thread).await;
}

#[tokio::test]
async fn metrics_can_be_turned_off() {
    let config: &'static str = Box::leak(
        CONFIG
            .replace("flush_interval = \"100ms\"", "enabled = false")
            .into_boxed_str(),
    );
    let app = App::new("quiet")
        .default_config(config)
        .route("/quiet/{n}", get(item));
    let (addr, handle, thread) = start(app);
    serving(&handle).await;
    assert_eq!(http_get(addr, "/quiet/1").await.status, 200);
    assert_eq!(http_get(addr, "/metrics").await.status, 404);
    stop(handle, thread).await;
}
