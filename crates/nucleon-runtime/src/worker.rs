//! A worker ("nucleus"): one OS thread, one `current_thread` tokio runtime, one
//! `LocalSet`, its own adapters and state.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::adapter::{Adapter, AdapterContext, AdapterSet, BoxError, Health};
use crate::config::Config;
use crate::drain::Drain;
use crate::local_state::{self, LocalState};
use crate::task::TaskLabel;
use crate::watchdog::{ReportKind, Watchdog, WatchdogReport, WorkerSlot};
use crate::{RuntimeError, task};

/// Builds one worker: given to the runtime's per-worker setup closure, on that worker's
/// thread, every time the worker (re)starts.
///
/// Add the worker's adapters (started in order after setup returns), its local state, and
/// tasks to spawn once the adapters are up.
pub struct WorkerSetup {
    id: usize,
    config: Arc<Config>,
    drain: Drain,
    adapters: AdapterSet,
    tasks: Vec<(TaskLabel, LocalBoxFuture<'static, ()>)>,
}

impl WorkerSetup {
    /// This worker's index, `0..workers`.
    pub fn id(&self) -> usize {
        self.id
    }

    /// The process's configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The process's drain state.
    pub fn drain(&self) -> &Drain {
        &self.drain
    }

    /// Adds a per-worker adapter; adapters start in the order added.
    pub fn adapter(&mut self, adapter: impl Adapter) -> &mut Self {
        self.adapters.push(Box::new(adapter));
        self
    }

    /// Spawns a task (tracked, see [`crate::spawn`]) once this worker's adapters started.
    pub fn spawn(
        &mut self,
        label: impl Into<TaskLabel>,
        future: impl Future<Output = ()> + 'static,
    ) -> &mut Self {
        self.tasks.push((label.into(), Box::pin(future)));
        self
    }

    /// Creates this worker's [`LocalState`] of type `T` and registers it, so
    /// [`LocalState::current`] (and extractors built on it) find it.
    pub fn local_state<T: 'static>(&mut self, value: T) -> LocalState<T> {
        let state = LocalState::new(value);
        state.register();
        state
    }
}

/// The per-worker setup closure: runs on each worker's thread, at every (re)start.
pub(crate) type SetupFn = Arc<dyn Fn(&mut WorkerSetup) -> Result<(), BoxError> + Send + Sync>;

/// What a running worker knows about itself (thread-local).
pub(crate) struct WorkerContext {
    pub(crate) slot: Arc<WorkerSlot>,
    pub(crate) watchdog: Option<Watchdog>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Rc<WorkerContext>>> = const { RefCell::new(None) };
}

/// Runs `f` with the current worker's context; `None` off the workers.
pub(crate) fn with_context<R>(f: impl FnOnce(&WorkerContext) -> R) -> Option<R> {
    let ctx = CONTEXT.with(|c| c.borrow().clone())?;
    Some(f(&ctx))
}

/// The index of the worker running the caller, or `None` off the workers.
pub fn current_worker() -> Option<usize> {
    // Read in place: no clone of the context (taken for every HTTP request's guard).
    CONTEXT.with(|c| c.borrow().as_ref().map(|ctx| ctx.slot.worker))
}

/// Everything a worker thread needs to (re)build itself.
pub(crate) struct WorkerSpec {
    pub(crate) setup: SetupFn,
    pub(crate) config: Arc<Config>,
    pub(crate) drain: Drain,
    pub(crate) watchdog: Watchdog,
    pub(crate) start_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) events: mpsc::UnboundedSender<WorkerEvent>,
}

/// What a worker tells the control thread.
pub(crate) enum WorkerEvent {
    Ready {
        worker: usize,
    },
    StartFailed {
        worker: usize,
        error: RuntimeError,
    },
    Exited {
        worker: usize,
        panic: Option<String>,
    },
    /// The worker drained, but not cleanly (sent just before `Exited`).
    DrainIncomplete {
        problems: Vec<String>,
    },
}

/// Requests the control thread sends a worker.
pub(crate) enum WorkerCommand {
    Health(oneshot::Sender<Vec<(String, Health)>>),
}

