//! The baseline: bare hyper 1 and raw sqlx, a `current_thread` runtime per worker
//! thread, each with its own `SO_REUSEPORT` listener and its own PostgreSQL pool of
//! `--pool` connections; `GET /countries/{code}` runs the same query and answers JSON.

use std::convert::Infallible;

use bytes::Bytes;
use db_bench::{Args, BY_CODE, Country};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use socket2::{Domain, Protocol, Socket, Type};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

fn json(status: StatusCode, body: Vec<u8>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn handle(pool: PgPool, request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let Some(code) = request.uri().path().strip_prefix("/countries/") else {
        return Ok(json(StatusCode::NOT_FOUND, br#"{"error":"NOT_FOUND"}"#.to_vec()));
    };
    let row = sqlx::query_as::<_, Country>(BY_CODE).bind(code.to_owned()).fetch_optional(&pool).await;
    Ok(match row {
        Ok(Some(country)) => json(StatusCode::OK, serde_json::to_vec(&country).unwrap_or_default()),
        Ok(None) => json(StatusCode::NOT_FOUND, br#"{"error":"NOT_FOUND"}"#.to_vec()),
        Err(_) => json(StatusCode::INTERNAL_SERVER_ERROR, br#"{"error":"INTERNAL_ERROR"}"#.to_vec()),
    })
}

async fn serve(args: Args) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], args.port));
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).unwrap();
    socket.set_reuse_address(true).unwrap();
    socket.set_reuse_port(true).unwrap();
    socket.set_nonblocking(true).unwrap();
    socket.bind(&addr.into()).unwrap();
    socket.listen(4096).unwrap();
    let listener = tokio::net::TcpListener::from_std(socket.into()).unwrap();
    let pool = PgPoolOptions::new().max_connections(args.pool).connect_lazy(&args.url).unwrap();
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let pool = pool.clone();
        tokio::task::spawn_local(async move {
            let service = service_fn(move |request| handle(pool.clone(), request));
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
        });
    }
}

fn main() {
    let args = Args::parse();
    let threads: Vec<_> = (0..args.workers)
        .map(|_| {
            let args = args.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
                tokio::task::LocalSet::new().block_on(&runtime, serve(args));
            })
        })
        .collect();
    for thread in threads {
        let _ = thread.join();
    }
}
