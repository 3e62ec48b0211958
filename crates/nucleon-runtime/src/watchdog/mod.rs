//! The watchdog: finds polls that block a worker loop, names them while they block.
//!
//! Every task spawned through [`crate::spawn`] is wrapped so that each poll records, in
//! its worker's `slot`, which task runs and since when (two relaxed atomic stores and a
//! clock read at the start, one store and a clock read at the end). A monitor thread
//! scans the slots; a poll running past the threshold is reported **while it is still
//! running**, naming the worker, the task's label and span, and the time so far. When the
//! poll ends, its total is logged, counted and put in a histogram.
//!
//! A heartbeat task per worker catches stalls caused by work the watchdog cannot see
//! (tasks spawned with plain `tokio::task::spawn_local`, or blocking code in an adapter).
//!
//! With [`WatchdogConfig::backtrace`] on (Linux, `backtrace` feature), the monitor also
//! captures the blocked thread's stack while it is blocked, by signalling that thread.
//!
//! **Overhead** (measured by `benches/runtime-bench`, 2-core VM): 10–25 ns per tracked
//! poll (two coarse-clock reads and three atomic stores, see `clock`), and about 100 ns
//! per spawned task (its label is registered in its worker's table, so the monitor can
//! name it). A channel ping-pong, the cheapest possible poll, costs ~50 ns without it;
//! an HTTP request costs tens of microseconds. The monitor thread wakes every
//! `threshold / 4` (12.5 ms by default) and each worker's heartbeat every `heartbeat`
//! (default: the threshold). Turn tracking off with `enabled = false`.

mod clock;
mod monitor;
mod report;
pub(crate) mod slot;
#[cfg(all(target_os = "linux", feature = "backtrace"))]
// Unsafe is needed here, and only here: installing a signal handler (sigaction),
// signalling one thread (pthread_kill), and reading that thread's registers and frame
// records from inside the handler. The module documents each invariant it relies on.
#[allow(unsafe_code)]
mod stack;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

pub use report::{ReportKind, WatchdogReport, WatchdogStats};
pub(crate) use slot::WorkerSlot;
#[cfg(all(target_os = "linux", feature = "backtrace"))]
pub(crate) use stack::{
    current_stack as stack_current_stack, current_thread as stack_current_thread,
};

use crate::config::duration;

/// Watchdog settings (`[<env>.runtime.watchdog]` in `app.toml`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WatchdogConfig {
    /// Whether tasks are tracked at all. Off, spawned tasks are not wrapped.
    pub enabled: bool,
    /// A poll running longer than this is reported (default 50 ms).
    #[serde(with = "duration::nonzero")]
    pub threshold: Duration,
    /// How often each worker's heartbeat ticks (default: the threshold).
    #[serde(with = "duration::nonzero::option")]
    pub heartbeat: Option<Duration>,
    /// Capture the blocked thread's stack when reporting (Linux on x86_64 or aarch64;
    /// default off). The stack is walked by frame pointers, from the signal context:
    /// build with `RUSTFLAGS="-C force-frame-pointers=yes"` for the service's own frames
    /// to show (the standard library keeps them; code without them ends the walk).
    pub backtrace: bool,
}

impl Default for WatchdogConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            threshold: Duration::from_millis(50),
            heartbeat: None,
            backtrace: false,
        }
    }
}

impl WatchdogConfig {
    pub(crate) fn heartbeat_interval(&self) -> Duration {
        self.heartbeat.unwrap_or(self.threshold)
    }

    fn scan_interval(&self) -> Duration {
        (self.threshold / 4).clamp(Duration::from_millis(2), Duration::from_millis(100))
    }
}

/// Upper bounds (in milliseconds) of the slow-poll histogram's buckets; the last bucket
/// holds everything longer.
pub const HISTOGRAM_BOUNDS_MS: [u64; 7] = [100, 250, 500, 1_000, 2_500, 5_000, 10_000];

type Listener = Arc<dyn Fn(&WatchdogReport) + Send + Sync>;

/// The watchdog of one runtime: its settings, counters and recent reports.
///
/// Get it from [`crate::RuntimeHandle::watchdog`]. Cheap to clone.
#[derive(Clone)]
pub struct Watchdog {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) config: WatchdogConfig,
    pub(crate) slots: Vec<Arc<WorkerSlot>>,
    blocking_reports: AtomicU64,
    slow_polls: AtomicU64,
    stalls: AtomicU64,
    histogram: [AtomicU64; HISTOGRAM_BOUNDS_MS.len() + 1],
    recent: Mutex<std::collections::VecDeque<WatchdogReport>>,
    listeners: Mutex<Vec<Listener>>,
    stop: AtomicBool,
}

const RECENT_REPORTS: usize = 256;

impl Watchdog {
    /// A watchdog for `workers` workers and the process loop (the last slot).
    pub(crate) fn new(config: WatchdogConfig, workers: usize) -> Self {
        let slots = (0..=workers)
            .map(|id| {
                let mut slot = WorkerSlot::new(id, config.threshold);
                slot.process = id == workers;
                Arc::new(slot)
            })
            .collect();
        Self {
            inner: Arc::new(Inner {
                config,
                slots,
                blocking_reports: AtomicU64::new(0),
                slow_polls: AtomicU64::new(0),
                stalls: AtomicU64::new(0),
                histogram: Default::default(),
                recent: Mutex::new(std::collections::VecDeque::with_capacity(RECENT_REPORTS)),
                listeners: Mutex::new(Vec::new()),
                stop: AtomicBool::new(false),
            }),
        }
    }

    /// The settings in force.
    pub fn config(&self) -> &WatchdogConfig {
        &self.inner.config
    }

