//! Capturing a blocked worker thread's stack while it is blocked (Linux, x86_64 and
//! aarch64).
//!
//! The monitor thread sends a real-time signal to the blocked worker thread
//! (`pthread_kill`). The handler, running on that thread on top of the blocked frame,
//! reads the interrupted registers from its signal context (the program counter, the
//! frame pointer and the stack pointer: RIP/RBP/RSP on x86_64, PC/X29/SP and the link
//! register X30 on aarch64) and follows the chain of frame records — each one the
//! caller's frame pointer and the return address — storing the addresses in static
//! atomics. No unwinder, no allocation, no lock, no call into libc: a handler that
//! interrupts a thread holding the unwinder's or the allocator's lock cannot deadlock
//! it. The monitor waits for the handler to finish, then resolves the addresses to
//! symbols on its own thread (`backtrace::resolve`).
//!
//! The walk needs frame pointers: the standard library keeps them; build the service
//! with `RUSTFLAGS="-C force-frame-pointers=yes"` for its own frames to be in the
//! stack (without them the walk stops early or skips frames). Code without them (a C
//! library) ends the chain, except for the innermost frame, which is the program
//! counter itself.
//!
//! Why `unsafe`, and why it holds:
//! - `sigaction` installs a handler that only touches atomics and reads the interrupted
//!   thread's stack, and is installed once for the process.
//! - `pthread_kill` targets a thread id recorded by a worker while its loop runs; an
//!   ending worker clears it and waits while the monitor is signalling
//!   (`WorkerSlot::retire`), so the id never names an exited thread.
//! - The handler reads the signal context the kernel passed it, and stack memory only
//!   between the interrupted stack pointer and the top of the thread's stack (recorded
//!   by the thread itself, [`current_stack`]), 8-byte aligned, each frame record above
//!   the one before: memory the thread's live frames occupy, mapped and readable. A
//!   corrupt chain ends the walk; it cannot make the handler fault.
//! - A capture is a generation: the monitor numbers each request, the handler claims it
//!   by moving `STATE` from (generation, requested) to (generation, writing), and the
//!   monitor takes the frames only once `STATE` is (its generation, done). A late
//!   signal (after a timeout) finds another generation, or a target that is not its
//!   thread, and returns; a request is never made while a handler is writing, so two
//!   walks never share the buffer, and an earlier capture cannot pass for a later one.

use std::ffi::c_void;
use std::fmt::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const MAX_FRAMES: usize = 64;
const WORD: usize = std::mem::size_of::<usize>();
static FRAMES: [AtomicUsize; MAX_FRAMES] = [const { AtomicUsize::new(0) }; MAX_FRAMES];
static DEPTH: AtomicUsize = AtomicUsize::new(0);
/// The pthread id of the thread asked for its stack, and the bounds of its stack.
static TARGET: AtomicU64 = AtomicU64::new(0);
static STACK_LOW: AtomicUsize = AtomicUsize::new(0);
static STACK_HIGH: AtomicUsize = AtomicUsize::new(0);
/// The capture in progress: its generation, shifted left by 2, and its phase.
static STATE: AtomicU64 = AtomicU64::new(IDLE);
/// The last generation requested (only the monitor thread requests).
static GENERATION: AtomicU64 = AtomicU64::new(0);
const IDLE: u64 = 0;
const REQUESTED: u64 = 1;
const WRITING: u64 = 2;
const DONE: u64 = 3;
const PHASE: u64 = 0b11;

fn signal_number() -> libc::c_int {
    libc::SIGRTMIN() + 5
}

/// The calling thread's pthread id, for [`capture`].
pub(crate) fn current_thread() -> u64 {
    // SAFETY: pthread_self has no preconditions.
    unsafe { libc::pthread_self() as u64 }
}

