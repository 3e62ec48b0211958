//! The log's writer: a thread that logs appends its line to a buffer of its own (a
//! lock nobody else holds but for a moment every few milliseconds); the writer thread
//! takes every buffer each `EVERY` and writes them out in large writes. A worker never
//! waits for the output, and never wakes the writer thread per line (a wake-up per line
//! costs more than the line: a system call, and, on a busy core, a context switch).
//! A buffer that reaches its cap drops lines, counted, until the writer takes it.
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

/// How often the writer thread takes the buffers.
const EVERY: Duration = Duration::from_millis(10);
/// A buffer past this wakes the writer thread early (one wake-up per so many bytes).
const WAKE_AT: usize = 256 * 1024;
/// A buffer past this drops lines until it is taken.
pub(crate) const CAP: usize = 4 * 1024 * 1024;

/// One thread's lines waiting to be written.
type Buffer = Arc<Mutex<Vec<u8>>>;

/// What the loggers and the writer thread share.
struct Shared {
    buffers: Mutex<Vec<Buffer>>,
    dropped: AtomicUsize,
    stop: AtomicBool,
    writer: Mutex<Option<std::thread::Thread>>,
}

thread_local! {
    /// This thread's buffer, by the writer it belongs to (a process has one writer;
    /// tests make several).
    static MINE: std::cell::RefCell<Vec<(usize, Buffer)>> =
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
        buffers: Mutex::new(Vec::new()),
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

    /// Appends `bytes` (whole lines) to this thread's buffer, or counts a drop.
    fn append(&self, bytes: &[u8]) {
        let key = Arc::as_ptr(&self.shared) as usize;
        MINE.with(|mine| {
            let mut mine = mine.borrow_mut();
            let buffer = match mine.iter().find(|(k, _)| *k == key) {
                Some((_, buffer)) => Arc::clone(buffer),
                None => {
                    let buffer = Arc::new(Mutex::new(Vec::with_capacity(16 * 1024)));
                    lock(&self.shared.buffers).push(Arc::clone(&buffer));
                    mine.push((key, Arc::clone(&buffer)));
                    buffer
                }
            };
            drop(mine);
            let mut lines = lock(&buffer);
            if lines.len() + bytes.len() > CAP {
                self.shared.dropped.fetch_add(1, Ordering::Relaxed);
                return;
            }
            let before = lines.len();
            lines.extend_from_slice(bytes);
            let crossed = before < WAKE_AT && lines.len() >= WAKE_AT;
            drop(lines);
            if crossed && let Some(writer) = &*lock(&self.shared.writer) {
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

/// The writer thread: takes every buffer each `EVERY` (or when woken), writes, until
/// stopped, then once more.
fn write_out(shared: &Shared, mut output: impl Write) {
    let mut batch: Vec<u8> = Vec::with_capacity(64 * 1024);
    loop {
        let last = shared.stop.load(Ordering::Acquire);
        let buffers: Vec<Buffer> = lock(&shared.buffers).clone();
        for buffer in &buffers {
            std::mem::swap(&mut *lock(buffer), &mut batch);
            if !batch.is_empty() {
                // A failed write (stdout closed) loses this batch: nothing else to do.
                let _ = output.write_all(&batch);
                batch.clear();
            }
        }
        let _ = output.flush();
        // Buffers of threads that ended (only the list and `buffers` hold them now) go
        // once empty.
        lock(&shared.buffers)
            .retain(|buffer| Arc::strong_count(buffer) > 2 || !lock(buffer).is_empty());
        drop(buffers);
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
            lock(&writer.shared.buffers).len(),
            1,
            "the ended threads' buffers are gone; this thread's is left"
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
    fn a_full_buffer_drops_lines_and_counts_them() {
        let gate = Arc::new(Mutex::new(()));
        let closed = lock(&gate);
        let (writer, guard) = log_writer(Stalled(Arc::clone(&gate)));
        let line = [b'x'; 1023];
        let mut line = line.to_vec();
        line.push(b'\n');
        // Past the cap of one buffer, with the output stalled: some lines are dropped,
        // and the logger never waited.
        // (The writer takes the buffer once at most before it stalls in its write.)
        for _ in 0..(3 * CAP / line.len()) {
            writer.make_writer().write_all(&line).unwrap();
        }
        assert!(writer.dropped().dropped_lines() >= CAP / line.len() - 1);
        drop(closed);
        drop(guard);
    }
}
