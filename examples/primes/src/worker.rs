//! The back end: counts on the CPU pool, for RPC callers and for submitted jobs.

use nucleon::amqp::Delivery;
use nucleon::offload::{self, OffloadError};
use nucleon::{AmqpError, App, Broker, Dep, Msg};

use crate::front::JobRequest;
use crate::jobs::Counted;
use crate::{COUNTED, MAX_BELOW, PROCEDURE, TASK, primes_below};

/// Why a worker did not count.
#[derive(Debug, thiserror::Error)]
pub enum CountError {
    /// The number is past [`MAX_BELOW`].
    #[error("{0} is too large: at most {MAX_BELOW}")]
    TooLarge(u64),
    /// The CPU pool is full, or the count panicked.
    #[error(transparent)]
    Offload(#[from] OffloadError),
    /// The count could not be announced.
    #[error(transparent)]
    Announce(#[from] AmqpError),
}

/// The back-end worker, `primes-worker`: no HTTP; serves the procedure `primes` and the
/// task `count-primes`, each count on `nucleon::offload::cpu` so its loop stays free
/// for the next delivery. Run as many as there is work: they share the queues.
pub fn worker() -> App {
    App::new("primes-worker")
        .default_config(include_str!("../app.toml"))
        // The front end's table: the two roles share one app.toml.
        .config_table("primes")
        .without_dns()
        .rpc(PROCEDURE, count)
        .task(TASK, count_job)
}

/// The procedure `primes`: the primes below the number sent.
async fn count(Msg(below): Msg<u64>) -> Result<u64, CountError> {
    off_the_loop(below).await
}

/// The task `count-primes`: counts, then announces the count (`primes.counted`).
async fn count_job(
    Msg(job): Msg<JobRequest>,
    delivery: Delivery,
    Dep(broker): Dep<Broker>,
) -> Result<(), CountError> {
    let count = off_the_loop(job.below).await?;
    let id = delivery.message_id().unwrap_or_default().to_owned();
    tracing::info!(target: "primes", %id, below = job.below, count, "job {id}: {count} primes below {}", job.below);
    let counted = Counted {
        id,
        below: job.below,
        count,
    };
    broker.dispatch(COUNTED, &counted).await?;
    Ok(())
}

/// Counts on the CPU pool: the worker's loop goes on meanwhile.
async fn off_the_loop(below: u64) -> Result<u64, CountError> {
    if below > MAX_BELOW {
        return Err(CountError::TooLarge(below));
    }
    Ok(offload::cpu(move || primes_below(below)).await?)
}
