//! Adapters: everything that does IO plugs into the runtime as one.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;

use crate::config::Config;
use crate::drain::Drain;
use crate::handle::{self, HandleKey, ProcessHandles};
use crate::watchdog::lock;

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
    pub(crate) workers: usize,
    pub(crate) config: Arc<Config>,
    pub(crate) drain: Drain,
    /// Per-process adapters: where their handles go as they start.
    pub(crate) process_handles: Option<Arc<Mutex<ProcessHandles>>>,
}

impl AdapterContext {
    /// The worker this adapter instance belongs to (`None` for per-process adapters).
    pub fn worker(&self) -> Option<usize> {
        self.worker
    }

    /// How many workers the process runs (to split a per-process budget, such as a
    /// pool size, over per-worker instances).
    pub fn workers(&self) -> usize {
        self.workers
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
/// Its [`start`](Adapter::start) connects and gives a [`Handle`](Adapter::Handle): the
/// cheap `Clone` value the rest of the service uses (a pool, a client). The runtime
/// registers it for the adapter's scope, found with [`handle::get`](crate::handle::get())
/// (or a handler's `Dep<T>` argument):
///
/// - **per worker** ([`WorkerSetup::adapter`](crate::WorkerSetup::adapter)): each worker
///   builds its own instance on its own thread, so the adapter and its handle may hold
///   `!Send` values and tokio IO bound to that worker's reactor;
/// - **per process** ([`RuntimeBuilder::adapter`](crate::RuntimeBuilder::adapter)): one
///   instance on the runtime's process loop (a thread of its own, watched by the
///   watchdog like a worker); its handle is `Send + Sync` and every worker sees it. For
///   libraries that drive their IO off the caller's reactor (a broker connection with
///   its own IO thread, an embedded database's threads).
///
/// Stopping has three phases (see DESIGN.md): at the drain's start every adapter's
/// [`drain`](Adapter::drain) is called at once (stop taking new work); the runtime then
/// waits for the work in flight; then [`stop`](Adapter::stop) runs in reverse order of
/// start, each adapter by its own deadline.
///
/// ```
/// use std::time::Instant;
/// use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health};
///
/// /// A key-value cache client; handlers get a `Cache` handle.
/// #[derive(Clone)]
/// struct Cache { entries: std::rc::Rc<std::cell::Cell<usize>> }
///
/// struct CacheAdapter;
///
/// impl Adapter for CacheAdapter {
///     type Handle = Cache;
///
///     fn name(&self) -> &str { "cache" }
///
///     async fn start(&mut self, _ctx: &AdapterContext) -> Result<Cache, BoxError> {
///         Ok(Cache { entries: Default::default() }) // connect, declare, warm up…
///     }
///
///     async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
///         Ok(()) // flush, close
///     }
/// }
/// ```
pub trait Adapter: 'static {
    /// What [`start`](Adapter::start) gives the service: a pool, a client, a
    /// connection handle (`()` for an adapter that gives nothing, such as a listener).
    /// Per-process adapters' handles must be `Send + Sync`.
    type Handle: Clone + 'static;

    /// A short name for logs and errors (`http`, `db`, `amqp`).
    fn name(&self) -> &str;

    /// The name of this instance's handle, to tell two adapters of one handle type apart
    /// (two databases: `None` for the main one, `Some("reporting")` for the other).
    /// Default `None`.
    fn instance(&self) -> Option<&str> {
        None
    }

    /// Connects, declares, binds; gives the handle. The process does not serve until
    /// every adapter started.
    fn start(
        &mut self,
        ctx: &AdapterContext,
    ) -> impl Future<Output = Result<Self::Handle, BoxError>>;

    /// Reports health (default: healthy). An answer that takes longer than
    /// [`HEALTH_TIMEOUT`] counts as unhealthy: a stuck check (a ping with no timeout of
    /// its own) does not hold up the health report, nor the runtime's control loop.
    fn health(&self) -> impl Future<Output = Health> {
        async { Health::Healthy }
    }

    /// The drain has started: stop taking new work (close a listener, cancel consumers),
    /// keep serving what was accepted, and return. Called at once on every adapter of
    /// the process, by `deadline` (the end of the workers' phase). Default: nothing.
    fn drain(&mut self, deadline: Instant) -> impl Future<Output = ()> {
        let _ = deadline;
        async {}
    }

    /// Finishes and closes, by `deadline`: called after the work in flight ended (or the
    /// workers' phase ran out), in reverse order of start.
    fn stop(&mut self, deadline: Instant) -> impl Future<Output = Result<(), BoxError>>;
}

/// How long an adapter's [`Adapter::health`] may take before it counts as unhealthy.
pub const HEALTH_TIMEOUT: Duration = Duration::from_secs(2);

/// The object-safe form of [`Adapter`], used inside the runtime; it registers the handle
/// for its scope.
pub(crate) trait DynAdapter {
    fn name(&self) -> &str;
    /// The handle it gives (unit for none).
    fn provides(&self) -> HandleKey;
    fn start<'a>(&'a mut self, ctx: &'a AdapterContext)
    -> LocalBoxFuture<'a, Result<(), BoxError>>;
    fn health(&self) -> LocalBoxFuture<'_, Health>;
    fn drain(&mut self, deadline: Instant) -> LocalBoxFuture<'_, ()>;
    fn stop(&mut self, deadline: Instant) -> LocalBoxFuture<'_, Result<(), BoxError>>;
}

/// An adapter with the way its handle is registered: for its worker, or for the
/// process.
pub(crate) struct Scoped<A: Adapter> {
    adapter: A,
    register: fn(HandleKey, A::Handle, &AdapterContext),
}

impl<A: Adapter> Scoped<A> {
    /// A per-worker adapter: its handle is the worker's.
    pub(crate) fn per_worker(adapter: A) -> Self {
        Self {
            adapter,
            register: |key, value, _| handle::register_local(key, value),
        }
    }

