//! The runtime: builds workers, runs the lifecycle, supervises, drains.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot, watch};

use crate::adapter::{Adapter, BoxError, HEALTH_TIMEOUT, Health, Scoped};
use crate::config::{Config, RuntimeSettings};
use crate::drain::Drain;
use crate::handle::{self, HandleKey, ProcessHandles, Requirement};
use crate::lifecycle::{Hooks, hook, run_cleanup_hooks, run_hooks};
use crate::metrics::MetricsSettings;
use crate::process::{ProcessAdapter, ProcessEvent, ProcessLoop, ProcessSpec};
use crate::watchdog::{Watchdog, WatchdogConfig, lock};
use crate::worker::{
    SetupFn, WorkerCommand, WorkerEvent, WorkerSetup, WorkerSpec, check_requirements, dry_run,
    spawn_worker,
};
use crate::{RuntimeError, offload};

/// How many times a worker that panics while starting is retried before start fails.
const START_ATTEMPTS: u32 = 3;

/// Where the runtime is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Hooks and adapters are starting.
    Starting,
    /// Every worker is up; `on_start` hooks have run.
    Serving,
    /// A drain has started.
    Draining,
    /// `run` has returned.
    Stopped,
}

/// Configures and builds a [`Runtime`].
///
/// ```no_run
/// use nucleon_runtime::Runtime;
///
/// Runtime::builder()
///     .workers(2)
///     .on_start(|| async {
///         tracing::info!("serving");
///         Ok(())
///     })
///     .per_worker(|worker| {
///         worker.spawn("hello", async {});
///         Ok(())
///     })
///     .build()?
///     .run()?;
/// # Ok::<(), nucleon_runtime::RuntimeError>(())
/// ```
#[must_use]
pub struct RuntimeBuilder {
    workers: Option<usize>,
    config: Option<Config>,
    watchdog: Option<WatchdogConfig>,
    shutdown_timeout: Option<Duration>,
    start_timeout: Option<Duration>,
    adapters: Vec<ProcessAdapter>,
    requirements: Vec<Requirement>,
    setup: Option<SetupFn>,
    hooks: Hooks,
    handle_signals: bool,
}

impl RuntimeBuilder {
    /// The number of workers (default: `runtime.workers`, else the available cores).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers.max(1));
        self
    }

    /// The configuration (default: [`Config::defaults`], i.e. no file, overrides only).
    /// Its `runtime` table supplies whatever this builder does not set.
    pub fn config(mut self, config: Config) -> Self {
        self.config = Some(config);
        self
    }

    /// Watchdog settings, overriding `runtime.watchdog`.
    pub fn watchdog(mut self, watchdog: WatchdogConfig) -> Self {
        self.watchdog = Some(watchdog);
        self
    }

    /// How long a drain may last, overriding `runtime.shutdown_timeout` (default 10 s).
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = Some(timeout);
        self
    }

    /// How long each adapter may take to start (default 30 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = Some(timeout);
        self
    }

    /// Adds a per-process adapter: one instance for the process, run on the process
    /// loop (a thread of its own, watched by the watchdog like a worker); its handle,
    /// `Send + Sync`, is reachable from every worker (see [`crate::handle`]).
    /// Per-process adapters start before the workers and stop after them.
    pub fn adapter<A>(mut self, adapter: A) -> Self
    where
        A: Adapter + Send,
        A::Handle: Send + Sync,
    {
        self.adapters.push(Box::new(Scoped::per_process(adapter)));
        self
    }

    /// Declares that something (a route, a consumer) needs a handle: the start fails,
    /// naming it, when no adapter gives it (see [`Runtime::check`]).
    pub fn require(mut self, requirement: Requirement) -> Self {
        self.requirements.push(requirement);
        self
    }

    /// Sets the per-worker setup: called on each worker's thread, at every (re)start, to
    /// add that worker's adapters, state and tasks. Only the closure needs to be `Send`.
    pub fn per_worker<F>(mut self, setup: F) -> Self
    where
        F: Fn(&mut WorkerSetup) -> Result<(), BoxError> + Send + Sync + 'static,
    {
        self.setup = Some(Arc::new(setup));
        self
    }

    /// Adds a hook run after configuration loads, before any adapter starts.
    pub fn on_initialise<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.hooks.initialise.push(hook(f));
        self
    }

    /// Adds a hook run once every adapter and worker is up, before serving.
    pub fn on_start<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.hooks.start.push(hook(f));
        self
    }

    /// Adds a hook run after every adapter stopped, before `run` returns.
    pub fn on_stop<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.hooks.stop.push(hook(f));
        self
    }

    /// Whether `run` listens for SIGTERM, SIGINT, SIGHUP and SIGUSR1 (default true).
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.handle_signals = handle;
        self
    }

    /// Builds the runtime; nothing starts until [`Runtime::run`].
    ///
    /// # Errors
    /// [`RuntimeError::Config`] when the `runtime` settings are invalid.
    pub fn build(self) -> Result<Runtime, RuntimeError> {
        let config = self.config.unwrap_or_else(Config::defaults);
        let mut settings = config.runtime_settings()?;
        if let Some(workers) = self.workers {
            settings.workers = Some(workers);
        }
        if let Some(watchdog) = self.watchdog {
            settings.watchdog = watchdog;
        }
        if let Some(timeout) = self.shutdown_timeout {
            settings.shutdown_timeout = timeout;
        }
        if let Some(timeout) = self.start_timeout {
            settings.start_timeout = timeout;
        }
        // The reserve is the per-process adapters': none, no reserve.
        let workers_phase = if self.adapters.is_empty() {
            settings.shutdown_timeout
        } else {
            check_reserve(&config, &settings)?;
            settings.workers_phase()
        };
        let workers = settings
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
            .max(1);
        let metrics = MetricsSettings::load(&config)?;
        let watchdog = Watchdog::new(settings.watchdog.clone(), workers);
        let drain = Drain::new();
        let (phase, _) = watch::channel(Phase::Starting);
        let handle = RuntimeHandle {
            drain: drain.clone(),
            watchdog,
            shared: Arc::new(HandleShared {
                phase,
                restarts: AtomicU64::new(0),
                control: Mutex::new(None),
                workers,
            }),
        };
        Ok(Runtime {
            config: Arc::new(config),
            settings,
            metrics,
            workers,
            adapters: self.adapters,
            requirements: self.requirements.into(),
            workers_phase,
            setup: self
                .setup
                .unwrap_or_else(|| Arc::new(|_: &mut WorkerSetup| Ok(()))),
            hooks: self.hooks,
            handle_signals: self.handle_signals,
            handle,
        })
    }
}

