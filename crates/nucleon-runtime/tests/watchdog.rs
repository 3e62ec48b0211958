//! The watchdog names blocking code while it blocks, and stays quiet for offloaded work.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nucleon_runtime::watchdog::ReportKind;
use nucleon_runtime::{Phase, Runtime, WatchdogConfig, WatchdogReport, offload};

const NAP: Duration = Duration::from_millis(300);

/// A report, and whether the blocking work had already finished when it was made.
type Seen = Arc<Mutex<Vec<(WatchdogReport, bool)>>>;

/// Runs one worker with `work` spawned under `label`, until `work` ends; returns every
/// report and whether the work had finished at the time of each.
fn run_watched(
    config: WatchdogConfig,
    label: &'static str,
    untracked: bool,
    work: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
) -> (Vec<(WatchdogReport, bool)>, nucleon_runtime::WatchdogStats) {
    run_watched_with(config, label, untracked, work, false)
}

/// As [`run_watched`]; with `panicking_listener`, a listener that panics on every
/// report is registered before the one that records them.
fn run_watched_with(
    config: WatchdogConfig,
    label: &'static str,
    untracked: bool,
    work: fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>,
    panicking_listener: bool,
) -> (Vec<(WatchdogReport, bool)>, nucleon_runtime::WatchdogStats) {
    let finished = Arc::new(AtomicBool::new(false));
    let seen: Seen = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let (f, s) = (Arc::clone(&finished), Arc::clone(&seen));
    let thread = std::thread::spawn(move || {
        let f_report = Arc::clone(&f);
        let runtime = Runtime::builder()
            .workers(1)
            .handle_signals(false)
            .watchdog(config)
            .per_worker(move |worker| {
                let drain = worker.drain().clone();
                let f = Arc::clone(&f);
                worker.spawn("test-driver", async move {
                    // Let the heartbeat settle before blocking.
                    tokio::time::sleep(Duration::from_millis(120)).await;
                    let f2 = Arc::clone(&f);
                    let job = async move {
                        work().await;
                        f2.store(true, Ordering::SeqCst);
                    };
                    if untracked {
                        tokio::task::spawn_local(job).await.unwrap();
                    } else {
                        nucleon_runtime::spawn(label, job).await.unwrap();
                    }
                    // Give the heartbeat a tick to notice the end of a stall.
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    drain.start();
                });
                Ok(())
            })
            .build()
            .unwrap();
        let handle = runtime.handle();
        if panicking_listener {
            handle
                .watchdog()
                .on_report(|report| panic!("a listener that fails on {:?}", report.kind));
        }
        handle.watchdog().on_report(move |report| {
            s.lock()
                .unwrap()
                .push((report.clone(), f_report.load(Ordering::SeqCst)));
        });
        tx.send(handle).unwrap();
        runtime.run()
    });
    let handle = rx.recv().unwrap();
    thread.join().unwrap().unwrap();
    assert_eq!(handle.phase(), Phase::Stopped);
    assert!(finished.load(Ordering::SeqCst));
    let seen = seen.lock().unwrap().clone();
    (seen, handle.watchdog().stats())
}

#[allow(
    clippy::disallowed_methods,
    reason = "the test blocks the loop on purpose"
)]
fn block_the_loop() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async {
        std::thread::sleep(NAP);
    })
}

#[allow(
    clippy::disallowed_methods,
    reason = "the sleep runs on an offload thread"
)]
fn offload_the_block() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async {
        offload::blocking(|| std::thread::sleep(NAP)).await.unwrap();
    })
}

/// Holds the thread for a while when dropped.
struct SlowDrop;

impl Drop for SlowDrop {
    #[allow(
        clippy::disallowed_methods,
        reason = "the test blocks the worker's teardown on purpose"
    )]
    fn drop(&mut self) {
        std::thread::sleep(NAP);
    }
}

/// Leaves a task behind that takes `NAP` to drop, when the worker's loop has ended.
fn leave_a_slow_drop() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()>>> {
    Box::pin(async {
        tokio::task::spawn_local(async {
            let _held = SlowDrop;
            std::future::pending::<()>().await;
        });
    })
}

