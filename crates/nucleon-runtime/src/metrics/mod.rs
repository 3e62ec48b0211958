//! Metrics: what the framework counts, recorded through the [`metrics`] facade so that
//! a service picks its exporter (the umbrella crate `nucleon` serves Prometheus text at
//! `/metrics`; any other `metrics` recorder receives the same series).
//!
//! # Recording without contention
//!
//! A request must not pay for its metrics with a lock or a cache line shared with the
//! other workers. The hot paths (the HTTP pipeline, database queries) record into
//! [`LocalCounter`], [`LocalGauge`] and [`LocalHistogram`]: plain cells owned by the
//! worker's thread, handed to the facade's handles in one batch per worker every
//! `flush_interval` (1 s by default), when a scrape is served on that worker, and when
//! the worker stops. The facade's own handles (atomics) are for the rare events
//! (a slow poll, a reconnect).
//!
//! Figures owned by something else (the offload pools' queues, a pool's idle
//! connections, the process's memory) are read when they are exported: a
//! [`collector`](register_collector) sets them, run by [`collect`] before each scrape
//! and every `flush_interval` on the runtime's control thread.
//!
//! # Settings
//!
//! `[<env>.metrics]` ([`MetricsSettings`]): `enabled`, `path`, `port`, `buckets`,
//! `flush_interval`, `process`.
//!
//! ```
//! use nucleon_runtime::metrics::{LocalCounter, flush_local};
//!
//! // A counter owned by this thread: no atomic per increment.
//! let hits = LocalCounter::new(metrics::counter!("example_hits_total"));
//! hits.increment(1);
//! hits.increment(2);
//! // Handed to the recorder in one call (the runtime does this on every worker).
//! flush_local();
//! ```

mod collect;
mod local;
mod names;
mod runtime_figures;
mod settings;

pub use collect::{CollectorGuard, collect, register_collector};
pub use local::{LocalCounter, LocalGauge, LocalHistogram, flush_local};
pub use names::*;
pub use settings::{DEFAULT_BUCKETS, MetricsSettings};

pub(crate) use collect::collect_every;
pub(crate) use local::{enable_on_thread, enabled_interval, flush_every};
pub(crate) use runtime_figures::{register_runtime_collector, watchdog_report, worker_restarted};

/// Whether the runtime records metrics on this thread (a worker or the process loop of
/// a runtime with `metrics.enabled`). Off the runtime's threads: false.
///
/// Adapters check it once when they start on a worker, and make no metric at all when
/// it is off.
pub fn enabled() -> bool {
    enabled_interval().is_some()
}
