//! `DbAdapter`: a database as part of the service, per worker or per process.

use std::time::Instant;

use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health};

use crate::config::{Backend, DbConfig};
use crate::db::Db;
use crate::error::DbError;

/// How long the health check's `SELECT 1` may take (under the runtime's 2 s).
const HEALTH_PING: std::time::Duration = std::time::Duration::from_secs(1);

/// Where a database's pool lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// One pool per worker: PostgreSQL, whose sockets live on the worker's reactor.
    PerWorker,
    /// One pool for the process: SQLite, which sqlx runs on threads of its own.
    PerProcess,
}

/// The database adapter: reads `[<env>.db]` (or `[<env>.db.<name>]`), connects a pool at
/// start and gives it as a [`Db`] handle. Add it per worker for PostgreSQL and per
/// process for SQLite ([`DbAdapter::scope`] says which; the umbrella's `App::database`
/// does it for you).
///
/// ```no_run
/// use nucleon_db::{DbAdapter, Scope};
/// use nucleon_runtime::{Config, Runtime};
///
/// let config = Config::defaults();
/// let builder = Runtime::builder().config(config.clone());
/// let builder = match DbAdapter::new().scope(&config)? {
///     Scope::PerProcess => builder.adapter(DbAdapter::new()),
///     Scope::PerWorker => builder.per_worker(|worker| {
///         worker.adapter(DbAdapter::new());
///         Ok(())
///     }),
/// };
/// # Ok::<(), nucleon_db::DbError>(())
/// ```
#[derive(Debug, Default)]
pub struct DbAdapter {
    name: Option<String>,
    app: Option<String>,
    db: Option<Db>,
    /// Keeps the pool's connection gauges collected while the adapter runs.
    metrics: Option<nucleon_runtime::metrics::CollectorGuard>,
}

impl DbAdapter {
    /// The main database (`[<env>.db]`).
    pub fn new() -> Self {
        Self::default()
    }

    /// The database named `name` (`[<env>.db.<name>]`); its handle is found by that name
    /// (`Named<Db, N>`, [`Db::named`]).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }

    /// The application's name: with no URL configured, the database is SQLite at
    /// `data/<app>.db` (default `data/app.db`).
    pub fn app_name(mut self, app: impl Into<String>) -> Self {
        self.app = Some(app.into());
        self
    }

    fn key(&self) -> String {
        self.name
            .as_deref()
            .map_or_else(|| "db".to_owned(), |n| format!("db.{n}"))
    }

    fn backend(&self, settings: &DbConfig) -> Result<Backend, DbError> {
        settings.backend(&self.key(), self.app.as_deref().unwrap_or("app"))
    }

    /// Where this database's pool belongs, from the configuration.
    ///
    /// # Errors
    /// [`DbError::Config`] for unusable settings.
    pub fn scope(&self, config: &nucleon_runtime::Config) -> Result<Scope, DbError> {
        let settings = DbConfig::load(config, self.name.as_deref())?;
        Ok(match self.backend(&settings)? {
            Backend::Postgres => Scope::PerWorker,
            Backend::Sqlite(_) => Scope::PerProcess,
        })
    }
}

impl Adapter for DbAdapter {
    type Handle = Db;

    fn name(&self) -> &str {
        "db"
    }

    fn instance(&self) -> Option<&str> {
        self.name.as_deref()
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<Db, BoxError> {
        let settings = DbConfig::load(ctx.config(), self.name.as_deref())?;
        let backend = self.backend(&settings)?;
        let size = match (&backend, ctx.worker()) {
            (Backend::Postgres, Some(_)) => settings.per_worker(ctx.workers()),
            _ => settings.pool_size,
        };
        let db = Db::connect_as(
            &settings,
            &backend,
            size,
            self.name.as_deref().unwrap_or("default"),
        )
        .await?;
        if nucleon_runtime::metrics::enabled() {
            self.metrics = Some(crate::metrics::watch_pool(
                &db.inner.metrics_name,
                ctx.worker(),
                db.pool(),
            ));
        }
        match &backend {
            Backend::Postgres => {
                tracing::info!(target: "nucleon::db", worker = ?ctx.worker(), database = self.key(), "PostgreSQL pool of {size} connection(s)");
            }
            Backend::Sqlite(path) => {
                tracing::info!(target: "nucleon::db", database = self.key(), "SQLite at {} ({size} connection(s), WAL)", path.display());
            }
        }
        self.db = Some(db.clone());
        Ok(db)
    }

    /// A `SELECT 1` within a second: a pool whose every connection is busy is
    /// degraded (still serving), not unhealthy; a database that does not answer is.
    async fn health(&self) -> Health {
        let Some(db) = &self.db else {
            return Health::Unhealthy("not started".into());
        };
        let ping = tokio::time::timeout(HEALTH_PING, db.query("SELECT 1").execute()).await;
        match ping {
            Ok(Ok(_)) => Health::Healthy,
            _ if db.all_busy() => {
                Health::Degraded("every connection of the pool is in use (db.pool_size)".into())
            }
            Ok(Err(error)) => Health::Unhealthy(error.to_string()),
            Err(_) => Health::Unhealthy(format!("no answer to SELECT 1 within {HEALTH_PING:?}")),
        }
    }

    async fn stop(&mut self, deadline: Instant) -> Result<(), BoxError> {
        self.metrics = None;
        let Some(db) = self.db.take() else {
            return Ok(());
        };
        if db
            .close(deadline.saturating_duration_since(Instant::now()))
            .await
        {
            Ok(())
        } else {
            Err("connections still in use at the deadline".into())
        }
    }
}

/// Syncs a schema (`database.sql`'s text) at start, on the database given before it:
/// the tables missing are created with their rows (see [`Db::sync`]). Add it after
/// the database's adapter, per worker (syncs are serialized; each table is created
/// once). For development and embedded databases, so a new service runs with no
/// set-up; in production, `app db sync` or migrations are the usual way.
#[derive(Debug, Clone)]
pub struct SchemaSync {
    schema: &'static str,
    database: Option<String>,
}

impl SchemaSync {
    /// Syncs `schema` on the main database.
    pub fn new(schema: &'static str) -> Self {
        Self {
            schema,
            database: None,
        }
    }

    /// Syncs on the database named `name` instead.
    pub fn on(mut self, name: impl Into<String>) -> Self {
        self.database = Some(name.into());
        self
    }
}

impl Adapter for SchemaSync {
    type Handle = ();

    fn name(&self) -> &str {
        "schema-sync"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
        let db = match &self.database {
            Some(name) => Db::named(name),
            None => Db::current(),
        }
        .ok_or("no database to sync: add the database's adapter before SchemaSync")?;
        let schema =
            crate::Schema::parse(self.schema, matches!(db.pool(), crate::Pool::Sqlite(_)))?;
        let report = db.sync(&schema).await?;
        if !report.created.is_empty() {
            tracing::info!(target: "nucleon::db", tables = ?report.created, "created table(s) {}", report.created.join(", "));
        }
        Ok(())
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        Ok(())
    }
}
