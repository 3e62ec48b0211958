//! A slow SQLite query never blocks a worker: sqlx runs SQLite on threads of its own,
//! and the watchdog, which names every poll past its threshold, has nothing to report.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nucleon_db::{Db, DbAdapter};
use nucleon_runtime::{Phase, Runtime, WatchdogConfig};

#[test]
fn a_slow_sqlite_query_is_not_a_slow_poll() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("slow.db").display());
    let config =
        nucleon_runtime::Config::from_toml(&format!("[default.db]\nurl = \"{url}\"\n"), "default")
            .unwrap();
    let outcome = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&outcome);
    let runtime = Runtime::builder()
        .config(config)
        .handle_signals(false)
        .workers(1)
        .watchdog(WatchdogConfig {
            threshold: Duration::from_millis(50),
            ..WatchdogConfig::default()
        })
        .adapter(DbAdapter::new())
        .per_worker(move |worker| {
            let seen = Arc::clone(&seen);
            worker.spawn("slow report", async move {
                let db = Db::current().expect("the process's SQLite");
                // A recursive count: hundreds of milliseconds of SQLite's CPU.
                let counted: Result<i64, _> = db
                    .query("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 3000000) SELECT count(*) FROM n")
                    .value()
                    .await;
                *seen.lock().unwrap() = Some(counted);
            });
            Ok(())
        })
        .build()
        .unwrap();
    let handle = runtime.handle();
    let thread = std::thread::spawn(move || runtime.run());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    assert_eq!(rt.block_on(handle.wait_for(Phase::Serving)), Phase::Serving);
    nucleon_testkit::wait_until("the slow query's answer", Duration::from_secs(60), || {
        outcome.lock().unwrap().is_some()
    });
    let counted = outcome.lock().unwrap().take().unwrap();
    assert_eq!(counted.unwrap(), 3_000_000);
    let stats = handle.watchdog().stats();
    handle.shutdown();
    thread.join().unwrap().unwrap();
    assert_eq!(
        (stats.blocking_reports, stats.slow_polls, stats.stalls),
        (0, 0, 0),
        "the worker's loop was never blocked: {:?}",
        handle.watchdog().recent_reports()
    );
}
