//! # nucleon-dns
//!
//! Every outbound name lookup of a Nucleon service, asynchronous and cached.
//!
//! glibc's `getaddrinfo` blocks the calling thread, and tokio's `lookup_host` only moves
//! it onto the blocking pool, where a slow resolver ties up threads and cannot be
//! cancelled. This crate resolves names with
//! [hickory-resolver](https://docs.rs/hickory-resolver) on the worker's own loop, with a
//! per-worker cache, and gives the rest of the framework (and your code) one way to turn
//! a host into addresses and connections without `getaddrinfo`:
//!
//! - [`Resolver`]: cheap to clone; [`Resolver::lookup_ip`], [`Resolver::lookup_srv`],
//!   [`Resolver::lookup_txt`], [`Resolver::connect_tcp`] (Happy Eyeballs, RFC 8305).
//!   Errors are typed ([`DnsError`], [`ConnectError`]) and name the host looked up.
//! - [`DnsAdapter`]: builds one resolver per worker at start (reading `/etc/resolv.conf`
//!   and `/etc/hosts` there, off the hot path, or the `[<env>.dns]` table of `app.toml`) and
//!   registers it, so [`Resolver::current`] finds it anywhere on that worker.
//! - [`lookup_host`] and [`connect_tcp`]: the helpers other adapters (database, AMQP)
//!   call; they use the worker's resolver, or a per-thread system one outside a worker.
//! - [`HttpClient`] and [`HttpClientAdapter`]: an outbound HTTP client (reqwest, rustls)
//!   whose name lookups go through the worker's resolver and cache, with timeouts, JSON
//!   helpers, typed [`HttpError`]s, and the current request id forwarded as
//!   `x-request-id` (see [`request_id`]) and the current trace context as W3C
//!   `traceparent`/`tracestate` (see `nucleon_runtime::trace`).
//!
//! Health: each resolver records how its latest lookups that reached a name server
//! went, cheaply, and [`Resolver::health`] (the `dns` adapter's health check) reports
//! from it: healthy while they are answered, degraded when some of the latest got no
//! answer, unhealthy when the last 3 in a row got none, with a message naming the
//! name servers and where they were configured. Set `health_probe` (a name, e.g.
//! `health_probe = "db.internal."` in `[<env>.dns]`) and each check resolves that name
//! instead, asking the name servers each time, and reports from its answer: found,
//! not found, or no answer. See [`DnsConfig::health_probe`].
//!
//! In a Nucleon service:
//!
//! ```no_run
//! use nucleon_dns::{DnsAdapter, HttpClient, HttpClientAdapter, Resolver};
//! use nucleon_runtime::Runtime;
//!
//! Runtime::builder()
//!     .per_worker(|worker| {
//!         worker.adapter(DnsAdapter::new()).adapter(HttpClientAdapter::new());
//!         worker.spawn("warm-up", async {
//!             let resolver = Resolver::current().expect("the dns adapter started");
//!             let _ = resolver.lookup_ip("db.internal").await;
//!             let client = HttpClient::current().expect("the http-client adapter started");
//!             let _ = client.get_json::<serde_json::Value>("http://catalog.internal/items").await;
//!         });
//!         Ok(())
//!     })
//!     .build()?
//!     .run()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Standalone (a tool that depends on `nucleon-dns` alone):
//!
//! ```no_run
//! # async fn tool() -> Result<(), Box<dyn std::error::Error>> {
//! use nucleon_dns::{DnsConfig, Resolver};
//!
//! let resolver = Resolver::from_config(&DnsConfig::default()).await?; // system configuration
//! for ip in resolver.lookup_ip("example.org").await? {
//!     tracing::info!(%ip, "resolved");
//! }
//! # Ok(()) }
//! ```

mod adapter;
mod client;
mod config;
mod connect;
mod error;
mod health;
mod metrics;
/// The current request's id (defined in `nucleon-runtime`, set by `nucleon-http`).
pub use nucleon_runtime::request_id;
mod resolver;

pub use adapter::{DnsAdapter, HttpClientAdapter};
pub use client::HttpClient;
pub use config::{DnsConfig, HttpClientConfig, IpPreference};
pub use error::{ConnectError, DnsError, HttpError};
pub use resolver::{Resolver, SrvTarget, connect_tcp, lookup_host, resolver};

/// The hickory crates this one is built on, for settings it does not expose.
pub mod hickory {
    pub use hickory_resolver::*;
}

/// The reqwest crate the [`HttpClient`] wraps, for its request and
/// response types.
pub use reqwest;
