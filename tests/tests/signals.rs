//! Real signals sent to a real child process: each starts a drain, the process exits 0
//! once in-flight work is done; a second signal forces exit.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader, Lines};
use tokio::process::{Child, ChildStdout, Command};

struct Service {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    seen: Vec<String>,
}

impl Service {
    async fn start(work_ms: u64, shutdown_timeout_ms: u64) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_signal-child"))
            .args([work_ms.to_string(), shutdown_timeout_ms.to_string()])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("start signal-child");
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut service = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        service.wait_for_line("ready").await;
        service
    }

    /// Reads stdout until a line equal to `expected` (fails after 20 s).
    async fn wait_for_line(&mut self, expected: &str) {
        let read = async {
            while let Some(line) = self.lines.next_line().await.unwrap() {
                let found = line == expected;
                self.seen.push(line);
                if found {
                    return;
                }
            }
            panic!("stdout closed before {expected:?}; saw {:?}", self.seen);
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .unwrap_or_else(|_| panic!("no {expected:?} within 20 s"));
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.id().expect("running") as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        #[allow(unsafe_code, reason = "sending a signal needs libc::kill")]
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill failed");
    }

    async fn exit(mut self) -> (i32, Vec<String>) {
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("exits within 20 s")
            .unwrap();
        while let Some(line) = self.lines.next_line().await.unwrap() {
            self.seen.push(line);
        }
        (status.code().expect("exited, not killed"), self.seen)
    }
}

#[tokio::test]
async fn each_drain_signal_leads_to_a_clean_exit_0() {
    for (name, signal) in [
        ("SIGTERM", libc::SIGTERM),
        ("SIGINT", libc::SIGINT),
        ("SIGHUP", libc::SIGHUP),
        ("SIGUSR1", libc::SIGUSR1),
    ] {
        let service = Service::start(100, 10_000).await;
        service.signal(signal);
        let (code, lines) = service.exit().await;
        assert_eq!(code, 0, "{name}: {lines:?}");
        for worker in 0..2 {
            assert!(
                lines.contains(&format!("worker {worker} finished its work")),
                "{name}: in-flight work on worker {worker} completed before exit: {lines:?}"
            );
        }
        assert_eq!(lines.last().map(String::as_str), Some("stopped"), "{name}");
    }
}

#[tokio::test]
async fn a_second_signal_forces_exit() {
    // The in-flight work would take a minute; the second signal does not wait for it.
    let mut service = Service::start(60_000, 120_000).await;
    service.signal(libc::SIGTERM);
    service.wait_for_line("worker 0 draining").await;
    service.signal(libc::SIGTERM);
    let (code, lines) = service.exit().await;
    assert_eq!(code, 1, "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("finished its work")),
        "{lines:?}"
    );
    assert!(!lines.contains(&"stopped".to_owned()));
}

#[tokio::test]
async fn a_drain_past_its_deadline_exits_non_zero() {
    let service = Service::start(60_000, 300).await;
    service.signal(libc::SIGTERM);
    let (code, lines) = service.exit().await;
    // The workers give up on the work at the deadline: the process stops (its stop hooks
    // run) instead of hanging, and its exit code says the drain was not clean.
    assert_eq!(code, 1, "{lines:?}");
    assert!(
        !lines.iter().any(|l| l.contains("finished its work")),
        "{lines:?}"
    );
    assert!(lines.contains(&"stopped".to_owned()), "{lines:?}");
    let error = lines.last().expect("an error line");
    assert!(
        error.starts_with("error: drain incomplete") && error.contains("still in flight"),
        "{lines:?}"
    );
}
