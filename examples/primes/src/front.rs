//! The front end: HTTP in, CPU work out to the workers over AMQP.

use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Duration;

use nucleon::amqp::EventMode;
use nucleon::runtime::config::duration;
use nucleon::{
    AmqpError, App, Broker, Dep, HttpError, Json, Local, Msg, Path, State, StatusCode, get, post,
};
use serde::{Deserialize, Serialize};

use crate::jobs::{Counted, Job, Jobs};
use crate::{COUNTED, MAX_BELOW, PROCEDURE, TASK, primes_below};

/// `[<env>.primes]`: how the front end counts.
///
/// ```toml
/// [default.primes]
/// inline = false    # true: count on the request's worker (the watchdog names the route)
/// timeout = "10s"   # how long `GET /primes/{n}` waits for a worker's answer
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Count on the request's own worker rather than ask a back-end worker (default
    /// false). The mistake the example shows: every other request on that worker waits
    /// meanwhile, and the watchdog names the route (`GET /primes/{n}`) while it blocks.
    pub inline: bool,
    /// How long `GET /primes/{n}` waits for a worker's answer (default 10 s).
    #[serde(with = "duration")]
    pub timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            inline: false,
            timeout: Duration::from_secs(10),
        }
    }
}

/// The answer of `GET /primes/{n}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    /// The number asked about.
    pub below: u64,
    /// How many primes are below it.
    pub count: u64,
}

/// The body of `POST /jobs`, and the task a worker receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobRequest {
    /// Count the primes below this.
    pub below: u64,
}

/// The front end, `primes-front`: `GET /primes/{n}` asks a worker by RPC (or counts
/// inline, with `primes.inline`), `POST /jobs` submits a task and answers 202,
/// `GET /jobs/{id}` tells where a job stands (the workers announce their counts as the
/// event `primes.counted`, which every front end hears).
pub fn front() -> App {
    let jobs = Arc::new(Jobs::default());
    App::new("primes-front")
        .default_config(include_str!("../app.toml"))
        .config_table("primes")
        .without_dns()
        .messaging()
        .on_event(COUNTED, EventMode::Broadcast, on_counted(Arc::clone(&jobs)))
        .per_worker(|worker| {
            let settings: Settings = worker.config().extract_at("primes")?;
            worker.local_state(settings);
            Ok(())
        })
        .state(jobs)
        .route("/primes/{n}", get(count))
        .route("/jobs", post(submit))
        .route("/jobs/{id}", get(job))
}

/// `GET /primes/{n}`: the primes below `n`, counted by a worker (or inline).
async fn count(
    Path(below): Path<u64>,
    Local(settings): Local<Settings>,
    Dep(broker): Dep<Broker>,
) -> Result<Json<Count>, HttpError> {
    check(below)?;
    let settings = settings.with(|s| *s);
    let count = if settings.inline {
        // The seed's warning, live: CPU work on the loop holds every request of this
        // worker until it ends.
        primes_below(below)
    } else {
        broker
            .call::<u64, _>(PROCEDURE, &below)
            .timeout(settings.timeout)
            .await
            .map_err(from_rpc)?
    };
    Ok(Json(Count { below, count }))
}

/// `POST /jobs` `{"below": n}`: submits the count as a task; 202 with the job.
async fn submit(
    Dep(broker): Dep<Broker>,
    State(jobs): State<Arc<Jobs>>,
    Json(request): Json<JobRequest>,
) -> Result<(StatusCode, Json<Job>), HttpError> {
    check(request.below)?;
    let id = broker.submit(TASK, &request).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(jobs.submitted(id, request.below)),
    ))
}

/// `GET /jobs/{id}`: a job this front end submitted (or heard of).
async fn job(
    Path(id): Path<String>,
    State(jobs): State<Arc<Jobs>>,
) -> Result<Json<Job>, HttpError> {
    jobs.get(&id)
        .map(Json)
        .ok_or_else(|| HttpError::not_found(format!("no job `{id}` here")))
}

/// The handler of the event `primes.counted`: a worker has counted a job.
fn on_counted(jobs: Arc<Jobs>) -> impl Fn(Msg<Counted>) -> Ready<()> + Send + Sync + 'static {
    move |Msg(counted)| {
        jobs.counted(counted);
        ready(())
    }
}

/// Refuses what would take too much memory.
fn check(below: u64) -> Result<(), HttpError> {
    if below > MAX_BELOW {
        return Err(HttpError::invalid_parameters([(
            "below",
            format!("at most {MAX_BELOW}"),
        )]));
    }
    Ok(())
}

/// An RPC's failure as an answer: the framework's (503 for a back end that is not
/// there), with a message that says which program to start when no worker serves the
/// procedure.
fn from_rpc(error: AmqpError) -> HttpError {
    match error {
        AmqpError::Returned { .. } => HttpError::unavailable(
            format!("no worker serves `{PROCEDURE}`: start one (primes-worker)"),
            1,
        ),
        other => other.into(),
    }
}
