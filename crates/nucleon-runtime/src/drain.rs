//! Graceful shutdown: the shared drain state and the in-flight counter.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use tokio::sync::{Notify, watch};

/// The process-wide drain state, shared by every worker and adapter.
///
/// A drain starts once (on a signal, or [`crate::RuntimeHandle::shutdown`]) and never
/// ends: the process exits after it. Adapters watch it to stop taking new work, and count
/// the work they have accepted with [`Drain::guard`], so the runtime can wait for it.
///
/// `Drain` is cheap to clone and can be used from any thread or worker.
///
/// The in-flight count is kept per worker (in shards on cache lines of their own) and
/// summed when read: a request's guard touches memory no other worker writes, so
/// workers serving requests side by side do not contend for one counter.
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap().block_on(async {
/// use nucleon_runtime::Drain;
/// use std::time::{Duration, Instant};
///
/// let drain = Drain::new();
/// let guard = drain.guard(); // one request in flight
/// drain.start();
/// assert!(drain.is_draining());
/// drop(guard); // the request finished
/// drain.wait_idle(Instant::now() + Duration::from_secs(1)).await.unwrap();
/// # });
/// ```
#[derive(Clone)]
pub struct Drain {
    inner: Arc<Inner>,
}

struct Inner {
    draining: watch::Sender<bool>,
    /// When the drain started: every deadline of the drain counts from it.
    started_at: std::sync::OnceLock<Instant>,
    /// One per worker (worker `i` counts in shard `i % (SHARDS - 1)`), and the last
    /// for threads that are not workers.
    shards: Box<[Arc<Shard>]>,
    idle: Arc<Idle>,
}

/// How many shards the in-flight count has.
const SHARDS: usize = 64;

/// A worker's share of the in-flight count, alone on its cache lines (two: a CPU may
/// fetch lines in pairs).
#[repr(align(128))]
struct Shard {
    in_flight: AtomicUsize,
    idle: Arc<Idle>,
}

/// Who waits for the count to reach zero.
struct Idle {
    /// Callers of `wait_idle` under way: a guard notifies only when some wait.
    waiting: AtomicUsize,
    notify: Notify,
}

/// Counts a caller of `wait_idle` until it returns or is dropped.
struct Waiting<'a>(&'a Idle);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.waiting.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Drain {
    /// A drain state that has not started.
    pub fn new() -> Self {
        let (draining, _) = watch::channel(false);
        let idle = Arc::new(Idle {
            waiting: AtomicUsize::new(0),
            notify: Notify::new(),
        });
        let shards = (0..SHARDS)
            .map(|_| {
                Arc::new(Shard {
                    in_flight: AtomicUsize::new(0),
                    idle: Arc::clone(&idle),
                })
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                draining,
                started_at: std::sync::OnceLock::new(),
                shards,
                idle,
            }),
        }
    }

    /// Starts the drain. Returns `true` if this call started it, `false` if it was
    /// already draining.
    pub fn start(&self) -> bool {
        self.inner.draining.send_if_modified(|draining| {
            let first = !*draining;
            if first {
                let _ = self.inner.started_at.set(Instant::now());
            }
            *draining = true;
            first
        })
    }

    /// When the drain started (`None` before it has).
    pub fn started_at(&self) -> Option<Instant> {
        self.inner.started_at.get().copied()
    }

    /// The drain's deadline for `timeout`: counted from the drain's start, whenever
    /// the caller noticed it (from now, before the drain has started), so that every
    /// worker and the control thread give up at the same moment.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nucleon_runtime::Drain;
    ///
    /// let drain = Drain::new();
    /// drain.start();
    /// let started = drain.started_at().unwrap();
    /// drain.start();
    /// assert_eq!(drain.deadline(Duration::from_secs(10)), started + Duration::from_secs(10));
    /// ```
    pub fn deadline(&self, timeout: std::time::Duration) -> Instant {
        self.started_at().unwrap_or_else(Instant::now) + timeout
    }

    /// Whether the drain has started.
    pub fn is_draining(&self) -> bool {
        *self.inner.draining.borrow()
    }

    /// Resolves once the drain has started (at once if it already has).
    pub async fn draining(&self) {
        let mut rx = self.inner.draining.subscribe();
        // The sender lives as long as `self`, so this cannot fail.
        let _ = rx.wait_for(|draining| *draining).await;
    }

    /// Counts one unit of accepted work (a request, a delivery) until the guard drops.
    pub fn guard(&self) -> InFlightGuard {
        let index = crate::current_worker().map_or(SHARDS - 1, |worker| worker % (SHARDS - 1));
        let shard = Arc::clone(&self.inner.shards[index]);
        shard.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlightGuard { shard }
    }

    /// How much accepted work is still in flight.
    pub fn in_flight(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|shard| shard.in_flight.load(Ordering::SeqCst))
            .sum()
    }

    /// Waits until no work is in flight, or until `deadline`.
    ///
    /// # Errors
    /// [`DrainTimeout`] with the count still in flight when the deadline passes.
    pub async fn wait_idle(&self, deadline: Instant) -> Result<(), DrainTimeout> {
        let idle = &*self.inner.idle;
        // Before the count is read: a guard that brings its shard to zero after this
        // sees the waiter and notifies; one that did before, the read below sees.
        idle.waiting.fetch_add(1, Ordering::SeqCst);
        let _waiting = Waiting(idle);
        let wait = async {
            loop {
                let notified = idle.notify.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                if self.in_flight() == 0 {
                    return;
                }
                notified.await;
            }
        };
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(()) => Ok(()),
            Err(_) => Err(DrainTimeout {
                in_flight: self.in_flight(),
            }),
        }
    }
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Drain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Drain")
            .field("draining", &self.is_draining())
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