/// Sends `Exited` when the worker thread ends, however it ends.
struct ExitGuard {
    worker: usize,
    events: mpsc::UnboundedSender<WorkerEvent>,
    slot: Arc<WorkerSlot>,
}

impl Drop for ExitGuard {
    fn drop(&mut self) {
        self.slot.retire();
        CONTEXT.with(|c| c.borrow_mut().take());
        let panic = std::thread::panicking().then(|| {
            PANIC_MESSAGE
                .with(|m| m.borrow_mut().take())
                .unwrap_or_default()
        });
        let _ = self.events.send(WorkerEvent::Exited {
            worker: self.worker,
            panic,
        });
    }
}

thread_local! {
    static PANIC_MESSAGE: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Starts worker `id`'s thread.
pub(crate) fn spawn_worker(
    spec: Arc<WorkerSpec>,
    id: usize,
    commands: mpsc::UnboundedReceiver<WorkerCommand>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("nucleon-worker-{id}"))
        .spawn(move || run_worker(&spec, id, commands))
}

/// How long a worker's end waits for tokio's blocking threads still running.
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

fn run_worker(spec: &WorkerSpec, id: usize, commands: mpsc::UnboundedReceiver<WorkerCommand>) {
    let slot = Arc::clone(&spec.watchdog.inner.slots[id]);
    let _exit = ExitGuard {
        worker: id,
        events: spec.events.clone(),
        slot: Arc::clone(&slot),
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = spec.events.send(WorkerEvent::StartFailed {
                worker: id,
                error: RuntimeError::Io {
                    what: "build a worker's tokio runtime",
                    source: error,
                },
            });
            return;
        }
    };
    let enabled = spec.watchdog.config().enabled;
    CONTEXT.with(|c| {
        *c.borrow_mut() = Some(Rc::new(WorkerContext {
            slot: Arc::clone(&slot),
            watchdog: enabled.then(|| spec.watchdog.clone()),
        }));
    });
    #[cfg(all(target_os = "linux", feature = "backtrace"))]
    slot.thread
        .store(crate::watchdog::stack_current_thread(), Ordering::Release);
    slot.beat();
    slot.alive.store(enabled, Ordering::Release);

    let local = tokio::task::LocalSet::new();
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        local.block_on(&runtime, serve(spec, id, commands, &slot));
    }));
    // The loop has ended, and its heartbeat with it: what follows (dropping the tasks
    // left, the tokio runtime waiting for its blocking threads) is teardown, not a
    // stall of a loop that serves.
    slot.alive.store(false, Ordering::Release);
    // Tasks still on the LocalSet are dropped here, on the worker's own thread.
    drop(local);
    local_state::clear_registered();
    // tokio's blocking threads (`tokio::fs`, `spawn_blocking`) get a moment to finish,
    // not forever: one stuck in a call would keep this thread from ending, and so the
    // worker from being restarted, or the drain from finishing.
    runtime.shutdown_timeout(BLOCKING_GRACE);
    if let Err(panic) = outcome {
        PANIC_MESSAGE.with(|m| *m.borrow_mut() = Some(task::panic_message(&*panic)));
        std::panic::resume_unwind(panic);
    }
}

