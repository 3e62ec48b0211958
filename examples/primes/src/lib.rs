//! The primes example: the seed's advice, "CPU heavy tasks should be handled outside of
//! your nucleon application, perhaps by a backend worker that listens for requests on
//! AMQP", as two services.
//!
//! - [`front`] (`primes-front`) serves HTTP: `GET /primes/{n}` calls the procedure
//!   `primes` and answers the count; `POST /jobs` submits the task `count-primes` and
//!   answers 202 at once; `GET /jobs/{id}` shows the job, done once a worker announced
//!   its count (the event `primes.counted`). With `primes.inline = true` it counts on its
//!   own loop instead, and the watchdog names `GET /primes/{n}` while it blocks.
//! - [`worker`] (`primes-worker`) has no HTTP: it serves `primes` and `count-primes`,
//!   counting on the CPU pool ([`nucleon::offload::cpu`]).
//!
//! ```sh
//! cargo run --release -p primes --bin primes-worker     # terminal 1
//! cargo run --release -p primes --bin primes-front      # terminal 2: 127.0.0.1:8892
//! curl -s localhost:8892/primes/100000                  # {"below":100000,"count":9592}
//! ```

mod count;
mod front;
mod jobs;
mod worker;

pub use count::{MAX_BELOW, primes_below};
pub use front::{Count, JobRequest, Settings, front};
pub use jobs::{Counted, Job, JobStatus, Jobs};
pub use worker::{CountError, worker};

/// The procedure a worker serves (queue `rpc.primes`).
pub const PROCEDURE: &str = "primes";
/// The task a worker handles (queue `tasks.count-primes`).
pub const TASK: &str = "count-primes";
/// The event a worker dispatches when it has counted a job.
pub const COUNTED: &str = "primes.counted";
