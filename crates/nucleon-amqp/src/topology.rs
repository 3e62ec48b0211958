//! Typed declarations (exchanges, queues, bindings), kept as a record that is replayed
//! on every (re)connect.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};

use crate::error::{AmqpError, reason};

/// An exchange to declare. Durable unless told otherwise.
///
/// ```
/// use nucleon_amqp::Exchange;
///
/// let orders = Exchange::topic("orders");
/// let audit = Exchange::fanout("audit").transient();
/// # drop((orders, audit));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Exchange {
    name: String,
    kind: ExchangeKind,
    durable: bool,
    auto_delete: bool,
}

impl Exchange {
    fn new(name: impl Into<String>, kind: ExchangeKind) -> Self {
        Self {
            name: name.into(),
            kind,
            durable: true,
            auto_delete: false,
        }
    }

    /// A direct exchange: routes by exact routing key.
    pub fn direct(name: impl Into<String>) -> Self {
        Self::new(name, ExchangeKind::Direct)
    }

    /// A topic exchange: routes by pattern (`orders.*`, `#`).
    pub fn topic(name: impl Into<String>) -> Self {
        Self::new(name, ExchangeKind::Topic)
    }

    /// A fanout exchange: every bound queue gets every message.
    pub fn fanout(name: impl Into<String>) -> Self {
        Self::new(name, ExchangeKind::Fanout)
    }

    /// A headers exchange: routes by header values.
    pub fn headers(name: impl Into<String>) -> Self {
        Self::new(name, ExchangeKind::Headers)
    }

    /// Not kept across a broker restart.
    pub fn transient(mut self) -> Self {
        self.durable = false;
        self
    }

    /// Deleted by the broker once its last binding goes.
    pub fn auto_delete(mut self) -> Self {
        self.auto_delete = true;
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A queue to declare. Durable (classic) unless told otherwise.
///
/// ```
/// use std::time::Duration;
/// use nucleon_amqp::Queue;
///
/// let jobs = Queue::durable("jobs").quorum();
/// let cache = Queue::durable("cache-invalidations").message_ttl(Duration::from_secs(30));
/// # drop((jobs, cache));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Queue {
    name: String,
    durable: bool,
    exclusive: bool,
    auto_delete: bool,
    arguments: FieldTable,
}

impl Queue {
    /// A durable queue: kept, with its persistent messages, across broker restarts.
    pub fn durable(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            durable: true,
            exclusive: false,
            auto_delete: false,
            arguments: FieldTable::default(),
        }
    }

    /// A queue of this connection alone, deleted when it closes (and declared again,
    /// empty, when it reconnects): for broadcasts each instance receives.
    pub fn exclusive(name: impl Into<String>) -> Self {
        Self {
            durable: false,
            exclusive: true,
            auto_delete: true,
            ..Self::durable(name)
        }
    }

    /// A quorum queue (replicated; durable by nature).
    pub fn quorum(mut self) -> Self {
        self.durable = true;
        self.argument("x-queue-type", AMQPValue::LongString("quorum".into()))
    }

    /// Messages older than `ttl` are dropped (or dead-lettered, with
    /// [`Queue::dead_letter`]).
    pub fn message_ttl(self, ttl: Duration) -> Self {
        let ms = i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX);
        self.argument("x-message-ttl", AMQPValue::LongLongInt(ms))
    }

    /// Where the broker sends messages rejected without requeue or expired:
    /// `exchange`, with `routing_key` (or their own key when `None`).
    pub fn dead_letter(self, exchange: &str, routing_key: Option<&str>) -> Self {
        let queue = self.argument(
            "x-dead-letter-exchange",
            AMQPValue::LongString(LongString::from(exchange)),
        );
        match routing_key {
            Some(key) => queue.argument(
                "x-dead-letter-routing-key",
                AMQPValue::LongString(LongString::from(key)),
            ),
            None => queue,
        }
    }

    /// The broker deletes the queue once it has gone unused (no consumer, no
    /// declaration) for `after`.
    pub fn expires(self, after: Duration) -> Self {
        let ms = i64::try_from(after.as_millis()).unwrap_or(i64::MAX);
        self.argument("x-expires", AMQPValue::LongLongInt(ms))
    }

    /// Priorities 0..=`max` are honoured.
    pub fn max_priority(self, max: u8) -> Self {
        self.argument("x-max-priority", AMQPValue::ShortShortUInt(max))
    }

    /// Any other `x-` argument.
    pub fn argument(mut self, name: &str, value: AMQPValue) -> Self {
        self.arguments.insert(name.into(), value);
        self
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether it belongs to its connection alone ([`Queue::exclusive`]).
    pub(crate) fn is_exclusive(&self) -> bool {
        self.exclusive
    }
}

