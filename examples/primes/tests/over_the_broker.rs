//! Both roles against the local RabbitMQ, in-process: the front end and the worker each
//! on its own runtime, through the test client. The example's names on the broker are
//! fixed (`rpc.primes`, `tasks.count-primes`), so these tests take turns.

use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nucleon::amqp::lapin::options::QueueDeleteOptions;
use nucleon::amqp::lapin::{Connection, ConnectionProperties};
use nucleon::test::{TestClient, TestResponse, amqp_url, wait_until};
use primes::{Count, Job, JobStatus, MAX_BELOW};
use serde_json::{Value, json};

/// The route the watchdog names when the front end counts inline.
const ROUTE: &str = "GET /primes/{n}";

/// Taken by each test for its whole run: one at a time on the example's queues.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A configuration file for both roles: the test broker, and `more` (TOML).
fn config(dir: &tempfile::TempDir, url: &str, more: &str) -> PathBuf {
    let path = dir.path().join("app.toml");
    #[allow(clippy::disallowed_methods, reason = "test set-up, outside any loop")]
    std::fs::write(&path, format!("[test.amqp]\nurl = \"{url}\"\n\n{more}\n")).unwrap();
    path
}

fn count(front: &TestClient, below: u64) -> TestResponse {
    front.get(&format!("/primes/{below}"))
}

/// Whether the watchdog of `client`'s runtime reported task `task`.
fn reported(client: &TestClient, task: &str) -> bool {
    let reports = client.handle().watchdog().recent_reports();
    reports.iter().any(|r| r.task.as_deref() == Some(task))
}

/// A 503 in JSON, saying why.
fn assert_unavailable(response: &TestResponse) {
    assert_eq!(response.status(), 503, "{}", response.text());
    assert_eq!(response.header("retry-after"), Some("1"));
    let body: Value = response.json();
    assert_eq!(body["error"], "SERVICE_UNAVAILABLE", "{body}");
}

/// Deletes the procedure's queue, as on a broker where no worker ever ran (a worker
/// that stopped leaves it, durable, behind).
fn delete_procedure_queue(url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let connection = Connection::connect(url, ConnectionProperties::default())
            .await
            .expect("a connection to the test broker");
        let channel = connection.create_channel().await.unwrap();
        let options = QueueDeleteOptions {
            if_unused: true,
            ..QueueDeleteOptions::default()
        };
        if let Err(error) = channel.queue_delete("rpc.primes".into(), options).await {
            panic!("cannot delete `rpc.primes` (is a primes-worker running?): {error}");
        }
        let _ = connection.close(200, "done".into()).await;
    });
}

#[test]
fn the_worker_counts_for_the_front_end_by_rpc_and_by_job() {
    let Some(url) = amqp_url() else { return };
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    let file = config(&dir, &url, "[test.primes]\ntimeout = \"2s\"");
    let worker = TestClient::new(primes::worker().config_file(&file));
    let front = TestClient::new(primes::front().config_file(&file));

    for (below, expected) in [(100, 25), (100_000, 9592), (2_000_000, 148_933)] {
        let response = count(&front, below);
        assert_eq!(response.status(), 200, "{}", response.text());
        assert_eq!(
            response.json::<Count>(),
            Count {
                below,
                count: expected
            }
        );
    }
    // The work ran on the worker's CPU pool: no loop was blocked, on either side.
    assert!(!reported(&front, ROUTE));
    assert!(!reported(&worker, "rpc primes"));

    let accepted = front.post_json("/jobs", &json!({"below": 1000}));
    assert_eq!(accepted.status(), 202, "{}", accepted.text());
    let job: Job = accepted.json();
    assert_eq!(job.below, 1000);
    wait_until(
        "the worker's count of the job",
        Duration::from_secs(10),
        || front.get(&format!("/jobs/{}", job.id)).json::<Job>().status == JobStatus::Done,
    );
    let done: Job = front.get(&format!("/jobs/{}", job.id)).json();
    assert_eq!(done.count, Some(168));
    assert_eq!(front.get("/jobs/nope").status(), 404);

    assert_eq!(front.get("/primes/many").status(), 400);
    let too_large = front.post_json("/jobs", &json!({"below": MAX_BELOW + 1}));
    assert_eq!(too_large.status(), 400, "{}", too_large.text());

    // The worker gone, its queue stays: a call waits for its timeout (2 s here), then
    // the front end answers 503 rather than hang.
    worker.stop().expect("the worker drains cleanly");
    let started = Instant::now();
    let response = count(&front, 100);
    assert_unavailable(&response);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    front.stop().expect("the front end drains cleanly");
}

#[test]
fn with_no_worker_the_front_end_answers_503_at_once() {
    let Some(url) = amqp_url() else { return };
    let _turn = turn();
    delete_procedure_queue(&url);
    let dir = tempfile::tempdir().unwrap();
    let front = TestClient::new(primes::front().config_file(config(&dir, &url, "")));

    let started = Instant::now();
    let response = count(&front, 100);
    assert_unavailable(&response);
    assert!(
        response.json::<Value>()["message"]
            .as_str()
            .is_some_and(|m| m.contains("no worker serves `primes`")),
        "{}",
        response.text()
    );
    // Well within the call's timeout (10 s by default): the broker returned the call.
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    front.stop().expect("the front end drains cleanly");
}

#[test]
fn counting_inline_blocks_the_loop_and_the_watchdog_names_the_route() {
    let Some(url) = amqp_url() else { return };
    let _turn = turn();
    let dir = tempfile::tempdir().unwrap();
    // A threshold low enough for an optimised build too (the count takes 20 ms or more).
    let settings = "[test.primes]\ninline = true\n\n[test.runtime.watchdog]\nthreshold = \"10ms\"";
    let front = TestClient::new(primes::front().config_file(config(&dir, &url, settings)));

    let response = count(&front, 10_000_000);
    assert_eq!(response.status(), 200, "{}", response.text());
    assert_eq!(response.json::<Count>().count, 664_579);
    wait_until("the watchdog's report", Duration::from_secs(5), || {
        reported(&front, ROUTE)
    });
    front.stop().expect("the front end drains cleanly");
}
