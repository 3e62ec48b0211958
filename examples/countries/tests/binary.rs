//! The countries binary, as a user runs it: start it, query it over HTTP, SIGTERM it
//! under concurrent load, and check that every request got a real answer and the
//! process exited 0.

mod support;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::{exchange, get, reserve_port, sigterm};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

async fn start(port: u16, lame_duck: &str) -> (Child, SocketAddr) {
    let child = Command::new(env!("CARGO_BIN_EXE_countries"))
        .args(["--port", &port.to_string(), "-j", "2"])
        .env("NUCLEON_HTTP__LAME_DUCK", lame_duck)
        .env("NUCLEON_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("the countries binary starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    for _ in 0..600 {
        if TcpStream::connect(addr).await.is_ok() {
            return (child, addr);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("countries did not listen on {addr}");
}

#[tokio::test]
async fn countries_binary_serves_the_quickstart_and_exits_0_on_sigterm() {
    let (port, _reserved) = reserve_port();
    let (mut child, addr) = start(port, "0s").await;

    let reply = get(addr, "GET", "/countries/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.json(),
        serde_json::json!(["de", "fr", "gb", "jp", "us"])
    );

    let reply = get(addr, "GET", "/countries/gb/").await;
    assert_eq!(reply.json()["name"], "United Kingdom");

    let reply = get(addr, "GET", "/countries/zz/").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "NOT_FOUND");
    assert!(reply.json()["message"].as_str().unwrap().contains("`zz`"));

    assert_eq!(get(addr, "GET", "/countries/gbr/").await.status, 404);

    let reply = get(addr, "POST", "/countries/gb/").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    assert_eq!(reply.json()["error"], "METHOD_NOT_ALLOWED");

    let reply = get(addr, "GET", "/hits").await;
    assert_eq!(reply.status, 200);
    assert!(reply.json()["hits"].as_u64().unwrap() >= 1);

    sigterm(&child).await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status {status}");
}

#[tokio::test]
async fn drain_under_concurrent_load_answers_every_request_and_exits_0() {
    let (port, _reserved) = reserve_port();
    let (mut child, addr) = start(port, "1s").await;
    let out_of_rotation = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let answered_after_term = Arc::new(AtomicU64::new(0));
    let unavailable = Arc::new(AtomicU64::new(0));
    let terminated = Arc::new(AtomicBool::new(false));

    // A load balancer's view: once readiness says 503, no new connections.
    let checker = tokio::spawn({
        let out = Arc::clone(&out_of_rotation);
        async move {
            loop {
                let ready = match TcpStream::connect(addr).await {
                    Ok(mut s) => exchange(&mut s, "GET", "/readyz").await.ok().flatten(),
                    Err(_) => None,
                };
                if ready.is_none_or(|r| r.status == 503) {
                    out.store(true, Ordering::SeqCst);
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    });

    let mut clients = Vec::new();
    for id in 0..8 {
        let (out, answered, after, unavailable, terminated) = (
            Arc::clone(&out_of_rotation),
            Arc::clone(&answered),
            Arc::clone(&answered_after_term),
            Arc::clone(&unavailable),
            Arc::clone(&terminated),
        );
        clients.push(tokio::spawn(async move {
            let path = if id % 2 == 0 {
                "/countries/gb/"
            } else {
                "/countries/"
            };
            'connections: while !out.load(Ordering::SeqCst) {
                let Ok(mut stream) = TcpStream::connect(addr).await else {
                    break;
                };
                let mut first = true;
                loop {
                    let reply = match exchange(&mut stream, "GET", path).await {
                        Ok(Some(reply)) => reply,
                        // A fresh connection was opened before readiness said 503, so
                        // long before the listener closed: its request is answered.
                        Ok(None) | Err(_) if first => {
                            panic!("the first request of a new connection got no answer")
                        }
                        // An idle keep-alive connection closed by the drain as the next
                        // request went out: never read, so never accepted.
                        Ok(None) | Err(_) => continue 'connections,
                    };
                    first = false;
                    match reply.status {
                        200 => {
                            answered.fetch_add(1, Ordering::SeqCst);
                            if terminated.load(Ordering::SeqCst) {
                                after.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        503 => {
                            assert!(
                                reply.header("retry-after").is_some(),
                                "503 without Retry-After"
                            );
                            assert_eq!(reply.json()["error"], "SERVICE_UNAVAILABLE");
                            unavailable.fetch_add(1, Ordering::SeqCst);
                        }
                        other => panic!("unexpected status {other}"),
                    }
                    if reply.header("connection") == Some("close") {
                        continue 'connections;
                    }
                }
            }
        }));
    }

    while answered.load(Ordering::SeqCst) < 200 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    terminated.store(true, Ordering::SeqCst);
    sigterm(&child).await;

    for client in clients {
        client
            .await
            .expect("no client saw a dropped or truncated response");
    }
    checker.await.unwrap();
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(
        answered_after_term.load(Ordering::SeqCst) > 0,
        "the lame duck kept serving after SIGTERM"
    );
}

/// A second SIGTERM during the drain forces exit (status 1), and the line saying so
/// still reaches stdout: the forced exit writes out the log's queued lines first.
#[tokio::test]
async fn a_second_sigterm_forces_exit_with_its_log_line_written() {
    let (port, _reserved) = reserve_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_countries"))
        .args(["--port", &port.to_string(), "-j", "1"])
        // The drain lasts at least this long: the second signal comes during it.
        .env("NUCLEON_HTTP__LAME_DUCK", "10s")
        .env("NUCLEON_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the countries binary starts");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut listening = false;
    for _ in 0..600 {
        if TcpStream::connect(addr).await.is_ok() {
            listening = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(listening, "countries did not listen on {addr}");
    let served = nucleon_testkit::http::get(addr, "/countries/gb/").await;
    assert_eq!(served.status, 200);
    sigterm(&child).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&child).await;
    let output = tokio::time::timeout(Duration::from_secs(8), child.wait())
        .await
        .expect("the second signal ends the process at once")
        .unwrap();
    assert_eq!(output.code(), Some(1), "{output}");
    let mut stdout = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut child.stdout.take().unwrap(), &mut stdout)
        .await
        .unwrap();
    assert!(stdout.contains("draining"), "{stdout}");
    assert!(
        stdout.contains("received a second time: forcing exit"),
        "the forced exit's own line was lost: {stdout}"
    );
    // The access line, written past tracing by the text log's own sink, in its shape.
    let id = served.header("x-request-id").expect("a request id");
    let access = stdout
        .lines()
        .find(|line| line.contains(" INFO nucleon::access: "))
        .unwrap_or_else(|| panic!("no access line: {stdout}"));
    assert!(
        access.contains(" method=GET path=/countries/gb/ status=200 bytes=")
            && access.ends_with(&format!(" request_id={id}"))
            && access.contains(" remote=127.0.0.1:"),
        "{access}"
    );
}
