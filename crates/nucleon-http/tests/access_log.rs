//! The access log: one `nucleon::access` event per request, with the client's address,
//! method, path, status, bytes, duration and request id. Its own test binary: the
//! workers log on their own threads, so the capturing subscriber is the global one
//! (installed once, shared by the tests; each finds its lines by its clients' address).

mod common;

use std::convert::Infallible;
use std::sync::OnceLock;

use common::{Captured, CapturedEvent, Server};
use nucleon_http::{Body, Bytes, Json, Response, Router, get};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing_subscriber::layer::SubscriberExt;

async fn countries() -> Json<Vec<&'static str>> {
    Json(vec!["fr", "gb"])
}

/// A body of unknown length, sent chunked.
async fn streamed() -> Response {
    let frames = futures_util::stream::iter(
        ["ab", "cde"].map(|s| Ok::<_, Infallible>(http_body::Frame::data(Bytes::from(s)))),
    );
    Response::new(Body::new(http_body_util::StreamBody::new(frames)))
}

fn captured() -> &'static Captured {
    static CAPTURED: OnceLock<Captured> = OnceLock::new();
    CAPTURED.get_or_init(|| {
        let captured = Captured::default();
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(captured.clone()),
        )
        .expect("the only subscriber of this test binary");
        captured
    })
}

/// The access lines of the clients at `remotes`, in their order.
fn lines_of(remotes: &[String]) -> Vec<CapturedEvent> {
    remotes
        .iter()
        .flat_map(|remote| {
            captured()
                .events("nucleon::access")
                .into_iter()
                .filter(move |e| e.fields.get("remote") == Some(remote))
        })
        .collect()
}

#[tokio::test]
async fn one_access_line_per_request_with_every_field() {
    captured();
    let router = Router::new()
        .route("/countries/", get(countries))
        .route("/streamed", get(streamed));
    let server = Server::start(router, |_| {}).await;
    let mut ids = Vec::new();
    let mut remotes = Vec::new();
    for (path, id) in [("/countries/", Some("given-id-1")), ("/nowhere?x=1", None)] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        remotes.push(stream.local_addr().unwrap().to_string());
        let id_header = id.map_or(String::new(), |id| format!("x-request-id: {id}\r\n"));
        let request =
            format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n{id_header}\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = common::read_reply(&mut stream, false).await;
        ids.push((
            reply.header("x-request-id").unwrap().to_owned(),
            reply.body.len(),
            reply.status,
        ));
    }
    // A streamed body: its size is not known when the line is written.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let streamed_remote = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"GET /streamed HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text)
        .await
        .unwrap();
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    assert!(text.contains("transfer-encoding: chunked"), "{text}");
    server.stop().await.expect("clean stop");

    let lines = lines_of(&remotes);
    assert_eq!(lines.len(), 2, "{lines:#?}");
    for (line, (remote, (id, bytes, status))) in lines.iter().zip(remotes.iter().zip(&ids)) {
        let f = &line.fields;
        assert_eq!(line.level, tracing::Level::INFO);
        assert_eq!(&f["remote"], remote, "{f:?}");
        assert_eq!(f["method"], "GET", "{f:?}");
        assert_eq!(&f["request_id"], id, "{f:?}");
        assert_eq!(f["status"], status.to_string(), "{f:?}");
        assert_eq!(f["bytes"], bytes.to_string(), "{f:?}");
        let micros: u64 = f["duration_us"].parse().expect("a duration in µs");
        assert!(micros < 10_000_000, "{f:?}");
    }
    assert_eq!(lines[0].fields["path"], "/countries/");
    assert_eq!(ids[0].0, "given-id-1", "the client's id is kept");
    assert_eq!(ids[0].1, 11);
    assert_eq!(
        lines[1].fields["path"], "/nowhere",
        "the path, not the query"
    );
    assert_eq!(lines[1].fields["status"], "404");

    let streamed = lines_of(&[streamed_remote]);
    assert_eq!(streamed.len(), 1, "{streamed:#?}");
    assert_eq!(streamed[0].fields["status"], "200");
    assert!(
        !streamed[0].fields.contains_key("bytes"),
        "a streamed body's size is unknown, not 0: {:?}",
        streamed[0].fields
    );
}

