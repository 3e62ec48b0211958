//! axum 0.8 as its documentation sets it up: `axum::serve` on a tokio multi-thread
//! runtime (`-j` worker threads), TCP_NODELAY on accepted sockets.

use axum::extract::Path;
use axum::http::StatusCode;
use axum::routing::get;
use axum::serve::ListenerExt;
use axum::{Json, Router};
use http_bench::{Args, Country, HELLO, Hello};

async fn hello() -> Json<Hello> {
    Json(HELLO)
}

async fn country(Path(code): Path<String>) -> Result<Json<Country>, StatusCode> {
    http_bench::country(&code).map(|c| Json(*c)).ok_or(StatusCode::NOT_FOUND)
}

fn main() {
    let args = Args::parse();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers)
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let app = Router::new()
                .route("/json", get(hello))
                .route("/countries/{code}/", get(country));
            let listener = tokio::net::TcpListener::bind(args.addr())
                .await
                .expect("bind")
                .tap_io(|tcp| {
                    let _ = tcp.set_nodelay(true);
                });
            axum::serve(listener, app).await.expect("serve");
        });
}
