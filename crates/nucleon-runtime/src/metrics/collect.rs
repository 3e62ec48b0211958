//! Collectors: figures read when they are exported, not recorded as they change.

use std::sync::{Arc, Mutex, PoisonError};

type Collector = Arc<dyn Fn() + Send + Sync>;

static COLLECTORS: Mutex<Vec<(u64, Collector)>> = Mutex::new(Vec::new());
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Registers `collector`, which sets gauges and counters (`absolute`) from figures
/// kept elsewhere; it runs at every [`collect`], until the guard returned is dropped.
/// Keep it quick and non-blocking: a scrape runs it on a worker.
///
/// ```
/// use nucleon_runtime::metrics::{collect, register_collector};
///
/// let _guard = register_collector(|| {
///     metrics::gauge!("example_queue_length").set(3.0);
/// });
/// collect();
/// ```
#[must_use = "the collector is removed when the guard is dropped"]
pub fn register_collector(collector: impl Fn() + Send + Sync + 'static) -> CollectorGuard {
    let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    lock().push((id, Arc::new(collector)));
    CollectorGuard { id }
}

/// Runs every registered collector, then hands this thread's local metrics to the
/// recorder ([`super::flush_local`]). An exporter calls it before it renders.
pub fn collect() {
    // Cloned out: a collector that registers another does not deadlock.
    let collectors: Vec<Collector> = lock().iter().map(|(_, c)| Arc::clone(c)).collect();
    for collector in collectors {
        collector();
    }
    super::flush_local();
}

/// Keeps a collector registered; dropping it removes the collector.
#[derive(Debug)]
pub struct CollectorGuard {
    id: u64,
}

impl Drop for CollectorGuard {
    fn drop(&mut self) {
        lock().retain(|(id, _)| *id != self.id);
    }
}

fn lock() -> std::sync::MutexGuard<'static, Vec<(u64, Collector)>> {
    COLLECTORS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs [`collect`] every `interval` (on the runtime's control thread), so that a
/// recorder nobody scrapes through `collect` still gets the collected figures.
pub(crate) async fn collect_every(interval: std::time::Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        collect();
    }
}
