//! The log's writer: a thread that logs appends its line to a ring of its own (a
//! single-producer, single-consumer ring: the logging thread writes, the writer thread
//! reads); the writer thread takes what every ring holds each `EVERY` and writes it out
//! in large writes. A worker never waits for the output, never takes a lock per line,
//! and never wakes the writer thread per line (a wake-up per line costs more than the
//! line: a system call, and, on a busy core, a context switch). A ring that is full
//! drops lines, counted, until the writer takes what it holds.
//!
//! What a line costs a worker under load is mostly memory: its stores go to a part of
//! the ring not in the cache, and the next atomic operation of the worker (a lock's
//! release, a reference count) waits for them. Measured with `benches/http-bench`
//! (`/json`, one worker, perf's samples), the wait was about 200 ns a line, with a
//! lock per line or without; a ring small enough to stay in the cache (`CAP`) and the
//! next line's place fetched into the cache as a line is written (`PREFETCH`) each took
//! one to three per cent of a request's CPU time off.
//!
//! Lines of one thread keep their order; lines of different threads are written in
//! batches, so two threads' lines may interleave out of time order by up to `EVERY`
//! (each line has its time).

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How often the writer thread takes the rings' lines.
const EVERY: Duration = Duration::from_millis(10);
/// A ring holding this much wakes the writer thread early (one wake-up per so many
/// bytes).
const WAKE_AT: usize = 128 * 1024;
/// Each logging thread's ring: lines past it are dropped until the writer takes them.
/// Under a load of 100,000 requests a second, a worker's access lines fill 180 KiB in
/// one `EVERY` (the writer is woken at `WAKE_AT` before that); small enough to stay in
/// the core's cache (a 1 MiB ring cost about 3 % more CPU per request, measured).
pub(crate) const CAP: usize = 256 * 1024;

/// What the loggers and the writer thread share.
struct Shared {
    /// The read ends of the threads' rings (a thread registers its ring at its first
    /// line).
    rings: Mutex<Vec<rtrb::Consumer<u8>>>,
    dropped: AtomicUsize,
    stop: AtomicBool,
    writer: Mutex<Option<std::thread::Thread>>,
}

thread_local! {
    /// This thread's ring (its write end), by the writer it belongs to (a process has
    /// one writer; tests make several).
    static MINE: std::cell::RefCell<Vec<(usize, rtrb::Producer<u8>)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// The log's writer (a `MakeWriter` for tracing-subscriber); cheap to clone.
#[derive(Clone)]
pub(crate) struct LogWriter {
    shared: Arc<Shared>,
}

/// Stops the writer thread when dropped, after it wrote every line given so far.
pub(crate) struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// The count of lines dropped since the start.
#[derive(Clone)]
pub(crate) struct Dropped(Arc<Shared>);

impl Dropped {
    /// Lines dropped since the start.
    pub(crate) fn dropped_lines(&self) -> usize {
        self.0.dropped.load(Ordering::Relaxed)
    }
}

/// A writer to `output`, and the guard of its thread.
pub(crate) fn log_writer(output: impl Write + Send + 'static) -> (LogWriter, WriterGuard) {
    let shared = Arc::new(Shared {
        rings: Mutex::new(Vec::new()),
        dropped: AtomicUsize::new(0),
        stop: AtomicBool::new(false),
        writer: Mutex::new(None),
    });
    let thread = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("nucleon-log".into())
            .spawn(move || write_out(&shared, output))
            .ok()
    };
    if let Some(thread) = &thread {
        *lock(&shared.writer) = Some(thread.thread().clone());
    }
    (
        LogWriter {
            shared: Arc::clone(&shared),
        },
        WriterGuard { shared, thread },
    )
}

impl LogWriter {
    /// The count of dropped lines.
    pub(crate) fn dropped(&self) -> Dropped {
        Dropped(Arc::clone(&self.shared))
    }

