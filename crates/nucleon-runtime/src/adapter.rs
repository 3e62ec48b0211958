//! Adapters: everything that does IO plugs into the runtime as one.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;

use crate::config::Config;
use crate::drain::Drain;

/// The error type adapters return: any error, boxed.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An adapter's own account of its health.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    /// Working.
    Healthy,
    /// Working, but impaired (e.g. reconnecting with a cached fallback).
    Degraded(String),
    /// Not working.
    Unhealthy(String),
}

impl Health {
    /// Whether the adapter can serve (healthy or degraded).
    pub fn is_serving(&self) -> bool {
        !matches!(self, Health::Unhealthy(_))
    }
}

/// What an adapter is given at start: where it runs, the configuration, the drain.
#[derive(Debug, Clone)]
pub struct AdapterContext {
    pub(crate) worker: Option<usize>,
    pub(crate) config: Arc<Config>,
    pub(crate) drain: Drain,
}

impl AdapterContext {
    /// The worker this adapter instance belongs to (`None` for per-process adapters).
    pub fn worker(&self) -> Option<usize> {
        self.worker
    }

    /// The process's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The process's drain state: watch it to stop taking new work, and hold a
    /// [`Drain::guard`] for each unit of accepted work.
    pub fn drain(&self) -> &Drain {
        &self.drain
    }
}

/// A component that does IO: an HTTP listener, a database pool, an AMQP connection, a
/// resolver, or your own (a Redis client, say).
///
/// The runtime starts adapters in registration order and stops them in reverse. A
/// per-worker adapter is built by the worker's setup closure on that worker's thread, so
/// it may hold `!Send` values and tokio IO bound to that worker's reactor. A per-process
/// adapter runs on the control thread; it may only share with workers what is safe to
/// share across runtimes (see DESIGN.md).
///
/// ```
/// use std::time::Instant;
/// use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health};
///
/// struct Cache { entries: usize }
///
/// impl Adapter for Cache {
///     fn name(&self) -> &str { "cache" }
///
///     async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
///         self.entries = 0; // connect, declare, warm up…
///         Ok(())
///     }
///
///     async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
///         Ok(()) // flush, close
///     }
/// }
/// ```
pub trait Adapter: 'static {
    /// A short name for logs and errors (`http`, `db`, `amqp`).
    fn name(&self) -> &str;

    /// Connects, declares, binds. The process does not serve until every adapter started.
    fn start(&mut self, ctx: &AdapterContext) -> impl Future<Output = Result<(), BoxError>>;

    /// Reports health (default: healthy). An answer that takes longer than
    /// [`HEALTH_TIMEOUT`] counts as unhealthy: a stuck check (a ping with no timeout of
    /// its own) does not hold up the health report, nor the runtime's control loop.
    fn health(&self) -> impl Future<Output = Health> {
        async { Health::Healthy }
    }

    /// Stops taking work and finishes what was accepted, by `deadline`.
    fn stop(&mut self, deadline: Instant) -> impl Future<Output = Result<(), BoxError>>;
}

/// How long an adapter's [`Adapter::health`] may take before it counts as unhealthy.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The object-safe form of [`Adapter`], used inside the runtime.
pub(crate) trait DynAdapter {
    fn name(&self) -> &str;
    fn start<'a>(&'a mut self, ctx: &'a AdapterContext)
    -> LocalBoxFuture<'a, Result<(), BoxError>>;
    fn health(&self) -> LocalBoxFuture<'_, Health>;
    fn stop(&mut self, deadline: Instant) -> LocalBoxFuture<'_, Result<(), BoxError>>;
}

impl<A: Adapter> DynAdapter for A {
    fn name(&self) -> &str {
        Adapter::name(self)
    }

    fn start<'a>(
        &'a mut self,
        ctx: &'a AdapterContext,
    ) -> LocalBoxFuture<'a, Result<(), BoxError>> {
        Box::pin(Adapter::start(self, ctx))
    }

    fn health(&self) -> LocalBoxFuture<'_, Health> {
        Box::pin(Adapter::health(self))
    }

    fn stop(&mut self, deadline: Instant) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(Adapter::stop(self, deadline))
    }
}