    /// A snapshot of the counters and the slow-poll histogram.
    pub fn stats(&self) -> WatchdogStats {
        let i = &self.inner;
        WatchdogStats {
            // Acquire: a report counted is in `recent_reports` (see `publish`).
            blocking_reports: i.blocking_reports.load(Ordering::Acquire),
            slow_polls: i.slow_polls.load(Ordering::Acquire),
            stalls: i.stalls.load(Ordering::Acquire),
            histogram: i
                .histogram
                .iter()
                .map(|b| b.load(Ordering::Relaxed))
                .collect(),
        }
    }

    /// The most recent reports (up to 256), oldest first.
    pub fn recent_reports(&self) -> Vec<WatchdogReport> {
        lock(&self.inner.recent).iter().cloned().collect()
    }

    /// Calls `listener` with every report as it is made: on the monitor thread for live
    /// reports, on the worker for ended slow polls. Keep it short and non-blocking.
    pub fn on_report(&self, listener: impl Fn(&WatchdogReport) + Send + Sync + 'static) {
        lock(&self.inner.listeners).push(Arc::new(listener));
    }

    pub(crate) fn start_monitor(&self) -> std::io::Result<std::thread::JoinHandle<()>> {
        let inner = Arc::clone(&self.inner);
        #[cfg(all(target_os = "linux", feature = "backtrace"))]
        if inner.config.backtrace {
            stack::install_handler()?;
        }
        std::thread::Builder::new()
            .name("nucleon-watchdog".into())
            .spawn(move || monitor::run(&inner))
    }

    pub(crate) fn stop_monitor(&self) {
        self.inner.stop.store(true, Ordering::Release);
    }
}

impl Inner {
    pub(crate) fn publish(&self, report: WatchdogReport) {
        match report.kind {
            ReportKind::Blocking => {
                crate::metrics::watchdog_report(&report);
                tracing::warn!(
                    target: "nucleon::watchdog",
                    worker = report.worker,
                    task = report.task.as_deref().unwrap_or("-"),
                    span = report.span.as_deref().unwrap_or("-"),
                    elapsed_ms = report.elapsed.as_millis() as u64,
                    "{} blocked by task `{}` for {:?} so far (still blocking){}",
                    report.loop_name(),
                    report.task.as_deref().unwrap_or("?"),
                    report.elapsed,
                    report.backtrace.as_deref().map(|b| format!("; stack:\n{b}")).unwrap_or_default(),
                );
            }
            ReportKind::SlowPollEnded => {
                self.record_histogram(report.elapsed);
                crate::metrics::watchdog_report(&report);
                tracing::warn!(
                    target: "nucleon::watchdog",
                    worker = report.worker,
                    task = report.task.as_deref().unwrap_or("-"),
                    span = report.span.as_deref().unwrap_or("-"),
                    total_ms = report.elapsed.as_millis() as u64,
                    "task `{}` blocked {} for {:?} in one poll; move blocking or CPU work to nucleon_runtime::offload",
                    report.task.as_deref().unwrap_or("?"),
                    report.loop_name(),
                    report.elapsed,
                );
            }
            ReportKind::Stall => {
                crate::metrics::watchdog_report(&report);
                tracing::warn!(
                    target: "nucleon::watchdog",
                    worker = report.worker,
                    elapsed_ms = report.elapsed.as_millis() as u64,
                    "{} heartbeat late by {:?}: code the watchdog does not track (a task not spawned through nucleon, or an adapter) is blocking it{}",
                    report.loop_name(),
                    report.elapsed,
                    report.backtrace.as_deref().map(|b| format!("; stack:\n{b}")).unwrap_or_default(),
                );
            }
            ReportKind::StallEnded => {
                tracing::warn!(
                    target: "nucleon::watchdog",
                    worker = report.worker,
                    total_ms = report.elapsed.as_millis() as u64,
                    "{} heartbeat resumed after a stall of {:?}",
                    report.loop_name(),
                    report.elapsed,
                );
            }
        }
        let listeners: Vec<Listener> = lock(&self.listeners).clone();
        for listener in listeners {
            // A listener that panics must not take the watchdog down with it (this runs
            // on the monitor thread, in a worker's heartbeat, after a task's poll).
            let called =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listener(&report)));
            if let Err(panic) = called {
                tracing::error!(target: "nucleon::watchdog", "a watchdog report listener panicked: {}", crate::task::panic_message(&*panic));
            }
        }
        let counter = match report.kind {
            ReportKind::Blocking => Some(&self.blocking_reports),
            ReportKind::SlowPollEnded => Some(&self.slow_polls),
            ReportKind::Stall => Some(&self.stalls),
            ReportKind::StallEnded => None,
        };
        {
            let mut recent = lock(&self.recent);
            if recent.len() == RECENT_REPORTS {
                recent.pop_front();
            }
            recent.push_back(report);
        }
        // Counted once in the recent reports: whoever sees the count finds the report.
        if let Some(counter) = counter {
            counter.fetch_add(1, Ordering::Release);
        }
    }

    fn record_histogram(&self, elapsed: Duration) {
        let ms = elapsed.as_millis() as u64;
        let bucket = HISTOGRAM_BOUNDS_MS
            .iter()
            .position(|&bound| ms < bound)
            .unwrap_or(HISTOGRAM_BOUNDS_MS.len());
        self.histogram[bucket].fetch_add(1, Ordering::Relaxed);
    }
}

impl std::fmt::Debug for Watchdog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watchdog")
            .field("config", &self.inner.config)
            .field("stats", &self.stats())
            .finish()
    }
}

/// Locks a mutex, ignoring poisoning: the data behind these locks stays consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
