//! # nucleon-redis
//!
//! Redis for Nucleon services, on [redis-rs](https://docs.rs/redis) (tokio, its
//! reconnecting `ConnectionManager`), made an adapter the way any client library is:
//!
//! - [`RedisAdapter`]: reads `[<env>.redis]` ([`RedisConfig`]), resolves the host through
//!   nucleon-dns, connects at start (or later, for a Redis the service does without:
//!   `required = false`), reports its health by `PING`, and gives a [`Redis`] handle.
//!   Add it **per worker**: each worker's calls stay on its own loop and connection.
//! - [`Redis`]: `get`, `set`, `set_ex`, `set_nx`, `del`, `exists`, `expire`, `ttl`,
//!   `incr`, `get_json`/`set_json`, any command with [`Redis::query`], and the raw
//!   `ConnectionManager`; every call within `redis.command_timeout`, with a typed
//!   [`RedisError`].
//! - Feature `http`: `cached`, a layer that caches a route's JSON answers in Redis
//!   (or in each worker's memory with `CacheLayer::in_process`), which a Redis that is
//!   down never fails; and `From<RedisError> for HttpError` (503, 500).
//!
//! ```no_run
//! # #[cfg(feature = "http")] {
//! use std::time::Duration;
//! use nucleon_http::{get, Dep, HttpConfig, HttpError, HttpServer, Json, Path, Router};
//! use nucleon_redis::{cached, Redis, RedisAdapter};
//! use nucleon_runtime::Runtime;
//!
//! async fn visit(Dep(redis): Dep<Redis>, Path(page): Path<String>) -> Result<Json<i64>, HttpError> {
//!     Ok(Json(redis.incr(format!("visits:{page}"), 1).await?))
//! }
//!
//! async fn countries() -> Json<Vec<&'static str>> {
//!     Json(vec!["gb", "fr"]) // an expensive query, say
//! }
//!
//! let router = Router::new()
//!     .route("/visits/{page}", get(visit))
//!     .route("/countries/", get(countries).layer(cached(Duration::from_secs(30))));
//! Runtime::builder()
//!     .per_worker(move |worker| {
//!         worker
//!             .adapter(RedisAdapter::new())
//!             .adapter(HttpServer::new(router.clone(), HttpConfig::default()));
//!         Ok(())
//!     })
//!     .build()?
//!     .run()?;
//! # }
//! # Ok::<(), nucleon_runtime::RuntimeError>(())
//! ```
//!
//! With the umbrella crate: `App::new("visits").config_table("redis")
//! .per_worker_adapter(RedisAdapter::new)`.
//!
//! Logs go to the `nucleon::redis` target: the connection at start, a response cache
//! that becomes unavailable and available again.

mod adapter;
#[cfg(feature = "http")]
mod cache;
mod config;
mod error;
mod handle;
#[cfg(feature = "http")]
mod http;

pub use adapter::RedisAdapter;
#[cfg(feature = "http")]
pub use cache::{CacheCounts, CacheLayer, CacheService, CacheStats, X_CACHE, cached, default_key};
pub use config::RedisConfig;
pub use error::RedisError;
pub use handle::Redis;
/// The redis-rs crate underneath, for commands, pipelines and the raw connection.
pub use redis;
