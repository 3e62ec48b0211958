//! Adapters' second shape: handles by scope and name, the process loop, the three phases
//! of the drain, the requirement check, health as a worker sees it.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nucleon_runtime::handle::{self, HandleKey, Requirement};
use nucleon_runtime::{
    Adapter, AdapterContext, BoxError, Health, Phase, Runtime, RuntimeError, RuntimeHandle,
    WatchdogConfig, current_worker,
};
use nucleon_testkit::wait_until;

type Log = Arc<Mutex<Vec<(String, Duration)>>>;

/// When (since `since`) things happened.
#[derive(Clone)]
struct Timeline {
    since: Instant,
    log: Log,
}

impl Timeline {
    fn new() -> Self {
        Self {
            since: Instant::now(),
            log: Arc::default(),
        }
    }

    fn note(&self, what: impl Into<String>) {
        self.log
            .lock()
            .unwrap()
            .push((what.into(), self.since.elapsed()));
    }

    fn at(&self, what: &str) -> Duration {
        self.log
            .lock()
            .unwrap()
            .iter()
            .find(|(w, _)| w == what)
            .unwrap_or_else(|| panic!("`{what}` never happened: {:?}", self.log))
            .1
    }

    fn order(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .iter()
            .map(|(w, _)| w.clone())
            .collect()
    }
}

/// Builds and runs a runtime on its own thread; returns once it serves.
fn start(
    build: impl FnOnce() -> Runtime + Send + 'static,
) -> (RuntimeHandle, JoinHandle<Result<(), RuntimeError>>) {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = build();
        tx.send(runtime.handle()).unwrap();
        runtime.run()
    });
    let handle = rx.recv().unwrap();
    let phase = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(handle.wait_for(Phase::Serving));
    assert_eq!(phase, Phase::Serving, "the runtime serves");
    (handle, thread)
}

/// A connection pool stand-in: which adapter made it.
#[derive(Clone, Debug, PartialEq)]
struct Pool {
    made_by: String,
}

/// Gives a `Pool`, named or not; takes `drain_for` to stop taking work, `flush_for` to
/// stop; notes each step.
struct PoolAdapter {
    instance: Option<&'static str>,
    timeline: Timeline,
    drain_for: Duration,
    flush_for: Duration,
}

impl PoolAdapter {
    fn new(instance: Option<&'static str>, timeline: &Timeline) -> Self {
        Self {
            instance,
            timeline: timeline.clone(),
            drain_for: Duration::ZERO,
            flush_for: Duration::ZERO,
        }
    }

    fn label(&self) -> String {
        format!(
            "{}@{}",
            self.instance.unwrap_or("main"),
            current_worker().map_or_else(|| "process".to_owned(), |w| format!("worker{w}"))
        )
    }
}

impl Adapter for PoolAdapter {
    type Handle = Pool;

    fn name(&self) -> &str {
        "pool"
    }

