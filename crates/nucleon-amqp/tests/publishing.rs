//! Publishing against the real broker: a publish the broker nacks, the window of
//! unconfirmed messages that makes publishers wait, transactions, and the properties a
//! consumer sees.

mod support;

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::types::{AMQPValue, LongString};
use nucleon_amqp::{Amqp, AmqpError, Consumer, Delivery, Headers, JSON, Message, OnError, Queue};
use support::{Service, unique};

/// How long any wait for the broker or a handler may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

#[test]
fn a_publish_the_broker_rejects_is_nacked() {
    let Some(url) = support::url() else { return };
    let queue = unique("nacked");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    // One message at most; past that, the broker refuses publishes (basic.nack).
    let bounded = Queue::durable(&queue)
        .argument("x-max-length", AMQPValue::LongInt(1))
        .argument(
            "x-overflow",
            AMQPValue::LongString(LongString::from("reject-publish")),
        );
    let service = Service::start("nacked", &url, "", 1, Amqp::new().declare(bounded));
    let rt = support::current_thread();
    rt.block_on(async {
        let broker = &service.broker;
        broker
            .publish("", &queue, Message::json(&1).unwrap())
            .await
            .unwrap();
        let refused = broker
            .publish("", &queue, Message::json(&2).unwrap())
            .await
            .unwrap_err();
        match &refused {
            AmqpError::Nacked {
                exchange,
                routing_key,
            } => assert_eq!((exchange.as_str(), routing_key.as_str()), ("", &*queue)),
            other => panic!("expected Nacked, got {other}"),
        }
        assert!(
            refused.is_transient(),
            "a nacked publish may be tried again"
        );
        // A nack leaves the channel open: once there is room, publishing goes on.
        let raw = support::raw(&url).await;
        let taken = support::drain_queue(&raw, &queue).await;
        assert_eq!(taken.len(), 1);
        assert_eq!(taken[0].data, b"1", "the first message is the one kept");
        broker
            .publish("", &queue, Message::json(&3).unwrap())
            .await
            .unwrap();
        assert_eq!(support::queue_counts(&raw, &queue).await, (1, 0));
    });
    let stats = service.broker.stats();
    assert_eq!(
        (
            stats.published,
            stats.confirmed,
            stats.nacked,
            stats.unconfirmed
        ),
        (3, 2, 1, 0),
        "{stats:?}"
    );
    service.stop().unwrap();
}

#[test]
fn a_full_window_makes_publishers_wait() {
    let Some(url) = support::url() else { return };
    let queue = unique("window");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let service = Service::start(
        "window",
        &url,
        "window = 4",
        1,
        Amqp::new().declare(Queue::durable(&queue)),
    );
    // Samples the unconfirmed count from another thread, as fast as it can, until told
    // to stop: (largest seen, samples taken).
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (broker, stop) = (service.broker.clone(), Arc::clone(&stop));
        std::thread::spawn(move || {
            let (mut largest, mut samples) = (0, 0_u64);
            while !stop.load(Ordering::SeqCst) {
                largest = largest.max(broker.stats().unconfirmed);
                samples += 1;
                std::thread::yield_now();
            }
            (largest, samples)
        })
    };
    let rt = support::current_thread();
    let largest_inside = rt.block_on(async {
        let broker = &service.broker;
        // And from inside the publishing runtime, between the publishers' polls.
        let largest = Arc::new(AtomicU64::new(0));
        let (seen, watching) = (Arc::clone(&largest), Arc::new(AtomicBool::new(true)));
        let watcher = {
            let (broker, watching) = (broker.clone(), Arc::clone(&watching));
            tokio::spawn(async move {
                while watching.load(Ordering::SeqCst) {
                    seen.fetch_max(broker.stats().unconfirmed, Ordering::SeqCst);
                    tokio::task::yield_now().await;
                }
            })
        };
        let publishes = (0..200_u32).map(|n| {
            let queue = &queue;
            async move { broker.publish("", queue, Message::json(&n).unwrap()).await }
        });
        let results = futures_util::future::join_all(publishes).await;
        watching.store(false, Ordering::SeqCst);
        watcher.await.unwrap();
        let failed: Vec<_> = results.iter().filter_map(|r| r.as_ref().err()).collect();
        assert!(failed.is_empty(), "every publish succeeds: {failed:?}");
        largest.load(Ordering::SeqCst)
    });
    stop.store(true, Ordering::SeqCst);
    let (largest_outside, samples) = sampler.join().unwrap();
    assert!(samples > 0);
    assert_eq!(
        largest_outside.max(largest_inside),
        4,
        "the window filled and was never exceeded (seen from another thread: \
         {largest_outside}, from the publishers' runtime: {largest_inside})"
    );
    let stats = service.broker.stats();
    assert_eq!(
        (stats.published, stats.confirmed, stats.unconfirmed),
        (200, 200, 0),
        "{stats:?}"
    );
    rt.block_on(async {
        let raw = support::raw(&url).await;
        assert_eq!(support::queue_counts(&raw, &queue).await, (200, 0));
    });
    service.stop().unwrap();
}

