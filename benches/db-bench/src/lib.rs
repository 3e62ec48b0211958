//! What the database benchmark's servers share: the table, the query, the row.

use serde::Serialize;

/// The table, created by the nucleon server at start (`App::schema`) and read by both.
pub const SCHEMA: &str = "
CREATE TABLE bench_countries (code TEXT PRIMARY KEY, name TEXT NOT NULL, population BIGINT NOT NULL);
INSERT INTO bench_countries (code, name, population) VALUES
    ('de', 'Germany', 84000000), ('fr', 'France', 68000000), ('gb', 'United Kingdom', 67000000),
    ('jp', 'Japan', 124000000), ('us', 'United States', 335000000);
";

/// The query: one row by primary key.
pub const BY_CODE: &str = "SELECT code, name, population FROM bench_countries WHERE code = $1";

/// A row, served as JSON.
#[derive(Debug, Serialize, sqlx::FromRow)]
pub struct Country {
    /// Its code.
    pub code: String,
    /// Its name.
    pub name: String,
    /// Its population.
    pub population: i64,
}

/// `--port P -j N --url URL --pool N` (defaults: 8080, 1 worker, the local PostgreSQL, 10).
#[derive(Debug, Clone)]
pub struct Args {
    /// The port on 127.0.0.1.
    pub port: u16,
    /// Worker threads.
    pub workers: usize,
    /// The database.
    pub url: String,
    /// Connections per worker.
    pub pool: u32,
}

impl Args {
    /// Parses the process's arguments.
    pub fn parse() -> Self {
        let mut args = Self {
            port: 8080,
            workers: 1,
            url: "postgres://postgres@127.0.0.1:5432/postgres".into(),
            pool: 10,
        };
        let mut it = std::env::args().skip(1);
        while let Some(flag) = it.next() {
            let value = it.next().unwrap_or_else(|| panic!("{flag} needs a value"));
            match flag.as_str() {
                "--port" => args.port = value.parse().expect("--port"),
                "-j" => args.workers = value.parse().expect("-j"),
                "--url" => args.url = value,
                "--pool" => args.pool = value.parse().expect("--pool"),
                other => panic!("unknown flag {other}"),
            }
        }
        args
    }
}
