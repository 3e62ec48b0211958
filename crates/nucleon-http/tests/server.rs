//! The server over real sockets on 127.0.0.1: routing, error bodies, limits, the
//! watchdog naming a route, `!Send` handlers, draining.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use common::{Server, get, raw, read_reply, request};
use nucleon_http::{
    Body, HttpError, Json, Local, Path, Query, Request, RequestId, Router, State, StatusCode,
    get as route_get, post,
};
use nucleon_runtime::LocalState;
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[derive(Deserialize, serde::Serialize)]
struct Country {
    code: String,
    population: u64,
}

async fn countries() -> Json<Vec<&'static str>> {
    Json(vec!["fr", "gb"])
}

async fn country(Path(code): Path<String>) -> Result<Json<serde_json::Value>, HttpError> {
    match code.as_str() {
        "gb" => Ok(Json(
            serde_json::json!({"code": "gb", "name": "United Kingdom"}),
        )),
        _ => Err(HttpError::not_found(format!(
            "no country with code `{code}`"
        ))),
    }
}

async fn create(Json(country): Json<Country>) -> (StatusCode, Json<Country>) {
    (StatusCode::CREATED, Json(country))
}

#[derive(Deserialize)]
struct Paging {
    page: u32,
    size: Option<u32>,
}

async fn item(Path((id, part)): Path<(u32, String)>, Query(q): Query<Paging>) -> String {
    format!("{id}/{part} page {} size {:?}", q.page, q.size)
}

/// A `!Send` handler: an `Rc` lives across an await.
async fn not_send(Path(name): Path<String>) -> String {
    let shared = Rc::new(name);
    tokio::task::yield_now().await;
    format!("hello, {shared} (rc count {})", Rc::strong_count(&shared))
}

async fn fails() -> Result<String, HttpError> {
    Err(HttpError::internal("database exploded: secret=hunter2"))
}

async fn panics() -> String {
    panic!("handler bug")
}

#[allow(
    clippy::disallowed_methods,
    reason = "this handler blocks its worker on purpose"
)]
async fn blocks() -> &'static str {
    std::thread::sleep(Duration::from_millis(300));
    "done blocking"
}

async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_millis(300)).await;
    "slow but fine"
}

async fn hits(Local(hits): Local<u64>) -> Json<u64> {
    Json(hits.with_mut(|n| {
        *n += 1;
        *n
    }))
}

#[derive(Clone)]
struct Greeting(Arc<str>);

async fn greet(State(greeting): State<Greeting>, RequestId(id): RequestId) -> String {
    format!("{} ({id})", greeting.0)
}

fn mounted() -> impl tower::Service<
    Request,
    Response = http::Response<Body>,
    Error = Infallible,
    Future = impl Future<Output = Result<http::Response<Body>, Infallible>> + Send,
> + Clone
+ Send
+ Sync {
    tower::service_fn(|request: Request| async move {
        let text = format!("legacy saw {}", request.uri());
        Ok::<_, Infallible>(http::Response::new(Body::from(text)))
    })
}

fn router() -> Router {
    Router::new()
        .state(Greeting("hello".into()))
        .route("/countries/", route_get(countries).post(create))
        .route("/countries/{code:[a-z]{2}}/", route_get(country))
        .route("/items/{id}/{part}", route_get(item))
        .route("/rc/{name}", route_get(not_send))
        .route("/fails", route_get(fails))
        .route("/panics", route_get(panics))
        .route("/block", route_get(blocks))
        .route("/slow", route_get(slow))
        .route("/hits", route_get(hits))
        .route("/greet", route_get(greet))
        .route("/echo", post(|body: String| async move { body }))
        // One pattern, two routes: GET for numbers only, POST for any id.
        .route(
            "/things/{id:[0-9]+}",
            route_get(|Path(id): Path<u32>| async move { format!("thing {id}") }),
        )
        .route(
            "/things/{id}",
            post(|Path(id): Path<String>| async move { format!("made {id}") }),
        )
        .mount("/legacy", mounted())
}

/// An HTTP/2 client with prior knowledge (h2c, no upgrade) on a new connection to
/// `addr`, and the task that drives that connection.
async fn h2_client<B>(
    addr: SocketAddr,
) -> (
    hyper::client::conn::http2::SendRequest<B>,
    tokio::task::JoinHandle<Result<(), hyper::Error>>,
)
where
    B: http_body::Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .expect("an HTTP/2 handshake without upgrade");
    (sender, tokio::spawn(connection))
}

async fn server() -> Server {
    Server::start(router(), |c| {
        c.max_header_size = 4096;
        c.body_limit = 1024;
        c.header_read_timeout = Duration::from_millis(500);
    })
    .await
}

