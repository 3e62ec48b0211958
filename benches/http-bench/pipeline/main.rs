//! `pipeline.sh`'s harness: requests served in-process by `HttpService::call` (no
//! socket, no hyper), so that the pipeline's own instructions per request can be
//! counted for two commits side by side.
//!
//! `pipeline-harness N [PATH [NAME: VALUE]...]`: N requests for PATH (default `/json`,
//! `{"message":"Hello, World!"}` serialised per request), with `host`, `user-agent`,
//! `accept` and the headers given; access log off, as the load tests run it.

use nucleon_http::{Body, HttpConfig, HttpService, Json, Request, Router, get};

async fn json() -> Json<serde_json::Value> {
    Json(serde_json::json!({"message": "Hello, World!"}))
}

fn main() {
    let mut args = std::env::args().skip(1);
    let n: usize = args.next().and_then(|n| n.parse().ok()).expect("a count");
    let path = args.next().unwrap_or_else(|| "/json".into());
    let extra: Vec<(String, String)> = args
        .map(|h| {
            let (name, value) = h.split_once(':').expect("NAME: VALUE");
            (name.trim().to_owned(), value.trim().to_owned())
        })
        .collect();
    let router = Router::new().route("/json", get(json));
    let config = HttpConfig {
        access_log: false,
        ..HttpConfig::default()
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    tokio::task::LocalSet::new().block_on(&runtime, async move {
        let service = HttpService::new(&router, &config, None);
        let remote = "127.0.0.1:40000".parse().expect("an address");
        for _ in 0..n {
            let mut request = Request::builder()
                .uri(path.as_str())
                .header("host", "localhost:8080")
                .header("user-agent", "wrk")
                .header("accept", "*/*");
            for (name, value) in &extra {
                request = request.header(name.as_str(), value.as_str());
            }
            let request = request.body(Body::empty()).expect("a request");
            let response = service.call(request, remote).await;
            assert_eq!(response.status(), 200);
            drop(std::hint::black_box(response));
        }
    });
}
