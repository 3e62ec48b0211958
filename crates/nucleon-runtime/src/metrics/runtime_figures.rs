//! The runtime's own figures: the watchdog's findings, worker restarts, the offload
//! pools and the drain.

use super::names::*;
use super::{CollectorGuard, register_collector};
use crate::drain::Drain;
use crate::offload;
use crate::watchdog::{ReportKind, WatchdogReport};

/// Counts a watchdog finding, by loop and task (labels are task labels: route
/// patterns and names given in code, never request data).
pub(crate) fn watchdog_report(report: &WatchdogReport) {
    let worker = if report.process_loop {
        "process".to_owned()
    } else {
        report.worker.to_string()
    };
    let task = report.task.clone().unwrap_or_default();
    match report.kind {
        ReportKind::Blocking => {
            metrics::counter!(WATCHDOG_BLOCKING, "worker" => worker, "task" => task).increment(1);
        }
        ReportKind::SlowPollEnded => {
            metrics::counter!(WATCHDOG_SLOW_POLLS, "worker" => worker, "task" => task).increment(1);
            metrics::histogram!(WATCHDOG_SLOW_POLL_DURATION).record(report.elapsed.as_secs_f64());
        }
        ReportKind::Stall => {
            metrics::counter!(WATCHDOG_STALLS, "worker" => worker).increment(1);
        }
        ReportKind::StallEnded => {}
    }
}

/// Counts a worker restarted by the supervisor.
pub(crate) fn worker_restarted(worker: usize) {
    metrics::counter!(WORKER_RESTARTS, "worker" => worker.to_string()).increment(1);
}

/// The collector of the offload pools' figures and the drain's phase.
pub(crate) fn register_runtime_collector(drain: Drain) -> CollectorGuard {
    register_collector(move || {
        let (blocking, cpu) = offload::stats();
        for (pool, stats) in [("blocking", blocking), ("cpu", cpu)] {
            metrics::gauge!(OFFLOAD_QUEUED, "pool" => pool).set(stats.queued as f64);
            metrics::gauge!(OFFLOAD_RUNNING, "pool" => pool)
                .set(stats.threads.saturating_sub(stats.idle) as f64);
            metrics::gauge!(OFFLOAD_THREADS, "pool" => pool).set(stats.threads as f64);
            metrics::counter!(OFFLOAD_COMPLETED, "pool" => pool).absolute(stats.completed);
            metrics::counter!(OFFLOAD_REFUSED, "pool" => pool).absolute(stats.rejected);
            metrics::counter!(OFFLOAD_ABANDONED, "pool" => pool).absolute(stats.abandoned);
        }
        metrics::gauge!(DRAINING).set(if drain.is_draining() { 1.0 } else { 0.0 });
    })
}
