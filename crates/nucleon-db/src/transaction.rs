//! Transactions: a block whose queries all commit or all roll back, retried on the
//! failures that a second run can get past.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::{AssertSqlSafe, Postgres, Sqlite};

use crate::db::{Db, Pool};
use crate::error::DbError;
use crate::query::{Query, Sql, Target};

/// The connection of a transaction under way.
pub(crate) enum TxConn {
    Postgres(sqlx::Transaction<'static, Postgres>),
    Sqlite(sqlx::Transaction<'static, Sqlite>),
}

/// A transaction under way, given to the body of [`Db::transaction`]: its queries run on
/// the transaction's connection.
pub struct Tx {
    db: Db,
    conn: TxConn,
    savepoints: u32,
    /// The first statement that failed outside a savepoint: PostgreSQL has aborted the
    /// transaction, so the commit is refused (on SQLite too, for one behaviour).
    failed: Option<String>,
}

impl std::fmt::Debug for Tx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx")
            .field("savepoints", &self.savepoints)
            .finish_non_exhaustive()
    }
}

impl Tx {
    /// A query in this transaction.
    pub fn query(&mut self, sql: impl Into<Sql>) -> Query<'_> {
        Query::new(
            Target::Tx(&self.db, &mut self.conn),
            sql.into(),
            Some(&mut self.failed),
        )
    }

    /// Runs `body` inside a savepoint: if it fails, its changes alone roll back (to the
    /// savepoint) and its error is returned; the transaction goes on. The way to go on
    /// after a statement that may fail ("insert, or it is there already"): outside a
    /// savepoint, a failed statement aborts the transaction (PostgreSQL's rule) and its
    /// commit is refused with [`DbError::Aborted`], even if the body caught the error.
    ///
    /// # Errors
    /// `body`'s error, or the savepoint's own failure.
    pub async fn savepoint<T>(
        &mut self,
        body: impl AsyncFnOnce(&mut Tx) -> Result<T, DbError>,
    ) -> Result<T, DbError> {
        self.savepoints += 1;
        let name = format!("nucleon_savepoint_{}", self.savepoints);
        self.raw(format!("SAVEPOINT {name}")).await?;
        let outside = self.failed.take();
        let result = body(self).await;
        // What failed inside is rolled back with the savepoint: forgiven.
        self.failed = None;
        match &result {
            Ok(_) => self.raw(format!("RELEASE SAVEPOINT {name}")).await?,
            Err(_) => self.raw(format!("ROLLBACK TO SAVEPOINT {name}")).await?,
        }
        self.failed = outside;
        self.savepoints -= 1;
        result
    }

    async fn raw(&mut self, statement: String) -> Result<(), DbError> {
        self.query(statement).execute().await.map(|_| ())
    }

    async fn commit(self) -> Result<(), DbError> {
        if let Some(failed) = self.failed {
            // Dropped, the transaction rolls back.
            return Err(DbError::Aborted { failed });
        }
        let committed = match self.conn {
            TxConn::Postgres(tx) => tx.commit().await,
            TxConn::Sqlite(tx) => tx.commit().await,
        };
        committed.map_err(|error| match &error {
            // The server refused the commit (a serialization failure, a deferred
            // constraint): it did not commit, and a retry may.
            sqlx::Error::Database(e)
                if e.code()
                    .is_some_and(|c| c.starts_with("40") || c.starts_with("23")) =>
            {
                DbError::from_sqlx("COMMIT", error)
            }
            // Anything else under the COMMIT (the link failed, the server went down
            // while it waited for a replica): it may have committed, or not.
            _ => DbError::CommitUnknown {
                reason: error.to_string(),
            },
        })
    }
}

/// The isolation level of a PostgreSQL transaction (SQLite's transactions are always
/// serializable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Isolation {
    /// `READ COMMITTED` (PostgreSQL's default).
    ReadCommitted,
    /// `REPEATABLE READ`.
    RepeatableRead,
    /// `SERIALIZABLE`: conflicts fail with a serialization failure, which
    /// [`Transaction::retries`] runs again.
    Serializable,
}

/// A transaction to run: made by [`Db::transaction`], set with its methods, run by
/// awaiting it. The body's error (or a panic) rolls everything back.
#[must_use = "a transaction runs only when awaited"]
pub struct Transaction<'a, F> {
    db: &'a Db,
    body: F,
    retries: u32,
    unique: bool,
    isolation: Option<Isolation>,
}

