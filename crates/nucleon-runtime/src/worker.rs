//! A worker ("nucleus"): one OS thread, one `current_thread` tokio runtime, one
//! `LocalSet`, its own adapters and state.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::adapter::{Adapter, AdapterContext, AdapterSet, BoxError, Health, Scoped, Started};
use crate::config::Config;
use crate::drain::Drain;
use crate::handle::{self, HandleKey, ProcessHandles, Requirement};
use crate::health::{self, HealthRoutes};
use crate::local_state::{self, LocalState};
use crate::loop_thread::{self, LoopThread};
use crate::task::TaskLabel;
use crate::watchdog::Watchdog;
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
    pub(crate) fn new(id: usize, config: Arc<Config>, drain: Drain) -> Self {
        Self {
            id,
            config,
            drain,
            adapters: AdapterSet::default(),
            tasks: Vec::new(),
        }
    }

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

    /// Adds a per-worker adapter; adapters start in the order added, and its handle is
    /// this worker's (see [`crate::handle`]).
    pub fn adapter(&mut self, adapter: impl Adapter) -> &mut Self {
        self.adapters.push(Box::new(Scoped::per_worker(adapter)));
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

    /// The handles this worker's adapters will give.
    pub(crate) fn provides(&self) -> Vec<HandleKey> {
        self.adapters.provides()
    }
}

/// The per-worker setup closure: runs on each worker's thread, at every (re)start.
pub(crate) type SetupFn = Arc<dyn Fn(&mut WorkerSetup) -> Result<(), BoxError> + Send + Sync>;

/// The index of the worker running the caller, or `None` off the workers (the process
/// loop, the control thread, other threads).
pub fn current_worker() -> Option<usize> {
    loop_thread::current_worker()
}

/// Everything a worker thread needs to (re)build itself.
pub(crate) struct WorkerSpec {
    pub(crate) setup: SetupFn,
    pub(crate) config: Arc<Config>,
    pub(crate) drain: Drain,
    pub(crate) watchdog: Watchdog,
    pub(crate) start_timeout: Duration,
    /// How long after the drain's start the workers' phases end (the rest of the
    /// shutdown timeout is the process adapters' reserve).
    pub(crate) workers_phase: Duration,
    /// The per-process adapters' handles (all started before any worker).
    pub(crate) process_handles: Arc<ProcessHandles>,
    /// The process loop's health requests.
    pub(crate) process_commands: mpsc::UnboundedSender<WorkerCommand>,
    /// Handles that must be there (a route's `Dep<T>`): checked after setup.
    pub(crate) requirements: Arc<[Requirement]>,
    pub(crate) events: mpsc::UnboundedSender<WorkerEvent>,
    /// The workers' metrics flush interval; `None`: metrics off.
    pub(crate) metrics: Option<Duration>,
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

/// Requests the control thread sends a worker (or the process loop).
pub(crate) enum WorkerCommand {
    Health(oneshot::Sender<Vec<(String, Health)>>),
}

/// Starts worker `id`'s thread.
pub(crate) fn spawn_worker(
    spec: Arc<WorkerSpec>,
    id: usize,
    commands: mpsc::UnboundedReceiver<WorkerCommand>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let thread = LoopThread {
        slot: Arc::clone(&spec.watchdog.inner.slots[id]),
        watchdog: spec.watchdog.clone(),
        worker: Some(id),
        metrics: spec.metrics,
    };
    std::thread::Builder::new()
        .name(format!("nucleon-worker-{id}"))
        .spawn(move || {
            let events = spec.events.clone();
            let mut ended = thread.run(|| serve(&spec, id, commands));
            if let Err(error) = std::mem::replace(&mut ended.built, Ok(())) {
                let _ = events.send(WorkerEvent::StartFailed { worker: id, error });
            }
            let _ = events.send(WorkerEvent::Exited {
                worker: id,
                panic: ended.panic.clone(),
            });
            ended.resume();
        })
}

/// The handles of `requirements` that are not among those `provided`, as an error.
pub(crate) fn check_requirements(
    requirements: &[Requirement],
    provided: &[HandleKey],
    worker: Option<usize>,
) -> Result<(), RuntimeError> {
    let missing: Vec<Requirement> = handle::missing(requirements, provided)
        .into_iter()
        .cloned()
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(RuntimeError::MissingHandles { worker, missing })
    }
}

