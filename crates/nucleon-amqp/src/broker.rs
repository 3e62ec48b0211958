//! `Broker`: the handle to the process's AMQP connection: publish, declare, dispatch
//! events, submit tasks, call procedures, run transactions.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{BasicPublishOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Confirmation};
use serde::Serialize;
use tokio::sync::{Semaphore, watch};

use crate::config::AmqpConfig;
use crate::error::{AmqpError, is_link_error, reason};
use crate::link::{Link, LinkState};
use crate::message::Message;
use crate::topology::{Declaration, Exchange, Queue, Topology};

/// The process's connection to the broker, as a handle: clone it freely, use it from
/// any worker (`Dep<Broker>` in a handler, [`Broker::current`] elsewhere).
///
/// Every publish waits for the broker's confirm: when it returns `Ok`, the broker has
/// the message (on disk, for a persistent message to a durable queue). A link that drops
/// meanwhile is reconnected, and the message published again on the new link, so
/// delivery is at least once; its message id lets consumers de-duplicate.
///
/// ```no_run
/// use nucleon_amqp::{Broker, Message};
///
/// async fn order_placed(broker: &Broker, id: u64) -> Result<(), nucleon_amqp::AmqpError> {
///     broker.publish("orders", "order.placed", Message::json(&id)?).await
/// }
/// ```
#[derive(Clone)]
pub struct Broker {
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("broker", &self.inner.config.describe())
            .finish_non_exhaustive()
    }
}

/// What every clone of a [`Broker`] shares.
pub(crate) struct Inner {
    pub(crate) config: AmqpConfig,
    pub(crate) service: String,
    pub(crate) connection_name: String,
    pub(crate) workers: usize,
    pub(crate) topology: Topology,
    pub(crate) state: watch::Sender<LinkState>,
    /// `Some(reason)` while the broker blocks publishing (`connection.blocked`).
    pub(crate) blocked: watch::Sender<Option<String>>,
    /// Room for unconfirmed messages: publishers wait when it is empty.
    pub(crate) window: Semaphore,
    /// Taken by a declaration under way (they are rare, and one at a time).
    pub(crate) declaring: tokio::sync::Mutex<()>,
    pub(crate) stats: Counters,
}

/// Counters of what the connection did, since the start.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) published: Counter,
    pub(crate) confirmed: Counter,
    pub(crate) returned: Counter,
    pub(crate) nacked: Counter,
    pub(crate) republished: Counter,
    pub(crate) reconnects: Counter,
    pub(crate) consumed: Counter,
    pub(crate) acked: Counter,
    pub(crate) requeued: Counter,
    pub(crate) retried: Counter,
    pub(crate) dead_lettered: Counter,
}

/// One counter (relaxed: read for reports, never to decide).
#[derive(Debug, Default)]
pub(crate) struct Counter(AtomicU64);

impl Counter {
    pub(crate) fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A snapshot of the connection's counters ([`Broker::stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BrokerStats {
    /// Messages published (each counted once, however often it was sent again).
    pub published: u64,
    /// Publishes the broker confirmed.
    pub confirmed: u64,
    /// Mandatory messages returned (no queue took them).
    pub returned: u64,
    /// Messages the broker nacked.
    pub nacked: u64,
    /// Messages sent again after the link dropped before their confirm.
    pub republished: u64,
    /// Reconnections after a loss.
    pub reconnects: u64,
    /// Deliveries handed to consumers' handlers.
    pub consumed: u64,
    /// Deliveries acked after their handler succeeded (or answered an RPC).
    pub acked: u64,
    /// Deliveries put back in their queue (a failure under `OnError::Requeue`, the drain).
    pub requeued: u64,
    /// Deliveries sent to a delay queue to be tried again.
    pub retried: u64,
    /// Deliveries sent to the dead-letter exchange.
    pub dead_lettered: u64,
    /// Messages published and not yet confirmed, now.
    pub unconfirmed: u64,
}

