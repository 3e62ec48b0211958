//! Shared helpers: a real runtime serving a router on 127.0.0.1, and a raw HTTP client.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "each test file uses part of the helpers"
)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nucleon_http::{HttpConfig, HttpServer, Router};
use nucleon_runtime::{Phase, Runtime, RuntimeBuilder, RuntimeHandle, WorkerSetup};

pub struct Server {
    pub addr: SocketAddr,
    pub handle: RuntimeHandle,
    thread: Option<std::thread::JoinHandle<Result<(), nucleon_runtime::RuntimeError>>>,
}

impl Server {
    pub async fn start(router: Router, configure: impl FnOnce(&mut HttpConfig)) -> Self {
        Self::start_with(router, configure, |builder| builder, |_| {})
            .await
            .expect("the runtime starts")
    }

    /// Starts with more: the builder's own settings and adapters (`customize`), and
    /// more per-worker adapters (`per_worker`, before the HTTP server). The routes'
    /// handle requirements are declared, as the umbrella's `App` does.
    pub async fn start_with(
        router: Router,
        configure: impl FnOnce(&mut HttpConfig),
        customize: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder + Send + 'static,
        per_worker: impl Fn(&mut WorkerSetup) + Send + Sync + 'static,
    ) -> Result<Self, nucleon_runtime::RuntimeError> {
        let mut config = HttpConfig {
            port: 0,
            ..HttpConfig::default()
        };
        configure(&mut config);
        let addr = config.resolve_port().expect("a free port");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let mut builder = Runtime::builder()
                .workers(2)
                .handle_signals(false)
                .shutdown_timeout(Duration::from_secs(10));
            for requirement in router.requirements() {
                builder = builder.require(requirement);
            }
            let runtime = customize(builder)
                .per_worker(move |worker| {
                    per_worker(worker);
                    worker.adapter(HttpServer::new(router.clone(), config.clone()));
                    Ok(())
                })
                .build()
                .expect("runtime builds");
            let _ = tx.send(runtime.handle());
            runtime.run()
        });
        let handle = rx.await.expect("runtime handle");
        if handle.wait_for(Phase::Serving).await != Phase::Serving {
            return Err(tokio::task::spawn_blocking(move || {
                thread.join().expect("runtime thread")
            })
            .await
            .expect("join")
            .expect_err("stopped before serving: an error"));
        }
        Ok(Self {
            addr,
            handle,
            thread: Some(thread),
        })
    }

    /// Drains and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), nucleon_runtime::RuntimeError> {
        self.handle.shutdown();
        let thread = self.thread.take().expect("running");
        tokio::task::spawn_blocking(move || thread.join().expect("runtime thread"))
            .await
            .expect("join")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

#[allow(unused_imports, reason = "each test file uses part of the client")]
pub use nucleon_testkit::http::{Reply, get, parse_reply, raw, read_reply, request};

/// Events captured by a tracing layer: target, and every field as text (`message`
/// included).
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<CapturedEvent>>>);

#[derive(Debug, Clone)]
pub struct CapturedEvent {
    pub target: String,
    pub level: tracing::Level,
    pub fields: BTreeMap<String, String>,
}

impl Captured {
    pub fn events(&self, target: &str) -> Vec<CapturedEvent> {
        self.0
            .lock()
            .expect("not poisoned")
            .iter()
            .filter(|e| e.target == target)
            .cloned()
            .collect()
    }
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Captured {
    fn on_event(
        &self,
        event: &tracing::Event<'_>,
        _ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.0.lock().expect("not poisoned").push(CapturedEvent {
            target: event.metadata().target().to_owned(),
            level: *event.metadata().level(),
            fields,
        });
    }
}
