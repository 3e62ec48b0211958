//! The monitor thread: scans worker slots and reports what blocks, while it blocks.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Inner;
use super::report::{ReportKind, WatchdogReport};

/// What the monitor already reported for one worker, so each episode is reported once.
#[derive(Default, Clone, Copy)]
struct Seen {
    poll: Option<(u64, u64)>,
    stall_since: Option<u64>,
}

pub(super) fn run(inner: &Inner) {
    let threshold = inner.config.threshold;
    let stall_after = threshold + inner.config.heartbeat_interval();
    let scan = inner.config.scan_interval();
    let mut seen = vec![Seen::default(); inner.slots.len()];
    while !inner.stop.load(Ordering::Acquire) {
        std::thread::park_timeout(scan);
        for (slot, seen) in inner.slots.iter().zip(seen.iter_mut()) {
            let now = slot.now();
            if !slot.alive.load(Ordering::Acquire) {
                *seen = Seen::default();
                continue;
            }
            let started = slot.poll_started.load(Ordering::Acquire);
            if started != 0 {
                let task_id = slot.task_id.load(Ordering::Acquire);
                let elapsed = Duration::from_nanos(now.saturating_sub(started));
                if elapsed >= threshold && seen.poll != Some((task_id, started)) {
                    seen.poll = Some((task_id, started));
                    let meta = slot.task(task_id);
                    // Only report if the same poll is still running after the lookup.
                    if slot.poll_started.load(Ordering::Acquire) != started {
                        continue;
                    }
                    let backtrace = capture_stack(inner, slot);
                    inner.publish(WatchdogReport {
                        kind: ReportKind::Blocking,
                        worker: slot.worker,
                        process_loop: slot.process,
                        task: meta.as_ref().map(|m| m.label.get().to_string()),
                        span: meta.as_ref().and_then(|m| m.span.map(str::to_owned)),
                        elapsed,
                        backtrace,
                    });
                }
                continue;
            }
            let beat = slot.heartbeat.load(Ordering::Acquire);
            let late = Duration::from_nanos(now.saturating_sub(beat));
            if beat != 0 && late >= stall_after && seen.stall_since != Some(beat) {
                seen.stall_since = Some(beat);
                slot.stalled.store(true, Ordering::Release);
                let backtrace = capture_stack(inner, slot);
                inner.publish(WatchdogReport {
                    kind: ReportKind::Stall,
                    worker: slot.worker,
                    process_loop: slot.process,
                    task: None,
                    span: None,
                    elapsed: late,
                    backtrace,
                });
            }
        }
    }
}

#[cfg(all(target_os = "linux", feature = "backtrace"))]
fn capture_stack(inner: &Inner, slot: &super::WorkerSlot) -> Option<String> {
    if !inner.config.backtrace {
        return None;
    }
    // Pairs with `WorkerSlot::retire`: while `signalling` is set, the thread read here
    // cannot exit, so `pthread_kill` never targets a dead (or reused) thread id.
    slot.signalling.store(true, Ordering::SeqCst);
    let thread = slot.thread.load(Ordering::SeqCst);
    let bounds = (
        slot.stack_low.load(Ordering::Acquire),
        slot.stack_high.load(Ordering::Acquire),
    );
    let stack = if thread == 0 || !slot.alive.load(Ordering::Acquire) {
        None
    } else {
        super::stack::capture(thread, bounds)
    };
    slot.signalling.store(false, Ordering::SeqCst);
    stack
}

#[cfg(not(all(target_os = "linux", feature = "backtrace")))]
fn capture_stack(_inner: &Inner, _slot: &super::WorkerSlot) -> Option<String> {
    None
}