/// Nucleon's runtime: N workers, adapters, lifecycle hooks, signals, drain, watchdog.
///
/// See [`RuntimeBuilder`] and DESIGN.md. [`Runtime::run`] blocks the calling thread
/// (which becomes the control thread) until the process has drained.
pub struct Runtime {
    config: Arc<Config>,
    settings: RuntimeSettings,
    metrics: MetricsSettings,
    workers: usize,
    adapters: Vec<ProcessAdapter>,
    requirements: Arc<[Requirement]>,
    /// How long after the drain's start the workers' phases end.
    workers_phase: Duration,
    setup: SetupFn,
    hooks: Hooks,
    handle_signals: bool,
    handle: RuntimeHandle,
}

impl Runtime {
    /// A builder with defaults.
    pub fn builder() -> RuntimeBuilder {
        RuntimeBuilder {
            workers: None,
            config: None,
            watchdog: None,
            shutdown_timeout: None,
            start_timeout: None,
            adapters: Vec::new(),
            requirements: Vec::new(),
            setup: None,
            hooks: Hooks::default(),
            handle_signals: true,
        }
    }

    /// A handle to watch and control the runtime from other threads.
    pub fn handle(&self) -> RuntimeHandle {
        self.handle.clone()
    }

    /// The settings in force.
    pub fn settings(&self) -> &RuntimeSettings {
        &self.settings
    }

    /// The metrics settings in force (`[<env>.metrics]`).
    pub fn metrics_settings(&self) -> &MetricsSettings {
        &self.metrics
    }

    /// How often loops flush their local metrics; `None` when metrics are off.
    fn metrics_interval(&self) -> Option<Duration> {
        self.metrics.enabled.then_some(self.metrics.flush_interval)
    }

    /// Checks, without starting anything, that every handle declared needed
    /// ([`RuntimeBuilder::require`]) is given by an adapter: per-process adapters, and
    /// those the per-worker setup adds (run once here, as worker 0, on the calling
    /// thread: its adapters are built, not started, and its tasks dropped unrun).
    /// Returns the handles the adapters give. `app check` runs it.
    ///
    /// # Errors
    /// [`RuntimeError::MissingHandles`] naming what needs which handle, or the setup's
    /// own error.
    pub fn check(&self) -> Result<Vec<HandleKey>, RuntimeError> {
        let mut provided: Vec<HandleKey> = self
            .adapters
            .iter()
            .map(|a| a.provides())
            .filter(|key| !key.is_unit())
            .collect();
        provided.extend(dry_run(
            &self.setup,
            Arc::clone(&self.config),
            Drain::new(),
        )?);
        check_requirements(&self.requirements, &provided, None)?;
        Ok(provided)
    }

