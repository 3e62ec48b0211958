//! The watchdog's clock: nanoseconds on the monotonic clock, cheap enough to read twice
//! per poll.
//!
//! `Instant::now()` costs about 40 ns on a virtual machine (measured here); twice per poll
//! that is most of the watchdog's overhead. Thresholds are tens of milliseconds, so on
//! Linux the watchdog reads `CLOCK_MONOTONIC_COARSE` instead (about 5 ns, resolution one
//! scheduler tick, 1–4 ms), unless asked for a threshold under 20 ms, where it reads the
//! precise clock. Both clocks share one time base, so values mix safely.
//!
//! The clocks are read through rustix, which calls the kernel's vDSO directly: no
//! `unsafe` here, and no dearer than libc's `clock_gettime` (measured on this 2-core
//! VM, 20 M reads each: coarse 5.5–10 ns against libc's 10–11.5 ns, precise about 40 ns
//! for both; the call compiles to one load of the vDSO pointer and an indirect call).
//! Both clock ids exist on every Linux since 2.6.32, so the read cannot fail.

/// Nanoseconds on the monotonic clock (never 0, so 0 can mean "none").
#[cfg(target_os = "linux")]
pub(crate) fn now_ns(precise: bool) -> u64 {
    use rustix::time::{ClockId, clock_gettime};
    let ts = clock_gettime(if precise {
        ClockId::Monotonic
    } else {
        ClockId::MonotonicCoarse
    });
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
        .max(1)
}

/// Nanoseconds since the process's watchdog epoch, plus one (so 0 can mean "none").
#[cfg(not(target_os = "linux"))]
pub(crate) fn now_ns(_precise: bool) -> u64 {
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    epoch.elapsed().as_nanos() as u64 + 1
}

/// Whether a threshold needs the precise clock.
pub(crate) fn needs_precise(threshold: std::time::Duration) -> bool {
    threshold < std::time::Duration::from_millis(20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coarse_and_precise_share_a_time_base() {
        let precise = now_ns(true);
        let coarse = now_ns(false);
        let apart = precise.abs_diff(coarse);
        assert!(apart < 50_000_000, "{apart} ns apart");
    }
}