#[tokio::test]
async fn routing_params_constraints_methods_head_and_mount() {
    let server = server().await;
    let addr = server.addr;

    let reply = get(addr, "/countries/").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.json(), serde_json::json!(["fr", "gb"]));
    assert!(reply.header("x-request-id").is_some());

    let reply = get(addr, "/countries/gb/").await;
    assert_eq!(reply.json()["name"], "United Kingdom");

    // The handler's own 404 names the code.
    let reply = get(addr, "/countries/zz/").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "NOT_FOUND");
    assert!(reply.json()["message"].as_str().unwrap().contains("`zz`"));

    // A constraint that fails is a 404, as if there were no route.
    let reply = get(addr, "/countries/gbr/").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "NOT_FOUND");
    let reply = get(addr, "/nowhere").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.json()["error"], "NOT_FOUND");

    // A missing trailing slash redirects.
    let reply = get(addr, "/countries/gb").await;
    assert_eq!(reply.status, 308);
    assert_eq!(reply.header("location"), Some("/countries/gb/"));

    // 405 with Allow.
    let reply = request(addr, "DELETE", "/countries/gb/", &[], b"").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    assert_eq!(reply.json()["error"], "METHOD_NOT_ALLOWED");
    let reply = request(addr, "PUT", "/countries/", &[], b"").await;
    assert_eq!(reply.header("allow"), Some("GET, POST, HEAD"));

    // HEAD is served by GET, without a body but with its length.
    let reply = request(addr, "HEAD", "/countries/", &[], b"").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-length"), Some("11"));
    assert!(reply.body.is_empty());

    // Typed tuple path and query; a bad one names the field.
    let reply = get(addr, "/items/7/wheel?page=2").await;
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        "7/wheel page 2 size None"
    );
    let reply = get(addr, "/items/seven/wheel?page=2").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "INVALID_PARAMETERS");
    assert!(
        reply.json()["messages"]["id"]
            .as_str()
            .unwrap()
            .contains("`seven`")
    );
    let reply = get(addr, "/items/7/wheel").await;
    assert_eq!(reply.json()["messages"]["page"], "is required");

    // The mounted tower service sees the path without its prefix.
    let reply = get(addr, "/legacy/v1/things?x=1").await;
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        "legacy saw /v1/things?x=1"
    );
    let reply = get(addr, "/legacy").await;
    assert_eq!(String::from_utf8_lossy(&reply.body), "legacy saw /");
    let reply = get(addr, "/legacy/").await;
    assert_eq!(String::from_utf8_lossy(&reply.body), "legacy saw /");
    let reply = request(addr, "POST", "/legacy/", &[], b"").await;
    assert_eq!(String::from_utf8_lossy(&reply.body), "legacy saw /");

    // Routes that share a pattern with different constraints: the method picks
    // among those whose constraints the path meets, and 405's Allow names them all.
    let reply = get(addr, "/things/42").await;
    assert_eq!(String::from_utf8_lossy(&reply.body), "thing 42");
    let reply = request(addr, "POST", "/things/42", &[], b"").await;
    assert_eq!(String::from_utf8_lossy(&reply.body), "made 42");
    let reply = request(addr, "POST", "/things/abc", &[], b"").await;
    assert_eq!(String::from_utf8_lossy(&reply.body), "made abc");
    let reply = get(addr, "/things/abc").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("POST"));
    let reply = request(addr, "DELETE", "/things/42", &[], b"").await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD, POST"));

    // Shared state and the client's request id.
    let reply = request(addr, "GET", "/greet", &[("x-request-id", "abc-123")], b"").await;
    assert_eq!(String::from_utf8_lossy(&reply.body), "hello (abc-123)");
    assert_eq!(reply.header("x-request-id"), Some("abc-123"));

    server.stop().await.expect("clean stop");
}