impl fmt::Debug for dyn DynAdapter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Adapter({})", self.name())
    }
}

/// Adapters in registration order, started and stopped as a group.
#[derive(Default)]
pub(crate) struct AdapterSet {
    adapters: Vec<Box<dyn DynAdapter>>,
    started: usize,
}

impl AdapterSet {
    pub(crate) fn push(&mut self, adapter: Box<dyn DynAdapter>) {
        self.adapters.push(adapter);
    }

    /// Starts every adapter in order; on the first failure stops those already started
    /// (in reverse) and returns the error.
    pub(crate) async fn start_all(
        &mut self,
        ctx: &AdapterContext,
        timeout: std::time::Duration,
        shutdown_timeout: std::time::Duration,
    ) -> Result<(), crate::RuntimeError> {
        for index in 0..self.adapters.len() {
            let adapter = &mut self.adapters[index];
            let name = adapter.name().to_owned();
            tracing::debug!(target: "nucleon::adapter", adapter = %name, worker = ?ctx.worker, "starting");
            // A drain (a signal) during the start ends it: what started stops, and the
            // process goes on to its end rather than wait out the start first.
            let outcome = tokio::select! {
                biased;
                () = ctx.drain.draining() => {
                    tracing::info!(target: "nucleon::adapter", adapter = %name, worker = ?ctx.worker, "draining: start of adapter `{name}` abandoned");
                    self.stop_all(Instant::now() + shutdown_timeout).await;
                    return Ok(());
                }
                outcome = tokio::time::timeout(timeout, adapter.start(ctx)) => outcome,
            };
            let error = match outcome {
                Ok(Ok(())) => {
                    self.started = index + 1;
                    continue;
                }
                Ok(Err(source)) => crate::RuntimeError::AdapterStart {
                    adapter: name,
                    worker: ctx.worker,
                    source,
                },
                Err(_) => crate::RuntimeError::AdapterStartTimeout {
                    adapter: name,
                    worker: ctx.worker,
                    timeout,
                },
            };
            self.stop_all(Instant::now() + shutdown_timeout).await;
            return Err(error);
        }
        Ok(())
    }

    /// Stops the started adapters in reverse order, each by `deadline`; reports (and
    /// survives) failures and overruns, and returns them.
    pub(crate) async fn stop_all(&mut self, deadline: Instant) -> Vec<String> {
        let mut problems = Vec::new();
        while self.started > 0 {
            self.started -= 1;
            let adapter = &mut self.adapters[self.started];
            let name = adapter.name().to_owned();
            tracing::debug!(target: "nucleon::adapter", adapter = %name, "stopping");
            match tokio::time::timeout_at(deadline.into(), adapter.stop(deadline)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(target: "nucleon::adapter", adapter = %name, %error, "adapter `{name}` failed to stop cleanly: {error}");
                    problems.push(format!("adapter `{name}` failed to stop cleanly: {error}"));
                }
                Err(_) => {
                    tracing::error!(target: "nucleon::adapter", adapter = %name, "adapter `{name}` did not stop by the shutdown deadline");
                    problems.push(format!("adapter `{name}` did not stop by the deadline"));
                }
            }
        }
        problems
    }

    /// Each adapter's health, by name; asked of all at once, [`HEALTH_TIMEOUT`] each.
    pub(crate) async fn health(&self) -> Vec<(String, Health)> {
        let checks = self.adapters.iter().map(|adapter| async move {
            let health = tokio::time::timeout(HEALTH_TIMEOUT, adapter.health())
                .await
                .unwrap_or_else(|_| {
                    Health::Unhealthy(format!(
                        "no answer to its health check within {HEALTH_TIMEOUT:?}"
                    ))
                });
            (adapter.name().to_owned(), health)
        });
        futures_util::future::join_all(checks).await
    }
}