/// One unit of in-flight work, counted by its [`Drain`] until dropped.
#[must_use = "the work is counted only while the guard lives"]
pub struct InFlightGuard {
    shard: Arc<Shard>,
}

impl fmt::Debug for InFlightGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InFlightGuard")
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        let shard = &*self.shard;
        if shard.in_flight.fetch_sub(1, Ordering::SeqCst) == 1
            && shard.idle.waiting.load(Ordering::SeqCst) > 0
        {
            shard.idle.notify.notify_waiters();
        }
    }
}

/// The drain deadline passed with work still in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("drain deadline passed with {in_flight} unit(s) of work still in flight")]
pub struct DrainTimeout {
    /// How many units of work were still in flight.
    pub in_flight: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// `drain.wait_idle` on a task of its own, with `limit` from now as its deadline.
    fn spawn_wait_idle(
        drain: &Drain,
        limit: Duration,
    ) -> tokio::task::JoinHandle<Result<(), DrainTimeout>> {
        let drain = drain.clone();
        tokio::spawn(async move { drain.wait_idle(Instant::now() + limit).await })
    }

    #[tokio::test]
    async fn wait_idle_waits_for_guards_and_honours_deadline() {
        let drain = Drain::new();
        let a = drain.guard();
        let b = drain.guard();
        assert_eq!(drain.in_flight(), 2);
        assert!(drain.start());
        assert!(!drain.start(), "a second start is not the first");
        let deadline = Instant::now() + Duration::from_millis(50);
        let err = drain.wait_idle(deadline).await.unwrap_err();
        assert_eq!(err.in_flight, 2);
        drop(a);
        let waiter = spawn_wait_idle(&drain, Duration::from_secs(5));
        tokio::task::yield_now().await;
        drop(b);
        waiter.await.unwrap().unwrap();
        assert_eq!(drain.in_flight(), 0);
    }

    /// Work counted on several threads at once (each worker in its own shard, others
    /// in a shared one) sums up, and `wait_idle` returns once the last guard is gone,
    /// wherever it was dropped.
    #[tokio::test]
    async fn guards_from_many_threads_are_summed_and_waited_for() {
        let drain = Drain::new();
        let (tx, rx) = std::sync::mpsc::channel();
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let drain = drain.clone();
                let tx = tx.clone();
                std::thread::spawn(move || {
                    let guards: Vec<_> = (0..1000).map(|_| drain.guard()).collect();
                    tx.send(guards).unwrap();
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let mut held: Vec<Vec<InFlightGuard>> = rx.try_iter().collect();
        assert_eq!(drain.in_flight(), 8000);
        drain.start();
        let waiter = spawn_wait_idle(&drain, Duration::from_secs(10));
        let last = held.pop().unwrap();
        // Dropped on other threads than they were taken on.
        std::thread::spawn(move || drop(held)).join().unwrap();
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished(), "1000 still in flight");
        assert_eq!(drain.in_flight(), 1000);
        std::thread::spawn(move || drop(last)).join().unwrap();
        waiter.await.unwrap().unwrap();
        assert_eq!(drain.in_flight(), 0);
    }

    #[tokio::test]
    async fn draining_resolves_after_start() {
        let drain = Drain::new();
        let d2 = drain.clone();
        let waiter = tokio::spawn(async move { d2.draining().await });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drain.start();
        waiter.await.unwrap();
    }
}
