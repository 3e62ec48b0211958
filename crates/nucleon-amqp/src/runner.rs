//! `ConsumerAdapter`: a worker's consumers: a channel each, deliveries handled as
//! tasks, each settled (ack, retry, dead letter, reply) by its outcome.

use std::cell::{Cell, RefCell};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{FutureExt, StreamExt};
use lapin::Channel;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use nucleon_runtime::{Adapter, AdapterContext, BoxError, Drain, Health, TaskLabel};
use tokio::sync::Notify;
use tracing::Instrument;

use crate::acks::{Acks, Ticket};
use crate::broker::Broker;
use crate::consumer::{ConsumerSpec, OnError};
use crate::delivery::{ATTEMPTS_HEADER, Delivery, ERROR_HEADER, QUEUE_HEADER, Received};
use crate::handler::Outcome;
use crate::message::{JSON, Message};
use crate::metrics::QueueMetrics;
use crate::rpc::{RemoteError, Reply};

/// How long a consumer the broker refused (its queue is missing) waits to try again.
const REFUSED_RETRY: Duration = Duration::from_secs(2);

/// The consumers of one worker: add it per worker, after the process's
/// [`AmqpAdapter`](crate::AmqpAdapter) (the umbrella's `App::consume` does both).
pub struct ConsumerAdapter {
    specs: Arc<[Arc<ConsumerSpec>]>,
    runners: Vec<Rc<Runner>>,
}

impl std::fmt::Debug for ConsumerAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let queues: Vec<&str> = self.specs.iter().map(|s| &*s.queue).collect();
        f.debug_struct("ConsumerAdapter")
            .field("queues", &queues)
            .finish()
    }
}

impl ConsumerAdapter {
    pub(crate) fn new(specs: Arc<[Arc<ConsumerSpec>]>) -> Self {
        Self {
            specs,
            runners: Vec::new(),
        }
    }
}

/// One consumer on one worker.
struct Runner {
    spec: Arc<ConsumerSpec>,
    /// Set at the drain: no new deliveries are handled.
    cancelled: Cell<bool>,
    wake: Notify,
    /// The channel and consumer tag while consuming.
    consuming: RefCell<Option<(Channel, String)>>,
    /// The consumer the drain cancelled, kept until the stop: lapin closes its channel
    /// when it drops, and the handlers in flight still ack on that channel.
    cancelled_consumer: RefCell<Option<lapin::Consumer>>,
}

impl Adapter for ConsumerAdapter {
    type Handle = ();

