//! The query API: declare a query once, bind, take its result in the shape wanted.

use std::borrow::Cow;
use std::time::Instant;

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt};
use sqlx::{AssertSqlSafe, Postgres, Sqlite};
use tracing::Instrument;

use crate::db::{Db, Pool};
use crate::error::DbError;
use crate::param::{Param, ToParam, bind_params};
use crate::row::{Record, Scalar};
use crate::transaction::TxConn;

/// A query's text and its name: declare queries once, as constants (by convention in a
/// `queries` module), and the name shows in logs, spans and errors instead of the SQL.
/// A plain `&'static str` or `String` is a query too, named by its first words.
///
/// ```
/// use nucleon_db::Sql;
///
/// pub const ORDER_BY_ID: Sql = Sql::named("orders.by_id", "SELECT * FROM orders WHERE id = $1");
/// assert_eq!(ORDER_BY_ID.name(), "orders.by_id");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sql {
    name: Option<&'static str>,
    text: Cow<'static, str>,
}

impl Sql {
    /// A declared query: its name and its text.
    pub const fn named(name: &'static str, text: &'static str) -> Self {
        Self {
            name: Some(name),
            text: Cow::Borrowed(text),
        }
    }

    /// The query's name: the declared one, else its first words.
    pub fn name(&self) -> Cow<'_, str> {
        match self.name {
            Some(name) => Cow::Borrowed(name),
            None => {
                let words: Vec<&str> = self.text.split_whitespace().take(4).collect();
                Cow::Owned(format!("`{}…`", words.join(" ")))
            }
        }
    }

    /// The SQL.
    pub fn text(&self) -> &str {
        &self.text
    }
}

impl From<&'static str> for Sql {
    fn from(text: &'static str) -> Self {
        Self {
            name: None,
            text: Cow::Borrowed(text),
        }
    }
}

impl From<String> for Sql {
    fn from(text: String) -> Self {
        Self {
            name: None,
            text: Cow::Owned(text),
        }
    }
}

impl From<&Sql> for Sql {
    fn from(sql: &Sql) -> Self {
        sql.clone()
    }
}

/// Where a query runs: on the pool, or in a transaction.
pub(crate) enum Target<'a> {
    Db(&'a Db),
    Tx(&'a Db, &'a mut TxConn),
}

/// A query being prepared: [`bind`](Query::bind) its parameters in order, then take
/// its result with one of its methods. Made by [`Db::query`] and [`crate::Tx::query`].
#[must_use = "a query runs only when one of its result methods is awaited"]
pub struct Query<'a> {
    target: Target<'a>,
    sql: Sql,
    params: Vec<Param>,
    /// In a transaction: where a failure is recorded (a failed statement aborts a
    /// PostgreSQL transaction; its commit is then refused).
    failed: Option<&'a mut Option<String>>,
}

impl std::fmt::Debug for Query<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The parameters' values are not shown: they may be personal data.
        f.debug_struct("Query")
            .field("name", &self.sql.name())
            .field("params", &self.params.len())
            .finish_non_exhaustive()
    }
}

/// Runs a query: `$run`, a future made of its target, SQL and parameters, timed and
/// named ([`Query::timed`]); gives its name, its transaction's failure slot and the
/// result.
macro_rules! run_query {
    ($query:expr, |$target:ident, $sql:ident, $params:ident| $run:expr) => {{
        let name = $query.sql.name().into_owned();
        let db = $query.db().clone();
        let Query {
            target: $target,
            sql,
            params: $params,
            failed,
        } = $query;
        let $sql = AssertSqlSafe(sql.text);
        let result = Self::timed(name.clone(), &db, async move { $run }).await;
        (name, failed, result)
    }};
}

/// The current task's watchdog label, with the query's name added while it runs; the
/// label before comes back when dropped (a query cancelled midway too).
struct QueryLabel {
    handle: nucleon_runtime::task::LabelHandle,
    before: nucleon_runtime::TaskLabel,
}

impl QueryLabel {
    fn set(name: &str) -> Option<Self> {
        let handle = nucleon_runtime::task::label_handle()?;
        let before = handle.get();
        handle.set(format!("{before} · query {name}"));
        Some(Self { handle, before })
    }
}

impl Drop for QueryLabel {
    fn drop(&mut self) {
        self.handle.set(self.before.clone());
    }
}

