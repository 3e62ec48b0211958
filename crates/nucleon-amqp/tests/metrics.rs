//! The broker link's metrics against the real RabbitMQ: messages published and
//! confirmed, a mandatory message returned, deliveries handled by outcome per queue
//! and the handlers' times, the link's state; read from a Prometheus recorder.

mod support;

use std::time::Duration;

use nucleon_amqp::{Amqp, AmqpError, Consumer, Message, Msg, OnError};
use nucleon_testkit::prometheus::scrape;
use support::{Service, unique};

/// Fails odd numbers: half the deliveries end in the dead-letter queue.
async fn evens_only(Msg(n): Msg<u32>) -> Result<(), String> {
    if n % 2 == 0 {
        Ok(())
    } else {
        Err(format!("{n} is odd"))
    }
}

#[test]
fn publishes_and_deliveries_are_counted() {
    let Some(url) = support::url() else { return };
    nucleon_testkit::prometheus::recorder();
    let queue = unique("metrics");
    let _cleanup = support::Cleanup::new(&url, support::consumer_queues(&queue));
    let amqp =
        Amqp::new().consumer(Consumer::new(&queue, evens_only).on_error(OnError::DeadLetter));
    let service = Service::start("metrics", &url, "", 1, amqp);
    support::current_thread().block_on(async {
        for n in 0..10_u32 {
            service
                .broker
                .publish("", &queue, Message::json(&n).unwrap())
                .await
                .unwrap();
        }
        let nowhere = service
            .broker
            .publish("", &unique("nobody-listens"), Message::json(&0).unwrap())
            .await;
        assert!(
            matches!(nowhere, Err(AmqpError::Returned { .. })),
            "{nowhere:?}"
        );
    });
    nucleon_testkit::wait_until("10 deliveries settled", Duration::from_secs(15), || {
        let stats = service.broker.stats();
        // A dead-lettered delivery is acked too, once its dead letter is confirmed.
        stats.acked == 10 && stats.dead_lettered == 5
    });
    // The collectors run every flush interval (1 s); the workers flush as often.
    nucleon_testkit::wait_until("the figures collected", Duration::from_secs(15), || {
        let scrape = scrape();
        scrape.value("nucleon_amqp_acked_total", &[]) == Some(10.0)
            && scrape.sum("nucleon_amqp_handled_total", &[("queue", &queue)]) == 10.0
    });
    let scrape = scrape();
    // 10 messages and the returned one, plus the 5 dead letters the framework published.
    assert_eq!(
        scrape.value("nucleon_amqp_published_total", &[]),
        Some(16.0)
    );
    assert_eq!(
        scrape.value("nucleon_amqp_confirmed_total", &[]),
        Some(15.0)
    );
    assert_eq!(scrape.value("nucleon_amqp_returned_total", &[]), Some(1.0));
    assert_eq!(scrape.value("nucleon_amqp_consumed_total", &[]), Some(10.0));
    assert_eq!(
        scrape.value("nucleon_amqp_dead_lettered_total", &[]),
        Some(5.0)
    );
    assert_eq!(scrape.value("nucleon_amqp_unconfirmed", &[]), Some(0.0));
    assert_eq!(scrape.value("nucleon_amqp_connected", &[]), Some(1.0));
    for (outcome, count) in [("done", 5.0), ("failed", 5.0), ("panicked", 0.0)] {
        assert_eq!(
            scrape.value(
                "nucleon_amqp_handled_total",
                &[("queue", &queue), ("outcome", outcome)]
            ),
            Some(count),
            "{outcome}"
        );
    }
    assert_eq!(
        scrape.value(
            "nucleon_amqp_handler_duration_seconds_count",
            &[("queue", &queue)]
        ),
        Some(10.0)
    );
    service.stop().unwrap();
}
