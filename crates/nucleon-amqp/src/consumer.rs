//! Consumers: a queue, a handler, a concurrency and an error policy; run on every
//! worker, each on its own channel.

use std::sync::Arc;
use std::time::Duration;

use nucleon_runtime::{HandleKey, Requirement};

use crate::handler::{Erased, ErasedHandler, Handler};
use crate::topology::{Binding, Declaration, Exchange, Queue};

/// How long a procedure's queue outlives its last server.
const RPC_QUEUE_EXPIRES: Duration = Duration::from_secs(60);

/// What happens to a message whose handler fails or panics.
///
/// Whatever the policy, a message never loops forever: it ends in the dead-letter
/// queue (`<queue>.dead-letter`, through `amqp.dead_letter_exchange`) with the last
/// error in its `x-nucleon-error` header. A message that cannot be decoded goes there
/// at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OnError {
    /// Put it back in the queue, for any consumer, at once. A message that fails again
    /// after a requeue (the broker marks it redelivered) is dead-lettered.
    Requeue,
    /// Dead-letter it at once.
    DeadLetter,
    /// Try again after each delay in turn (held in a TTL queue per delay, then routed
    /// back), then dead-letter it.
    Retry(Vec<Duration>),
}

impl OnError {
    /// Retries after each of `delays`, then dead-letters.
    pub fn retry(delays: impl IntoIterator<Item = Duration>) -> Self {
        Self::Retry(delays.into_iter().collect())
    }
}

impl Default for OnError {
    /// Three retries, after 1 s, 10 s and 60 s: a passing failure (a database restart)
    /// heals by itself, a poison message is dead-lettered within about a minute.
    fn default() -> Self {
        Self::retry([
            Duration::from_secs(1),
            Duration::from_secs(10),
            Duration::from_secs(60),
        ])
    }
}

/// Who receives an event, when several services (and instances of each) listen to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EventMode {
    /// One handler per service: the instances of a service share the event's queue
    /// (`events.<event>.<service>`), each event is handled once per listening service.
    #[default]
    Service,
    /// One handler in all: every listening service shares one queue (`events.<event>`).
    Singleton,
    /// Every instance: each process has its own exclusive queue, deleted when it stops
    /// (with its dead-letter and retry queues, exclusive too).
    Broadcast,
}

/// What a consumer is for: how its queue is named and whether it answers.
#[derive(Debug, Clone)]
pub(crate) enum Role {
    /// A queue of your own.
    Queue,
    /// A procedure: `rpc.<name>`, answers callers.
    Rpc(String),
    /// An event handler.
    Event { event: String, mode: EventMode },
    /// A task queue: `tasks.<name>`.
    Task(String),
}

/// A consumer: its queue, its handler and how it behaves. `App::consume(queue,
/// handler)` makes one with the defaults; build one for more.
///
/// ```
/// use std::time::Duration;
/// use nucleon_amqp::{Consumer, Msg, OnError, Queue};
///
/// async fn resize(Msg(path): Msg<String>) -> Result<(), std::io::Error> {
///     # drop(path);
///     Ok(())
/// }
///
/// let consumer = Consumer::new("images", resize)
///     .queue(Queue::durable("images").quorum())
///     .concurrency(4)
///     .on_error(OnError::retry([Duration::from_secs(5), Duration::from_secs(30)]));
/// # drop(consumer);
/// ```
#[derive(Clone)]
pub struct Consumer {
    pub(crate) role: Role,
    pub(crate) queue: Option<Queue>,
    pub(crate) declare: bool,
    pub(crate) bindings: Vec<(String, String)>,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) concurrency: u16,
    pub(crate) on_error: OnError,
}

impl std::fmt::Debug for Consumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Consumer")
            .field("role", &self.role)
            .field("queue", &self.queue)
            .field("concurrency", &self.concurrency)
            .field("on_error", &self.on_error)
            .finish_non_exhaustive()
    }
}

