//! The basics against the real broker: a published message reaches a consumer; a
//! mandatory message nobody takes is `Returned`; an RPC round trip, a remote error, a
//! procedure nobody serves.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use nucleon_amqp::{Amqp, AmqpError, Message, Msg};
use support::{Service, unique};

#[test]
fn a_message_reaches_its_consumer_and_a_lost_one_is_returned() {
    let Some(url) = support::url() else { return };
    let queue = unique("basics");
    let seen = Arc::new(Mutex::new(Vec::<u64>::new()));
    let got = Arc::clone(&seen);
    let amqp = Amqp::new().consume(&queue, move |Msg(n): Msg<u64>| {
        let got = Arc::clone(&got);
        async move {
            got.lock().unwrap().push(n);
        }
    });
    let service = Service::start("basics", &url, "", 2, amqp);
    let rt = support::current_thread();
    rt.block_on(async {
        for n in 0..10_u64 {
            service
                .broker
                .publish("", &queue, Message::json(&n).unwrap())
                .await
                .unwrap();
        }
        let lost = service
            .broker
            .publish("", &unique("nobody"), Message::bytes("x"))
            .await
            .unwrap_err();
        assert!(matches!(lost, AmqpError::Returned { .. }), "{lost}");
        let missing = service
            .broker
            .publish(&unique("no-such-exchange"), "k", Message::bytes("x"))
            .await
            .unwrap_err();
        assert!(matches!(missing, AmqpError::Refused { .. }), "{missing}");
        // The channel the broker closed is replaced: publishing goes on.
        service
            .broker
            .publish("", &queue, Message::json(&10_u64).unwrap())
            .await
            .unwrap();
    });
    nucleon_testkit::wait_until("11 messages consumed", Duration::from_secs(10), || {
        seen.lock().unwrap().len() == 11
    });
    let mut all = seen.lock().unwrap().clone();
    all.sort_unstable();
    assert_eq!(all, (0..=10).collect::<Vec<_>>());
    // Acks go out after their handlers end (coalesced at the end of a loop's turn).
    nucleon_testkit::wait_until("11 messages acked", Duration::from_secs(10), || {
        service.broker.stats().acked == 11
    });
    assert_eq!(service.broker.stats().returned, 1);
    service.stop().unwrap();
    rt.block_on(async {
        let raw = support::raw(&url).await;
        support::delete_queues(&raw, &support::consumer_queues(&queue)).await;
    });
}

#[derive(Debug)]
struct Negative(i64);

impl std::fmt::Display for Negative {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} is negative", self.0)
    }
}

async fn square_root(Msg(n): Msg<i64>) -> Result<f64, Negative> {
    if n < 0 {
        return Err(Negative(n));
    }
    Ok((n as f64).sqrt())
}

#[test]
fn rpc_round_trip_remote_error_and_nobody_serving() {
    let Some(url) = support::url() else { return };
    let name = unique("sqrt");
    let slow = unique("slow");
    let amqp = Amqp::new()
        .rpc(&name, square_root)
        .rpc(&slow, |Msg(ms): Msg<u64>| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok::<_, std::convert::Infallible>(ms)
        });
    let service = Service::start("rpc-basics", &url, "", 2, amqp);
    let rt = support::current_thread();
    rt.block_on(async {
        let broker = &service.broker;
        let root: f64 = broker.call(&name, &16).await.unwrap();
        assert_eq!(root, 4.0);
        let error = broker.call::<f64, _>(&name, &-4).await.unwrap_err();
        match &error {
            AmqpError::Remote { kind, message, .. } => {
                assert_eq!(kind, "Negative");
                assert_eq!(message, "-4 is negative");
            }
            other => panic!("{other}"),
        }
        let undecodable = broker.call::<f64, _>(&name, &"four").await.unwrap_err();
        assert!(
            matches!(&undecodable, AmqpError::Remote { kind, .. } if kind == "Decode"),
            "{undecodable}"
        );
        let nobody = broker
            .call::<f64, _>(&unique("nobody"), &1)
            .timeout(Duration::from_secs(2))
            .await
            .unwrap_err();
        assert!(matches!(nobody, AmqpError::Returned { .. }), "{nobody}");
        let late = broker
            .call::<u64, _>(&slow, &2_000)
            .timeout(Duration::from_millis(200))
            .await
            .unwrap_err();
        assert!(matches!(late, AmqpError::Timeout { .. }), "{late}");
        assert!(
            late.to_string().contains(&slow),
            "names the procedure: {late}"
        );
        // The late reply, when it comes, finds nobody waiting and is dropped; the next
        // call gets its own.
        let quick: u64 = broker.call(&slow, &1).await.unwrap();
        assert_eq!(quick, 1);
    });
    service.stop().unwrap();
}

#[test]
fn a_subscription_gives_messages_to_ack_or_reject() {
    let Some(url) = support::url() else { return };
    let queue = unique("subscription");
    let service = Service::start(
        "subscriber",
        &url,
        "",
        1,
        Amqp::new().declare(nucleon_amqp::Queue::durable(queue.clone())),
    );
    let rt = support::current_thread();
    rt.block_on(async {
        let broker = &service.broker;
        let missing = broker.subscribe(&unique("missing"), 1).await.unwrap_err();
        assert!(matches!(missing, AmqpError::Refused { .. }), "{missing}");
        let mut messages = broker.subscribe(&queue, 2).await.unwrap();
        for n in 0..3_u32 {
            broker
                .publish("", &queue, Message::json(&n).unwrap())
                .await
                .unwrap();
        }
        let mut acked = Vec::new();
        let mut rejected_once = false;
        while acked.len() < 3 {
            let message = messages.next().await.unwrap();
            let n: u32 = serde_json::from_slice(message.body()).unwrap();
            if n == 1 && !rejected_once {
                rejected_once = true;
                message.reject(true).await.unwrap();
                continue;
            }
            if n == 1 {
                assert!(
                    message.redelivered(),
                    "a requeued message comes back marked"
                );
            }
            acked.push(n);
            message.ack().await.unwrap();
        }
        acked.sort_unstable();
        assert_eq!(acked, [0, 1, 2]);
        messages.cancel().await;
        let raw = support::raw(&url).await;
        support::delete_queues(&raw, std::slice::from_ref(&queue)).await;
    });
    service.stop().unwrap();
}
