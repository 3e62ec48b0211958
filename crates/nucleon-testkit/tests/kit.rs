//! The kit itself: a server that does not answer is a panic that says what to do; a
//! skip variable skips, and says so past libtest's capture, once; the servers running on
//! this machine are found; waits end, or time out loudly.
//!
//! No test here sets a process environment variable (tests run in parallel): each
//! passes its environment to the `*_in` methods.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use nucleon_testkit::{
    AMQP, POSTGRES, Server, Tool, Unavailable, amqp_url, postgres_url, wait_until, wait_until_async,
};

/// A port nothing listens on: a listener's, once it is closed.
#[allow(
    clippy::disallowed_methods,
    reason = "a plain test binds a loopback port to learn a free one"
)]
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// An environment of these variables only.
fn env(vars: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[test]
fn a_closed_port_is_unavailable_naming_the_url_both_variables_and_the_way_to_start() {
    let port = closed_port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/test");
    let message = POSTGRES
        .check_in(env(&[("NUCLEON_TEST_DATABASE_URL", url)]))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("postgres://app:***@127.0.0.1:{port}/test")),
        "{message}"
    );
    assert!(!message.contains("s3cret"), "the password shows: {message}");
    assert!(message.contains("NUCLEON_TEST_DATABASE_URL"), "{message}");
    assert!(
        message.contains("NUCLEON_TEST_SKIP_POSTGRES=1"),
        "{message}"
    );
    assert!(
        message
            .contains("pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start"),
        "{message}"
    );

    let url = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let message = AMQP
        .check_in(env(&[("NUCLEON_TEST_AMQP_URL", url)]))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains(&format!("amqp://guest:***@127.0.0.1:{port}/%2f")),
        "{message}"
    );
    assert!(message.contains("NUCLEON_TEST_AMQP_URL"), "{message}");
    assert!(message.contains("NUCLEON_TEST_SKIP_AMQP=1"), "{message}");
    assert!(message.contains("rabbitmq-server -detached"), "{message}");
}

#[test]
fn a_closed_port_panics_with_that_message() {
    let port = closed_port();
    let url = format!("postgres://app:s3cret@127.0.0.1:{port}/test");
    let panic =
        std::panic::catch_unwind(|| POSTGRES.url_in(env(&[("NUCLEON_TEST_DATABASE_URL", url)])))
            .expect_err("an unreachable server must panic");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(message.contains("PostgreSQL is not reachable"), "{message}");
    assert!(
        message.contains(&format!("postgres://app:***@127.0.0.1:{port}/test")),
        "{message}"
    );
    assert!(message.contains("NUCLEON_TEST_DATABASE_URL"), "{message}");
    assert!(
        message.contains("NUCLEON_TEST_SKIP_POSTGRES=1"),
        "{message}"
    );
}

/// The default URL is used, and said to be, when the URL variable is unset or empty.
#[test]
fn the_default_url_is_named_as_the_default() {
    let port = closed_port();
    let default_url: &'static str =
        Box::leak(format!("redis://127.0.0.1:{port}/0").into_boxed_str());
    let redis = Server {
        name: "Redis",
        url_var: "NUCLEON_TEST_REDIS_URL",
        skip_var: "NUCLEON_TEST_SKIP_REDIS",
        default_url,
        start_hint: "redis-server --daemonize yes",
    };
    for environment in [env(&[]), env(&[("NUCLEON_TEST_REDIS_URL", String::new())])] {
        let message = redis.check_in(environment).unwrap_err().to_string();
        assert!(message.contains(default_url), "{message}");
        assert!(
            message.contains("the default: NUCLEON_TEST_REDIS_URL is unset"),
            "{message}"
        );
        assert!(
            message.contains("redis-server --daemonize yes"),
            "{message}"
        );
        assert!(message.contains("NUCLEON_TEST_SKIP_REDIS=1"), "{message}");
    }
}

#[test]
fn the_skip_variable_skips_without_trying_the_server() {
    let port = closed_port();
    let unreachable = format!("postgres://127.0.0.1:{port}/test");
    for value in ["1", "true"] {
        let skipping = env(&[
            ("NUCLEON_TEST_SKIP_POSTGRES", value.to_owned()),
            ("NUCLEON_TEST_DATABASE_URL", unreachable.clone()),
        ]);
        assert_eq!(POSTGRES.check_in(skipping), Ok(None), "{value}");
    }
    // `0` does not skip.
    let not_skipping = env(&[
        ("NUCLEON_TEST_SKIP_POSTGRES", "0".to_owned()),
        ("NUCLEON_TEST_DATABASE_URL", unreachable),
    ]);
    assert!(POSTGRES.check_in(not_skipping).is_err());
    // (`url_in` and `url` return None then, and print their line: see
    // the_skip_line_is_printed_once_past_the_capture, which runs them in a child
    // process, so that this binary prints no skip line of its own.)
}

/// PostgreSQL and RabbitMQ run on this machine (127.0.0.1:5432 and :5672): found
/// reachable, at the URL the environment gives (the defaults here). Without them, or
/// skipped on purpose, this test says so, as every test that needs them does.
#[test]
fn the_local_postgres_and_rabbitmq_are_reachable() {
    if let Some(url) = postgres_url() {
        assert!(url.starts_with("postgres"), "{url}");
    }
    if let Some(url) = amqp_url() {
        assert!(url.starts_with("amqp"), "{url}");
    }
}

