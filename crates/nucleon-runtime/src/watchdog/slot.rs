//! A worker's slot: what it is polling right now, and since when.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
#[cfg(all(target_os = "linux", feature = "backtrace"))]
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::clock;
use super::lock;
use crate::label::LabelCell;
use crate::task::TaskLabel;

/// What the watchdog knows of one tracked task.
#[derive(Debug)]
pub(crate) struct TaskMeta {
    pub(crate) label: LabelCell,
    pub(crate) span: Option<&'static str>,
}

/// Written by one worker thread, read by the monitor thread.
pub(crate) struct WorkerSlot {
    pub(crate) worker: usize,
    /// Whether this is the process loop's slot (the one after the workers').
    pub(crate) process: bool,
    /// Whether to read the precise clock (thresholds under 20 ms) or the coarse one.
    precise: bool,
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
    /// The worker thread's pthread id, for stack capture; 0 once the thread is ending.
    pub(crate) thread: AtomicU64,
    /// The worker thread's stack (lowest and highest address), written with `thread`:
    /// a stack capture reads no frame outside it.
    #[cfg(all(target_os = "linux", feature = "backtrace"))]
    pub(crate) stack_low: AtomicUsize,
    #[cfg(all(target_os = "linux", feature = "backtrace"))]
    pub(crate) stack_high: AtomicUsize,
    /// Set by the monitor while it may signal `thread`: the ending worker waits for it to
    /// clear, so a signal never targets a thread that has exited (see [`Self::retire`]).
    pub(crate) signalling: AtomicBool,
    next_task: AtomicU64,
    tasks: Mutex<HashMap<u64, Arc<TaskMeta>, BuildHasherDefault<TaskIdHasher>>>,
}

impl WorkerSlot {
    pub(crate) fn new(worker: usize, threshold: Duration) -> Self {
        Self {
            worker,
            process: false,
            precise: clock::needs_precise(threshold),
            poll_started: AtomicU64::new(0),
            task_id: AtomicU64::new(0),
            heartbeat: AtomicU64::new(0),
            alive: AtomicBool::new(false),
            stalled: AtomicBool::new(false),
            thread: AtomicU64::new(0),
            #[cfg(all(target_os = "linux", feature = "backtrace"))]
            stack_low: AtomicUsize::new(0),
            #[cfg(all(target_os = "linux", feature = "backtrace"))]
            stack_high: AtomicUsize::new(0),
            signalling: AtomicBool::new(false),
            next_task: AtomicU64::new(1),
            tasks: Mutex::new(HashMap::default()),
        }
    }

    /// Registers a task; it stays known until [`WorkerSlot::unregister`].
    pub(crate) fn register(&self, label: TaskLabel, span: Option<&'static str>) -> u64 {
        let id = self.next_task.fetch_add(1, Ordering::Relaxed);
        let meta = Arc::new(TaskMeta {
            label: LabelCell::new(label),
            span,
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

    /// The watchdog clock's time now (see [`clock`]).
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        clock::now_ns(self.precise)
    }

    /// Marks the start of a poll of task `id`; returns the start time.
    #[inline]
    pub(crate) fn begin_poll(&self, id: u64) -> u64 {
        let start = self.now();
        self.task_id.store(id, Ordering::Relaxed);
        self.poll_started.store(start, Ordering::Release);
        start
    }

    /// Marks the end of the current poll; returns how long it ran.
    ///
    /// A poll of `slow` or longer is also a heartbeat (the loop turns again; its
    /// heartbeat task could not beat meanwhile), written *before* the poll is marked
    /// ended: a monitor that sees no poll running then also sees the fresh heartbeat,
    /// and never takes the tail of a tracked block for an untracked stall.
    #[inline]
    pub(crate) fn end_poll(&self, start: u64, slow: Duration) -> Duration {
        let now = self.now();
        let elapsed = Duration::from_nanos(now.saturating_sub(start));
        if elapsed >= slow {
            self.heartbeat.store(now, Ordering::Release);
        }
        self.poll_started.store(0, Ordering::Release);
        elapsed
    }

    /// Called by the worker thread as it ends: no signal reaches it after this returns.
    ///
    /// `SeqCst` on both sides (here, and in the monitor's `signalling` store before its
    /// `thread` load) means either the monitor sees 0, or this sees `signalling` and waits
    /// out the capture (at most its 200 ms timeout).
    pub(crate) fn retire(&self) {
        self.alive.store(false, Ordering::Release);
        self.poll_started.store(0, Ordering::Release);
        self.thread.store(0, Ordering::SeqCst);
        while self.signalling.load(Ordering::SeqCst) {
            std::thread::yield_now();
        }
    }

    pub(crate) fn beat(&self) -> u64 {
        let now = self.now();
        self.heartbeat.swap(now, Ordering::AcqRel)
    }
}

/// Task ids are sequential integers: they need no hashing to spread over buckets.
#[derive(Default)]
pub(crate) struct TaskIdHasher(u64);

impl Hasher for TaskIdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 = (self.0 << 8) | u64::from(byte);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The heartbeat of a slow poll is written before the poll is marked ended.
    #[test]
    fn a_slow_poll_beats_before_it_ends() {
        let slot = WorkerSlot::new(0, Duration::from_millis(100));
        let id = slot.register(TaskLabel::from("slow"), None);
        slot.begin_poll(id);
        let started = slot.now() - Duration::from_secs(1).as_nanos() as u64;
        slot.poll_started.store(started, Ordering::Release);
        let elapsed = slot.end_poll(started, Duration::from_millis(100));
        assert!(elapsed >= Duration::from_secs(1));
        assert_eq!(slot.poll_started.load(Ordering::Acquire), 0);
        assert!(
            slot.heartbeat.load(Ordering::Acquire)
                >= started + Duration::from_secs(1).as_nanos() as u64
        );

        // A quick poll is not a heartbeat: the heartbeat task's own beats are.
        slot.heartbeat.store(0, Ordering::Release);
        let start = slot.begin_poll(id);
        slot.end_poll(start, Duration::from_millis(100));
        assert_eq!(slot.heartbeat.load(Ordering::Acquire), 0);
    }
}