/// The calling thread's stack, `(lowest, highest)` address (the highest exclusive), for
/// [`capture`]; `(0, 0)` if the system does not say.
pub(crate) fn current_stack() -> (usize, usize) {
    // SAFETY: `attr` is initialised by pthread_getattr_np before it is read, and
    // destroyed once; the out-pointers are valid locals.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return (0, 0);
        }
        let mut base: *mut c_void = std::ptr::null_mut();
        let mut size: libc::size_t = 0;
        let rc = libc::pthread_attr_getstack(&attr, &mut base, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            return (0, 0);
        }
        (base as usize, (base as usize).saturating_add(size))
    }
}

/// Installs the capture handler once for the process.
pub(super) fn install_handler() -> std::io::Result<()> {
    static INSTALLED: OnceLock<Result<(), i32>> = OnceLock::new();
    let result = INSTALLED.get_or_init(|| {
        // SAFETY: a zeroed sigaction is a valid starting value; the handler has the
        // SA_SIGINFO signature and only uses atomics and the stack (see module docs).
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

extern "C" fn handler(_signal: libc::c_int, _info: *mut libc::siginfo_t, context: *mut c_void) {
    let requested = STATE.load(Ordering::Acquire);
    if requested & PHASE != REQUESTED || current_thread() != TARGET.load(Ordering::Relaxed) {
        return;
    }
    let (low, high) = (
        STACK_LOW.load(Ordering::Relaxed),
        STACK_HIGH.load(Ordering::Relaxed),
    );
    // Claimed only if still this generation's request: what was read above is its own.
    let generation = requested & !PHASE;
    if STATE
        .compare_exchange(
            requested,
            generation | WRITING,
            Ordering::AcqRel,
            Ordering::Relaxed,
        )
        .is_err()
    {
        return;
    }
    // SAFETY: `context` is the ucontext_t the kernel passed this SA_SIGINFO handler.
    let depth = match unsafe { registers(context) } {
        // SAFETY: the bounds are this thread's stack, recorded by the thread itself.
        Some(registers) => unsafe { walk(registers, low, high) },
        None => 0,
    };
    DEPTH.store(depth, Ordering::Relaxed);
    STATE.store(generation | DONE, Ordering::Release);
}

/// The interrupted thread's program counter, frame pointer, stack pointer and, where
/// the architecture has one, link register.
struct Registers {
    pc: usize,
    fp: usize,
    sp: usize,
    lr: Option<usize>,
}

/// # Safety
/// `context` points to the `ucontext_t` of a signal delivered to this thread.
#[cfg(target_arch = "x86_64")]
unsafe fn registers(context: *mut c_void) -> Option<Registers> {
    // SAFETY: as the function's contract says.
    let gregs = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext.gregs };
    Some(Registers {
        pc: gregs[libc::REG_RIP as usize] as usize,
        fp: gregs[libc::REG_RBP as usize] as usize,
        sp: gregs[libc::REG_RSP as usize] as usize,
        lr: None,
    })
}

/// # Safety
/// `context` points to the `ucontext_t` of a signal delivered to this thread.
#[cfg(target_arch = "aarch64")]
unsafe fn registers(context: *mut c_void) -> Option<Registers> {
    // SAFETY: as the function's contract says.
    let mcontext = unsafe { &(*context.cast::<libc::ucontext_t>()).uc_mcontext };
    Some(Registers {
        pc: mcontext.pc as usize,
        fp: mcontext.regs[29] as usize,
        sp: mcontext.sp as usize,
        lr: Some(mcontext.regs[30] as usize),
    })
}

/// Other architectures: no walk (the report says the stack is empty).
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn registers(_context: *mut c_void) -> Option<Registers> {
    None
}

/// Stores the program counter, then the return address of each frame record, into
/// `FRAMES`; returns how many.
///
/// # Safety
/// `low..high` holds the interrupted thread's stack, and `registers` are its own.
unsafe fn walk(registers: Registers, low: usize, high: usize) -> usize {
    FRAMES[0].store(registers.pc, Ordering::Relaxed);
    let mut depth = 1;
    // Live frames are between the stack pointer and the top of the stack: mapped.
    let floor = low.max(registers.sp);
    let Some(ceiling) = high.checked_sub(2 * WORD) else {
        return depth;
    };
    let mut fp = registers.fp;
    let mut first = true;
    while depth < MAX_FRAMES && fp >= floor && fp <= ceiling && fp.is_multiple_of(WORD) {
        // SAFETY: `fp .. fp + 2 words` lies within the thread's live stack (checked
        // above), which stays mapped while the thread runs this handler.
        let (next, ret) = unsafe {
            (
                std::ptr::read_volatile(fp as *const usize),
                std::ptr::read_volatile((fp + WORD) as *const usize),
            )
        };
        if first {
            first = false;
            // A leaf function (or one interrupted before it saved its frame record)
            // has its caller's return address only in the link register.
            if let Some(lr) = registers.lr.filter(|&lr| lr != 0 && lr != ret) {
                FRAMES[depth].store(lr, Ordering::Relaxed);
                depth += 1;
                if depth == MAX_FRAMES {
                    break;
                }
            }
        }
        if ret == 0 {
            break;
        }
        FRAMES[depth].store(ret, Ordering::Relaxed);
        depth += 1;
        // The stack grows down: each caller's record is above its callee's.
        if next <= fp {
            break;
        }
        fp = next;
    }
    depth
}

/// Captures the stack of `thread` (from [`current_thread`]), whose stack is `stack`
/// (from [`current_stack`]), and renders it.
///
/// Returns `None` if the thread did not answer within 200 ms, or if the handler of an
/// earlier, abandoned capture is still writing its frames.
pub(super) fn capture(thread: u64, stack: (usize, usize)) -> Option<String> {
    // Only the monitor thread calls this. A handler moves `STATE` only from
    // `REQUESTED`, which no capture leaves behind (it withdraws a request it gives up),
    // so nothing changes it between this check and the request below.
    if STATE.load(Ordering::Acquire) & PHASE == WRITING {
        return None;
    }
    let generation = (GENERATION.fetch_add(1, Ordering::Relaxed) + 1) << 2;
    TARGET.store(thread, Ordering::Relaxed);
    STACK_LOW.store(stack.0, Ordering::Relaxed);
    STACK_HIGH.store(stack.1, Ordering::Relaxed);
    STATE.store(generation | REQUESTED, Ordering::Release);
    // SAFETY: `thread` was recorded by a live worker (see module docs).
    let rc = unsafe { libc::pthread_kill(thread as libc::pthread_t, signal_number()) };
    let deadline = Instant::now() + Duration::from_millis(if rc == 0 { 200 } else { 0 });
    while STATE.load(Ordering::Acquire) != generation | DONE {
        if Instant::now() > deadline {
            // Withdraw the request unless a handler already took it; a handler still
            // writing keeps the buffer until it is done (see the check above).
            let _ = STATE.compare_exchange(
                generation | REQUESTED,
                IDLE,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
            return None;
        }
        #[allow(
            clippy::disallowed_methods,
            reason = "the monitor thread is not a worker loop"
        )]
        std::thread::sleep(Duration::from_millis(1));
    }
    let depth = DEPTH.load(Ordering::Relaxed);
    let ips: Vec<usize> = FRAMES[..depth.min(MAX_FRAMES)]
        .iter()
        .map(|ip| ip.load(Ordering::Relaxed))
        .collect();
    Some(render(&ips))
}

/// One line per frame, resolved here, off the signal handler: the innermost is the
/// program counter; the others are return addresses, resolved one byte back so that
/// each names the call, not the instruction after it.
fn render(ips: &[usize]) -> String {
    let mut out = String::new();
    for (n, &ip) in ips.iter().enumerate() {
        let address = if n == 0 { ip } else { ip.saturating_sub(1) };
        let mut line = String::new();
        backtrace::resolve(address as *mut c_void, |symbol| {
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
        let _ = writeln!(out, "  {n:>2}: {line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The walks write the one frame buffer: one test at a time.
    static WALKS: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn frames(depth: usize) -> Vec<usize> {
        FRAMES[..depth]
            .iter()
            .map(|f| f.load(Ordering::Relaxed))
            .collect()
    }

    /// A made-up stack of 16 words, written and read through one raw pointer only.
    struct FakeStack {
        words: Box<[usize; 16]>,
    }

    impl FakeStack {
        fn new() -> (Self, *mut usize) {
            let mut stack = FakeStack {
                words: Box::new([0; 16]),
            };
            let base = stack.words.as_mut_ptr();
            (stack, base)
        }
    }

    fn set(base: *mut usize, word: usize, value: usize) {
        assert!(word < 16);
        // SAFETY: `base` points to a live `FakeStack` of 16 words.
        unsafe { base.add(word).write(value) }
    }

    fn at(base: *mut usize, word: usize) -> usize {
        base as usize + word * WORD
    }

    /// Walks the fake stack at `base` from `fp`, with `sp` at `sp_word`, the stack's
    /// top at `top_word` and the link register `lr`.
    fn walk_fake(
        base: *mut usize,
        fp: usize,
        sp_word: usize,
        top_word: usize,
        lr: Option<usize>,
    ) -> Vec<usize> {
        let registers = Registers {
            pc: 0xaaaa,
            fp,
            sp: at(base, sp_word),
            lr,
        };
        // SAFETY: the bounds are those of the fake stack, alive for the call.
        frames(unsafe { walk(registers, base as usize, at(base, top_word)) })
    }

    #[test]
    fn the_walk_follows_frame_records_within_the_stack_and_stops_at_a_bad_one() {
        let _one = WALKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (_stack, base) = FakeStack::new();
        // Frame records at words 2, 6 and 10: the caller's frame, the return address.
        set(base, 2, at(base, 6));
        set(base, 3, 0x1111);
        set(base, 6, at(base, 10));
        set(base, 7, 0x2222);
        set(base, 10, 0);
        set(base, 11, 0x3333);
        let fp = at(base, 2);
        let walk = |fp, sp_word, top_word| walk_fake(base, fp, sp_word, top_word, None);
        assert_eq!(walk(fp, 0, 16), [0xaaaa, 0x1111, 0x2222, 0x3333]);
        // A record that points back down (a loop, a corrupt chain) ends the walk.
        set(base, 6, at(base, 2));
        assert_eq!(walk(fp, 0, 16), [0xaaaa, 0x1111, 0x2222]);
        set(base, 6, at(base, 10));
        // Nothing below the stack pointer, past the stack's top, or misaligned is read.
        assert_eq!(walk(fp, 4, 16), [0xaaaa]);
        assert_eq!(walk(fp, 0, 7), [0xaaaa, 0x1111]);
        assert_eq!(walk(fp + 1, 0, 16), [0xaaaa]);
        assert_eq!(walk(0, 0, 16), [0xaaaa]);
        // A zero return address ends it too.
        set(base, 7, 0);
        assert_eq!(walk(fp, 0, 16), [0xaaaa, 0x1111]);
    }

    #[test]
    fn a_link_register_other_than_the_first_return_address_is_a_frame() {
        let _one = WALKS
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (_stack, base) = FakeStack::new();
        set(base, 2, 0);
        set(base, 3, 0x1111);
        let fp = at(base, 2);
        assert_eq!(
            walk_fake(base, fp, 0, 16, Some(0x4444)),
            [0xaaaa, 0x4444, 0x1111]
        );
        assert_eq!(walk_fake(base, fp, 0, 16, Some(0x1111)), [0xaaaa, 0x1111]);
    }

    #[test]
    fn the_calling_thread_knows_its_stack() {
        let (low, high) = current_stack();
        let here = &low as *const usize as usize;
        assert!(low < here && here < high, "{low:#x} {here:#x} {high:#x}");
    }
}
