//! The database's metrics (names in [`nucleon_runtime::metrics`]): query and acquire
//! times and waiting queries per thread (flushed by the runtime), errors by kind, and
//! the pools' connections read when exported.

use std::cell::{OnceCell, RefCell};
use std::collections::HashMap;
use std::time::Duration;

use nucleon_runtime::metrics::{
    CollectorGuard, DB_ACQUIRE_DURATION, DB_CONNECTIONS, DB_ERRORS, DB_QUERY_DURATION, DB_WAITING,
    LocalGauge, LocalHistogram, register_collector,
};

use crate::{DbError, Pool};

/// One database's series on this thread.
struct DbSeries {
    queries: HashMap<String, LocalHistogram>,
    acquire: LocalHistogram,
    waiting: LocalGauge,
}

thread_local! {
    /// By database name; `None` off the runtime's threads, or with metrics off.
    static METRICS: OnceCell<Option<RefCell<HashMap<String, DbSeries>>>> = const { OnceCell::new() };
}

fn with(db: &str, record: impl FnOnce(&mut DbSeries)) {
    METRICS.with(|cell| {
        let Some(by_db) =
            cell.get_or_init(|| nucleon_runtime::metrics::enabled().then(RefCell::default))
        else {
            return;
        };
        let mut by_db = by_db.borrow_mut();
        if !by_db.contains_key(db) {
            by_db.insert(
                db.to_owned(),
                DbSeries {
                    queries: HashMap::new(),
                    acquire: LocalHistogram::new(metrics::histogram!(
                        DB_ACQUIRE_DURATION, "db" => db.to_owned()
                    )),
                    waiting: LocalGauge::new(metrics::gauge!(DB_WAITING, "db" => db.to_owned())),
                },
            );
        }
        if let Some(series) = by_db.get_mut(db) {
            record(series);
        }
    });
}

/// A query of `db` named `query` took `took`.
pub(crate) fn query_finished(db: &str, query: &str, took: Duration) {
    with(db, |series| {
        let histogram = match series.queries.get(query) {
            Some(histogram) => histogram,
            None => series.queries.entry(query.to_owned()).or_insert_with(|| {
                LocalHistogram::new(metrics::histogram!(
                    DB_QUERY_DURATION,
                    "db" => db.to_owned(),
                    "query" => query.to_owned(),
                ))
            }),
        };
        histogram.record(took.as_secs_f64());
    });
}

/// A query of `db` starts waiting for a connection.
pub(crate) fn acquire_started(db: &str) {
    with(db, |series| series.waiting.add(1.0));
}

/// A query of `db` has its connection (or gave up) after `took`.
pub(crate) fn acquire_finished(db: &str, took: Duration) {
    with(db, |series| {
        series.waiting.add(-1.0);
        series.acquire.record(took.as_secs_f64());
    });
}

/// A query of `db` failed with `error` (a rare event: the facade's handle directly).
pub(crate) fn query_failed(db: &str, error: &DbError) {
    let kind = match error {
        DbError::NotFound { .. } => "not_found",
        DbError::TooManyRows { .. } => "too_many_rows",
        DbError::Conflict { .. } => "conflict",
        DbError::Unavailable { .. } => "unavailable",
        DbError::Timeout { .. } => "timeout",
        DbError::Retryable { .. } => "retryable",
        DbError::CommitUnknown { .. } => "commit_unknown",
        DbError::Aborted { .. } => "aborted",
        DbError::BadQuery { .. } => "bad_query",
        _ => "other",
    };
    metrics::counter!(DB_ERRORS, "db" => db.to_owned(), "kind" => kind).increment(1);
}

/// Sets the pool's connection gauges (idle, busy) at each collection, until dropped.
pub(crate) fn watch_pool(db: &str, worker: Option<usize>, pool: &Pool) -> CollectorGuard {
    let worker = worker.map_or_else(|| "process".to_owned(), |w| w.to_string());
    let labels = |state: &'static str| {
        [
            ("db", db.to_owned()),
            ("worker", worker.clone()),
            ("state", state.to_owned()),
        ]
    };
    let idle = metrics::gauge!(DB_CONNECTIONS, &labels("idle"));
    let busy = metrics::gauge!(DB_CONNECTIONS, &labels("busy"));
    let pool = pool.clone();
    register_collector(move || {
        let (size, num_idle) = match &pool {
            Pool::Postgres(pool) => (pool.size(), pool.num_idle()),
            Pool::Sqlite(pool) => (pool.size(), pool.num_idle()),
        };
        idle.set(num_idle as f64);
        busy.set(f64::from(size).max(num_idle as f64) - num_idle as f64);
    })
}