impl Consumer {
    fn with_role<H: Handler<A>, A: 'static>(role: Role, queue: Option<Queue>, handler: H) -> Self {
        Self {
            role,
            queue,
            declare: true,
            bindings: Vec::new(),
            handler: Arc::new(Erased::new(handler)),
            concurrency: 16,
            on_error: OnError::default(),
        }
    }

    /// Consumes `queue` (declared durable, unless [`Consumer::queue`] or
    /// [`Consumer::existing`] says otherwise) with `handler`.
    pub fn new<H: Handler<A>, A: 'static>(queue: &str, handler: H) -> Self {
        Self::with_role(Role::Queue, Some(Queue::durable(queue)), handler)
    }

    /// Serves procedure `name` (queue `rpc.<name>`): the handler's `Ok` value is the
    /// caller's result, its `Err` the caller's [`AmqpError::Remote`](crate::AmqpError::Remote).
    pub fn rpc<H: Handler<A>, A: 'static>(name: &str, handler: H) -> Self {
        // Unused for a minute (no server), the queue goes: calls then fail at once
        // (`Returned`, a 503) rather than wait out their timeout in it.
        let queue = Queue::durable(crate::rpc::rpc_queue(name)).expires(RPC_QUEUE_EXPIRES);
        // A failed call is answered, not retried: only a request without `reply_to`
        // (published by hand) meets the policy.
        Self::with_role(Role::Rpc(name.to_owned()), Some(queue), handler)
            .on_error(OnError::DeadLetter)
    }

    /// Handles event `event` ([`Broker::dispatch`](crate::Broker::dispatch)) in `mode`.
    pub fn event<H: Handler<A>, A: 'static>(event: &str, mode: EventMode, handler: H) -> Self {
        Self::with_role(
            Role::Event {
                event: event.to_owned(),
                mode,
            },
            None,
            handler,
        )
    }

    /// Handles task `name` ([`Broker::submit`](crate::Broker::submit)), competing with
    /// every other worker that does.
    pub fn task<H: Handler<A>, A: 'static>(name: &str, handler: H) -> Self {
        let queue = crate::broker::task_queue(name);
        Self::with_role(
            Role::Task(name.to_owned()),
            Some(Queue::durable(queue)),
            handler,
        )
    }

    /// Declares the queue so (quorum, TTL, priorities…) rather than as a plain durable
    /// queue. Its name replaces the consumer's.
    pub fn queue(mut self, queue: Queue) -> Self {
        self.queue = Some(queue);
        self.declare = true;
        self
    }

    /// The queue exists already (declared by someone else): do not declare it.
    pub fn existing(mut self) -> Self {
        self.declare = false;
        self
    }

    /// Binds the queue to `exchange` for `key` (declared with the queue).
    pub fn bind(mut self, exchange: &str, key: &str) -> Self {
        self.bindings.push((exchange.to_owned(), key.to_owned()));
        self
    }

    /// How many deliveries each worker handles at once: its channel's prefetch (default
    /// 16).
    ///
    /// # Panics
    /// If `n` is 0.
    pub fn concurrency(mut self, n: u16) -> Self {
        assert!(n > 0, "a consumer's concurrency must be at least 1");
        self.concurrency = n;
        self
    }

    /// What happens to a message whose handler fails (default: [`OnError::default`]).
    pub fn on_error(mut self, policy: OnError) -> Self {
        self.on_error = policy;
        self
    }

    /// Fixes the queue's name and what to declare, for `service` (instance `instance`).
    pub(crate) fn resolve(self, service: &str, instance: &str, events: &str) -> Arc<ConsumerSpec> {
        let mut bindings = self.bindings;
        // An event handler's queue is bound to the events exchange, whether named by
        // its mode or given with `Consumer::queue`.
        if let Role::Event { event, .. } = &self.role {
            bindings.push((events.to_owned(), event.clone()));
        }
        let queue = match (&self.role, self.queue) {
            (_, Some(queue)) => queue,
            (Role::Event { event, mode }, None) => match mode {
                EventMode::Service => Queue::durable(format!("events.{event}.{service}")),
                EventMode::Singleton => Queue::durable(format!("events.{event}")),
                EventMode::Broadcast => {
                    Queue::exclusive(format!("events.{event}.{service}.{instance}"))
                }
            },
            (_, None) => unreachable!("only events name their queue late"),
        };
        let name: Arc<str> = queue.name().into();
        let label: Arc<str> = match &self.role {
            Role::Rpc(rpc) => format!("rpc {rpc}").into(),
            Role::Task(task) => format!("task {task}").into(),
            Role::Event { event, .. } => format!("event {event} ({name})").into(),
            Role::Queue => format!("consume {name}").into(),
        };
        Arc::new(ConsumerSpec {
            declare: self.declare.then_some(queue),
            bindings,
            replies: matches!(self.role, Role::Rpc(_)),
            queue: name,
            label,
            handler: self.handler,
            concurrency: self.concurrency,
            on_error: self.on_error,
        })
    }
}

