//! The database's metrics inside a real runtime against the real PostgreSQL: query
//! times by query name, the pool's waits, errors by kind, the pool's connections;
//! read from a Prometheus recorder.

use std::sync::{Arc, Mutex};

use nucleon_db::{Db, DbAdapter, Sql};
use nucleon_runtime::Runtime;
use nucleon_testkit::prometheus::{Scrape, scrape};

const ONE: Sql = Sql::named("metrics.one", "SELECT 1");

#[test]
fn queries_are_timed_by_name_and_errors_counted_by_kind() {
    let Some(url) = nucleon_testkit::postgres_url() else {
        return;
    };
    nucleon_testkit::prometheus::recorder();
    let config = nucleon_runtime::Config::from_toml(
        &format!("[default.db]\nurl = \"{url}\"\npool_size = 2\n"),
        "default",
    )
    .unwrap();
    let during: Arc<Mutex<Option<Scrape>>> = Arc::default();
    let seen = Arc::clone(&during);
    let runtime = Runtime::builder()
        .config(config)
        .handle_signals(false)
        .workers(1)
        .per_worker(move |worker| {
            worker.adapter(DbAdapter::new());
            let shutdown = worker.drain().clone();
            let seen = Arc::clone(&seen);
            worker.spawn("queries", async move {
                let db = Db::current().expect("this worker's pool");
                for _ in 0..3 {
                    let one: i32 = db.query(ONE).value().await.expect("one");
                    assert_eq!(one, 1);
                }
                let missing = db
                    .query("SELECT * FROM no_such_table_for_metrics")
                    .execute()
                    .await;
                assert!(missing.is_err());
                // The collectors (the pool's connections) and this worker's figures.
                nucleon_runtime::metrics::collect();
                *seen.lock().unwrap() = Some(scrape());
                shutdown.start();
            });
            Ok(())
        })
        .build()
        .unwrap();
    runtime.run().unwrap();

    let during = during
        .lock()
        .unwrap()
        .take()
        .expect("scraped while running");
    let connections = |state| {
        during.value(
            "nucleon_db_pool_connections",
            &[("db", "default"), ("worker", "0"), ("state", state)],
        )
    };
    let (idle, busy) = (connections("idle"), connections("busy"));
    // A connection a failed query used may still be on its way back to the pool.
    let open = idle.unwrap_or(-1.0) + busy.unwrap_or(-1.0);
    assert!(
        (1.0..=2.0).contains(&open),
        "idle {idle:?}, busy {busy:?} (pool_size 2)"
    );

    let after = scrape();
    assert_eq!(
        after.value(
            "nucleon_db_query_duration_seconds_count",
            &[("db", "default"), ("query", "metrics.one")]
        ),
        Some(3.0)
    );
    assert_eq!(
        after.value(
            "nucleon_db_errors_total",
            &[("db", "default"), ("kind", "bad_query")]
        ),
        Some(1.0),
        "{:#?}",
        after.series("nucleon_db_errors_total")
    );
    // Every query on the pool waited for its connection once (the start's check too).
    let queries = after.sum(
        "nucleon_db_query_duration_seconds_count",
        &[("db", "default")],
    );
    assert_eq!(queries, 5.0, "start check, 3 named, 1 failed");
    assert_eq!(
        after.value(
            "nucleon_db_acquire_duration_seconds_count",
            &[("db", "default")]
        ),
        Some(queries)
    );
    assert_eq!(
        after.value("nucleon_db_pool_waiting", &[("db", "default")]),
        Some(0.0)
    );
}