/// Runs `$body` with `$exec` bound to a connection, for each backend: the pool's taken
/// explicitly (timed and counted while waiting, for the metrics), or the transaction's.
macro_rules! on_connection {
    ($target:expr, |$kind:ident, $exec:ident| $body:expr) => {
        match $target {
            Target::Db(db) => match &db.inner.pool {
                Pool::Postgres(pool) => {
                    type $kind = Postgres;
                    let mut conn = acquire(pool, &db.inner.metrics_name).await?;
                    let $exec = &mut *conn;
                    $body
                }
                Pool::Sqlite(pool) => {
                    type $kind = Sqlite;
                    let mut conn = acquire(pool, &db.inner.metrics_name).await?;
                    let $exec = &mut *conn;
                    $body
                }
            },
            Target::Tx(_, TxConn::Postgres(tx)) => {
                type $kind = Postgres;
                let $exec = &mut **tx;
                $body
            }
            Target::Tx(_, TxConn::Sqlite(tx)) => {
                type $kind = Sqlite;
                let $exec = &mut **tx;
                $body
            }
        }
    };
}

/// A connection of `pool` (of the database `db`), its wait timed and counted.
async fn acquire<DB: sqlx::Database>(
    pool: &sqlx::Pool<DB>,
    db: &str,
) -> Result<sqlx::pool::PoolConnection<DB>, sqlx::Error> {
    /// Ends the wait in the metrics however it ends (a cancelled query too).
    struct Waiting<'a>(&'a str, Instant);
    impl Drop for Waiting<'_> {
        fn drop(&mut self) {
            crate::metrics::acquire_finished(self.0, self.1.elapsed());
        }
    }
    crate::metrics::acquire_started(db);
    let _waiting = Waiting(db, Instant::now());
    pool.acquire().await
}

/// Runs `$body` with `$exec` bound to the right executor, for each backend.
macro_rules! on_backend {
    ($target:expr, |$kind:ident, $exec:ident| $body:expr) => {
        match $target {
            Target::Db(db) => match &db.inner.pool {
                Pool::Postgres($exec) => {
                    type $kind = Postgres;
                    $body
                }
                Pool::Sqlite($exec) => {
                    type $kind = Sqlite;
                    $body
                }
            },
            Target::Tx(_, TxConn::Postgres(tx)) => {
                type $kind = Postgres;
                let $exec = &mut **tx;
                $body
            }
            Target::Tx(_, TxConn::Sqlite(tx)) => {
                type $kind = Sqlite;
                let $exec = &mut **tx;
                $body
            }
        }
    };
}

impl<'a> Query<'a> {
    pub(crate) fn new(
        target: Target<'a>,
        sql: Sql,
        failed: Option<&'a mut Option<String>>,
    ) -> Self {
        Self {
            target,
            sql,
            params: Vec::new(),
            failed,
        }
    }

    /// Records a failure in the transaction the query ran in.
    fn note<T>(failed: Option<&mut Option<String>>, name: &str, result: &Result<T, DbError>) {
        if let (Some(failed), Err(_)) = (failed, result) {
            failed.get_or_insert_with(|| name.to_owned());
        }
    }

    /// Binds the next placeholder's value (`$1`, `$2`… in order).
    pub fn bind(mut self, value: impl ToParam) -> Self {
        self.params.push(value.to_param());
        self
    }

    fn db(&self) -> &Db {
        match &self.target {
            Target::Db(db) | Target::Tx(db, _) => db,
        }
    }