    /// A per-process adapter: its handle is the process's.
    pub(crate) fn per_process(adapter: A) -> Self
    where
        A::Handle: Send + Sync,
    {
        Self {
            adapter,
            register: register_process::<A::Handle>,
        }
    }

    fn key(&self) -> HandleKey {
        HandleKey::of::<A::Handle>().with_name(self.adapter.instance())
    }
}

/// Adds a per-process adapter's handle to the process's, and makes them the process
/// loop's at once (a later adapter may build on it).
fn register_process<H: Clone + Send + Sync + 'static>(
    key: HandleKey,
    handle: H,
    ctx: &AdapterContext,
) {
    let Some(sink) = &ctx.process_handles else {
        return;
    };
    if key.is_unit() {
        return;
    }
    let snapshot = {
        let mut handles = lock(sink);
        handles.insert(key, Arc::new(handle));
        handles.clone()
    };
    handle::set_process(Arc::new(snapshot));
}

impl<A: Adapter> DynAdapter for Scoped<A> {
    fn name(&self) -> &str {
        self.adapter.name()
    }

    fn provides(&self) -> HandleKey {
        self.key()
    }

    fn start<'a>(
        &'a mut self,
        ctx: &'a AdapterContext,
    ) -> LocalBoxFuture<'a, Result<(), BoxError>> {
        Box::pin(async move {
            let handle = self.adapter.start(ctx).await?;
            (self.register)(self.key(), handle, ctx);
            Ok(())
        })
    }

    fn health(&self) -> LocalBoxFuture<'_, Health> {
        Box::pin(self.adapter.health())
    }

    fn drain(&mut self, deadline: Instant) -> LocalBoxFuture<'_, ()> {
        Box::pin(self.adapter.drain(deadline))
    }

    fn stop(&mut self, deadline: Instant) -> LocalBoxFuture<'_, Result<(), BoxError>> {
        Box::pin(self.adapter.stop(deadline))
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

/// How a start of adapters ended, when it did not fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Started {
    /// Every adapter started.
    All,
    /// A drain began first: the adapters that had started were stopped.
    Abandoned,
}

/// The least each adapter still to stop keeps of the time left, when one before it is
/// slow: a share of it, at most this.
const STOP_FLOOR: Duration = Duration::from_millis(500);

impl AdapterSet {
    pub(crate) fn push(&mut self, adapter: Box<dyn DynAdapter>) {
        self.adapters.push(adapter);
    }

    /// The handles the adapters give, in order (units left out).
    pub(crate) fn provides(&self) -> Vec<HandleKey> {
        self.adapters
            .iter()
            .map(|a| a.provides())
            .filter(|key| !key.is_unit())
            .collect()
    }