    /// Runs the whole lifecycle on the calling thread: initialise hooks, adapters,
    /// workers, start hooks, serve until a signal or [`RuntimeHandle::shutdown`], drain,
    /// stop adapters in reverse, stop hooks.
    ///
    /// # Errors
    /// A failed start (naming the adapter or hook and its cause), or a drain that missed
    /// its deadline.
    pub fn run(self) -> Result<(), RuntimeError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("nucleon-control")
            .build()
            .map_err(|source| RuntimeError::Io {
                what: "build the control thread's tokio runtime",
                source,
            })?;
        let handle = self.handle.clone();
        let local = tokio::task::LocalSet::new();
        let result = local.block_on(&runtime, Control::new(self).run());
        // The process's handles were this thread's too (for the hooks): no longer.
        handle::clear();
        handle.shared.phase.send_replace(Phase::Stopped);
        *lock(&handle.shared.control) = None;
        if let Err(error) = &result {
            tracing::error!(target: "nucleon::runtime", "{error}");
        }
        result
    }
}

/// A handle on a [`Runtime`]: its phase, drain, watchdog and supervisor figures.
#[derive(Clone)]
pub struct RuntimeHandle {
    drain: Drain,
    watchdog: Watchdog,
    shared: Arc<HandleShared>,
}

struct HandleShared {
    phase: watch::Sender<Phase>,
    restarts: AtomicU64,
    control: Mutex<Option<mpsc::UnboundedSender<ControlCommand>>>,
    workers: usize,
}

enum ControlCommand {
    Health(oneshot::Sender<Vec<AdapterHealth>>),
}

/// One adapter instance's health, from [`RuntimeHandle::health`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdapterHealth {
    /// The adapter's name.
    pub adapter: String,
    /// Its worker (`None`: per-process).
    pub worker: Option<usize>,
    /// What it says.
    pub health: Health,
}

impl RuntimeHandle {
    /// Starts a drain, as SIGTERM does.
    pub fn shutdown(&self) {
        if self.drain.start() {
            tracing::info!(target: "nucleon::runtime", "shutdown requested: draining");
        }
    }

    /// The process's drain state.
    pub fn drain(&self) -> &Drain {
        &self.drain
    }

    /// The watchdog: counters, histogram, recent reports, listeners.
    pub fn watchdog(&self) -> &Watchdog {
        &self.watchdog
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.shared.workers
    }

    /// How many times the supervisor restarted a worker.
    pub fn restarts(&self) -> u64 {
        self.shared.restarts.load(Ordering::Relaxed)
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        *self.shared.phase.borrow()
    }

    /// Waits until the runtime reaches `phase` (or a later one).
    pub async fn wait_for(&self, phase: Phase) -> Phase {
        let mut rx = self.shared.phase.subscribe();
        let reached = rx.wait_for(|p| *p >= phase).await.map(|p| *p);
        reached.unwrap_or(Phase::Stopped)
    }

    /// Every adapter's health, per-process ones first, then each worker's.
    ///
    /// Empty when the runtime is not running.
    pub async fn health(&self) -> Vec<AdapterHealth> {
        let (tx, rx) = oneshot::channel();
        let sent = lock(&self.shared.control)
            .as_ref()
            .is_some_and(|control| control.send(ControlCommand::Health(tx)).is_ok());
        if !sent {
            return Vec::new();
        }
        rx.await.unwrap_or_default()
    }
}

impl std::fmt::Debug for RuntimeHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RuntimeHandle")
            .field("phase", &self.phase())
            .field("workers", &self.shared.workers)
            .field("restarts", &self.restarts())
            .field("drain", &self.drain)
            .finish()
    }
}

/// One worker as the control thread sees it.
struct WorkerState {
    thread: Option<std::thread::JoinHandle<()>>,
    commands: mpsc::UnboundedSender<WorkerCommand>,
    ready: bool,
    running: bool,
    start_attempts: u32,
    /// Restarts since the worker last served for [`HEALTHY_RUN`]: its backoff.
    restarts: u32,
    last_restart: Option<Instant>,
}

