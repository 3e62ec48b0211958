//! The runtime's lifecycle, end to end: workers, supervisor, adapters, hooks, drain.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nucleon_runtime::{
    Adapter, AdapterContext, BoxError, Health, Phase, Runtime, RuntimeError, RuntimeHandle,
    current_worker,
};

type Log = Arc<Mutex<Vec<String>>>;

fn log(log: &Log, entry: impl Into<String>) {
    log.lock().unwrap().push(entry.into());
}

fn entries(log: &Log) -> Vec<String> {
    log.lock().unwrap().clone()
}

/// Builds and runs a runtime on its own thread, as a service's `main` would. (A runtime
/// is `!Send`: its hooks and process adapters may be; so it is built where it runs.)
fn start(
    build: impl FnOnce() -> Runtime + Send + 'static,
) -> (RuntimeHandle, JoinHandle<Result<(), RuntimeError>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = build();
        tx.send(runtime.handle()).unwrap();
        runtime.run()
    });
    (rx.recv().unwrap(), thread)
}

fn builder() -> nucleon_runtime::RuntimeBuilder {
    Runtime::builder().handle_signals(false)
}

/// An adapter that records its start and stop, and can be told to fail.
struct Recorder {
    name: String,
    log: Log,
    fail_start: bool,
}

impl Recorder {
    fn new(name: &str, log: &Log) -> Self {
        Self {
            name: name.to_owned(),
            log: Arc::clone(log),
            fail_start: false,
        }
    }
}

impl Adapter for Recorder {
    type Handle = ();

    fn name(&self) -> &str {
        &self.name
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<(), BoxError> {
        tokio::task::yield_now().await;
        if self.fail_start {
            return Err("connection refused (127.0.0.1:1)".into());
        }
        let place = ctx
            .worker()
            .map_or("process".to_owned(), |w| format!("w{w}"));
        log(&self.log, format!("start {} {place}", self.name));
        Ok(())
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        log(&self.log, format!("stop {}", self.name));
        Ok(())
    }
}

#[tokio::test]
async fn workers_run_not_send_futures_on_their_own_threads() {
    let seen: Arc<Mutex<HashSet<(usize, std::thread::ThreadId)>>> = Arc::default();
    let seen2 = Arc::clone(&seen);
    let (handle, thread) = start(move || {
        builder()
            .workers(3)
            .per_worker(move |worker| {
                let seen = Arc::clone(&seen2);
                // An Rc held across an await: this future is !Send.
                let state = Rc::new(std::cell::Cell::new(worker.id()));
                worker.spawn("not-send", async move {
                    tokio::task::yield_now().await;
                    let id = current_worker().expect("on a worker");
                    assert_eq!(state.get(), id);
                    seen.lock()
                        .unwrap()
                        .insert((id, std::thread::current().id()));
                });
                Ok(())
            })
            .build()
            .unwrap()
    });
    assert_eq!(handle.workers(), 3);
    assert_eq!(handle.wait_for(Phase::Serving).await, Phase::Serving);
    while seen.lock().unwrap().len() < 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    handle.shutdown();
    thread.join().unwrap().unwrap();
    let seen = seen.lock().unwrap();
    let workers: HashSet<usize> = seen.iter().map(|(w, _)| *w).collect();
    let threads: HashSet<_> = seen.iter().map(|(_, t)| *t).collect();
    assert_eq!(workers, HashSet::from([0, 1, 2]));
    assert_eq!(threads.len(), 3, "each worker is its own thread");
    assert_eq!(handle.phase(), Phase::Stopped);
}

#[tokio::test]
async fn supervisor_restarts_a_worker_that_panicked_while_starting() {
    let panicked = Arc::new(AtomicBool::new(false));
    let setups = Arc::new(AtomicUsize::new(0));
    let (p, s) = (Arc::clone(&panicked), Arc::clone(&setups));
    let (handle, thread) = start(move || {
        builder()
            .workers(2)
            .per_worker(move |worker| {
                s.fetch_add(1, Ordering::SeqCst);
                if worker.id() == 1 && !p.swap(true, Ordering::SeqCst) {
                    panic!("worker 1 fails its first setup");
                }
                Ok(())
            })
            .build()
            .unwrap()
    });
    assert_eq!(handle.wait_for(Phase::Serving).await, Phase::Serving);
    assert_eq!(handle.restarts(), 1);
    assert_eq!(
        setups.load(Ordering::SeqCst),
        3,
        "worker 1 was set up twice"
    );
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

/// An adapter whose first health check never answers, and panics when it is dropped
/// at its timeout. A panic inside a check is caught (the adapter is unhealthy); one in
/// its drop, outside any poll, is what is left to escape the worker loop and kill the
/// worker thread, as a bug in the runtime's own code would.
struct Fragile {
    armed: Arc<AtomicBool>,
}

/// Panics when dropped.
struct PanicOnDrop;

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            panic!("fragile health check dropped");
        }
    }
}

