//! The ready topologies against the real broker, with several service instances (each
//! its own runtime and connection): events in their three modes, and a task queue
//! shared by competing workers.

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use nucleon_amqp::{Amqp, Consumer, Delivery, EventMode, Msg, Queue};
use support::{Service, unique};

/// How long any wait for the broker or a handler may take before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// How many events each test dispatches.
const EVENTS: u32 = 20;

/// One handling of an event: by which instance, which event, from which queue, and
/// the dispatching service the message names.
#[derive(Debug, Clone)]
struct Handled {
    instance: &'static str,
    n: u32,
    queue: String,
    source: Option<String>,
}

type Log = Arc<Mutex<Vec<Handled>>>;

/// An instance of service `service` (called `instance` in the log) that handles
/// `event` in `mode`.
fn listener(
    service: &str,
    instance: &'static str,
    event: &str,
    mode: EventMode,
    url: &str,
    log: &Log,
) -> Service {
    let log = Arc::clone(log);
    let handler = move |Msg(n): Msg<u32>, delivery: Delivery| {
        log.lock().unwrap().push(Handled {
            instance,
            n,
            queue: delivery.queue().to_owned(),
            source: delivery.header("x-nucleon-source"),
        });
        std::future::ready(())
    };
    Service::start(
        service,
        url,
        "",
        1,
        Amqp::new().on_event(event, mode, handler),
    )
}

/// Dispatches events 0..EVENTS from `from`.
fn dispatch(from: &Service, event: &str) {
    support::current_thread().block_on(async {
        for n in 0..EVENTS {
            from.broker.dispatch(event, &n).await.unwrap();
        }
    });
}

/// Waits until `expected` handlings are logged, then a moment more, for a duplicate to
/// show were there one; the log by event: the instances that handled it, sorted.
fn handlings(log: &Log, expected: usize) -> BTreeMap<u32, Vec<&'static str>> {
    nucleon_testkit::wait_until(&format!("{expected} events handled"), PATIENCE, || {
        log.lock().unwrap().len() >= expected
    });
    #[allow(
        clippy::disallowed_methods,
        reason = "the test's own thread waits, never a worker's"
    )]
    std::thread::sleep(Duration::from_millis(300));
    let log = log.lock().unwrap();
    assert_eq!(log.len(), expected, "no event handled twice: {log:?}");
    assert!(
        log.iter().all(|h| h.source.as_deref() == Some("svc-a")),
        "every event names the service that dispatched it: {log:?}"
    );
    let mut by_event: BTreeMap<u32, Vec<&'static str>> = BTreeMap::new();
    for handled in log.iter() {
        by_event
            .entry(handled.n)
            .or_default()
            .push(handled.instance);
    }
    for instances in by_event.values_mut() {
        instances.sort_unstable();
    }
    assert_eq!(
        by_event.keys().copied().collect::<Vec<_>>(),
        (0..EVENTS).collect::<Vec<_>>(),
        "every event handled"
    );
    by_event
}

/// Stops the services.
fn finish(services: Vec<Service>) {
    for service in services {
        service.stop().unwrap();
    }
}

/// Deletes the queues of the consumers of `queues` at the end of the test.
fn cleanup<const N: usize>(url: &str, queues: [String; N]) -> support::Cleanup {
    support::Cleanup::new(url, queues.iter().flat_map(|q| support::consumer_queues(q)))
}

