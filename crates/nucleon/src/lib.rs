//! # nucleon
//!
//! The umbrella crate of Nucleon, a microframework for back-end services: REST/JSON
//! over HTTP and a database on one cooperative event loop per core, where nothing
//! blocks the loop.
//!
//! It re-exports the framework's crates behind features, and gives an application three
//! things: [`App`] to assemble routes, state, adapters (per process and per worker) and
//! hooks — with or without HTTP; [`run`], the command line every app binary gets
//! (`start`, `routes`, `check`, and `db …` with the `db` feature); and
//! `test::TestClient` (feature `http`), which runs the app's real runtime in-process
//! for tests.
//!
//! Features:
//! - `http` (default): the HTTP front end ([`http`], `nucleon-http`): routes, the
//!   listener, `Dep<T>` for adapters' handles, the test client. Without it, an [`App`] is
//!   a back-end service of adapters and tasks.
//! - `db`: database access (`db`, `nucleon-db`): `App::database`, PostgreSQL (a pool
//!   per worker) or embedded SQLite (one per process, the default), `app db sync|reset|
//!   migrate|status`. It adds sqlx and a bundled SQLite to the build.
//! - `dns` (default): async DNS and the outbound HTTP client ([`dns`], `nucleon-dns`).
//!   Every worker of an [`App`] gets a resolver and an HTTP client (`[<env>.dns]` and
//!   `[<env>.http_client]` in `app.toml`), which handlers take as `Dep<HttpClient>` (or
//!   `HttpClient::current()`); [`App::without_dns`] leaves them out. It adds hickory-resolver, reqwest and rustls to the build: a service that never
//!   calls out may prefer `default-features = false, features = ["http"]`.
//! - `amqp`: messaging over AMQP (`amqp`, `nucleon-amqp`): consumers, RPC, events,
//!   task queues and a `Broker` handle.
//! - `metrics` (default): the Prometheus endpoint (`/metrics`, `[<env>.metrics]`).
//! - `otel`: span export to an OpenTelemetry collector over OTLP/HTTP (`otel`), turned
//!   on by the standard `OTEL_EXPORTER_OTLP_*` variables.
//!
//! ```no_run
//! use nucleon::{App, HttpError, Json, Path, get};
//!
//! async fn hello(Path(name): Path<String>) -> Result<Json<String>, HttpError> {
//!     if name.is_empty() {
//!         return Err(HttpError::bad_request("who?"));
//!     }
//!     Ok(Json(format!("hello, {name}")))
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     nucleon::run(App::new("hello").route("/hello/{name}", get(hello)))
//! }
//! ```
//!
//! `cargo run -- --port 8080` serves it; `cargo run -- routes` prints the route table;
//! `cargo run -- check --env production` validates the configuration. To start it from
//! code instead (a test, a program that embeds it), [`App::into_runtime`] takes the same
//! options as [`StartOptions`] and gives the runtime, its handle and its address.

mod app;
mod cli;
#[cfg(feature = "db")]
mod db_cli;
mod dropped_lines;
mod json_log;
mod log;
mod log_writer;
#[cfg(feature = "metrics")]
mod metrics;
mod ops;
#[cfg(feature = "otel")]
pub mod otel;
mod start;
#[cfg(feature = "http")]
pub mod test;

pub use app::App;
pub use cli::{AppError, LogFormat, run, run_from};
pub use ops::OpsError;
pub use start::{AppRuntime, StartOptions};

/// The runtime: workers, adapters, lifecycle, drain, watchdog, offload, configuration.
pub use nucleon_runtime as runtime;
pub use nucleon_runtime::{LocalState, handle_name, offload, spawn};

/// Database access: PostgreSQL and embedded SQLite on sqlx.
#[cfg(feature = "db")]
pub use nucleon_db as db;
#[cfg(feature = "db")]
pub use nucleon_db::{Db, DbError, JsonRow, Sql};

/// Async DNS and the outbound HTTP client.
#[cfg(feature = "amqp")]
pub use nucleon_amqp as amqp;
#[cfg(feature = "amqp")]
pub use nucleon_amqp::{AmqpError, Broker, Msg};
#[cfg(feature = "dns")]
pub use nucleon_dns as dns;
#[cfg(feature = "dns")]
pub use nucleon_dns::{
    DnsAdapter, DnsConfig, DnsError, HttpClient, HttpClientAdapter, HttpClientConfig, Resolver,
};

/// The HTTP front end.
#[cfg(feature = "http")]
pub use nucleon_http as http;
#[cfg(feature = "http")]
pub use nucleon_http::{
    Dep, HttpError, IntoResponse, Json, Local, Named, Path, Query, RemoteAddr, RequestId, Router,
    State, StatusCode, delete, get, patch, post, put,
};