impl<F> std::fmt::Debug for Transaction<'_, F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("retries", &self.retries)
            .field("isolation", &self.isolation)
            .finish_non_exhaustive()
    }
}

impl<'a, F> Transaction<'a, F> {
    pub(crate) fn new(db: &'a Db, body: F) -> Self {
        Self {
            db,
            body,
            retries: 0,
            unique: false,
            isolation: None,
        }
    }

    /// Runs the body again, up to `n` more times, after a serialization failure
    /// (40001), a deadlock (40P01) or a busy SQLite database, with a jittered backoff
    /// (10 ms doubling, at most 1 s). Never after a commit whose outcome is unknown.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Retries on a unique violation (23505) too: for "insert if absent" races.
    pub fn retry_unique_violations(mut self) -> Self {
        self.unique = true;
        self
    }

    /// The isolation level (PostgreSQL).
    pub fn isolation(mut self, level: Isolation) -> Self {
        self.isolation = Some(level);
        self
    }
}

impl<'a, F, T> IntoFuture for Transaction<'a, F>
where
    F: AsyncFnMut(&mut Tx) -> Result<T, DbError> + 'a,
    T: 'a,
{
    type Output = Result<T, DbError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<T, DbError>> + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

impl<'a, F> Transaction<'a, F> {
    async fn run<T>(mut self) -> Result<T, DbError>
    where
        F: AsyncFnMut(&mut Tx) -> Result<T, DbError>,
    {
        let mut attempt = 0;
        loop {
            match self.once().await {
                Err(error) if attempt < self.retries && error.is_retryable(self.unique) => {
                    attempt += 1;
                    let pause = backoff(attempt);
                    tracing::debug!(target: "nucleon::db", attempt, ?pause, %error, "transaction retried: {error}");
                    tokio::time::sleep(pause).await;
                }
                outcome => return outcome,
            }
        }
    }

    async fn once<T>(&mut self) -> Result<T, DbError>
    where
        F: AsyncFnMut(&mut Tx) -> Result<T, DbError>,
    {
        let mut tx = self.begin().await?;
        // On error (or a panic, which drops the transaction), sqlx rolls it back.
        let value = (self.body)(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    async fn begin(&self) -> Result<Tx, DbError> {
        let conn = match &self.db.inner.pool {
            Pool::Postgres(pool) => {
                let begun = match self.isolation {
                    None => pool.begin().await,
                    Some(level) => pool.begin_with(AssertSqlSafe(begin_statement(level))).await,
                };
                TxConn::Postgres(begun.map_err(|e| DbError::from_sqlx("BEGIN", e))?)
            }
            // IMMEDIATE: the write lock is taken at the start, so two writers wait for
            // each other (busy_timeout) instead of failing on an upgrade.
            Pool::Sqlite(pool) => TxConn::Sqlite(
                pool.begin_with(AssertSqlSafe("BEGIN IMMEDIATE"))
                    .await
                    .map_err(|e| DbError::from_sqlx("BEGIN", e))?,
            ),
        };
        Ok(Tx {
            db: self.db.clone(),
            conn,
            savepoints: 0,
            failed: None,
        })
    }
}

fn begin_statement(level: Isolation) -> &'static str {
    match level {
        Isolation::ReadCommitted => "BEGIN ISOLATION LEVEL READ COMMITTED",
        Isolation::RepeatableRead => "BEGIN ISOLATION LEVEL REPEATABLE READ",
        Isolation::Serializable => "BEGIN ISOLATION LEVEL SERIALIZABLE",
    }
}

/// The pause before retry `attempt`: 10 ms doubling, at most 1 s, less up to half of
/// it at random (so that two transactions that conflicted do not meet again).
fn backoff(attempt: u32) -> Duration {
    static SEED: AtomicU64 = AtomicU64::new(0x9E37_79B9_7F4A_7C15);
    let full = Duration::from_millis(10 << attempt.clamp(1, 7).saturating_sub(1))
        .min(Duration::from_secs(1));
    // A xorshift step of a process-wide seed mixed with the clock: enough to spread.
    let nanos = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos()),
    );
    let mut x = SEED.fetch_add(nanos | 1, Ordering::Relaxed) ^ nanos;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    let jitter = full.mul_f64((x % 1000) as f64 / 2000.0);
    full - jitter
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_second() {
        for attempt in 1..12 {
            let full =
                Duration::from_millis(10 << (attempt.min(7) - 1)).min(Duration::from_secs(1));
            let pause = backoff(attempt);
            assert!(pause <= full && pause >= full / 2, "{attempt}: {pause:?}");
        }
    }
}