/// The control thread's state during `run`.
struct Control {
    runtime: Runtime,
    /// What workers are built from (complete once the process loop's adapters started).
    spec: Arc<WorkerSpec>,
    events_tx: mpsc::UnboundedSender<WorkerEvent>,
    events: mpsc::UnboundedReceiver<WorkerEvent>,
    workers: Vec<WorkerState>,
    restart_tx: mpsc::UnboundedSender<usize>,
    restart_rx: mpsc::UnboundedReceiver<usize>,
}

impl Control {
    fn new(runtime: Runtime) -> Self {
        let (events_tx, events) = mpsc::unbounded_channel();
        let (restart_tx, restart_rx) = mpsc::unbounded_channel();
        Self {
            spec: Arc::new(worker_spec(
                &runtime,
                &events_tx,
                Arc::default(),
                mpsc::unbounded_channel().0,
            )),
            runtime,
            events_tx,
            events,
            workers: Vec::new(),
            restart_tx,
            restart_rx,
        }
    }

    async fn run(mut self) -> Result<(), RuntimeError> {
        let settings = self.runtime.settings.clone();
        let drain = self.runtime.handle.drain.clone();
        let watchdog = self.runtime.handle.watchdog.clone();
        if !offload::configure(&settings.offload) {
            tracing::warn!(target: "nucleon::runtime", "runtime.offload differs from the offload pools already in use in this process; it is ignored");
        }
        if self.runtime.handle_signals {
            let listener =
                SignalListener::install(drain.clone()).map_err(|source| RuntimeError::Io {
                    what: "install signal handlers",
                    source,
                })?;
            tokio::task::spawn_local(listener.run());
        }
        let monitor = if settings.watchdog.enabled {
            Some(
                watchdog
                    .start_monitor()
                    .map_err(|source| RuntimeError::Io {
                        what: "start the watchdog thread",
                        source,
                    })?,
            )
        } else {
            None
        };
        // The figures read when exported (offload pools, the drain), and, for exporters
        // that are not scraped through `collect`, a collection every flush interval.
        let _collector = self.runtime.metrics_interval().map(|interval| {
            tokio::task::spawn_local(crate::metrics::collect_every(interval));
            crate::metrics::register_runtime_collector(drain.clone())
        });
        let result = self.lifecycle(&settings).await;
        watchdog.stop_monitor();
        if let Some(monitor) = monitor {
            monitor.thread().unpark();
            let _ = monitor.join();
        }
        result
    }

