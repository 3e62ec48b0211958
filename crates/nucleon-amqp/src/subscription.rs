//! `Subscription`: a queue's messages as a stream the caller pulls, acking or
//! rejecting each itself, for code that wants the loop in its own hands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions,
};
use lapin::types::FieldTable;
use lapin::{Acker, Channel};

use crate::broker::Broker;
use crate::delivery::{Delivery, Received};
use crate::error::{AmqpError, reason};
use crate::link::Link;

/// A subscription to a queue ([`Broker::subscribe`]): [`Subscription::next`] gives the
/// next message, which the caller acks or rejects. At most `prefetch` messages are
/// unacked at once. When the link drops, the subscription subscribes again on the next
/// link by itself; the messages not acked by then are delivered again (at least once).
///
/// ```no_run
/// # async fn f(broker: nucleon_amqp::Broker) -> Result<(), nucleon_amqp::AmqpError> {
/// let mut orders = broker.subscribe("orders", 10).await?;
/// loop {
///     let message = orders.next().await?;
///     if message.body().is_empty() {
///         message.reject(false).await?; // dropped (or dead-lettered by the queue)
///     } else {
///         message.ack().await?;
///     }
/// }
/// # }
/// ```
pub struct Subscription {
    broker: Broker,
    queue: Arc<str>,
    prefetch: u16,
    current: Option<(Arc<Link>, Channel, lapin::Consumer)>,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("queue", &self.queue)
            .field("prefetch", &self.prefetch)
            .finish_non_exhaustive()
    }
}

/// A message of a [`Subscription`], to ack or reject (dropped without either, it goes
/// back to the queue when the subscription's channel closes).
#[derive(Debug)]
pub struct Incoming {
    delivery: Delivery,
    acker: Acker,
}

impl std::ops::Deref for Incoming {
    type Target = Delivery;

    fn deref(&self) -> &Delivery {
        &self.delivery
    }
}

impl Incoming {
    /// The message.
    pub fn delivery(&self) -> &Delivery {
        &self.delivery
    }

    /// Acknowledges it: the broker forgets it.
    ///
    /// # Errors
    /// [`AmqpError::ConnectionLost`]: its link dropped, and it will be delivered again.
    pub async fn ack(self) -> Result<(), AmqpError> {
        let done = self.acker.ack(BasicAckOptions::default()).await;
        self.settled(done, "an ack")
    }

    /// Rejects it: back to the queue with `requeue`, else dropped (or dead-lettered,
    /// for a queue declared with a dead-letter exchange).
    ///
    /// # Errors
    /// [`AmqpError::ConnectionLost`]: its link dropped, and it will be delivered again.
    pub async fn reject(self, requeue: bool) -> Result<(), AmqpError> {
        let done = self.acker.reject(BasicRejectOptions { requeue }).await;
        self.settled(done, "a reject")
    }

    fn settled(&self, done: lapin::Result<bool>, what: &str) -> Result<(), AmqpError> {
        match done {
            Ok(true) => Ok(()),
            _ => Err(AmqpError::ConnectionLost {
                what: format!("{what} of a message from `{}`", self.delivery.queue()),
            }),
        }
    }
}

impl Broker {
    /// Subscribes to `queue` (which must exist) with at most `prefetch` messages unacked.
    ///
    /// # Errors
    /// [`AmqpError::Refused`] when the queue does not exist; [`AmqpError::Unreachable`]
    /// when no link came up within `publish_timeout`.
    pub async fn subscribe(&self, queue: &str, prefetch: u16) -> Result<Subscription, AmqpError> {
        let mut subscription = Subscription {
            broker: self.clone(),
            queue: queue.into(),
            prefetch: prefetch.max(1),
            current: None,
        };
        let deadline = Instant::now() + self.inner.config.publish_timeout;
        subscription.resubscribe(deadline, None).await?;
        Ok(subscription)
    }
}

impl Subscription {
    /// The next message; waits for one (and for the link, while it is down).
    ///
    /// # Errors
    /// [`AmqpError::Refused`] when the broker ended the subscription (its queue was
    /// deleted); [`AmqpError::Closing`] once the service stops.
    pub async fn next(&mut self) -> Result<Incoming, AmqpError> {
        loop {
            let Some((link, _, consumer)) = &mut self.current else {
                let far = Instant::now() + Duration::from_secs(3600);
                self.resubscribe(far, None).await?;
                continue;
            };
            match consumer.next().await {
                Some(Ok(delivery)) => {
                    let acker = delivery.acker.clone();
                    let received = Received {
                        queue: Arc::clone(&self.queue),
                        exchange: delivery.exchange.to_string(),
                        routing_key: delivery.routing_key.to_string(),
                        redelivered: delivery.redelivered,
                        properties: delivery.properties,
                        body: delivery.data,
                    };
                    return Ok(Incoming {
                        delivery: Delivery(Arc::new(received)),
                        acker,
                    });
                }
                _ if !link.is_up() => {
                    let stale = link.generation;
                    self.current = None;
                    let far = Instant::now() + Duration::from_secs(3600);
                    self.resubscribe(far, Some(stale)).await?;
                }
                _ => {
                    self.current = None;
                    return Err(AmqpError::Refused {
                        what: format!("the subscription to `{}`", self.queue),
                        reason: "the broker ended it (was the queue deleted?)".into(),
                    });
                }
            }
        }
    }

    /// Ends the subscription: unacked messages go back to the queue.
    pub async fn cancel(mut self) {
        if let Some((_, channel, consumer)) = self.current.take() {
            let _ = channel
                .basic_cancel(consumer.tag(), BasicCancelOptions::default())
                .await;
            let _ = channel.close(200, "subscription cancelled".into()).await;
        }
    }

    async fn resubscribe(
        &mut self,
        deadline: Instant,
        mut stale: Option<u64>,
    ) -> Result<(), AmqpError> {
        let what = || format!("the subscription to `{}`", self.queue);
        loop {
            let link = self.broker.link(deadline, stale, &what).await?;
            let subscribed = async {
                let channel = link.connection.create_channel().await?;
                channel
                    .basic_qos(self.prefetch, BasicQosOptions::default())
                    .await?;
                let consumer = channel
                    .basic_consume(
                        (*self.queue).into(),
                        "".into(),
                        BasicConsumeOptions::default(),
                        FieldTable::default(),
                    )
                    .await?;
                Ok::<_, lapin::Error>((channel, consumer))
            };
            match subscribed.await {
                Ok((channel, consumer)) => {
                    self.current = Some((link, channel, consumer));
                    return Ok(());
                }
                Err(error) if link.is_up() => {
                    return Err(AmqpError::Refused {
                        what: what(),
                        reason: reason(&error),
                    });
                }
                Err(_) => stale = Some(link.generation), // it dropped meanwhile: the next one
            }
        }
    }
}