/// Where the link stands, for health and operators ([`Broker::status`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum LinkStatus {
    /// Connected; publishing allowed.
    Connected,
    /// Connected, but the broker blocks publishing (`connection.blocked`, memory or
    /// disk alarm): publishers wait.
    Blocked(String),
    /// Not connected: reconnecting since `for_` ago, after `last_error`.
    Reconnecting {
        /// How long the link has been down.
        for_: Duration,
        /// Why the last attempt failed.
        last_error: Option<String>,
    },
    /// The service is stopping.
    Closed,
}

impl Broker {
    pub(crate) fn new(
        config: AmqpConfig,
        service: &str,
        workers: usize,
        topology: Topology,
    ) -> Self {
        let connection_name = config
            .connection_name
            .clone()
            .unwrap_or_else(|| format!("{service} (pid {})", std::process::id()));
        // The events exchange is always there: dispatching needs no set-up.
        topology.record(Exchange::topic(config.events_exchange.clone()).into());
        let window = Semaphore::new(config.window);
        Self {
            inner: Arc::new(Inner {
                service: service.to_owned(),
                connection_name,
                workers,
                topology,
                state: watch::Sender::new(LinkState::Down {
                    since: Instant::now(),
                    last_error: None,
                }),
                blocked: watch::Sender::new(None),
                window,
                declaring: tokio::sync::Mutex::new(()),
                stats: Counters::default(),
                config,
            }),
        }
    }

    /// The process's broker handle, where a Nucleon runtime with an AMQP connection
    /// runs (`None` elsewhere).
    pub fn current() -> Option<Self> {
        nucleon_runtime::handle::get::<Self>()
    }

    /// The connection's settings.
    pub fn config(&self) -> &AmqpConfig {
        &self.inner.config
    }

    /// The service's name (in event queues' names and consumer tags).
    pub fn service(&self) -> &str {
        &self.inner.service
    }

    /// Where the link stands.
    pub fn status(&self) -> LinkStatus {
        match &*self.inner.state.borrow() {
            LinkState::Up(_) => match &*self.inner.blocked.borrow() {
                Some(why) => LinkStatus::Blocked(why.clone()),
                None => LinkStatus::Connected,
            },
            LinkState::Down { since, last_error } => LinkStatus::Reconnecting {
                for_: since.elapsed(),
                last_error: last_error.as_ref().map(ToString::to_string),
            },
            LinkState::Closed => LinkStatus::Closed,
        }
    }

    /// The connection's counters.
    pub fn stats(&self) -> BrokerStats {
        let s = &self.inner.stats;
        let free = self.inner.window.available_permits();
        BrokerStats {
            published: s.published.get(),
            confirmed: s.confirmed.get(),
            returned: s.returned.get(),
            nacked: s.nacked.get(),
            republished: s.republished.get(),
            reconnects: s.reconnects.get(),
            consumed: s.consumed.get(),
            acked: s.acked.get(),
            requeued: s.requeued.get(),
            retried: s.retried.get(),
            dead_lettered: s.dead_lettered.get(),
            unconfirmed: self.inner.config.window.saturating_sub(free) as u64,
        }
    }

