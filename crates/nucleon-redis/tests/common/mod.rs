//! Shared helpers: a real runtime with Redis adapters (and, with `http`, an HTTP server
//! on 127.0.0.1), code run on one of its workers, a raw HTTP client, unique key prefixes.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "each test file uses part of the helpers"
)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nucleon_runtime::{
    Config, Phase, Runtime, RuntimeBuilder, RuntimeError, RuntimeHandle, WorkerSetup,
};

/// A key prefix of this test's own: tests run in parallel, in several binaries.
pub fn prefix(test: &str) -> String {
    format!("nucleon-redis-test:{}:{test}:", std::process::id())
}

/// `[default.redis]` for `url`, with more lines.
pub fn redis_toml(url: &str, more: &str) -> String {
    format!("[default.redis]\nurl = \"{url}\"\n{more}\n")
}

/// `host:port` of a `redis://[user@]host:port[/db]` URL.
pub fn socket_addr(url: &str) -> SocketAddr {
    let rest = url.split_once("://").expect("a URL").1;
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    let host_port = host_port.replace("localhost", "127.0.0.1");
    host_port
        .parse()
        .expect("the test Redis's URL names an IP and a port")
}

/// A running runtime, stopped when dropped.
pub struct Service {
    pub handle: RuntimeHandle,
    thread: Option<std::thread::JoinHandle<Result<(), RuntimeError>>>,
}

impl Service {
    /// Starts a runtime with `config` (TOML, environment `default`), `workers`
    /// workers, `customize` on its builder (per-process adapters), and `per_worker`
    /// on each worker; waits until it serves, or returns the error it stopped with.
    pub async fn start(
        toml: &str,
        workers: usize,
        customize: impl FnOnce(RuntimeBuilder) -> RuntimeBuilder + Send + 'static,
        per_worker: impl Fn(&mut WorkerSetup) + Send + Sync + 'static,
    ) -> Result<Self, RuntimeError> {
        let config = Config::from_toml(toml, "default").expect("the test's configuration");
        let (tx, rx) = tokio::sync::oneshot::channel();
        let thread = std::thread::spawn(move || {
            let builder = Runtime::builder()
                .config(config)
                .workers(workers)
                .handle_signals(false)
                .shutdown_timeout(Duration::from_secs(5));
            let runtime = customize(builder)
                .per_worker(move |worker| {
                    per_worker(worker);
                    Ok(())
                })
                .build()
                .expect("the runtime builds");
            let _ = tx.send(runtime.handle());
            runtime.run()
        });
        let handle = rx.await.expect("the runtime's handle");
        if handle.wait_for(Phase::Serving).await != Phase::Serving {
            let outcome =
                tokio::task::spawn_blocking(move || thread.join().expect("runtime thread"))
                    .await
                    .expect("join");
            return Err(outcome.expect_err("stopped before serving: an error"));
        }
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }

    /// Drains and waits for `run` to return.
    pub async fn stop(mut self) -> Result<(), RuntimeError> {
        self.handle.shutdown();
        let thread = self.thread.take().expect("running");
        tokio::task::spawn_blocking(move || thread.join().expect("runtime thread"))
            .await
            .expect("join")
    }

    /// The health of `adapter` as the process sees it (the first worker's, or the
    /// process's).
    pub async fn health_of(&self, adapter: &str) -> nucleon_runtime::Health {
        self.handle
            .health()
            .await
            .into_iter()
            .find(|h| h.adapter == adapter)
            .map(|h| h.health)
            .unwrap_or_else(|| panic!("no adapter `{adapter}` reports its health"))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

/// Runs `task` on a worker of a one-worker runtime whose worker has `adapters`, and
/// returns what it gives; the runtime is stopped after.
pub async fn on_a_worker<T, F, Fut>(
    toml: &str,
    adapters: impl Fn(&mut WorkerSetup) + Send + Sync + 'static,
    task: F,
) -> T
where
    T: Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T> + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    let tx = Arc::new(Mutex::new(Some(tx)));
    let service = Service::start(
        toml,
        1,
        |b| b,
        move |worker| {
            adapters(worker);
            let tx = Arc::clone(&tx);
            let run = task();
            worker.spawn("test task", async move {
                let out = run.await;
                if let Some(tx) = tx.lock().expect("not poisoned").take() {
                    let _ = tx.send(out);
                }
            });
        },
    )
    .await
    .expect("the runtime starts");
    let out = tokio::time::timeout(Duration::from_secs(30), rx)
        .await
        .expect("the task ends within 30 s")
        .expect("the task sends its outcome (it did not panic)");
    service.stop().await.expect("the runtime stops cleanly");
    out
}

#[cfg(feature = "http")]
#[allow(unused_imports, reason = "a test file without HTTP uses none of it")]
pub use http::*;

#[cfg(feature = "http")]
mod http {
    use super::*;
    use nucleon_http::{HttpConfig, HttpServer, Router};

    /// A runtime serving `router` on 127.0.0.1 (its routes' handle requirements
    /// declared), with `per_worker` adapters added before the server.
    pub struct Served {
        pub addr: SocketAddr,
        pub service: Service,
    }

    pub async fn serve(
        toml: &str,
        workers: usize,
        router: Router,
        per_worker: impl Fn(&mut WorkerSetup) + Send + Sync + 'static,
    ) -> Served {
        let mut config = HttpConfig {
            port: 0,
            ..HttpConfig::default()
        };
        let addr = config.resolve_port().expect("a free port");
        let requirements = router.requirements();
        let service = Service::start(
            toml,
            workers,
            move |mut builder| {
                for requirement in requirements {
                    builder = builder.require(requirement);
                }
                builder
            },
            move |worker| {
                per_worker(worker);
                worker.adapter(HttpServer::new(router.clone(), config.clone()));
            },
        )
        .await
        .expect("the service starts");
        Served { addr, service }
    }

    #[allow(unused_imports, reason = "a test file uses part of the client")]
    pub use nucleon_testkit::http::{Reply, get};

    /// The `x-cache` header of a reply ("-" when absent).
    pub trait CacheHeader {
        /// The `x-cache` header ("-" when absent).
        fn cache(&self) -> &str;
    }

    impl CacheHeader for Reply {
        fn cache(&self) -> &str {
            self.header("x-cache").unwrap_or("-")
        }
    }

    /// Sends one request on a new connection and reads its response.
    pub async fn request(
        addr: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Reply {
        nucleon_testkit::http::request(addr, method, path, headers, b"").await
    }
}
