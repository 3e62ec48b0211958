//! A service process for the signal tests: it reports its lifecycle on stdout.
//!
//! Usage: `signal-child <work-ms-after-drain> <shutdown-timeout-ms>`. Each worker holds
//! one unit of in-flight work that, once the drain starts, takes `work-ms` to finish.
#![allow(clippy::print_stdout, reason = "the test reads this process's stdout")]

use std::process::ExitCode;
use std::time::Duration;

use nucleon_runtime::Runtime;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mut next_ms = || {
        Duration::from_millis(
            args.next()
                .and_then(|a| a.parse().ok())
                .expect("usage: signal-child <work-ms> <shutdown-timeout-ms>"),
        )
    };
    let work = next_ms();
    let shutdown_timeout = next_ms();
    let runtime = Runtime::builder()
        .workers(2)
        .shutdown_timeout(shutdown_timeout)
        .per_worker(move |worker| {
            let drain = worker.drain().clone();
            let id = worker.id();
            worker.spawn("in-flight", async move {
                let _guard = drain.guard();
                drain.draining().await;
                println!("worker {id} draining");
                tokio::time::sleep(work).await;
                println!("worker {id} finished its work");
            });
            Ok(())
        })
        .on_start(|| async {
            println!("ready");
            Ok(())
        })
        .on_stop(|| async {
            println!("stopped");
            Ok(())
        })
        .build()
        .expect("valid settings");
    match runtime.run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            println!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
