//! The broker link's metrics (names in [`nucleon_runtime::metrics`]): the process's
//! counters ([`crate::BrokerStats`]) read when exported, and per consumer on each
//! worker, deliveries handled by outcome and the handlers' times.

use std::rc::Rc;
use std::time::Instant;

use nucleon_runtime::metrics::{
    AMQP_CONNECTED, AMQP_HANDLED, AMQP_HANDLER_DURATION, AMQP_PREFIX, AMQP_UNCONFIRMED,
    CollectorGuard, LocalCounter, LocalHistogram, register_collector,
};

use crate::broker::{Broker, LinkStatus};
use crate::handler::Outcome;

/// Sets the link's counters and gauges from `broker`'s figures at each collection,
/// until dropped.
pub(crate) fn watch_broker(broker: &Broker) -> CollectorGuard {
    let counter = |name: &str| metrics::counter!(format!("{AMQP_PREFIX}{name}_total"));
    let counters = [
        counter("published"),
        counter("confirmed"),
        counter("returned"),
        counter("nacked"),
        counter("republished"),
        counter("reconnects"),
        counter("consumed"),
        counter("acked"),
        counter("requeued"),
        counter("retried"),
        counter("dead_lettered"),
    ];
    let unconfirmed = metrics::gauge!(AMQP_UNCONFIRMED);
    let connected = metrics::gauge!(AMQP_CONNECTED);
    let broker = broker.clone();
    register_collector(move || {
        let s = broker.stats();
        let values = [
            s.published,
            s.confirmed,
            s.returned,
            s.nacked,
            s.republished,
            s.reconnects,
            s.consumed,
            s.acked,
            s.requeued,
            s.retried,
            s.dead_lettered,
        ];
        for (counter, value) in counters.iter().zip(values) {
            counter.absolute(value);
        }
        unconfirmed.set(s.unconfirmed as f64);
        let up = matches!(
            broker.status(),
            LinkStatus::Connected | LinkStatus::Blocked(_)
        );
        connected.set(if up { 1.0 } else { 0.0 });
    })
}

/// One consumer's series on its worker.
pub(crate) struct QueueMetrics {
    /// By outcome: done, failed, rejected, panicked.
    handled: [LocalCounter; 4],
    duration: LocalHistogram,
}

impl QueueMetrics {
    /// The series of `queue` on this worker; `None` when metrics are off.
    pub(crate) fn for_queue(queue: &str) -> Option<Rc<Self>> {
        nucleon_runtime::metrics::enabled().then(|| {
            Rc::new(QueueMetrics {
                handled: ["done", "failed", "rejected", "panicked"].map(|outcome| {
                    LocalCounter::new(metrics::counter!(
                        AMQP_HANDLED, "queue" => queue.to_owned(), "outcome" => outcome
                    ))
                }),
                duration: LocalHistogram::new(metrics::histogram!(
                    AMQP_HANDLER_DURATION, "queue" => queue.to_owned()
                )),
            })
        })
    }

    /// A handler started at `since` ended with `outcome`.
    pub(crate) fn handled(&self, since: Instant, outcome: &Outcome) {
        self.duration.record(since.elapsed().as_secs_f64());
        let index = match outcome {
            Outcome::Done(_) => 0,
            Outcome::Failed { .. } => 1,
            Outcome::Rejected(_) => 2,
            Outcome::Panicked(_) => 3,
        };
        self.handled[index].increment(1);
    }
}
