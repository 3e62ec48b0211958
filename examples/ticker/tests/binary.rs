//! The ticker binary as a user runs it: it starts with no listener, ticks on every
//! worker, drains on SIGTERM, reports its count and exits 0.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

#[tokio::test]
async fn ticks_on_every_worker_drains_on_sigterm_and_exits_0() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ticker"))
        .args(["-j", "2"])
        .env("NUCLEON_TICKER__EVERY", "20")
        .env("NUCLEON_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the ticker starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let mut ticked = [false, false];
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            for (worker, ticked) in ticked.iter_mut().enumerate() {
                *ticked |= line.contains(&format!("on worker {worker}"));
            }
            seen.push(line);
            if ticked == [true, true] {
                return;
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "no tick on both workers: {seen:#?}");
    assert!(
        seen.iter().any(|l| l.contains("no HTTP listener")),
        "{seen:#?}"
    );
    let pid = child.id().unwrap().to_string();
    let killed = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(killed.success());
    let mut rest = Vec::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        rest.push(line);
    }
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("exits after the drain")
        .unwrap();
    assert!(status.success(), "{status}: {rest:#?}");
    assert!(
        rest.iter()
            .any(|l| l.contains("SIGTERM received: draining")),
        "{rest:#?}"
    );
    assert!(
        rest.iter().any(|l| l.contains("tick(s) in all")),
        "{rest:#?}"
    );
    assert!(rest.iter().any(|l| l.contains("stopped")), "{rest:#?}");
}