#[test]
fn a_transaction_delivers_at_commit_and_never_after_a_rollback() {
    let Some(url) = support::url() else { return };
    let queue = unique("transaction");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let service = Service::start(
        "transaction",
        &url,
        "",
        1,
        Amqp::new().declare(Queue::durable(&queue)),
    );
    let rt = support::current_thread();
    rt.block_on(async {
        let broker = &service.broker;
        let raw = support::raw(&url).await;
        let rolled_back = broker.transaction().await.unwrap();
        for n in 0..3 {
            rolled_back
                .publish("", &queue, Message::bytes(format!("rolled-back-{n}")))
                .await
                .unwrap();
        }
        assert_eq!(
            support::queue_counts(&raw, &queue).await,
            (0, 0),
            "nothing delivered before the commit"
        );
        rolled_back.rollback().await.unwrap();
        assert_eq!(support::queue_counts(&raw, &queue).await, (0, 0));

        let dropped = broker.transaction().await.unwrap();
        dropped
            .publish("", &queue, Message::bytes("dropped"))
            .await
            .unwrap();
        drop(dropped);

        let committed = broker.transaction().await.unwrap();
        for n in 0..3 {
            committed
                .publish("", &queue, Message::bytes(format!("committed-{n}")))
                .await
                .unwrap();
        }
        committed.commit().await.unwrap();
        nucleon_testkit::wait_until_async("the 3 committed messages", PATIENCE, async || {
            support::queue_counts(&raw, &queue).await.0 >= 3
        })
        .await;
        let bodies: Vec<String> = support::drain_queue(&raw, &queue)
            .await
            .iter()
            .map(|m| String::from_utf8_lossy(&m.data).into_owned())
            .collect();
        assert_eq!(
            bodies,
            ["committed-0", "committed-1", "committed-2"],
            "only the committed messages, in order"
        );
    });
    service.stop().unwrap();
}

/// What a consumer saw of one message.
#[derive(Debug, Clone)]
struct Seen {
    n: u8,
    text: Option<String>,
    text_by_headers: Option<String>,
    number: Option<AMQPValue>,
    flag: Option<AMQPValue>,
    priority: Option<u8>,
    correlation_id: Option<String>,
    message_id: Option<String>,
    kind: Option<String>,
    content_type: Option<String>,
    persistent: bool,
    exchange: String,
    routing_key: String,
    queue: String,
}

#[test]
fn a_consumer_sees_the_properties_published() {
    let Some(url) = support::url() else { return };
    let queue = unique("properties");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let seen = Arc::new(Mutex::new(Vec::<Seen>::new()));
    let record = Arc::clone(&seen);
    let handler = move |delivery: Delivery, Headers(headers): Headers| {
        let n: u8 = serde_json::from_slice(delivery.body()).unwrap();
        let properties = delivery.properties();
        record.lock().unwrap().push(Seen {
            n,
            text: delivery.header("x-text"),
            text_by_headers: Headers(headers.clone()).get("x-text"),
            number: headers.inner().get("x-number").cloned(),
            flag: headers.inner().get("x-flag").cloned(),
            priority: *properties.priority(),
            correlation_id: delivery.correlation_id().map(str::to_owned),
            message_id: delivery.message_id().map(str::to_owned),
            kind: properties.kind().as_ref().map(|k| k.to_string()),
            content_type: properties.content_type().as_ref().map(|c| c.to_string()),
            persistent: *properties.delivery_mode() == Some(2),
            exchange: delivery.exchange().to_owned(),
            routing_key: delivery.routing_key().to_owned(),
            queue: delivery.queue().to_owned(),
        });
        std::future::ready(())
    };
    let consumer = Consumer::new(&queue, handler)
        .queue(Queue::durable(&queue).max_priority(9))
        .on_error(OnError::DeadLetter);
    let service = Service::start("properties", &url, "", 1, Amqp::new().consumer(consumer));
    let rt = support::current_thread();
    rt.block_on(async {
        for n in 0..5_u8 {
            let mut message = Message::json(&n)
                .unwrap()
                .header("x-text", format!("text-{n}"))
                .header("x-number", i64::from(n) * 100)
                .header("x-flag", n % 2 == 0)
                .priority(n)
                .correlation_id(&format!("corr-{n}"))
                .kind("test.property");
            if n == 0 {
                message = message.message_id("mine-0");
            }
            service.broker.publish("", &queue, message).await.unwrap();
        }
    });
    nucleon_testkit::wait_until("5 messages acked", PATIENCE, || {
        service.broker.stats().acked == 5
    });
    let mut all = seen.lock().unwrap().clone();
    all.sort_by_key(|s| s.n);
    assert_eq!(all.len(), 5, "{all:?}");
    for s in &all {
        let n = s.n;
        assert_eq!(s.text.as_deref(), Some(&*format!("text-{n}")), "{s:?}");
        assert_eq!(s.text_by_headers, s.text, "{s:?}");
        assert_eq!(
            s.number,
            Some(AMQPValue::LongLongInt(i64::from(n) * 100)),
            "{s:?}"
        );
        assert_eq!(s.flag, Some(AMQPValue::Boolean(n % 2 == 0)), "{s:?}");
        assert_eq!(s.priority, Some(n), "{s:?}");
        assert_eq!(
            s.correlation_id.as_deref(),
            Some(&*format!("corr-{n}")),
            "{s:?}"
        );
        assert_eq!(s.kind.as_deref(), Some("test.property"), "{s:?}");
        assert_eq!(s.content_type.as_deref(), Some(JSON), "{s:?}");
        assert!(s.persistent, "persistent by default: {s:?}");
        assert_eq!(
            (
                s.exchange.as_str(),
                s.routing_key.as_str(),
                s.queue.as_str()
            ),
            ("", &*queue, &*queue),
            "{s:?}"
        );
    }
    assert_eq!(
        all[0].message_id.as_deref(),
        Some("mine-0"),
        "an id given is kept"
    );
    let ids: HashSet<&str> = all
        .iter()
        .map(|s| s.message_id.as_deref().expect("every message has an id"))
        .collect();
    assert_eq!(ids.len(), 5, "the ids are unique: {all:?}");
    assert!(ids.iter().all(|id| !id.is_empty()));
    service.stop().unwrap();
}