    /// Starts every adapter in order; on the first failure stops those already started
    /// (in reverse, by `stop_within` from now) and returns the error. A drain that begins
    /// meanwhile ends the start: what started stops, by `stop_within` from the drain's
    /// start, and the start is [`Started::Abandoned`].
    pub(crate) async fn start_all(
        &mut self,
        ctx: &AdapterContext,
        timeout: std::time::Duration,
        stop_within: std::time::Duration,
    ) -> Result<Started, crate::RuntimeError> {
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
                    self.stop_all(ctx.drain.deadline(stop_within)).await;
                    return Ok(Started::Abandoned);
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
            self.stop_all(ctx.drain.deadline(stop_within)).await;
            return Err(error);
        }
        Ok(Started::All)
    }

    /// The drain's first phase: tells every started adapter at once to stop taking new
    /// work, and waits for all to say they did (by `deadline`).
    pub(crate) async fn drain_all(&mut self, deadline: Instant) {
        let drains = self.adapters[..self.started]
            .iter_mut()
            .map(|adapter| adapter.drain(deadline));
        if tokio::time::timeout_at(deadline.into(), futures_util::future::join_all(drains))
            .await
            .is_err()
        {
            tracing::warn!(target: "nucleon::adapter", "adapters still draining at the end of their phase: stopping them");
        }
    }

    /// Stops the started adapters in reverse order, by `deadline` in all: each gets what
    /// is left but a floor kept for each one after it (a fair share, at most
    /// [`STOP_FLOOR`]), so one slow adapter cannot take the others' time. Reports (and
    /// survives) failures and overruns, and returns them.
    pub(crate) async fn stop_all(&mut self, deadline: Instant) -> Vec<String> {
        let mut problems = Vec::new();
        while self.started > 0 {
            let after = u32::try_from(self.started - 1).unwrap_or(u32::MAX);
            self.started -= 1;
            let own = own_deadline(Instant::now(), deadline, after);
            let adapter = &mut self.adapters[self.started];
            let name = adapter.name().to_owned();
            tracing::debug!(target: "nucleon::adapter", adapter = %name, "stopping");
            match tokio::time::timeout_at(own.into(), adapter.stop(own)).await {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    tracing::error!(target: "nucleon::adapter", adapter = %name, %error, "adapter `{name}` failed to stop cleanly: {error}");
                    problems.push(format!("adapter `{name}` failed to stop cleanly: {error}"));
                }
                Err(_) => {
                    tracing::error!(target: "nucleon::adapter", adapter = %name, "adapter `{name}` did not stop by its deadline");
                    problems.push(format!("adapter `{name}` did not stop by its deadline"));
                }
            }
        }
        problems
    }

    /// Each adapter's health, by name; asked of all at once, [`HEALTH_TIMEOUT`] each.
    pub(crate) async fn health(&self) -> Vec<(String, Health)> {
        use futures_util::FutureExt as _;
        let checks = self.adapters.iter().map(|adapter| async move {
            // A check that panics is an unhealthy adapter, not a dead loop.
            let check = std::panic::AssertUnwindSafe(adapter.health()).catch_unwind();
            let health = match tokio::time::timeout(HEALTH_TIMEOUT, check).await {
                Ok(Ok(health)) => health,
                Ok(Err(panic)) => Health::Unhealthy(format!(
                    "its health check panicked: {}",
                    crate::task::panic_message(&*panic)
                )),
                Err(_) => Health::Unhealthy(format!(
                    "no answer to its health check within {HEALTH_TIMEOUT:?}"
                )),
            };
            (adapter.name().to_owned(), health)
        });
        futures_util::future::join_all(checks).await
    }
}

/// One adapter's stop deadline: `deadline`, less a floor kept for each of the `after`
/// adapters still to stop after it.
fn own_deadline(now: Instant, deadline: Instant, after: u32) -> Instant {
    if after == 0 {
        return deadline;
    }
    let left = deadline.saturating_duration_since(now);
    let floor = (left / (2 * (after + 1))).min(STOP_FLOOR);
    deadline.checked_sub(floor * after).unwrap_or(now).max(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slow_adapter_gets_what_is_left_but_the_floors_of_those_after_it() {
        let now = Instant::now();
        let end = now + Duration::from_secs(3);
        assert_eq!(own_deadline(now, end, 0), end, "the last takes it all");
        assert_eq!(own_deadline(now, end, 1), end - Duration::from_millis(500));
        assert_eq!(own_deadline(now, end, 2), end - Duration::from_secs(1));
        // Little time left: a fair share each, not the whole floor.
        let soon = now + Duration::from_millis(400);
        assert_eq!(
            own_deadline(now, soon, 1),
            soon - Duration::from_millis(100)
        );
        assert_eq!(own_deadline(now, now, 3), now, "past: now");
    }
}
