//! Adapters seen from HTTP, over real sockets: handles as handler arguments, readiness
//! answering from every adapter's health, liveness, a missing handle refused at start.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use common::{Server, get};
use nucleon_http::{Dep, Json, Named, Router, get as route_get};
use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health, RuntimeError, current_worker};

/// A pool stand-in: where it was made.
#[derive(Clone)]
struct Pool {
    made_on: String,
}

nucleon_runtime::handle_name!(Reporting = "reporting");

/// Gives a `Pool`; its health is what `sick` says.
struct PoolAdapter {
    instance: Option<&'static str>,
    sick: Arc<AtomicBool>,
}

impl PoolAdapter {
    fn new(instance: Option<&'static str>) -> Self {
        Self {
            instance,
            sick: Arc::default(),
        }
    }
}

impl Adapter for PoolAdapter {
    type Handle = Pool;

    fn name(&self) -> &str {
        "pool"
    }

    fn instance(&self) -> Option<&str> {
        self.instance
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<Pool, BoxError> {
        Ok(Pool {
            made_on: current_worker().map_or_else(|| "process".into(), |w| format!("worker {w}")),
        })
    }

    async fn health(&self) -> Health {
        if self.sick.load(Ordering::SeqCst) {
            Health::Unhealthy("the server closed the connection".into())
        } else {
            Health::Healthy
        }
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        Ok(())
    }
}

async fn pools(Dep(main): Dep<Pool>, reporting: Named<Pool, Reporting>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "main": main.made_on,
        "reporting": reporting.made_on,
        "worker": current_worker(),
    }))
}

fn router() -> Router {
    Router::new().route("/pools", route_get(pools))
}

#[tokio::test]
async fn handlers_get_the_worker_s_handle_and_the_process_s_by_name() {
    let sick = Arc::new(AtomicBool::new(false));
    let process = PoolAdapter {
        instance: Some("reporting"),
        sick: Arc::clone(&sick),
    };
    let server = Server::start_with(
        router(),
        // The listener stays open a while into the drain: liveness is asked then.
        |c| c.lame_duck = std::time::Duration::from_millis(500),
        move |builder| builder.adapter(process),
        |worker| {
            worker.adapter(PoolAdapter::new(None));
        },
    )
    .await
    .expect("every handle is given");
    let addr = server.addr;
    for _ in 0..4 {
        let reply = get(addr, "/pools").await;
        assert_eq!(
            reply.status,
            200,
            "{}",
            String::from_utf8_lossy(&reply.body)
        );
        let body = reply.json();
        let worker = body["worker"].as_u64().expect("on a worker");
        assert_eq!(body["main"], format!("worker {worker}"), "the worker's own");
        assert_eq!(body["reporting"], "process", "the process's, by name");
    }

    // Readiness lists every adapter a worker relies on, and fails with the sick one.
    let ready = get(addr, "/readyz").await;
    assert_eq!(ready.status, 200);
    let adapters = ready.json()["adapters"].clone();
    let names: Vec<(String, serde_json::Value)> = adapters
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["adapter"].as_str().unwrap().to_owned(),
                a["worker"].clone(),
            )
        })
        .collect();
    assert!(
        names.contains(&("pool".into(), serde_json::Value::Null)),
        "{adapters}"
    );
    assert!(
        names.iter().any(|(n, w)| n == "http" && w.is_u64()),
        "{adapters}"
    );
    sick.store(true, Ordering::SeqCst);
    let unready = get(addr, "/readyz").await;
    assert_eq!(unready.status, 503);
    assert!(unready.header("retry-after").is_some());
    let body = unready.json();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["error"], "SERVICE_UNAVAILABLE");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("adapter `pool` (per process): the server closed the connection"),
        "{body}"
    );
    // Liveness asks nothing of the adapters: still 200, and during the drain too.
    assert_eq!(get(addr, "/livez").await.json()["status"], "alive");
    server.handle.shutdown();
    let live = get(addr, "/livez").await;
    assert_eq!(live.status, 200);
    server.stop().await.expect("a clean drain");
}

#[tokio::test]
async fn a_route_asking_for_a_handle_no_adapter_gives_stops_the_start() {
    let error = match Server::start_with(
        router(),
        |_| {},
        |builder| builder,
        |worker| {
            worker.adapter(PoolAdapter::new(None));
        },
    )
    .await
    {
        Ok(_) => panic!("started without the reporting pool"),
        Err(error) => error,
    };
    assert!(
        matches!(error, RuntimeError::MissingHandles { .. }),
        "{error}"
    );
    let message = error.to_string();
    assert!(
        message.contains("GET /pools needs `") && message.contains("Pool named `reporting`"),
        "{message}"
    );
}
