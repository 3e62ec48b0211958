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

/// A row whose decoding blocks (a bug of its own): the watchdog's report names the
/// query it belongs to.
#[derive(Debug)]
struct SlowToDecode;

impl<'r, R: sqlx::Row> sqlx::FromRow<'r, R> for SlowToDecode {
    fn from_row(_row: &'r R) -> Result<Self, sqlx::Error> {
        #[allow(clippy::disallowed_methods, reason = "blocks the loop on purpose")]
        std::thread::sleep(Duration::from_millis(200));
        Ok(SlowToDecode)
    }
}

#[test]
fn the_watchdog_names_the_query_that_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("named.db").display());
    let config =
        nucleon_runtime::Config::from_toml(&format!("[default.db]\nurl = \"{url}\"\n"), "default")
            .unwrap();
    let done = Arc::new(Mutex::new(false));
    let seen = Arc::clone(&done);
    let runtime = Runtime::builder()
        .config(config)
        .handle_signals(false)
        .workers(1)
        .adapter(DbAdapter::new())
        .per_worker(move |worker| {
            let seen = Arc::clone(&seen);
            worker.spawn("nightly report", async move {
                let db = Db::current().expect("the process's SQLite");
                let slow = nucleon_db::Sql::named("report.slow_rows", "SELECT 1");
                let _rows: Vec<SlowToDecode> = db.query(slow).rows().await.unwrap();
                *seen.lock().unwrap() = true;
            });
            Ok(())
        })
        .build()
        .unwrap();
    let handle = runtime.handle();
    let thread = std::thread::spawn(move || runtime.run());
    nucleon_testkit::wait_until("the slow decode", Duration::from_secs(30), || {
        *done.lock().unwrap()
    });
    let reports = handle.watchdog().recent_reports();
    handle.shutdown();
    thread.join().unwrap().unwrap();
    assert!(
        reports
            .iter()
            .any(|r| r.task.as_deref() == Some("nightly report · query report.slow_rows")),
        "{reports:?}"
    );
}
