//! Lifecycle hooks and application events.

use std::fmt;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use futures_util::future::{BoxFuture, LocalBoxFuture};

use crate::adapter::BoxError;
use crate::watchdog::lock;

/// A lifecycle hook: an async function run once, on the control thread. The function
/// is `Send` (the runtime may run on another thread than the one that built it: a test
/// client's, an embedding program's); its future need not be.
pub type Hook = Box<dyn FnOnce() -> LocalBoxFuture<'static, Result<(), BoxError>> + Send>;

/// Hooks of each stage, run in registration order.
#[derive(Default)]
pub(crate) struct Hooks {
    pub(crate) initialise: Vec<Hook>,
    pub(crate) start: Vec<Hook>,
    pub(crate) stop: Vec<Hook>,
}

/// Boxes an async function as a [`Hook`].
pub fn hook<F, Fut>(f: F) -> Hook
where
    F: FnOnce() -> Fut + Send + 'static,
    Fut: Future<Output = Result<(), BoxError>> + 'static,
{
    Box::new(move || Box::pin(f()))
}

/// Runs hooks in order; stops at the first error and returns it with its stage. A
/// hook that panics is an error like one that fails (the panic does not unwind
/// through the control loop, which would leave the workers serving undrained).
pub(crate) async fn run_hooks(
    stage: &'static str,
    hooks: Vec<Hook>,
) -> Result<(), crate::RuntimeError> {
    for (index, hook) in hooks.into_iter().enumerate() {
        run_hook(stage, index, hook).await?;
    }
    Ok(())
}

/// Runs every hook (cleanup: one that fails does not keep the next from closing what
/// it opened); returns the first error, and logs the others.
pub(crate) async fn run_cleanup_hooks(
    stage: &'static str,
    hooks: Vec<Hook>,
) -> Result<(), crate::RuntimeError> {
    let mut first = None;
    for (index, hook) in hooks.into_iter().enumerate() {
        if let Err(error) = run_hook(stage, index, hook).await {
            if first.is_some() {
                tracing::error!(target: "nucleon::runtime", "{error}");
            } else {
                first = Some(error);
            }
        }
    }
    first.map_or(Ok(()), Err)
}

async fn run_hook(
    stage: &'static str,
    index: usize,
    hook: Hook,
) -> Result<(), crate::RuntimeError> {
    use futures_util::FutureExt as _;
    use std::panic::AssertUnwindSafe;
    let outcome = match std::panic::catch_unwind(AssertUnwindSafe(hook)) {
        Ok(future) => AssertUnwindSafe(future).catch_unwind().await,
        Err(panic) => Err(panic),
    };
    outcome
        .unwrap_or_else(|panic| {
            Err(format!("panicked: {}", crate::task::panic_message(&*panic)).into())
        })
        .map_err(|source| crate::RuntimeError::Hook {
            stage,
            index,
            source,
        })
}

type Handler<A> = Arc<dyn Fn(A) -> BoxFuture<'static, ()> + Send + Sync>;
type Handlers<A> = Arc<Mutex<Vec<(HandlerId, Handler<A>)>>>;

/// A typed application event: handlers connect to it, and firing it calls them all.
///
/// The Rust form of the original framework's signals (blinker): a service declares
/// `static ORDER_PLACED: Event<OrderId>`-style events, other modules connect handlers,
/// and firing runs them one after another ([`Event::fire`]) or concurrently with a limit
/// ([`Event::fire_concurrent`]).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::sync::{Arc, atomic::{AtomicU32, Ordering}};
/// use nucleon_runtime::Event;
///
/// let placed: Event<u32> = Event::new();
/// let total = Arc::new(AtomicU32::new(0));
/// let t = total.clone();
/// let id = placed.connect(move |amount| {
///     let t = t.clone();
///     async move { t.fetch_add(amount, Ordering::SeqCst); }
/// });
/// placed.fire(5).await;
/// placed.disconnect(id);
/// placed.fire(5).await;
/// assert_eq!(total.load(Ordering::SeqCst), 5);
/// # });
/// ```
pub struct Event<A> {
    handlers: Handlers<A>,
}

/// Identifies a connected handler, for [`Event::disconnect`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct HandlerId(u64);

impl<A: Clone + Send + 'static> Event<A> {
    /// An event with no handlers.
    pub fn new() -> Self {
        Self {
            handlers: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Connects an async handler; returns its id.
    pub fn connect<F, Fut>(&self, handler: F) -> HandlerId
    where
        F: Fn(A) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        let id = HandlerId(NEXT.fetch_add(1, Ordering::Relaxed));
        let handler: Handler<A> = Arc::new(move |arg| Box::pin(handler(arg)));
        lock(&self.handlers).push((id, handler));
        id
    }

    /// Disconnects a handler; returns whether it was connected.
    pub fn disconnect(&self, id: HandlerId) -> bool {
        let mut handlers = lock(&self.handlers);
        let before = handlers.len();
        handlers.retain(|(h, _)| *h != id);
        handlers.len() != before
    }

    /// How many handlers are connected.
    pub fn handler_count(&self) -> usize {
        lock(&self.handlers).len()
    }

    fn snapshot(&self) -> Vec<Handler<A>> {
        lock(&self.handlers)
            .iter()
            .map(|(_, h)| Arc::clone(h))
            .collect()
    }

    /// Calls every handler in turn (in connection order), each after the previous ended.
    pub async fn fire(&self, arg: A) {
        for handler in self.snapshot() {
            handler(arg.clone()).await;
        }
    }

    /// Calls every handler, at most `limit` at a time, and waits for all.
    pub async fn fire_concurrent(&self, arg: A, limit: usize) {
        futures_util::stream::iter(self.snapshot())
            .map(|handler| handler(arg.clone()))
            .buffer_unordered(limit.max(1))
            .collect::<()>()
            .await;
    }
}

impl<A: Clone + Send + 'static> Default for Event<A> {
    fn default() -> Self {
        Self::new()
    }
}

impl<A> Clone for Event<A> {
    fn clone(&self) -> Self {
        Self {
            handlers: Arc::clone(&self.handlers),
        }
    }
}

impl<A> fmt::Debug for Event<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Event")
            .field("handlers", &lock(&self.handlers).len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    #[tokio::test]
    async fn fire_concurrent_respects_the_limit() {
        let event: Event<()> = Event::new();
        let running = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        for _ in 0..6 {
            let (running, peak) = (running.clone(), peak.clone());
            event.connect(move |()| {
                let (running, peak) = (running.clone(), peak.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    peak.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                }
            });
        }
        event.fire_concurrent((), 2).await;
        assert_eq!(peak.load(Ordering::SeqCst), 2);
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }

    #[tokio::test]
    async fn fire_runs_handlers_in_order() {
        let event: Event<&'static str> = Event::new();
        let log = Arc::new(Mutex::new(Vec::new()));
        for n in 0..3 {
            let log = log.clone();
            event.connect(move |tag| {
                let log = log.clone();
                async move {
                    tokio::time::sleep(Duration::from_millis(5 * (3 - n))).await;
                    lock(&log).push(format!("{tag}{n}"));
                }
            });
        }
        event.fire("h").await;
        assert_eq!(*lock(&log), ["h0", "h1", "h2"]);
    }
}