impl Adapter for Fragile {
    type Handle = ();

    fn name(&self) -> &str {
        "fragile"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
        Ok(())
    }

    async fn health(&self) -> Health {
        if self.armed.swap(false, Ordering::SeqCst) {
            let _bomb = PanicOnDrop;
            std::future::pending::<()>().await;
        }
        Health::Healthy
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        Ok(())
    }
}

#[tokio::test]
async fn supervisor_restarts_a_worker_whose_thread_died_while_serving() {
    let armed = Arc::new(AtomicBool::new(true));
    let a = Arc::clone(&armed);
    let (handle, thread) = start(move || {
        builder()
            .workers(1)
            .per_worker(move |worker| {
                worker.adapter(Fragile {
                    armed: Arc::clone(&a),
                });
                Ok(())
            })
            .build()
            .unwrap()
    });
    handle.wait_for(Phase::Serving).await;
    let first = handle.health().await;
    assert!(
        first.iter().all(|h| !h.health.is_serving()),
        "the worker died answering: {first:?}"
    );
    // The supervisor restarts it; its adapters answer again.
    let mut healthy = false;
    for _ in 0..200 {
        let report = handle.health().await;
        if report
            .iter()
            .any(|h| h.adapter == "fragile" && h.health == Health::Healthy)
        {
            healthy = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(healthy, "the restarted worker serves again");
    assert_eq!(handle.restarts(), 1);
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[tokio::test]
async fn a_panicking_task_ends_alone_and_the_worker_goes_on() {
    let survived = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&survived);
    let (handle, thread) = start(move || {
        builder()
            .workers(1)
            .per_worker(move |worker| {
                let s = Arc::clone(&s);
                worker.spawn("supervisor-of-test", async move {
                    let doomed = nucleon_runtime::spawn("doomed", async {
                        tokio::task::yield_now().await;
                        panic!("boom in a request");
                    });
                    let outcome = doomed.await;
                    assert!(outcome.unwrap_err().is_panic());
                    // The same worker keeps running tasks.
                    nucleon_runtime::spawn("after", async {}).await.unwrap();
                    s.store(true, Ordering::SeqCst);
                });
                Ok(())
            })
            .build()
            .unwrap()
    });
    handle.wait_for(Phase::Serving).await;
    while !survived.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(
        handle.restarts(),
        0,
        "a task panic does not kill the worker"
    );
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[tokio::test]
async fn adapters_start_in_order_and_stop_in_reverse_with_hooks_around_them() {
    let events: Log = Arc::default();
    let (e1, e2, e3, e4) = (
        Arc::clone(&events),
        Arc::clone(&events),
        Arc::clone(&events),
        Arc::clone(&events),
    );
    let e0 = Arc::clone(&events);
    let (handle, thread) = start(move || {
        builder()
            .workers(1)
            .adapter(Recorder::new("a", &e0))
            .adapter(Recorder::new("b", &e0))
            .per_worker(move |worker| {
                worker.adapter(Recorder::new("c", &e1));
                worker.adapter(Recorder::new("d", &e1));
                Ok(())
            })
            .on_initialise(move || async move {
                log(&e2, "initialise");
                Ok(())
            })
            .on_start(move || async move {
                log(&e3, "on_start");
                Ok(())
            })
            .on_stop(move || async move {
                log(&e4, "on_stop");
                Ok(())
            })
            .build()
            .unwrap()
    });
    handle.wait_for(Phase::Serving).await;
    handle.shutdown();
    thread.join().unwrap().unwrap();
    assert_eq!(
        entries(&events),
        [
            "initialise",
            "start a process",
            "start b process",
            "start c w0",
            "start d w0",
            "on_start",
            "stop d",
            "stop c",
            "stop b",
            "stop a",
            "on_stop",
        ]
    );
}

#[tokio::test]
async fn a_failing_adapter_stops_the_start_and_is_named() {
    let events: Log = Arc::default();
    let mut db = Recorder::new("db", &events);
    db.fail_start = true;
    let e0 = Arc::clone(&events);
    let e1 = Arc::clone(&events);
    let (_, thread) = start(move || {
        builder()
            .workers(1)
            .adapter(Recorder::new("cache", &e0))
            .adapter(db)
            .adapter(Recorder::new("never", &e0))
            // on_initialise ran, so on_stop runs too.
            .on_stop(move || async move {
                log(&e1, "on_stop");
                Ok(())
            })
            .build()
            .unwrap()
    });
    let error = thread.join().unwrap().unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("adapter `db` failed to start") && message.contains("connection refused"),
        "{message}"
    );
    assert_ne!(error.exit_code(), 0);
    assert_eq!(
        entries(&events),
        ["start cache process", "stop cache", "on_stop"]
    );
}

#[tokio::test]
async fn a_failing_worker_adapter_names_adapter_and_worker() {
    let events: Log = Arc::default();
    let e = Arc::clone(&events);
    let (_, thread) = start(move || {
        builder()
            .workers(1)
            .per_worker(move |worker| {
                let mut amqp = Recorder::new("amqp", &e);
                amqp.fail_start = true;
                worker.adapter(Recorder::new("http", &e)).adapter(amqp);
                Ok(())
            })
            .build()
            .unwrap()
    });
    let message = thread.join().unwrap().unwrap_err().to_string();
    assert!(
        message.contains("adapter `amqp` on worker 0 failed to start"),
        "{message}"
    );
    assert_eq!(entries(&events), ["start http w0", "stop http"]);
}

#[tokio::test]
async fn a_failing_hook_stops_the_start() {
    let (_, thread) = start(move || {
        builder()
            .workers(1)
            .on_initialise(|| async { Err("schema version 3 expected, found 2".into()) })
            .build()
            .unwrap()
    });
    let message = thread.join().unwrap().unwrap_err().to_string();
    assert!(
        message.contains("on_initialise hook #0 failed: schema version"),
        "{message}"
    );
}

#[tokio::test]
async fn drain_waits_for_in_flight_work() {
    let finished = Arc::new(AtomicBool::new(false));
    let f = Arc::clone(&finished);
    let (handle, thread) = start(move || {
        builder()
            .workers(1)
            .shutdown_timeout(Duration::from_secs(30))
            .per_worker(move |worker| {
                let drain = worker.drain().clone();
                let f = Arc::clone(&f);
                worker.spawn("request", async move {
                    let _guard = drain.guard();
                    drain.draining().await;
                    // Work accepted before the drain still completes.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    f.store(true, Ordering::SeqCst);
                });
                Ok(())
            })
            .build()
            .unwrap()
    });
    handle.wait_for(Phase::Serving).await;
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(handle.drain().in_flight(), 1);
    handle.shutdown();
    thread.join().unwrap().unwrap();
    assert!(
        finished.load(Ordering::SeqCst),
        "run returned before the work ended"
    );
    assert_eq!(handle.drain().in_flight(), 0);
}

#[tokio::test]
async fn drain_honours_its_deadline_and_says_it_was_not_clean() {
    // A guard held far longer than the deadline, on another thread, is abandoned.
    let (handle, thread) = start(move || {
        builder()
            .workers(1)
            .shutdown_timeout(Duration::from_millis(200))
            .build()
            .unwrap()
    });
    handle.wait_for(Phase::Serving).await;
    let stuck = handle.drain().guard();
    handle.shutdown();
    // If the deadline were ignored, run would wait for the guard forever.
    let joined = tokio::time::timeout(
        Duration::from_secs(20),
        tokio::task::spawn_blocking(move || thread.join().unwrap()),
    )
    .await
    .expect("run returns at the deadline, not when the work ends")
    .unwrap();
    let error = joined.unwrap_err();
    assert!(
        matches!(error, RuntimeError::DrainIncomplete { .. }),
        "{error}"
    );
    assert!(
        error
            .to_string()
            .contains("1 unit(s) of work still in flight"),
        "{error}"
    );
    assert_ne!(error.exit_code(), 0);
    assert_eq!(
        handle.drain().in_flight(),
        1,
        "run returned without waiting for it"
    );
    drop(stuck);
}

/// A per-process adapter whose health check never answers (a ping to a dead server
/// without a timeout).
struct HealthNeverAnswers;

impl Adapter for HealthNeverAnswers {
    type Handle = ();

    fn name(&self) -> &str {
        "health-never-answers"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
        Ok(())
    }

    async fn health(&self) -> Health {
        std::future::pending().await
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A per-process adapter whose start never ends (a connect that retries for ever).
struct StartsForEver;

impl Adapter for StartsForEver {
    type Handle = ();

    fn name(&self) -> &str {
        "starts-for-ever"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
        std::future::pending().await
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        Ok(())
    }
}

/// A signal (here `shutdown`) while a process adapter starts ends the start: the
/// adapters that started stop, no worker starts, and `run` returns at once rather
/// than after the start timeout (30 s).
#[test]
fn a_drain_during_the_start_ends_it_at_once() {
    let events: Log = Arc::default();
    let e0 = Arc::clone(&events);
    let (handle, thread) = start(move || {
        builder()
            .workers(1)
            .adapter(Recorder::new("cache", &e0))
            .adapter(StartsForEver)
            .build()
            .unwrap()
    });
    // Once the first adapter has started (the second is starting, for ever).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while entries(&events).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "the first adapter started"
        );
        std::thread::yield_now();
    }
    handle.shutdown();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(thread.join().expect("no panic"));
    });
    let result = done_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("run ended without waiting out the start timeout");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(entries(&events), ["start cache process", "stop cache"]);
    assert_eq!(handle.phase(), Phase::Stopped);
}

