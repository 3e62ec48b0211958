//! The resolver's health, against real name servers on loopback: one that answers
//! (hickory-server), one that never does, and a port where none listens.

mod support;

use std::time::Duration;

use nucleon_dns::{DnsAdapter, DnsConfig, Resolver};
use nucleon_runtime::{Config, Health, Runtime};
use support::{Rec, SilentDns, TestDns, standard_zone};

fn message(health: &Health) -> &str {
    match health {
        Health::Healthy => "",
        Health::Degraded(message) | Health::Unhealthy(message) => message,
    }
}

#[tokio::test]
async fn healthy_before_any_lookup_and_while_name_servers_answer() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    assert_eq!(resolver.health().await, Health::Healthy, "no lookup yet");
    resolver.lookup_ip("api.nucleon.test.").await.unwrap();
    // NXDOMAIN and an empty answer are name servers answering too.
    resolver
        .lookup_ip("missing.nucleon.test.")
        .await
        .unwrap_err();
    resolver
        .lookup_ip("textonly.nucleon.test.")
        .await
        .unwrap_err();
    resolver
        .lookup_srv("_amqp._tcp.nucleon.test.")
        .await
        .unwrap();
    assert_eq!(resolver.recent_health(), Health::Healthy);
    assert_eq!(resolver.health().await, Health::Healthy);
}

#[tokio::test]
async fn a_name_server_that_never_answers_makes_it_unhealthy_naming_the_server() {
    let silent = SilentDns::start();
    let resolver = Resolver::from_config(&DnsConfig {
        timeout: Some(Duration::from_millis(100)),
        ..support::dns_config(silent.addr)
    })
    .await
    .unwrap();
    resolver.lookup_ip("one.nucleon.test.").await.unwrap_err();
    let health = resolver.recent_health();
    assert!(
        matches!(health, Health::Degraded(_)),
        "one lookup with no answer: {health:?}"
    );
    resolver.lookup_ip("two.nucleon.test.").await.unwrap_err();
    assert!(matches!(resolver.recent_health(), Health::Degraded(_)));
    resolver
        .lookup_txt("three.nucleon.test.")
        .await
        .unwrap_err();
    let health = resolver.recent_health();
    assert!(
        matches!(health, Health::Unhealthy(_)),
        "three in a row: {health:?}"
    );
    let text = message(&health);
    assert!(text.contains(&silent.addr.to_string()), "{text}");
    assert!(text.contains("dns.nameservers"), "{text}");
    assert!(text.contains("three.nucleon.test."), "{text}");
    // The check asks again (the last name with no answer), gets none: still unhealthy.
    let health = resolver.health().await;
    assert!(matches!(health, Health::Unhealthy(_)), "{health:?}");
}

/// A name server that stops (its port closed), then comes back on the same port. Cached
/// answers do not count as the name servers answering.
#[tokio::test]
async fn a_name_server_that_comes_back_makes_it_healthy_again() {
    let dns = TestDns::start(standard_zone());
    let addr = dns.addr;
    let resolver = Resolver::from_config(&DnsConfig {
        timeout: Some(Duration::from_millis(200)),
        ..dns.config()
    })
    .await
    .unwrap();
    resolver.lookup_ip("api.nucleon.test.").await.unwrap();
    dns.stop();

    for name in ["a.nucleon.test.", "b.nucleon.test.", "c.nucleon.test."] {
        resolver.lookup_ip(name).await.unwrap_err();
    }
    let health = resolver.recent_health();
    assert!(matches!(health, Health::Unhealthy(_)), "{health:?}");
    assert!(message(&health).contains(&addr.to_string()), "{health:?}");
    // From the cache: says nothing of the name servers.
    resolver.lookup_ip("api.nucleon.test.").await.unwrap();
    assert!(matches!(resolver.recent_health(), Health::Unhealthy(_)));

    // Back on the same port. With no lookup of ours, the health check asks again for
    // the last name that got no answer (NXDOMAIN now: an answer).
    let dns = TestDns::start_on(addr, standard_zone());
    let health = resolver.health().await;
    assert!(
        matches!(health, Health::Degraded(_)),
        "answered again, after recent failures: {health:?}"
    );
    assert!(dns.queries() >= 1);
    // Once the failures are behind the latest lookups: healthy.
    for i in 0..8 {
        resolver
            .lookup_ip(&format!("fresh{i}.nucleon.test."))
            .await
            .unwrap_err();
    }
    assert_eq!(resolver.recent_health(), Health::Healthy);
    assert_eq!(resolver.health().await, Health::Healthy);
}

