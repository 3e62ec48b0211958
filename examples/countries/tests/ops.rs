//! Running the binary as an operator does: a pidfile, root's privileges dropped once
//! the port is bound, JSON logs, and a restart without downtime (a new process on the
//! same port, the old one drained by SIGTERM) under a client that never stops.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use support::{exchange, get, reserve_port, sigterm};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

async fn listening(addr: SocketAddr) {
    for _ in 0..600 {
        if TcpStream::connect(addr).await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nothing listens on {addr}");
}

async fn wait_for_file(path: &Path) -> String {
    for _ in 0..600 {
        if let Ok(text) = tokio::fs::read_to_string(path).await
            && text.ends_with('\n')
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{} was never written", path.display());
}

/// The line of `/proc/<pid>/status` that starts with `field`.
async fn status_line(pid: u32, field: &str) -> String {
    let status = tokio::fs::read_to_string(format!("/proc/{pid}/status"))
        .await
        .unwrap();
    status
        .lines()
        .find(|l| l.starts_with(field))
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn pidfile_privileges_and_json_logs() {
    // Only root can give root's privileges up.
    if !status_line(std::process::id(), "Uid:")
        .await
        .contains("\t0\t")
    {
        panic!("this test drops root's privileges: run it as root (it is, in CI)");
    }
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops-pidfile");
    let _ = tokio::fs::remove_dir_all(&dir).await;
    tokio::fs::create_dir_all(&dir).await.unwrap();
    // The user the service becomes must be able to remove its pidfile at exit.
    Command::new("chmod")
        .args(["0777"])
        .arg(&dir)
        .status()
        .await
        .unwrap();
    let pidfile = dir.join("countries.pid");
    let (port, _reserved) = reserve_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_countries"))
        .args(["--port", &port.to_string(), "-j", "1", "--user", "nobody"])
        .arg("--pidfile")
        .arg(&pidfile)
        .args(["--log-format", "json"])
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = child.id().unwrap();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    listening(addr).await;
    assert_eq!(wait_for_file(&pidfile).await, format!("{pid}\n"));
    // The privileges go once every worker is up: wait for the drop, then look.
    let mut uid = String::new();
    for _ in 0..100 {
        uid = status_line(pid, "Uid:").await;
        if uid.contains("65534") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        uid.split_whitespace().skip(1).collect::<Vec<_>>(),
        ["65534"; 4],
        "{uid}"
    );
    let groups = status_line(pid, "Groups:").await;
    assert!(!groups.split_whitespace().any(|g| g == "0"), "{groups}");
    let served = get(addr, "GET", "/countries/gb/").await;
    assert_eq!(served.status, 200);
    // A second instance given the same pidfile is refused: the first one runs.
    let (other_port, _other) = reserve_port();
    let refused = Command::new(env!("CARGO_BIN_EXE_countries"))
        .args(["--port", &other_port.to_string(), "-j", "1"])
        .arg("--pidfile")
        .arg(&pidfile)
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(4), "{said}");
    assert!(said.contains("is running"), "{said}");
    sigterm(&child).await;
    let status = child.wait().await.unwrap();
    assert!(status.success(), "exit status {status}");
    assert!(!pidfile.exists(), "the pidfile is removed at exit");
    let mut out = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    let lines: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let access = lines
        .iter()
        .find(|l| l["target"] == "nucleon::access" && l["path"] == "/countries/gb/")
        .expect("an access line");
    // The request's id as the client saw it, its route, its worker: JSON fields.
    assert_eq!(
        access["request_id"].as_str(),
        served.header("x-request-id"),
        "{access}"
    );
    assert_eq!(access["status"], 200, "{access}");
    assert_eq!(access["worker"], 0, "{access}");
    assert!(
        access["task"]
            .as_str()
            .is_some_and(|task| task.starts_with("GET /countries/")),
        "{access}"
    );
    assert!(
        lines.iter().any(|l| l["message"]
            .as_str()
            .is_some_and(|m| m.contains("running as user nobody"))),
        "{out}"
    );
}

/// `net.ipv4.tcp_migrate_req`: when a listener of a `SO_REUSEPORT` group closes, the
/// kernel hands the connections still waiting in its accept queue to another listener
/// of the group (Linux 5.14+) rather than reset them.
const MIGRATE_REQ: &str = "/proc/sys/net/ipv4/tcp_migrate_req";

#[tokio::test]
async fn a_restart_on_the_same_port_loses_no_request() {
    let before = tokio::fs::read_to_string(MIGRATE_REQ)
        .await
        .expect("a kernel with net.ipv4.tcp_migrate_req (Linux 5.14+)");
    tokio::fs::write(MIGRATE_REQ, "1\n")
        .await
        .expect("root sets the sysctl");
    let (port, _reserved) = reserve_port();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("ops-restart");
    tokio::fs::create_dir_all(&dir).await.unwrap();
    let start = |name: &str| {
        Command::new(env!("CARGO_BIN_EXE_countries"))
            .args(["--port", &port.to_string(), "-j", "1", "--replace"])
            .arg("--pidfile")
            .arg(dir.join(format!("{name}.pid")))
            .env("NUCLEON_LOG", "warn")
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut old: Child = start("old");
    listening(addr).await;
    // A client that never stops: a new connection per request, 8 at a time.
    let going = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (going, ok, failed) = (Arc::clone(&going), Arc::clone(&ok), Arc::clone(&failed));
            tokio::spawn(async move {
                let mut errors = Vec::new();
                while going.load(Ordering::Relaxed) {
                    let answered = match TcpStream::connect(addr).await {
                        Ok(mut stream) => exchange(&mut stream, "GET", "/countries/gb/").await,
                        Err(e) => Err(e),
                    };
                    match answered {
                        Ok(Some(reply)) if reply.status == 200 => {
                            ok.fetch_add(1, Ordering::Relaxed);
                        }
                        other => {
                            failed.fetch_add(1, Ordering::Relaxed);
                            errors.push(format!("{:?}", other.map(|r| r.map(|r| r.status))));
                        }
                    }
                }
                errors
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut new = start("new");
    // Written once the new process has bound the port.
    wait_for_file(&dir.join("new.pid")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    sigterm(&old).await;
    let status = old.wait().await.unwrap();
    assert!(
        status.success(),
        "the old process drained and exited 0: {status}"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    going.store(false, Ordering::Relaxed);
    let mut errors = Vec::new();
    for client in clients {
        errors.extend(client.await.unwrap());
    }
    sigterm(&new).await;
    assert!(new.wait().await.unwrap().success());
    tokio::fs::write(MIGRATE_REQ, before).await.unwrap();
    let served = ok.load(Ordering::Relaxed);
    assert!(served > 100, "the client kept going: {served} answers");
    assert!(
        errors.is_empty(),
        "{} of {} requests failed across the restart: {:?}",
        failed.load(Ordering::Relaxed),
        served + failed.load(Ordering::Relaxed),
        &errors[..errors.len().min(5)]
    );
}
