//! Waiting for a condition in a test: polled, bounded, and loud when it never holds.

use std::time::{Duration, Instant};

/// The longest pause between two polls (they start at 1 ms and double).
const MAX_PAUSE: Duration = Duration::from_millis(50);

/// Polls `condition` until it returns `true`; blocks the thread between polls (1 ms at
/// first, doubling up to 50 ms). It is asked at least once, and once more when
/// `timeout` has passed. For plain `#[test]` functions; in async tests, use
/// [`wait_until_async`].
///
/// # Panics
/// `timed out after {timeout:?} waiting for {what}` when it never held.
///
/// ```
/// use std::sync::atomic::{AtomicBool, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use nucleon_testkit::wait_until;
///
/// let started = Arc::new(AtomicBool::new(false));
/// let flag = Arc::clone(&started);
/// std::thread::spawn(move || flag.store(true, Ordering::SeqCst));
/// wait_until("the thread to start", Duration::from_secs(5), || {
///     started.load(Ordering::SeqCst)
/// });
/// ```
#[allow(
    clippy::disallowed_methods,
    reason = "a test helper for plain #[test] functions: it blocks its own thread between \
              polls, never a worker's loop"
)]
#[track_caller]
pub fn wait_until(what: &str, timeout: Duration, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        if condition() {
            return;
        }
        let now = Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(pause.min(deadline - now));
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// The async twin of [`wait_until`]: awaits `condition` (an async closure) until it
/// gives `true`, sleeping on tokio's timer between polls, so the test's runtime goes on
/// running its other tasks. A condition that does not finish by `timeout` counts as
/// not holding.
///
/// # Panics
/// `timed out after {timeout:?} waiting for {what}` when it never held.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use std::time::Duration;
/// use nucleon_testkit::wait_until_async;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let served = Arc::new(AtomicUsize::new(0));
/// let counter = Arc::clone(&served);
/// tokio::spawn(async move {
///     counter.fetch_add(1, Ordering::SeqCst);
/// });
/// wait_until_async("one request served", Duration::from_secs(5), async || {
///     served.load(Ordering::SeqCst) == 1
/// })
/// .await;
/// # }
/// ```
pub async fn wait_until_async(
    what: &str,
    timeout: Duration,
    mut condition: impl AsyncFnMut() -> bool,
) {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut pause = Duration::from_millis(1);
    loop {
        // A future is polled once before its deadline is looked at: the condition is
        // asked even at the deadline.
        if let Ok(true) = tokio::time::timeout_at(deadline, condition()).await {
            return;
        }
        let now = tokio::time::Instant::now();
        if now >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(pause.min(deadline - now)).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}