/// A client that sends a whole large body before it reads (as Python's `requests`
/// does) gets the 413, not a reset: the server reads and drops what the client still
/// sends after the answer, instead of closing on unread bytes.
#[tokio::test]
async fn a_large_upload_gets_its_413_not_a_reset() {
    let server = server().await;
    let body = vec![b'x'; 4 * 1024 * 1024];
    for (what, head) in [
        (
            "declared",
            format!(
                "POST /countries/ HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
                body.len()
            ),
        ),
        (
            "chunked",
            "POST /echo HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n".to_owned(),
        ),
    ] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        stream.write_all(head.as_bytes()).await.unwrap();
        let written = if what == "chunked" {
            let mut all = Ok(());
            for piece in body.chunks(64 * 1024) {
                all = all.and(
                    stream
                        .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                        .await,
                );
                all = all.and(stream.write_all(piece).await);
                all = all.and(stream.write_all(b"\r\n").await);
            }
            all.and(stream.write_all(b"0\r\n\r\n").await)
        } else {
            stream.write_all(&body).await
        };
        assert!(written.is_ok(), "{what}: the upload was cut: {written:?}");
        let reply = read_reply(&mut stream, false).await;
        assert_eq!(reply.status, 413, "{what}");
        assert_eq!(reply.json()["error"], "PAYLOAD_TOO_LARGE", "{what}");
        assert_eq!(reply.header("connection"), Some("close"), "{what}");
    }
    // The worker goes on.
    assert_eq!(get(server.addr, "/countries/").await.status, 200);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn malformed_requests_get_json_errors_and_the_worker_goes_on() {
    let server = server().await;
    let addr = server.addr;
    let json = [("content-type", "application/json")];

    let reply = request(
        addr,
        "POST",
        "/countries/",
        &json,
        b"{\"code\": \"gb\",\n \"population\": }",
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "INVALID_JSON");
    let message = reply.json()["message"].as_str().unwrap().to_owned();
    assert!(message.contains("line 2, column 16"), "{message}");

    let reply = request(addr, "POST", "/countries/", &json, br#"{"code": "gb"}"#).await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "INVALID_PARAMETERS");
    assert_eq!(reply.json()["messages"]["population"], "is required");

    let reply = request(
        addr,
        "POST",
        "/countries/",
        &[("content-type", "text/plain")],
        b"gb",
    )
    .await;
    assert_eq!(reply.status, 415);
    assert_eq!(reply.json()["error"], "UNSUPPORTED_MEDIA_TYPE");

    let big = format!("{{\"code\": \"{}\", \"population\": 1}}", "x".repeat(4000));
    let reply = request(addr, "POST", "/countries/", &json, big.as_bytes()).await;
    assert_eq!(reply.status, 413);
    assert_eq!(reply.json()["error"], "PAYLOAD_TOO_LARGE");

    // Chunked, so no content-length: the limit still holds while streaming.
    let mut chunked = b"POST /echo HTTP/1.1\r\nhost: t\r\nconnection: close\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..3 {
        chunked.extend_from_slice(format!("{:x}\r\n{}\r\n", 600, "y".repeat(600)).as_bytes());
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let reply = raw(addr, &chunked).await;
    assert_eq!(reply.status, 413);

    let huge = "v".repeat(5000);
    let reply = request(addr, "GET", "/countries/", &[("x-big", &huge)], b"").await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.json()["error"], "HEADERS_TOO_LARGE");

    let reply = get(addr, "/fails").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"], "INTERNAL_ERROR");
    assert!(
        !String::from_utf8_lossy(&reply.body).contains("hunter2"),
        "no internals to the client"
    );

    let reply = get(addr, "/panics").await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.json()["error"], "INTERNAL_ERROR");

    // Everyone else is still served.
    let reply = request(
        addr,
        "POST",
        "/countries/",
        &json,
        br#"{"code": "gb", "population": 67}"#,
    )
    .await;
    assert_eq!(reply.status, 201);
    assert_eq!(reply.json()["population"], 67);

    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn slowloris_is_cut_with_408_while_a_normal_client_is_served() {
    let server = server().await;
    let addr = server.addr;
    let mut slow = TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /countries/ HTTP/1.1\r\nhost: t\r\nx-drip: ")
        .await
        .unwrap();
    // Meanwhile a normal client gets its answer.
    let reply = get(addr, "/countries/").await;
    assert_eq!(reply.status, 200);
    // The slow client never finishes its headers: it is answered 408 and closed.
    let reply = read_reply(&mut slow, false).await;
    assert_eq!(reply.status, 408);
    assert_eq!(reply.json()["error"], "REQUEST_TIMEOUT");
    assert_eq!(get(addr, "/countries/").await.status, 200);
    server.stop().await.expect("clean stop");
}

/// A keep-alive connection idle past the header read timeout is closed (no 408: no
/// request was under way); one whose handler takes longer than the timeout is not cut
/// while it runs.
#[tokio::test]
async fn idle_keep_alive_connections_close_and_slow_handlers_finish() {
    let server = Server::start(router(), |c| {
        c.header_read_timeout = Duration::from_millis(200);
    })
    .await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    // `/slow` takes 300 ms, longer than the timeout.
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let reply = read_reply(&mut stream, false).await;
    assert_eq!(reply.status, 200);
    // Idle from here on: the server closes the connection, sending nothing more.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut rest)).await;
    assert!(
        matches!(read, Ok(Ok(0))),
        "{read:?}: {}",
        String::from_utf8_lossy(&rest)
    );
    server.stop().await.expect("clean stop");
}

/// One keep-alive connection, its handlers in turn done on their first poll, waiting
/// for a wake-up (`yield_now`), and on a timer: a handler's future is first polled as
/// its request is dispatched (HTTP/1), and one not done then is polled again, so each
/// gets its own answer, in order, on the same connection.
#[tokio::test]
async fn handlers_done_at_once_or_later_on_one_connection() {
    let server = server().await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let expected = [
        ("/countries/gb/", "United Kingdom"),
        ("/rc/ada", "hello, ada (rc count 1)"),
        ("/items/7/x?page=2", "7/x page 2 size None"),
        ("/slow", "slow but fine"),
        ("/rc/bob", "hello, bob (rc count 1)"),
        ("/countries/", "\"gb\""),
    ];
    for _ in 0..3 {
        for (path, body) in expected {
            let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\n\r\n");
            stream.write_all(request.as_bytes()).await.unwrap();
            // A lost wake-up would leave the answer unsent: fail, do not hang.
            let reply =
                tokio::time::timeout(Duration::from_secs(10), read_reply(&mut stream, false))
                    .await
                    .unwrap_or_else(|_| panic!("no answer to {path}"));
            assert_eq!(reply.status, 200, "{path}");
            let text = String::from_utf8_lossy(&reply.body);
            assert!(text.contains(body), "{path}: {text}");
        }
    }
    server.stop().await.expect("clean stop");
}