    /// Runs `run`, in a span named after the query, logging it when slow, and turning
    /// sqlx's error into a [`DbError`] naming the query.
    async fn timed<T>(
        name: String,
        db: &Db,
        run: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, DbError> {
        let slow = db.inner.slow_query;
        let span = tracing::debug_span!(target: "nucleon::db", "query", name = %name);
        // The watchdog names the query in what it reports meanwhile (a decode that
        // blocks the loop): "GET /orders/{id} · query orders.by_id".
        let _label = QueryLabel::set(&name);
        let started = Instant::now();
        let result = run.instrument(span).await;
        let took = started.elapsed();
        crate::metrics::query_finished(&db.inner.metrics_name, &name, took);
        if took >= slow {
            tracing::warn!(target: "nucleon::db", query = %name, elapsed_ms = took.as_millis() as u64, "slow query {name}: {took:?} (db.slow_query)");
        }
        result.map_err(|error| {
            let error = match DbError::from_sqlx(&name, error) {
                DbError::Timeout { query, after: None } => DbError::Timeout {
                    query,
                    after: db.inner.statement_timeout,
                },
                other => other,
            };
            crate::metrics::query_failed(&db.inner.metrics_name, &error);
            error
        })
    }

    /// Every row, as `T` (a `sqlx::FromRow` struct, a tuple, or [`crate::JsonRow`]).
    ///
    /// # Errors
    /// [`DbError`]: the database's refusal, a decoding failure, an unreachable database.
    pub async fn rows<T: Record>(self) -> Result<Vec<T>, DbError> {
        let (name, failed, result) = run_query!(self, |target, sql, params| {
            on_connection!(target, |D, exec| {
                bind_params!(sqlx::query_as::<D, T>(sql), params)
                    .fetch_all(exec)
                    .await
            })
        });
        Self::note(failed, &name, &result);
        result
    }

    /// The first column of every row (`SELECT code FROM countries`).
    ///
    /// # Errors
    /// As [`Query::rows`].
    pub async fn flat<T: Scalar>(self) -> Result<Vec<T>, DbError>
    where
        (T,): Record,
    {
        Ok(self
            .rows::<(T,)>()
            .await?
            .into_iter()
            .map(|(v,)| v)
            .collect())
    }

    /// At most one row: `None` when there is none.
    ///
    /// # Errors
    /// [`DbError::TooManyRows`] when there are several; as [`Query::rows`].
    pub async fn optional<T: Record>(self) -> Result<Option<T>, DbError> {
        let (name, failed, result) = run_query!(self, |target, sql, params| {
            on_connection!(target, |D, exec| {
                // Two rows at most: a second one is an error, the rest is not read.
                let mut rows = bind_params!(sqlx::query_as::<D, T>(sql), params).fetch(exec);
                let first = rows.try_next().await?;
                let more = first.is_some() && rows.try_next().await?.is_some();
                Ok((first, more))
            })
        });
        let result = result.and_then(|(first, more)| match more {
            true => Err(DbError::TooManyRows {
                query: name.clone(),
            }),
            false => Ok(first),
        });
        Self::note(failed, &name, &result);
        result
    }

    /// Exactly one row.
    ///
    /// # Errors
    /// [`DbError::NotFound`] (404) when there is none, [`DbError::TooManyRows`] when there
    /// are several; as [`Query::rows`].
    pub async fn unique<T: Record>(self) -> Result<T, DbError> {
        let name = self.sql.name().into_owned();
        self.optional()
            .await?
            .ok_or(DbError::NotFound { query: name })
    }

    /// One row, one column (`SELECT count(*) FROM orders`).
    ///
    /// # Errors
    /// As [`Query::unique`].
    pub async fn value<T: Scalar>(self) -> Result<T, DbError>
    where
        (T,): Record,
    {
        Ok(self.unique::<(T,)>().await?.0)
    }

    /// Runs a statement; the number of rows it affected.
    ///
    /// # Errors
    /// As [`Query::rows`].
    pub async fn execute(self) -> Result<u64, DbError> {
        let (name, failed, result) = run_query!(self, |target, sql, params| {
            on_connection!(target, |D, exec| {
                bind_params!(sqlx::query::<D>(sql), params)
                    .execute(exec)
                    .await
                    .map(|done| done.rows_affected())
            })
        });
        Self::note(failed, &name, &result);
        result
    }

    /// The rows one at a time, without building a list (a large export, say). The
    /// connection stays taken until the stream ends or is dropped. A stream is not timed
    /// as a whole (its consumer sets its pace), and in a transaction its errors are the
    /// caller's to handle: they do not count as the transaction's failure.
    pub fn stream<T: Record>(self) -> BoxStream<'a, Result<T, DbError>> {
        let name = self.sql.name().into_owned();
        let Query {
            target,
            sql,
            params,
            ..
        } = self;
        let sql = AssertSqlSafe(sql.text);
        let rows = on_backend!(target, |D, exec| {
            bind_params!(sqlx::query_as::<D, T>(sql), params).fetch(exec)
        });
        rows.map_err(move |error| DbError::from_sqlx(&name, error))
            .boxed()
    }
}
