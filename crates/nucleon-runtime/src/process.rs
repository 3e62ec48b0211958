//! The process loop: one loop thread for the per-process adapters (a broker connection,
//! an embedded database), watched by the watchdog like a worker.
//!
//! Its life, driven by the control thread: start the adapters in order and hand their
//! handles over (`Started`); answer health requests; at the drain, tell every adapter at
//! once ([`Adapter::drain`](crate::Adapter::drain)); wait until the workers have ended
//! (`WorkersDone`), since their work in flight may still use the handles; then stop the
//! adapters in reverse, by the end of the shutdown timeout: the share the workers'
//! phases cannot eat.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::RuntimeError;
use crate::adapter::{AdapterContext, AdapterSet, DynAdapter};
use crate::config::Config;
use crate::drain::Drain;
use crate::handle::ProcessHandles;
use crate::health::{self, HealthRoutes};
use crate::loop_thread::{self, LoopThread};
use crate::runtime::EXIT_GRACE;
use crate::watchdog::{Watchdog, lock};
use crate::worker::WorkerCommand;

/// A per-process adapter, as the builder keeps it until the process loop takes it.
pub(crate) type ProcessAdapter = Box<dyn DynAdapter + Send>;

/// What the process loop is given.
pub(crate) struct ProcessSpec {
    pub(crate) adapters: Vec<ProcessAdapter>,
    pub(crate) config: Arc<Config>,
    pub(crate) drain: Drain,
    pub(crate) watchdog: Watchdog,
    pub(crate) start_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    /// When the workers' phases end, from the drain's start.
    pub(crate) workers_phase: Duration,
    /// The loop's metrics flush interval; `None`: metrics off.
    pub(crate) metrics: Option<Duration>,
}

/// What the process loop tells the control thread.
pub(crate) enum ProcessEvent {
    /// Every adapter started (or the start was abandoned for a drain): their handles.
    Started(Result<Arc<ProcessHandles>, RuntimeError>),
    /// The adapters stopped; what went wrong.
    Stopped(Vec<String>),
    /// The loop's thread ended; a panic's message if one ended it.
    Exited(Option<String>),
}

/// The control thread's side of the process loop.
pub(crate) struct ProcessLoop {
    thread: Option<std::thread::JoinHandle<()>>,
    pub(crate) commands: mpsc::UnboundedSender<WorkerCommand>,
    workers_done: Option<oneshot::Sender<()>>,
    pub(crate) events: mpsc::UnboundedReceiver<ProcessEvent>,
}

impl ProcessLoop {
    /// Starts the loop's thread; its adapters start at once.
    pub(crate) fn spawn(spec: ProcessSpec) -> std::io::Result<Self> {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::unbounded_channel();
        let (workers_done, workers_done_rx) = oneshot::channel();
        let slots = &spec.watchdog.inner.slots;
        let thread = LoopThread {
            slot: Arc::clone(&slots[slots.len() - 1]),
            watchdog: spec.watchdog.clone(),
            worker: None,
            metrics: spec.metrics,
        };
        let thread = std::thread::Builder::new()
            .name("nucleon-process".into())
            .spawn(move || {
                let report = events_tx.clone();
                let mut ended = thread.run(|| serve(spec, commands_rx, workers_done_rx, events_tx));
                if let Err(error) = std::mem::replace(&mut ended.built, Ok(())) {
                    let _ = report.send(ProcessEvent::Started(Err(error)));
                }
                let _ = report.send(ProcessEvent::Exited(ended.panic.clone()));
                ended.resume();
            })?;
        Ok(Self {
            thread: Some(thread),
            commands,
            workers_done: Some(workers_done),
            events,
        })
    }

    /// Waits for the adapters to start; their handles.
    pub(crate) async fn started(&mut self) -> Result<Arc<ProcessHandles>, RuntimeError> {
        loop {
            match self.events.recv().await {
                Some(ProcessEvent::Started(result)) => return result,
                Some(ProcessEvent::Stopped(_)) => {}
                Some(ProcessEvent::Exited(panic)) => {
                    return Err(RuntimeError::ProcessLoopDied {
                        message: panic.unwrap_or_else(|| "it exited while starting".into()),
                    });
                }
                None => {
                    return Err(RuntimeError::ProcessLoopDied {
                        message: "it exited while starting".into(),
                    });
                }
            }
        }
    }

    /// The workers have ended: the adapters may stop. Then waits for them to, until
    /// `deadline` and [`EXIT_GRACE`] more; returns what went wrong.
    pub(crate) async fn stop(&mut self, deadline: Instant) -> Vec<String> {
        if let Some(done) = self.workers_done.take() {
            let _ = done.send(());
        }
        let until = tokio::time::Instant::from_std(deadline) + EXIT_GRACE;
        let mut problems = Vec::new();
        loop {
            match tokio::time::timeout_at(until, self.events.recv()).await {
                Ok(Some(ProcessEvent::Stopped(found))) => problems.extend(found),
                Ok(Some(ProcessEvent::Exited(None)) | None) => break,
                Ok(Some(ProcessEvent::Exited(Some(message)))) => {
                    tracing::error!(target: "nucleon::runtime", "the process loop panicked while stopping: {message}");
                    problems.push(format!(
                        "the process loop panicked while stopping: {message}"
                    ));
                    break;
                }
                Ok(Some(ProcessEvent::Started(_))) => {}
                Err(_) => {
                    problems.push(
                        "the process loop's adapters did not stop by the shutdown deadline".into(),
                    );
                    return problems;
                }
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        problems
    }
}

async fn serve(
    spec: ProcessSpec,
    mut commands: mpsc::UnboundedReceiver<WorkerCommand>,
    workers_done: oneshot::Receiver<()>,
    events: mpsc::UnboundedSender<ProcessEvent>,
) {
    let mut adapters = AdapterSet::default();
    for adapter in spec.adapters {
        adapters.push(adapter);
    }
    let sink = Arc::new(Mutex::new(ProcessHandles::new()));
    let ctx = AdapterContext {
        worker: None,
        workers: spec.watchdog.inner.slots.len() - 1,
        config: Arc::clone(&spec.config),
        drain: spec.drain.clone(),
        process_handles: Some(Arc::clone(&sink)),
    };
    if let Err(error) = adapters
        .start_all(&ctx, spec.start_timeout, spec.shutdown_timeout)
        .await
    {
        let _ = events.send(ProcessEvent::Started(Err(error)));
        return;
    }
    let handles = Arc::new(lock(&sink).clone());
    let _ = events.send(ProcessEvent::Started(Ok(handles)));

    let (local, mut local_commands) = mpsc::unbounded_channel();
    health::set_routes(Some(HealthRoutes {
        worker: None,
        process: Some(local),
    }));
    loop_thread::serve_commands(&adapters, &spec.drain, &mut commands, &mut local_commands).await;

    // At the drain's start, with the workers' adapters; stopped only once the workers
    // ended (their requests in flight may publish, query…), by the whole timeout.
    let workers_deadline = spec.drain.deadline(spec.workers_phase);
    let deadline = spec.drain.deadline(spec.shutdown_timeout);
    adapters.drain_all(workers_deadline).await;
    if tokio::time::timeout_at(deadline.into(), workers_done)
        .await
        .is_err()
    {
        tracing::warn!(target: "nucleon::runtime", "workers still running at the shutdown deadline: stopping the per-process adapters anyway");
    }
    let problems = adapters.stop_all(deadline).await;
    let _ = events.send(ProcessEvent::Stopped(problems));
}
