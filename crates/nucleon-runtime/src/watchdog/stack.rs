//! Capturing a blocked worker thread's stack while it is blocked (Linux).
//!
//! The monitor thread sends a real-time signal to the blocked worker thread
//! (`pthread_kill`). The handler, running on that thread on top of the blocked frame,
//! walks the stack with `backtrace::trace_unsynchronized` and stores the raw instruction
//! pointers in static atomics — no allocation, no locks of ours. The monitor waits for the
//! handler to finish, then resolves the addresses to symbols on its own thread.
//!
//! Why `unsafe`, and why it holds:
//! - `sigaction` installs a handler that only touches atomics and the unwinder, and is
//!   installed once for the process.
//! - `pthread_kill` targets a thread id recorded by a worker while its loop runs; an
//!   ending worker clears it and waits while the monitor is signalling
//!   (`WorkerSlot::retire`), so the id never names an exited thread.
//! - `trace_unsynchronized` is unsafe because it is not synchronised with other unwinds;
//!   only one handler ever walks a stack at a time: a handler runs the walk only after
//!   moving `STATE` from `REQUESTED` to `CAPTURING`, only on the thread named in `TARGET`,
//!   and the monitor never requests a capture while one is `CAPTURING` (even one it gave
//!   up waiting for). A late signal (after a timeout) on another thread finds `TARGET`
//!   naming someone else and returns, so it can neither walk concurrently nor pass its
//!   stack off as another worker's.
//! - The handler saves and restores `errno`, which the unwinder may change under the
//!   interrupted code.
//!
//! The unwinder is not formally async-signal-safe; it is what glommio's stall detector
//! and several profilers do in practice. That is why capture is opt-in
//! ([`super::WatchdogConfig::backtrace`]).

use std::ffi::c_void;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MAX_FRAMES: usize = 64;
static FRAMES: [AtomicUsize; MAX_FRAMES] = [const { AtomicUsize::new(0) }; MAX_FRAMES];
static DEPTH: AtomicUsize = AtomicUsize::new(0);
/// The pthread id of the thread asked for its stack.
static TARGET: AtomicU64 = AtomicU64::new(0);
static STATE: AtomicU8 = AtomicU8::new(IDLE);
const IDLE: u8 = 0;
const REQUESTED: u8 = 1;
const CAPTURING: u8 = 2;
const DONE: u8 = 3;

fn signal_number() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

/// The calling thread's pthread id, for [`capture`].
pub(crate) fn current_thread() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

/// Installs the capture handler once for the process.
pub(super) fn install_handler() -> std::io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler has the
        // SA_SIGINFO signature and only uses atomics and the unwinder (see module docs).
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = handler as *const () as usize;
            action.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART;
            libc::sigemptyset(&mut action.sa_mask);
            if libc::sigaction(signal_number(), &action, std::ptr::null_mut()) != 0 {
                return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0));
            }
        }
        Ok(())
    });
    result.map_err(std::io::Error::from_raw_os_error)
}

extern "C" fn handler(_signal: libc::c_int, _info: *mut libc::siginfo_t, _context: *mut c_void) {
    if STATE
        .compare_exchange(REQUESTED, CAPTURING, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        return;
    }
    // Checked while holding `CAPTURING`, so `TARGET` cannot change under the check.
    if current_thread() != TARGET.load(Ordering::Acquire) {
        STATE.store(REQUESTED, Ordering::Release);
        return;
    }
    // SAFETY: __errno_location returns this thread's errno, valid for the thread's life.
    let errno = unsafe { *libc::__errno_location() };
    let mut depth = 0;
    // SAFETY: this handler holds `CAPTURING`, so no other walk runs; see module docs.
    unsafe {
        backtrace::trace_unsynchronized(|frame| {
            FRAMES[depth].store(frame.ip() as usize, Ordering::Relaxed);
            depth += 1;
            depth < MAX_FRAMES
        });
    }
    DEPTH.store(depth, Ordering::Relaxed);
    STATE.store(DONE, Ordering::Release);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
}

/// Captures the stack of `thread` (from [`current_thread`]) and renders it.
///
/// Returns `None` if the thread did not answer within 200 ms, or if the handler of an
/// earlier, abandoned capture is still walking a stack.
pub(super) fn capture(thread: u64) -> Option<String> {
    // Only the monitor thread calls this, so between this check and the store below
    // nothing but a `CAPTURING` handler could change `STATE`, and it would be refused.
    if STATE.load(Ordering::Acquire) == CAPTURING {
        return None;
    }
    TARGET.store(thread, Ordering::Release);
    STATE.store(REQUESTED, Ordering::Release);
    // SAFETY: `thread` was recorded by a live worker (see module docs).
    let rc = unsafe { libc::pthread_kill(thread as libc::pthread_t, signal_number()) };
    if rc != 0 {
        STATE.store(IDLE, Ordering::Release);
        return None;
    }
    let deadline = Instant::now() + Duration::from_millis(200);
    while STATE.load(Ordering::Acquire) != DONE {
        if Instant::now() > deadline {
            // Withdraw the request unless a handler already took it; a handler still
            // `CAPTURING` keeps the buffer until it is `DONE` (see the check above).
            let _ = STATE.compare_exchange(REQUESTED, IDLE, Ordering::AcqRel, Ordering::Acquire);
            return None;
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "the monitor thread is not a worker loop"
        )]
        std::thread::sleep(Duration::from_millis(1));
    }
    let depth = DEPTH.load(Ordering::Acquire);
    let ips: Vec<usize> = FRAMES[..depth]
        .iter()
        .map(|ip| ip.load(Ordering::Relaxed))
        .collect();
    STATE.store(IDLE, Ordering::Release);
    Some(render(&ips))
}

fn render(ips: &[usize]) -> String {
    let mut frames: Vec<String> = Vec::with_capacity(ips.len());
    for &ip in ips {
        let mut line = String::new();
        backtrace::resolve(ip as *mut c_void, |symbol| {
            if !line.is_empty() {
                line.push_str(" / ");
            }
            match symbol.name() {
                Some(name) => {
                    let _ = write!(line, "{name:#}");
                }
                None => {
                    let _ = write!(line, "{ip:#x}");
                }
            }
            if let (Some(file), Some(lineno)) = (symbol.filename(), symbol.lineno()) {
                let _ = write!(line, " at {}:{lineno}", file.display());
            }
        });
        if line.is_empty() {
            line = format!("{ip:#x}");
        }
        frames.push(line);
    }
    // Drop the frames of the capture itself: everything up to and including our handler
    // (the next frame is the kernel's signal trampoline, then the blocked code).
    let start = frames
        .iter()
        .position(|f| f.contains("watchdog::stack::handler"))
        .map_or(0, |i| i + 1);
    let mut out = String::new();
    for (n, frame) in frames[start..].iter().enumerate() {
        let _ = writeln!(out, "  {n:>2}: {frame}");
    }
    out
}