    fn name(&self) -> &str {
        "amqp-consumers"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<(), BoxError> {
        let broker = Broker::current().ok_or(
            "no AMQP connection for the consumers: add the AmqpAdapter per process (App::consume does)",
        )?;
        let worker = ctx.worker().unwrap_or(0);
        for spec in self.specs.iter() {
            let runner = Rc::new(Runner {
                spec: Arc::clone(spec),
                cancelled: Cell::new(false),
                wake: Notify::new(),
                consuming: RefCell::new(None),
                cancelled_consumer: RefCell::new(None),
            });
            self.runners.push(Rc::clone(&runner));
            let (broker, drain) = (broker.clone(), ctx.drain().clone());
            let label = TaskLabel::from(format!("amqp consumer of {}", spec.queue));
            nucleon_runtime::spawn(label, consume(runner, broker, drain, worker));
        }
        Ok(())
    }

    /// Degraded while a consumer is not consuming (the link is down, its queue is
    /// missing).
    async fn health(&self) -> Health {
        let idle: Vec<&str> = self
            .runners
            .iter()
            .filter(|r| r.consuming.borrow().is_none() && !r.cancelled.get())
            .map(|r| &*r.spec.queue)
            .collect();
        if idle.is_empty() {
            Health::Healthy
        } else {
            Health::Degraded(format!("not consuming {}", idle.join(", ")))
        }
    }

    /// Cancels every consumer: the broker sends no more; deliveries it sent already and
    /// no handler started go back to the queue.
    async fn drain(&mut self, deadline: Instant) {
        for runner in &self.runners {
            runner.cancelled.set(true);
            runner.wake.notify_waiters();
            let consuming = runner.consuming.borrow().clone();
            if let Some((channel, tag)) = consuming {
                let cancel =
                    channel.basic_cancel(tag.as_str().into(), BasicCancelOptions::default());
                let _ = tokio::time::timeout_at(deadline.into(), cancel).await;
            }
        }
    }

    /// Closes the channels (handlers in flight have finished: the drain waited for
    /// them). Anything still unacked returns to its queue.
    async fn stop(&mut self, deadline: Instant) -> Result<(), BoxError> {
        for runner in self.runners.drain(..) {
            runner.cancelled.set(true);
            runner.wake.notify_waiters();
            let consuming = runner.consuming.borrow_mut().take();
            if let Some((channel, _)) = consuming {
                let close = channel.close(200, "consumer stopping".into());
                let _ = tokio::time::timeout_at(deadline.into(), close).await;
            }
            runner.cancelled_consumer.borrow_mut().take();
        }
        Ok(())
    }
}

/// Consumes until the drain: subscribes on every link the broker gives, hands each
/// delivery to a task.
async fn consume(runner: Rc<Runner>, broker: Broker, drain: Drain, worker: usize) {
    let spec = &runner.spec;
    let mut stale = None;
    while !runner.cancelled.get() {
        let what = || format!("the consumer of `{}`", spec.queue);
        let far = Instant::now() + Duration::from_secs(3600);
        let link = tokio::select! {
            link = broker.link(far, stale, &what) => match link {
                Ok(link) => link,
                Err(_) => continue,
            },
            () = runner.wake.notified() => continue,
        };
        let subscribed = async {
            let channel = link.connection.create_channel().await?;
            channel
                .basic_qos(spec.concurrency, BasicQosOptions::default())
                .await?;
            let tag = format!(
                "{}.{worker}.{}.{}",
                broker.service(),
                spec.queue,
                link.generation
            );
            let consumer = channel
                .basic_consume(
                    (*spec.queue).into(),
                    tag.as_str().into(),
                    BasicConsumeOptions::default(),
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, lapin::Error>((channel, tag, consumer))
        };
        let (channel, tag, mut consumer) = match subscribed.await {
            Ok(subscribed) => subscribed,
            Err(error) => {
                if link.is_up() {
                    tracing::error!(target: "nucleon::amqp", queue = &*spec.queue, "the broker refused the consumer: {}; trying again in {REFUSED_RETRY:?}", crate::error::reason(&error));
                    tokio::select! {
                        () = tokio::time::sleep(REFUSED_RETRY) => {}
                        () = runner.wake.notified() => {}
                    }
                } else {
                    stale = Some(link.generation);
                }
                continue;
            }
        };
        *runner.consuming.borrow_mut() = Some((channel, tag));
        let acks = Acks::new(broker.clone());
        let queue_metrics = QueueMetrics::for_queue(&spec.queue);
        tracing::debug!(target: "nucleon::amqp", queue = &*spec.queue, worker, prefetch = spec.concurrency, "consuming");
        while let Some(delivery) = consumer.next().await {
            let Ok(delivery) = delivery else {
                break;
            };
            let (tag, acker) = (delivery.delivery_tag, delivery.acker.clone());
            if runner.cancelled.get() {
                // Sent before the cancel reached the broker: back to the queue, untouched.
                acks.ticket(tag, acker, None).requeue().await;
                continue;
            }
            let trace = crate::trace::received(delivery.properties.headers().as_ref());
            let delivery = Delivery(Arc::new(Received {
                queue: Arc::clone(&spec.queue),
                exchange: delivery.exchange.to_string(),
                routing_key: delivery.routing_key.to_string(),
                redelivered: delivery.redelivered,
                properties: delivery.properties,
                body: delivery.data,
            }));
            broker.inner.stats.consumed.add(1);
            let ticket = acks.ticket(tag, acker, Some(drain.guard()));
            let (span, trace) = if tracing::level_enabled!(tracing::Level::DEBUG) {
                delivery_span(spec, &delivery, trace)
            } else {
                (tracing::Span::none(), trace)
            };
            let label = TaskLabel::from(Arc::clone(&spec.label));
            let (spec, broker) = (Arc::clone(spec), broker.clone());
            let queue_metrics = queue_metrics.clone();
            // In the context the message carries (or one started if the handler
            // forwards one): its calls, its publishes and its reply continue the trace.
            let handled = nucleon_runtime::trace::scope(trace, async move {
                let started = Instant::now();
                // The call itself is inside what is caught: a handler (or an extractor)
                // may panic before it returns its future, and the delivery must be
                // settled all the same (unsettled, it holds a prefetch slot for good).
                let outcome = AssertUnwindSafe(async { spec.handler.call(&delivery).await })
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|panic| {
                        Outcome::Panicked(nucleon_runtime::task::panic_message(&*panic))
                    });
                if let Some(metrics) = &queue_metrics {
                    metrics.handled(started, &outcome);
                }
                settle(&spec, &broker, &delivery, ticket, outcome).await;
            });
            nucleon_runtime::spawn(label, handled.instrument(span));
        }
        if runner.cancelled.get() {
            // The drain's cancel: the channel stays open for the acks of the handlers in
            // flight; the stop closes it.
            *runner.cancelled_consumer.borrow_mut() = Some(consumer);
            return;
        }
        runner.consuming.borrow_mut().take();
        if !link.is_up() {
            stale = Some(link.generation);
        } else if !runner.cancelled.get() {
            // The broker cancelled us (the queue was deleted): subscribe again shortly.
            tracing::warn!(target: "nucleon::amqp", queue = &*spec.queue, "the broker ended the consumer; subscribing again in {REFUSED_RETRY:?}");
            tokio::time::sleep(REFUSED_RETRY).await;
        }
    }
}

/// A delivery's tracing span (at DEBUG: made only when that level is on, as the HTTP
/// request's), with the trace id the message came with and the fields OpenTelemetry's
/// messaging conventions name; and the context the handler runs in, with the exported
/// span's ids when an exporter of spans is installed
/// ([`nucleon_runtime::trace::bind_span`]).
#[cold]
#[inline(never)]
fn delivery_span(
    spec: &ConsumerSpec,
    delivery: &Delivery,
    trace: Option<nucleon_runtime::trace::TraceContext>,
) -> (tracing::Span, Option<nucleon_runtime::trace::TraceContext>) {
    let span = tracing::debug_span!(
        target: "nucleon::amqp",
        "delivery",
        queue = &*spec.queue,
        id = delivery.message_id(),
        trace_id = trace.as_ref().map(|trace| tracing::field::display(trace.trace_id())),
        otel.name = %format!("process {}", spec.queue),
        otel.kind = "consumer",
        messaging.system = "rabbitmq",
        messaging.operation.name = "process",
        messaging.destination.name = &*spec.queue,
    );
    let trace = nucleon_runtime::trace::bind_span(&span, trace);
    (span, trace)
}

/// Acks, replies, retries, requeues or dead-letters a delivery by its outcome.
async fn settle(
    spec: &ConsumerSpec,
    broker: &Broker,
    delivery: &Delivery,
    ticket: Ticket,
    outcome: Outcome,
) {
    let reply_to = delivery
        .properties()
        .reply_to()
        .as_ref()
        .map(|to| to.to_string());
    if let Some(to) = reply_to.filter(|_| spec.replies) {
        reply(broker, delivery, &to, outcome).await;
        ticket.ack();
        return;
    }
    let reason = match outcome {
        Outcome::Done(_) => {
            ticket.ack();
            return;
        }
        Outcome::Rejected(rejection) => {
            tracing::warn!(target: "nucleon::amqp", queue = &*spec.queue, id = delivery.message_id(), "undecodable message, dead-lettered: {}", rejection.reason);
            return dead_letter(
                spec,
                broker,
                delivery,
                ticket,
                &format!("undecodable: {}", rejection.reason),
            )
            .await;
        }
        Outcome::Failed { kind, message } => format!("{kind}: {message}"),
        Outcome::Panicked(message) => format!("the handler panicked: {message}"),
    };
    match &spec.on_error {
        OnError::DeadLetter => {
            tracing::warn!(target: "nucleon::amqp", queue = &*spec.queue, id = delivery.message_id(), "handler failed, dead-lettered: {reason}");
            dead_letter(spec, broker, delivery, ticket, &reason).await;
        }
        OnError::Requeue if delivery.redelivered() => {
            tracing::warn!(target: "nucleon::amqp", queue = &*spec.queue, id = delivery.message_id(), "handler failed again after a requeue, dead-lettered: {reason}");
            dead_letter(
                spec,
                broker,
                delivery,
                ticket,
                &format!("failed again after a requeue: {reason}"),
            )
            .await;
        }
        OnError::Requeue => {
            tracing::warn!(target: "nucleon::amqp", queue = &*spec.queue, id = delivery.message_id(), "handler failed, requeued: {reason}");
            ticket.requeue().await;
        }
        OnError::Retry(delays) => {
            let attempts = delivery.attempts() as usize;
            if attempts >= delays.len() {
                tracing::warn!(target: "nucleon::amqp", queue = &*spec.queue, id = delivery.message_id(), "handler failed {} times, dead-lettered: {reason}", attempts + 1);
                let why = format!("failed {} times; last: {reason}", attempts + 1);
                return dead_letter(spec, broker, delivery, ticket, &why).await;
            }
            tracing::warn!(target: "nucleon::amqp", queue = &*spec.queue, id = delivery.message_id(), "handler failed, retried in {:?}: {reason}", delays[attempts]);
            let retry = forwarded(delivery, &reason).header(ATTEMPTS_HEADER, (attempts + 1) as i64);
            match broker
                .publish("", &spec.retry_queue(delays[attempts]), retry)
                .await
            {
                Ok(()) => {
                    broker.inner.stats.retried.add(1);
                    ticket.ack();
                }
                Err(error) => {
                    tracing::error!(target: "nucleon::amqp", queue = &*spec.queue, "could not schedule a retry ({error}); requeued");
                    ticket.requeue().await;
                }
            }
        }
    }
}

/// A copy of the delivery to publish elsewhere, with the error that sent it.
fn forwarded(delivery: &Delivery, reason: &str) -> Message {
    Message::forwarded(delivery.body().to_vec(), delivery.properties())
        .header(ERROR_HEADER, reason)
        .header(QUEUE_HEADER, delivery.queue())
}

/// Sends the delivery to the dead-letter exchange, then acks it; requeues it if the
/// broker did not take the dead letter (nothing is lost).
async fn dead_letter(
    spec: &ConsumerSpec,
    broker: &Broker,
    delivery: &Delivery,
    ticket: Ticket,
    reason: &str,
) {
    let exchange = &broker.config().dead_letter_exchange;
    match broker
        .publish(exchange, &spec.queue, forwarded(delivery, reason))
        .await
    {
        Ok(()) => {
            broker.inner.stats.dead_lettered.add(1);
            ticket.ack();
        }
        Err(error) => {
            tracing::error!(target: "nucleon::amqp", queue = &*spec.queue, "could not dead-letter a message ({error}); requeued");
            ticket.requeue().await;
        }
    }
}

/// Answers an RPC request with its outcome.
async fn reply(broker: &Broker, delivery: &Delivery, to: &str, outcome: Outcome) {
    let body = match outcome {
        Outcome::Done(Some(json)) => [&b"{\"ok\":"[..], &json, b"}"].concat(),
        Outcome::Done(None) => b"{\"ok\":null}".to_vec(),
        Outcome::Failed { kind, message } => error_reply(kind, message),
        Outcome::Rejected(rejection) => error_reply("Decode".into(), rejection.reason),
        Outcome::Panicked(message) => error_reply("Panic".into(), message),
    };
    let mut message = Message::bytes(body)
        .content_type(JSON)
        .transient()
        .mandatory(false);
    if let Some(id) = delivery.correlation_id() {
        message = message.correlation_id(id);
    }
    if let Err(error) = broker.publish("", to, message).await {
        // The caller may be gone (it timed out, its link dropped): it has its error.
        tracing::debug!(target: "nucleon::amqp", queue = delivery.queue(), "reply not delivered: {error}");
    }
}

fn error_reply(kind: String, message: String) -> Vec<u8> {
    serde_json::to_vec(&Reply::<()>::Error(RemoteError { kind, message }))
        .unwrap_or_else(|_| b"{\"error\":{\"kind\":\"Encode\",\"message\":\"\"}}".to_vec())
}