async fn serve(spec: &WorkerSpec, id: usize, mut commands: mpsc::UnboundedReceiver<WorkerCommand>) {
    handle::set_process(Arc::clone(&spec.process_handles));
    let mut setup = WorkerSetup::new(id, Arc::clone(&spec.config), spec.drain.clone());
    if let Err(source) = (spec.setup)(&mut setup) {
        let _ = spec.events.send(WorkerEvent::StartFailed {
            worker: id,
            error: RuntimeError::WorkerSetup { worker: id, source },
        });
        return;
    }
    let mut provided = setup.provides();
    provided.extend(spec.process_handles.keys().cloned());
    if let Err(error) = check_requirements(&spec.requirements, &provided, Some(id)) {
        let _ = spec
            .events
            .send(WorkerEvent::StartFailed { worker: id, error });
        return;
    }
    let WorkerSetup {
        mut adapters,
        tasks,
        ..
    } = setup;
    let ctx = AdapterContext {
        worker: Some(id),
        workers: spec.watchdog.inner.slots.len() - 1,
        config: Arc::clone(&spec.config),
        drain: spec.drain.clone(),
        process_handles: None,
    };
    match adapters
        .start_all(&ctx, spec.start_timeout, spec.workers_phase)
        .await
    {
        Ok(Started::All) => {}
        // A drain began during the start: no task starts, and the worker ends.
        Ok(Started::Abandoned) => return,
        Err(error) => {
            let _ = spec
                .events
                .send(WorkerEvent::StartFailed { worker: id, error });
            return;
        }
    }
    for (label, future) in tasks {
        task::spawn(label, future);
    }
    let _ = spec.events.send(WorkerEvent::Ready { worker: id });

    let (local, mut local_commands) = mpsc::unbounded_channel();
    health::set_routes(Some(HealthRoutes {
        worker: Some((id, local)),
        process: Some(spec.process_commands.clone()),
    }));
    loop_thread::serve_commands(&adapters, &spec.drain, &mut commands, &mut local_commands).await;

    // The three phases of the drain (DESIGN.md): every adapter told at once; the work in
    // flight waited for; the adapters stopped in reverse, by the workers' deadline.
    let deadline = spec.drain.deadline(spec.workers_phase);
    adapters.drain_all(deadline).await;
    let mut problems = Vec::new();
    if let Err(timeout) = spec.drain.wait_idle(deadline).await {
        tracing::warn!(target: "nucleon::runtime", worker = id, "worker {id}: {timeout}");
        problems.push(timeout.to_string());
    }
    problems.extend(adapters.stop_all(deadline).await);
    if !problems.is_empty() {
        let problems = problems
            .into_iter()
            .map(|p| format!("worker {id}: {p}"))
            .collect();
        let _ = spec.events.send(WorkerEvent::DrainIncomplete { problems });
    }
}

/// Runs `setup` as worker 0 would, on the calling thread, without starting anything:
/// the handles its adapters would give. For checks (`app check`).
pub(crate) fn dry_run(
    setup: &SetupFn,
    config: Arc<Config>,
    drain: Drain,
) -> Result<Vec<HandleKey>, RuntimeError> {
    // Whatever the setup registers (local states) is the dry run's, not the thread's.
    let before = local_state::replace_registered(local_state::Registered::new());
    let mut worker = WorkerSetup::new(0, config, drain);
    let outcome = setup(&mut worker);
    let provides = worker.provides();
    drop(worker);
    drop(local_state::replace_registered(before));
    outcome.map_err(|source| RuntimeError::WorkerSetup { worker: 0, source })?;
    Ok(provides)
}