    /// Publishes `message` to `exchange` (`""`: the default exchange, which routes to
    /// the queue named by the routing key) and waits for the broker's confirm.
    ///
    /// The current trace context (`nucleon_runtime::trace::current`, as the publish
    /// is first polled) goes with it as `traceparent`/`tracestate` headers, unless
    /// the message has a `traceparent` of its own.
    ///
    /// Waits, within `amqp.publish_timeout`, while the link is down or blocked and while
    /// the window of unconfirmed messages is full; never blocks the loop.
    ///
    /// # Errors
    /// [`AmqpError::Returned`] for a mandatory message no queue took,
    /// [`AmqpError::Nacked`], [`AmqpError::Timeout`], [`AmqpError::Unreachable`] when the
    /// link stayed down, [`AmqpError::Refused`] when the broker refused it (no such
    /// exchange), [`AmqpError::Closing`] once the service stops.
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mut message: Message,
    ) -> Result<(), AmqpError> {
        message.add_trace_context();
        let settings = &self.inner.config;
        let deadline = Instant::now() + settings.publish_timeout;
        let what = || format!("publish to exchange `{exchange}` with routing key `{routing_key}`");
        let _room = tokio::time::timeout_at(deadline.into(), self.inner.window.acquire())
            .await
            .map_err(|_| AmqpError::Timeout {
                what: format!(
                    "{} (waiting for room in the window of unconfirmed messages)",
                    what()
                ),
                after: settings.publish_timeout,
            })?
            .map_err(|_| AmqpError::Closing { what: what() })?;
        let (body, properties, mandatory) = message.into_parts();
        let stats = &self.inner.stats;
        stats.published.add(1);
        let mut stale = None;
        let mut refusals = 0;
        loop {
            let link = self.link(deadline, stale, &what).await?;
            let sent = match link.publish_channel().await {
                Ok(channel) => {
                    let options = BasicPublishOptions {
                        mandatory,
                        immediate: false,
                    };
                    match channel
                        .basic_publish(
                            exchange.into(),
                            routing_key.into(),
                            options,
                            &body,
                            properties.clone(),
                        )
                        .await
                    {
                        Ok(confirm) => tokio::time::timeout_at(deadline.into(), confirm)
                            .await
                            .map_err(|_| AmqpError::Timeout {
                                what: format!("{} (waiting for the broker's confirm)", what()),
                                after: settings.publish_timeout,
                            })?,
                        Err(error) => Err(error),
                    }
                }
                Err(error) => Err(error),
            };
            match sent {
                Ok(Confirmation::Ack(None) | Confirmation::NotRequested) => {
                    stats.confirmed.add(1);
                    return Ok(());
                }
                Ok(Confirmation::Ack(Some(returned))) => {
                    stats.returned.add(1);
                    return Err(AmqpError::Returned {
                        exchange: exchange.to_owned(),
                        routing_key: routing_key.to_owned(),
                        reply: returned.reply_text.to_string(),
                    });
                }
                Ok(Confirmation::Nack(_)) => {
                    stats.nacked.add(1);
                    return Err(AmqpError::Nacked {
                        exchange: exchange.to_owned(),
                        routing_key: routing_key.to_owned(),
                    });
                }
                Err(error) if link.is_up() && !is_link_error(&error) => {
                    // The broker closed the channel. Maybe for this message (no such
                    // exchange), maybe for another one sent on the same channel: one
                    // more try on a fresh channel tells which.
                    refusals += 1;
                    if refusals > 1 {
                        return Err(AmqpError::Refused {
                            what: what(),
                            reason: reason(&error),
                        });
                    }
                }
                Err(_) => {
                    // The link dropped before the confirm: send it again once the
                    // link is back (at least once).
                    stats.republished.add(1);
                    stale = Some(link.generation);
                }
            }
        }
    }

    /// The link, up and not blocked, other than generation `stale`; waits for it until
    /// `deadline`.
    pub(crate) async fn link(
        &self,
        deadline: Instant,
        stale: Option<u64>,
        what: &(dyn Fn() -> String + Sync),
    ) -> Result<Arc<Link>, AmqpError> {
        let usable = |state: &LinkState, blocked: &Option<String>| match state {
            LinkState::Up(link) if Some(link.generation) != stale && blocked.is_none() => {
                Some(Ok(Arc::clone(link)))
            }
            LinkState::Closed => Some(Err(AmqpError::Closing { what: what() })),
            _ => None,
        };
        if let Some(found) = usable(&self.inner.state.borrow(), &self.inner.blocked.borrow()) {
            return found;
        }
        let mut state = self.inner.state.subscribe();
        let mut blocked = self.inner.blocked.subscribe();
        loop {
            if let Some(found) = usable(&state.borrow_and_update(), &blocked.borrow_and_update()) {
                return found;
            }
            tokio::select! {
                _ = state.changed() => {}
                _ = blocked.changed() => {}
                () = tokio::time::sleep_until(deadline.into()) => {
                    return Err(self.unavailable(what));
                }
            }
        }
    }

    /// The error of an operation that found no usable link in time.
    fn unavailable(&self, what: &(dyn Fn() -> String + Sync)) -> AmqpError {
        match self.status() {
            LinkStatus::Blocked(why) => AmqpError::Timeout {
                what: format!("{} (the broker blocks publishing: {why})", what()),
                after: self.inner.config.publish_timeout,
            },
            LinkStatus::Reconnecting { for_, last_error } => AmqpError::Unreachable {
                broker: self.inner.config.describe(),
                reason: format!(
                    "down for {for_:.1?}{}",
                    last_error
                        .map(|e| format!(", last error: {e}"))
                        .unwrap_or_default()
                ),
            },
            LinkStatus::Closed => AmqpError::Closing { what: what() },
            LinkStatus::Connected => AmqpError::ConnectionLost { what: what() },
        }
    }

    /// Declares an exchange, queue or binding now, and records it so that it is
    /// declared again at every reconnect. Declaring the same thing twice is harmless.
    ///
    /// # Errors
    /// [`AmqpError::Refused`] when it conflicts with what the broker has (a queue that
    /// exists with other arguments), [`AmqpError::Unreachable`].
    pub async fn declare(&self, declaration: impl Into<Declaration>) -> Result<(), AmqpError> {
        let declaration = declaration.into();
        if self.inner.topology.contains(&declaration) {
            return Ok(());
        }
        // One at a time, and recorded once the broker has it: a second caller of the
        // same declaration returns when the queue exists, not before.
        let _one = self.inner.declaring.lock().await;
        if self.inner.topology.contains(&declaration) {
            return Ok(());
        }
        let what = || format!("{declaration:?}");
        let deadline = Instant::now() + self.inner.config.publish_timeout;
        let link = match self.link(deadline, None, &what).await {
            Ok(link) => link,
            Err(AmqpError::Unreachable { .. } | AmqpError::Timeout { .. }) => {
                // Declared by the replay, before the link is up again.
                self.inner.topology.record(declaration);
                return Ok(());
            }
            Err(error) => return Err(error),
        };
        let lost = |_| AmqpError::ConnectionLost { what: what() };
        let channel = link.connection.create_channel().await.map_err(lost)?;
        let declared = declaration.apply(&channel).await;
        let _ = channel.close(200, "declared".into()).await;
        if declared.is_ok() {
            self.inner.topology.record(declaration);
        }
        declared
    }

    /// Makes sure the durable queue `queue` exists: declared as such if it does not;
    /// left as it is (quorum, priorities…) if it does.
    async fn ensure_queue(&self, queue: &str) -> Result<(), AmqpError> {
        let plain = Declaration::Queue(Queue::durable(queue));
        if self.inner.topology.contains(&plain) {
            return Ok(());
        }
        {
            let _one = self.inner.declaring.lock().await;
            let what = || format!("checking that queue `{queue}` exists");
            let deadline = Instant::now() + self.inner.config.publish_timeout;
            let link = self.link(deadline, None, &what).await?;
            let lost = |_| AmqpError::ConnectionLost { what: what() };
            let channel = link.connection.create_channel().await.map_err(lost)?;
            let passive = QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            };
            let found = channel
                .queue_declare(queue.into(), passive, FieldTable::default())
                .await;
            let _ = channel.close(200, "checked".into()).await;
            if found.is_ok() {
                return Ok(());
            }
        }
        self.declare(plain).await
    }

    /// Dispatches an event: `payload` as JSON to the events exchange with `event` as
    /// routing key, for every handler in every service that listens to it (see
    /// `EventMode`). An event nobody listens to is not an error.
    ///
    /// # Errors
    /// As [`Broker::publish`], but never `Returned`.
    pub async fn dispatch<T: Serialize + ?Sized>(
        &self,
        event: &str,
        payload: &T,
    ) -> Result<(), AmqpError> {
        let message = Message::json(payload)?
            .mandatory(false)
            .header("x-nucleon-source", self.inner.service.as_str());
        self.publish(&self.inner.config.events_exchange, event, message)
            .await
    }

    /// Submits a task to the durable queue `tasks.<task>`, shared by the workers that
    /// handle it (`App::task`): each task goes to one of them. Returns the task's id
    /// (its message id). The queue is declared on first use, so tasks wait for a worker
    /// that is not there yet.
    ///
    /// # Errors
    /// As [`Broker::publish`].
    pub async fn submit<T: Serialize + ?Sized>(
        &self,
        task: &str,
        payload: &T,
    ) -> Result<String, AmqpError> {
        let queue = task_queue(task);
        self.ensure_queue(&queue).await?;
        let mut message = Message::json(payload)?.kind(task);
        let id = message.ensure_id().to_string();
        self.publish("", &queue, message).await?;
        Ok(id)
    }

    /// Opens a transaction (`tx.select`): what is published in it reaches the queues at
    /// [`Transaction::commit`], or never.
    ///
    /// # Errors
    /// [`AmqpError::Unreachable`] when no link came up within `publish_timeout`.
    pub async fn transaction(&self) -> Result<Transaction, AmqpError> {
        let deadline = Instant::now() + self.inner.config.publish_timeout;
        let what = || "a transaction".to_owned();
        let link = self.link(deadline, None, &what).await?;
        let lost = |_| AmqpError::ConnectionLost { what: what() };
        let channel = link.connection.create_channel().await.map_err(lost)?;
        channel.tx_select().await.map_err(lost)?;
        Ok(Transaction { channel })
    }

    /// Waits until every message published is confirmed (or returned, or nacked), or
    /// until `deadline`; `false` if some are still unconfirmed then.
    pub async fn flush(&self, deadline: Instant) -> bool {
        let all = u32::try_from(self.inner.config.window).unwrap_or(u32::MAX);
        tokio::time::timeout_at(deadline.into(), self.inner.window.acquire_many(all))
            .await
            .is_ok_and(|permit| permit.is_ok())
    }
}