/// A head hyper rejects (here: more than 100 headers) has its access line too, with the
/// request id sent to the client.
#[tokio::test]
async fn a_head_hyper_rejects_is_logged() {
    captured();
    let server = Server::start(Router::new().route("/countries/", get(countries)), |_| {}).await;
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let remote = stream.local_addr().unwrap().to_string();
    let many: String = (0..120).map(|i| format!("x-h{i}: v\r\n")).collect();
    stream
        .write_all(format!("GET /countries/ HTTP/1.1\r\nhost: t\r\n{many}\r\n").as_bytes())
        .await
        .unwrap();
    let reply = common::read_reply(&mut stream, false).await;
    assert_eq!(reply.status, 431);
    server.stop().await.expect("clean stop");

    let lines = lines_of(&[remote]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let f = &lines[0].fields;
    assert_eq!(f["status"], "431", "{f:?}");
    assert_eq!(f["bytes"], reply.body.len().to_string(), "{f:?}");
    assert_eq!(
        Some(f["request_id"].as_str()),
        reply.header("x-request-id"),
        "{f:?}"
    );
}

async fn broken() -> Result<&'static str, nucleon_http::HttpError> {
    Err(nucleon_http::HttpError::internal(
        "the ledger is unreachable",
    ))
}

/// A handler's 500 is logged at ERROR with its cause and request id: the request's
/// path when the access log is on, its route when the access log is off (the path is
/// then not kept).
#[tokio::test]
async fn a_handler_error_is_logged_with_its_path_or_route() {
    captured();
    for access_log in [true, false] {
        let router = Router::new().route("/ledger/{id}", get(broken));
        let server = Server::start(router, |config| config.access_log = access_log).await;
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        let path = format!("/ledger/{access_log}");
        let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let reply = common::read_reply(&mut stream, false).await;
        assert_eq!(reply.status, 500);
        let body = String::from_utf8_lossy(&reply.body);
        assert!(!body.contains("ledger"), "no internals: {body}");
        server.stop().await.expect("clean stop");

        let id = reply.header("x-request-id").unwrap().to_owned();
        let errors: Vec<_> = captured()
            .events("nucleon::http")
            .into_iter()
            .filter(|e| e.fields.get("request_id") == Some(&id))
            .collect();
        assert_eq!(errors.len(), 1, "{errors:#?}");
        assert_eq!(errors[0].level, tracing::Level::ERROR);
        let message = &errors[0].fields["message"];
        let target = if access_log {
            path.as_str()
        } else {
            "GET /ledger/{id}"
        };
        assert!(
            message.contains(&format!("GET {target} failed")),
            "{message}"
        );
        assert!(message.contains("the ledger is unreachable"), "{message}");
    }
}

/// Answers HTTP sends without a body log `bytes=0` (the body a handler gave is not
/// sent); a request whose client left before its answer is logged with status 499.
#[tokio::test]
async fn bodiless_answers_log_no_bytes_and_a_client_that_left_is_a_499() {
    captured();
    async fn no_content() -> (nucleon_http::StatusCode, Json<&'static str>) {
        (nucleon_http::StatusCode::NO_CONTENT, Json("ignored"))
    }
    async fn slow() -> &'static str {
        tokio::time::sleep(std::time::Duration::from_secs(30)).await;
        "too late"
    }
    let router = Router::new()
        .route("/countries/", get(countries))
        .route("/nothing", get(no_content))
        .route("/slow", get(slow));
    let server = Server::start(router, |_| {}).await;
    let mut remotes = Vec::new();
    for request in [
        "HEAD /countries/ HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        "HEAD /nowhere HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
        "GET /nothing HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n",
    ] {
        let mut stream = TcpStream::connect(server.addr).await.unwrap();
        remotes.push(stream.local_addr().unwrap().to_string());
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut text = String::new();
        tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut text)
            .await
            .unwrap();
        assert!(text.ends_with("\r\n\r\n"), "no body sent: {text:?}");
    }
    let lines = lines_of(&remotes);
    assert_eq!(lines.len(), 3, "{lines:#?}");
    for (line, status) in lines.iter().zip(["200", "404", "204"]) {
        assert_eq!(line.fields["status"], status, "{:?}", line.fields);
        assert_eq!(line.fields["bytes"], "0", "{:?}", line.fields);
    }

    // A client that sends its request and leaves while the handler works.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let remote = stream.local_addr().unwrap().to_string();
    stream
        .write_all(b"GET /slow HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    drop(stream);
    let mut cancelled = Vec::new();
    for _ in 0..100 {
        cancelled = lines_of(std::slice::from_ref(&remote));
        if !cancelled.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(cancelled.len(), 1, "{cancelled:#?}");
    let f = &cancelled[0].fields;
    assert_eq!(f["status"], "499", "{f:?}");
    assert_eq!(f["path"], "/slow", "{f:?}");
    assert_eq!(f["cancelled"], "true", "{f:?}");
    server.stop().await.expect("clean stop");
}
