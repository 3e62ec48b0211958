//! `database.sql`: the original framework's `syncdb` and `resetdb`, and sqlx migrations.

use std::path::Path;

use sqlparser::ast::{ObjectName, Statement, TableObject};
use sqlparser::dialect::{PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use crate::db::{Db, Pool};
use crate::error::DbError;

/// A schema file (`database.sql`), parsed with a real SQL parser: its tables, what
/// belongs to each (`CREATE INDEX … ON t`, `INSERT INTO t …`), in file order.
#[derive(Debug, Clone)]
pub struct Schema {
    statements: Vec<(Belongs, String)>,
}

/// Which table a statement belongs to.
#[derive(Debug, Clone, PartialEq)]
enum Belongs {
    /// It creates this table.
    Creates(Table),
    /// It fills or indexes this table.
    Follows(Table),
    /// Neither: it is not run by `sync` (a warning says so).
    Other,
}

/// A table's name as written (`"Orders"`, `app.orders`: what the database is asked
/// about), and as compared (unquoted parts folded to lower case, as PostgreSQL folds
/// them, and SQLite compares them).
#[derive(Debug, Clone)]
struct Table {
    written: String,
    key: String,
}

impl PartialEq for Table {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Table {
    fn new(name: &ObjectName) -> Self {
        let key = name
            .0
            .iter()
            .map(|part| match part.as_ident() {
                Some(ident) if ident.quote_style.is_some() => ident.value.clone(),
                Some(ident) => ident.value.to_lowercase(),
                None => part.to_string().to_lowercase(),
            })
            .collect::<Vec<_>>()
            .join(".");
        Self {
            written: name.to_string(),
            key,
        }
    }
}

/// What [`Db::sync`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// The tables created (in file order).
    pub created: Vec<String>,
    /// The tables that were already there, left alone.
    pub existing: Vec<String>,
}

impl Schema {
    /// Parses `sql` (PostgreSQL's dialect, or SQLite's when `sqlite`).
    ///
    /// # Errors
    /// [`DbError::Config`] with the parser's message (line and column).
    pub fn parse(sql: &str, sqlite: bool) -> Result<Self, DbError> {
        let parsed = if sqlite {
            Parser::parse_sql(&SQLiteDialect {}, sql)
        } else {
            Parser::parse_sql(&PostgreSqlDialect {}, sql)
        }
        .map_err(|e| DbError::Config(format!("database.sql: {e}")))?;
        let statements = parsed
            .into_iter()
            .map(|statement| {
                let belongs = match &statement {
                    Statement::CreateTable(create) => Belongs::Creates(Table::new(&create.name)),
                    Statement::CreateIndex(index) => {
                        Belongs::Follows(Table::new(&index.table_name))
                    }
                    Statement::Insert(insert) => match &insert.table {
                        TableObject::TableName(name) => Belongs::Follows(Table::new(name)),
                        _ => Belongs::Other,
                    },
                    _ => Belongs::Other,
                };
                (belongs, statement.to_string())
            })
            .collect();
        Ok(Self { statements })
    }

    /// Reads and parses a file.
    ///
    /// # Errors
    /// [`DbError::Config`] when it cannot be read or parsed.
    pub async fn read(path: &Path, sqlite: bool) -> Result<Self, DbError> {
        let text = tokio::fs::read_to_string(path)
            .await
            .map_err(|e| DbError::Config(format!("cannot read `{}`: {e}", path.display())))?;
        Self::parse(&text, sqlite)
    }

    /// The tables it creates, in file order, as written (`"Orders"`, `app.orders`).
    pub fn tables(&self) -> Vec<&str> {
        self.statements
            .iter()
            .filter_map(|(belongs, _)| match belongs {
                Belongs::Creates(table) => Some(table.written.as_str()),
                _ => None,
            })
            .collect()
    }
}

/// Whether an SQLite table exists, its name compared as SQLite compares names.
const SQLITE_TABLE_EXISTS: &str = r#"SELECT count(*) > 0 FROM sqlite_master WHERE type = 'table' AND lower(name) = lower(trim($1, '"'))"#;

impl Db {
    /// Whether `table` exists (its name as written in SQL: `"Orders"` with its quotes;
    /// on the search path, for PostgreSQL).
    ///
    /// # Errors
    /// As any query.
    pub async fn table_exists(&self, table: &str) -> Result<bool, DbError> {
        let sql = match self.pool() {
            Pool::Postgres(_) => "SELECT to_regclass($1) IS NOT NULL",
            Pool::Sqlite(_) => SQLITE_TABLE_EXISTS,
        };
        self.query(sql).bind(table).value().await
    }

    /// The original framework's `syncdb`: creates the tables of `schema` that do not
    /// exist yet, with their indexes, and runs the INSERTs of the tables it created; the
    /// tables already there are left alone. One transaction, taken by one process at a
    /// time (several workers or instances starting at once create each table once).
    ///
    /// # Errors
    /// The first statement that failed (nothing of the sync is kept).
    pub async fn sync(&self, schema: &Schema) -> Result<SyncReport, DbError> {
        let report = self
            .transaction(async |tx| {
                if matches!(self.pool(), Pool::Postgres(_)) {
                    tx.query("SELECT pg_advisory_xact_lock(7261927364)").execute().await?;
                }
                let mut report = SyncReport::default();
                let mut created: Vec<Table> = Vec::new();
                for (belongs, sql) in &schema.statements {
                    match belongs {
                        Belongs::Creates(table) => {
                            let sql = match self.pool() {
                                Pool::Postgres(_) => "SELECT to_regclass($1) IS NOT NULL",
                                Pool::Sqlite(_) => SQLITE_TABLE_EXISTS,
                            };
                            let exists: bool = tx.query(sql).bind(table.written.as_str()).value().await?;
                            if exists {
                                report.existing.push(table.written.clone());
                                continue;
                            }
                            report.created.push(table.written.clone());
                            created.push(table.clone());
                        }
                        Belongs::Follows(table) if created.contains(table) => {}
                        Belongs::Follows(_) => continue,
                        Belongs::Other => {
                            tracing::warn!(target: "nucleon::db", "database.sql: `{sql}` belongs to no table: sync skips it");
                            continue;
                        }
                    }
                    tx.query(sql.clone()).execute().await?;
                }
                Ok(report)
            })
            .await?;
        Ok(report)
    }

    /// The original framework's `resetdb`: drops the tables of `schema` (in reverse
    /// order, with what depends on them) and creates them again, with their rows.
    /// Everything in them is lost: refuse it in production (the command line does).
    ///
    /// # Errors
    /// The first statement that failed.
    pub async fn reset(&self, schema: &Schema) -> Result<SyncReport, DbError> {
        let cascade = matches!(self.pool(), Pool::Postgres(_));
        for table in schema.tables().into_iter().rev() {
            let drop = if cascade {
                format!("DROP TABLE IF EXISTS {table} CASCADE")
            } else {
                format!("DROP TABLE IF EXISTS {table}")
            };
            self.query(drop).execute().await?;
        }
        self.sync(schema).await
    }

    /// Runs the sqlx migrations of `dir` (`migrations/`) not applied yet.
    ///
    /// # Errors
    /// [`DbError::Config`] for unreadable migrations; a failing migration's error.
    pub async fn migrate(&self, dir: &Path) -> Result<usize, DbError> {
        let migrator = sqlx::migrate::Migrator::new(dir.to_path_buf())
            .await
            .map_err(|e| DbError::Config(format!("migrations in `{}`: {e}", dir.display())))?;
        let before = self.applied_migrations().await?;
        let ran = match self.pool() {
            Pool::Postgres(pool) => migrator.run(pool).await,
            Pool::Sqlite(pool) => migrator.run(pool).await,
        };
        ran.map_err(|e| DbError::BadQuery {
            query: format!("migrations in `{}`", dir.display()),
            message: e.to_string(),
        })?;
        Ok(self.applied_migrations().await?.saturating_sub(before))
    }

    /// How many sqlx migrations were applied (0 before the first).
    ///
    /// # Errors
    /// As any query.
    pub async fn applied_migrations(&self) -> Result<usize, DbError> {
        if !self.table_exists("_sqlx_migrations").await? {
            return Ok(0);
        }
        let n: i64 = self
            .query("SELECT count(*) FROM _sqlx_migrations WHERE success")
            .value()
            .await?;
        Ok(usize::try_from(n).unwrap_or_default())
    }
}
