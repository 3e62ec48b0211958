//! Consumers against the real broker: each error policy (requeue, dead letter, retry
//! after delays), an undecodable message, a panicking handler, the prefetch that bounds
//! a consumer's concurrency, and the watchdog naming a consumer that blocks its worker.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::types::AMQPValue;
use nucleon_amqp::{
    ATTEMPTS_HEADER, Amqp, BrokerStats, Consumer, Delivery, ERROR_HEADER, Handler, Message, Msg,
    OnError, QUEUE_HEADER,
};
use nucleon_runtime::WatchdogConfig;
use support::{Service, unique};

/// How long any wait for the broker or a handler may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// A handler's error.
#[derive(Debug)]
struct Boom(&'static str);

impl std::fmt::Display for Boom {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "boom: {}", self.0)
    }
}

/// A header of a message taken from a queue, as text.
fn text_header(message: &lapin::message::BasicGetMessage, name: &str) -> Option<String> {
    match message.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A header of a message taken from a queue, as an integer.
fn int_header(message: &lapin::message::BasicGetMessage, name: &str) -> Option<i64> {
    match *message.properties.headers().as_ref()?.inner().get(name)? {
        AMQPValue::LongLongInt(n) => Some(n),
        AMQPValue::LongInt(n) => Some(i64::from(n)),
        _ => None,
    }
}

/// Stops the service and takes what is in `queue`'s dead-letter queue.
fn finish(service: Service, url: &str, queue: &str) -> Vec<lapin::message::BasicGetMessage> {
    service.stop().unwrap();
    support::current_thread().block_on(async {
        let raw = support::raw(url).await;
        support::drain_queue(&raw, &format!("{queue}.dead-letter")).await
    })
}

/// Waits until the service's broker counters satisfy `done` (a delivery is settled
/// once it is acked: the counters move in that order).
fn settled(service: &Service, what: &str, done: impl Fn(&BrokerStats) -> bool) {
    nucleon_testkit::wait_until(what, PATIENCE, || done(&service.broker.stats()));
}

/// Publishes each message to `queue` through the service's broker.
fn publish(service: &Service, queue: &str, messages: Vec<Message>) {
    support::current_thread().block_on(async {
        for message in messages {
            service.broker.publish("", queue, message).await.unwrap();
        }
    });
}

/// Whether each delivery a handler got was a redelivery, in order.
type Calls = Arc<Mutex<Vec<bool>>>;

/// A handler that records whether each delivery was a redelivery, and fails the first
/// `failures` of them.
fn failing_handler(failures: usize) -> (Calls, impl Handler<(Delivery,)>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&calls);
    let handler = move |delivery: Delivery| {
        let mut calls = seen.lock().unwrap();
        calls.push(delivery.redelivered());
        std::future::ready(if calls.len() <= failures {
            Err(Boom("on purpose"))
        } else {
            Ok(())
        })
    };
    (calls, handler)
}

#[test]
fn requeue_tries_a_failed_message_once_more_and_acks_it() {
    let Some(url) = support::url() else { return };
    let queue = unique("requeue-once");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let (calls, handler) = failing_handler(1);
    let amqp = Amqp::new().consumer(Consumer::new(&queue, handler).on_error(OnError::Requeue));
    let service = Service::start("requeue-once", &url, "", 1, amqp);
    publish(&service, &queue, vec![Message::json(&1).unwrap()]);
    settled(&service, "the message requeued, then acked", |s| {
        s.requeued == 1 && s.acked == 1
    });
    let stats = service.broker.stats();
    assert_eq!(
        (stats.consumed, stats.requeued, stats.dead_lettered),
        (2, 1, 0),
        "{stats:?}"
    );
    assert_eq!(
        *calls.lock().unwrap(),
        [false, true],
        "handled twice, the second time as a redelivery"
    );
    let dead = finish(service, &url, &queue);
    assert!(dead.is_empty(), "nothing dead-lettered: {dead:?}");
}

