//! What the binary's tests share: a minimal HTTP/1.1 exchange over a real socket, a
//! port reserved for one server, SIGTERM.

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::{Child, Command};

pub use nucleon_testkit::http::Reply;

/// Sends one request on `stream`; `Ok(None)` if the connection closed before any byte
/// of a response (the server never read the request); panics on a truncated response.
pub async fn exchange(
    stream: &mut TcpStream,
    method: &str,
    path: &str,
) -> std::io::Result<Option<Reply>> {
    let request = format!("{method} {path} HTTP/1.1\r\nhost: test\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 4096];
    loop {
        if let Some((reply, _)) = nucleon_testkit::http::parse_reply(&buf, method == "HEAD") {
            return Ok(Some(reply));
        }
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) if buf.is_empty() => return Err(e),
            Err(e) => panic!("connection broke mid-response: {e}"),
        };
        if n == 0 {
            assert!(
                buf.is_empty(),
                "truncated response: {:?}",
                String::from_utf8_lossy(&buf)
            );
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub async fn get(addr: SocketAddr, method: &str, path: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    exchange(&mut stream, method, path)
        .await
        .expect("io")
        .expect("a response")
}

/// A port for one server, held for the whole test: bound with `SO_REUSEPORT` and not
/// listening, so the server (which binds with `SO_REUSEPORT` too) can take it, while no
/// other test's `bind(0)` is handed the same port in the meantime (two servers of two
/// concurrent tests sharing one port would answer each other's clients). With
/// `SO_REUSEADDR` as well, as the server's own claim has it: the server's check that
/// nothing listens on its port lets such a reservation be.
pub fn reserve_port() -> (u16, TcpSocket) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.set_reuseport(true).unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    (socket.local_addr().unwrap().port(), socket)
}

pub async fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
}