#[test]
fn names_a_blocking_task_while_it_blocks() {
    let (seen, stats) = run_watched(WatchdogConfig::default(), "sleepy", false, block_the_loop);
    let live: Vec<_> = seen
        .iter()
        .filter(|(r, _)| r.kind == ReportKind::Blocking)
        .collect();
    assert_eq!(
        live.len(),
        1,
        "one live report for one blocking poll: {seen:#?}"
    );
    let (report, finished_then) = live[0];
    assert!(!finished_then, "reported while still blocking");
    assert_eq!(report.task.as_deref(), Some("sleepy"));
    assert_eq!(report.worker, 0);
    assert!(report.elapsed >= Duration::from_millis(50) && report.elapsed < NAP);

    let ended: Vec<_> = seen
        .iter()
        .filter(|(r, _)| r.kind == ReportKind::SlowPollEnded)
        .collect();
    assert_eq!(ended.len(), 1, "{seen:#?}");
    assert_eq!(ended[0].0.task.as_deref(), Some("sleepy"));
    // The watchdog's clock is the coarse monotonic clock: one tick (at most 4 ms) of slack.
    assert!(ended[0].0.elapsed >= NAP - Duration::from_millis(5));

    assert_eq!(stats.blocking_reports, 1);
    assert_eq!(stats.slow_polls, 1);
    assert_eq!(stats.histogram.iter().sum::<u64>(), 1);
    assert_eq!(
        stats.histogram[2], 1,
        "a 300 ms poll lands in the 250-500 ms bucket"
    );
    assert_eq!(stats.stalls, 0, "a tracked block is not also a stall");
}

#[test]
fn stays_quiet_for_offloaded_work() {
    let (seen, stats) = run_watched(
        WatchdogConfig::default(),
        "offloaded",
        false,
        offload_the_block,
    );
    assert!(seen.is_empty(), "{seen:#?}");
    assert_eq!(stats.blocking_reports + stats.slow_polls + stats.stalls, 0);
}

#[test]
fn heartbeat_catches_a_stall_from_an_untracked_task() {
    let (seen, stats) = run_watched(WatchdogConfig::default(), "-", true, block_the_loop);
    let stall = seen
        .iter()
        .find(|(r, _)| r.kind == ReportKind::Stall)
        .unwrap_or_else(|| panic!("no stall report: {seen:#?}"));
    assert!(!stall.1, "reported while still stalled");
    assert_eq!(stall.0.task, None, "an untracked task has no name");
    assert!(
        seen.iter().any(|(r, _)| r.kind == ReportKind::StallEnded),
        "{seen:#?}"
    );
    assert!(seen.iter().all(|(r, _)| r.kind != ReportKind::Blocking));
    assert_eq!(stats.stalls, 1);
}

#[cfg(target_os = "linux")]
#[test]
fn captures_the_blocked_stack_while_blocked() {
    let config = WatchdogConfig {
        backtrace: true,
        ..WatchdogConfig::default()
    };
    let (seen, _) = run_watched(config, "sleepy", false, block_the_loop);
    // Symbolising may finish after the sleep; the stack itself is taken while blocked,
    // which its content proves: once the sleep returns, no frame is in `sleep`.
    let (report, _) = seen
        .iter()
        .find(|(r, _)| r.kind == ReportKind::Blocking)
        .expect("a live report");
    let stack = report.backtrace.as_deref().expect("a captured stack");
    assert!(
        stack.contains("sleep"),
        "the stack shows where the thread blocks:\n{stack}"
    );
    assert!(
        stack.contains("block_the_loop"),
        "the stack shows the blocking code:\n{stack}"
    );
}

/// Blocks worker 0's loop in a function the stack must name.
#[inline(never)]
#[allow(
    clippy::disallowed_methods,
    reason = "the test blocks the loop on purpose"
)]
fn hold_worker_zero_in_alpha(nap: Duration) {
    std::thread::sleep(nap);
    std::hint::black_box(());
}

