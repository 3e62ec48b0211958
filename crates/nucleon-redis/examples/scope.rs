//! Per worker or per process? Measures the Redis adapter both ways on the same load:
//! each of 2 workers runs `C` tasks that `GET` one small key in a loop for a few
//! seconds; the figures are calls per second and the process's CPU time per call
//! (user + system, from `/proc/self/stat`), for `C` = 1 (latency-bound) and 32
//! (throughput-bound), alternating the two scopes over a few rounds.
//!
//! ```sh
//! CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
//!   cargo run --release -p nucleon-redis --example scope -- [redis://127.0.0.1:6379] [seconds] [rounds]
//! ```
//!
//! Redis runs on the same machine and takes CPU of its own, which is not counted.
//!
//! 2026-12-07, commit 13d76bb, 2-core AMD EPYC under KVM shared with other builds (load
//! average 5–6), Redis 7.0.15 on loopback, `-- redis://127.0.0.1:6379 4 3` (means of 3
//! runs, range in brackets):
//!
//! | tasks per worker | per worker | per process |
//! |---|---:|---:|
//! | 1: calls/s | 26,861 (21,683–33,990) | 18,920 (18,753–19,169) |
//! | 1: CPU per call | 21.0 µs (19.3–22.3) | 35.2 µs (33.0–37.6) |
//! | 32: calls/s | 345,925 (293,018–393,476) | 258,734 (239,176–271,187) |
//! | 32: CPU per call | 2.03 µs (1.90–2.18) | 2.76 µs (2.70–2.82) |
//!
//! Per process, every call crosses from its worker to the process loop (which owns the
//! socket) and back: two thread wake-ups more per call, which costs CPU and, with few
//! calls in flight, latency. Per worker the call stays on its loop, for one connection
//! per worker.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nucleon_redis::{Redis, RedisAdapter};
use nucleon_runtime::{Config, Runtime};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    PerWorker,
    PerProcess,
}

const WORKERS: usize = 2;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt()
        .with_env_filter("info,nucleon=warn")
        .init();
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "redis://127.0.0.1:6379".to_owned());
    let seconds: u64 = args.next().map_or(Ok(4), |s| s.parse())?;
    let rounds: usize = args.next().map_or(Ok(3), |s| s.parse())?;
    let mut results: Vec<(Scope, usize, f64, f64)> = Vec::new();
    for round in 0..rounds {
        for concurrency in [1, 32] {
            let order = if round % 2 == 0 {
                [Scope::PerWorker, Scope::PerProcess]
            } else {
                [Scope::PerProcess, Scope::PerWorker]
            };
            for scope in order {
                let (rate, cpu) = run(&url, scope, concurrency, Duration::from_secs(seconds))?;
                tracing::info!(
                    round,
                    ?scope,
                    concurrency,
                    "{rate:.0} calls/s, {cpu:.2} µs CPU per call"
                );
                results.push((scope, concurrency, rate, cpu));
            }
        }
    }
    for concurrency in [1, 32] {
        for scope in [Scope::PerWorker, Scope::PerProcess] {
            let mine: Vec<_> = results
                .iter()
                .filter(|r| r.0 == scope && r.1 == concurrency)
                .collect();
            let n = mine.len() as f64;
            let rate = mine.iter().map(|r| r.2).sum::<f64>() / n;
            let cpu = mine.iter().map(|r| r.3).sum::<f64>() / n;
            let spread = |f: fn(&&(Scope, usize, f64, f64)) -> f64, decimals: usize| {
                let lo = mine.iter().map(f).fold(f64::MAX, f64::min);
                let hi = mine.iter().map(f).fold(f64::MIN, f64::max);
                format!("{lo:.decimals$}–{hi:.decimals$}")
            };
            tracing::info!(
                ?scope,
                concurrency,
                "mean of {n} runs: {rate:.0} calls/s ({}), {cpu:.2} µs CPU per call ({})",
                spread(|r| r.2, 0),
                spread(|r| r.3, 2),
            );
        }
    }
    Ok(())
}

/// One run: the calls per second, and the CPU microseconds per call.
#[allow(
    clippy::disallowed_methods,
    reason = "the measuring thread, not a worker: it sleeps until the window and reads /proc"
)]
fn run(
    url: &str,
    scope: Scope,
    concurrency: usize,
    window: Duration,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let config = Config::from_toml(&format!("[default.redis]\nurl = \"{url}\"\n"), "default")?;
    let calls = Arc::new(AtomicU64::new(0));
    // Everything starts, then the window opens: only calls inside it count.
    let opens = Instant::now() + Duration::from_millis(1500);
    let closes = opens + window;
    let builder = Runtime::builder()
        .config(config)
        .workers(WORKERS)
        .handle_signals(false);
    let builder = match scope {
        Scope::PerProcess => builder.adapter(RedisAdapter::new()),
        Scope::PerWorker => builder,
    };
    let counter = Arc::clone(&calls);
    let runtime = builder
        .per_worker(move |worker| {
            if scope == Scope::PerWorker {
                worker.adapter(RedisAdapter::new());
            }
            for task in 0..concurrency {
                let counter = Arc::clone(&counter);
                worker.spawn("load", async move {
                    let redis = Redis::current().expect("a Redis handle");
                    let key = format!("nucleon-redis-scope:{task}");
                    redis.set(&key, "a small value").await.expect("SET");
                    tokio::time::sleep_until(opens.into()).await;
                    let mut mine = 0;
                    while Instant::now() < closes {
                        let _: Option<String> = redis.get(&key).await.expect("GET");
                        mine += 1;
                    }
                    counter.fetch_add(mine, Ordering::Relaxed);
                });
            }
            Ok(())
        })
        .build()?;
    let handle = runtime.handle();
    let thread = std::thread::spawn(move || runtime.run());
    std::thread::sleep(opens.saturating_duration_since(Instant::now()));
    let cpu_before = cpu_time()?;
    std::thread::sleep(closes.saturating_duration_since(Instant::now()));
    let cpu_after = cpu_time()?;
    // The tasks add their counts as they see the window close.
    std::thread::sleep(Duration::from_millis(300));
    handle.shutdown();
    thread.join().map_err(|_| "the runtime panicked")??;
    let total = calls.load(Ordering::Relaxed) as f64;
    let cpu = (cpu_after - cpu_before).as_secs_f64();
    Ok((total / window.as_secs_f64(), cpu * 1e6 / total))
}

/// The process's CPU time so far (user + system), from `/proc/self/stat` (in clock
/// ticks of 10 ms: a window of seconds makes that precise enough).
#[allow(
    clippy::disallowed_methods,
    reason = "the measuring thread reads /proc, not a worker"
)]
fn cpu_time() -> Result<Duration, Box<dyn std::error::Error>> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = stat.rsplit_once(')').ok_or("unreadable /proc/self/stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}
