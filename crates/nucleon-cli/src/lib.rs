//! # nucleon-cli
//!
//! The `nucleon` command. `nucleon new <dir>` writes a Nucleon app that builds and
//! passes its own tests at once:
//!
//! ```text
//! nucleon new <DIR> [--name NAME] [--db [sqlite|postgres]] [--amqp] [--path CHECKOUT]
//! ```
//!
//! - `Cargo.toml` on the umbrella crate `nucleon` (version `0.1` from crates.io, or with
//!   `--path` the checkout's `crates/nucleon`), with the features the flags choose, and
//!   a `[workspace]` of its own;
//! - `app.toml` with `[default]`, `[test]` and `[production]` environments;
//! - `src/lib.rs` (the app: `GET /`, `GET /hello/{name}` counting on per-worker state;
//!   with `--db`, routes on `Dep<Db>` and `database.sql`; with `--amqp`, a procedure
//!   served by `App::rpc` and a route calling it through `Dep<Broker>`), `src/main.rs`
//!   (the command line every app gets);
//! - `tests/routes.rs` on `nucleon::test::TestClient`;
//! - the guard rails: `clippy.toml` (blocking std calls) and `deny.toml` (blocking
//!   client crates), and a README saying what they catch.
//!
//! The app's name is the directory's unless `--name` says otherwise: lowercase ASCII
//! letters, digits, `-` and `_`, starting with a letter ([`name::check`]).
//!
//! Exit codes, as an app's own: 0 when the app is written; 2 for a wrong command line,
//! an invalid name, a `--path` that is not a Nucleon checkout, or a directory that is
//! not empty (or not a directory); 1 when writing fails.

mod cli;
pub mod name;
mod new;
mod template;

pub use cli::main_with;
pub use new::{AppFile, AppSpec, Created, Database, NewError, NewOptions, Source, create};
pub use template::TemplateError;
