//! What the watchdog reports and counts.

use std::time::Duration;

/// What a [`WatchdogReport`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReportKind {
    /// A tracked task's poll has run past the threshold and is **still running**.
    Blocking,
    /// A slow poll has ended; `elapsed` is its total.
    SlowPollEnded,
    /// A worker's heartbeat is late while no tracked poll runs: untracked code blocks it.
    Stall,
    /// A stalled worker's heartbeat has resumed; `elapsed` is the stall's total.
    StallEnded,
}

/// One finding of the watchdog.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WatchdogReport {
    /// What was found.
    pub kind: ReportKind,
    /// The worker (0-based) whose loop was blocked; for the process loop, the number
    /// of workers (its slot comes after theirs: see `process_loop`).
    pub worker: usize,
    /// Whether the blocked loop is the process loop (per-process adapters), not a worker.
    pub process_loop: bool,
    /// The blocking task's label (e.g. `GET /countries/{code}`), when known.
    pub task: Option<String>,
    /// The name of the tracing span the task was spawned in (it runs inside it), when it
    /// has one. Spans entered inside the task are not tracked per poll; the label
    /// ([`crate::task::set_label`]) is what names the work in progress.
    pub span: Option<String>,
    /// How long so far (live reports) or in total (ended reports).
    pub elapsed: Duration,
    /// The blocked thread's stack, when capture is on and succeeded.
    pub backtrace: Option<String>,
}

impl WatchdogReport {
    /// The blocked loop, as the log names it: `worker 2`, or `the process loop`.
    pub fn loop_name(&self) -> String {
        if self.process_loop {
            "the process loop".to_owned()
        } else {
            format!("worker {}", self.worker)
        }
    }
}

/// A snapshot of the watchdog's counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WatchdogStats {
    /// Live reports of polls still blocking.
    pub blocking_reports: u64,
    /// Slow polls that have ended (each also counted in `histogram`).
    pub slow_polls: u64,
    /// Heartbeat stalls from untracked code.
    pub stalls: u64,
    /// Slow polls by total duration; bucket `i` counts polls shorter than
    /// [`super::HISTOGRAM_BOUNDS_MS`]`[i]` ms, the last counts the rest.
    pub histogram: Vec<u64>,
}
