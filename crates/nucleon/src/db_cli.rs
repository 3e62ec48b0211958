//! `app db sync|reset|migrate|status` (feature `db`).

use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use nucleon_db::{Db, DbConfig, DbError, Schema};

use crate::App;
use crate::cli::{AppError, ConfigArgs};

/// The database commands.
#[derive(Debug, Subcommand)]
pub(crate) enum DbCommand {
    /// Create the tables of database.sql that do not exist yet, with their rows.
    Sync(DbArgs),
    /// Drop and re-create the tables of database.sql (refused in `production` without --force).
    Reset {
        #[command(flatten)]
        args: DbArgs,
        /// Reset even in the `production` environment.
        #[arg(long)]
        force: bool,
    },
    /// Run the sqlx migrations not applied yet.
    Migrate {
        #[command(flatten)]
        args: DbArgs,
        /// The migrations' directory.
        #[arg(long, value_name = "DIR", default_value = "migrations")]
        dir: PathBuf,
    },
    /// Which tables of database.sql exist, and how many migrations were applied.
    Status(DbArgs),
}

#[derive(Debug, Args, Clone)]
pub(crate) struct DbArgs {
    #[command(flatten)]
    config: ConfigArgs,
    /// The database: `[<env>.db.<NAME>]` (default: `[<env>.db]`).
    #[arg(long, value_name = "NAME")]
    database: Option<String>,
    /// The schema file (default: ./database.sql, else the app's `App::schema`).
    #[arg(long, value_name = "FILE")]
    schema: Option<PathBuf>,
}

impl DbCommand {
    fn args(&self) -> &DbArgs {
        match self {
            DbCommand::Sync(args) | DbCommand::Status(args) => args,
            DbCommand::Reset { args, .. } | DbCommand::Migrate { args, .. } => args,
        }
    }
}

/// Runs a database command on a connection of its own (no worker starts).
pub(crate) fn run(app: &App, command: DbCommand) -> Result<(), AppError> {
    let args = command.args().clone();
    let config = crate::cli::load_config(
        app,
        args.config.config.clone(),
        args.config.environment.clone(),
    )?;
    let mut settings = DbConfig::load(&config, args.database.as_deref())?;
    // A migration (an index built on a large table) may run longer than a request's
    // statement: no limit here.
    settings.statement_timeout = std::time::Duration::ZERO;
    let key = args
        .database
        .as_deref()
        .map_or_else(|| "db".to_owned(), |n| format!("db.{n}"));
    let backend = settings.backend(&key, app.name())?;
    if let DbCommand::Reset { force: false, .. } = command
        && config.environment() == "production"
    {
        return Err(DbError::Config(
            "`db reset` drops every table of the schema: refused in the production environment without --force".into(),
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(AppError::Output)?;
    let lines = runtime.block_on(async {
        let db = Db::connect(&settings, &backend, 1).await?;
        let sqlite = matches!(db.pool(), nucleon_db::Pool::Sqlite(_));
        let lines = match command {
            DbCommand::Sync(args) => {
                let report = db.sync(&schema(app, &args, sqlite).await?).await?;
                vec![format!(
                    "created: {}; already there: {}",
                    list(&report.created),
                    list(&report.existing)
                )]
            }
            DbCommand::Reset { args, .. } => {
                let report = db.reset(&schema(app, &args, sqlite).await?).await?;
                vec![format!(
                    "dropped and created again: {}",
                    list(&report.created)
                )]
            }
            DbCommand::Migrate { dir, .. } => {
                let ran = db.migrate(&dir).await?;
                vec![format!(
                    "{ran} migration(s) applied from `{}`",
                    dir.display()
                )]
            }
            DbCommand::Status(args) => {
                let mut lines = Vec::new();
                if let Ok(schema) = schema(app, &args, sqlite).await {
                    for table in schema.tables() {
                        let there = if db.table_exists(table).await? {
                            "present"
                        } else {
                            "missing"
                        };
                        lines.push(format!("table {table}: {there}"));
                    }
                }
                lines.push(format!(
                    "{} migration(s) applied",
                    db.applied_migrations().await?
                ));
                lines
            }
        };
        db.close(std::time::Duration::from_secs(5)).await;
        Ok::<_, DbError>(lines)
    })?;
    let mut out = std::io::stdout().lock();
    for line in lines {
        writeln!(out, "{line}")?;
    }
    Ok(())
}

fn list(tables: &[String]) -> String {
    if tables.is_empty() {
        "none".to_owned()
    } else {
        tables.join(", ")
    }
}

/// The schema: `--schema FILE`, else ./database.sql, else the app's own.
async fn schema(app: &App, args: &DbArgs, sqlite: bool) -> Result<Schema, DbError> {
    if let Some(file) = &args.schema {
        return Schema::read(file, sqlite).await;
    }
    let local = PathBuf::from("database.sql");
    if tokio::fs::try_exists(&local).await.unwrap_or(false) {
        return Schema::read(&local, sqlite).await;
    }
    match app.schema {
        Some(text) => Schema::parse(text, sqlite),
        None => Err(DbError::Config(
            "no schema: give --schema FILE, put database.sql in the working directory, or set App::schema".into(),
        )),
    }
}
