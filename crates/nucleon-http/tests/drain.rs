//! The drain under load, over real sockets on 127.0.0.1: clients that send requests
//! back to back on keep-alive connections while the server drains. Every request
//! written on an open connection gets an answer (served, or 503 with `Retry-After`
//! while the pipeline drains):
//! none meets a reset or a bare close (HTTP/1.1's keep-alive race). Over HTTP/2, a
//! request the server did not take is refused by its `GOAWAY` (safe to retry); every
//! other one is answered.

mod common;

use std::net::SocketAddr;
use std::ops::AddAssign;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Reply, Server, parse_reply};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use nucleon_http::{Router, get};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Client tasks, each on a keep-alive connection of its own (HTTP/1.1), or requests
/// under way at once (HTTP/2: [`STREAMS`] on each connection).
const CLIENTS: usize = 64;
/// HTTP/2: requests under way at once on each connection.
const STREAMS: usize = 4;
/// Drains in a row, for each setting.
const ROUNDS: usize = 3;
/// Responses (all clients together) before the drain starts.
const BEFORE_DRAIN: u64 = 3_000;
/// Bounds on each client: requests, and time.
const MOST_REQUESTS: usize = 100_000;
const MOST_TIME: Duration = Duration::from_secs(20);
/// Requests a client sends on one connection before it opens a new one.
const REQUESTS_PER_CONNECTION: usize = 16;
/// The longest a response may take before its request counts as lost.
const REPLY_TIMEOUT: Duration = Duration::from_secs(10);

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "hello" }))
        // A request still in its handler when the listener closes.
        .route(
            "/pause",
            get(|| async {
                tokio::time::sleep(Duration::from_millis(2)).await;
                "paused"
            }),
        )
}

/// What the clients saw.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    /// Requests answered other than 503 (200).
    served: u64,
    /// Requests answered 503.
    unavailable: u64,
    /// 503s without `Retry-After`.
    no_retry_after: u64,
    /// Requests written on an open connection that got no complete response (a reset,
    /// a close, or no answer in time).
    lost: u64,
    /// Connections refused: the listener had closed (nothing was sent).
    refused: u64,
    /// HTTP/2 requests the server refused, unprocessed: streams past its `GOAWAY`'s
    /// last one, or reset with `REFUSED_STREAM` (safe to retry).
    not_processed: u64,
    /// HTTP/2 requests not sent: the connection had gone away.
    unsent: u64,
    /// Clients that stopped on a bound (requests, time) rather than on the drain.
    unfinished: u64,
}

impl Tally {
    /// Counts a response.
    fn count(&mut self, status: u16, retry_after: bool) {
        if status == 503 {
            self.unavailable += 1;
            if !retry_after {
                self.no_retry_after += 1;
            }
        } else {
            self.served += 1;
        }
    }
}

impl AddAssign for Tally {
    fn add_assign(&mut self, other: Self) {
        self.served += other.served;
        self.unavailable += other.unavailable;
        self.no_retry_after += other.no_retry_after;
        self.lost += other.lost;
        self.refused += other.refused;
        self.not_processed += other.not_processed;
        self.unsent += other.unsent;
        self.unfinished += other.unfinished;
    }
}