    async fn lifecycle(&mut self, settings: &RuntimeSettings) -> Result<(), RuntimeError> {
        let drain = self.runtime.handle.drain.clone();
        let hooks = std::mem::take(&mut self.runtime.hooks);
        run_hooks("on_initialise", hooks.initialise).await?;
        let mut process = match self.start_process(settings).await {
            Ok(process) => process,
            Err(error) => {
                // on_initialise ran: on_stop runs too (what the one opened, the other
                // closes).
                log_dropped(
                    "on_stop",
                    run_cleanup_hooks("on_stop", hooks.stop).await.err(),
                );
                return Err(error);
            }
        };

        let started = if drain.is_draining() {
            // A signal while the process adapters started: no worker starts.
            Ok(())
        } else {
            match self.start_workers().await {
                // A signal during start: drain at once, without announcing a start.
                Ok(()) if drain.is_draining() => Ok(()),
                Ok(()) => run_hooks("on_start", hooks.start).await,
                Err(error) => Err(error),
            }
        };
        if let Err(error) = started {
            drain.start();
            let _ = self
                .stop_workers(drain.deadline(self.runtime.workers_phase))
                .await;
            process
                .stop(drain.deadline(settings.shutdown_timeout))
                .await;
            log_dropped(
                "on_stop",
                run_cleanup_hooks("on_stop", hooks.stop).await.err(),
            );
            return Err(error);
        }

        let (control_tx, mut control_rx) = mpsc::unbounded_channel();
        *lock(&self.runtime.handle.shared.control) = Some(control_tx);
        if !drain.is_draining() {
            self.runtime
                .handle
                .shared
                .phase
                .send_replace(Phase::Serving);
            tracing::info!(target: "nucleon::runtime", workers = self.workers.len(), "serving");
        }
        // A worker (or the process loop) that could not go on: the service drains and
        // ends with it.
        let mut restart_failed = None;
        loop {
            tokio::select! {
                // First: a worker that ends because the drain began is not a death.
                biased;
                () = drain.draining() => break,
                Some(event) = self.events.recv() => self.on_event(event),
                Some(event) = process.events.recv() => {
                    if let Some(error) = process_died(event) {
                        restart_failed = Some(error);
                        drain.start();
                    }
                }
                Some(worker) = self.restart_rx.recv() => {
                    if !drain.is_draining()
                        && let Err(error) = self.start_worker(worker)
                    {
                        tracing::error!(target: "nucleon::runtime", worker, "worker {worker} could not be restarted: {error}; draining");
                        restart_failed = Some(error);
                        drain.start();
                    }
                }
                Some(command) = control_rx.recv() => match command {
                    ControlCommand::Health(reply) => {
                        // An adapter slow to say how it is must not hold the drain up.
                        tokio::select! {
                            health = self.health(&process) => {
                                let _ = reply.send(health);
                            }
                            () = drain.draining() => break,
                        }
                    }
                },
            }
        }

        // Health is not asked of a draining runtime: a call now answers at once (with
        // nothing) rather than wait for the drain to end.
        *lock(&self.runtime.handle.shared.control) = None;
        drop(control_rx);
        self.runtime
            .handle
            .shared
            .phase
            .send_replace(Phase::Draining);
        tracing::info!(target: "nucleon::runtime", timeout = ?settings.shutdown_timeout, workers_phase = ?self.runtime.workers_phase, "draining");
        // The workers drain on their own (every adapter told at once, the work in flight
        // waited for, their adapters stopped) by the end of their phase; the process
        // loop's adapters, told at the same moment, stop once the workers ended, by the
        // end of the whole timeout.
        let stopped = self
            .stop_workers(drain.deadline(self.runtime.workers_phase))
            .await;
        let process_problems = process
            .stop(drain.deadline(settings.shutdown_timeout))
            .await;
        let hooks_result = run_cleanup_hooks("on_stop", hooks.stop).await;
        if let Some(error) = restart_failed {
            // The error returned is the restart's; what else went wrong is logged.
            match stopped {
                Ok(problems) => problems
                    .iter()
                    .for_each(|p| tracing::error!(target: "nucleon::runtime", "{p}")),
                Err(stop_error) => tracing::error!(target: "nucleon::runtime", "{stop_error}"),
            }
            for problem in &process_problems {
                tracing::error!(target: "nucleon::runtime", "{problem}");
            }
            log_dropped("on_stop", hooks_result.err());
            return Err(error);
        }
        let mut problems = match stopped {
            Ok(problems) => problems,
            Err(error) => {
                // The error returned is the workers'; what else went wrong is logged.
                for problem in &process_problems {
                    tracing::error!(target: "nucleon::runtime", "{problem}");
                }
                log_dropped("on_stop", hooks_result.err());
                return Err(error);
            }
        };
        problems.extend(process_problems);
        hooks_result?;
        if !problems.is_empty() {
            return Err(RuntimeError::DrainIncomplete { problems });
        }
        tracing::info!(target: "nucleon::runtime", "stopped");
        Ok(())
    }

    /// Starts the process loop and waits for its adapters; makes their handles the
    /// workers' (and the control thread's: hooks may use them).
    async fn start_process(
        &mut self,
        settings: &RuntimeSettings,
    ) -> Result<ProcessLoop, RuntimeError> {
        let mut process = ProcessLoop::spawn(ProcessSpec {
            adapters: std::mem::take(&mut self.runtime.adapters),
            config: Arc::clone(&self.runtime.config),
            drain: self.runtime.handle.drain.clone(),
            watchdog: self.runtime.handle.watchdog.clone(),
            start_timeout: settings.start_timeout,
            shutdown_timeout: settings.shutdown_timeout,
            workers_phase: self.runtime.workers_phase,
            metrics: self.runtime.metrics_interval(),
        })
        .map_err(|source| RuntimeError::Io {
            what: "start the process loop's thread",
            source,
        })?;
        let handles = match process.started().await {
            Ok(handles) => handles,
            Err(error) => {
                process.stop(Instant::now()).await;
                return Err(error);
            }
        };
        handle::set_process(Arc::clone(&handles));
        self.spec = Arc::new(worker_spec(
            &self.runtime,
            &self.events_tx,
            handles,
            process.commands.clone(),
        ));
        Ok(process)
    }

