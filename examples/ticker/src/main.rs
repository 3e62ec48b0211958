//! A back-end service without HTTP: the seed's recipe for work that must not share a
//! loop with requests. Each worker runs a task that ticks every `ticker.every`; a
//! per-process adapter (a stand-in for a broker connection) counts the ticks of all
//! workers, and says how many it saw when it stops.
//!
//! ```sh
//! cargo run -q -p ticker -- -j 2      # ticks on two workers; Ctrl-C drains and exits 0
//! cargo run -q -p ticker -- check     # validates the configuration
//! ```

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nucleon::App;
use nucleon::runtime::{Adapter, AdapterContext, BoxError, handle};

/// The handle every worker gets: the process's tick count.
#[derive(Clone, Default)]
struct Ticks(Arc<AtomicU64>);

/// One per process: counts ticks, reports them at the end.
#[derive(Default)]
struct TickCounter(Ticks);

impl Adapter for TickCounter {
    type Handle = Ticks;

    fn name(&self) -> &str {
        "tick-counter"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<Ticks, BoxError> {
        Ok(self.0.clone())
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        let total = self.0.0.load(Ordering::Relaxed);
        tracing::info!(target: "ticker", total, "{total} tick(s) in all");
        Ok(())
    }
}

fn app() -> App {
    App::new("ticker")
        .default_config("[default.ticker]\nevery = 200\n")
        .config_table("ticker")
        .adapter(TickCounter::default())
        .per_worker(|worker| {
            let every: u64 = worker.config().extract_at("ticker.every").unwrap_or(200);
            let id = worker.id();
            let drain = worker.drain().clone();
            worker.spawn("tick", async move {
                let ticks = handle::get::<Ticks>().expect("the tick counter is per process");
                let mut interval = tokio::time::interval(Duration::from_millis(every));
                loop {
                    tokio::select! {
                        () = drain.draining() => break,
                        _ = interval.tick() => {}
                    }
                    let n = ticks.0.fetch_add(1, Ordering::Relaxed) + 1;
                    tracing::info!(target: "ticker", worker = id, "tick {n} on worker {id}");
                }
            });
            Ok(())
        })
}

fn main() -> ExitCode {
    nucleon::run(app())
}