/// The queue of task `task`.
pub(crate) fn task_queue(task: &str) -> String {
    format!("tasks.{task}")
}

/// A transaction on a channel of its own ([`Broker::transaction`]). Dropped without a
/// commit, nothing it published is delivered (the broker discards it when the channel
/// closes).
pub struct Transaction {
    channel: Channel,
}

impl std::fmt::Debug for Transaction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("channel", &self.channel.id())
            .finish()
    }
}

impl Transaction {
    /// Publishes `message` within the transaction. AMQP gives a transaction no way to
    /// report a message no queue takes, so it is published as not mandatory: such a
    /// message is dropped at the commit (use [`Broker::publish`], confirmed, when that
    /// matters).
    ///
    /// # Errors
    /// [`AmqpError::ConnectionLost`], [`AmqpError::Refused`].
    pub async fn publish(
        &self,
        exchange: &str,
        routing_key: &str,
        mut message: Message,
    ) -> Result<(), AmqpError> {
        message.ensure_id();
        message.add_trace_context();
        self.channel
            .basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions::default(),
                message.body(),
                message.properties(),
            )
            .await
            .map(drop)
            .map_err(|e| {
                self.failed(
                    &e,
                    format!("publish to exchange `{exchange}` in a transaction"),
                )
            })
    }

    /// Commits: everything published is delivered.
    ///
    /// # Errors
    /// [`AmqpError::ConnectionLost`] when the link dropped: nothing was delivered.
    pub async fn commit(self) -> Result<(), AmqpError> {
        let done = self.channel.tx_commit().await;
        let _ = self.channel.close(200, "committed".into()).await;
        done.map_err(|e| self.failed(&e, "a transaction's commit".into()))
    }

    /// Rolls back: nothing published is delivered.
    ///
    /// # Errors
    /// [`AmqpError::ConnectionLost`] when the link dropped (nothing was delivered).
    pub async fn rollback(self) -> Result<(), AmqpError> {
        let done = self.channel.tx_rollback().await;
        let _ = self.channel.close(200, "rolled back".into()).await;
        done.map_err(|e| self.failed(&e, "a transaction's rollback".into()))
    }

    fn failed(&self, error: &lapin::Error, what: String) -> AmqpError {
        if is_link_error(error) {
            AmqpError::ConnectionLost { what }
        } else {
            AmqpError::Refused {
                what,
                reason: reason(error),
            }
        }
    }
}
