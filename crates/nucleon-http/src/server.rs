//! The HTTP server: one listener per worker (`SO_REUSEPORT`), hyper connections on the
//! worker's loop, limits, and the drain.
//!
//! A request's way through the crate, from the accepted socket to the written
//! response, is told hop by hop in [`life_of_a_request`].
//!
//! One job per file, and the dependencies point one way, from the adapter down to
//! the connection's state:
//!
//! - `config`: the settings ([`HttpConfig`]);
//! - `listener`: the address claimed ([`PortClaim`]), each worker's socket bound, the
//!   accept loop and its back-off;
//! - `serve`: one connection's task: protocol sniffed (`sniff`), HTTP/1.1 or HTTP/2
//!   through hyper, timeouts, the drain, the connection's own answers (408, JSON for
//!   a head hyper rejected);
//! - `hyper_service`: the service hyper calls per request, which hands it to the
//!   worker's pipeline ([`HttpService`]);
//! - `io`: the socket as hyper reads and writes it;
//! - `shared`: what one worker's server tasks share;
//! - `conn`: a connection's state, and the watcher over every connection's timeouts;
//! - `socket`: what the server asks of a socket directly (pending bytes, lingering
//!   close).
//!
//! The pipeline (`crate::service`) uses `config` and `conn` only; nothing in them
//! uses the pipeline.

mod config;
pub(crate) mod conn;
mod hyper_service;
mod io;
mod life_of_a_request;
mod listener;
mod serve;
mod shared;
mod sniff;
mod socket;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Instant;

use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health};
use tokio::sync::{Notify, watch};

pub use config::{DEFAULT_BODY_LIMIT, HttpConfig};
pub use listener::PortClaim;

use crate::service::HttpService;
use crate::{Router, ServerError};
use conn::{Watcher, watch_interval};
use listener::{accept_loop, bind};
use shared::{Shared, builders};

/// The HTTP server adapter: add one per worker (the umbrella's `App` does).
///
/// ```no_run
/// use nucleon_http::{get, HttpConfig, HttpServer, Router};
/// use nucleon_runtime::Runtime;
///
/// async fn hello() -> &'static str { "hello" }
///
/// let router = Router::new().route("/", get(hello));
/// let mut config = HttpConfig::default();
/// config.port = 8080;
/// Runtime::builder()
///     .per_worker(move |worker| {
///         worker.adapter(HttpServer::new(router.clone(), config.clone()));
///         Ok(())
///     })
///     .build()?
///     .run()?;
/// # Ok::<(), nucleon_runtime::RuntimeError>(())
/// ```
pub struct HttpServer {
    router: Router,
    config: HttpConfig,
    running: Option<Running>,
}

struct Running {
    shared: Rc<Shared>,
    /// `None` once the drain closed the listener.
    accept: Option<tokio::task::JoinHandle<()>>,
    watch: tokio::task::JoinHandle<()>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("config", &self.config)
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// A server for `router` with `config`. Nothing binds until the runtime starts it.
    pub fn new(router: Router, config: HttpConfig) -> Self {
        Self {
            router,
            config: config.normalised(),
            running: None,
        }
    }

    /// The address this worker listens on, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.local_addr)
    }
}

impl Adapter for HttpServer {
    type Handle = ();

    fn name(&self) -> &str {
        "http"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<(), BoxError> {
        let addr = self.config.addr()?;
        let listener =
            bind(addr, self.config.backlog).map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr()?;
        let service = HttpService::new(&self.router, &self.config, Some(ctx.drain().clone()));
        let (http1, http2) = builders(&self.config);
        let (shutdown, _) = watch::channel(false);
        let shared = Rc::new(Shared {
            service,
            http1,
            http2,
            header_read_timeout: self.config.header_read_timeout,
            body_read_timeout: self.config.body_read_timeout,
            send_timeout: self.config.send_timeout,
            shutdown,
            closed: Notify::new(),
            connections: Cell::new(0),
            idle: Notify::new(),
            watcher: Watcher::default(),
        });
        let watch = nucleon_runtime::spawn("http timeouts", watch_loop(Rc::clone(&shared)));
        let accept =
            nucleon_runtime::spawn("http accept", accept_loop(Rc::clone(&shared), listener));
        tracing::info!(target: "nucleon::http", worker = ?ctx.worker(), "listening on http://{local_addr}");
        self.running = Some(Running {
            shared,
            accept: Some(accept),
            watch,
            local_addr,
        });
        Ok(())
    }

    async fn health(&self) -> Health {
        match &self.running {
            Some(running) if *running.shared.shutdown.borrow() => {
                Health::Unhealthy("draining: listener closed".into())
            }
            Some(_) => Health::Healthy,
            None => Health::Unhealthy("not started".into()),
        }
    }

    /// Readiness answers 503 from the drain's start (the pipeline sees the drain); after
    /// `http.lame_duck` (bounded by `deadline`) the listener closes, and requests that
    /// still arrive on connections it accepted are served, with `Connection: close`
    /// (a restart on the same port hands new connections to the new process; the old
    /// one loses none it took).
    async fn drain(&mut self, deadline: Instant) {
        let lame_duck = self.config.lame_duck;
        if self.running.is_some() && !lame_duck.is_zero() {
            tracing::info!(target: "nucleon::http", "draining: readiness answers 503; lame duck for {lame_duck:?}");
            let until = (Instant::now() + lame_duck).min(deadline);
            tokio::time::sleep_until(until.into()).await;
        }
        self.close(deadline).await;
    }

    /// Waits for the connections still open to end, by `deadline`.
    async fn stop(&mut self, deadline: Instant) -> Result<(), BoxError> {
        // Not drained first (a later adapter failed to start): close now, with no
        // lame duck for a server that never served.
        self.close(deadline).await;
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        let shared = &running.shared;
        let wait = async {
            loop {
                let idle = shared.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if shared.connections.get() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let waited = tokio::time::timeout_at(deadline.into(), wait).await;
        running.watch.abort();
        match waited {
            Ok(()) => Ok(()),
            Err(_) => Err(format!(
                "{} connection(s) still open at the shutdown deadline",
                shared.connections.get()
            )
            .into()),
        }
    }
}

impl HttpServer {
    /// Closes the listener (once): no new connections, no new requests.
    async fn close(&mut self, deadline: Instant) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let Some(accept) = running.accept.take() else {
            return;
        };
        // First: connections time their grace and lingering close by it.
        running.shared.watcher.set_deadline(deadline);
        running.shared.service.set_closing();
        running.shared.shutdown.send_replace(true);
        running.shared.closed.notify_waiters();
        running.shared.watcher.close_all();
        let _ = accept.await;
    }
}

async fn watch_loop(shared: Rc<Shared>) {
    let timeout = shared.header_read_timeout;
    let mut ticks = tokio::time::interval(watch_interval(timeout));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        shared.watcher.sweep(timeout);
    }
}