#[test]
fn requeue_dead_letters_a_message_that_fails_again() {
    let Some(url) = support::url() else { return };
    let queue = unique("requeue-always");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let (calls, handler) = failing_handler(usize::MAX);
    let amqp = Amqp::new().consumer(Consumer::new(&queue, handler).on_error(OnError::Requeue));
    let service = Service::start("requeue-always", &url, "", 1, amqp);
    publish(&service, &queue, vec![Message::json(&"poison").unwrap()]);
    settled(&service, "the message dead-lettered and acked", |s| {
        s.requeued == 1 && s.dead_lettered == 1 && s.acked == 1
    });
    let stats = service.broker.stats();
    assert_eq!(
        (stats.consumed, stats.requeued, stats.acked),
        (2, 1, 1),
        "{stats:?}"
    );
    assert_eq!(*calls.lock().unwrap(), [false, true]);
    let dead = finish(service, &url, &queue);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = text_header(&dead[0], ERROR_HEADER).expect("the reason header");
    assert!(
        error.contains("failed again after a requeue") && error.contains("boom: on purpose"),
        "{error}"
    );
    assert_eq!(
        text_header(&dead[0], QUEUE_HEADER).as_deref(),
        Some(&*queue)
    );
    assert_eq!(dead[0].data, b"\"poison\"", "the body is kept");
}

#[test]
fn dead_letter_sends_a_failed_message_away_at_once() {
    let Some(url) = support::url() else { return };
    let queue = unique("dead-letter");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let (calls, handler) = failing_handler(usize::MAX);
    let amqp = Amqp::new().consumer(Consumer::new(&queue, handler).on_error(OnError::DeadLetter));
    let service = Service::start("dead-letter", &url, "", 1, amqp);
    publish(
        &service,
        &queue,
        vec![Message::json(&42).unwrap().message_id("order-42")],
    );
    settled(&service, "the message dead-lettered and acked", |s| {
        s.dead_lettered == 1 && s.acked == 1
    });
    let stats = service.broker.stats();
    assert_eq!(
        (stats.consumed, stats.requeued, stats.retried, stats.acked),
        (1, 0, 0, 1),
        "{stats:?}"
    );
    assert_eq!(*calls.lock().unwrap(), [false], "handled once");
    let dead = finish(service, &url, &queue);
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        text_header(&dead[0], ERROR_HEADER).as_deref(),
        Some("Boom: boom: on purpose")
    );
    assert_eq!(
        dead[0]
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str()),
        Some("order-42"),
        "the dead letter keeps the message id"
    );
}

#[test]
fn a_dead_letter_outlives_the_expiration_of_its_message() {
    let Some(url) = support::url() else { return };
    let queue = unique("dead-letter-ttl");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let (calls, handler) = failing_handler(usize::MAX);
    let amqp = Amqp::new().consumer(Consumer::new(&queue, handler).on_error(OnError::DeadLetter));
    let service = Service::start("dead-letter-ttl", &url, "", 1, amqp);
    // Consumed at once (the consumer is there), well within its time to live; it
    // fails and is dead-lettered.
    support::current_thread().block_on(async {
        let raw = support::raw(&url).await;
        nucleon_testkit::wait_until_async("the consumer subscribed", PATIENCE, async || {
            support::queue_counts(&raw, &queue).await.1 == 1
        })
        .await;
    });
    let expiring = Message::json(&"stale soon")
        .unwrap()
        .expiration(Duration::from_secs(1));
    publish(&service, &queue, vec![expiring]);
    settled(&service, "the message dead-lettered and acked", |s| {
        s.dead_lettered == 1 && s.acked == 1
    });
    assert_eq!(calls.lock().unwrap().len(), 1);
    // Past the message's time to live: a dead letter waits for someone to look at it.
    #[allow(
        clippy::disallowed_methods,
        reason = "the test's own thread waits, never a worker's"
    )]
    std::thread::sleep(Duration::from_millis(1500));
    let dead = finish(service, &url, &queue);
    assert_eq!(dead.len(), 1, "the dead letter is still there: {dead:?}");
    assert_eq!(*dead[0].properties.expiration(), None);
    assert_eq!(dead[0].data, b"\"stale soon\"");
}

