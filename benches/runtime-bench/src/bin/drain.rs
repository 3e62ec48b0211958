//! The drain's in-flight count under workers counting at once.
//!
//! ```sh
//! cd benches && cargo run --release -p runtime-bench --bin drain
//! ```
//!
//! Every request a worker serves takes an `InFlightGuard` and drops it. Two workers do
//! that as fast as they can, side by side, for `GUARDS` guards each; the figure is the
//! wall time per guard. Two ways of counting, interleaved round by round:
//! - `one counter`: one process-wide atomic and one `Arc` shared by every guard (how
//!   `Drain` counted before it was sharded), reproduced here as the baseline;
//! - `Drain` (per-worker shards): `nucleon_runtime::Drain::guard` on a worker.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, mpsc};
use std::time::{Duration, Instant};

use nucleon_runtime::{Drain, Runtime};
use tokio::sync::Notify;

const GUARDS: u64 = 5_000_000;
const WORKERS: usize = 2;
const ROUNDS: usize = 7;

/// The baseline: every guard shares one counter and one `Arc`.
struct OneCounter {
    in_flight: AtomicUsize,
    idle: Notify,
}

struct OneCounterGuard(Arc<OneCounter>);

impl OneCounterGuard {
    fn new(counter: &Arc<OneCounter>) -> Self {
        counter.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(counter))
    }
}

impl Drop for OneCounterGuard {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

#[derive(Clone, Copy)]
enum Mode {
    OneCounter,
    Sharded,
}

/// Runs `WORKERS` workers taking and dropping `GUARDS` guards each, all starting at
/// once; returns the slowest worker's time.
fn run(mode: Mode) -> Duration {
    let (tx, rx) = mpsc::channel();
    let start = Arc::new(Barrier::new(WORKERS));
    let counter = Arc::new(OneCounter {
        in_flight: AtomicUsize::new(0),
        idle: Notify::new(),
    });
    let runtime = Runtime::builder()
        .workers(WORKERS)
        .handle_signals(false)
        .per_worker(move |worker| {
            let tx = tx.clone();
            let start = Arc::clone(&start);
            let counter = Arc::clone(&counter);
            let drain: Drain = worker.drain().clone();
            worker.spawn("guards", async move {
                // Blocking on purpose, once, before measuring: both workers start together.
                start.wait();
                let began = Instant::now();
                for _ in 0..GUARDS {
                    match mode {
                        Mode::OneCounter => {
                            drop(std::hint::black_box(OneCounterGuard::new(&counter)))
                        }
                        Mode::Sharded => drop(std::hint::black_box(drain.guard())),
                    }
                }
                tx.send(began.elapsed()).expect("the bench waits");
            });
            Ok(())
        })
        .build()
        .expect("valid runtime settings");
    let handle = runtime.handle();
    let collector = std::thread::spawn(move || {
        let slowest = (0..WORKERS)
            .map(|_| rx.recv().expect("a time per worker"))
            .max()
            .unwrap_or_default();
        handle.shutdown();
        slowest
    });
    runtime.run().expect("the runtime runs and drains");
    collector.join().expect("the collector does not panic")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let mut one = Vec::new();
    let mut sharded = Vec::new();
    for _ in 0..ROUNDS {
        one.push(run(Mode::OneCounter));
        sharded.push(run(Mode::Sharded));
    }
    let per_guard = |d: Duration| d.as_nanos() as f64 / GUARDS as f64;
    let (one, sharded) = (per_guard(median(one)), per_guard(median(sharded)));
    println!("median of {ROUNDS} interleaved rounds; {WORKERS} workers, {GUARDS} guards each\n");
    println!("| counting | ns per guard (take + drop) | ×one counter |");
    println!("|---|---:|---:|");
    println!("| one counter (before) | {one:.1} | 1.00× |");
    println!(
        "| `Drain`, per-worker shards | {sharded:.1} | {:.2}× |",
        sharded / one
    );
}
