//! A link that drops, through a TCP proxy this test cuts (the shared broker is never
//! restarted): the connection comes back with its topology and consumers, every
//! message confirmed to a publisher is delivered, RPC calls in flight fail at once
//! with `ConnectionLost`, health says so while the link is down.

mod support;

use std::collections::HashMap;
use std::future::IntoFuture;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use nucleon_amqp::{Amqp, AmqpError, Consumer, LinkStatus, Message, Msg};
use nucleon_testkit::TcpProxy;
use support::{Service, unique};

const MESSAGES: u64 = 100_000;

fn multi_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap()
}

#[test]
#[allow(
    clippy::print_stderr,
    reason = "the test's report: duplicate deliveries are counted"
)]
fn no_confirmed_message_is_lost_when_the_link_drops_twice() {
    let Some(url) = support::url() else { return };
    let rt = multi_thread();
    let proxy = rt.block_on(TcpProxy::start(support::upstream(&url)));
    let queue = unique("resilience");
    let seen: Arc<Mutex<HashMap<u64, u32>>> = Arc::default();
    let counts = Arc::clone(&seen);
    let amqp = Amqp::new().consumer(
        Consumer::new(&queue, move |Msg(n): Msg<u64>| {
            *counts.lock().unwrap().entry(n).or_default() += 1;
            std::future::ready(())
        })
        .concurrency(64),
    );
    let settings = "reconnect_min = \"50ms\"\nreconnect_max = \"500ms\"\npublish_timeout = \"60s\"\nwindow = 512\n";
    let service = Service::start(
        "resilience",
        &support::through(&url, proxy.addr()),
        settings,
        2,
        amqp,
    );
    let broker = service.broker.clone();
    let started = Instant::now();
    let confirmed: Vec<u64> = rt.block_on(async {
        let (proxy, queue) = (&proxy, queue.as_str());
        let done = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let cuts = {
            let done = Arc::clone(&done);
            async move {
                for at in [MESSAGES * 3 / 10, MESSAGES * 65 / 100] {
                    while done.load(std::sync::atomic::Ordering::Relaxed) < at {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    proxy.reset();
                }
            }
        };
        let publishes = futures_util::stream::iter(0..MESSAGES)
            .map(|n| {
                let (broker, done) = (broker.clone(), Arc::clone(&done));
                async move {
                    let sent = broker.publish("", queue, Message::json(&n).unwrap()).await;
                    done.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    sent.map(|()| n)
                }
            })
            .buffer_unordered(1024)
            .collect::<Vec<_>>();
        let (results, ()) = tokio::join!(publishes, cuts);
        let failed: Vec<&AmqpError> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(
            failed.is_empty(),
            "{} publishes failed, first: {}",
            failed.len(),
            failed[0]
        );
        results.into_iter().map(Result::unwrap).collect()
    });
    assert_eq!(confirmed.len() as u64, MESSAGES);
    nucleon_testkit::wait_until(
        "every confirmed message consumed",
        Duration::from_secs(120),
        || {
            let seen = seen.lock().unwrap();
            confirmed.iter().all(|n| seen.contains_key(n))
        },
    );
    let seen = seen.lock().unwrap();
    let duplicates: u32 = seen.values().map(|c| c - 1).sum();
    let stats = broker.stats();
    // Reported, not asserted: at-least-once delivery allows them.
    eprintln!(
        "{MESSAGES} published and confirmed in {:.1?}; consumed {} distinct, {duplicates} duplicate deliveries; {} republished after the cuts; {} reconnects",
        started.elapsed(),
        seen.len(),
        stats.republished,
        stats.reconnects
    );
    assert_eq!(seen.len() as u64, MESSAGES);
    assert!(stats.reconnects >= 2, "{stats:?}");
    drop(seen);
    service.stop().unwrap();
    rt.block_on(async {
        let raw = support::raw(&url).await;
        support::delete_queues(&raw, &support::consumer_queues(&queue)).await;
    });
}

#[test]
fn a_call_in_flight_fails_at_once_when_the_link_drops_and_health_follows_the_link() {
    let Some(url) = support::url() else { return };
    let rt = multi_thread();
    let proxy = rt.block_on(TcpProxy::start(support::upstream(&url)));
    let name = unique("slow");
    let amqp = Amqp::new().rpc(&name, |Msg(ms): Msg<u64>| async move {
        tokio::time::sleep(Duration::from_millis(ms)).await;
        Ok::<_, std::convert::Infallible>(ms)
    });
    let settings = "reconnect_min = \"50ms\"\nreconnect_max = \"200ms\"\n";
    let service = Service::start(
        "rpc-cut",
        &support::through(&url, proxy.addr()),
        settings,
        1,
        amqp,
    );
    let broker = service.broker.clone();
    rt.block_on(async {
        let fast: u64 = broker.call(&name, &1_u64).await.unwrap();
        assert_eq!(fast, 1);
        let call = broker
            .call::<u64, _>(&name, &5_000_u64)
            .timeout(Duration::from_secs(120));
        let started = Instant::now();
        let (outcome, ()) = tokio::join!(call.into_future(), async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            proxy.cut();
        });
        let error = outcome.unwrap_err();
        assert!(matches!(error, AmqpError::ConnectionLost { .. }), "{error}");
        // Against 120 s of timeout: it failed with the link, not at its timeout.
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "failed only after {:?}",
            started.elapsed()
        );
        nucleon_testkit::wait_until_async(
            "health says reconnecting",
            Duration::from_secs(10),
            async || matches!(broker.status(), LinkStatus::Reconnecting { .. }),
        )
        .await;
        // A publish while down waits for the link rather than failing.
        let nobody = unique("nobody-yet");
        let waiting = broker.publish("", &nobody, Message::bytes("x").mandatory(false));
        let (published, ()) = tokio::join!(waiting, async {
            tokio::time::sleep(Duration::from_millis(500)).await;
            proxy.restore();
        });
        published.unwrap();
        assert_eq!(broker.status(), LinkStatus::Connected);
        // The procedure's queue and consumer are back.
        let again: u64 = broker
            .call(&name, &2_u64)
            .timeout(Duration::from_secs(10))
            .await
            .unwrap();
        assert_eq!(again, 2);
    });
    service.stop().unwrap();
    rt.block_on(async {
        let raw = support::raw(&url).await;
        support::delete_queues(&raw, &support::consumer_queues(&format!("rpc.{name}"))).await;
    });
}