#[test]
fn retry_tries_after_each_delay_then_dead_letters() {
    let Some(url) = support::url() else { return };
    let queue = unique("retry");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let attempts = Arc::new(Mutex::new(Vec::<u32>::new()));
    let seen = Arc::clone(&attempts);
    let handler = move |delivery: Delivery| {
        seen.lock().unwrap().push(delivery.attempts());
        std::future::ready(Err::<(), _>(Boom("every time")))
    };
    let delays = [Duration::from_millis(100), Duration::from_millis(200)];
    let amqp =
        Amqp::new().consumer(Consumer::new(&queue, handler).on_error(OnError::retry(delays)));
    let service = Service::start("retry", &url, "", 1, amqp);
    publish(&service, &queue, vec![Message::json(&"flaky").unwrap()]);
    settled(&service, "the message dead-lettered and acked", |s| {
        s.dead_lettered == 1 && s.acked == 3
    });
    let stats = service.broker.stats();
    assert_eq!(
        (stats.consumed, stats.retried, stats.requeued, stats.acked),
        (3, 2, 0, 3),
        "{stats:?}"
    );
    assert_eq!(
        *attempts.lock().unwrap(),
        [0, 1, 2],
        "tried 3 times, each delivery counting the attempts before it"
    );
    let dead = finish(service, &url, &queue);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = text_header(&dead[0], ERROR_HEADER).expect("the reason header");
    assert!(
        error.starts_with("failed 3 times") && error.contains("boom: every time"),
        "{error}"
    );
    assert_eq!(int_header(&dead[0], ATTEMPTS_HEADER), Some(2));
    assert_eq!(dead[0].data, b"\"flaky\"", "the body is kept");
    // Retry queues are named by their delay: a new version with other delays (a
    // rolling deploy) declares its own rather than clash with the old ones' TTL.
    let changed =
        Consumer::new(&queue, |_: Delivery| std::future::ready(())).on_error(OnError::retry([
            Duration::from_millis(100),
            Duration::from_secs(1),
        ]));
    let service = Service::start("retry", &url, "", 1, Amqp::new().consumer(changed));
    service.stop().unwrap();
}

#[test]
fn an_undecodable_message_is_dead_lettered_without_calling_the_handler() {
    let Some(url) = support::url() else { return };
    let queue = unique("undecodable");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let handled = Arc::new(Mutex::new(Vec::<u64>::new()));
    let seen = Arc::clone(&handled);
    let handler = move |Msg(n): Msg<u64>| {
        seen.lock().unwrap().push(n);
        std::future::ready(())
    };
    // Requeue: a message that cannot be decoded must not be tried again anyway.
    let amqp = Amqp::new().consumer(Consumer::new(&queue, handler).on_error(OnError::Requeue));
    let service = Service::start("undecodable", &url, "", 1, amqp);
    publish(
        &service,
        &queue,
        vec![
            Message::bytes("this is not JSON"),
            Message::json(&"a string, not a u64").unwrap(),
            Message::json(&7_u64).unwrap(),
        ],
    );
    settled(&service, "two dead letters and one message handled", |s| {
        s.dead_lettered == 2 && s.acked == 3
    });
    assert_eq!(*handled.lock().unwrap(), [7], "only the good message");
    let stats = service.broker.stats();
    assert_eq!((stats.consumed, stats.requeued), (3, 0), "{stats:?}");
    let dead = finish(service, &url, &queue);
    assert_eq!(dead.len(), 2, "{dead:?}");
    for message in &dead {
        let error = text_header(message, ERROR_HEADER).expect("the reason header");
        assert!(
            error.starts_with("undecodable: the body is not the JSON expected"),
            "{error}"
        );
    }
    assert_eq!(dead[0].data, b"this is not JSON");
}

