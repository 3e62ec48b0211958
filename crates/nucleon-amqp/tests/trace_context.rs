//! W3C trace context across the broker, against the real one: a publish made inside a
//! trace reaches its consumer in the same trace (the publisher's span as parent), and
//! what the consumer publishes continues it; an RPC call takes it to the procedure and
//! its result back; a task handler runs in its submitter's trace; a message without
//! one gets a trace started only when its handler asks for one.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lapin::types::AMQPValue;
use nucleon_amqp::{Amqp, Broker, Delivery, Message, Msg};
use nucleon_runtime::Dep;
use nucleon_runtime::trace::{self, TraceContext};
use support::{Service, unique};
use tracing_subscriber::layer::SubscriberExt;

const PATIENCE: Duration = Duration::from_secs(15);
const SENT: &[u8] = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// What a handler saw: the context before asking (`peek`), the one it got (`current`),
/// and the message's own `traceparent` header.
#[derive(Debug, Clone)]
struct Seen {
    peeked: Option<TraceContext>,
    current: TraceContext,
    header: Option<String>,
}

fn seen_now(delivery: &Delivery) -> Seen {
    Seen {
        peeked: trace::peek(),
        current: trace::current().expect("a handler runs in a trace scope"),
        header: delivery.header("traceparent"),
    }
}

/// The fields of the `delivery` spans made in this test binary (the handlers run on
/// the service's workers: the subscriber is the global one).
fn delivery_spans() -> &'static Mutex<Vec<BTreeMap<String, String>>> {
    struct Spans;

    struct Fields<'a>(&'a mut BTreeMap<String, String>);

    impl tracing::field::Visit for Fields<'_> {
        fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
            self.0.insert(field.name().to_owned(), format!("{value:?}"));
        }

        fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
            self.0.insert(field.name().to_owned(), value.to_owned());
        }
    }

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Spans {
        fn on_new_span(
            &self,
            attrs: &tracing::span::Attributes<'_>,
            _id: &tracing::span::Id,
            _ctx: tracing_subscriber::layer::Context<'_, S>,
        ) {
            if attrs.metadata().name() == "delivery" {
                let mut fields = BTreeMap::new();
                attrs.record(&mut Fields(&mut fields));
                delivery_spans().lock().unwrap().push(fields);
            }
        }
    }

    static SPANS: OnceLock<Mutex<Vec<BTreeMap<String, String>>>> = OnceLock::new();
    SPANS.get_or_init(|| {
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Spans))
            .expect("the only subscriber of this test binary");
        Mutex::default()
    })
}

/// The received context, as the HTTP front end would have scoped it.
fn received() -> TraceContext {
    TraceContext::received(SENT, Some(b"rojo=00f067aa0ba902b7".as_slice())).unwrap()
}

