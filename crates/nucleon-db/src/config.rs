//! `[<env>.db]`: where the database is and how its pool behaves.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use nucleon_runtime::config::{SecretUrl, duration};
use serde::Deserialize;

use crate::error::DbError;

/// A database's settings: `[<env>.db]` for the main one, `[<env>.db.<name>]` for
/// others (`[production.db.reporting]`).
///
/// ```toml
/// [default.db]
/// # No url: embedded SQLite at data/<app>.db, created on first start.
///
/// [production.db]
/// url = "postgres://orders:secret@db.internal/orders"   # never logged: a SecretUrl
/// pool_size = 20            # for the whole process, split over the workers
/// acquire_timeout = "3s"    # past it, a request gets 503
/// statement_timeout = "30s" # PostgreSQL cancels a query past it (504)
///
/// [production.db.reporting]
/// url = "postgres://reports@replica.internal/orders"
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct DbConfig {
    /// `postgres://user:password@host:port/database?sslmode=require`, or
    /// `sqlite://path/to/file.db`. None: SQLite at `data/<app>.db`.
    pub url: Option<SecretUrl>,
    /// Connections for the whole process (default 10). PostgreSQL pools are per worker:
    /// each gets `pool_size / workers`, rounded down, and at least one (so with more
    /// workers than `pool_size`, the process opens one per worker). SQLite has one pool
    /// per process, of this size (its writers take turns anyway).
    /// The time to open a connection counts in `acquire_timeout`.
    pub pool_size: u32,
    /// How long a query waits for a free connection (or a new one to connect) before it
    /// fails with `Unavailable` (503) (default 3 s).
    #[serde(with = "duration")]
    pub acquire_timeout: Duration,
    /// How long one statement may run before PostgreSQL cancels it (`Timeout`, 504)
    /// (default 30 s; `"0s"` for none). Not applied to SQLite, whose queries run on
    /// the driver's own threads.
    #[serde(with = "duration")]
    pub statement_timeout: Duration,
    /// A connection idle this long is closed (default 10 min).
    #[serde(with = "duration")]
    pub idle_timeout: Duration,
    /// A connection this old is closed when next returned (default 30 min).
    #[serde(with = "duration")]
    pub max_lifetime: Duration,
    /// A query slower than this is logged (warn, with its name and time) (default
    /// 250 ms).
    #[serde(with = "duration")]
    pub slow_query: Duration,
    /// SQLite: how long a writer waits for the database's lock (default 5 s).
    #[serde(with = "duration")]
    pub busy_timeout: Duration,
    /// Other databases (`[<env>.db.reporting]`); anything here that is not a table is a
    /// typo, refused at start.
    #[serde(flatten)]
    pub(crate) others: BTreeMap<String, serde_json::Value>,
}

impl Default for DbConfig {
    fn default() -> Self {
        Self {
            url: None,
            pool_size: 10,
            acquire_timeout: Duration::from_secs(3),
            statement_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(600),
            max_lifetime: Duration::from_secs(1800),
            slow_query: Duration::from_millis(250),
            busy_timeout: Duration::from_secs(5),
            others: BTreeMap::new(),
        }
    }
}

/// What a database URL points at.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    /// A PostgreSQL server.
    Postgres,
    /// An SQLite file.
    Sqlite(PathBuf),
}

impl DbConfig {
    /// Reads `[<env>.db]` (`name` None) or `[<env>.db.<name>]` from `config`, and checks it.
    ///
    /// # Errors
    /// [`DbError::Config`] naming the key.
    pub fn load(config: &nucleon_runtime::Config, name: Option<&str>) -> Result<Self, DbError> {
        let key = name.map_or_else(|| "db".to_owned(), |n| format!("db.{n}"));
        let settings: DbConfig = config
            .extract_at(&key)
            .map_err(|e| DbError::Config(e.to_string()))?;
        settings.check(&key)?;
        Ok(settings)
    }

    /// Refuses what cannot work, naming the key under `key`.
    fn check(&self, key: &str) -> Result<(), DbError> {
        if let Some((other, _)) = self.others.iter().find(|(_, v)| !v.is_object()) {
            return Err(DbError::Config(format!(
                "`{key}.{other}` is not a setting (url, pool_size, acquire_timeout, statement_timeout, idle_timeout, max_lifetime, slow_query, busy_timeout), nor a table of another database"
            )));
        }
        if self.pool_size == 0 {
            return Err(DbError::Config(format!(
                "`{key}.pool_size` is 0: a pool needs at least one connection"
            )));
        }
        self.backend(key, "app").map(|_| ())
    }

    /// The backend the URL names; with none, SQLite at `data/<app>.db`.
    ///
    /// # Errors
    /// [`DbError::Config`] for a URL of another kind.
    pub fn backend(&self, key: &str, app: &str) -> Result<Backend, DbError> {
        let Some(url) = &self.url else {
            return Ok(Backend::Sqlite(PathBuf::from(format!("data/{app}.db"))));
        };
        let url = url.expose();
        match url.scheme() {
            "postgres" | "postgresql" => Ok(Backend::Postgres),
            "sqlite" => {
                // sqlite://relative/path.db, sqlite:///absolute/path.db, sqlite:name.db
                let path = format!("{}{}", url.host_str().unwrap_or(""), url.path());
                if path.is_empty() {
                    return Err(DbError::Config(format!(
                        "`{key}.url`: an sqlite URL names a file (sqlite://data/app.db)"
                    )));
                }
                Ok(Backend::Sqlite(PathBuf::from(path)))
            }
            other => Err(DbError::Config(format!(
                "`{key}.url`: `{other}` databases are not supported (postgres://… or sqlite://…)"
            ))),
        }
    }

    /// This worker's share of `pool_size` among `workers`: rounded down, at least one.
    pub fn per_worker(&self, workers: usize) -> u32 {
        let workers = u32::try_from(workers.max(1)).unwrap_or(u32::MAX);
        (self.pool_size / workers).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, name: Option<&str>) -> Result<DbConfig, DbError> {
        let config = nucleon_runtime::Config::from_toml(toml, "default").unwrap();
        DbConfig::load(&config, name)
    }

    #[test]
    fn defaults_are_embedded_sqlite() {
        let settings = load("[default]\n", None).unwrap();
        assert_eq!(
            settings.backend("db", "orders").unwrap(),
            Backend::Sqlite("data/orders.db".into())
        );
        assert_eq!(settings.per_worker(4), 2);
        assert_eq!(settings.per_worker(3), 3);
        assert_eq!(settings.per_worker(16), 1);
    }

    #[test]
    fn named_databases_and_typos() {
        let toml = r#"
[default.db]
url = "postgres://app:s3cret@db.internal/orders"
pool_size = 4

[default.db.reporting]
url = "sqlite://data/reports.db"
"#;
        let main = load(toml, None).unwrap();
        assert_eq!(main.backend("db", "x").unwrap(), Backend::Postgres);
        assert!(!format!("{main:?}").contains("s3cret"));
        let reporting = load(toml, Some("reporting")).unwrap();
        assert_eq!(
            reporting.backend("db.reporting", "x").unwrap(),
            Backend::Sqlite("data/reports.db".into())
        );
        let typo = load("[default.db]\npool_sise = 3\n", None).unwrap_err();
        assert!(
            typo.to_string().contains("`db.pool_sise` is not a setting"),
            "{typo}"
        );
        let mysql = load("[default.db]\nurl = \"mysql://x@y/z\"\n", None).unwrap_err();
        assert!(mysql.to_string().contains("`db.url`"), "{mysql}");
    }
}
