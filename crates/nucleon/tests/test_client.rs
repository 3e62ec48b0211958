//! `TestClient` end to end: hooks in the test environment, per-worker state, JSON in and
//! out, errors, per-worker setups and their adapters, the command line's `routes` and
//! `check`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

use nucleon::runtime::{Adapter, AdapterContext, BoxError, Health, LocalState};

use nucleon::test::TestClient;
use nucleon::{App, HttpError, Json, Local, Path, StatusCode, get, post};
use serde::{Deserialize, Serialize};

#[derive(Debug, Serialize, Deserialize, PartialEq)]
struct Note {
    id: u32,
    text: String,
}

async fn create(Local(notes): Local<Vec<Note>>, Json(note): Json<Note>) -> (StatusCode, Json<u32>) {
    let id = note.id;
    notes.with_mut(|n| n.push(note));
    (StatusCode::CREATED, Json(id))
}

async fn one(Local(notes): Local<Vec<Note>>, Path(id): Path<u32>) -> Result<Json<Note>, HttpError> {
    notes
        .with(|n| {
            n.iter().find(|x| x.id == id).map(|x| Note {
                id: x.id,
                text: x.text.clone(),
            })
        })
        .map(Json)
        .ok_or_else(|| HttpError::not_found(format!("no note {id}")))
}

const CONFIG: &str = r#"
[default.http]
port = 8123
body_limit = 64

[test.http]
port = 0
"#;

fn app(log: Arc<AtomicU32>) -> App {
    let (a, b, c) = (Arc::clone(&log), Arc::clone(&log), log);
    App::new("notes")
        .default_config(CONFIG)
        .local_state(Vec::<Note>::new)
        .route("/notes", post(create))
        .route("/notes/{id}", get(one))
        .on_initialise(move || async move {
            a.fetch_add(1, Ordering::SeqCst);
            Ok(())
        })
        .on_start(move || async move {
            b.fetch_add(10, Ordering::SeqCst);
            Ok(())
        })
        .on_stop(move || async move {
            c.fetch_add(100, Ordering::SeqCst);
            Ok(())
        })
}

#[test]
fn test_client_end_to_end() {
    let hooks = Arc::new(AtomicU32::new(0));
    let client = TestClient::new(app(Arc::clone(&hooks)));
    assert_eq!(
        hooks.load(Ordering::SeqCst),
        11,
        "on_initialise and on_start ran"
    );

    let created = client.post_json(
        "/notes",
        &Note {
            id: 7,
            text: "hi".into(),
        },
    );
    assert_eq!(created.status(), StatusCode::CREATED);
    assert_eq!(created.json::<u32>(), 7);
    assert!(created.header("x-request-id").is_some());

    let note: Note = client.get("/notes/7").json();
    assert_eq!(
        note,
        Note {
            id: 7,
            text: "hi".into()
        }
    );

    let missing = client.get("/notes/8");
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    assert_eq!(missing.json::<serde_json::Value>()["message"], "no note 8");

    let bad = client.get("/notes/eight");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    assert_eq!(
        bad.json::<serde_json::Value>()["error"],
        "INVALID_PARAMETERS"
    );

    // The test environment's configuration is in force: its body limit is 64 bytes.
    let big = client.post_json(
        "/notes",
        &Note {
            id: 1,
            text: "x".repeat(100),
        },
    );
    assert_eq!(big.status(), StatusCode::PAYLOAD_TOO_LARGE);

    let wrong = client.delete("/notes/7");
    assert_eq!(wrong.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong.header("allow"), Some("GET, HEAD"));

    drop(client);
    assert_eq!(
        hooks.load(Ordering::SeqCst),
        111,
        "on_stop ran when the client dropped"
    );
}

#[test]
fn command_line_routes_check_and_bad_configuration() {
    let log = Arc::new(AtomicU32::new(0));
    nucleon::run_from(app(Arc::clone(&log)), ["notes", "routes"]).expect("routes");
    nucleon::run_from(app(Arc::clone(&log)), ["notes", "check", "--env", "test"]).expect("check");
    let error = nucleon::run_from(
        app(Arc::clone(&log)),
        ["notes", "check", "--env", "staging"],
    )
    .expect_err("unknown environment");
    assert_eq!(error.exit_code(), 3);
    assert!(error.to_string().contains("staging"), "{error}");
    let error = nucleon::run_from(app(Arc::clone(&log)), ["notes", "--port", "nope"])
        .expect_err("bad port");
    assert_eq!(error.exit_code(), 2);
    // No workers is not one worker: a usage error.
    let error = nucleon::run_from(app(log), ["notes", "-j", "0"]).expect_err("-j 0");
    assert_eq!(error.exit_code(), 2, "{error}");
}

/// What the per-worker adapter below registers at start.
struct Greeting(String);

/// A per-worker adapter of the app's own: registers a [`Greeting`] at start, counts its
/// starts and stops.
struct Greeter {
    started: Arc<AtomicUsize>,
    stopped: Arc<AtomicUsize>,
}

impl Adapter for Greeter {
    type Handle = ();

    fn name(&self) -> &str {
        "greeter"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<(), BoxError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        LocalState::new(Greeting(format!("hello from worker {:?}", ctx.worker()))).register();
        Ok(())
    }

    async fn health(&self) -> Health {
        Health::Healthy
    }

    async fn stop(&mut self, _deadline: std::time::Instant) -> Result<(), BoxError> {
        self.stopped.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }
}

