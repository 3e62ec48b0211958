//! A loop thread: one OS thread running a `current_thread` tokio runtime and a
//! `LocalSet`, watched by the watchdog. Workers are loop threads; so is the process loop
//! that runs the per-process adapters.

use std::cell::RefCell;
use std::future::Future;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::sync::mpsc;

use crate::adapter::AdapterSet;
use crate::drain::Drain;
use crate::watchdog::{ReportKind, Watchdog, WatchdogReport, WorkerSlot};
use crate::worker::WorkerCommand;
use crate::{RuntimeError, handle, health, local_state, task};

/// What a running loop thread knows about itself (thread-local).
pub(crate) struct WorkerContext {
    pub(crate) slot: Arc<WorkerSlot>,
    pub(crate) watchdog: Option<Watchdog>,
    /// `None` on the process loop.
    pub(crate) worker: Option<usize>,
}

thread_local! {
    static CONTEXT: RefCell<Option<Rc<WorkerContext>>> = const { RefCell::new(None) };
}

/// Runs `f` with the current loop's context; `None` off the loop threads.
pub(crate) fn with_context<R>(f: impl FnOnce(&WorkerContext) -> R) -> Option<R> {
    let ctx = CONTEXT.with(|c| c.borrow().clone())?;
    Some(f(&ctx))
}

/// The index of the worker running the caller, or `None` off the workers.
pub(crate) fn current_worker() -> Option<usize> {
    // Read in place: no clone of the context (taken for every HTTP request's guard).
    CONTEXT.with(|c| c.borrow().as_ref().and_then(|ctx| ctx.worker))
}

/// How long a loop's end waits for tokio's blocking threads still running.
const BLOCKING_GRACE: Duration = Duration::from_secs(1);

/// A loop thread to run: its watchdog slot, and which worker it is.
pub(crate) struct LoopThread {
    pub(crate) slot: Arc<WorkerSlot>,
    pub(crate) watchdog: Watchdog,
    pub(crate) worker: Option<usize>,
    /// How often the loop hands its local metrics to the recorder; `None`: metrics off.
    pub(crate) metrics: Option<Duration>,
}

/// How a loop thread's run ended.
pub(crate) struct Ended {
    /// Whether its tokio runtime could be built.
    pub(crate) built: Result<(), RuntimeError>,
    /// The panic that ended it, if one did: its message.
    pub(crate) panic: Option<String>,
    payload: Option<Box<dyn std::any::Any + Send>>,
}

impl Ended {
    /// Goes on unwinding a panic that ended the loop (after its end was reported).
    pub(crate) fn resume(self) {
        if let Some(payload) = self.payload {
            std::panic::resume_unwind(payload);
        }
    }
}

impl LoopThread {
    /// Runs `body` on this thread's new loop, with its heartbeat; returns once it ended
    /// and the loop was taken down (tasks dropped, thread-local state cleared).
    pub(crate) fn run<F, Fut>(self, body: F) -> Ended
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        let slot = self.slot;
        let runtime = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime,
            Err(source) => {
                slot.retire();
                return Ended {
                    built: Err(RuntimeError::Io {
                        what: "build a loop thread's tokio runtime",
                        source,
                    }),
                    panic: None,
                    payload: None,
                };
            }
        };
        let enabled = self.watchdog.config().enabled;
        CONTEXT.with(|c| {
            *c.borrow_mut() = Some(Rc::new(WorkerContext {
                slot: Arc::clone(&slot),
                watchdog: enabled.then(|| self.watchdog.clone()),
                worker: self.worker,
            }));
        });
        #[cfg(all(target_os = "linux", feature = "backtrace"))]
        {
            let (low, high) = crate::watchdog::stack_current_stack();
            slot.stack_low.store(low, Ordering::Release);
            slot.stack_high.store(high, Ordering::Release);
            slot.thread
                .store(crate::watchdog::stack_current_thread(), Ordering::Release);
        }
        slot.beat();
        slot.alive.store(enabled, Ordering::Release);
        let metrics = self.metrics;
        crate::metrics::enable_on_thread(metrics);

        let local = tokio::task::LocalSet::new();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            local.block_on(&runtime, async {
                if enabled {
                    // Deliberately untracked: it measures the loop, not itself. Started
                    // before the adapters, so an adapter start that awaits (a connect)
                    // is not taken for a stall, and one that blocks is.
                    tokio::task::spawn_local(heartbeat(Arc::clone(&slot), self.watchdog));
                }
                if let Some(interval) = metrics {
                    tokio::task::spawn_local(crate::metrics::flush_every(interval));
                }
                body().await;
            });
        }));
        // The loop has ended, and its heartbeat with it: what follows (dropping the tasks
        // left, the tokio runtime waiting for its blocking threads) is teardown, not a
        // stall of a loop that serves.
        slot.alive.store(false, Ordering::Release);
        // Tasks still on the LocalSet are dropped here, on the loop's own thread.
        drop(local);
        // What the loop's local metrics still hold (the last requests' figures).
        crate::metrics::flush_local();
        crate::metrics::enable_on_thread(None);
        local_state::clear_registered();
        handle::clear();
        health::set_routes(None);
        // tokio's blocking threads (`tokio::fs`, `spawn_blocking`) get a moment to
        // finish, not forever: one stuck in a call would keep this thread from ending,
        // and so the worker from being restarted, or the drain from finishing.
        runtime.shutdown_timeout(BLOCKING_GRACE);
        slot.retire();
        CONTEXT.with(|c| c.borrow_mut().take());
        match outcome {
            Ok(()) => Ended {
                built: Ok(()),
                panic: None,
                payload: None,
            },
            Err(payload) => Ended {
                built: Ok(()),
                panic: Some(task::panic_message(&*payload)),
                payload: Some(payload),
            },
        }
    }
}

/// Answers health requests, the control thread's (`commands`) and the loop's own
/// ([`crate::health::report`], through `local`), until the drain starts (or the control
/// thread is gone). Requests are answered concurrently: one slow check does not queue
/// the others behind it. At the drain, requests not answered yet are dropped (their
/// callers hear at once that no answer comes).
pub(crate) async fn serve_commands(
    adapters: &AdapterSet,
    drain: &Drain,
    commands: &mut mpsc::UnboundedReceiver<WorkerCommand>,
    local: &mut mpsc::UnboundedReceiver<WorkerCommand>,
) {
    let answer = |WorkerCommand::Health(reply): WorkerCommand| async move {
        let _ = reply.send(adapters.health().await);
    };
    let mut checks = FuturesUnordered::new();
    loop {
        tokio::select! {
            () = drain.draining() => break,
            Some(command) = local.recv() => checks.push(answer(command)),
            command = commands.recv() => match command {
                Some(command) => checks.push(answer(command)),
                None => break,
            },
            Some(()) = checks.next(), if !checks.is_empty() => {}
        }
    }
    drop(checks);
    for receiver in [commands, local] {
        receiver.close();
        while receiver.try_recv().is_ok() {}
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
                process_loop: slot.process,
                task: None,
                span: None,
                elapsed: gap.saturating_sub(interval),
                backtrace: None,
            });
        }
    }
}
