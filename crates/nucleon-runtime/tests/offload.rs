//! Offload pools: bounded, with a clear error when full; panics contained.

use std::sync::mpsc;
use std::time::Duration;

use nucleon_runtime::offload::{self, Blocking, OffloadError, OffloadPool, PoolConfig};

/// Yields until `ready` holds; fails the test after 10 s instead of hanging.
async fn wait_until(what: &str, ready: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn pool(threads: usize, queue: usize) -> OffloadPool {
    OffloadPool::new(
        "test",
        PoolConfig {
            max_threads: threads,
            queue,
            keep_alive: Duration::from_secs(5),
        },
    )
}

/// A job that occupies one of the pool's threads until the returned sender is used.
async fn occupy(
    pool: &OffloadPool,
) -> (
    mpsc::Sender<()>,
    tokio::task::JoinHandle<Result<(), OffloadError>>,
) {
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let running = tokio::spawn({
        let pool = pool.clone();
        async move {
            pool.run(move || {
                let _ = started_tx.send(());
                release_rx.recv().unwrap();
            })
            .await
        }
    });
    started_rx.await.unwrap();
    (release_tx, running)
}

#[tokio::test]
async fn a_full_pool_refuses_at_once_and_recovers() {
    let pool = pool(1, 1);
    let (release_tx, running) = occupy(&pool).await;
    // Fills the queue.
    let queued = tokio::spawn({
        let pool = pool.clone();
        async move { pool.run(|| 2).await }
    });
    wait_until("a queued job", || pool.stats().queued == 1).await;
    // The next one is refused at once, with a message that says what to do.
    let refused = pool.run(|| 3).await.unwrap_err();
    assert!(matches!(refused, OffloadError::Saturated { .. }));
    assert!(refused.to_string().contains("saturated"), "{refused}");
    assert_eq!(pool.stats().rejected, 1);

    release_tx.send(()).unwrap();
    assert_eq!(running.await.unwrap(), Ok(()));
    assert_eq!(queued.await.unwrap(), Ok(2));
    assert_eq!(pool.run(|| 4).await, Ok(4));
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.threads), (3, 1));
}

/// A job whose caller stopped waiting before a thread took it is not run: under
/// overload, threads do not work for requests whose clients have gone.
#[tokio::test]
async fn a_queued_job_whose_caller_left_is_not_run() {
    let pool = pool(1, 1);
    let (release_tx, running) = occupy(&pool).await;
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let queued = tokio::spawn({
        let (pool, ran) = (pool.clone(), std::sync::Arc::clone(&ran));
        async move {
            pool.run(move || ran.store(true, std::sync::atomic::Ordering::SeqCst))
                .await
        }
    });
    wait_until("a queued job", || pool.stats().queued == 1).await;
    // Its caller goes away (a client that left, a timeout).
    queued.abort();
    assert!(queued.await.unwrap_err().is_cancelled());
    // Its place in the full queue goes to the next caller, though the thread is busy.
    let next = tokio::spawn({
        let pool = pool.clone();
        async move { pool.run(|| 5).await }
    });
    wait_until("the next job queued", || pool.stats().queued == 1).await;
    assert_eq!(pool.stats().rejected, 0);

    release_tx.send(()).unwrap();
    running.await.unwrap().unwrap();
    assert_eq!(next.await.unwrap(), Ok(5));
    assert!(
        !ran.load(std::sync::atomic::Ordering::SeqCst),
        "withdrawn, not run"
    );
    let stats = pool.stats();
    assert_eq!((stats.completed, stats.abandoned), (2, 1));
}

/// A job's slot is free by the time its caller has the result: one caller after
/// another on a pool with room for exactly one job is never refused, and the figures
/// already count every job it got back.
#[tokio::test]
async fn a_caller_with_its_result_finds_the_slot_free() {
    let pool = pool(1, 0);
    for n in 0..2000_u64 {
        assert_eq!(pool.run(move || n).await, Ok(n), "job {n}");
        assert_eq!(pool.stats().completed, n + 1);
    }
    assert_eq!(pool.stats().rejected, 0);
}

