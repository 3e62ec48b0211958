//! The clock and the CPU meter: wall time, and this process's own user + system CPU
//! (getrusage(RUSAGE_SELF): every thread of this process, nothing of any other).

use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// A point in time: the wall clock and the process's CPU so far.
#[derive(Debug, Clone, Copy)]
pub struct Snapshot {
    at: Instant,
    user: Duration,
    sys: Duration,
}

impl Snapshot {
    /// Now.
    pub fn now() -> Self {
        // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
        let usage = unsafe {
            let mut usage: libc::rusage = std::mem::zeroed();
            let rc = libc::getrusage(libc::RUSAGE_SELF, &mut usage);
            assert_eq!(rc, 0, "getrusage");
            usage
        };
        let tv = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
        };
        Self {
            at: Instant::now(),
            user: tv(usage.ru_utime),
            sys: tv(usage.ru_stime),
        }
    }
}

/// What one measured run did: `count` operations between `start` and `end`.
pub fn result(bench: &str, implementation: &str, count: u64, start: Snapshot, end: Snapshot) -> Value {
    let wall = end.at - start.at;
    let user = end.user.saturating_sub(start.user);
    let sys = end.sys.saturating_sub(start.sys);
    json!({
        "bench": bench,
        "impl": implementation,
        "count": count,
        "wall_s": wall.as_secs_f64(),
        "user_s": user.as_secs_f64(),
        "sys_s": sys.as_secs_f64(),
        "cpu_s": (user + sys).as_secs_f64(),
        "per_s": count as f64 / wall.as_secs_f64(),
        "cpu_us_per_op": (user + sys).as_secs_f64() * 1e6 / count as f64,
    })
}

/// The `q`-quantile (0..=1) of sorted values, nearest rank.
pub fn quantile(sorted: &[u64], q: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of some figures (the mean of the two middle ones for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v: Vec<f64> = values.iter().copied().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    if v.len() % 2 == 1 { v[mid] } else { (v[mid - 1] + v[mid]) / 2.0 }
}

/// Another process's user + system CPU so far (/proc/PID/stat), for the RPC server.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: fields count after it.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_nanos(ticks * 1_000_000_000 / hz))
}