/// Blocks worker 1's loop in another function, at overlapping times.
#[inline(never)]
#[allow(
    clippy::disallowed_methods,
    reason = "the test blocks the loop on purpose"
)]
fn hold_worker_one_in_beta(nap: Duration) {
    std::thread::sleep(nap);
    std::hint::black_box(());
}

/// Under load: three workers, two of which block in known functions, again and again,
/// at overlapping times (so captures follow each other closely and a late answer could
/// be taken for the next one), while the third serves a tick every millisecond. Each
/// live report's stack names its own worker's function and never the other's, and the
/// third worker served throughout every block.
#[cfg(all(target_os = "linux", feature = "backtrace"))]
#[test]
fn captures_under_load_name_each_blocked_worker_s_own_function() {
    use std::sync::atomic::AtomicU64;

    const ROUNDS: u32 = 3;
    // The first symbolisation loads this binary's debug info (hundreds of milliseconds
    // for a test binary), and the monitor reports nothing meanwhile: done before.
    drop(backtrace::Backtrace::new());
    let config = WatchdogConfig {
        backtrace: true,
        ..WatchdogConfig::default()
    };
    let ticks = Arc::new(AtomicU64::new(0));
    // For each block: the ticks served before it and after it.
    let served: Arc<Mutex<Vec<(u64, u64)>>> = Arc::default();
    let reports: Arc<Mutex<Vec<WatchdogReport>>> = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let (t, sv, r) = (
        Arc::clone(&ticks),
        Arc::clone(&served),
        Arc::clone(&reports),
    );
    let thread = std::thread::spawn(move || {
        let runtime = Runtime::builder()
            .workers(3)
            .handle_signals(false)
            .watchdog(config)
            .per_worker(move |worker| {
                let id = worker.id();
                let drain = worker.drain().clone();
                let (ticks, served) = (Arc::clone(&t), Arc::clone(&sv));
                worker.spawn("load", async move {
                    tokio::time::sleep(Duration::from_millis(150)).await;
                    match id {
                        0 | 1 => {
                            if id == 1 {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                            }
                            for _ in 0..ROUNDS {
                                let blocker = nucleon_runtime::spawn(
                                    if id == 0 { "alpha" } else { "beta" },
                                    {
                                        let (ticks, served) =
                                            (Arc::clone(&ticks), Arc::clone(&served));
                                        async move {
                                            let before = ticks.load(Ordering::SeqCst);
                                            if id == 0 {
                                                hold_worker_zero_in_alpha(NAP);
                                            } else {
                                                hold_worker_one_in_beta(NAP);
                                            }
                                            let after = ticks.load(Ordering::SeqCst);
                                            served.lock().unwrap().push((before, after));
                                        }
                                    },
                                );
                                blocker.await.unwrap();
                                tokio::time::sleep(Duration::from_millis(60)).await;
                            }
                        }
                        _ => {
                            let mut interval = tokio::time::interval(Duration::from_millis(1));
                            let until = tokio::time::Instant::now()
                                + Duration::from_millis(100)
                                + (NAP + Duration::from_millis(60)) * (ROUNDS + 1);
                            while tokio::time::Instant::now() < until {
                                interval.tick().await;
                                ticks.fetch_add(1, Ordering::SeqCst);
                            }
                            drain.start();
                        }
                    }
                });
                Ok(())
            })
            .build()
            .unwrap();
        let handle = runtime.handle();
        handle.watchdog().on_report(move |report| {
            r.lock().unwrap().push(report.clone());
        });
        tx.send(handle).unwrap();
        runtime.run()
    });
    let handle = rx.recv().unwrap();
    thread.join().unwrap().unwrap();
    assert_eq!(handle.phase(), Phase::Stopped);

    let served = served.lock().unwrap().clone();
    assert_eq!(served.len(), 2 * ROUNDS as usize, "{served:?}");
    for (before, after) in &served {
        assert!(
            after > before,
            "the third worker served during a block: {served:?}"
        );
    }
    let reports = reports.lock().unwrap().clone();
    let live: Vec<&WatchdogReport> = reports
        .iter()
        .filter(|r| r.kind == ReportKind::Blocking)
        .collect();
    for (worker, own, other) in [(0, "alpha", "beta"), (1, "beta", "alpha")] {
        let stacks: Vec<&str> = live
            .iter()
            .filter(|r| r.worker == worker && !r.process_loop)
            .filter_map(|r| r.backtrace.as_deref())
            .collect();
        assert_eq!(
            stacks.len(),
            ROUNDS as usize,
            "worker {worker}: a stack for each block"
        );
        for stack in stacks {
            assert!(
                stack.contains(&format!("hold_worker_{}_in_{own}", ["zero", "one"][worker])),
                "worker {worker}'s stack names its own function:\n{stack}"
            );
            assert!(
                !stack.contains(&format!("_in_{other}")),
                "worker {worker}'s stack is its own:\n{stack}"
            );
        }
    }
    assert!(
        !live.iter().any(|r| r.worker == 2 && !r.process_loop),
        "the serving worker never blocked: {live:?}"
    );
}