    /// Appends `bytes` (whole lines) to this thread's ring, or counts a drop.
    fn append(&self, bytes: &[u8]) {
        let key = Arc::as_ptr(&self.shared) as usize;
        MINE.with(|mine| {
            let Ok(mut mine) = mine.try_borrow_mut() else {
                return;
            };
            let index = match mine.iter().position(|(k, _)| *k == key) {
                Some(index) => index,
                None => {
                    let (producer, consumer) = rtrb::RingBuffer::new(CAP);
                    lock(&self.shared.rings).push(consumer);
                    mine.push((key, producer));
                    mine.len() - 1
                }
            };
            let ring = &mut mine[index].1;
            let free = ring.slots();
            if ring.push_entire_slice(bytes).is_err() {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            // The next line's place, fetched into the cache now: its stores then do not
            // wait for it, nor does the next atomic operation wait for them.
            if let Ok(mut next) =
                ring.write_chunk_uninit(PREFETCH.min(free.saturating_sub(bytes.len())))
            {
                let (first, _) = next.as_mut_slices();
                for line in first.chunks(64) {
                    prefetch(line.as_ptr().cast());
                }
            }
            let held = CAP - free + bytes.len();
            if held >= WAKE_AT
                && held - bytes.len() < WAKE_AT
                && let Some(writer) = &*lock(&self.shared.writer)
            {
                writer.unpark();
            }
        });
    }
}

impl<'a> MakeWriter<'a> for LogWriter {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter(self)
    }
}

/// A writer for one event's line(s).
pub(crate) struct LineWriter<'a>(&'a LogWriter);

impl Write for LineWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.append(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The writer thread: takes what every ring holds each `EVERY` (or when woken), writes,
/// until stopped, then once more.
fn write_out(shared: &Shared, mut output: impl Write) {
    loop {
        let last = shared.stop.load(Ordering::Acquire);
        let mut rings = lock(&shared.rings);
        for ring in rings.iter_mut() {
            let Ok(chunk) = ring.read_chunk(ring.slots()) else {
                continue;
            };
            let (first, second) = chunk.as_slices();
            // A failed write (stdout closed) loses these lines: nothing else to do.
            let _ = output
                .write_all(first)
                .and_then(|()| output.write_all(second));
            chunk.commit_all();
        }
        // The rings of threads that ended go once empty (what they held is written:
        // their thread wrote its last line before it ended).
        rings.retain(|ring| !ring.is_abandoned() || !ring.is_empty());
        drop(rings);
        let _ = output.flush();
        if last {
            return;
        }
        std::thread::park_timeout(EVERY);
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

/// How much of a ring is fetched into the cache ahead of the next line: about a line.
const PREFETCH: usize = 192;

/// Asks the CPU to bring the cache line at `at` close (a hint: it never faults).
#[inline]
fn prefetch(at: *const i8) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `prefetcht0` only hints the cache; it never faults, whatever the address,
    // and SSE, which it needs, is part of every x86_64 CPU.
    #[allow(unsafe_code)]
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(at);
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = at;
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Output(Arc<Mutex<Vec<u8>>>);

    impl Write for Output {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            lock(&self.0).extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_of_every_thread_is_written_in_its_order() {
        let output = Output::default();
        let (writer, guard) = log_writer(output.clone());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let writer = writer.clone();
                std::thread::spawn(move || {
                    for i in 0..1000 {
                        writer
                            .make_writer()
                            .write_all(format!("{t} {i}\n").as_bytes())
                            .unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        // A line written after the threads ended, by this one: the guard writes it too.
        writer.make_writer().write_all(b"last\n").unwrap();
        drop(guard);
        let text = String::from_utf8(lock(&output.0).clone()).unwrap();
        assert_eq!(text.lines().count(), 4001);
        for t in 0..4 {
            let mine: Vec<usize> = text
                .lines()
                .filter_map(|line| line.split_once(' '))
                .filter(|(thread, _)| *thread == t.to_string())
                .map(|(_, i)| i.parse().unwrap())
                .collect();
            assert_eq!(mine, (0..1000).collect::<Vec<_>>(), "thread {t}'s order");
        }
        assert_eq!(writer.dropped().dropped_lines(), 0);
        assert_eq!(
            lock(&writer.shared.rings).len(),
            1,
            "the ended threads' rings are gone; this thread's is left"
        );
    }

    /// An output that waits while the test holds its gate: a stalled stdout.
    struct Stalled(Arc<Mutex<()>>);

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _open = lock(&self.0);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_ring_drops_lines_and_counts_them() {
        let gate = Arc::new(Mutex::new(()));
        let closed = lock(&gate);
        let (writer, guard) = log_writer(Stalled(Arc::clone(&gate)));
        let line = [b'x'; 1023];
        let mut line = line.to_vec();
        line.push(b'\n');
        // Past the cap of one ring, with the output stalled: some lines are dropped,
        // and the logger never waited.
        // (The writer takes the ring's lines once at most before it stalls in its write.)
        for _ in 0..(3 * CAP / line.len()) {
            writer.make_writer().write_all(&line).unwrap();
        }
        assert!(writer.dropped().dropped_lines() >= CAP / line.len() - 1);
        drop(closed);
        drop(guard);
    }
}