    fn instance(&self) -> Option<&str> {
        self.instance
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<Pool, BoxError> {
        Ok(Pool {
            made_by: self.label(),
        })
    }

    async fn drain(&mut self, _deadline: Instant) {
        self.timeline.note(format!("drain {}", self.label()));
        tokio::time::sleep(self.drain_for).await;
    }

    async fn stop(&mut self, deadline: Instant) -> Result<(), BoxError> {
        let label = self.label();
        self.timeline.note(format!("stop {label}"));
        if deadline < Instant::now() + self.flush_for {
            return Err(format!(
                "{label}: {:?} is too little to flush",
                deadline - Instant::now()
            )
            .into());
        }
        tokio::time::sleep(self.flush_for).await;
        self.timeline.note(format!("stopped {label}"));
        Ok(())
    }
}

#[test]
fn handles_are_found_by_scope_and_name_on_every_worker() {
    let timeline = Timeline::new();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (t, s) = (timeline.clone(), Arc::clone(&seen));
    let (handle, thread) = start(move || {
        Runtime::builder()
            .handle_signals(false)
            .workers(2)
            .adapter(PoolAdapter::new(Some("reporting"), &t))
            .per_worker(move |worker| {
                worker.adapter(PoolAdapter::new(None, &t));
                let seen = Arc::clone(&s);
                worker.spawn("look", async move {
                    seen.lock().unwrap().push((
                        current_worker(),
                        handle::get::<Pool>().map(|p| p.made_by),
                        handle::named::<Pool>("reporting").map(|p| p.made_by),
                        handle::named::<Pool>("nobody").map(|p| p.made_by),
                    ));
                });
                Ok(())
            })
            .on_start(|| async {
                // Hooks see the process's handles too.
                let reporting = handle::named::<Pool>("reporting").ok_or("no reporting pool")?;
                assert_eq!(reporting.made_by, "reporting@process");
                assert!(handle::get::<Pool>().is_none(), "no worker's pool here");
                Ok(())
            })
            .build()
            .unwrap()
    });
    wait_until("both workers looked", Duration::from_secs(5), || {
        seen.lock().unwrap().len() == 2
    });
    let mut looked = seen.lock().unwrap().clone();
    looked.sort_by_key(|(w, ..)| *w);
    let reporting = Some("reporting@process".to_owned());
    assert_eq!(
        looked,
        [
            (
                Some(0),
                Some("main@worker0".to_owned()),
                reporting.clone(),
                None
            ),
            (Some(1), Some("main@worker1".to_owned()), reporting, None),
        ]
    );
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

/// The drain's three phases with the default 10 s timeout: a worker adapter that takes
/// 5 s to stop taking work (as HTTP's lame duck does) does not delay the moment the
/// process adapter hears of the drain, and the process adapter, stopped after the
/// workers, still has the 2 s its flush needs.
#[test]
fn a_process_adapter_gets_its_flush_time_after_a_long_worker_drain() {
    let timeline = Timeline::new();
    let t = timeline.clone();
    let in_flight_done = Arc::new(AtomicUsize::new(0));
    let done = Arc::clone(&in_flight_done);
    let (handle, thread) = start(move || {
        let mut flusher = PoolAdapter::new(Some("broker"), &t);
        flusher.flush_for = Duration::from_secs(2);
        let t2 = t.clone();
        Runtime::builder()
            .handle_signals(false)
            .workers(1)
            .shutdown_timeout(Duration::from_secs(10))
            .adapter(flusher)
            .per_worker(move |worker| {
                let mut lame_duck = PoolAdapter::new(None, &t2);
                lame_duck.drain_for = Duration::from_secs(5);
                worker.adapter(lame_duck);
                // Work in flight at the drain: it still reaches the worker's pool, not yet
                // stopped, 500 ms into the drain.
                let drain = worker.drain().clone();
                let (t3, done) = (t2.clone(), Arc::clone(&done));
                worker.spawn("request", async move {
                    let _guard = drain.guard();
                    drain.draining().await;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    let pool = handle::get::<Pool>().expect("the worker's pool, still there");
                    t3.note(format!("in flight used {}", pool.made_by));
                    done.fetch_add(1, Ordering::SeqCst);
                });
                Ok(())
            })
            .build()
            .unwrap()
    });
    let drain_started = timeline.since.elapsed();
    handle.shutdown();
    thread
        .join()
        .unwrap()
        .unwrap_or_else(|e| panic!("a clean drain: {e}; {:?}", timeline.order()));
    assert_eq!(in_flight_done.load(Ordering::SeqCst), 1);
    let order = timeline.order();
    let position = |what: &str| order.iter().position(|w| w == what).unwrap();
    assert!(
        position("in flight used main@worker0") < position("stop main@worker0"),
        "{order:?}"
    );
    assert!(
        position("stop main@worker0") < position("stop broker@process"),
        "{order:?}"
    );
    assert!(
        order.contains(&"stopped broker@process".to_owned()),
        "{order:?}"
    );
    // Both heard of the drain at its start, not one after the other's drain.
    let told = timeline.at("drain broker@process") - drain_started;
    assert!(
        told < Duration::from_secs(2),
        "told after {told:?}: {order:?}"
    );
}

#[test]
fn a_handle_no_adapter_gives_is_a_start_error_and_a_check_error() {
    let need = || Requirement {
        key: HandleKey::named::<Pool>("reporting"),
        needed_by: "GET /reports".into(),
    };
    let timeline = Timeline::new();
    let runtime = Runtime::builder()
        .handle_signals(false)
        .workers(1)
        .require(need())
        .adapter(PoolAdapter::new(None, &timeline))
        .build()
        .unwrap();
    let error = runtime
        .check()
        .expect_err("nothing gives the reporting pool");
    let message = error.to_string();
    assert!(
        message.contains("GET /reports needs `") && message.contains("Pool named `reporting`"),
        "{message}"
    );
    let run = runtime.run().expect_err("the start fails");
    assert!(matches!(run, RuntimeError::MissingHandles { .. }), "{run}");

    // Given per worker, it is found by the check's dry run of the setup.
    let runtime = Runtime::builder()
        .handle_signals(false)
        .require(need())
        .per_worker(move |worker| {
            worker.adapter(PoolAdapter::new(Some("reporting"), &timeline));
            Ok(())
        })
        .build()
        .unwrap();
    let provided = runtime.check().expect("given per worker");
    assert_eq!(provided, [HandleKey::named::<Pool>("reporting")]);
}

/// Blocks the loop it runs on for a while, at start: stands for a per-process adapter
/// whose start calls a blocking library.
struct BlocksAtStart;

impl Adapter for BlocksAtStart {
    type Handle = ();

    fn name(&self) -> &str {
        "blocks"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
        nucleon_runtime::spawn("legacy flush", async {
            #[allow(
                clippy::disallowed_methods,
                reason = "blocks the process loop on purpose"
            )]
            std::thread::sleep(Duration::from_millis(300));
        });
        Ok(())
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn the_watchdog_names_a_task_blocking_the_process_loop() {
    let (handle, thread) = start(|| {
        Runtime::builder()
            .handle_signals(false)
            .workers(1)
            .watchdog(WatchdogConfig {
                threshold: Duration::from_millis(50),
                ..WatchdogConfig::default()
            })
            .adapter(BlocksAtStart)
            .build()
            .unwrap()
    });
    let found = || {
        handle
            .watchdog()
            .recent_reports()
            .into_iter()
            .find(|r| r.process_loop && r.task.as_deref() == Some("legacy flush"))
    };
    wait_until(
        "a report naming the process loop's task",
        Duration::from_secs(5),
        || found().is_some(),
    );
    let report = found().unwrap();
    assert_eq!(report.loop_name(), "the process loop");
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

/// A health of its own, set from outside.
struct Flaky(Arc<AtomicUsize>);

impl Adapter for Flaky {
    type Handle = ();

    fn name(&self) -> &str {
        "flaky"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
        Ok(())
    }

    async fn health(&self) -> Health {
        match self.0.load(Ordering::SeqCst) {
            0 => Health::Healthy,
            _ => Health::Unhealthy("the broker is gone".into()),
        }
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn a_worker_sees_its_own_adapters_health_and_the_process_s() {
    let broken = Arc::new(AtomicUsize::new(0));
    let reports = Arc::new(Mutex::new(Vec::new()));
    let (b, r) = (Arc::clone(&broken), Arc::clone(&reports));
    let (asked_tx, asked_rx) = std::sync::mpsc::channel::<()>();
    let asked_rx = Arc::new(Mutex::new(Some(asked_rx)));
    let (handle, thread) = start(move || {
        Runtime::builder()
            .handle_signals(false)
            .workers(1)
            .adapter(Flaky(b))
            .per_worker(move |worker| {
                worker.adapter(Flaky(Arc::new(AtomicUsize::new(0))));
                let reports = Arc::clone(&r);
                let asked = asked_rx.lock().unwrap().take();
                worker.spawn("asks", async move {
                    let Some(asked) = asked else { return };
                    for _ in 0..2 {
                        while asked.try_recv().is_err() {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        let report = nucleon_runtime::health::report().await;
                        reports.lock().unwrap().push(report);
                    }
                });
                Ok(())
            })
            .build()
            .unwrap()
    });
    let wait_for = |n: usize| {
        wait_until("a health report", Duration::from_secs(5), || {
            reports.lock().unwrap().len() >= n
        });
    };
    asked_tx.send(()).unwrap();
    wait_for(1);
    broken.store(1, Ordering::SeqCst);
    asked_tx.send(()).unwrap();
    wait_for(2);
    let reports = reports.lock().unwrap().clone();
    let summary = |i: usize| -> Vec<(Option<usize>, bool)> {
        reports[i]
            .iter()
            .map(|h| (h.worker, h.health.is_serving()))
            .collect()
    };
    assert_eq!(summary(0), [(None, true), (Some(0), true)]);
    assert_eq!(summary(1), [(None, false), (Some(0), true)]);
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

/// Its health check panics.
struct PanicsWhenAsked;

impl Adapter for PanicsWhenAsked {
    type Handle = ();

    fn name(&self) -> &str {
        "panicky"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
        Ok(())
    }

    async fn health(&self) -> Health {
        panic!("the client library's bug")
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        Ok(())
    }
}

#[test]
fn a_health_check_that_panics_is_unhealthy_and_the_loops_go_on() {
    let (handle, thread) = start(|| {
        Runtime::builder()
            .handle_signals(false)
            .workers(1)
            .adapter(PanicsWhenAsked)
            .per_worker(|worker| {
                worker.adapter(PanicsWhenAsked);
                Ok(())
            })
            .build()
            .unwrap()
    });
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for _ in 0..2 {
        let health = rt.block_on(handle.health());
        assert_eq!(health.len(), 2, "{health:?}");
        for entry in &health {
            assert!(
                matches!(&entry.health, Health::Unhealthy(why) if why.contains("the client library's bug")),
                "{entry:?}"
            );
        }
    }
    assert_eq!(handle.restarts(), 0, "no loop died");
    handle.shutdown();
    thread.join().unwrap().unwrap();
}

#[test]
fn a_process_reserve_that_leaves_the_workers_nothing_is_refused() {
    let config = nucleon_runtime::Config::from_toml(
        "[default.runtime]\nshutdown_timeout = \"2s\"\nprocess_reserve = \"2s\"\n",
        "default",
    )
    .unwrap();
    let error = match Runtime::builder()
        .config(config)
        .adapter(PanicsWhenAsked)
        .build()
    {
        Ok(_) => panic!("a reserve of the whole timeout was taken"),
        Err(error) => error,
    };
    assert!(
        error.to_string().contains("runtime.process_reserve"),
        "{error}"
    );
}
