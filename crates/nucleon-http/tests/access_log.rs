//! The access log: one `nucleon::access` event per request, with the client's address,
//! method, path, status, bytes, duration and request id. Its own test binary: the
//! workers log on their own threads, so the capturing subscriber is the global one.

mod common;

use common::{Captured, Server};
use nucleon_http::{Json, Router, get};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tracing_subscriber::layer::SubscriberExt;

async fn countries() -> Json<Vec<&'static str>> {
    Json(vec!["fr", "gb"])
}

#[tokio::test]
async fn one_access_line_per_request_with_every_field() {
    let captured = Captured::default();
    tracing::subscriber::set_global_default(tracing_subscriber::registry().with(captured.clone()))
        .expect("the only subscriber of this test binary");

    let server = Server::start(Router::new().route("/countries/", get(countries)), |_| {}).await;
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
    server.stop().await.expect("clean stop");

    let lines = captured.events("nucleon::access");
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
}