/// A hook that panics is an error like one that fails: the workers are stopped, the
/// on_stop hooks run, and `run` returns the error instead of unwinding.
#[test]
fn a_panicking_on_start_hook_is_an_error_and_the_workers_stop() {
    let stopped = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&stopped);
    let (handle, thread) = start(move || {
        builder()
            .workers(1)
            .on_start(|| async { panic!("cannot warm the cache") })
            .on_stop(move || async move {
                s.store(true, Ordering::SeqCst);
                Ok(())
            })
            .build()
            .unwrap()
    });
    let error = thread
        .join()
        .expect("run returns, it does not unwind")
        .expect_err("the hook's failure");
    assert!(
        error
            .to_string()
            .contains("on_start hook #0 failed: panicked: cannot warm the cache"),
        "{error}"
    );
    assert!(stopped.load(Ordering::SeqCst), "on_stop ran");
    assert_eq!(handle.phase(), Phase::Stopped);
}

/// on_stop hooks are cleanup: one that fails does not keep the next from running.
#[tokio::test]
async fn every_on_stop_hook_runs_and_the_first_error_is_returned() {
    let second = Arc::new(AtomicBool::new(false));
    let s = Arc::clone(&second);
    let (handle, thread) = start(move || {
        builder()
            .workers(1)
            .on_stop(|| async { Err::<(), BoxError>("cannot flush".into()) })
            .on_stop(move || async move {
                s.store(true, Ordering::SeqCst);
                Ok(())
            })
            .build()
            .unwrap()
    });
    handle.wait_for(Phase::Serving).await;
    handle.shutdown();
    let error = thread.join().unwrap().expect_err("the first hook's error");
    assert!(
        error
            .to_string()
            .contains("on_stop hook #0 failed: cannot flush"),
        "{error}"
    );
    assert!(second.load(Ordering::SeqCst), "the second on_stop hook ran");
}

