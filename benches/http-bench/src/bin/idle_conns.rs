//! Opens N keep-alive connections to 127.0.0.1:PORT, sends one `GET PATH` on each and
//! reads the whole response, then holds them all open and idle. Prints `ready N` once
//! every connection has had its response, then waits until stdin closes (or it is
//! killed). `run.sh` measures the server's RSS before and after.
//!
//! `idle-conns PORT N [PATH]`

use std::io::Write;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn open(port: u16, path: &str) -> std::io::Result<TcpStream> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    stream.write_all(request.as_bytes()).await?;
    // Read the head, then exactly content-length bytes of body.
    let mut head = Vec::new();
    let mut buf = [0_u8; 4096];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::other("closed before the response"));
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let length: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| std::io::Error::other("no content-length"))?;
            let mut have = head.len() - end - 4;
            while have < length {
                let n = stream.read(&mut buf).await?;
                if n == 0 {
                    return Err(std::io::Error::other("closed mid-body"));
                }
                have += n;
            }
            return Ok(stream);
        }
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args.next().and_then(|p| p.parse().ok()).expect("PORT");
    let n: usize = args.next().and_then(|p| p.parse().ok()).expect("N");
    let path = args.next().unwrap_or_else(|| "/json".to_owned());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let mut held = Vec::with_capacity(n);
        // 100 connections in flight at a time: no accept-queue overflow.
        let mut set = tokio::task::JoinSet::new();
        let mut started = 0;
        while held.len() < n {
            while started < n && set.len() < 100 {
                let path = path.clone();
                set.spawn(async move { open(port, &path).await });
                started += 1;
            }
            match set.join_next().await {
                Some(Ok(Ok(stream))) => held.push(stream),
                Some(Ok(Err(e))) => panic!("connection {} failed: {e}", held.len()),
                Some(Err(e)) => panic!("task failed: {e}"),
                None => break,
            }
        }
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready {}", held.len());
        let _ = out.flush();
        drop(out);
        // Hold until stdin closes.
        let mut line = String::new();
        let mut stdin = tokio::io::BufReader::new(tokio::io::stdin());
        let _ = stdin.read_line(&mut line).await;
        drop(held);
    });
}
