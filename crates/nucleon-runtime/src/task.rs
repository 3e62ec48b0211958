//! Spawning tasks on the current worker, tracked by the watchdog under a label.

use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::task::JoinHandle;

pub use crate::label::{StaticLabel, TaskLabel};
use crate::loop_thread as worker;
use crate::watchdog::slot::TaskMeta;
use crate::watchdog::{self, ReportKind, WatchdogReport, WorkerSlot};

/// Spawns a (possibly `!Send`) future on the current worker, tracked by the watchdog.
///
/// The task runs inside the tracing span current at the call. Every poll is timed: a poll
/// that blocks the loop past the watchdog's threshold is reported under `label`. A panic
/// in the task is logged with its label and ends only this task (its [`JoinHandle`]
/// returns the panic); the worker goes on.
///
/// Outside a Nucleon worker, but inside a tokio `LocalSet`, the task is spawned untracked.
///
/// # Panics
/// Outside any `LocalSet` (as `tokio::task::spawn_local` does).
///
/// ```no_run
/// use nucleon_runtime::{spawn, Runtime};
///
/// Runtime::builder()
///     .workers(1)
///     .per_worker(|worker| {
///         worker.spawn("ticker", async {
///             let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
///             loop {
///                 tick.tick().await;
///                 tracing::info!("tick");
///             }
///         });
///         Ok(())
///     })
///     .build()
///     .unwrap()
///     .run()
///     .unwrap();
/// ```
pub fn spawn<F>(label: impl Into<TaskLabel>, future: F) -> JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    let label = label.into();
    let span = tracing::Span::current();
    let span_name = span.metadata().map(|m| m.name());
    let tracking = worker::with_context(|ctx| {
        ctx.watchdog.as_ref().map(|watchdog| {
            let id = ctx.slot.register(label.clone(), span_name);
            Tracking {
                slot: Arc::clone(&ctx.slot),
                watchdog: Arc::clone(&watchdog.inner),
                id,
            }
        })
    })
    .flatten();
    tokio::task::spawn_local(Tracked {
        inner: future,
        span: (!span.is_none()).then_some(span),
        label,
        tracking,
    })
}

/// Renames the current task for the watchdog (e.g. to the route a connection now
/// serves). Does nothing outside a tracked task.
pub fn set_label(label: impl Into<TaskLabel>) {
    worker::with_context(|ctx| {
        if let Some(task) = ctx.slot.current_task() {
            task.label.set(label.into());
        }
    });
}

/// A tracked task's label, held to rename the task often and cheaply: a connection
/// naming, for each request, the route it serves. [`set_label`] finds the current task
/// on every call; a handle goes straight to it.
///
/// ```
/// # async fn demo() {
/// // Inside a task started with `nucleon_runtime::spawn`, on a worker:
/// if let Some(label) = nucleon_runtime::task::label_handle() {
///     label.set("GET /countries/{code}");
///     // ... serve the request ...
///     label.set("http connection");
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct LabelHandle(Arc<TaskMeta>);

impl LabelHandle {
    /// Renames the task. A [`StaticLabel`] is set with one store; any other label
    /// takes the task's lock.
    pub fn set(&self, label: impl Into<TaskLabel>) {
        self.0.label.set(label.into());
    }

    /// The task's label now.
    pub fn get(&self) -> TaskLabel {
        self.0.label.get()
    }
}

impl fmt::Debug for LabelHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("LabelHandle")
            .field(&self.0.label.get())
            .finish()
    }
}

/// A handle to the current task's label, inside a tracked task (one spawned with
/// [`spawn`] on a worker whose watchdog is on); `None` elsewhere.
pub fn label_handle() -> Option<LabelHandle> {
    worker::with_context(|ctx| ctx.slot.current_task().map(LabelHandle)).flatten()
}

/// The current task's label, inside a tracked task.
pub fn current_label() -> Option<TaskLabel> {
    worker::with_context(|ctx| ctx.slot.current_task().map(|task| task.label.get())).flatten()
}

struct Tracking {
    slot: Arc<WorkerSlot>,
    watchdog: Arc<watchdog::Inner>,
    id: u64,
}

impl Drop for Tracking {
    fn drop(&mut self) {
        self.slot.unregister(self.id);
    }
}

pin_project_lite::pin_project! {
    /// A spawned future: times each poll, logs a panic with the task's label.
    struct Tracked<F> {
        #[pin]
        inner: F,
        // The span current when it was spawned, entered for each poll (`None` when
        // there was none: nothing to enter).
        span: Option<tracing::Span>,
        label: TaskLabel,
        tracking: Option<Tracking>,
    }
}

impl<F: Future> Future for Tracked<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        let inner = this.inner;
        let _entered = this.span.as_ref().map(tracing::Span::enter);
        let Some(tracking) = this.tracking.as_ref() else {
            return poll_logging_panics(inner, cx, this.label);
        };
        let start = tracking.slot.begin_poll(tracking.id);
        let result = catch_unwind(AssertUnwindSafe(|| inner.poll(cx)));
        let threshold = tracking.watchdog.config.threshold;
        // A slow poll is also a heartbeat (see `end_poll`): the same episode is not an
        // untracked stall as well.
        let elapsed = tracking.slot.end_poll(start, threshold);
        if elapsed >= threshold {
            let meta = tracking.slot.task(tracking.id);
            tracking.watchdog.publish(WatchdogReport {
                kind: ReportKind::SlowPollEnded,
                worker: tracking.slot.worker,
                process_loop: tracking.slot.process,
                task: Some(meta.as_ref().map_or_else(
                    || this.label.to_string(),
                    |m| m.label.of_last_poll().to_string(),
                )),
                span: meta.and_then(|m| m.span.map(str::to_owned)),
                elapsed,
                backtrace: None,
            });
        }
        match result {
            Ok(poll) => poll,
            Err(panic) => {
                log_panic(this.label, &panic);
                resume_unwind(panic)
            }
        }
    }
}

fn poll_logging_panics<F: Future>(
    inner: Pin<&mut F>,
    cx: &mut Context<'_>,
    label: &TaskLabel,
) -> Poll<F::Output> {
    match catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
        Ok(poll) => poll,
        Err(panic) => {
            log_panic(label, &panic);
            resume_unwind(panic)
        }
    }
}

fn log_panic(label: &TaskLabel, panic: &(dyn std::any::Any + Send)) {
    let message = panic_message(panic);
    tracing::error!(
        target: "nucleon::task",
        task = %label,
        panic = %message,
        "task `{label}` panicked: {message}; the task ended, its worker goes on"
    );
}

/// The text of a panic payload (from `catch_unwind`, a `JoinError`), when it has one.
///
/// ```
/// let panic = std::panic::catch_unwind(|| panic!("out of {}", "cheese")).unwrap_err();
/// assert_eq!(nucleon_runtime::task::panic_message(&*panic), "out of cheese");
/// ```
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "<non-string panic payload>".to_owned()
    }
}
