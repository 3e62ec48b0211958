//! The baseline: bare hyper 1, HTTP/1.1, one `current_thread` tokio runtime per worker
//! thread, each with its own `SO_REUSEPORT` listener. No router, no middleware.
//!
//! `BARE_HYPER_WRITEV=false` sets hyper's `writev(false)`: a response's head and body
//! go out in one buffer, one `send` (nucleon does the same with its own socket
//! wrapper), instead of hyper's default `writev` of the two. `run.sh` runs both, as
//! `hyper` (the baseline of the ratios) and `hyper-1send`.

use std::convert::Infallible;

use bytes::Bytes;
use http_bench::{Args, HELLO};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};

const JSON: HeaderValue = HeaderValue::from_static("application/json");

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, JSON);
    response
}

async fn handle(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = request.uri().path();
    if request.method() != Method::GET {
        return Ok(json(StatusCode::METHOD_NOT_ALLOWED, br#"{"error":"METHOD_NOT_ALLOWED"}"#.to_vec()));
    }
    if path == "/json" {
        return Ok(json(StatusCode::OK, serde_json::to_vec(&HELLO).unwrap_or_default()));
    }
    let code = path.strip_prefix("/countries/").and_then(|rest| rest.strip_suffix('/'));
    Ok(match code.and_then(http_bench::country) {
        Some(country) => json(StatusCode::OK, serde_json::to_vec(country).unwrap_or_default()),
        None => json(StatusCode::NOT_FOUND, br#"{"error":"NOT_FOUND"}"#.to_vec()),
    })
}

fn listener(args: &Args) -> std::io::Result<tokio::net::TcpListener> {
    let addr = args.addr();
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    tokio::net::TcpListener::from_std(socket.into())
}

async fn serve(args: Args) {
    let listener = listener(&args).expect("bind");
    let writev = std::env::var("BARE_HYPER_WRITEV").map_or(true, |v| v != "false");
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new()
                .writev(writev)
                .serve_connection(TokioIo::new(stream), service_fn(handle))
                .await;
        });
    }
}

fn main() {
    let args = Args::parse();
    let threads: Vec<_> = (0..args.workers)
        .map(|_| {
            std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime")
                    .block_on(serve(args));
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}