#[test]
fn a_panicking_handler_follows_the_policy_and_the_worker_serves_on() {
    let Some(url) = support::url() else { return };
    let queue = unique("panics");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let handled = Arc::new(Mutex::new(Vec::<u64>::new()));
    let calls = Arc::new(AtomicUsize::new(0));
    let (seen, count) = (Arc::clone(&handled), Arc::clone(&calls));
    let handler = move |Msg(n): Msg<u64>| {
        let seen = Arc::clone(&seen);
        count.fetch_add(1, Ordering::SeqCst);
        async move {
            tokio::task::yield_now().await;
            assert_ne!(n, 0, "zero makes this handler panic");
            seen.lock().unwrap().push(n);
        }
    };
    let amqp = Amqp::new().consumer(Consumer::new(&queue, handler).on_error(OnError::Requeue));
    let service = Service::start("panics", &url, "", 1, amqp);
    publish(&service, &queue, vec![Message::json(&0_u64).unwrap()]);
    settled(&service, "the panicking message dead-lettered", |s| {
        s.requeued == 1 && s.dead_lettered == 1 && s.acked == 1
    });
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "requeued once, then dead-lettered"
    );
    let later = (1..=5_u64).map(|n| Message::json(&n).unwrap()).collect();
    publish(&service, &queue, later);
    settled(&service, "the later messages handled", |s| s.acked == 6);
    let mut all = handled.lock().unwrap().clone();
    all.sort_unstable();
    assert_eq!(all, [1, 2, 3, 4, 5]);
    let stats = service.broker.stats();
    assert_eq!(
        (stats.requeued, stats.dead_lettered, stats.acked),
        (1, 1, 6),
        "{stats:?}"
    );
    let dead = finish(service, &url, &queue);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = text_header(&dead[0], ERROR_HEADER).expect("the reason header");
    assert!(
        error.contains("the handler panicked") && error.contains("zero makes this handler panic"),
        "{error}"
    );
}

#[test]
fn a_handler_that_panics_before_its_future_follows_the_policy_too() {
    let Some(url) = support::url() else { return };
    let queue = unique("panics-early");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let handled = Arc::new(Mutex::new(Vec::<u64>::new()));
    let seen = Arc::clone(&handled);
    // A closure (not an async fn) that panics when called, before it makes its future.
    let handler = move |Msg(n): Msg<u64>| {
        assert_ne!(n, 0, "zero makes this handler panic at once");
        seen.lock().unwrap().push(n);
        std::future::ready(())
    };
    // Concurrency 1: a delivery left unsettled would stop the consumer for good.
    let amqp = Amqp::new().consumer(
        Consumer::new(&queue, handler)
            .concurrency(1)
            .on_error(OnError::DeadLetter),
    );
    let service = Service::start("panics-early", &url, "", 1, amqp);
    publish(
        &service,
        &queue,
        (0..=3_u64).map(|n| Message::json(&n).unwrap()).collect(),
    );
    settled(&service, "the panic dead-lettered, the rest handled", |s| {
        s.dead_lettered == 1 && s.acked == 4
    });
    assert_eq!(*handled.lock().unwrap(), [1, 2, 3]);
    let dead = finish(service, &url, &queue);
    assert_eq!(dead.len(), 1, "{dead:?}");
    let error = text_header(&dead[0], ERROR_HEADER).expect("the reason header");
    assert!(
        error.contains("the handler panicked") && error.contains("zero makes this handler panic"),
        "{error}"
    );
}

/// What the gated handlers of the prefetch test share.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
    done: AtomicUsize,
}

