//! The drain of a worker service in the middle of a stream of messages: consumers
//! cancel, handlers in flight finish and are acked, deliveries not started go back to
//! the queue; a second instance takes the rest. Nothing is lost, nothing is handled
//! twice because of the drain.

mod support;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nucleon_amqp::{Amqp, Consumer, Delivery, Message};
use support::{Service, unique};

type Handled = Arc<Mutex<HashMap<String, u32>>>;

/// A consumer that takes 10 ms a message, recording each message id it completes.
fn worker(queue: &str, handled: &Handled) -> Amqp {
    let handled = Arc::clone(handled);
    Amqp::new().consumer(
        Consumer::new(queue, move |delivery: Delivery| {
            let handled = Arc::clone(&handled);
            async move {
                tokio::time::sleep(Duration::from_millis(10)).await;
                let id = delivery
                    .message_id()
                    .expect("every message has an id")
                    .to_owned();
                *handled.lock().unwrap().entry(id).or_default() += 1;
            }
        })
        .concurrency(8),
    )
}

#[test]
fn a_drain_mid_stream_loses_nothing_and_handles_nothing_twice() {
    let Some(url) = support::url() else { return };
    let queue = unique("drain");
    let handled: Handled = Arc::default();
    let publisher = Service::start("drain-publisher", &url, "", 1, Amqp::new());
    let first = Service::start("drain-worker", &url, "", 2, worker(&queue, &handled));
    let rt = support::current_thread();
    let publishing = Arc::new(AtomicBool::new(true));
    let (broker, queue_name, going) = (
        publisher.broker.clone(),
        queue.clone(),
        Arc::clone(&publishing),
    );
    // A steady stream, from its own thread, while the worker drains and a second one
    // starts.
    let stream = std::thread::spawn(move || {
        support::current_thread().block_on(async {
            let mut ids = Vec::new();
            let mut n = 0_u32;
            while going.load(Ordering::Relaxed) || n < 1500 {
                let mut message = Message::json(&n).unwrap();
                let id = format!("m-{n}");
                message = message.message_id(&id);
                broker.publish("", &queue_name, message).await.unwrap();
                ids.push(id);
                n += 1;
                if n.is_multiple_of(50) {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            ids
        })
    });
    nucleon_testkit::wait_until("300 messages handled", Duration::from_secs(30), || {
        handled.lock().unwrap().len() >= 300
    });
    first.stop().expect("the first worker drains cleanly");
    let at_stop = handled.lock().unwrap().len();
    let second = Service::start("drain-worker", &url, "", 2, worker(&queue, &handled));
    publishing.store(false, Ordering::Relaxed);
    let published = stream.join().unwrap();
    nucleon_testkit::wait_until("every message handled", Duration::from_secs(60), || {
        let handled = handled.lock().unwrap();
        published.iter().all(|id| handled.contains_key(id))
    });
    let handled = handled.lock().unwrap();
    let twice: Vec<(&String, &u32)> = handled.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "{} message(s) handled more than once: {:?}",
        twice.len(),
        &twice[..twice.len().min(5)]
    );
    assert_eq!(handled.len(), published.len());
    assert!(at_stop < published.len(), "the drain happened mid-stream");
    drop(handled);
    second.stop().unwrap();
    publisher.stop().unwrap();
    rt.block_on(async {
        let raw = support::raw(&url).await;
        support::delete_queues(&raw, &support::consumer_queues(&queue)).await;
    });
}