#[tokio::test]
async fn the_probe_name_s_answer_is_the_health() {
    let dns = TestDns::start(standard_zone());
    let probing = |name: &str| {
        let config = DnsConfig {
            health_probe: Some(name.to_owned()),
            ..dns.config()
        };
        async move { Resolver::from_config(&config).await.unwrap() }
    };

    let found = probing("api.nucleon.test.").await;
    assert_eq!(found.health().await, Health::Healthy);
    // Asked of the name server on each check, not answered from the cache.
    let asked = dns.queries();
    assert_eq!(found.health().await, Health::Healthy);
    assert_eq!(dns.queries(), asked + 1);

    let missing = probing("missing.nucleon.test.").await;
    let health = missing.health().await;
    assert!(matches!(health, Health::Unhealthy(_)), "{health:?}");
    let text = message(&health);
    assert!(text.contains("missing.nucleon.test."), "{text}");
    assert!(text.contains("dns.health_probe"), "{text}");
    assert!(text.contains(&dns.addr.to_string()), "{text}");

    // A name with no addresses is not found either.
    let health = probing("textonly.nucleon.test.").await.health().await;
    assert!(matches!(health, Health::Unhealthy(_)), "{health:?}");

    // The probe wins over the record of lookups: they all answered here.
    missing.lookup_ip("api.nucleon.test.").await.unwrap();
    assert_eq!(missing.recent_health(), Health::Healthy);
    assert!(matches!(missing.health().await, Health::Unhealthy(_)));

    let silent = SilentDns::start();
    let unreachable = Resolver::from_config(&DnsConfig {
        health_probe: Some("api.nucleon.test.".to_owned()),
        ..support::dns_config(silent.addr)
    })
    .await
    .unwrap();
    let health = unreachable.health().await;
    assert!(matches!(health, Health::Unhealthy(_)), "{health:?}");
    let text = message(&health);
    assert!(text.contains("api.nucleon.test."), "{text}");
    assert!(text.contains(&silent.addr.to_string()), "{text}");
    assert!(text.contains("dns.nameservers"), "{text}");
}

/// The `dns` adapter's health check is the resolver's.
#[test]
fn the_dns_adapter_reports_the_resolver_s_health() {
    let dns = TestDns::start(vec![Rec::A("web", 300, [127, 0, 0, 1])]);
    let config = Config::from_toml(
        &format!(
            "[default.dns]\nnameservers = [\"{}\"]\nhosts_file = false\n\
             ip_preference = \"ipv4_only\"\nhealth_probe = \"db.nucleon.test.\"\n",
            dns.addr
        ),
        "default",
    )
    .unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let runtime = Runtime::builder()
            .workers(1)
            .handle_signals(false)
            .config(config)
            .per_worker(|worker| {
                worker.adapter(DnsAdapter::new());
                Ok(())
            })
            .build()
            .unwrap();
        tx.send(runtime.handle()).unwrap();
        runtime.run()
    });
    let handle = rx.recv().unwrap();
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            handle.wait_for(nucleon_runtime::Phase::Serving).await;
            let report = handle.health().await;
            handle.shutdown();
            report
        });
    thread.join().unwrap().unwrap();
    let dns_health = report
        .iter()
        .find(|h| h.adapter == "dns")
        .unwrap_or_else(|| panic!("no dns adapter in {report:?}"));
    assert!(
        matches!(&dns_health.health, Health::Unhealthy(m) if m.contains("db.nucleon.test.")),
        "{report:?}"
    );
}
