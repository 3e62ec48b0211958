//! `nucleon new`, end to end: the app it writes builds offline against this checkout
//! (`--path`), passes its own tests, and serves: started on a free port, asked over a
//! plain TCP connection, stopped with SIGTERM (exit 0).
//!
//! The apps build into `target/nucleon-new-apps` (or `$CARGO_TARGET_DIR/nucleon-new-apps`),
//! so their dependencies compile once and are reused by every later run. Timings go to
//! stderr: `cargo test -p nucleon-cli --test new_app -- --nocapture` shows them.
//!
//! These tests drive cargo and a server from plain `#[test]` functions, outside any
//! event loop: blocking calls are what they need, and each helper that makes one says so.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// One app build at a time: they share a target directory (cargo would take turns on
/// it anyway), and the timings then say what each one costs.
static TURN: Mutex<()> = Mutex::new(());

fn turn() -> MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The checkout this test runs in: the workspace root.
fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// Where the apps build: a directory of the workspace's own target directory.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| checkout().join("target"), PathBuf::from)
        .join("nucleon-new-apps")
}

#[allow(
    clippy::print_stderr,
    reason = "the test's timings, for whoever runs it with --nocapture"
)]
fn note(what: &str, took: Duration) {
    eprintln!("nucleon new test: {what} took {:.1}s", took.as_secs_f64());
}