#[test]
fn disabled_watchdog_tracks_nothing() {
    let config = WatchdogConfig {
        enabled: false,
        ..WatchdogConfig::default()
    };
    let (seen, stats) = run_watched(config, "sleepy", false, block_the_loop);
    assert!(seen.is_empty());
    assert_eq!(stats.blocking_reports + stats.slow_polls + stats.stalls, 0);
}

/// A per-worker adapter whose start awaits (a slow connect), without blocking.
struct SlowStart;

impl nucleon_runtime::Adapter for SlowStart {
    type Handle = ();

    fn name(&self) -> &str {
        "slow-start"
    }

    async fn start(
        &mut self,
        _ctx: &nucleon_runtime::AdapterContext,
    ) -> Result<(), nucleon_runtime::BoxError> {
        tokio::time::sleep(Duration::from_millis(300)).await;
        Ok(())
    }

    async fn stop(
        &mut self,
        _deadline: std::time::Instant,
    ) -> Result<(), nucleon_runtime::BoxError> {
        Ok(())
    }
}

#[test]
fn an_adapter_start_that_awaits_is_not_a_stall() {
    let runtime = Runtime::builder()
        .workers(1)
        .handle_signals(false)
        .watchdog(WatchdogConfig::default())
        .per_worker(|worker| {
            worker.adapter(SlowStart);
            let drain = worker.drain().clone();
            worker.spawn("stopper", async move {
                drain.start();
            });
            Ok(())
        })
        .build()
        .unwrap();
    let handle = runtime.handle();
    runtime.run().unwrap();
    assert_eq!(
        handle.watchdog().stats().stalls,
        0,
        "{:#?}",
        handle.watchdog().recent_reports()
    );
}

/// Once the worker's loop has ended, its heartbeat stops with it: the teardown that
/// follows (here a task that takes 300 ms to drop) is not reported as a stall.
#[test]
fn the_teardown_after_the_loop_is_not_a_stall() {
    let (seen, stats) = run_watched(
        WatchdogConfig::default(),
        "leaves-a-slow-drop",
        false,
        leave_a_slow_drop,
    );
    assert!(seen.is_empty(), "{seen:#?}");
    assert_eq!(stats.stalls, 0);
}

/// A report listener that panics takes nothing down: the other listeners get every
/// report, the watchdog goes on, and the watched task ends as it would have.
#[test]
fn a_panicking_report_listener_takes_nothing_down() {
    let (seen, stats) = run_watched_with(
        WatchdogConfig::default(),
        "sleepy",
        false,
        block_the_loop,
        true,
    );
    let kinds: Vec<_> = seen.iter().map(|(r, _)| r.kind).collect();
    assert!(kinds.contains(&ReportKind::Blocking), "{seen:#?}");
    assert!(kinds.contains(&ReportKind::SlowPollEnded), "{seen:#?}");
    assert_eq!((stats.blocking_reports, stats.slow_polls), (1, 1));
}