async fn serve(
    spec: &WorkerSpec,
    id: usize,
    mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
    slot: &Arc<WorkerSlot>,
) {
    let mut setup = WorkerSetup {
        id,
        config: Arc::clone(&spec.config),
        drain: spec.drain.clone(),
        adapters: AdapterSet::default(),
        tasks: Vec::new(),
    };
    if let Err(source) = (spec.setup)(&mut setup) {
        let _ = spec.events.send(WorkerEvent::StartFailed {
            worker: id,
            error: RuntimeError::WorkerSetup { worker: id, source },
        });
        return;
    }
    let WorkerSetup {
        mut adapters,
        tasks,
        ..
    } = setup;
    let ctx = AdapterContext {
        worker: Some(id),
        config: Arc::clone(&spec.config),
        drain: spec.drain.clone(),
    };
    if spec.watchdog.config().enabled {
        // Deliberately untracked: it measures the loop, not itself. Started before the
        // adapters, so an adapter start that awaits (a connect) is not taken for a stall,
        // and one that blocks is.
        tokio::task::spawn_local(heartbeat(Arc::clone(slot), spec.watchdog.clone()));
    }
    if let Err(error) = adapters
        .start_all(&ctx, spec.start_timeout, spec.shutdown_timeout)
        .await
    {
        let _ = spec
            .events
            .send(WorkerEvent::StartFailed { worker: id, error });
        return;
    }
    for (label, future) in tasks {
        task::spawn(label, future);
    }
    let _ = spec.events.send(WorkerEvent::Ready { worker: id });

    loop {
        tokio::select! {
            () = spec.drain.draining() => break,
            command = commands.recv() => match command {
                Some(WorkerCommand::Health(reply)) => {
                    // An adapter slow to say how it is must not hold the drain up.
                    tokio::select! {
                        health = adapters.health() => {
                            let _ = reply.send(health);
                        }
                        () = spec.drain.draining() => break,
                    }
                }
                None => break,
            },
        }
    }

    let deadline = spec.drain.deadline(spec.shutdown_timeout);
    let mut problems = adapters.stop_all(deadline).await;
    if let Err(timeout) = spec.drain.wait_idle(deadline).await {
        tracing::warn!(target: "nucleon::runtime", worker = id, "worker {id}: {timeout}");
        problems.push(timeout.to_string());
    }
    if !problems.is_empty() {
        let problems = problems
            .into_iter()
            .map(|p| format!("worker {id}: {p}"))
            .collect();
        let _ = spec.events.send(WorkerEvent::DrainIncomplete { problems });
    }
}

/// Beats every interval; a late beat means the loop was blocked by something untracked.
async fn heartbeat(slot: Arc<WorkerSlot>, watchdog: Watchdog) {
    let interval = watchdog.config().heartbeat_interval();
    let threshold = watchdog.config().threshold;
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let previous = slot.beat();
        let gap = Duration::from_nanos(slot.now().saturating_sub(previous));
        if slot.stalled.swap(false, Ordering::AcqRel) && gap >= interval + threshold {
            watchdog.inner.publish(WatchdogReport {
                kind: ReportKind::StallEnded,
                worker: slot.worker,
                task: None,
                span: None,
                elapsed: gap.saturating_sub(interval),
                backtrace: None,
            });
        }
    }
}

/// One worker's setup, run on the current thread instead of a worker thread: for test
/// kits (such as `nucleon::test::TestClient`) that drive an app in-process.
///
/// [`LocalWorker::start`] runs the setup closure and starts its adapters in order, on the
/// caller's `LocalSet`; tasks the setup spawned start once the adapters are up.
/// [`LocalWorker::stop`] stops the adapters in reverse. There is no watchdog, heartbeat
/// or supervisor: tasks spawned here run untracked.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// # tokio::task::LocalSet::new().run_until(async {
/// use nucleon_runtime::{Config, LocalState, LocalWorker};
///
/// let worker = LocalWorker::start(Config::defaults(), |w| {
///     w.local_state(41_u32);
///     Ok(())
/// })
/// .await
/// .unwrap();
/// let state = LocalState::<u32>::current().unwrap();
/// assert_eq!(state.with_mut(|n| { *n += 1; *n }), 42);
/// worker.stop(std::time::Duration::from_secs(1)).await;
/// # }).await;
/// # });
/// ```
pub struct LocalWorker {
    adapters: AdapterSet,
    drain: Drain,
    /// The states its setup registered, and its context (worker 0): made the
    /// thread's while [`LocalWorker::enter`]'s guard lives, so that two such workers
    /// on one thread keep their own.
    states: RefCell<local_state::Registered>,
    context: Rc<WorkerContext>,
}

