//! Getting blocking and CPU-heavy work off the worker loops.
//!
//! - [`blocking`]: a blocking call (a file read, a synchronous library) on a bounded pool
//!   of threads that grows on demand (default 64) with a bounded queue (default 1024).
//! - [`cpu`]: CPU work (hashing, compression, big JSON) on a pool sized to the cores, so
//!   it competes fairly with the workers instead of multiplying threads.
//! - [`Blocking<T>`]: a blocking client owned by its own thread(s), behind an async API.
//!
//! **When a pool is full** (every thread busy and the queue at capacity), the call fails
//! at once with [`OffloadError::Saturated`] instead of waiting. An unbounded wait would
//! hide overload and pile up memory; a fast error becomes a 503 the client can retry, and
//! shows in logs and metrics. Size the queue for your bursts.
//!
//! Dropping the returned future does not stop the work (a thread cannot be cancelled);
//! its result is discarded.
//!
//! ```no_run
//! # async fn handler() -> Result<(), nucleon_runtime::offload::OffloadError> {
//! use nucleon_runtime::offload;
//!
//! let digest = offload::cpu(|| expensive_hash(b"data")).await?;
//! let text = offload::blocking(|| legacy_sync_client_call()).await?;
//! # Ok(()) }
//! # fn expensive_hash(_: &[u8]) -> u64 { 0 }
//! # fn legacy_sync_client_call() -> String { String::new() }
//! ```

mod client;
mod pool;

use std::sync::OnceLock;
use std::time::Duration;

use serde::Deserialize;

pub use client::Blocking;
pub use pool::{OffloadPool, PoolConfig, PoolStats};

use crate::config::duration;

/// Settings of the two process-wide pools (`[<env>.runtime.offload]`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct OffloadConfig {
    /// Most threads of the blocking pool (default 64).
    pub blocking_threads: usize,
    /// Most jobs waiting for a blocking thread (default 1024).
    pub blocking_queue: usize,
    /// Threads of the CPU pool (default: available cores).
    pub cpu_threads: Option<usize>,
    /// Most jobs waiting for a CPU thread (default 1024).
    pub cpu_queue: usize,
    /// How long an idle thread lingers before it exits (default 10 s).
    #[serde(with = "duration")]
    pub keep_alive: Duration,
}

impl Default for OffloadConfig {
    fn default() -> Self {
        Self {
            blocking_threads: 64,
            blocking_queue: 1024,
            cpu_threads: None,
            cpu_queue: 1024,
            keep_alive: Duration::from_secs(10),
        }
    }
}

/// Why offloaded work produced no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// Every thread is busy and the queue is full.
    #[error(
        "offload pool `{pool}` is saturated ({threads} threads busy, {queued} jobs queued): \
         shed load, or raise runtime.offload limits"
    )]
    Saturated {
        /// The pool's name.
        pool: String,
        /// Its busy threads.
        threads: usize,
        /// Its queue length (= capacity).
        queued: usize,
    },
    /// The job panicked; the pool goes on.
    #[error("offloaded job in `{pool}` panicked: {message}")]
    Panicked {
        /// The pool's name.
        pool: String,
        /// The panic's message.
        message: String,
    },
    /// The pool or client thread is gone (a [`Blocking`] whose client failed to build).
    #[error("offload `{pool}` is closed: {reason}")]
    Closed {
        /// The pool's name.
        pool: String,
        /// Why.
        reason: String,
    },
}

struct Pools {
    config: OffloadConfig,
    blocking: OffloadPool,
    cpu: OffloadPool,
}

static POOLS: OnceLock<Pools> = OnceLock::new();

fn pools() -> &'static Pools {
    POOLS.get_or_init(|| Pools::new(&OffloadConfig::default()))
}

impl Pools {
    fn new(config: &OffloadConfig) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        Self {
            config: config.clone(),
            blocking: OffloadPool::new(
                "blocking",
                PoolConfig {
                    max_threads: config.blocking_threads.max(1),
                    queue: config.blocking_queue,
                    keep_alive: config.keep_alive,
                },
            ),
            cpu: OffloadPool::new(
                "cpu",
                PoolConfig {
                    max_threads: config.cpu_threads.unwrap_or(cores).max(1),
                    queue: config.cpu_queue,
                    keep_alive: config.keep_alive,
                },
            ),
        }
    }
}

/// Sets the process-wide pools' limits. Takes effect only before the first offload; the
/// runtime calls it with `runtime.offload` at start. Returns `false` (and changes nothing)
/// if the pools already exist with other settings.
pub fn configure(config: &OffloadConfig) -> bool {
    POOLS.get_or_init(|| Pools::new(config)).config == *config
}

/// Runs a blocking call on the blocking pool and awaits its result.
///
/// # Errors
/// [`OffloadError::Saturated`] when the pool is full; [`OffloadError::Panicked`] when `f`
/// panicked.
pub async fn blocking<F, T>(f: F) -> Result<T, OffloadError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    pools().blocking.run(f).await
}

/// Runs CPU-heavy work on the CPU pool (one thread per core) and awaits its result.
///
/// # Errors
/// As [`blocking`].
pub async fn cpu<F, T>(f: F) -> Result<T, OffloadError>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    pools().cpu.run(f).await
}

/// Current figures of the process-wide pools: `(blocking, cpu)`.
pub fn stats() -> (PoolStats, PoolStats) {
    let pools = pools();
    (pools.blocking.stats(), pools.cpu.stats())
}
