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
    in_flight: AtomicUsize,
    idle: Notify,
}

impl Drain {
    /// A drain state that has not started.
    pub fn new() -> Self {
        let (draining, _) = watch::channel(false);
        Self {
            inner: Arc::new(Inner {
                draining,
                in_flight: AtomicUsize::new(0),
                idle: Notify::new(),
            }),
        }
    }

    /// Starts the drain. Returns `true` if this call started it, `false` if it was
    /// already draining.
    pub fn start(&self) -> bool {
        self.inner.draining.send_if_modified(|draining| {
            let first = !*draining;
            *draining = true;
            first
        })
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
        self.inner.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlightGuard {
            inner: Arc::clone(&self.inner),
        }
    }

    /// How much accepted work is still in flight.
    pub fn in_flight(&self) -> usize {
        self.inner.in_flight.load(Ordering::Acquire)
    }

    /// Waits until no work is in flight, or until `deadline`.
    ///
    /// # Errors
    /// [`DrainTimeout`] with the count still in flight when the deadline passes.
    pub async fn wait_idle(&self, deadline: Instant) -> Result<(), DrainTimeout> {
        let wait = async {
            loop {
                let notified = self.inner.idle.notified();
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
    inner: Arc<Inner>,
}

impl fmt::Debug for InFlightGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("InFlightGuard")
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.inner.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.idle.notify_waiters();
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
        let waiter = tokio::spawn({
            let drain = drain.clone();
            async move {
                drain
                    .wait_idle(Instant::now() + Duration::from_secs(5))
                    .await
            }
        });
        tokio::task::yield_now().await;
        drop(b);
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