#[test]
fn prefetch_bounds_the_deliveries_in_flight_to_the_concurrency() {
    let Some(url) = support::url() else { return };
    let queue = unique("prefetch");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let state = Arc::new(InFlight::default());
    let (gate, opened) = tokio::sync::watch::channel(false);
    let shared = Arc::clone(&state);
    let handler = move |Msg(_n): Msg<u32>| {
        let (state, mut opened) = (Arc::clone(&shared), opened.clone());
        async move {
            let now = state.now.fetch_add(1, Ordering::SeqCst) + 1;
            state.max.fetch_max(now, Ordering::SeqCst);
            let _ = opened.wait_for(|open| *open).await;
            state.now.fetch_sub(1, Ordering::SeqCst);
            state.done.fetch_add(1, Ordering::SeqCst);
        }
    };
    let amqp = Amqp::new().consumer(
        Consumer::new(&queue, handler)
            .concurrency(3)
            .on_error(OnError::DeadLetter),
    );
    let service = Service::start("prefetch", &url, "", 1, amqp);
    publish(
        &service,
        &queue,
        (0..10_u32).map(|n| Message::json(&n).unwrap()).collect(),
    );
    nucleon_testkit::wait_until("3 handlers waiting at the gate", PATIENCE, || {
        state.now.load(Ordering::SeqCst) == 3
    });
    // The broker holds the other 7: the prefetch lets no more out while 3 are unacked.
    let rt = support::current_thread();
    rt.block_on(async {
        let raw = support::raw(&url).await;
        nucleon_testkit::wait_until_async("7 messages left in the queue", PATIENCE, async || {
            support::queue_counts(&raw, &queue).await == (7, 1)
        })
        .await;
        // A moment for a delivery beyond the prefetch to show, were there one.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(support::queue_counts(&raw, &queue).await, (7, 1));
    });
    assert_eq!(state.now.load(Ordering::SeqCst), 3);
    assert_eq!(state.max.load(Ordering::SeqCst), 3);
    gate.send_replace(true);
    settled(&service, "all 10 handled and acked", |s| s.acked == 10);
    assert_eq!(state.done.load(Ordering::SeqCst), 10);
    assert_eq!(
        state.max.load(Ordering::SeqCst),
        3,
        "never more than the concurrency in flight"
    );
    assert_eq!(service.broker.stats().acked, 10);
    let dead = finish(service, &url, &queue);
    assert!(dead.is_empty(), "{dead:?}");
}

// Deliberately blocks the worker's thread: the watchdog must catch it and name the queue.
#[allow(
    clippy::disallowed_methods,
    reason = "blocks the worker's loop on purpose, for the watchdog to report"
)]
async fn blocks_the_loop(Msg(_n): Msg<u32>) {
    std::thread::sleep(Duration::from_millis(300));
}

#[test]
fn the_watchdog_names_a_blocking_consumer_by_its_queue() {
    let Some(url) = support::url() else { return };
    let queue = unique("blocking");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let watchdog = WatchdogConfig {
        threshold: Duration::from_millis(50),
        ..WatchdogConfig::default()
    };
    let amqp =
        Amqp::new().consumer(Consumer::new(&queue, blocks_the_loop).on_error(OnError::DeadLetter));
    let service = Service::start_with("blocking", &url, "", 1, amqp, Some(watchdog));
    publish(&service, &queue, vec![Message::json(&1_u32).unwrap()]);
    nucleon_testkit::wait_until("the blocking handler done", PATIENCE, || {
        service.broker.stats().acked == 1
    });
    let label = format!("consume {queue}");
    let watchdog = service.handle.watchdog().clone();
    nucleon_testkit::wait_until("a report naming the consumer", PATIENCE, || {
        watchdog
            .recent_reports()
            .iter()
            .any(|r| r.task.as_deref().is_some_and(|t| t.contains(&label)))
    });
    let stats = watchdog.stats();
    assert!(
        stats.blocking_reports >= 1,
        "{stats:?}: {:?}",
        watchdog.recent_reports()
    );
    let named: Vec<_> = watchdog
        .recent_reports()
        .into_iter()
        .filter(|r| r.task.as_deref().is_some_and(|t| t.contains(&label)))
        .collect();
    assert!(
        named.iter().all(|r| !r.process_loop && r.worker == 0),
        "{named:?}"
    );
    let dead = finish(service, &url, &queue);
    assert!(dead.is_empty(), "{dead:?}");
}