#[test]
fn service_mode_handles_each_event_once_per_service() {
    let Some(url) = support::url() else { return };
    let event = unique("evt-service");
    let _cleanup = cleanup(
        &url,
        [
            format!("events.{event}.svc-a"),
            format!("events.{event}.svc-b"),
        ],
    );
    let log = Log::default();
    let a1 = listener("svc-a", "a1", &event, EventMode::Service, &url, &log);
    let a2 = listener("svc-a", "a2", &event, EventMode::Service, &url, &log);
    let b1 = listener("svc-b", "b1", &event, EventMode::Service, &url, &log);
    dispatch(&a1, &event);
    let by_event = handlings(&log, 2 * EVENTS as usize);
    for (n, instances) in &by_event {
        assert_eq!(instances.len(), 2, "event {n}: {instances:?}");
        assert!(
            matches!(instances[0], "a1" | "a2"),
            "event {n}: once by svc-a: {instances:?}"
        );
        assert_eq!(instances[1], "b1", "event {n}: once by svc-b");
    }
    let queues: HashSet<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.queue.clone())
        .collect();
    let expected: HashSet<String> = [
        format!("events.{event}.svc-a"),
        format!("events.{event}.svc-b"),
    ]
    .into();
    assert_eq!(queues, expected, "one queue per service");
    finish(vec![a1, a2, b1]);
}

#[test]
fn singleton_mode_handles_each_event_once_in_all() {
    let Some(url) = support::url() else { return };
    let event = unique("evt-singleton");
    let _cleanup = cleanup(&url, [format!("events.{event}")]);
    let log = Log::default();
    let a1 = listener("svc-a", "a1", &event, EventMode::Singleton, &url, &log);
    let a2 = listener("svc-a", "a2", &event, EventMode::Singleton, &url, &log);
    let b1 = listener("svc-b", "b1", &event, EventMode::Singleton, &url, &log);
    dispatch(&a1, &event);
    let by_event = handlings(&log, EVENTS as usize);
    for (n, instances) in &by_event {
        assert_eq!(instances.len(), 1, "event {n}: {instances:?}");
    }
    let queues: HashSet<String> = log
        .lock()
        .unwrap()
        .iter()
        .map(|h| h.queue.clone())
        .collect();
    let shared = format!("events.{event}");
    assert_eq!(queues, HashSet::from([shared.clone()]), "one queue in all");
    finish(vec![a1, a2, b1]);
}

#[test]
fn broadcast_mode_handles_each_event_once_per_instance() {
    let Some(url) = support::url() else { return };
    let event = unique("evt-broadcast");
    // The instances' queues are named after them: added once known.
    let cleanup = support::Cleanup::new(&url, []);
    let log = Log::default();
    let a1 = listener("svc-a", "a1", &event, EventMode::Broadcast, &url, &log);
    let a2 = listener("svc-a", "a2", &event, EventMode::Broadcast, &url, &log);
    let b1 = listener("svc-b", "b1", &event, EventMode::Broadcast, &url, &log);
    dispatch(&a1, &event);
    let by_event = handlings(&log, 3 * EVENTS as usize);
    for (n, instances) in &by_event {
        assert_eq!(instances, &["a1", "a2", "b1"], "event {n}: once by each");
    }
    let mut queues: BTreeMap<&'static str, HashSet<String>> = BTreeMap::new();
    for handled in log.lock().unwrap().iter() {
        queues
            .entry(handled.instance)
            .or_default()
            .insert(handled.queue.clone());
    }
    let all: Vec<String> = queues.values().flatten().cloned().collect();
    cleanup.add(all.iter().flat_map(|q| support::consumer_queues(q)));
    assert_eq!(all.len(), 3, "one queue per instance: {queues:?}");
    for (instance, names) in &queues {
        assert_eq!(names.len(), 1, "{instance}: {names:?}");
        let service = if instance.starts_with('a') {
            "svc-a"
        } else {
            "svc-b"
        };
        let name = names.iter().next().unwrap();
        assert!(
            name.starts_with(&format!("events.{event}.{service}.")),
            "{instance}: {name}"
        );
    }
    for service in [a1, a2, b1] {
        service.stop().unwrap();
    }
    // An instance's queues are its own: none outlives it.
    support::current_thread().block_on(async {
        let raw = support::raw(&url).await;
        let mut left = Vec::new();
        for queue in all.iter().flat_map(|q| support::consumer_queues(q)) {
            let channel = raw.create_channel().await.unwrap();
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            if channel
                .queue_declare(queue.as_str().into(), passive, FieldTable::default())
                .await
                .is_ok()
            {
                left.push(queue);
                let _ = channel.close(200, "checked".into()).await;
            }
        }
        assert!(left.is_empty(), "left behind on the broker: {left:?}");
    });
}