/// A consumer, resolved: what every worker runs.
pub(crate) struct ConsumerSpec {
    pub(crate) queue: Arc<str>,
    /// The watchdog's name for its deliveries' tasks (`consume orders`, `rpc primes`).
    pub(crate) label: Arc<str>,
    pub(crate) declare: Option<Queue>,
    pub(crate) bindings: Vec<(String, String)>,
    /// Whether it answers requests that carry a `reply_to` (RPC).
    pub(crate) replies: bool,
    pub(crate) handler: Arc<dyn ErasedHandler>,
    pub(crate) concurrency: u16,
    pub(crate) on_error: OnError,
}

impl ConsumerSpec {
    /// The queue a message waits `delay` in before it is tried again.
    pub(crate) fn retry_queue(&self, delay: Duration) -> String {
        format!("{}.retry.{}", self.queue, delay_name(delay))
    }

    /// The queue dead letters go to.
    pub(crate) fn dead_letter_queue(&self) -> String {
        format!("{}.dead-letter", self.queue)
    }

    /// What the broker must have for this consumer: its queue and bindings, the
    /// dead-letter exchange and queue, the retry queues.
    pub(crate) fn declarations(&self, dead_letter_exchange: &str) -> Vec<Declaration> {
        let mut all = Vec::new();
        if let Some(queue) = &self.declare {
            all.push(queue.clone().into());
        }
        for (exchange, key) in &self.bindings {
            all.push(Binding::new(&*self.queue, exchange, key).into());
        }
        // The dead-letter and retry queues of an exclusive queue (a broadcast's, named
        // after its instance) are exclusive too: durable, each instance's start would
        // leave them behind on the broker for good.
        let exclusive = self.declare.as_ref().is_some_and(Queue::is_exclusive);
        let companion = |name: String| {
            if exclusive {
                Queue::exclusive(name)
            } else {
                Queue::durable(name)
            }
        };
        all.push(Exchange::direct(dead_letter_exchange).into());
        all.push(companion(self.dead_letter_queue()).into());
        all.push(Binding::new(self.dead_letter_queue(), dead_letter_exchange, &*self.queue).into());
        if let OnError::Retry(delays) = &self.on_error {
            for delay in delays {
                // Held for `delay`, then dead-lettered by the broker back to the queue
                // through the default exchange.
                all.push(
                    companion(self.retry_queue(*delay))
                        .message_ttl(*delay)
                        .dead_letter("", Some(&self.queue))
                        .into(),
                );
            }
        }
        all
    }

    /// What its handler needs, for the start's check.
    pub(crate) fn requirements(&self) -> Vec<Requirement> {
        let mut keys: Vec<HandleKey> = Vec::new();
        self.handler.required_handles(&mut keys);
        keys.into_iter()
            .map(|key| Requirement {
                key,
                needed_by: format!("the consumer of `{}`", self.queue),
            })
            .collect()
    }
}

/// A delay as a retry queue's name ends: `1s`, `250ms`. Named by its delay (the queue's
/// TTL), so that a service whose delays change declares new queues rather than clash
/// with the old ones' TTL.
fn delay_name(delay: Duration) -> String {
    let ms = delay.as_millis();
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}
