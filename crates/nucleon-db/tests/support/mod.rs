//! Databases for tests: a PostgreSQL schema of its own per test (so tests run in
//! parallel), or an SQLite file in a temp dir.

#![allow(
    dead_code,
    unreachable_pub,
    missing_docs,
    reason = "each test file uses part of it"
)]

use nucleon_db::{Backend, Db, DbConfig};
use nucleon_runtime::config::SecretUrl;

/// A database for one test; a PostgreSQL schema is dropped when it goes.
pub struct TestDb {
    pub db: Db,
    pub settings: DbConfig,
    pub backend: Backend,
    schema: Option<(String, String)>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    /// Another pool on the same database (a second "process").
    pub async fn another(&self, size: u32) -> Db {
        Db::connect(&self.settings, &self.backend, size)
            .await
            .unwrap()
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Some((url, schema)) = self.schema.take() {
            // A blocking client in a test's teardown, on a thread of its own.
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let settings = settings_for(&url, None);
                    if let Ok(db) = Db::connect(&settings, &Backend::Postgres, 1).await {
                        let _ = db
                            .query(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                            .execute()
                            .await;
                    }
                });
            })
            .join()
            .unwrap();
        }
    }
}

fn settings_for(url: &str, configure: Option<&dyn Fn(&mut DbConfig)>) -> DbConfig {
    let mut settings = DbConfig::default();
    settings.url = Some(url.parse::<SecretUrl>().unwrap());
    if let Some(configure) = configure {
        configure(&mut settings);
    }
    settings
}

/// A fresh schema on the test PostgreSQL; `None` when skipped on purpose.
pub async fn postgres(test: &str, configure: impl Fn(&mut DbConfig)) -> Option<TestDb> {
    let url = nucleon_testkit::postgres_url()?;
    let schema = format!("t_{}_{}", test, std::process::id());
    let admin = Db::connect(&settings_for(&url, None), &Backend::Postgres, 1)
        .await
        .unwrap();
    admin
        .query(format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .execute()
        .await
        .unwrap();
    admin
        .query(format!("CREATE SCHEMA {schema}"))
        .execute()
        .await
        .unwrap();
    let separator = if url.contains('?') { '&' } else { '?' };
    let scoped = format!("{url}{separator}options=-c%20search_path%3D{schema}");
    let settings = settings_for(&scoped, Some(&configure));
    let db = Db::connect(&settings, &Backend::Postgres, settings.pool_size)
        .await
        .unwrap();
    Some(TestDb {
        db,
        settings,
        backend: Backend::Postgres,
        schema: Some((url, schema)),
        _dir: None,
    })
}

/// A fresh SQLite file in a temp dir.
pub async fn sqlite(configure: impl Fn(&mut DbConfig)) -> TestDb {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/test.db");
    let mut settings = DbConfig::default();
    configure(&mut settings);
    let backend = Backend::Sqlite(path);
    let db = Db::connect(&settings, &backend, settings.pool_size)
        .await
        .unwrap();
    TestDb {
        db,
        settings,
        backend,
        schema: None,
        _dir: Some(dir),
    }
}