/// A tokio blocking thread stuck in a call (a `spawn_blocking` that never returns)
/// does not keep the worker's thread, and so the process, from ending.
#[test]
fn a_stuck_spawn_blocking_does_not_hold_the_worker_s_end() {
    let (stuck_tx, stuck_rx) = std::sync::mpsc::channel::<()>();
    let stuck_rx = Arc::new(std::sync::Mutex::new(Some(stuck_rx)));
    let (handle, thread) = start(move || {
        let stuck_rx = Arc::clone(&stuck_rx);
        builder()
            .workers(1)
            .per_worker(move |worker| {
                if let Some(rx) = stuck_rx.lock().unwrap().take() {
                    worker.spawn("stuck", async move {
                        let _ = tokio::task::spawn_blocking(move || rx.recv()).await;
                    });
                }
                Ok(())
            })
            .build()
            .unwrap()
    });
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let probe = handle.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(probe.wait_for(Phase::Serving));
        probe.shutdown();
        let _ = done_tx.send(thread.join().expect("no panic"));
    });
    let result = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime ended, though a blocking thread is stuck");
    assert!(result.is_ok(), "{result:?}");
    drop(stuck_tx);
}

/// A health check that never answers is reported unhealthy after HEALTH_TIMEOUT: the
/// report comes, and the control loop (which restarts workers) is not held by it.
#[tokio::test]
async fn a_health_check_that_never_answers_is_unhealthy_after_its_timeout() {
    let (handle, thread) = start(|| {
        builder()
            .workers(1)
            .adapter(HealthNeverAnswers)
            .build()
            .unwrap()
    });
    handle.wait_for(Phase::Serving).await;
    let report = tokio::time::timeout(nucleon_runtime::HEALTH_TIMEOUT * 3, handle.health())
        .await
        .expect("a report, though one check never answers");
    let stuck = report
        .iter()
        .find(|h| h.worker.is_none())
        .expect("the process adapter's entry");
    assert!(
        matches!(&stuck.health, Health::Unhealthy(why) if why.contains("no answer")),
        "{report:?}"
    );
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn a_health_check_that_never_answers_does_not_hold_the_drain_up() {
    let (handle, thread) = start(|| {
        builder()
            .workers(1)
            .adapter(HealthNeverAnswers)
            .build()
            .unwrap()
    });
    let probe = handle.clone();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert_eq!(probe.wait_for(Phase::Serving).await, Phase::Serving);
            // A readiness probe asks; the answer never comes; then the service is told
            // to stop.
            let asking = probe.clone();
            let health = tokio::spawn(async move { asking.health().await });
            tokio::time::sleep(Duration::from_millis(200)).await;
            probe.shutdown();
            let _ = health.await;
        });
        let _ = done_tx.send(thread.join().expect("no panic"));
    });
    let result = done_rx
        .recv_timeout(Duration::from_secs(20))
        .expect("the runtime ended, though a health check never answered");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(handle.phase(), Phase::Stopped);
}
