//! A worker's slot: what it is polling right now, and since when.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::lock;
use crate::task::TaskLabel;

/// Nanoseconds since the process's watchdog epoch, plus one (so 0 can mean "none").
pub(crate) fn now_ns() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64 + 1
}

/// What the watchdog knows of one tracked task.
#[derive(Debug)]
pub(crate) struct TaskMeta {
    pub(crate) label: Mutex<TaskLabel>,
    pub(crate) span: Mutex<Option<&'static str>>,
}

/// Written by one worker thread, read by the monitor thread.
pub(crate) struct WorkerSlot {
    pub(crate) worker: usize,
    /// `now_ns()` when the current tracked poll began; 0 when none runs.
    pub(crate) poll_started: AtomicU64,
    /// The id of the task being polled (valid while `poll_started != 0`).
    pub(crate) task_id: AtomicU64,
    /// `now_ns()` of the worker's last heartbeat.
    pub(crate) heartbeat: AtomicU64,
    /// Whether the worker's loop is running (heartbeats are expected).
    pub(crate) alive: AtomicBool,
    /// Set by the monitor when it reported a stall, cleared by the next heartbeat.
    pub(crate) stalled: AtomicBool,
    /// The worker thread's pthread id, for stack capture.
    pub(crate) thread: AtomicU64,
    next_task: AtomicU64,
    tasks: Mutex<HashMap<u64, Arc<TaskMeta>>>,
}

impl WorkerSlot {
    pub(crate) fn new(worker: usize) -> Self {
        Self {
            worker,
            poll_started: AtomicU64::new(0),
            task_id: AtomicU64::new(0),
            heartbeat: AtomicU64::new(0),
            alive: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            thread: AtomicU64::new(0),
            next_task: AtomicU64::new(1),
            tasks: Mutex::new(HashMap::new()),
        }
    }

    /// Registers a task; it stays known until [`WorkerSlot::unregister`].
    pub(crate) fn register(&self, label: TaskLabel, span: Option<&'static str>) -> u64 {
        let id = self.next_task.fetch_add(1, Ordering::Relaxed);
        let meta = Arc::new(TaskMeta {
            label: Mutex::new(label),
            span: Mutex::new(span),
        });
        lock(&self.tasks).insert(id, meta);
        id
    }

    pub(crate) fn unregister(&self, id: u64) {
        lock(&self.tasks).remove(&id);
    }

    pub(crate) fn task(&self, id: u64) -> Option<Arc<TaskMeta>> {
        lock(&self.tasks).get(&id).cloned()
    }

    /// The task whose poll is running on this worker now, if a tracked one is.
    pub(crate) fn current_task(&self) -> Option<Arc<TaskMeta>> {
        if self.poll_started.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.task(self.task_id.load(Ordering::Acquire))
    }

    /// Marks the start of a poll of task `id`; returns the start time.
    #[inline]
    pub(crate) fn begin_poll(&self, id: u64) -> u64 {
        let start = now_ns();
        self.task_id.store(id, Ordering::Relaxed);
        self.poll_started.store(start, Ordering::Release);
        start
    }

    /// Marks the end of the current poll; returns how long it ran.
    #[inline]
    pub(crate) fn end_poll(&self, start: u64) -> Duration {
        self.poll_started.store(0, Ordering::Release);
        Duration::from_nanos(now_ns().saturating_sub(start))
    }

    pub(crate) fn beat(&self) -> u64 {
        let now = now_ns();
        self.heartbeat.swap(now, Ordering::AcqRel)
    }
}
