//! A bounded thread pool with a bounded queue, for work that must not run on a worker.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::sync::oneshot;

use super::OffloadError;
use crate::task::panic_message;
use crate::watchdog::lock;

/// A queued job: runs the work, calls `finished(true)` (the pool counts the job done
/// and frees its slot), then hands the result to its caller, so that a caller holding
/// the result sees the pool's figures and room as they are after the job. A job whose
/// caller has stopped waiting is not run: `finished(false)`.
type Job = Box<dyn FnOnce(&mut dyn FnMut(bool)) + Send>;

/// A job in the queue, and whether its caller still waits for it (cleared when the
/// caller's future is dropped): a full queue drops the jobs nobody waits for before
/// it refuses a new one.
struct Queued {
    job: Job,
    waited_for: Arc<AtomicBool>,
}

/// Clears its flag when dropped: the caller's future has ended (its result taken, or
/// the future dropped).
struct Waiting(Arc<AtomicBool>);

impl Drop for Waiting {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Relaxed);
    }
}

/// Limits of an [`OffloadPool`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// Most threads; they start on demand.
    pub max_threads: usize,
    /// Most jobs waiting for a thread.
    pub queue: usize,
    /// How long an idle thread lingers before it exits.
    pub keep_alive: Duration,
}

/// Figures of one pool at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolStats {
    /// Live threads.
    pub threads: usize,
    /// Threads waiting for work.
    pub idle: usize,
    /// Jobs waiting for a thread.
    pub queued: usize,
    /// Jobs finished (including those that panicked).
    pub completed: u64,
    /// Jobs refused because the pool was saturated.
    pub rejected: u64,
    /// Jobs not run because their caller had stopped waiting before a thread took them
    /// (its future dropped: the client went away, a timeout struck).
    pub abandoned: u64,
}

/// A pool of threads for blocking or CPU work, with a bounded queue.
///
/// The process-wide pools behind [`super::blocking`] and [`super::cpu`] are two of these;
/// make your own to isolate one kind of work (a slow legacy call that must not starve the
/// others).
///
/// ```
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// use std::time::Duration;
/// use nucleon_runtime::offload::{OffloadPool, PoolConfig};
///
/// let pool = OffloadPool::new("legacy", PoolConfig {
///     max_threads: 2,
///     queue: 16,
///     keep_alive: Duration::from_secs(5),
/// });
/// assert_eq!(pool.run(|| 6 * 7).await, Ok(42));
/// # });
/// ```
#[derive(Clone)]
pub struct OffloadPool {
    shared: Arc<Shared>,
}

struct Shared {
    name: String,
    config: PoolConfig,
    state: Mutex<State>,
    available: Condvar,
    completed: AtomicU64,
    rejected: AtomicU64,
    abandoned: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Jobs waiting for a thread.
    jobs: VecDeque<Queued>,
    /// Live threads: running a job, idle, or just started.
    threads: usize,
    /// Threads waiting on the condition variable.
    idle: usize,
    /// Threads running a job.
    running: usize,
}

impl OffloadPool {
    /// A pool with no threads yet; they start as work arrives.
    pub fn new(name: impl Into<String>, config: PoolConfig) -> Self {
        Self {
            shared: Arc::new(Shared {
                name: name.into(),
                config,
                state: Mutex::new(State::default()),
                available: Condvar::new(),
                completed: AtomicU64::new(0),
                rejected: AtomicU64::new(0),
                abandoned: AtomicU64::new(0),
            }),
        }
    }

    /// The pool's name, as errors show it.
    pub fn name(&self) -> &str {
        &self.shared.name
    }