#[test]
fn competing_workers_share_a_task_queue() {
    let Some(url) = support::url() else { return };
    let task = unique("task");
    let queue = format!("tasks.{task}");
    let _cleanup = cleanup(&url, [queue.clone()]);
    let handled = Arc::new(Mutex::new(Vec::<(&'static str, u32, String)>::new()));
    let worker = |service: &str, instance: &'static str| {
        let log = Arc::clone(&handled);
        let handler = move |Msg(n): Msg<u32>, delivery: Delivery| {
            let log = Arc::clone(&log);
            let id = delivery.message_id().unwrap_or_default().to_owned();
            async move {
                // A little work, so that each worker has several tasks in hand.
                tokio::time::sleep(Duration::from_millis(5)).await;
                log.lock().unwrap().push((instance, n, id));
            }
        };
        Service::start(service, &url, "", 1, Amqp::new().task(&task, handler))
    };
    let a = worker("svc-a", "a");
    let b = worker("svc-b", "b");
    let rt = support::current_thread();
    let ids: HashSet<String> = rt.block_on(async {
        let raw = support::raw(&url).await;
        nucleon_testkit::wait_until_async("both workers consuming", PATIENCE, async || {
            support::queue_counts(&raw, &queue).await.1 == 2
        })
        .await;
        let mut ids = HashSet::new();
        for n in 0..100_u32 {
            ids.insert(a.broker.submit(&task, &n).await.unwrap());
        }
        ids
    });
    assert_eq!(ids.len(), 100, "each task has its own id");
    nucleon_testkit::wait_until("100 tasks handled", PATIENCE, || {
        handled.lock().unwrap().len() >= 100
    });
    #[allow(
        clippy::disallowed_methods,
        reason = "the test's own thread waits, never a worker's"
    )]
    std::thread::sleep(Duration::from_millis(300));
    let log = handled.lock().unwrap().clone();
    assert_eq!(log.len(), 100, "each task handled once");
    let by_a = log.iter().filter(|(who, ..)| *who == "a").count();
    assert!(
        by_a > 0 && by_a < 100,
        "both workers got some: {by_a} by a, {} by b",
        100 - by_a
    );
    let mut numbers: Vec<u32> = log.iter().map(|(_, n, _)| *n).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (0..100).collect::<Vec<_>>());
    let seen_ids: HashSet<String> = log.iter().map(|(.., id)| id.clone()).collect();
    assert_eq!(
        seen_ids, ids,
        "the ids submit returned are the messages' ids"
    );
    finish(vec![a, b]);
}

#[test]
fn an_event_handler_with_a_queue_of_its_own_still_gets_the_events() {
    let Some(url) = support::url() else { return };
    let event = unique("evt-own-queue");
    let queue = format!("events.{event}.own");
    let _cleanup = cleanup(&url, [queue.clone()]);
    let log = Log::default();
    let record = Arc::clone(&log);
    let handler = move |Msg(n): Msg<u32>, delivery: Delivery| {
        record.lock().unwrap().push(Handled {
            instance: "a1",
            n,
            queue: delivery.queue().to_owned(),
            source: delivery.header("x-nucleon-source"),
        });
        std::future::ready(())
    };
    // A queue declared its own way (here, with priorities) instead of the default one.
    let consumer = Consumer::event(&event, EventMode::Service, handler)
        .queue(Queue::durable(&queue).max_priority(5));
    let a1 = Service::start("svc-a", &url, "", 1, Amqp::new().consumer(consumer));
    dispatch(&a1, &event);
    let by_event = handlings(&log, EVENTS as usize);
    assert!(by_event.values().all(|instances| instances == &["a1"]));
    assert!(log.lock().unwrap().iter().all(|h| h.queue == queue));
    finish(vec![a1]);
}
