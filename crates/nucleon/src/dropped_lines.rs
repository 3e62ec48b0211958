//! Saying that the log lost lines. The log writer never makes a worker wait: when its
//! output (stdout) does not keep up and its queue is full, it drops the line. This
//! module counts those drops and says how many on stderr, every few seconds while they
//! happen and once more at the end, so a gap in the log is never silent.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::log::Second;
use crate::log_writer::Dropped;

/// How often the watcher looks at the count.
const EVERY: Duration = Duration::from_secs(10);

/// The log writer's count of dropped lines, and how much of it has been reported.
pub(crate) struct DroppedLines {
    counter: Dropped,
    reported: usize,
}

impl DroppedLines {
    pub(crate) fn new(counter: Dropped) -> Self {
        Self {
            counter,
            reported: 0,
        }
    }

    /// Writes one line to `out` if lines were dropped since the last report; returns
    /// how many were.
    pub(crate) fn report(&mut self, out: &mut dyn Write) -> usize {
        let total = self.counter.dropped_lines();
        let new = total.saturating_sub(self.reported);
        if new > 0 {
            self.reported = total;
            let mut line = String::with_capacity(200);
            let mut now = Second::NONE;
            now.write_now(&mut line);
            line.push_str(&format!(
                "  WARN nucleon::log: {new} log line(s) dropped ({total} since start): the log's \
                 output did not keep up, and the log never makes a worker wait for it \
                 (a faster output or a stricter NUCLEON_LOG keeps them)\n"
            ));
            let _ = out.write_all(line.as_bytes());
        }
        new
    }
}

/// A thread that reports dropped log lines on stderr every 10 seconds, and once more
/// when the watch is dropped.
pub(crate) struct DropWatch {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DropWatch {
    /// Starts watching; without a thread (the system refused one), nothing is reported.
    pub(crate) fn start(counter: Dropped) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let mut dropped = DroppedLines::new(counter);
        let thread = std::thread::Builder::new()
            .name("nucleon-log-drops".into())
            .spawn(move || {
                loop {
                    let last = stopped.load(Ordering::Acquire);
                    dropped.report(&mut std::io::stderr().lock());
                    if last {
                        break;
                    }
                    std::thread::park_timeout(EVERY);
                }
            })
            .ok();
        Self { stop, thread }
    }
}

impl Drop for DropWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::log_writer::{CAP, log_writer};

    /// An output that waits while the test holds its gate: a stalled stdout.
    struct Stalled(Arc<Mutex<()>>);

    impl Write for Stalled {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _open = self.0.lock().unwrap_or_else(|e| e.into_inner());
            Ok(bytes.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Lines the writer could not keep are counted, reported once, with the count.
    #[test]
    fn dropped_lines_are_reported_once_with_their_count() {
        let gate = Arc::new(Mutex::new(()));
        let closed = gate.lock().unwrap();
        let (writer, guard) = log_writer(Stalled(Arc::clone(&gate)));
        let mut dropped = DroppedLines::new(writer.dropped());
        let mut out = Vec::new();
        assert_eq!(dropped.report(&mut out), 0, "nothing dropped yet");
        assert!(out.is_empty());

        let mut line = vec![b'x'; 1023];
        line.push(b'\n');
        for _ in 0..(3 * CAP / line.len()) {
            writer.make_writer().write_all(&line).unwrap();
        }
        let total = writer.dropped().dropped_lines();
        assert!(total >= CAP / line.len(), "{total} dropped");
        assert_eq!(dropped.report(&mut out), total);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains(&format!(
                " WARN nucleon::log: {total} log line(s) dropped ({total} since start)"
            )),
            "{text}"
        );
        assert_eq!(text.lines().count(), 1, "{text}");

        let mut again = Vec::new();
        assert_eq!(dropped.report(&mut again), 0, "already reported");
        assert!(again.is_empty());
        drop(closed);
        drop(guard);
    }
}
