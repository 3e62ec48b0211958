//! Proof that lookups and HTTP calls never go through glibc's `getaddrinfo`: the probe
//! binary resolves a name and makes an HTTP call under `strace -f`, and never opens
//! `/etc/nsswitch.conf` or `/etc/gai.conf` (which `getaddrinfo` reads on every call).
//! The same probe in `--getaddrinfo` mode does open them: the check can fail.
//!
//! It needs strace: without it the test fails, saying `apt-get install strace`;
//! `NUCLEON_TEST_SKIP_STRACE=1` skips it on purpose, with a line saying so.

mod support;

use std::path::Path;
use std::process::Output;

use support::{Rec, TestDns, TestHttp};

const GLIBC_FILES: [&str; 2] = ["/etc/nsswitch.conf", "/etc/gai.conf"];

/// `Some("strace")` when strace is installed and can trace here; `None` when
/// `NUCLEON_TEST_SKIP_STRACE=1` skips the test on purpose (the kit says so). Missing,
/// or unable to trace, is a failure: this test must not pass without proving its point.
async fn strace() -> Option<&'static str> {
    if !nucleon_testkit::require_tool("strace") {
        return None;
    }
    let traced = tokio::process::Command::new("strace")
        .args(["-f", "-e", "trace=openat", "-o", "/dev/null", "true"])
        .output()
        .await
        .unwrap();
    assert!(
        traced.status.success(),
        "strace is installed but cannot trace here ({}): run the tests where ptrace is \
         allowed (in a container: --cap-add SYS_PTRACE), or skip this test on purpose: \
         NUCLEON_TEST_SKIP_STRACE=1",
        String::from_utf8_lossy(&traced.stderr).trim()
    );
    Some("strace")
}

async fn traced(strace: &str, dir: &Path, args: &[&str]) -> (Output, String) {
    let trace = dir.join("trace.txt");
    let output = tokio::process::Command::new(strace)
        .args(["-f", "-e", "trace=openat,open", "-o"])
        .arg(&trace)
        .arg(env!("CARGO_BIN_EXE_nucleon-dns-probe"))
        .args(args)
        .output()
        .await
        .unwrap();
    let trace = tokio::fs::read_to_string(&trace).await.unwrap();
    (output, trace)
}

fn opened(trace: &str) -> Vec<&str> {
    GLIBC_FILES
        .into_iter()
        .filter(|file| trace.contains(&format!("\"{file}\"")))
        .collect()
}

#[tokio::test]
async fn a_lookup_and_an_http_call_never_use_getaddrinfo() {
    let Some(strace) = strace().await else {
        return;
    };
    let dns = TestDns::start(vec![Rec::A("web", 300, [127, 0, 0, 1])]);
    let http = TestHttp::start();
    let dir = tempfile::tempdir().unwrap();
    let nameserver = dns.addr.to_string();
    let url = format!("http://web.nucleon.test:{}/json", http.port);

    let (output, trace) = traced(
        strace,
        dir.path(),
        &["--nameserver", &nameserver, "web.nucleon.test", &url],
    )
    .await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "probe failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("127.0.0.1"), "{stdout}");
    assert!(stdout.contains("200 {\"hello\":\"world\"}"), "{stdout}");
    assert!(
        trace.contains("openat("),
        "strace recorded no openat at all: {trace}"
    );
    assert_eq!(
        opened(&trace),
        Vec::<&str>::new(),
        "getaddrinfo's files were opened:\n{trace}"
    );

    // The control: glibc's resolver does open them, so the check above can fail.
    let (output, trace) = traced(strace, dir.path(), &["--getaddrinfo", "localhost"]).await;
    assert!(output.status.success(), "{output:?}");
    assert!(
        opened(&trace).contains(&"/etc/nsswitch.conf"),
        "getaddrinfo did not show in the trace:\n{trace}"
    );
}
