//! LISTEN/NOTIFY: PostgreSQL's way to tell every worker and every process of a change.

use std::time::Duration;

use futures_util::Stream;
use sqlx::postgres::PgListener;

use crate::db::{Db, Pool};
use crate::error::DbError;

/// One notification: its channel and payload (`NOTIFY orders, '42'`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    /// The channel it was sent on.
    pub channel: String,
    /// Its payload (empty when none was given).
    pub payload: String,
}

/// The notifications of some channels, on a connection of their own that reconnects by
/// itself: a link that drops is logged and re-established (with the `LISTEN`s again),
/// with a backoff while the database is away. Notifications sent while the link was down
/// are lost (PostgreSQL does not keep them): after a reconnect, re-read what matters.
///
/// The way to tell every worker and every process about a change (a cache to drop, a
/// setting changed): each listens, anyone notifies ([`Db::notify`]).
///
/// ```no_run
/// # async fn f(db: nucleon_db::Db) -> Result<(), nucleon_db::DbError> {
/// let mut changes = db.listen(&["prices"]).await?;
/// loop {
///     let change = changes.next().await;
///     tracing::info!("price of {} changed", change.payload);
/// }
/// # }
/// ```
pub struct Notifications {
    listener: PgListener,
}

impl std::fmt::Debug for Notifications {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifications").finish_non_exhaustive()
    }
}

impl Notifications {
    /// The next notification; waits as long as it takes, reconnecting as needed.
    pub async fn next(&mut self) -> Notification {
        let mut failures = 0_u32;
        loop {
            match self.listener.try_recv().await {
                Ok(Some(notification)) => {
                    return Notification {
                        channel: notification.channel().to_owned(),
                        payload: notification.payload().to_owned(),
                    };
                }
                Ok(None) => {
                    tracing::warn!(target: "nucleon::db", "LISTEN connection lost: reconnecting (notifications sent meanwhile are lost)");
                }
                Err(error) => {
                    failures += 1;
                    let pause =
                        Duration::from_millis(100 << failures.min(6)).min(Duration::from_secs(5));
                    tracing::warn!(target: "nucleon::db", %error, "LISTEN cannot reconnect: {error}; trying again in {pause:?}");
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }

    /// The notifications as a stream (it never ends).
    pub fn into_stream(self) -> impl Stream<Item = Notification> {
        futures_util::stream::unfold(self, |mut this| async move {
            let next = this.next().await;
            Some((next, this))
        })
    }
}

impl Db {
    /// Listens on `channels` (PostgreSQL), on a connection of its own.
    ///
    /// # Errors
    /// [`DbError::Config`] on SQLite (no LISTEN/NOTIFY); [`DbError::Unavailable`] when
    /// the first connection cannot be made.
    pub async fn listen(&self, channels: &[&str]) -> Result<Notifications, DbError> {
        let Pool::Postgres(pool) = self.pool() else {
            return Err(DbError::Config("LISTEN/NOTIFY needs PostgreSQL".into()));
        };
        // A connection of its own, outside the worker's pool (which it would take one
        // connection from for good), made as the pool's are.
        let own = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(pool.options().get_acquire_timeout())
            .connect_lazy_with((*pool.connect_options()).clone());
        let mut listener = PgListener::connect_with(&own)
            .await
            .map_err(|e| DbError::from_sqlx("LISTEN", e))?;
        listener.eager_reconnect(true);
        listener
            .listen_all(channels.iter().copied())
            .await
            .map_err(|e| DbError::from_sqlx("LISTEN", e))?;
        Ok(Notifications { listener })
    }

    /// Sends `payload` on `channel` to every listener (PostgreSQL's `pg_notify`): at the
    /// commit of the transaction it is part of, or at once outside one.
    ///
    /// # Errors
    /// As any query; [`DbError::Config`] on SQLite.
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), DbError> {
        if let Pool::Sqlite(_) = self.pool() {
            return Err(DbError::Config("LISTEN/NOTIFY needs PostgreSQL".into()));
        }
        self.query("SELECT pg_notify($1, $2)::text")
            .bind(channel)
            .bind(payload)
            .execute()
            .await
            .map(|_| ())
    }
}