/// Reads one response, `None` when the connection ends (or fails, or stays silent)
/// before it is complete.
async fn read_one(stream: &mut TcpStream) -> Option<Reply> {
    let read = async {
        let mut buf = Vec::new();
        let mut chunk = [0_u8; 4096];
        loop {
            if let Some((reply, _)) = parse_reply(&buf, false) {
                return Some(reply);
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return None,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(REPLY_TIMEOUT, read)
        .await
        .ok()
        .flatten()
}

/// One client: requests back to back on a keep-alive connection, until a connection
/// is refused (the listener has closed) or a bound is reached. A new connection after
/// each `Connection: close`, and after every [`REQUESTS_PER_CONNECTION`] requests (as a
/// pool that recycles its connections); every other new connection waits a moment
/// before its first request (as a pool that connects ahead), so that some are in the
/// listener's queue, or just accepted, with nothing sent yet when the listener closes.
async fn client(addr: SocketAddr, id: usize, progress: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    let mut connection: Option<(TcpStream, usize)> = None;
    let start = Instant::now();
    for n in 0..MOST_REQUESTS {
        if start.elapsed() > MOST_TIME {
            break;
        }
        let (stream, used) = match &mut connection {
            Some(open) => open,
            None => match connect(addr, n + id).await {
                Some(stream) => connection.insert((stream, 0)),
                None => {
                    tally.refused += 1;
                    break;
                }
            },
        };
        *used += 1;
        let path = if (n + id).is_multiple_of(8) {
            "/pause"
        } else {
            "/"
        };
        let Some(reply) = exchange(stream, path).await else {
            tally.lost += 1;
            connection = None;
            continue;
        };
        progress.fetch_add(1, Ordering::Relaxed);
        tally.count(reply.status, reply.header("retry-after").is_some());
        if *used >= REQUESTS_PER_CONNECTION || says_close(&reply) {
            connection = None;
        }
    }
    tally.unfinished = u64::from(tally.refused == 0);
    tally
}

/// A new connection (`None` when refused); when `n` is odd, after a moment.
async fn connect(addr: SocketAddr, n: usize) -> Option<TcpStream> {
    let stream = TcpStream::connect(addr).await.ok()?;
    if !n.is_multiple_of(2) {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    Some(stream)
}

/// Sends a request for `path` and reads its response: `None` when the connection ends
/// first (or fails, or stays silent).
async fn exchange(stream: &mut TcpStream, path: &str) -> Option<Reply> {
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    read_one(stream).await
}

fn says_close(reply: &Reply) -> bool {
    reply
        .header("connection")
        .is_some_and(|value| value.eq_ignore_ascii_case("close"))
}

/// The protocol the clients speak.
#[derive(Debug, Clone, Copy)]
enum Protocol {
    Http1,
    Http2,
}

/// One drain under load: the clients' tally.
async fn drain_under_load(protocol: Protocol, lame_duck: Duration) -> Tally {
    let server = Server::start(router(), |c| c.lame_duck = lame_duck).await;
    let progress = Arc::new(AtomicU64::new(0));
    let clients: Vec<_> = match protocol {
        Protocol::Http1 => (0..CLIENTS)
            .map(|id| tokio::spawn(client(server.addr, id, Arc::clone(&progress))))
            .collect(),
        Protocol::Http2 => (0..CLIENTS / STREAMS)
            .map(|_| tokio::spawn(h2_client(server.addr, Arc::clone(&progress))))
            .collect(),
    };
    let started = Instant::now();
    while progress.load(Ordering::Relaxed) < BEFORE_DRAIN && started.elapsed() < MOST_TIME {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    server.handle.shutdown();
    let mut tally = Tally::default();
    for client in clients {
        tally += client.await.expect("a client task");
    }
    server.stop().await.expect("drained cleanly");
    tally
}

async fn drains_lose_nothing(protocol: Protocol, lame_duck: Duration) {
    let mut rounds = Vec::new();
    for _ in 0..ROUNDS {
        rounds.push(drain_under_load(protocol, lame_duck).await);
    }
    let what = format!("{protocol:?}, lame duck {lame_duck:?}, each round: {rounds:#?}");
    for tally in &rounds {
        assert_eq!(tally.lost, 0, "requests lost: {what}");
        assert_eq!(tally.no_retry_after, 0, "503 without Retry-After: {what}");
        assert_eq!(
            tally.unfinished, 0,
            "clients that never saw the drain: {what}"
        );
        assert!(tally.served > 0, "{what}");
    }
}

/// An HTTP/2 client: a connection with [`STREAMS`] requests under way at once, each
/// sent as soon as the last is answered; a new connection when it has gone away, until
/// one is refused (or a bound is reached).
async fn h2_client(addr: SocketAddr, progress: Arc<AtomicU64>) -> Tally {
    let mut tally = Tally::default();
    let start = Instant::now();
    while start.elapsed() < MOST_TIME {
        let Ok(stream) = TcpStream::connect(addr).await else {
            tally.refused += 1;
            break;
        };
        let Ok((sender, connection)) =
            http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await
        else {
            // Nothing sent.
            tally.unsent += 1;
            continue;
        };
        let connection = tokio::spawn(connection);
        let streams = (0..STREAMS).map(|n| h2_requests(addr, sender.clone(), n, &progress));
        for streams in futures_util::future::join_all(streams).await {
            tally += streams;
        }
        let _ = connection.await;
    }
    tally.unfinished = u64::from(tally.refused == 0);
    tally
}

/// Requests one after the other on an HTTP/2 connection, until it goes away.
async fn h2_requests(
    addr: SocketAddr,
    mut sender: http2::SendRequest<Empty<Bytes>>,
    id: usize,
    progress: &AtomicU64,
) -> Tally {
    let mut tally = Tally::default();
    for n in 0..MOST_REQUESTS {
        if sender.ready().await.is_err() {
            break;
        }
        let path = if (n + id).is_multiple_of(8) {
            "/pause"
        } else {
            "/"
        };
        let request = http::Request::get(format!("http://{addr}{path}"))
            .body(Empty::new())
            .expect("a request");
        match h2_exchange(&mut sender, request).await {
            Ok((status, retry_after)) => {
                progress.fetch_add(1, Ordering::Relaxed);
                tally.count(status, retry_after);
            }
            Err(error) if error.is_canceled() => tally.unsent += 1,
            Err(error) if refused(&error) => tally.not_processed += 1,
            Err(_) => tally.lost += 1,
        }
    }
    tally
}

/// Sends `request` and reads its whole response: its status, and whether it has a
/// `Retry-After`.
async fn h2_exchange(
    sender: &mut http2::SendRequest<Empty<Bytes>>,
    request: http::Request<Empty<Bytes>>,
) -> Result<(u16, bool), hyper::Error> {
    let response = sender.send_request(request).await?;
    let status = response.status().as_u16();
    let retry_after = response.headers().contains_key("retry-after");
    response.into_body().collect().await?;
    Ok((status, retry_after))
}

/// The server refused the stream without processing it: past its `GOAWAY`'s last
/// stream, or reset with `REFUSED_STREAM`.
fn refused(error: &hyper::Error) -> bool {
    let h2 = std::error::Error::source(error).and_then(|e| e.downcast_ref::<h2::Error>());
    h2.is_some_and(|h2| {
        (h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR))
            || h2.reason() == Some(h2::Reason::REFUSED_STREAM)
    })
}

/// Without a lame duck: the listener closes as the drain starts.
#[tokio::test]
async fn a_drain_under_keep_alive_load_answers_every_request() {
    drains_lose_nothing(Protocol::Http1, Duration::ZERO).await;
}

/// With a lame duck: requests are served normally for a while, then the listener
/// closes.
#[tokio::test]
async fn a_drain_with_a_lame_duck_under_keep_alive_load_answers_every_request() {
    drains_lose_nothing(Protocol::Http1, Duration::from_millis(300)).await;
}

/// HTTP/2: the `GOAWAY` names the last stream the server takes; every stream up to it
/// is answered.
#[tokio::test]
async fn an_http2_drain_under_load_answers_every_stream_it_took() {
    drains_lose_nothing(Protocol::Http2, Duration::ZERO).await;
}

/// HTTP/2 with a lame duck.
#[tokio::test]
async fn an_http2_drain_with_a_lame_duck_answers_every_stream_it_took() {
    drains_lose_nothing(Protocol::Http2, Duration::from_millis(300)).await;
}

/// The keep-alive race, step by step: a connection idle when the listener closes is
/// kept for the grace. The request its client sends meanwhile is served, its answer
/// with `Connection: close`; a connection that stays quiet is closed once
/// the grace is over, with an end of stream, not a reset.
#[tokio::test]
async fn an_idle_connection_is_kept_for_the_grace_and_answered() {
    let server = Server::start(router(), |c| {
        c.drain_idle_grace = Duration::from_secs(2);
    })
    .await;
    let addr = server.addr;
    let mut speaks = TcpStream::connect(addr).await.unwrap();
    let mut quiet = TcpStream::connect(addr).await.unwrap();
    for stream in [&mut speaks, &mut quiet] {
        let reply = exchange(stream, "/").await.expect("served");
        assert_eq!(reply.status, 200);
        assert!(!says_close(&reply));
    }
    server.handle.shutdown();
    // Once a connection is refused, every worker's listener has closed: the two
    // connections were idle through it.
    let mut refused = false;
    for _ in 0..500 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused, "the listener never closed");

    let reply = exchange(&mut speaks, "/")
        .await
        .expect("an answer, not a close");
    assert_eq!(reply.status, 200, "served, not refused");
    assert!(says_close(&reply));

    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), quiet.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "the quiet connection ends with an end of stream: {read:?}"
    );
    server.stop().await.expect("drained cleanly");
}
