//! The server's tests that serve requests: a whole connection, the drain.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use super::conn::{ConnState, Watcher};
use super::listener::{accept_loop, bind};
use super::serve::serve_connection;
use super::shared::{Shared, builders};
use crate::service::HttpService;
use crate::{HttpConfig, Router, get};

fn shared(closing: bool) -> Rc<Shared> {
    async fn hello() -> &'static str {
        "hello"
    }
    let router = Router::new().route("/", get(hello));
    let config = HttpConfig::default();
    let (shutdown, _) = watch::channel(closing);
    let service = HttpService::new(&router, &config, None);
    if closing {
        service.set_closing();
    }
    let (http1, http2) = builders(&config);
    Rc::new(Shared {
        service,
        http1,
        http2,
        header_read_timeout: config.header_read_timeout,
        body_read_timeout: config.body_read_timeout,
        send_timeout: config.send_timeout,
        shutdown,
        closed: Notify::new(),
        connections: Cell::new(0),
        idle: Notify::new(),
        watcher: Watcher::default(),
    })
}

/// The idle grace of the drain ends by the drain's deadline when the adapter has
/// told it.
#[test]
fn the_idle_grace_ends_by_the_drain_deadline() {
    let shared = shared(true);
    let now = Instant::now();
    assert_eq!(shared.grace_end(now), now + Duration::from_secs(1));
    shared
        .watcher
        .set_deadline(now + Duration::from_millis(300));
    assert_eq!(shared.grace_end(now), now + Duration::from_millis(300));
    assert_eq!(
        shared.grace_end(now - Duration::from_secs(5)),
        now - Duration::from_secs(4)
    );
}

/// Past the lame duck a request that arrives on an accepted connection is served
/// and the connection closes: an answer, not a reset.
fn assert_answered(text: &str) {
    assert!(text.starts_with("HTTP/1.1 200"), "got {text:?}");
    assert!(text.ends_with("hello"), "got {text:?}");
    assert!(text.contains("connection: close\r\n"), "got {text:?}");
}

async fn read_all(mut client: TcpStream) -> String {
    let mut text = String::new();
    let _ = client.read_to_string(&mut text).await;
    text
}

/// A connection accepted after the drain began, whose request has already arrived,
/// is answered, not cancelled by `graceful_shutdown` before its first read.
#[tokio::test]
async fn a_connection_started_during_the_drain_answers_its_request() {
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
            let addr = listener.local_addr().unwrap();
            for _ in 0..20 {
                let mut client = TcpStream::connect(addr).await.unwrap();
                client
                    .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
                    .await
                    .unwrap();
                let (stream, remote) = listener.accept().await.unwrap();
                let shared = shared(true);
                shared.connections.set(1);
                serve_connection(shared, ConnState::new(stream, remote)).await;
                let text = read_all(client).await;
                assert_answered(&text);
            }
        })
        .await;
}

/// Connections the kernel accepted before the listener closes are answered, even
/// when the loop has not seen the listener's readiness since they arrived.
#[tokio::test]
#[allow(
    clippy::disallowed_methods,
    reason = "a blocking loopback connect: the loop must not turn before the drain"
)]
async fn the_backlog_is_answered_when_the_listener_closes() {
    use std::io::Write;
    let local = tokio::task::LocalSet::new();
    local
        .run_until(async {
            let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
            let addr = listener.local_addr().unwrap();
            // No `.await` from here to the drain: the loop never learns of these.
            let clients: Vec<std::net::TcpStream> = (0..3)
                .map(|_| {
                    let mut client = std::net::TcpStream::connect(addr).unwrap();
                    client
                        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
                        .unwrap();
                    client
                })
                .collect();
            let shared = shared(true);
            accept_loop(Rc::clone(&shared), listener).await;
            assert_eq!(shared.connections.get(), 3, "every queued connection taken");
            for client in clients {
                client.set_nonblocking(true).unwrap();
                let text = read_all(TcpStream::from_std(client).unwrap()).await;
                assert_answered(&text);
            }
        })
        .await;
}
