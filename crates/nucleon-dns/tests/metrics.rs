//! The resolver's metrics, inside a real runtime against a real DNS server on
//! loopback: a lookup that asks the server, the same one answered from the cache, a
//! name that does not exist; read from a Prometheus recorder.

mod support;

use nucleon_dns::{DnsAdapter, Resolver};
use nucleon_runtime::{Config, Runtime};
use support::{TestDns, standard_zone};

#[test]
fn lookups_are_counted_by_source_and_failures_by_kind() {
    let recorder = nucleon_testkit::prometheus::recorder();
    let dns = TestDns::start(standard_zone());
    let config = Config::from_toml(
        &format!(
            "[default.dns]\nnameservers = [\"{}\"]\nhosts_file = false\n\
             ip_preference = \"ipv4_only\"\ntimeout = \"5s\"\nattempts = 1\n",
            dns.addr
        ),
        "default",
    )
    .unwrap();
    let runtime = Runtime::builder()
        .workers(1)
        .handle_signals(false)
        .config(config)
        .per_worker(|worker| {
            worker.adapter(DnsAdapter::new());
            let shutdown = worker.drain().clone();
            worker.spawn("lookups", async move {
                let resolver = Resolver::current().expect("the dns adapter registered it");
                resolver.lookup_ip("api.nucleon.test.").await.expect("api");
                resolver
                    .lookup_ip("api.nucleon.test.")
                    .await
                    .expect("cached");
                let missing = resolver.lookup_ip("missing.nucleon.test.").await;
                assert!(missing.is_err(), "{missing:?}");
                // Literals are not lookups.
                resolver.lookup_ip("127.0.0.1").await.expect("literal");
                shutdown.start();
            });
            Ok(())
        })
        .build()
        .unwrap();
    runtime.run().unwrap();

    let scrape = nucleon_testkit::prometheus::scrape();
    let lookups = "nucleon_dns_lookups_total";
    assert_eq!(
        scrape.value(lookups, &[("source", "network")]),
        Some(2.0),
        "api, then missing: {}",
        recorder.render()
    );
    assert_eq!(scrape.value(lookups, &[("source", "cache")]), Some(1.0));
    assert_eq!(scrape.value(lookups, &[("source", "hosts")]), Some(0.0));
    assert_eq!(
        scrape.value("nucleon_dns_failures_total", &[("kind", "no_such_host")]),
        Some(1.0)
    );
    assert_eq!(
        scrape.value("nucleon_dns_failures_total", &[("kind", "timeout")]),
        Some(0.0)
    );
    assert_eq!(
        scrape.value("nucleon_dns_lookup_duration_seconds_count", &[]),
        Some(2.0)
    );
}
