//! `Db`: a database's handle, one API over a PostgreSQL or an SQLite pool.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool};

use crate::config::{Backend, DbConfig};
use crate::error::DbError;
use crate::query::{Query, Sql, Target};
use crate::transaction::Transaction;

/// A database: a pool of connections and the query API over it. The handle that
/// [`crate::DbAdapter`] gives, the same type for PostgreSQL (a pool per worker) and
/// SQLite (one pool per process); handlers take it as `Dep<Db>`, other code finds it
/// with [`Db::current`]. Cheap to clone.
///
/// ```no_run
/// # async fn f(db: nucleon_db::Db) -> Result<(), nucleon_db::DbError> {
/// use nucleon_db::Sql;
///
/// const COUNTRY_NAME: Sql = Sql::named("countries.name", "SELECT name FROM countries WHERE code = $1");
///
/// let name: String = db.query(COUNTRY_NAME).bind("gb").value().await?;
/// let codes: Vec<String> = db.query("SELECT code FROM countries ORDER BY code").flat().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Db {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub(crate) pool: Pool,
    /// A query slower than this is logged.
    pub(crate) slow_query: Duration,
    pub(crate) statement_timeout: Option<Duration>,
    /// The database's name in metrics: `default`, or its `[<env>.db.<name>]`.
    pub(crate) metrics_name: String,
}

/// The pool under a [`Db`], for what the query API does not cover: sqlx's own
/// compile-time-checked macros (`sqlx::query!(…).fetch_one(pool)`), `COPY`, types the
/// API does not bind.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Pool {
    /// A PostgreSQL pool (this worker's).
    Postgres(PgPool),
    /// An SQLite pool (the process's).
    Sqlite(SqlitePool),
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner.pool {
            Pool::Postgres(_) => "postgres",
            Pool::Sqlite(_) => "sqlite",
        };
        f.debug_struct("Db")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}

impl Db {
    /// Connects a pool as `settings` say, of `size` connections, and checks that one
    /// connection works (a failed start names the cause).
    ///
    /// # Errors
    /// [`DbError::Config`] for unusable settings, [`DbError::Unavailable`] when the
    /// database cannot be reached.
    pub async fn connect(
        settings: &DbConfig,
        backend: &Backend,
        size: u32,
    ) -> Result<Self, DbError> {
        Self::connect_as(settings, backend, size, "default").await
    }

    /// [`Db::connect`], for the database that metrics name `name`.
    pub(crate) async fn connect_as(
        settings: &DbConfig,
        backend: &Backend,
        size: u32,
        name: &str,
    ) -> Result<Self, DbError> {
        let pool = match backend {
            Backend::Postgres => Pool::Postgres(connect_postgres(settings, size).await?),
            Backend::Sqlite(path) => Pool::Sqlite(connect_sqlite(settings, path, size).await?),
        };
        let db = Db {
            inner: Arc::new(Inner {
                pool,
                slow_query: settings.slow_query,
                statement_timeout: (!settings.statement_timeout.is_zero())
                    .then_some(settings.statement_timeout),
                metrics_name: name.to_owned(),
            }),
        };
        db.first_check(backend, settings.busy_timeout)
            .await
            .map_err(|e| match e {
                DbError::Unavailable { reason } => DbError::Unavailable {
                    reason: format!("{reason} (at start)"),
                },
                other => other,
            })?;
        Ok(db)
    }

    /// The start's `SELECT 1`, which opens the first connection. Several pools opening
    /// one new SQLite file at once (the tests of one app, each with its own runtime)
    /// can have a connection's set-up (`journal_mode = WAL`) refused as busy without
    /// SQLite's busy timeout being waited on; that is tried again, within the busy
    /// timeout, every 20 ms.
    async fn first_check(&self, backend: &Backend, busy_timeout: Duration) -> Result<(), DbError> {
        let deadline = tokio::time::Instant::now() + busy_timeout;
        loop {
            match self.query("SELECT 1").execute().await {
                Err(DbError::Retryable { .. })
                    if matches!(backend, Backend::Sqlite(_))
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other.map(drop),
            }
        }
    }

    /// The current worker's database (the unnamed one): [`DbAdapter`](crate::DbAdapter)'s
    /// handle, found where the caller runs.
    pub fn current() -> Option<Self> {
        nucleon_runtime::handle::get::<Db>()
    }

    /// The database named `name` (`[<env>.db.<name>]`).
    pub fn named(name: &str) -> Option<Self> {
        nucleon_runtime::handle::named::<Db>(name)
    }

