//! # nucleon-db
//!
//! Async database access for Nucleon services, on sqlx: PostgreSQL (a pool per worker,
//! its sockets on the worker's loop) and SQLite (one pool per process, run by sqlx on
//! threads of its own) — the embedded default, so a new service runs with no server.
//!
//! - [`DbAdapter`] connects the pool from `[<env>.db]` and gives a [`Db`] handle
//!   (`Dep<Db>` in a handler).
//! - [`Db::query`] in the original framework's spirit: declare a query once ([`Sql`]),
//!   bind, then take `rows`, `flat`, `unique`, `optional`, `value`, `execute` or a
//!   `stream`; rows are `sqlx::FromRow` types or [`JsonRow`]s.
//! - [`Db::transaction`]: all or nothing, retried on serialization failures and
//!   deadlocks, with savepoints.
//! - [`DbError`]: what went wrong, typed; with the `http` feature, a handler returns it
//!   with `?` and the client gets 404, 409, 503, 504 or 500.
//!
//! ```no_run
//! use nucleon_db::{Db, DbError, JsonRow, Sql};
//!
//! mod queries {
//!     use nucleon_db::Sql;
//!     pub const COUNTRY: Sql = Sql::named("countries.one", "SELECT code, name FROM countries WHERE code = $1");
//! }
//!
//! async fn country(db: &Db, code: &str) -> Result<JsonRow, DbError> {
//!     db.query(queries::COUNTRY).bind(code).unique().await // NotFound: a 404
//! }
//! ```

mod adapter;
mod config;
mod db;
mod error;
#[cfg(feature = "http")]
mod http;
mod listen;
mod metrics;
mod param;
mod query;
mod row;
mod schema;
mod transaction;

pub use adapter::{DbAdapter, SchemaSync, Scope};
pub use config::{Backend, DbConfig};
pub use db::{Db, Pool};
pub use error::DbError;
pub use listen::{Notification, Notifications};
pub use param::{Kind, Param, ToParam};
pub use query::{Query, Sql};
pub use row::{JsonRow, Record, Scalar};
pub use schema::{Schema, SyncReport};
pub use transaction::{Isolation, Transaction, Tx};

/// sqlx itself, for its macros and types (`sqlx::FromRow`).
pub use sqlx;
