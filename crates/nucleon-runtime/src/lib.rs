//! # nucleon-runtime
//!
//! The core of Nucleon: thread-per-core workers that
//! run `!Send` futures on a tokio `current_thread` runtime each, adapters with a
//! lifecycle, signal-driven draining, a watchdog that names blocking code while it
//! blocks, offload pools for blocking and CPU work, per-environment configuration, and
//! lock-free per-worker state.
//!
//! ```no_run
//! use std::time::Duration;
//! use nucleon_runtime::{offload, spawn, Runtime};
//!
//! fn main() -> Result<(), nucleon_runtime::RuntimeError> {
//!     Runtime::builder()
//!         .workers(2)
//!         .per_worker(|worker| {
//!             let hits = worker.local_state(0_u64);
//!             worker.spawn("count", async move {
//!                 loop {
//!                     hits.with_mut(|n| *n += 1);
//!                     // Blocking work leaves the loop:
//!                     let _ = offload::blocking(|| "slow legacy call").await;
//!                     tokio::time::sleep(Duration::from_secs(1)).await;
//!                 }
//!             });
//!             Ok(())
//!         })
//!         .build()?
//!         .run()
//! }
//! ```

pub mod adapter;
pub mod config;
pub mod drain;
mod error;
pub mod handle;
pub mod health;
mod label;
pub mod lifecycle;
mod local_state;
mod loop_thread;
pub mod metrics;
pub mod offload;
mod process;
pub mod request_id;
mod runtime;
mod scope;
pub mod task;
pub mod trace;
pub mod watchdog;
mod worker;

pub use adapter::{Adapter, AdapterContext, BoxError, HEALTH_TIMEOUT, Health};
pub use config::{Config, ConfigError, ConfigOptions};
pub use drain::{Drain, DrainTimeout, InFlightGuard};
pub use error::{RuntimeError, exit_code};
pub use handle::{Dep, HandleKey, HandleName, Named, Requirement};
pub use lifecycle::{Event, HandlerId};
pub use local_state::LocalState;
pub use runtime::{
    AdapterHealth, Phase, Runtime, RuntimeBuilder, RuntimeHandle, before_forced_exit,
};
pub use task::{TaskLabel, spawn};
pub use watchdog::{Watchdog, WatchdogConfig, WatchdogReport, WatchdogStats};
pub use worker::{WorkerSetup, current_worker};