    /// A query on this database: bind its parameters, then take its result as rows, a
    /// column, one row, one value, the rows affected, or a stream.
    pub fn query(&self, sql: impl Into<Sql>) -> Query<'_> {
        Query::new(Target::Db(self), sql.into(), None)
    }

    /// A transaction running `body`: all its queries commit, or none. `body` may run
    /// more than once with [`Transaction::retries`], so it must not have effects
    /// outside the database that cannot be repeated.
    ///
    /// ```no_run
    /// # async fn f(db: nucleon_db::Db) -> Result<(), nucleon_db::DbError> {
    /// let moved = db
    ///     .transaction(async |tx| {
    ///         tx.query("UPDATE accounts SET balance = balance - $1 WHERE id = $2")
    ///             .bind(10).bind(1).execute().await?;
    ///         tx.query("UPDATE accounts SET balance = balance + $1 WHERE id = $2")
    ///             .bind(10).bind(2).execute().await
    ///     })
    ///     .retries(3)
    ///     .await?;
    /// # Ok(()) }
    /// ```
    pub fn transaction<F, T>(&self, body: F) -> Transaction<'_, F>
    where
        F: AsyncFnMut(&mut crate::Tx) -> Result<T, DbError>,
    {
        Transaction::new(self, body)
    }

    /// Whether every connection the pool may open is open and in use.
    pub(crate) fn all_busy(&self) -> bool {
        let (size, idle, max) = match &self.inner.pool {
            Pool::Postgres(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
            Pool::Sqlite(pool) => (
                pool.size(),
                pool.num_idle(),
                pool.options().get_max_connections(),
            ),
        };
        size >= max && idle == 0
    }

    /// The pool, for raw sqlx.
    pub fn pool(&self) -> &Pool {
        &self.inner.pool
    }

    /// Closes the pool: waits for connections in use to come back, by `timeout`.
    pub async fn close(&self, timeout: Duration) -> bool {
        let close = async {
            match &self.inner.pool {
                Pool::Postgres(pool) => pool.close().await,
                Pool::Sqlite(pool) => pool.close().await,
            }
        };
        tokio::time::timeout(timeout, close).await.is_ok()
    }
}

async fn connect_postgres(settings: &DbConfig, size: u32) -> Result<PgPool, DbError> {
    let url = settings
        .url
        .as_ref()
        .ok_or_else(|| DbError::Config("a PostgreSQL database needs db.url".into()))?;
    let mut options = PgConnectOptions::from_str(without_unknown_secrets(url.expose()).as_str())
        .map_err(|e| DbError::Config(format!("db.url `{url}`: {e}")))?;
    if !settings.statement_timeout.is_zero() {
        let millis = settings.statement_timeout.as_millis().to_string();
        options = options.options([("statement_timeout", millis.as_str())]);
    }
    let options = resolve(options).await?;
    Ok(pool_options::<sqlx::Postgres>(settings, size).connect_lazy_with(options))
}

/// The URL without the secret-like parameters sqlx does not take (`sslpassword`…):
/// sqlx logs a parameter it does not know with its value, in clear.
fn without_unknown_secrets(url: &url::Url) -> url::Url {
    const KNOWN: [&str; 4] = ["password", "sslkey", "sslcert", "sslrootcert"];
    let secret = |key: &str| {
        let key = key.to_ascii_lowercase();
        !KNOWN.contains(&key.as_str())
            && ["pass", "pwd", "secret", "token", "key", "credential"]
                .iter()
                .any(|s| key.contains(s))
    };
    let mut clean = url.clone();
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .filter(|(key, _)| {
            let drop = secret(key);
            if drop {
                tracing::warn!(target: "nucleon::db", "db.url: parameter `{key}` is not supported and is left out");
            }
            !drop
        })
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    if url.query().is_some() {
        clean.set_query(None);
        if !pairs.is_empty() {
            clean.query_pairs_mut().extend_pairs(pairs);
        }
    }
    clean
}

/// The host's address, through nucleon-dns (feature `dns`): sqlx connects to it, and the
/// name still serves TLS (SNI, and the certificate check of `sslmode=verify-full`). The
/// address is found when the pool is made (at the worker's start): a database that
/// moves to another address is found again at the next start.
#[cfg(feature = "dns")]
async fn resolve(options: PgConnectOptions) -> Result<PgConnectOptions, DbError> {
    let host = options.get_host().to_owned();
    if host.starts_with('/') || host.parse::<std::net::IpAddr>().is_ok() {
        return Ok(options);
    }
    // Happy Eyeballs over the host's addresses: the one that answers is the one used
    // (`localhost` is ::1 and 127.0.0.1; a server may listen on one of them only).
    let probe = nucleon_dns::connect_tcp(&host, options.get_port())
        .await
        .map_err(|e| DbError::Unavailable {
            reason: format!("cannot reach the database host `{host}`: {e}"),
        })?;
    let addr = probe.peer_addr().map_err(|e| DbError::Unavailable {
        reason: format!("cannot reach the database host `{host}`: {e}"),
    })?;
    drop(probe);
    tracing::debug!(target: "nucleon::db", host, addr = %addr.ip(), "database host resolved through nucleon-dns");
    Ok(options.hostaddr(addr.ip()))
}

/// Without nucleon-dns, sqlx resolves the host name itself.
#[cfg(not(feature = "dns"))]
async fn resolve(options: PgConnectOptions) -> Result<PgConnectOptions, DbError> {
    Ok(options)
}

async fn connect_sqlite(
    settings: &DbConfig,
    path: &Path,
    size: u32,
) -> Result<SqlitePool, DbError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        tokio::fs::create_dir_all(parent).await.map_err(|e| {
            DbError::Config(format!(
                "cannot create `{}` for the SQLite database: {e}",
                parent.display()
            ))
        })?;
    }
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .busy_timeout(settings.busy_timeout)
        .foreign_keys(true);
    Ok(pool_options::<sqlx::Sqlite>(settings, size).connect_lazy_with(options))
}

fn pool_options<DB: sqlx::Database>(settings: &DbConfig, size: u32) -> sqlx::pool::PoolOptions<DB> {
    sqlx::pool::PoolOptions::<DB>::new()
        .max_connections(size)
        .min_connections(0)
        .acquire_timeout(settings.acquire_timeout)
        .idle_timeout(settings.idle_timeout)
        .max_lifetime(settings.max_lifetime)
        // A connection the server closed (a restart) is found out before it is handed
        // out, not by the request that gets it.
        .test_before_acquire(true)
}