async fn greeting(
    Local(greeting): Local<Greeting>,
    Local(visits): Local<u32>,
) -> Json<serde_json::Value> {
    let visits = visits.with_mut(|n| {
        *n += 1;
        *n
    });
    #[cfg(feature = "dns")]
    let outbound =
        nucleon::HttpClient::current().is_some() && nucleon::Resolver::current().is_some();
    #[cfg(not(feature = "dns"))]
    let outbound = false;
    Json(serde_json::json!({
        "greeting": greeting.with(|g| g.0.clone()),
        "visits": visits,
        "outbound": outbound,
    }))
}

/// Name servers on a closed local port and no hosts file: the test reads nothing of the
/// machine's DNS configuration, and looks nothing up.
const PER_WORKER_CONFIG: &str = r#"
[test.dns]
nameservers = ["127.0.0.1:9"]
hosts_file = false

[test.http_client]
native_roots = false
"#;

#[test]
fn test_client_runs_per_worker_setups_and_stops_their_adapters() {
    let started = Arc::new(AtomicUsize::new(0));
    let stopped = Arc::new(AtomicUsize::new(0));
    let (s, t) = (Arc::clone(&started), Arc::clone(&stopped));
    let app = App::new("per-worker")
        .default_config(PER_WORKER_CONFIG)
        .per_worker(move |worker| {
            worker.local_state(0_u32);
            worker.adapter(Greeter {
                started: Arc::clone(&s),
                stopped: Arc::clone(&t),
            });
            Ok(())
        })
        .route("/greeting", get(greeting));
    let client = TestClient::new(app);
    assert_eq!(
        started.load(Ordering::SeqCst),
        1,
        "the adapter started once"
    );

    let first = client.get("/greeting");
    assert_eq!(first.status(), StatusCode::OK, "{}", first.text());
    let first: serde_json::Value = first.json();
    assert_eq!(first["greeting"], "hello from worker Some(0)");
    assert_eq!(first["visits"], 1);
    // With the `dns` feature, the resolver and the outbound client are there too.
    assert_eq!(first["outbound"], cfg!(feature = "dns"));
    assert_eq!(
        client.get("/greeting").json::<serde_json::Value>()["visits"],
        2,
        "the per_worker state persists across requests"
    );
    assert_eq!(stopped.load(Ordering::SeqCst), 0);

    drop(client);
    assert_eq!(
        stopped.load(Ordering::SeqCst),
        1,
        "stopped when the client dropped"
    );
}

#[test]
fn test_client_fails_loudly_when_a_per_worker_setup_fails() {
    let app = App::new("broken")
        .default_config(PER_WORKER_CONFIG)
        .per_worker(|_| Err("no database today".into()));
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| TestClient::new(app)))
        .expect_err("the setup failed");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("no database today"), "{message}");
}

/// The worker's index and a count of this worker's requests (its `LocalState`).
async fn count(Local(count): Local<u32>) -> Json<serde_json::Value> {
    let n = count.with_mut(|n| {
        *n += 1;
        *n
    });
    Json(serde_json::json!({"worker": nucleon::runtime::current_worker(), "count": n}))
}

fn counting_app() -> App {
    App::new("counting")
        .default_config(PER_WORKER_CONFIG)
        .per_worker(|worker| {
            worker.local_state(0_u32);
            Ok(())
        })
        .route("/count", get(count))
}

#[test]
fn clients_on_one_thread_keep_their_own_worker_state() {
    let a = TestClient::new(counting_app());
    assert_eq!(a.get("/count").json::<serde_json::Value>()["count"], 1);
    let b = TestClient::new(counting_app());
    let first_of_b = b.get("/count");
    assert_eq!(first_of_b.json::<serde_json::Value>()["count"], 1);
    // As on a worker: worker 0, and the length hyper would write.
    assert_eq!(first_of_b.json::<serde_json::Value>()["worker"], 0);
    assert_eq!(
        first_of_b.header("content-length"),
        Some(first_of_b.bytes().len().to_string().as_str())
    );
    assert_eq!(a.get("/count").json::<serde_json::Value>()["count"], 2);
    drop(b);
    let after = a.get("/count");
    assert_eq!(after.status(), StatusCode::OK, "{}", after.text());
    assert_eq!(after.json::<serde_json::Value>()["count"], 3);
}

#[test]
fn stop_returns_an_on_stop_hook_s_error() {
    let client = TestClient::new(
        counting_app().on_stop(|| async { Err::<(), BoxError>("the flush failed".into()) }),
    );
    let error = client.stop().expect_err("the hook's error");
    assert!(error.to_string().contains("the flush failed"), "{error}");
}

/// A panicking on_stop hook is an error like a failing one (the runtime's rule), and
/// the hooks after it still run; in `Drop` it would otherwise panic while a failed
/// assertion unwinds, and abort the test binary.
#[test]
fn an_on_stop_hook_that_panics_is_an_error_and_the_next_hooks_run() {
    let after = Arc::new(AtomicBool::new(false));
    let ran = Arc::clone(&after);
    let client = TestClient::new(
        counting_app()
            .on_stop(|| async { panic!("the flush panicked") })
            .on_stop(move || async move {
                ran.store(true, Ordering::SeqCst);
                Ok(())
            }),
    );
    let error = client.stop().expect_err("the hook's panic");
    assert!(
        error
            .to_string()
            .contains("on_stop hook #0 failed: panicked: the flush panicked"),
        "{error}"
    );
    assert!(after.load(Ordering::SeqCst), "the next on_stop hook ran");
}
