//! The runtime's errors.

use std::time::Duration;

use crate::adapter::BoxError;
use crate::config::ConfigError;

/// Why the runtime could not start, or did not stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RuntimeError {
    /// Configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// An adapter failed to start.
    #[error("adapter `{adapter}`{} failed to start: {source}", on_worker(*worker))]
    AdapterStart {
        /// The adapter's name.
        adapter: String,
        /// The worker it belongs to (`None`: per-process).
        worker: Option<usize>,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// An adapter did not start in time.
    #[error("adapter `{adapter}`{} did not start within {timeout:?} (runtime.start_timeout)", on_worker(*worker))]
    AdapterStartTimeout {
        /// The adapter's name.
        adapter: String,
        /// The worker it belongs to (`None`: per-process).
        worker: Option<usize>,
        /// The limit.
        timeout: Duration,
    },
    /// A worker's setup closure returned an error.
    #[error("setup of worker {worker} failed: {source}")]
    WorkerSetup {
        /// The worker.
        worker: usize,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// Something needs a handle that no adapter gives (a route's `Dep<T>` with no
    /// adapter of that handle type, or not under that name).
    #[error("{}", missing_handles(*worker, missing))]
    MissingHandles {
        /// The worker that found it out (`None`: the check before start).
        worker: Option<usize>,
        /// What is needed, and by whom.
        missing: Vec<crate::handle::Requirement>,
    },
    /// The process loop (the thread of the per-process adapters) ended unexpectedly.
    #[error("the process loop ended unexpectedly: {message}")]
    ProcessLoopDied {
        /// Its panic's message, or what else ended it.
        message: String,
    },
    /// A worker panicked while starting, too many times.
    #[error("worker {worker} panicked while starting ({attempts} attempts), last: {message}")]
    WorkerStartPanicked {
        /// The worker.
        worker: usize,
        /// How many times it was tried.
        attempts: u32,
        /// The last panic's message.
        message: String,
    },
    /// A lifecycle hook failed.
    #[error("{stage} hook #{index} failed: {source}")]
    Hook {
        /// `on_initialise`, `on_start` or `on_stop`.
        stage: &'static str,
        /// The hook's position among that stage's hooks.
        index: usize,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// Workers were still running when the shutdown deadline passed.
    #[error("shutdown deadline ({timeout:?}) passed with worker(s) {workers:?} still draining")]
    ShutdownTimeout {
        /// The workers still running.
        workers: Vec<usize>,
        /// The deadline.
        timeout: Duration,
    },
    /// The drain did not finish cleanly: work still in flight or an adapter that did not
    /// stop at the deadline. The process stopped anyway.
    #[error("drain incomplete at the shutdown deadline: {}", problems.join("; "))]
    DrainIncomplete {
        /// What was left, one entry per worker or adapter.
        problems: Vec<String>,
    },
    /// An operating-system resource could not be had.
    #[error("cannot {what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn on_worker(worker: Option<usize>) -> String {
    worker
        .map(|w| format!(" on worker {w}"))
        .unwrap_or_default()
}

fn missing_handles(worker: Option<usize>, missing: &[crate::handle::Requirement]) -> String {
    let needs: Vec<String> = missing
        .iter()
        .map(|r| format!("{} needs `{}`", r.needed_by, r.key))
        .collect();
    format!(
        "no adapter gives the handle(s) needed{}: {}; add an adapter whose handle is that type (and whose `instance()` is that name, for a named one), per process or per worker",
        on_worker(worker),
        needs.join("; "),
    )
}

/// The process exit codes of a Nucleon service (`app start`, `app check`…).
///
/// | code | meaning |
/// |---|---|
/// | 0 | clean: started, drained, stopped (or `check` found nothing wrong) |
/// | 1 | forced: the drain did not finish by the deadline, a second signal, a failure after the start |
/// | 2 | usage: the command line is wrong |
/// | 3 | configuration: a file, table, key, value or variable is wrong |
/// | 4 | start: an adapter, a hook, a worker or the listener could not start |
pub mod exit_code {
    /// Started, drained and stopped cleanly.
    pub const CLEAN: u8 = 0;
    /// The stop was forced, or something failed after the start.
    pub const FORCED: u8 = 1;
    /// The command line is wrong.
    pub const USAGE: u8 = 2;
    /// The configuration is wrong.
    pub const CONFIG: u8 = 3;
    /// The service could not start.
    pub const START: u8 = 4;
}

impl RuntimeError {
    /// The process exit code for this error (see [`exit_code`]): 3 for configuration,
    /// 4 for what failed at the start, 1 for what failed after it.
    pub fn exit_code(&self) -> u8 {
        match self {
            RuntimeError::Config(_) => exit_code::CONFIG,
            RuntimeError::AdapterStart { source, .. } if source.is::<ConfigError>() => {
                exit_code::CONFIG
            }
            RuntimeError::AdapterStart { .. }
            | RuntimeError::AdapterStartTimeout { .. }
            | RuntimeError::WorkerSetup { .. }
            | RuntimeError::MissingHandles { .. }
            | RuntimeError::WorkerStartPanicked { .. }
            | RuntimeError::Io { .. } => exit_code::START,
            RuntimeError::Hook { stage, .. } if *stage != "on_stop" => exit_code::START,
            RuntimeError::Hook { .. }
            | RuntimeError::ProcessLoopDied { .. }
            | RuntimeError::ShutdownTimeout { .. }
            | RuntimeError::DrainIncomplete { .. } => exit_code::FORCED,
        }
    }
}