/// A binding: messages of `exchange` whose routing key matches `key` go to `queue`.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    queue: String,
    exchange: String,
    key: String,
}

impl Binding {
    /// Binds `queue` to `exchange` for `key` (a pattern on topic exchanges).
    pub fn new(
        queue: impl Into<String>,
        exchange: impl Into<String>,
        key: impl Into<String>,
    ) -> Self {
        Self {
            queue: queue.into(),
            exchange: exchange.into(),
            key: key.into(),
        }
    }
}

/// One declaration of the record.
#[derive(Debug, Clone, PartialEq)]
pub enum Declaration {
    /// An exchange.
    Exchange(Exchange),
    /// A queue.
    Queue(Queue),
    /// A binding.
    Binding(Binding),
}

impl From<Exchange> for Declaration {
    fn from(value: Exchange) -> Self {
        Self::Exchange(value)
    }
}

impl From<Queue> for Declaration {
    fn from(value: Queue) -> Self {
        Self::Queue(value)
    }
}

impl From<Binding> for Declaration {
    fn from(value: Binding) -> Self {
        Self::Binding(value)
    }
}

impl Declaration {
    /// Declares it on `channel`.
    pub(crate) async fn apply(&self, channel: &Channel) -> Result<(), AmqpError> {
        let refused = |what: String| {
            move |e: lapin::Error| AmqpError::Refused {
                what,
                reason: reason(&e),
            }
        };
        match self {
            Declaration::Exchange(x) => channel
                .exchange_declare(
                    x.name.as_str().into(),
                    x.kind.clone(),
                    ExchangeDeclareOptions {
                        durable: x.durable,
                        auto_delete: x.auto_delete,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(refused(format!("declaring exchange `{}`", x.name))),
            Declaration::Queue(q) => channel
                .queue_declare(
                    q.name.as_str().into(),
                    QueueDeclareOptions {
                        durable: q.durable,
                        exclusive: q.exclusive,
                        auto_delete: q.auto_delete,
                        ..QueueDeclareOptions::default()
                    },
                    q.arguments.clone(),
                )
                .await
                .map(drop)
                .map_err(refused(format!("declaring queue `{}`", q.name))),
            Declaration::Binding(b) => channel
                .queue_bind(
                    b.queue.as_str().into(),
                    b.exchange.as_str().into(),
                    b.key.as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .map_err(refused(format!(
                    "binding queue `{}` to exchange `{}` with key `{}`",
                    b.queue, b.exchange, b.key
                ))),
        }
    }
}

/// The record of what the service declared, in order, shared by the connection (which
/// replays it on every (re)connect) and by whoever declares more at run time.
#[derive(Debug, Clone, Default)]
pub(crate) struct Topology(Arc<Mutex<Vec<Declaration>>>);

impl Topology {
    /// Adds `declaration`; `false` when the record already had it.
    pub(crate) fn record(&self, declaration: Declaration) -> bool {
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if all.contains(&declaration) {
            return false;
        }
        all.push(declaration);
        true
    }

    /// Whether the record has `declaration`.
    pub(crate) fn contains(&self, declaration: &Declaration) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(declaration)
    }

    /// Declares everything on `channel`, in order.
    pub(crate) async fn replay(&self, channel: &Channel) -> Result<usize, AmqpError> {
        let all = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        for declaration in &all {
            declaration.apply(channel).await?;
        }
        Ok(all.len())
    }
}