    /// Runs `f` on one of the pool's threads and awaits its result.
    ///
    /// Dropping the returned future while the job still waits in the queue withdraws
    /// it: `f` does not run (a request whose client went away does not keep a thread
    /// busy for nobody). Once a thread has taken it, it runs to its end.
    ///
    /// # Errors
    /// [`OffloadError::Saturated`] at once when every thread is busy and the queue is
    /// full; [`OffloadError::Panicked`] when `f` panicked.
    pub async fn run<F, T>(&self, f: F) -> Result<T, OffloadError>
    where
        F: FnOnce() -> T + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = oneshot::channel();
        let waited_for = Arc::new(AtomicBool::new(true));
        let _waiting = Waiting(Arc::clone(&waited_for));
        self.submit(Queued {
            job: Box::new(move |finished: &mut dyn FnMut(bool)| {
                if tx.is_closed() {
                    finished(false);
                    return;
                }
                let result = catch_unwind(AssertUnwindSafe(f));
                finished(true);
                let _ = tx.send(result);
            }),
            waited_for,
        })?;
        match rx.await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(panic)) => Err(OffloadError::Panicked {
                pool: self.shared.name.clone(),
                message: panic_message(&*panic),
            }),
            Err(_) => Err(OffloadError::Closed {
                pool: self.shared.name.clone(),
                reason: "the job was dropped before it ran".into(),
            }),
        }
    }

    fn submit(&self, job: Queued) -> Result<(), OffloadError> {
        let shared = &self.shared;
        let mut state = lock(&shared.state);
        let room = shared.config.max_threads + shared.config.queue;
        if state.running + state.jobs.len() >= room {
            // Full: first drop the queued jobs whose callers have gone.
            let before = state.jobs.len();
            state
                .jobs
                .retain(|queued| queued.waited_for.load(Ordering::Relaxed));
            let dropped = before - state.jobs.len();
            shared
                .abandoned
                .fetch_add(dropped as u64, Ordering::Relaxed);
        }
        let admitted = state.running + state.jobs.len();
        if admitted >= room {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            return Err(OffloadError::Saturated {
                pool: shared.name.clone(),
                threads: state.running,
                queued: state.jobs.len(),
            });
        }
        state.jobs.push_back(job);
        if state.idle > 0 {
            shared.available.notify_one();
        }
        // Threads not running a job (idle, or started and not yet waiting) will take
        // queued jobs; start another only if the queue outnumbers them.
        if state.jobs.len() > state.threads - state.running
            && state.threads < shared.config.max_threads
        {
            // Started under the lock (rare: only while the pool grows), so that on failure
            // the job taken back is ours.
            let pool = Arc::clone(shared);
            let spawned = std::thread::Builder::new()
                .name(format!("nucleon-offload-{}", shared.name))
                .spawn(move || pool.work());
            match spawned {
                Ok(_) => state.threads += 1,
                Err(error) => {
                    tracing::error!(pool = %shared.name, %error, "cannot start an offload thread");
                    if state.threads == 0 {
                        state.jobs.pop_back();
                        return Err(OffloadError::Closed {
                            pool: shared.name.clone(),
                            reason: format!("cannot start a thread: {error}"),
                        });
                    }
                }
            }
        }
        Ok(())
    }

    /// The pool's current figures.
    pub fn stats(&self) -> PoolStats {
        let state = lock(&self.shared.state);
        PoolStats {
            threads: state.threads,
            idle: state.idle,
            queued: state.jobs.len(),
            completed: self.shared.completed.load(Ordering::Relaxed),
            rejected: self.shared.rejected.load(Ordering::Relaxed),
            abandoned: self.shared.abandoned.load(Ordering::Relaxed),
        }
    }
}

impl Shared {
    fn work(&self) {
        let mut state = lock(&self.state);
        loop {
            if let Some(Queued { job, .. }) = state.jobs.pop_front() {
                state.running += 1;
                drop(state);
                job(&mut |ran| {
                    let count = if ran {
                        &self.completed
                    } else {
                        &self.abandoned
                    };
                    count.fetch_add(1, Ordering::Relaxed);
                    lock(&self.state).running -= 1;
                });
                state = lock(&self.state);
                continue;
            }
            state.idle += 1;
            let (next, timeout) = self
                .available
                .wait_timeout(state, self.config.keep_alive)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            state = next;
            state.idle -= 1;
            if timeout.timed_out() && state.jobs.is_empty() {
                state.threads -= 1;
                return;
            }
        }
    }
}

impl std::fmt::Debug for OffloadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OffloadPool")
            .field("name", &self.shared.name)
            .field("config", &self.shared.config)
            .field("stats", &self.stats())
            .finish()
    }
}
