//! The connection as the broker sees it: named after the service, so an operator finds
//! it in `rabbitmqctl list_connections` (or the management UI).

mod support;

use nucleon_amqp::Amqp;
use nucleon_testkit::Tool;
use support::Service;

#[test]
#[allow(
    clippy::disallowed_methods,
    reason = "a plain #[test] waiting for rabbitmqctl, on no loop"
)]
fn the_broker_lists_the_connection_under_the_service_s_name() {
    let Some(url) = support::url() else { return };
    let rabbitmqctl = Tool {
        install_hint: "apt-get install rabbitmq-server (rabbitmqctl comes with it)".to_owned(),
        ..Tool::new("rabbitmqctl")
    };
    if !rabbitmqctl.require() {
        return;
    }
    let name = format!("connection-name-{}", std::process::id());
    let service = Service::start(&name, &url, "", 1, Amqp::new());
    let listed = std::process::Command::new(&rabbitmqctl.name)
        .args(["-q", "list_connections", "client_properties"])
        .output()
        .expect("rabbitmqctl runs");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let expected = format!("{name} (pid {})", std::process::id());
    assert!(
        listed.contains(&expected),
        "no connection named `{expected}` in:\n{listed}"
    );
    service.stop().unwrap();
}

/// A topology the broker refuses (a queue that exists with other arguments) fails the
/// start at once, saying so: no retry mends it, and the broker is not unreachable.
#[test]
fn a_refused_topology_fails_the_start_at_once_and_says_why() {
    let Some(url) = support::url() else { return };
    let queue = support::unique("refused");
    let _cleanup = support::Cleanup::new(&url, [queue.clone()]);
    let first = Service::start(
        "first",
        &url,
        "",
        1,
        Amqp::new().declare(nucleon_amqp::Queue::durable(queue.clone())),
    );
    first.stop().unwrap();
    let config = nucleon_runtime::Config::from_toml(
        &format!("[default.amqp]\nurl = \"{url}\"\nstart_timeout = \"120s\"\n"),
        "default",
    )
    .unwrap();
    let (connection, _) = Amqp::new()
        .declare(nucleon_amqp::Queue::durable(queue.clone()).max_priority(9))
        .build("second");
    let runtime = nucleon_runtime::Runtime::builder()
        .config(config)
        .handle_signals(false)
        .workers(1)
        .adapter(connection)
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    let error = runtime.run().expect_err("the broker refuses the queue");
    let text = format!("{error:?}");
    assert!(
        text.contains("Refused") && text.contains(&queue) && text.contains("x-max-priority"),
        "{text}"
    );
    assert!(
        // Against 120 s of start_timeout: the start did not wait it out.
        started.elapsed() < std::time::Duration::from_secs(60),
        "failed only after {:?}",
        started.elapsed()
    );
}
