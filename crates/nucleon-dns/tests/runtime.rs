//! The adapters inside a real Nucleon runtime: a lookup waiting on a slow name server
//! leaves the worker free (the watchdog reports nothing), and the HTTP client adapter
//! shares the worker's resolver.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nucleon_dns::{DnsAdapter, HttpClient, HttpClientAdapter, Resolver};
use nucleon_runtime::{Config, Runtime, WatchdogConfig};
use support::{Rec, TestDns, TestHttp};

fn config(dns: &TestDns, extra: &str) -> Config {
    Config::from_toml(
        &format!(
            "[default.dns]\nnameservers = [\"{}\"]\nhosts_file = false\n\
             ip_preference = \"ipv4_only\"\ntimeout = \"5s\"\nattempts = 1\n{extra}",
            dns.addr
        ),
        "default",
    )
    .unwrap()
}

#[test]
fn a_lookup_waiting_on_a_slow_server_does_not_stall_the_worker() {
    let delay = Duration::from_millis(800);
    let dns = TestDns::start_with_delay(vec![Rec::A("web", 300, [127, 0, 0, 1])], delay);
    let http = TestHttp::start();
    let port = http.port;
    let queries = dns.counter();
    let outcome: Arc<Mutex<Vec<String>>> = Arc::default();
    let runtime = Runtime::builder()
        .workers(1)
        .handle_signals(false)
        .config(config(&dns, ""))
        .watchdog(WatchdogConfig {
            enabled: true,
            threshold: Duration::from_millis(50),
            heartbeat: Some(Duration::from_millis(10)),
            backtrace: false,
        })
        .per_worker({
            let outcome = Arc::clone(&outcome);
            move |worker| {
                worker
                    .adapter(DnsAdapter::new())
                    .adapter(HttpClientAdapter::new());
                let outcome = Arc::clone(&outcome);
                let queries = Arc::clone(&queries);
                worker.spawn("lookup-and-call", async move {
                    let resolver = Resolver::current().expect("the dns adapter registered it");
                    // Meanwhile, another task on the same worker keeps running.
                    let ticks = Arc::new(std::sync::atomic::AtomicU32::new(0));
                    let ticker = nucleon_runtime::spawn("ticker", {
                        let ticks = Arc::clone(&ticks);
                        async move {
                            loop {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                                ticks.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                            }
                        }
                    });
                    let lookup = resolver.lookup_ip("web.nucleon.test.").await;
                    // (hickory may send the query more than once while it waits.)
                    let asked = queries.load(std::sync::atomic::Ordering::SeqCst);
                    let client =
                        HttpClient::current().expect("the http-client adapter registered it");
                    let call = client
                        .get_json::<serde_json::Value>(format!(
                            "http://web.nucleon.test:{port}/json"
                        ))
                        .await;
                    ticker.abort();
                    let asked_again = queries.load(std::sync::atomic::Ordering::SeqCst) - asked;
                    let mut outcome = outcome.lock().unwrap();
                    outcome.push(format!("{lookup:?}"));
                    outcome.push(format!("{call:?}"));
                    outcome.push(format!(
                        "ticks={}",
                        ticks.load(std::sync::atomic::Ordering::Relaxed)
                    ));
                    outcome.push(format!("asked_again={asked_again}"));
                });
                Ok(())
            }
        })
        .build()
        .unwrap();
    let handle = runtime.handle();
    let stopper = std::thread::spawn({
        let handle = handle.clone();
        let outcome = Arc::clone(&outcome);
        move || {
            for _ in 0..200 {
                if outcome.lock().unwrap().len() == 4 {
                    break;
                }
                #[allow(
                    clippy::disallowed_methods,
                    reason = "a test's control thread, not a worker"
                )]
                std::thread::sleep(Duration::from_millis(50));
            }
            handle.shutdown();
        }
    });
    runtime.run().unwrap();
    stopper.join().unwrap();

    let outcome = outcome.lock().unwrap().clone();
    assert_eq!(outcome.len(), 4, "the task did not finish: {outcome:?}");
    assert_eq!(outcome[0], "Ok([127.0.0.1])");
    assert!(outcome[1].contains("hello"), "{outcome:?}");
    let ticks: u32 = outcome[2].trim_start_matches("ticks=").parse().unwrap();
    assert!(
        ticks > 5,
        "the worker's other task ran while the lookup waited: {outcome:?}"
    );
    assert_eq!(
        outcome[3], "asked_again=0",
        "the HTTP call used the worker resolver's cache"
    );
    let stats = handle.watchdog().stats();
    assert_eq!(
        stats.blocking_reports,
        0,
        "{:?}",
        handle.watchdog().recent_reports()
    );
    assert_eq!(
        stats.slow_polls,
        0,
        "{:?}",
        handle.watchdog().recent_reports()
    );
    assert_eq!(stats.stalls, 0, "{:?}", handle.watchdog().recent_reports());
}

#[test]
fn a_resolver_without_name_servers_fails_start_naming_the_file() {
    let config = Config::from_toml(
        "[default.dns]\nresolv_conf = \"/nonexistent/resolv.conf\"\n",
        "default",
    )
    .unwrap();
    let error = Runtime::builder()
        .workers(1)
        .handle_signals(false)
        .config(config)
        .per_worker(|worker| {
            worker.adapter(DnsAdapter::new());
            Ok(())
        })
        .build()
        .unwrap()
        .run()
        .unwrap_err()
        .to_string();
    assert!(error.contains("`dns`"), "{error}");
    assert!(error.contains("/nonexistent/resolv.conf"), "{error}");
    assert!(error.contains("dns.nameservers"), "{error}");
}

#[test]
fn the_http_client_adapter_needs_the_dns_adapter_first() {
    let error = Runtime::builder()
        .workers(1)
        .handle_signals(false)
        .per_worker(|worker| {
            worker.adapter(HttpClientAdapter::new());
            Ok(())
        })
        .build()
        .unwrap()
        .run()
        .unwrap_err()
        .to_string();
    assert!(error.contains("DnsAdapter"), "{error}");
}