    fn start_worker(&mut self, id: usize) -> Result<(), RuntimeError> {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let thread = spawn_worker(Arc::clone(&self.spec), id, commands_rx).map_err(|source| {
            RuntimeError::Io {
                what: "start a worker thread",
                source,
            }
        })?;
        if let Some(state) = self.workers.get_mut(id) {
            if let Some(old) = state.thread.replace(thread) {
                let _ = old.join();
            }
            state.commands = commands;
            state.running = true;
        } else {
            self.workers.push(WorkerState {
                thread: Some(thread),
                commands,
                ready: false,
                running: true,
                start_attempts: 1,
                restarts: 0,
                last_restart: None,
            });
        }
        Ok(())
    }

    async fn start_workers(&mut self) -> Result<(), RuntimeError> {
        let drain = self.runtime.handle.drain.clone();
        for id in 0..self.runtime.workers {
            self.start_worker(id)?;
        }
        let mut ready = 0;
        while ready < self.workers.len() {
            let event = tokio::select! {
                () = drain.draining() => return Ok(()),
                event = self.events.recv() => event,
            };
            match event {
                Some(WorkerEvent::Ready { worker }) => {
                    self.workers[worker].ready = true;
                    ready += 1;
                }
                Some(WorkerEvent::StartFailed { error, .. }) => return Err(error),
                Some(WorkerEvent::Exited { worker, panic }) => {
                    self.workers[worker].running = false;
                    let Some(message) = panic else { continue };
                    let attempts = self.workers[worker].start_attempts;
                    tracing::error!(target: "nucleon::runtime", worker, attempt = attempts, "worker {worker} panicked while starting: {message}");
                    if attempts >= START_ATTEMPTS {
                        return Err(RuntimeError::WorkerStartPanicked {
                            worker,
                            attempts,
                            message,
                        });
                    }
                    self.workers[worker].start_attempts += 1;
                    self.runtime
                        .handle
                        .shared
                        .restarts
                        .fetch_add(1, Ordering::Relaxed);
                    crate::metrics::worker_restarted(worker);
                    tokio::time::sleep(backoff(attempts)).await;
                    self.start_worker(worker)?;
                }
                // Only sent while draining, which ends this loop first.
                Some(WorkerEvent::DrainIncomplete { .. }) => {}
                None => unreachable!("the control thread holds an event sender"),
            }
        }
        Ok(())
    }

    fn on_event(&mut self, event: WorkerEvent) {
        match event {
            WorkerEvent::Ready { worker } => {
                self.workers[worker].ready = true;
                tracing::info!(target: "nucleon::runtime", worker, "worker {worker} restarted and serving");
            }
            WorkerEvent::StartFailed { worker, error } => {
                // The worker's thread ends next and sends `Exited`, which schedules the
                // restart: scheduling one here too would start two threads for one worker
                // (and the second `start_worker` would block joining the first).
                self.workers[worker].ready = false;
                tracing::error!(target: "nucleon::runtime", worker, "worker {worker} failed to restart: {error}");
            }
            WorkerEvent::DrainIncomplete { .. } => {}
            WorkerEvent::Exited { worker, panic } => {
                self.workers[worker].running = false;
                self.workers[worker].ready = false;
                if panic.is_none() && self.runtime.handle.drain.is_draining() {
                    // It drained, as asked (the drain began after the loop's last look).
                    return;
                }
                let message = panic.unwrap_or_else(|| "exited unexpectedly".into());
                tracing::error!(target: "nucleon::runtime", worker, "worker {worker} died: {message}; restarting it");
                self.schedule_restart(worker);
            }
        }
    }

    fn schedule_restart(&mut self, worker: usize) {
        let state = &mut self.workers[worker];
        let now = Instant::now();
        if state
            .last_restart
            .is_some_and(|last| now.duration_since(last) >= HEALTHY_RUN)
        {
            state.restarts = 0;
        }
        state.last_restart = Some(now);
        state.restarts += 1;
        self.runtime
            .handle
            .shared
            .restarts
            .fetch_add(1, Ordering::Relaxed);
        let delay = backoff(state.restarts);
        let restart = self.restart_tx.clone();
        tokio::task::spawn_local(async move {
            tokio::time::sleep(delay).await;
            let _ = restart.send(worker);
        });
    }