/// Waits until the watchdog has counted `n` ended slow polls (an ended poll is
/// counted on its worker after the response may have left).
async fn slow_polls_reach(server: &Server, n: u64) -> nucleon_runtime::WatchdogStats {
    for _ in 0..500 {
        let stats = server.handle.watchdog().stats();
        if stats.slow_polls >= n {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!(
        "the watchdog never counted {n} slow poll(s): {:?}",
        server.handle.watchdog().stats()
    );
}

#[tokio::test]
async fn the_watchdog_names_a_blocking_handler_by_its_route() {
    let server = server().await;
    let reply = get(server.addr, "/block").await;
    assert_eq!(reply.status, 200);
    let reports = server.handle.watchdog().recent_reports();
    assert!(
        reports
            .iter()
            .any(|r| r.task.as_deref() == Some("GET /block")),
        "reports: {reports:?}"
    );
    let before = slow_polls_reach(&server, 1).await;
    // Its total, once the poll has ended, is reported under the route too (the
    // connection had already named itself again when that poll ended).
    let reports = server.handle.watchdog().recent_reports();
    assert!(
        reports.iter().any(
            |r| r.kind == nucleon_runtime::watchdog::ReportKind::SlowPollEnded
                && r.task.as_deref() == Some("GET /block")
        ),
        "reports: {reports:?}"
    );

    // A route that awaits for 6x the threshold in all is never reported: the watchdog
    // times polls, not requests. Bracketed by a second blocking request, so the
    // watchdog is known to be watching all along.
    assert_eq!(get(server.addr, "/slow").await.status, 200);
    let after_slow = server.handle.watchdog().stats();
    assert_eq!(after_slow.slow_polls, before.slow_polls, "{after_slow:?}");
    assert_eq!(after_slow.blocking_reports, before.blocking_reports);
    assert_eq!(get(server.addr, "/block").await.status, 200);
    let after = slow_polls_reach(&server, before.slow_polls + 1).await;
    assert!(
        after.blocking_reports > before.blocking_reports,
        "{after:?}"
    );
    let reports = server.handle.watchdog().recent_reports();
    assert!(
        !reports
            .iter()
            .any(|r| r.task.as_deref() == Some("GET /slow")),
        "reports: {reports:?}"
    );
    assert!(
        reports
            .iter()
            .filter(|r| r.task.as_deref() == Some("GET /block"))
            .count()
            >= 2,
        "reports: {reports:?}"
    );
    server.stop().await.expect("clean stop");
}

/// Headers past `http.max_header_size` get the same JSON 431 over HTTP/2 as over
/// HTTP/1 (with a request id), not h2's bare one.
#[tokio::test]
async fn http2_headers_too_large_get_the_json_431() {
    use http_body_util::{BodyExt, Empty};
    let server = server().await;
    let (mut sender, _connection) = h2_client(server.addr).await;
    // 4096 is the test server's limit.
    let request = http::Request::get(format!("http://{}/countries/", server.addr))
        .header("x-big", "v".repeat(5000))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("answered");
    assert_eq!(
        response.status(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert!(response.headers().contains_key("x-request-id"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    let json: serde_json::Value = serde_json::from_slice(&body).expect("a JSON body");
    assert_eq!(json["error"], "HEADERS_TOO_LARGE");
    drop(sender);
    server.stop().await.expect("clean stop");
}

/// An HTTP/2 client that grants no flow-control window holds its streams' answers
/// (and their memory) on the server forever, though it reads and answers pings: once
/// the connection is told to go away, it is closed when nothing has been written to it
/// for `http.send_timeout`.
#[tokio::test]
async fn an_http2_client_that_grants_no_window_is_closed_after_the_send_timeout() {
    use http_body_util::Empty;
    let server = Server::start(router(), |c| {
        c.header_read_timeout = Duration::from_secs(1);
        c.send_timeout = Duration::from_secs(1);
    })
    .await;
    let stream = TcpStream::connect(server.addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    let connection = tokio::spawn(connection);
    let request = http::Request::get(format!("http://{}/countries/", server.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    // The head arrives (HEADERS are not flow-controlled); the body never can.
    let response = sender.send_request(request).await.expect("a head");
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::timeout(Duration::from_secs(10), connection)
        .await
        .expect("the server closed the connection")
        .unwrap()
        .ok();
    drop(response);
    server.stop().await.expect("clean stop");
}

/// HTTP/2 has no connection-level rule that drops a HEAD answer's body (hyper's
/// HTTP/1 server drops it): the server's own answers (404, 405, 431…) to a HEAD carry
/// none either, only its length.
#[tokio::test]
async fn http2_head_answers_have_no_body() {
    use http_body_util::{BodyExt, Empty};
    let server = server().await;
    let (mut sender, _connection) = h2_client(server.addr).await;
    for (path, status) in [
        ("/nowhere", StatusCode::NOT_FOUND),
        ("/countries/", StatusCode::OK),
        ("/fails", StatusCode::INTERNAL_SERVER_ERROR),
    ] {
        let request = http::Request::head(format!("http://{}{path}", server.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("answered");
        assert_eq!(response.status(), status, "{path}");
        let length: usize = response.headers()["content-length"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!(length > 0, "{path}: the length of the body a GET would get");
        let body = response.into_body().collect().await.expect(path).to_bytes();
        assert!(body.is_empty(), "{path}: {body:?}");
    }
    drop(sender);
    server.stop().await.expect("clean stop");
}

/// Over HTTP/2 each request runs in a task of its own: the watchdog names that task by
/// the request's route too, and the connection's task keeps its own name.
#[tokio::test]
async fn the_watchdog_names_a_blocking_http2_handler_by_its_route() {
    use http_body_util::{BodyExt, Empty};
    let server = server().await;
    let (mut sender, _connection) = h2_client(server.addr).await;
    let request = http::Request::get(format!("http://{}/block", server.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    slow_polls_reach(&server, 1).await;
    let reports = server.handle.watchdog().recent_reports();
    assert!(
        reports
            .iter()
            .any(|r| r.task.as_deref() == Some("GET /block")),
        "reports: {reports:?}"
    );
    drop(sender);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn not_send_handlers_and_local_state() {
    let router = router();
    let mut config = nucleon_http::HttpConfig {
        port: 0,
        ..Default::default()
    };
    let addr = config.resolve_port().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::spawn(move || {
        let runtime = nucleon_runtime::Runtime::builder()
            .workers(1)
            .handle_signals(false)
            .per_worker(move |worker| {
                worker.local_state(0_u64);
                worker.adapter(nucleon_http::HttpServer::new(
                    router.clone(),
                    config.clone(),
                ));
                Ok(())
            })
            .build()
            .unwrap();
        let _ = tx.send(runtime.handle());
        runtime.run()
    });
    let handle = rx.await.unwrap();
    handle.wait_for(nucleon_runtime::Phase::Serving).await;

    let reply = get(addr, "/rc/ada").await;
    assert_eq!(
        String::from_utf8_lossy(&reply.body),
        "hello, ada (rc count 1)"
    );
    assert_eq!(get(addr, "/hits").await.json(), 1);
    assert_eq!(get(addr, "/hits").await.json(), 2);

    handle.shutdown();
    tokio::task::spawn_blocking(move || thread.join().unwrap())
        .await
        .unwrap()
        .unwrap();
    // The counter lived on the worker's thread: the test's thread never had one.
    assert!(LocalState::<u64>::current().is_none());
}

#[tokio::test]
async fn drain_readiness_lame_duck_in_flight_and_serving_what_open_connections_send() {
    let server = Server::start(router(), |c| c.lame_duck = Duration::from_millis(600)).await;
    let addr = server.addr;
    assert_eq!(get(addr, "/readyz").await.status, 200);

    // A keep-alive connection opened before the drain.
    let mut open = TcpStream::connect(addr).await.unwrap();
    open.write_all(b"GET /countries/ HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut open, false).await.status, 200);

    // An in-flight request when the drain starts.
    let in_flight = tokio::spawn(async move { get(addr, "/slow").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    server.handle.shutdown();

    // Readiness is 503 at once, while the lame duck still serves normally.
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 503);
    assert_eq!(ready.json()["error"], "SERVICE_UNAVAILABLE");
    assert!(ready.header("retry-after").is_some());
    assert_eq!(get(addr, "/countries/").await.status, 200);

    let reply = in_flight.await.unwrap();
    assert_eq!(reply.status, 200);
    assert_eq!(String::from_utf8_lossy(&reply.body), "slow but fine");

    // A request under way as the lame duck ends: its head is half sent.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /countries/ HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();

    // The same on a keep-alive connection that has served a request already (hyper
    // alone would close it: its next head is only partly read).
    let mut reused = TcpStream::connect(addr).await.unwrap();
    reused
        .write_all(b"GET /countries/ HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut reused, false).await.status, 200);
    reused
        .write_all(b"GET /countries/ HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();

    // After the lame duck the listener closes, and the idle keep-alive connection is
    // closed without a word (it had no request under way) once the idle grace is over.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), open.read_to_end(&mut buf)).await;
    assert!(closed.is_ok(), "the idle connection was left open");
    assert!(buf.is_empty(), "got {:?}", String::from_utf8_lossy(&buf));

    // The request that arrives on the open connection is served, and the connection
    // closes after it.
    half.write_all(b"\r\n").await.unwrap();
    let reply = read_reply(&mut half, false).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("connection"), Some("close"));
    reused.write_all(b"\r\n").await.unwrap();
    let reply = read_reply(&mut reused, false).await;
    assert_eq!(
        reply.status, 200,
        "the reused connection's request was served"
    );
    assert_eq!(reply.header("connection"), Some("close"));
    assert!(
        TcpStream::connect(addr).await.is_err(),
        "the listener is closed"
    );
    server.stop().await.expect("drained cleanly");
}

#[tokio::test]
async fn tower_layers_wrap_the_app_and_single_routes() {
    use tower_http::set_header::SetResponseHeaderLayer;
    let app_layer = SetResponseHeaderLayer::overriding(
        http::header::HeaderName::from_static("x-app"),
        http::HeaderValue::from_static("nucleon"),
    );
    let route_layer = SetResponseHeaderLayer::overriding(
        http::header::HeaderName::from_static("x-route"),
        http::HeaderValue::from_static("countries"),
    );
    let router = Router::new()
        .route("/countries/", route_get(countries).layer(route_layer))
        .route("/plain", route_get(|| async { "plain" }))
        .layer(app_layer);
    let server = Server::start(router, |_| {}).await;
    let reply = get(server.addr, "/countries/").await;
    assert_eq!(reply.header("x-app"), Some("nucleon"));
    assert_eq!(reply.header("x-route"), Some("countries"));
    assert_eq!(reply.json(), serde_json::json!(["fr", "gb"]));
    let reply = get(server.addr, "/plain").await;
    assert_eq!(reply.header("x-app"), Some("nucleon"));
    assert_eq!(reply.header("x-route"), None);
    // Errors from the router are wrapped too.
    let reply = get(server.addr, "/nowhere").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("x-app"), Some("nucleon"));
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn h2c_with_prior_knowledge_over_a_real_socket() {
    use http_body_util::{BodyExt, Empty};
    let server = server().await;
    let (mut sender, connection) = h2_client(server.addr).await;

    // Several requests, concurrently, on the one connection.
    let mut replies = Vec::new();
    for path in ["/countries/", "/countries/gb/", "/countries/zz/"] {
        let request = http::Request::get(format!("http://{}{path}", server.addr))
            .body(Empty::<bytes::Bytes>::new())
            .unwrap();
        replies.push(sender.send_request(request));
    }
    let mut bodies = Vec::new();
    for reply in replies {
        let response = reply.await.expect("an HTTP/2 response");
        assert_eq!(response.version(), http::Version::HTTP_2);
        assert!(response.headers().contains_key("x-request-id"));
        let status = response.status();
        let body = response.into_body().collect().await.unwrap().to_bytes();
        bodies.push((
            status,
            serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        ));
    }
    assert_eq!(bodies[0], (StatusCode::OK, serde_json::json!(["fr", "gb"])));
    assert_eq!(bodies[1].1["name"], "United Kingdom");
    assert_eq!(bodies[2].0, StatusCode::NOT_FOUND);
    assert_eq!(bodies[2].1["error"], "NOT_FOUND");

    // HEAD over HTTP/2 too: no body.
    let request = http::Request::head(format!("http://{}/countries/", server.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .is_empty()
    );

    drop(sender);
    connection.await.unwrap().unwrap();
    server.stop().await.expect("clean stop");
}

async fn stuck() -> &'static str {
    tokio::time::sleep(Duration::from_secs(60)).await;
    "never"
}

#[tokio::test]
async fn per_route_and_global_request_timeouts() {
    let router = Router::new()
        .route("/stuck", route_get(stuck))
        .route(
            "/route",
            route_get(stuck).timeout(Duration::from_millis(100)),
        )
        // A route's own limit overrides the global one, in both directions.
        .route("/patient", route_get(slow).timeout(Duration::from_secs(5)))
        .route("/fast", route_get(countries));
    let server = Server::start(router, |c| {
        c.request_timeout = Some(Duration::from_millis(150));
    })
    .await;
    let addr = server.addr;
    for path in ["/stuck", "/route"] {
        let reply = get(addr, path).await;
        assert_eq!(reply.status, 503, "{path}");
        assert_eq!(reply.json()["error"], "TIMEOUT", "{path}");
        assert_eq!(reply.header("retry-after"), Some("1"), "{path}");
    }
    // /slow takes 300 ms, past the global 150 ms, within its own 5 s.
    let reply = get(addr, "/patient").await;
    assert_eq!(reply.status, 200);
    assert_eq!(String::from_utf8_lossy(&reply.body), "slow but fine");
    assert_eq!(get(addr, "/fast").await.status, 200);
    server
        .stop()
        .await
        .expect("clean stop: timed-out handlers were dropped");
}

#[tokio::test]
async fn a_custom_readiness_path() {
    let server = Server::start(router(), |c| {
        c.readiness_path = Some("/health/ready".into());
        c.lame_duck = Duration::from_millis(500);
    })
    .await;
    let addr = server.addr;
    let reply = get(addr, "/health/ready").await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json()["status"], "ready");
    assert_eq!(reply.json()["adapters"][0]["adapter"], "http");
    assert_eq!(
        get(addr, "/readyz").await.status,
        404,
        "the default path is gone"
    );
    // GET and HEAD only.
    let reply = raw(
        addr,
        b"HEAD /health/ready HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 200);
    for method in ["POST", "DELETE", "PUT"] {
        let reply = request(addr, method, "/health/ready", &[], b"").await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.json()["error"], "METHOD_NOT_ALLOWED");
        assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    }

    server.handle.shutdown();
    let reply = get(addr, "/health/ready").await;
    assert_eq!(reply.status, 503);
    assert_eq!(reply.json()["error"], "SERVICE_UNAVAILABLE");
    assert_eq!(reply.header("retry-after"), Some("1"));
    // The lame duck still serves everything else.
    assert_eq!(get(addr, "/countries/").await.status, 200);
    server.stop().await.expect("drained cleanly");

    // An empty path turns readiness off.
    let server = Server::start(router(), |c| c.readiness_path = Some(String::new())).await;
    assert_eq!(get(server.addr, "/readyz").await.status, 404);
    server.stop().await.expect("clean stop");
}

#[tokio::test]
async fn head_through_a_mounted_service() {
    let server = server().await;
    let addr = server.addr;
    let full = get(addr, "/legacy/v1/things").await;
    assert_eq!(String::from_utf8_lossy(&full.body), "legacy saw /v1/things");
    let reply = request(addr, "HEAD", "/legacy/v1/things", &[], b"").await;
    assert_eq!(reply.status, 200);
    assert!(reply.body.is_empty());
    assert_eq!(
        reply.header("content-length"),
        Some(full.body.len().to_string().as_str())
    );
    // The connection carries on after the bodiless response.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"HEAD /legacy/x HTTP/1.1\r\nhost: t\r\n\r\nGET /legacy/x HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    stream.read_to_end(&mut buf).await.unwrap();
    let (head, used) = common::parse_reply(&buf, true).expect("the HEAD response");
    assert_eq!(head.status, 200);
    let (get_reply, _) = common::parse_reply(&buf[used..], false).expect("the GET response");
    assert_eq!(String::from_utf8_lossy(&get_reply.body), "legacy saw /x");
    server.stop().await.expect("clean stop");
}

/// Sends `request` on `stream` and reads until the server closes: one JSON error
/// answer with `Connection: close`, nothing after it.
async fn rejected(stream: &mut TcpStream, request: &[u8]) -> common::Reply {
    // The server may answer and close before it has read everything: a failed write
    // is fine, the answer is still there to read.
    let _ = stream.write_all(request).await;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    let (reply, used) = common::parse_reply(&buf, false)
        .unwrap_or_else(|| panic!("one full response: {:?}", String::from_utf8_lossy(&buf)));
    assert_eq!(used, buf.len(), "nothing after the answer");
    assert_eq!(reply.header("connection"), Some("close"));
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert!(
        reply
            .header("x-request-id")
            .is_some_and(|id| !id.is_empty())
    );
    let body = reply.json();
    assert!(body["message"].is_string(), "{body}");
    reply
}

async fn rejected_on_new(addr: std::net::SocketAddr, request: &[u8]) -> common::Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    rejected(&mut stream, request).await
}

/// Request heads hyper itself cannot parse are answered in JSON, with a request id, and
/// the worker goes on serving.
#[tokio::test]
async fn heads_hyper_rejects_get_json_errors() {
    let server = server().await;
    let addr = server.addr;

    // More headers than hyper parses (100).
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    let reply = rejected_on_new(
        addr,
        format!("GET /countries/ HTTP/1.1\r\nhost: t\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.json()["error"], "HEADERS_TOO_LARGE");

    // A head past hyper's buffer (twice `max_header_size` and a bit).
    let huge = "v".repeat(64 * 1024);
    let reply = rejected_on_new(
        addr,
        format!("GET /countries/ HTTP/1.1\r\nhost: t\r\nx-big: {huge}\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 431);
    assert_eq!(reply.json()["error"], "HEADERS_TOO_LARGE");

    // A malformed request line, and a malformed header.
    let reply = rejected_on_new(addr, b"G@T / HTTP/1.1\r\nhost: t\r\n\r\n").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "BAD_REQUEST");
    let reply = rejected_on_new(addr, b"GET / HTTP/1.1\r\nhost: t\r\nno colon here\r\n\r\n").await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "BAD_REQUEST");

    // On a keep-alive connection, after a request that was answered.
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"GET /countries/ HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut stream, false).await.status, 200);
    let reply = rejected(
        &mut stream,
        b"GET / HTTP/1.1\r\nhost: t\r\nbad header\r\n\r\n",
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["error"], "BAD_REQUEST");

    // Everyone else is still served.
    assert_eq!(get(addr, "/countries/").await.status, 200);
    server.stop().await.expect("clean stop");

    // hyper's URI limit (65534 bytes) is reached before its buffer only with a larger
    // `max_header_size`.
    let server = Server::start(router(), |c| c.max_header_size = 40_000).await;
    let uri = format!("/{}", "a".repeat(70_000));
    let reply = rejected_on_new(
        server.addr,
        format!("GET {uri} HTTP/1.1\r\nhost: t\r\n\r\n").as_bytes(),
    )
    .await;
    assert_eq!(reply.status, 414);
    assert_eq!(reply.json()["error"], "URI_TOO_LONG");
    assert_eq!(get(server.addr, "/countries/").await.status, 200);
    server.stop().await.expect("clean stop");
}

/// A request body that stops arriving is answered 408 once `http.body_read_timeout`
/// passes without a byte of it; one that arrives slowly but steadily is read to its
/// end, however long that takes in all.
#[tokio::test]
async fn a_stalled_request_body_gets_408_and_a_slow_one_is_read() {
    let server = Server::start(router(), |c| {
        c.body_read_timeout = Duration::from_millis(300);
    })
    .await;
    let head = b"POST /echo HTTP/1.1\r\nhost: t\r\ncontent-length: 100\r\n\r\n";

    let mut stalled = TcpStream::connect(server.addr).await.unwrap();
    stalled.write_all(head).await.unwrap();
    stalled.write_all(&[b'a'; 10]).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(10), read_reply(&mut stalled, false))
        .await
        .expect("the stalled upload was not answered");
    assert_eq!(reply.status, 408);
    assert_eq!(reply.json()["error"], "REQUEST_TIMEOUT");
    assert!(
        reply.json()["message"]
            .as_str()
            .unwrap()
            .contains("http.body_read_timeout"),
        "{:?}",
        reply.json()
    );

    // 100 bytes, 10 every 100 ms: a second in all, never 300 ms without a byte.
    let mut slow = TcpStream::connect(server.addr).await.unwrap();
    slow.write_all(head).await.unwrap();
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        slow.write_all(&[b'b'; 10]).await.unwrap();
    }
    let reply = read_reply(&mut slow, false).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.body, vec![b'b'; 100]);
    server.stop().await.expect("clean stop");
}

/// A client that asks for a large response and does not read it is let go after
/// `http.send_timeout`: the connection closes, and what the kernel already holds is
/// all the client gets.
#[tokio::test]
async fn a_client_that_does_not_read_its_response_is_cut_after_the_send_timeout() {
    const SIZE: usize = 64 * 1024 * 1024;
    let huge = || async { vec![b'h'; SIZE] };
    let server = Server::start(router().route("/huge", route_get(huge)), |c| {
        c.send_timeout = Duration::from_millis(300);
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET /huge HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut received = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut received))
        .await
        .expect("the connection ended");
    assert!(
        read.is_err() || received.len() < SIZE,
        "the whole response came: the connection was kept open for a client that did not read"
    );
    assert_eq!(get(server.addr, "/countries/").await.status, 200);
    server.stop().await.expect("clean stop");
}

/// A response body that streams for longer than the header read timeout is sent to its
/// end: the connection is not idle while it lasts, and serves the next request after.
#[tokio::test]
async fn a_streaming_body_outlasts_the_header_read_timeout() {
    use http_body_util::StreamBody;
    async fn ticks() -> nucleon_http::Response {
        let frames = futures_util::stream::unfold(0_u32, |n| async move {
            if n == 8 {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let frame = http_body::Frame::data(nucleon_http::Bytes::from(format!("tick {n}\n")));
            Some((Ok::<_, Infallible>(frame), n + 1))
        });
        nucleon_http::Response::new(Body::new(StreamBody::new(frames)))
    }
    let server = Server::start(router().route("/ticks", route_get(ticks)), |c| {
        c.header_read_timeout = Duration::from_millis(200);
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client
        .write_all(b"GET /ticks HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut received = Vec::new();
    let mut chunk = [0_u8; 4096];
    while !received.ends_with(b"0\r\n\r\n") {
        let n = client.read(&mut chunk).await.unwrap();
        assert!(
            n > 0,
            "the body was cut: {:?}",
            String::from_utf8_lossy(&received)
        );
        received.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&received);
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(
        text.contains("tick 0\n") && text.contains("tick 7\n"),
        "{text}"
    );

    client
        .write_all(b"GET /countries/ HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    assert_eq!(read_reply(&mut client, false).await.status, 200);
    server.stop().await.expect("clean stop");
}

/// A client that sends part of the HTTP/2 preface and then closes its writing side is
/// let go at once (hyper sees the end of its stream): not kept, with the worker
/// polling it over and over, until the header read timeout.
#[tokio::test]
async fn a_half_closed_partial_h2_preface_ends_the_connection() {
    let server = Server::start(router(), |c| {
        c.header_read_timeout = Duration::from_secs(120);
    })
    .await;
    let mut client = TcpStream::connect(server.addr).await.unwrap();
    client.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    client.shutdown().await.unwrap();
    let mut buf = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(20), client.read_to_end(&mut buf)).await;
    assert!(ended.is_ok(), "the half-closed connection is still open");
    assert_eq!(get(server.addr, "/countries/").await.status, 200);
    server.stop().await.expect("clean stop");
}

/// An HTTP/2 connection with no request in service past the header read timeout is
/// closed (`GOAWAY`), while a request that takes longer than that is not cut.
#[tokio::test]
async fn h2c_connections_have_an_idle_limit() {
    use http_body_util::{BodyExt, Empty};
    let server = Server::start(router(), |c| {
        c.header_read_timeout = Duration::from_millis(200);
    })
    .await;
    let (mut sender, connection) = h2_client(server.addr).await;

    // 300 ms in the handler: longer than the limit, but in service.
    let request = http::Request::get(format!("http://{}/slow", server.addr))
        .body(Empty::<bytes::Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.expect("answered");
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"slow but fine");

    // Then idle: the server closes the connection, though the client keeps it.
    let ended = tokio::time::timeout(Duration::from_secs(3), connection).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection is still open");
    drop(sender);
    server.stop().await.expect("clean stop");
}
