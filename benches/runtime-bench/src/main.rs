//! The watchdog's overhead, measured side by side in one run.
//!
//! ```sh
//! cd benches && cargo run --release -p runtime-bench
//! ```
//!
//! Each measurement runs on one Nucleon worker (a `current_thread` runtime + `LocalSet`),
//! in three modes, interleaved round by round so machine drift hits all alike:
//! - `tokio`: plain `tokio::task::spawn_local` (the floor: no Nucleon wrapper at all);
//! - `off`: `nucleon_runtime::spawn` with the watchdog disabled (panic logging only);
//! - `on`: `nucleon_runtime::spawn` with the watchdog tracking every poll.
//!
//! Workloads: **polls** — two tasks playing ping-pong over a channel, 2,000,000 polls in
//! all, woken through the local run queue;
//! **spawns** — 200,000 short tasks, each spawned, polled twice and joined.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use nucleon_runtime::{Runtime, WatchdogConfig};

const POLLS: u64 = 2_000_000;
const SPAWNS: u64 = 200_000;
const ROUNDS: usize = 7;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Mode {
    Tokio,
    Off,
    On,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Tokio => "tokio spawn_local",
            Mode::Off => "nucleon spawn, watchdog off",
            Mode::On => "nucleon spawn, watchdog on",
        }
    }
}

fn spawn_in<F>(mode: Mode, label: &'static str, future: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + 'static,
    F::Output: 'static,
{
    match mode {
        Mode::Tokio => tokio::task::spawn_local(future),
        Mode::Off | Mode::On => nucleon_runtime::spawn(label, future),
    }
}

/// Runs `measure` on a fresh one-worker runtime in `mode`; returns what it measured.
fn on_worker(mode: Mode, measure: fn(Mode) -> std::pin::Pin<Box<dyn Future<Output = Duration>>>) -> Duration {
    let (tx, rx) = mpsc::channel();
    let runtime = Runtime::builder()
        .workers(1)
        .handle_signals(false)
        .watchdog(WatchdogConfig {
            enabled: mode == Mode::On,
            ..WatchdogConfig::default()
        })
        .per_worker(move |worker| {
            let tx = tx.clone();
            let drain = worker.drain().clone();
            // Every real service has timers running (timeouts, the heartbeat): one here
            // in every mode, so the modes differ only in the watchdog's tracking.
            worker.spawn("timer", async {
                let mut tick = tokio::time::interval(Duration::from_millis(50));
                loop {
                    tick.tick().await;
                }
            });
            worker.spawn("bench-driver", async move {
                let elapsed = measure(mode).await;
                tx.send(elapsed).expect("the bench waits for its result");
                drain.start();
            });
            Ok(())
        })
        .build()
        .expect("valid runtime settings");
    runtime.run().expect("the runtime runs and drains");
    rx.recv().expect("a measurement")
}

fn polls(mode: Mode) -> std::pin::Pin<Box<dyn Future<Output = Duration>>> {
    Box::pin(async move {
        // Ping-pong between two tasks: every message is one poll of each, woken through
        // the worker's local run queue (no IO driver in between), so per-poll costs show.
        let (ping_tx, mut ping_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let (pong_tx, mut pong_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        let ponger = spawn_in(mode, "ponger", async move {
            while let Some(n) = ping_rx.recv().await {
                if pong_tx.send(n).is_err() {
                    break;
                }
            }
        });
        let pinger = spawn_in(mode, "pinger", async move {
            let start = Instant::now();
            for n in 0..POLLS / 2 {
                ping_tx.send(n).expect("the ponger runs");
                pong_rx.recv().await.expect("the ponger answers");
            }
            start.elapsed()
        });
        let elapsed = pinger.await.expect("the pinger does not panic");
        ponger.await.expect("the ponger does not panic");
        elapsed
    })
}

fn spawns(mode: Mode) -> std::pin::Pin<Box<dyn Future<Output = Duration>>> {
    Box::pin(async move {
        let start = Instant::now();
        let mut batch = Vec::with_capacity(1000);
        for n in 0..SPAWNS {
            batch.push(spawn_in(mode, "short", async move {
                tokio::task::yield_now().await;
                n
            }));
            if batch.len() == 1000 {
                for task in batch.drain(..) {
                    task.await.expect("short tasks do not panic");
                }
            }
        }
        for task in batch.drain(..) {
            task.await.expect("short tasks do not panic");
        }
        start.elapsed()
    })
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

fn main() {
    let modes = [Mode::Tokio, Mode::Off, Mode::On];
    let mut poll_samples = vec![Vec::new(); modes.len()];
    let mut spawn_samples = vec![Vec::new(); modes.len()];
    for _ in 0..ROUNDS {
        for (i, &mode) in modes.iter().enumerate() {
            poll_samples[i].push(on_worker(mode, polls));
            spawn_samples[i].push(on_worker(mode, spawns));
        }
    }
    let poll_ns: Vec<f64> = poll_samples
        .into_iter()
        .map(|s| median(s).as_nanos() as f64 / POLLS as f64)
        .collect();
    let spawn_rate: Vec<f64> = spawn_samples
        .into_iter()
        .map(|s| SPAWNS as f64 / median(s).as_secs_f64())
        .collect();
    let mut out = String::new();
    out.push_str(&format!(
        "median of {ROUNDS} interleaved rounds; polls: {POLLS} ping-pong polls; spawns: {SPAWNS} tasks\n\n"
    ));
    out.push_str("| mode | ns per poll | vs tokio | vs watchdog off | spawned tasks/s | vs tokio | vs watchdog off |\n");
    out.push_str("|---|---:|---:|---:|---:|---:|---:|\n");
    for (i, mode) in modes.iter().enumerate() {
        out.push_str(&format!(
            "| {} | {:.1} | {:.2}x | {:.2}x | {:.0} | {:.2}x | {:.2}x |\n",
            mode.name(),
            poll_ns[i],
            poll_ns[i] / poll_ns[0],
            poll_ns[i] / poll_ns[1],
            spawn_rate[i],
            spawn_rate[i] / spawn_rate[0],
            spawn_rate[i] / spawn_rate[1],
        ));
    }
    out.push_str(&format!(
        "\nwatchdog tracking cost: {:.1} ns per poll\n",
        poll_ns[2] - poll_ns[1]
    ));
    print!("{out}");
}