impl LocalWorker {
    /// Runs `setup` as worker 0 and starts its adapters, on the current thread.
    ///
    /// # Errors
    /// The setup's error, or the first adapter that failed to start (those already
    /// started are stopped).
    ///
    /// # Panics
    /// Outside a tokio `LocalSet` if the setup spawned tasks.
    pub async fn start(
        config: Config,
        setup: impl FnOnce(&mut WorkerSetup) -> Result<(), BoxError>,
    ) -> Result<Self, RuntimeError> {
        let config = Arc::new(config);
        let settings = config.runtime_settings()?;
        let drain = Drain::new();
        let mut worker = WorkerSetup {
            id: 0,
            config: Arc::clone(&config),
            drain: drain.clone(),
            adapters: AdapterSet::default(),
            tasks: Vec::new(),
        };
        let context = Rc::new(WorkerContext {
            slot: Arc::new(WorkerSlot::new(0, settings.watchdog.threshold)),
            watchdog: None,
        });
        // The setup registers its states on a clean slate: this worker's only.
        local_state::replace_registered(local_state::Registered::new());
        let previous = CONTEXT.with(|c| c.borrow_mut().replace(Rc::clone(&context)));
        let set_up = setup(&mut worker);
        let states = RefCell::new(local_state::registered());
        CONTEXT.with(|c| *c.borrow_mut() = previous);
        set_up.map_err(|source| RuntimeError::WorkerSetup { worker: 0, source })?;
        let WorkerSetup {
            mut adapters,
            tasks,
            ..
        } = worker;
        let ctx = AdapterContext {
            worker: Some(0),
            config,
            drain: drain.clone(),
        };
        let entered = enter(&states, &context);
        let started = adapters
            .start_all(&ctx, settings.start_timeout, settings.shutdown_timeout)
            .await;
        drop(entered);
        started?;
        // Registered on the thread too (with what the adapters registered), as a
        // worker thread's are.
        local_state::replace_registered(states.borrow().clone());
        for (label, future) in tasks {
            task::spawn(label, future);
        }
        Ok(Self {
            adapters,
            drain,
            states,
            context,
        })
    }

    /// Makes this worker the thread's own until the guard drops: its registered
    /// [`LocalState`]s are the ones [`LocalState::current`] finds, and
    /// [`current_worker`] is `Some(0)`. Call it around whatever runs this worker's
    /// handlers (one request of a test client, say). After [`LocalWorker::start`] its
    /// states stay registered on the thread too, until another worker's replace them.
    pub fn enter(&self) -> EnteredWorker<'_> {
        enter(&self.states, &self.context)
    }

    /// This worker's drain state (start it to simulate a shutdown).
    pub fn drain(&self) -> &Drain {
        &self.drain
    }

    /// Each adapter's health, by name.
    pub async fn health(&self) -> Vec<(String, Health)> {
        self.adapters.health().await
    }

    /// Starts the drain, stops the adapters in reverse, each by `timeout`, and clears
    /// this thread's registered [`LocalState`]s, as the end of a worker thread does.
    pub async fn stop(mut self, timeout: Duration) {
        self.drain.start();
        let entered = enter(&self.states, &self.context);
        self.adapters.stop_all(Instant::now() + timeout).await;
        drop(entered);
        local_state::unregister(&self.states.borrow());
    }
}

/// A [`LocalWorker`] made the thread's own (see [`LocalWorker::enter`]); what was the
/// thread's before comes back when it drops.
#[must_use = "the worker is the thread's only while the guard lives"]
pub struct EnteredWorker<'a> {
    /// The worker's states: what the thread registered meanwhile goes back there.
    states: &'a RefCell<local_state::Registered>,
    /// The thread's own, to give back.
    previous: Option<local_state::Registered>,
    context: Option<Rc<WorkerContext>>,
}

/// Makes `states` and `context` the thread's until the guard drops.
fn enter<'a>(
    states: &'a RefCell<local_state::Registered>,
    context: &Rc<WorkerContext>,
) -> EnteredWorker<'a> {
    let previous = local_state::replace_registered(states.borrow().clone());
    let context = CONTEXT.with(|c| c.borrow_mut().replace(Rc::clone(context)));
    EnteredWorker {
        states,
        previous: Some(previous),
        context,
    }
}

impl Drop for EnteredWorker<'_> {
    fn drop(&mut self) {
        if let Some(previous) = self.previous.take() {
            *self.states.borrow_mut() = local_state::replace_registered(previous);
        }
        let context = self.context.take();
        CONTEXT.with(|c| *c.borrow_mut() = context);
    }
}

impl std::fmt::Debug for EnteredWorker<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EnteredWorker").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LocalWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocalWorker")
            .field("drain", &self.drain)
            .finish_non_exhaustive()
    }
}