#[test]
fn a_publish_in_a_trace_reaches_the_consumer_in_it_and_its_own_publish_continues_it() {
    let Some(url) = support::url() else { return };
    delivery_spans();
    let (first, second) = (unique("trace-first"), unique("trace-second"));
    let mut queues = support::consumer_queues(&first);
    queues.push(second.clone());
    let _cleanup = support::Cleanup::new(&url, queues);
    let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&seen);
    let onward = second.clone();
    let handler = move |delivery: Delivery, Dep(broker): Dep<Broker>| {
        let seen = seen_now(&delivery);
        log.lock().unwrap().push(seen);
        let onward = onward.clone();
        // After an await too, the handler's publish is in the delivery's context.
        async move {
            tokio::task::yield_now().await;
            broker
                .publish("", &onward, Message::bytes(delivery.body().to_vec()))
                .await
        }
    };
    let amqp = Amqp::new()
        .declare(nucleon_amqp::Queue::durable(&second))
        .consume(&first, handler);
    let service = Service::start("trace-consumer", &url, "", 1, amqp);
    let here = received();
    support::current_thread().block_on(async {
        // In a trace (as inside an HTTP handler), then outside any.
        trace::scope(
            here.clone(),
            service.broker.publish("", &first, Message::bytes("traced")),
        )
        .await
        .unwrap();
        service
            .broker
            .publish("", &first, Message::bytes("plain"))
            .await
            .unwrap();
    });
    nucleon_testkit::wait_until("both handled", PATIENCE, || {
        seen.lock().unwrap().len() == 2 && service.broker.stats().acked == 2
    });
    service.stop().unwrap();
    let onward = support::current_thread().block_on(async {
        let raw = support::raw(&url).await;
        support::drain_queue(&raw, &second).await
    });

    let seen = seen.lock().unwrap().clone();
    let traced = seen
        .iter()
        .find(|s| s.header.is_some())
        .expect("the traced one");
    assert_eq!(
        traced.header.as_deref(),
        Some(here.traceparent().as_str()),
        "the publisher's span as the message's parent"
    );
    assert_eq!(
        traced.peeked.as_ref(),
        Some(&traced.current),
        "there already"
    );
    assert_eq!(traced.current.trace_id().to_string(), TRACE_ID);
    assert_eq!(traced.current.parent_id(), Some(here.span_id()));
    assert_ne!(traced.current.span_id(), here.span_id());
    assert_eq!(traced.current.tracestate(), Some("rojo=00f067aa0ba902b7"));

    let plain = seen
        .iter()
        .find(|s| s.header.is_none())
        .expect("the plain one");
    assert!(plain.peeked.is_none(), "none until asked for: {plain:?}");
    assert_eq!(plain.current.parent_id(), None, "a trace started here");
    assert_ne!(plain.current.trace_id().to_string(), TRACE_ID);

    // The traced delivery's span carries its trace id.
    let spans = delivery_spans().lock().unwrap().clone();
    assert!(
        spans.iter().any(|span| span.get("queue") == Some(&first)
            && span.get("trace_id").map(String::as_str) == Some(TRACE_ID)),
        "{spans:#?}"
    );

    // What each handler published carries its own span as the parent.
    assert_eq!(onward.len(), 2, "{onward:?}");
    for message in &onward {
        let header = match message
            .properties
            .headers()
            .as_ref()
            .unwrap()
            .inner()
            .get("traceparent")
        {
            Some(AMQPValue::LongString(text)) => {
                String::from_utf8_lossy(text.as_bytes()).into_owned()
            }
            other => panic!("no traceparent: {other:?}"),
        };
        let by = if &*message.data == b"traced" {
            traced
        } else {
            plain
        };
        assert_eq!(header, by.current.traceparent().as_str());
    }
}

/// A procedure's answer: the trace it ran in.
async fn where_am_i(Msg(()): Msg<()>) -> Result<(String, Option<String>, bool), std::io::Error> {
    let peeked = trace::peek().is_some();
    let here = trace::current().expect("in scope");
    Ok((
        here.trace_id().to_string(),
        here.parent_id().map(|id| id.to_string()),
        peeked,
    ))
}

#[test]
fn rpc_calls_and_tasks_take_the_trace_to_their_handler() {
    let Some(url) = support::url() else { return };
    let (procedure, task) = (unique("trace-rpc"), unique("trace-task"));
    let mut queues = support::consumer_queues(&format!("rpc.{procedure}"));
    queues.extend(support::consumer_queues(&format!("tasks.{task}")));
    let _cleanup = support::Cleanup::new(&url, queues);
    let tasks: Arc<Mutex<Vec<Seen>>> = Arc::default();
    let log = Arc::clone(&tasks);
    let amqp = Amqp::new()
        .rpc(&procedure, where_am_i)
        .task(&task, move |delivery: Delivery| {
            log.lock().unwrap().push(seen_now(&delivery));
            std::future::ready(())
        });
    let service = Service::start("trace-rpc", &url, "", 2, amqp);
    let here = received();
    let (traced, plain) = support::current_thread().block_on(async {
        let broker = &service.broker;
        let traced: (String, Option<String>, bool) =
            trace::scope(here.clone(), async { broker.call(&procedure, &()).await })
                .await
                .unwrap();
        let plain: (String, Option<String>, bool) = broker.call(&procedure, &()).await.unwrap();
        trace::scope(here.clone(), broker.submit(&task, &1))
            .await
            .unwrap();
        (traced, plain)
    });
    nucleon_testkit::wait_until("the task handled", PATIENCE, || {
        !tasks.lock().unwrap().is_empty()
    });
    service.stop().unwrap();

    // There and back: the procedure ran in the caller's trace, under the caller's span.
    assert_eq!(traced.0, TRACE_ID);
    assert_eq!(traced.1, Some(here.span_id().to_string()));
    assert!(traced.2, "received with the request");
    // Called outside any trace: a trace of its own, started when it asked.
    assert_ne!(plain.0, TRACE_ID);
    assert_eq!(plain.1, None);
    assert!(!plain.2);

    let task = tasks.lock().unwrap()[0].clone();
    assert_eq!(task.current.trace_id().to_string(), TRACE_ID);
    assert_eq!(task.current.parent_id(), Some(here.span_id()));
}