#[test]
fn a_tool_is_found_on_path_skipped_or_missing_with_the_way_to_install_it() {
    let path = std::env::var("PATH").unwrap_or_default();
    let sh = Tool::new("sh")
        .find_in(env(&[("PATH", path.clone())]))
        .unwrap()
        .expect("sh is on PATH");
    assert!(sh.ends_with("sh"), "{}", sh.display());
    assert!(Tool::new("sh").require_in(env(&[("PATH", path)])));

    let strace = Tool::new("strace");
    assert_eq!(strace.skip_var, "NUCLEON_TEST_SKIP_STRACE");
    let missing = strace
        .find_in(env(&[("PATH", "/nonexistent-nucleon-testkit".to_owned())]))
        .unwrap_err();
    let message = missing.message();
    assert!(message.contains("`strace` is not installed"), "{message}");
    assert!(message.contains("apt-get install strace"), "{message}");
    assert!(message.contains("NUCLEON_TEST_SKIP_STRACE=1"), "{message}");

    let skipping = env(&[
        ("NUCLEON_TEST_SKIP_STRACE", "1".to_owned()),
        ("PATH", "/nonexistent-nucleon-testkit".to_owned()),
    ]);
    assert_eq!(strace.find_in(skipping), Ok(None));
}

#[test]
#[should_panic(expected = "apt-get install not-a-tool-nucleon-knows")]
fn a_missing_tool_panics() {
    Tool::new("not-a-tool-nucleon-knows")
        .require_in(env(&[("PATH", "/nonexistent-nucleon-testkit".to_owned())]));
}

/// The skip line goes past libtest's output capture, once per test binary: this test
/// runs the helper below in a child test process, with libtest capturing its output as
/// usual, and reads what the child wrote.
#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "a plain test waits for the child test process it starts"
)]
fn the_skip_line_is_printed_once_past_the_capture() {
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "skip_line_helper",
            "--test-threads=1",
        ])
        .env("NUCLEON_TESTKIT_CHILD", "1")
        .env("NUCLEON_TESTKIT_SKIP_EXAMPLE", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("1 passed"), "the helper ran: {stdout}");
    let all = format!("{stdout}{stderr}");
    assert!(
        !all.contains("captured by libtest"),
        "capture was not on in the child: {all}"
    );
    let line = "SKIPPED on purpose: tests needing Example (NUCLEON_TESTKIT_SKIP_EXAMPLE=1)";
    assert_eq!(all.matches(line).count(), 1, "{all}");
    assert_eq!(
        all.matches("SKIPPED on purpose: tests needing a-tool-for-the-kit-test")
            .count(),
        1,
        "{all}"
    );
}

/// Run by the test above, in a child process.
#[test]
#[ignore = "run by the_skip_line_is_printed_once_past_the_capture, in a child process"]
#[allow(clippy::print_stderr, reason = "checks that eprintln! is captured")]
fn skip_line_helper() {
    if std::env::var_os("NUCLEON_TESTKIT_CHILD").is_none() {
        return;
    }
    const EXAMPLE: Server = Server {
        name: "Example",
        url_var: "NUCLEON_TESTKIT_EXAMPLE_URL",
        skip_var: "NUCLEON_TESTKIT_SKIP_EXAMPLE",
        default_url: "example://127.0.0.1:1/",
        start_hint: "true",
    };
    eprintln!("this line is captured by libtest");
    assert_eq!(EXAMPLE.url(), None);
    assert_eq!(EXAMPLE.url(), None);
    let from_another_thread = std::thread::spawn(|| EXAMPLE.url()).join().unwrap();
    assert_eq!(from_another_thread, None);
    let tool = Tool {
        skip_var: "NUCLEON_TESTKIT_SKIP_EXAMPLE".to_owned(),
        ..Tool::new("a-tool-for-the-kit-test")
    };
    assert!(!tool.require());
    assert!(!tool.require());
}

#[test]
fn wait_until_returns_once_the_condition_holds() {
    let polls = AtomicUsize::new(0);
    wait_until("the third poll", Duration::from_secs(30), || {
        polls.fetch_add(1, Ordering::SeqCst) >= 2
    });
    assert_eq!(polls.load(Ordering::SeqCst), 3);
}

#[test]
#[should_panic(expected = "timed out after 30ms waiting for a condition that never holds")]
fn wait_until_panics_at_the_timeout() {
    wait_until(
        "a condition that never holds",
        Duration::from_millis(30),
        || false,
    );
}

#[tokio::test]
async fn wait_until_async_returns_once_the_condition_holds() {
    let set = Arc::new(AtomicUsize::new(0));
    let setter = Arc::clone(&set);
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(5)).await;
        setter.store(1, Ordering::SeqCst);
    });
    wait_until_async("the task to run", Duration::from_secs(30), async || {
        set.load(Ordering::SeqCst) == 1
    })
    .await;
}

#[tokio::test]
#[should_panic(expected = "timed out after 30ms waiting for an answer")]
async fn wait_until_async_panics_at_the_timeout_even_when_the_condition_hangs() {
    wait_until_async("an answer", Duration::from_millis(30), async || {
        std::future::pending::<bool>().await
    })
    .await;
}

#[test]
fn unavailable_is_an_error_with_its_message() {
    let error: Box<dyn std::error::Error> = Box::new(
        POSTGRES
            .check_in(env(&[("NUCLEON_TEST_DATABASE_URL", "no url".to_owned())]))
            .unwrap_err(),
    );
    let _: &Unavailable = error.downcast_ref().unwrap();
    assert!(error.to_string().contains("NUCLEON_TEST_DATABASE_URL"));
}
