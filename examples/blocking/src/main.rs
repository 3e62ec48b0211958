//! The watchdog at work: a task that blocks its worker's loop is named while it blocks;
//! the same work offloaded produces no report.
//!
//! ```sh
//! cargo run --release -p blocking
//! ```
//!
//! One worker runs two tasks: `ticker`, which wakes every 10 ms (a stand-in for every
//! other request on that worker), and `sleepy`, which first calls `std::thread::sleep`
//! for 300 ms *on the loop* — the mistake — then does the same through
//! `offload::blocking`, the fix. The watchdog (threshold 50 ms) reports `sleepy` while it
//! sleeps, then its total; the offloaded sleep is silent, and `ticker` keeps ticking
//! through it. Then the example drains and exits by itself.

use std::cell::Cell;
use std::process::ExitCode;
use std::rc::Rc;
use std::time::{Duration, Instant};

use nucleon_runtime::{Runtime, WatchdogConfig, offload, spawn};

const NAP: Duration = Duration::from_millis(300);

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let runtime = Runtime::builder()
        .workers(1)
        .watchdog(WatchdogConfig {
            threshold: Duration::from_millis(50),
            ..WatchdogConfig::default()
        })
        .per_worker(|worker| {
            let drain = worker.drain().clone();
            // !Send state shared by the two tasks of this worker: no lock needed.
            let ticks = Rc::new(Cell::new(0_u32));
            let counter = Rc::clone(&ticks);
            worker.spawn("ticker", async move {
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    counter.set(counter.get() + 1);
                }
            });
            worker.spawn("main", async move {
                let before = ticks.get();
                let started = Instant::now();
                spawn("sleepy", async {
                    tracing::info!("sleepy: std::thread::sleep({NAP:?}) on the worker loop");
                    #[allow(
                        clippy::disallowed_methods,
                        reason = "deliberately blocking the loop to show the watchdog"
                    )]
                    std::thread::sleep(NAP);
                })
                .await
                .expect("sleepy does not panic");
                tracing::info!(
                    "ticker ticked {} times in {:?} while sleepy blocked the loop",
                    ticks.get() - before,
                    started.elapsed()
                );

                let before = ticks.get();
                let started = Instant::now();
                spawn("sleepy-offloaded", async {
                    tracing::info!("sleepy: the same sleep through offload::blocking");
                    #[allow(
                        clippy::disallowed_methods,
                        reason = "runs on an offload thread, not the loop"
                    )]
                    offload::blocking(|| std::thread::sleep(NAP))
                        .await
                        .expect("the blocking pool has room");
                })
                .await
                .expect("sleepy-offloaded does not panic");
                tracing::info!(
                    "ticker ticked {} times in {:?} while the sleep was offloaded",
                    ticks.get() - before,
                    started.elapsed()
                );
                drain.start();
            });
            Ok(())
        })
        .build();
    let runtime = match runtime {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!("{error}");
            return ExitCode::from(error.exit_code());
        }
    };
    let handle = runtime.handle();
    if let Err(error) = runtime.run() {
        return ExitCode::from(error.exit_code());
    }
    let stats = handle.watchdog().stats();
    tracing::info!(
        "watchdog: {} live report(s), {} slow poll(s), {} stall(s)",
        stats.blocking_reports,
        stats.slow_polls,
        stats.stalls
    );
    ExitCode::SUCCESS
}