    /// Waits for every running worker to exit (they drain on their own), until
    /// `deadline` (the end of the workers' phase) and [`EXIT_GRACE`] more for their
    /// threads to end. Returns what the workers reported as left undone, or an error
    /// naming the workers still running.
    async fn stop_workers(&mut self, deadline: Instant) -> Result<Vec<String>, RuntimeError> {
        let timeout = self.runtime.workers_phase;
        let deadline = tokio::time::Instant::from_std(deadline) + EXIT_GRACE;
        let mut problems = Vec::new();
        while self.workers.iter().any(|w| w.running) {
            match tokio::time::timeout_at(deadline, self.events.recv()).await {
                Ok(Some(WorkerEvent::Exited { worker, panic })) => {
                    self.workers[worker].running = false;
                    if let Some(message) = panic {
                        tracing::error!(target: "nucleon::runtime", worker, "worker {worker} panicked while draining: {message}");
                        problems.push(format!(
                            "worker {worker} panicked while draining: {message}"
                        ));
                    }
                }
                Ok(Some(WorkerEvent::DrainIncomplete { problems: found })) => {
                    problems.extend(found);
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let stuck: Vec<usize> = (0..self.workers.len())
            .filter(|&w| self.workers[w].running)
            .collect();
        for worker in &mut self.workers {
            if !worker.running
                && let Some(thread) = worker.thread.take()
            {
                let _ = thread.join();
            }
        }
        if stuck.is_empty() {
            Ok(problems)
        } else {
            Err(RuntimeError::ShutdownTimeout {
                workers: stuck,
                timeout,
            })
        }
    }

    /// The process adapters' health and every worker's, asked at once.
    async fn health(&self, process: &ProcessLoop) -> Vec<AdapterHealth> {
        let process = async {
            let (tx, rx) = oneshot::channel();
            let answered = if process.commands.send(WorkerCommand::Health(tx)).is_ok() {
                tokio::time::timeout(HEALTH_TIMEOUT + Duration::from_millis(500), rx)
                    .await
                    .ok()
                    .and_then(Result::ok)
            } else {
                None
            };
            answered.unwrap_or_else(|| {
                vec![(
                    "process loop".to_owned(),
                    Health::Unhealthy("the process loop did not answer".into()),
                )]
            })
        };
        let (process, workers) = futures_util::future::join(process, self.workers_health()).await;
        process
            .into_iter()
            .map(|(adapter, health)| AdapterHealth {
                adapter,
                worker: None,
                health,
            })
            .chain(workers)
            .collect()
    }

    /// Every worker is asked first, then the answers awaited against one deadline: a
    /// worker that does not answer costs the report one timeout, not one each.
    async fn workers_health(&self) -> Vec<AdapterHealth> {
        let mut report = Vec::new();
        let mut asked = Vec::with_capacity(self.workers.len());
        for (id, worker) in self.workers.iter().enumerate() {
            let (tx, rx) = oneshot::channel();
            if !worker.ready || worker.commands.send(WorkerCommand::Health(tx)).is_err() {
                report.push(AdapterHealth {
                    adapter: "worker".into(),
                    worker: Some(id),
                    health: Health::Unhealthy("worker is restarting".into()),
                });
                continue;
            }
            asked.push((id, rx));
        }
        // Its adapters' own checks have HEALTH_TIMEOUT each, at once: a little more.
        let deadline = tokio::time::Instant::now() + HEALTH_TIMEOUT + Duration::from_millis(500);
        for (id, rx) in asked {
            match tokio::time::timeout_at(deadline, rx).await {
                Ok(Ok(entries)) => {
                    report.extend(entries.into_iter().map(|(adapter, health)| AdapterHealth {
                        adapter,
                        worker: Some(id),
                        health,
                    }))
                }
                Ok(Err(_)) | Err(_) => report.push(AdapterHealth {
                    adapter: "worker".into(),
                    worker: Some(id),
                    health: Health::Unhealthy("worker did not answer".into()),
                }),
            }
        }
        report
    }
}

/// A reserve that leaves the workers no time is refused, naming the keys.
fn check_reserve(config: &Config, settings: &RuntimeSettings) -> Result<(), RuntimeError> {
    let reserve = settings.process_reserve_in_force();
    if reserve < settings.shutdown_timeout {
        return Ok(());
    }
    Err(RuntimeError::Config(config.invalid(
        "runtime.process_reserve",
        format!(
            "{reserve:?} leaves the workers nothing of runtime.shutdown_timeout ({:?}): make it shorter",
            settings.shutdown_timeout
        ),
    )))
}

/// What every worker is built from.
fn worker_spec(
    runtime: &Runtime,
    events: &mpsc::UnboundedSender<WorkerEvent>,
    process_handles: Arc<ProcessHandles>,
    process_commands: mpsc::UnboundedSender<WorkerCommand>,
) -> WorkerSpec {
    WorkerSpec {
        setup: Arc::clone(&runtime.setup),
        config: Arc::clone(&runtime.config),
        drain: runtime.handle.drain.clone(),
        watchdog: runtime.handle.watchdog.clone(),
        start_timeout: runtime.settings.start_timeout,
        workers_phase: runtime.workers_phase,
        process_handles,
        process_commands,
        requirements: Arc::clone(&runtime.requirements),
        events: events.clone(),
        metrics: runtime.metrics_interval(),
    }
}

/// The error of a process loop that ended while serving, if `event` says it did.
fn process_died(event: ProcessEvent) -> Option<RuntimeError> {
    match event {
        ProcessEvent::Exited(panic) => {
            let message = panic.unwrap_or_else(|| "it exited".into());
            tracing::error!(target: "nucleon::runtime", "the process loop ended while serving: {message}; draining");
            Some(RuntimeError::ProcessLoopDied { message })
        }
        ProcessEvent::Started(_) | ProcessEvent::Stopped(_) => None,
    }
}

/// Logs an error that another one, returned instead, leaves out.
fn log_dropped(what: &str, error: Option<RuntimeError>) {
    if let Some(error) = error {
        tracing::error!(target: "nucleon::runtime", "{what}: {error}");
    }
}

/// Restart delay: 100 ms doubling per attempt, at most 5 s.
fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100u64 << (attempt.clamp(1, 7) - 1)).min(Duration::from_secs(5))
}

/// How long past its deadline a loop thread may take to end: its teardown waits up to
/// 1 s for tokio's blocking threads, and then reports.
pub(crate) const EXIT_GRACE: Duration = Duration::from_millis(1500);

/// A worker that served this long since its last restart starts its backoff afresh.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

/// SIGTERM, SIGINT, SIGHUP, SIGUSR1: the first starts a drain (or joins one already
/// under way: `RuntimeHandle::shutdown`, a failed start), the second forces exit.
struct SignalListener {
    drain: Drain,
    signals: Vec<(&'static str, tokio::signal::unix::Signal)>,
}

impl SignalListener {
    fn install(drain: Drain) -> std::io::Result<Self> {
        use tokio::signal::unix::{SignalKind, signal};
        let signals = vec![
            ("SIGTERM", signal(SignalKind::terminate())?),
            ("SIGINT", signal(SignalKind::interrupt())?),
            ("SIGHUP", signal(SignalKind::hangup())?),
            ("SIGUSR1", signal(SignalKind::user_defined1())?),
        ];
        Ok(Self { drain, signals })
    }

