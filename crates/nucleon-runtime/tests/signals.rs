//! Signals, as a service sees them: a signal that arrives while a drain started
//! another way (`RuntimeHandle::shutdown`) joins that drain, and the runtime ends as
//! the drain does; only a second signal forces exit. A test binary of its own: signals
//! are the whole process's.

use std::time::{Duration, Instant};

use nucleon_runtime::{Adapter, AdapterContext, BoxError, Phase, Runtime};

/// A per-process adapter whose stop takes a moment: the drain is still under way
/// when the signal comes.
struct SlowStop;

impl Adapter for SlowStop {
    type Handle = ();

    fn name(&self) -> &str {
        "slow-stop"
    }

    async fn start(&mut self, _ctx: &AdapterContext) -> Result<(), BoxError> {
        Ok(())
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        tokio::time::sleep(Duration::from_millis(500)).await;
        Ok(())
    }
}

#[test]
fn a_signal_during_a_drain_started_by_the_handle_joins_it() {
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = Runtime::builder()
            .workers(1)
            .handle_signals(true)
            .adapter(SlowStop)
            .build()
            .expect("a runtime");
        tx.send(runtime.handle()).unwrap();
        runtime.run()
    });
    let handle = rx.recv().unwrap();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            assert_eq!(handle.wait_for(Phase::Serving).await, Phase::Serving);
            handle.shutdown();
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Before: the first signal counted as the second (a drain was under way),
            // and the process exited 1 on the spot, this test with it.
            let status = tokio::process::Command::new("kill")
                .args(["-TERM", &std::process::id().to_string()])
                .status()
                .await
                .expect("kill runs");
            assert!(status.success());
        });
    let result = thread.join().expect("no panic");
    assert!(result.is_ok(), "{result:?}");
    assert_eq!(handle.phase(), Phase::Stopped);
}