/// Runs `nucleon new` with `args` in `cwd`; its stdout.
#[allow(
    clippy::disallowed_methods,
    reason = "a test waiting for the command it runs, outside any loop"
)]
fn nucleon_new(cwd: &Path, args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_nucleon"))
        .arg("new")
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("nucleon runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "nucleon new {args:?}: {}\n{stdout}{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Runs `cargo <args>` in the app's directory, building into the shared
/// target directory, with `env`; fails the test with cargo's output when it fails.
#[allow(
    clippy::disallowed_methods,
    reason = "a test waiting for cargo, outside any loop"
)]
fn cargo(app: &Path, args: &[&str], env: &[(&str, &str)]) {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let started = Instant::now();
    let output = Command::new(cargo)
        .args(args)
        .current_dir(app)
        .env("CARGO_TARGET_DIR", target_dir())
        .env_remove("NUCLEON_ENV")
        .env_remove("NUCLEON_CONFIGURATION")
        .envs(env.iter().copied())
        .output()
        .expect("cargo runs");
    note(
        &format!("`cargo {}` of {}", args.join(" "), app.display()),
        started.elapsed(),
    );
    assert!(
        output.status.success(),
        "cargo {args:?} in {} failed ({}):\n{}{}",
        app.display(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// An app's binary, running; killed if the test fails before it stops.
struct Server {
    child: Child,
    addr: SocketAddr,
    log: Receiver<String>,
    seen: Vec<String>,
}

impl Server {
    /// Starts `binary start --port 0` in `app` (so its app.toml is read), and waits for
    /// its log to say where it listens.
    fn start(app: &Path, binary: &Path, env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(binary)
            .args(["start", "--port", "0", "-j", "2"])
            .current_dir(app)
            .env("NUCLEON_LOG", "info")
            .env_remove("NUCLEON_ENV")
            .env_remove("NUCLEON_CONFIGURATION")
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start: {e}", binary.display()));
        let stdout = child.stdout.take().expect("piped");
        let (lines, log) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
            seen: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let line = server.next_line(deadline);
            // `hello starting on http://127.0.0.1:PORT with 2 worker(s)`
            if let Some(rest) = line.split("starting on http://").nth(1) {
                let addr = rest.split_whitespace().next().unwrap_or_default();
                server.addr = addr.parse().unwrap_or_else(|e| panic!("`{addr}`: {e}"));
                return server;
            }
        }
    }

    fn next_line(&mut self, deadline: Instant) -> String {
        let wait = deadline.saturating_duration_since(Instant::now());
        match self.log.recv_timeout(wait) {
            Ok(line) => {
                self.seen.push(line.clone());
                line
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!(
                    "the app said nothing expected in time; its log:\n{}",
                    self.seen.join("\n")
                )
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the app exited; its log:\n{}", self.seen.join("\n"))
            }
        }
    }

    /// `GET path`, once the app is ready (its readiness probe says 200).
    #[allow(
        clippy::disallowed_methods,
        reason = "a test polling a server, outside any loop"
    )]
    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match try_get(self.addr, "/readyz") {
                Ok((200, _)) => return,
                _ if Instant::now() > deadline => {
                    panic!("{} never answered /readyz with 200", self.addr)
                }
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    fn get(&self, path: &str) -> (u16, String) {
        try_get(self.addr, path).unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// SIGTERM, then the exit status, which must be 0.
    #[allow(
        clippy::disallowed_methods,
        reason = "a test signalling its child and waiting for it, outside any loop"
    )]
    fn stop(mut self) {
        let pid = self.child.id().to_string();
        let signalled = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill runs");
        assert!(signalled.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("the child's status") {
                break status;
            }
            assert!(Instant::now() < deadline, "the app did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        };
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        assert!(
            status.success(),
            "exit status {status}; its log:\n{}",
            self.seen.join("\n")
        );
        assert!(
            self.seen.iter().any(|line| line.contains("draining")),
            "{}",
            self.seen.join("\n")
        );
    }
}

impl Drop for Server {
    #[allow(
        clippy::disallowed_methods,
        reason = "reaping a killed child in a test, outside any loop"
    )]
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` over a plain TCP connection (HTTP/1.1, `connection: close`): the status
/// and the body.
#[allow(
    clippy::disallowed_methods,
    reason = "a test's client, blocking on no loop"
)]
fn try_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {response:?}")))?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Reads a file of the app.
#[allow(
    clippy::disallowed_methods,
    reason = "a test's check, outside any loop"
)]
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Writes an app with `args`, builds it, runs its tests, starts it and checks what it
/// serves with `check`; `env` goes to cargo and to the app (servers' URLs).
fn new_build_test_serve(
    dir_name: &str,
    args: &[&str],
    env: &[(&str, &str)],
    check: impl FnOnce(&Server),
) {
    let _turn = turn();
    let started = Instant::now();
    let temp = tempfile::tempdir().expect("a temporary directory");
    let checkout = checkout();
    let mut all_args = vec![dir_name, "--path"];
    let checkout_arg = checkout.to_str().expect("a UTF-8 checkout path");
    all_args.push(checkout_arg);
    all_args.extend(args);
    let report = nucleon_new(temp.path(), &all_args);
    assert!(
        report.starts_with(&format!(
            "Created the Nucleon app `{dir_name}` in `{dir_name}`:"
        )),
        "{report}"
    );
    assert!(report.contains(&format!("  cd {dir_name}\n")), "{report}");
    let app = temp.path().join(dir_name);
    let manifest = read(&app.join("Cargo.toml"));
    let umbrella = checkout.join("crates/nucleon");
    assert!(
        manifest.contains(&format!("nucleon = {{ path = \"{}\"", umbrella.display())),
        "{manifest}"
    );
    assert!(manifest.contains("\n[workspace]\n"), "{manifest}");

    cargo(&app, &["build", "--offline"], env);
    cargo(&app, &["test", "--offline"], env);
    cargo(&app, &["fmt", "--check"], env);

    let binary = target_dir().join("debug").join(dir_name);
    let server = Server::start(&app, &binary, env);
    server.wait_ready();
    let (status, body) = server.get("/");
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains(&format!(r#""service":"{dir_name}""#)),
        "{body}"
    );
    let (status, body) = server.get("/hello/world");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(r#""message":"hello, world""#), "{body}");
    let (status, body) = server.get("/livez");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"alive"}"#));
    check(&server);
    server.stop();
    note(&format!("the whole `{dir_name}` test"), started.elapsed());
}

/// The default variant, in CI: embedded SQLite (`--db`), no server needed.
#[test]
fn a_new_app_on_sqlite_builds_passes_its_tests_and_serves() {
    new_build_test_serve("hello-sqlite", &["--db"], &[], |server| {
        let (status, body) = server.get("/greetings/fr");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body, r#"{"language":"fr","greeting":"bonjour"}"#);
        let (status, body) = server.get("/greetings/xx");
        assert_eq!(status, 404, "{body}");
    });
}

/// Everything: PostgreSQL and RabbitMQ (the local servers, which must be up unless
/// skipped on purpose with `NUCLEON_TEST_SKIP_POSTGRES=1` or `NUCLEON_TEST_SKIP_AMQP=1`).
#[test]
fn a_new_app_on_postgres_and_amqp_builds_passes_its_tests_and_serves() {
    let Some(postgres) = nucleon_testkit::postgres_url() else {
        return;
    };
    let Some(amqp) = nucleon_testkit::amqp_url() else {
        return;
    };
    let env = [
        ("NUCLEON_DB__URL", postgres.as_str()),
        ("NUCLEON_AMQP__URL", amqp.as_str()),
    ];
    new_build_test_serve(
        "hello-everything",
        &["--db", "postgres", "--amqp"],
        &env,
        |server| {
            let (status, body) = server.get("/greetings/fr");
            assert_eq!(status, 200, "{body}");
            assert!(body.contains("bonjour"), "{body}");
            let (status, body) = server.get("/shout/hello");
            assert_eq!((status, body.as_str()), (200, r#""HELLO""#));
        },
    );
}