#[tokio::test]
async fn a_pool_grows_to_its_limit_on_demand() {
    let pool = pool(3, 0);
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let release_rx = std::sync::Arc::new(std::sync::Mutex::new(release_rx));
    let mut jobs = Vec::new();
    for n in 0..3 {
        let rx = std::sync::Arc::clone(&release_rx);
        let pool = pool.clone();
        jobs.push(tokio::spawn(async move {
            pool.run(move || {
                rx.lock().unwrap().recv().unwrap();
                n
            })
            .await
        }));
    }
    wait_until("three running jobs", || {
        let stats = pool.stats();
        stats.threads == 3 && stats.queued == 0 && stats.idle == 0
    })
    .await;
    assert!(matches!(
        pool.run(|| 9).await,
        Err(OffloadError::Saturated { .. })
    ));
    for _ in 0..3 {
        release_tx.send(()).unwrap();
    }
    let mut results = Vec::new();
    for job in jobs {
        results.push(job.await.unwrap().unwrap());
    }
    results.sort_unstable();
    assert_eq!(results, [0, 1, 2]);
}

#[tokio::test]
async fn a_panicking_job_is_an_error_and_the_pool_goes_on() {
    let pool = pool(1, 4);
    let error = pool
        .run(|| -> u8 { panic!("corrupt input") })
        .await
        .unwrap_err();
    assert_eq!(
        error,
        OffloadError::Panicked {
            pool: "test".into(),
            message: "corrupt input".into()
        }
    );
    assert_eq!(pool.run(|| 5).await, Ok(5));
}

#[tokio::test]
async fn global_blocking_and_cpu_pools_run_work_off_the_caller() {
    let caller = std::thread::current().id();
    let on = offload::blocking(|| std::thread::current().id())
        .await
        .unwrap();
    assert_ne!(on, caller);
    let sum = offload::cpu(|| (1..=1000_u64).sum::<u64>()).await.unwrap();
    assert_eq!(sum, 500_500);
}

/// A stand-in for a synchronous client: not `Send`, as many are.
struct SyncClient {
    calls: std::rc::Rc<std::cell::Cell<u32>>,
}

#[tokio::test]
async fn blocking_client_owns_a_not_send_client_on_its_thread() {
    let client = Blocking::new("sync-client", 1, 8, || SyncClient {
        calls: std::rc::Rc::default(),
    })
    .unwrap();
    for _ in 0..3 {
        client
            .call(|c| c.calls.set(c.calls.get() + 1))
            .await
            .unwrap();
    }
    assert_eq!(client.call(|c| c.calls.get()).await, Ok(3));
    let error = client
        .call(|_| -> () { panic!("driver bug") })
        .await
        .unwrap_err();
    assert!(matches!(error, OffloadError::Panicked { .. }));
    assert_eq!(
        client.call(|c| c.calls.get()).await,
        Ok(3),
        "the client survives"
    );
}

#[tokio::test]
async fn blocking_client_queue_is_bounded() {
    let client = Blocking::new("slow", 1, 1, || ()).unwrap();
    let (release_tx, release_rx) = mpsc::channel::<()>();
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let busy = tokio::spawn({
        let client = client.clone();
        async move {
            client
                .call(move |()| {
                    let _ = started_tx.send(());
                    release_rx.recv().unwrap();
                })
                .await
        }
    });
    started_rx.await.unwrap();
    let queued = tokio::spawn({
        let client = client.clone();
        async move { client.call(|()| 1).await }
    });
    // On this current-thread test runtime, a few yields let the queued call take the
    // single queue slot.
    for _ in 0..3 {
        tokio::task::yield_now().await;
    }
    let refused = client.call(|()| 2).await.unwrap_err();
    assert!(
        matches!(refused, OffloadError::Saturated { .. }),
        "{refused}"
    );
    release_tx.send(()).unwrap();
    busy.await.unwrap().unwrap();
    assert_eq!(queued.await.unwrap(), Ok(1));
}

#[tokio::test]
async fn blocking_client_whose_factory_panicked_reports_closed() {
    let client: Blocking<()> = Blocking::new("broken", 1, 1, || panic!("cannot connect")).unwrap();
    let error = client.call(|()| ()).await.unwrap_err();
    assert!(matches!(error, OffloadError::Closed { .. }), "{error}");
}
