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
