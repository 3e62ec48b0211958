//! The watchdog's clock: nanoseconds on the monotonic clock, cheap enough to read twice
//! per poll.
//!
//! `Instant::now()` costs about 40 ns on a virtual machine (measured here); twice per poll
//! that is most of the watchdog's overhead. Thresholds are tens of milliseconds, so on
//! Linux the watchdog reads `CLOCK_MONOTONIC_COARSE` instead (about 5 ns, resolution one
//! scheduler tick, 1–4 ms), unless asked for a threshold under 20 ms, where it reads the
//! precise clock. Both clocks share one time base, so values mix safely.
//!
//! Why `unsafe`: `libc::clock_gettime` is an FFI call. It only writes the `timespec` we
//! pass, which lives on our stack for the call; both clock ids exist on every Linux since
//! 2.6.32, so it cannot fail (an error would leave the zeroed value, read as "no time").

#[cfg(target_os = "linux")]
fn read(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: see the module docs.
    unsafe {
        libc::clock_gettime(clock, &mut ts);
    }
    (ts.tv_sec as u64)
        .wrapping_mul(1_000_000_000)
        .wrapping_add(ts.tv_nsec as u64)
        .max(1)
}

/// Nanoseconds on the monotonic clock (never 0, so 0 can mean "none").
#[cfg(target_os = "linux")]
pub(crate) fn now_ns(precise: bool) -> u64 {
    read(if precise {
        libc::CLOCK_MONOTONIC
    } else {
        libc::CLOCK_MONOTONIC_COARSE
    })
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