    async fn run(mut self) {
        let mut received_before = false;
        loop {
            let received =
                futures_util::future::select_all(self.signals.iter_mut().map(|(name, signal)| {
                    Box::pin(async move { signal.recv().await.map(|()| *name) })
                }))
                .await
                .0;
            let Some(name) = received else { return };
            if !received_before {
                received_before = true;
                let how = if self.drain.start() {
                    "draining"
                } else {
                    "already draining"
                };
                tracing::info!(target: "nucleon::runtime", signal = name, "{name} received: {how} (send another signal to force exit)");
            } else {
                tracing::error!(target: "nucleon::runtime", signal = name, "{name} received a second time: forcing exit");
                if let Some(hook) = BEFORE_FORCED_EXIT.get() {
                    hook();
                }
                std::process::exit(1);
            }
        }
    }
}

/// What runs just before a second signal forces the process out.
static BEFORE_FORCED_EXIT: OnceLock<Box<dyn Fn() + Send + Sync>> = OnceLock::new();

/// Registers `hook` to run just before a second signal forces the process to exit
/// (with status 1, through `std::process::exit`, which runs no destructors): the
/// place to flush what would otherwise be lost, such as a non-blocking log writer's
/// queued lines (the umbrella crate's `nucleon::run` registers exactly that). The
/// first registration in a process wins; later ones are ignored.
///
/// ```
/// nucleon_runtime::before_forced_exit(|| {
///     // flush buffers, drop a log writer's guard…
/// });
/// ```
pub fn before_forced_exit(hook: impl Fn() + Send + Sync + 'static) {
    let _ = BEFORE_FORCED_EXIT.set(Box::new(hook));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_restart_backoff_doubles_up_to_five_seconds() {
        let ms = |attempt| backoff(attempt).as_millis();
        assert_eq!(
            [0, 1, 2, 3, 6, 7, 8, 100].map(ms),
            [100, 100, 200, 400, 3200, 5000, 5000, 5000]
        );
    }
}
