//! `AmqpAdapter`, the process's connection, and `Amqp`, the builder that makes it and
//! the workers' consumers from one description of the service's messaging.

use std::sync::Arc;
use std::time::{Duration, Instant};

use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health, Requirement};
use tokio::sync::watch;

use crate::broker::{Broker, LinkStatus};
use crate::config::AmqpConfig;
use crate::consumer::{Consumer, ConsumerSpec, EventMode};
use crate::error::AmqpError;
use crate::handler::Handler;
use crate::link::{LinkState, supervise};
use crate::runner::ConsumerAdapter;
use crate::topology::{Declaration, Topology};

/// A service's messaging, described once: what it declares and what it consumes.
/// [`Amqp::build`] gives the per-process adapter and the factory of the
/// per-worker one. The umbrella's `App::consume`, `App::rpc`, `App::on_event` and
/// `App::task` fill one for you.
///
/// ```
/// use nucleon_amqp::{Amqp, Exchange, Msg};
///
/// async fn on_order(Msg(id): Msg<u64>) {
///     tracing::info!(id, "order");
/// }
///
/// let amqp = Amqp::new()
///     .declare(Exchange::topic("orders"))
///     .consume("orders.audit", on_order);
/// assert_eq!(amqp.consumer_count(), 1);
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Amqp {
    declarations: Vec<Declaration>,
    consumers: Vec<Consumer>,
}

impl Amqp {
    /// Nothing declared, nothing consumed (a publisher).
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an exchange, queue or binding at every (re)connect.
    pub fn declare(mut self, declaration: impl Into<Declaration>) -> Self {
        self.declarations.push(declaration.into());
        self
    }

    /// Consumes `queue` (declared durable) with `handler`, with the defaults.
    pub fn consume<H: Handler<A>, A: 'static>(self, queue: &str, handler: H) -> Self {
        self.consumer(Consumer::new(queue, handler))
    }

    /// Adds a consumer built with its options.
    pub fn consumer(mut self, consumer: Consumer) -> Self {
        self.consumers.push(consumer);
        self
    }

    /// Serves procedure `name` with `handler` ([`Consumer::rpc`]).
    pub fn rpc<H: Handler<A>, A: 'static>(self, name: &str, handler: H) -> Self {
        self.consumer(Consumer::rpc(name, handler))
    }

    /// Handles event `event` in `mode` ([`Consumer::event`]).
    pub fn on_event<H: Handler<A>, A: 'static>(
        self,
        event: &str,
        mode: EventMode,
        handler: H,
    ) -> Self {
        self.consumer(Consumer::event(event, mode, handler))
    }

    /// Handles task `name` ([`Consumer::task`]).
    pub fn task<H: Handler<A>, A: 'static>(self, name: &str, handler: H) -> Self {
        self.consumer(Consumer::task(name, handler))
    }

    /// How many consumers it has.
    pub fn consumer_count(&self) -> usize {
        self.consumers.len()
    }

    /// The two adapters, for service `service`: the connection (add it per process) and
    /// the consumers (add one per worker, made by the returned [`ConsumerFactory`]).
    pub fn build(self, service: &str) -> (AmqpAdapter, ConsumerFactory) {
        let instance = format!("{:08x}", crate::message::random_u64() as u32);
        // The events exchange's name is read from the configuration at start; the
        // queues of event handlers are bound to it then (see AmqpAdapter::start).
        let consumers: Vec<Consumer> = self.consumers;
        let factory = ConsumerFactory {
            pending: Arc::new(std::sync::Mutex::new(None)),
        };
        (
            AmqpAdapter {
                service: service.to_owned(),
                instance,
                declarations: self.declarations,
                consumers,
                resolved: Arc::clone(&factory.pending),
                broker: None,
                stop: None,
                metrics: None,
            },
            factory,
        )
    }
}

/// The consumers as the connection's start fixed them (their queues' names depend on
/// its configuration), for the workers.
type Resolved = Arc<std::sync::Mutex<Option<Arc<[Arc<ConsumerSpec>]>>>>;

/// Makes each worker's [`ConsumerAdapter`], once the connection has started (and fixed
/// the consumers' queues). Cheap to clone; `Send + Sync`.
#[derive(Clone, Debug)]
pub struct ConsumerFactory {
    pending: Resolved,
}

impl ConsumerFactory {
    /// The consumers for one worker (none until the connection started).
    pub fn make(&self) -> ConsumerAdapter {
        let specs = self
            .pending
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
            .unwrap_or_else(|| Arc::from(Vec::new()));
        ConsumerAdapter::new(specs)
    }
}

impl std::fmt::Debug for ConsumerSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerSpec")
            .field("queue", &self.queue)
            .finish_non_exhaustive()
    }
}

/// The process's connection to the broker, a per-process adapter whose handle is the
/// [`Broker`]. Reads `[<env>.amqp]`; its start waits for a first connection (up to
/// `amqp.start_timeout`), declares the topology, and from then on keeps the link up.
pub struct AmqpAdapter {
    service: String,
    instance: String,
    declarations: Vec<Declaration>,
    consumers: Vec<Consumer>,
    resolved: Resolved,
    broker: Option<Broker>,
    stop: Option<watch::Sender<bool>>,
    /// Keeps the link's figures collected while the adapter runs.
    metrics: Option<nucleon_runtime::metrics::CollectorGuard>,
}

impl std::fmt::Debug for AmqpAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpAdapter")
            .field("service", &self.service)
            .field("consumers", &self.consumers.len())
            .finish_non_exhaustive()
    }
}

impl AmqpAdapter {
    /// A connection that declares and consumes nothing (publishers, RPC callers).
    pub fn new(service: &str) -> Self {
        Amqp::new().build(service).0
    }

    /// What the consumers' handlers need, for the start's check.
    pub fn requirements(&self) -> Vec<Requirement> {
        let settings = AmqpConfig::default();
        self.consumers
            .iter()
            .cloned()
            .flat_map(|c| {
                c.resolve(&self.service, &self.instance, &settings.events_exchange)
                    .requirements()
            })
            .collect()
    }
}

impl Adapter for AmqpAdapter {
    type Handle = Broker;

    fn name(&self) -> &str {
        "amqp"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<Broker, BoxError> {
        let settings = AmqpConfig::load(ctx.config())?;
        let specs: Vec<Arc<ConsumerSpec>> = self
            .consumers
            .iter()
            .cloned()
            .map(|c| c.resolve(&self.service, &self.instance, &settings.events_exchange))
            .collect();
        let topology = Topology::default();
        for declaration in &self.declarations {
            topology.record(declaration.clone());
        }
        for spec in &specs {
            for declaration in spec.declarations(&settings.dead_letter_exchange) {
                topology.record(declaration);
            }
        }
        *self
            .resolved
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(Arc::from(specs));
        let start_timeout = settings.start_timeout;
        let broker = Broker::new(settings, &self.service, ctx.workers(), topology);
        let (stop, stopped) = watch::channel(false);
        nucleon_runtime::spawn(
            "amqp connection",
            supervise(Arc::clone(&broker.inner), stopped),
        );
        self.stop = Some(stop);
        let mut state = broker.inner.state.subscribe();
        // Up, or the topology refused (which no retry mends): no need to wait longer.
        let settled = tokio::time::timeout(
            start_timeout,
            state.wait_for(|s| {
                matches!(
                    s,
                    LinkState::Up(_)
                        | LinkState::Down {
                            last_error: Some(AmqpError::Refused { .. }),
                            ..
                        }
                )
            }),
        )
        .await;
        let up = matches!(&settled, Ok(Ok(state)) if matches!(**state, LinkState::Up(_)));
        drop(settled);
        if !up {
            // The last attempt's error as it was: the broker refusing the topology (a
            // queue that exists with other arguments) is not the broker unreachable.
            let error = match &*broker.inner.state.borrow() {
                LinkState::Down {
                    last_error: Some(error),
                    ..
                } => error.clone(),
                _ => AmqpError::Unreachable {
                    broker: broker.config().describe(),
                    reason: format!("no connection within amqp.start_timeout ({start_timeout:?})"),
                },
            };
            if let Some(stop) = self.stop.take() {
                stop.send_replace(true);
            }
            return Err(Box::new(error));
        }
        if nucleon_runtime::metrics::enabled() {
            self.metrics = Some(crate::metrics::watch_broker(&broker));
        }
        self.broker = Some(broker.clone());
        Ok(broker)
    }

    /// Healthy when connected; degraded while reconnecting or blocked by the broker
    /// (publishers wait); unhealthy once closed.
    async fn health(&self) -> Health {
        let Some(broker) = &self.broker else {
            return Health::Unhealthy("not started".into());
        };
        match broker.status() {
            LinkStatus::Connected => Health::Healthy,
            LinkStatus::Blocked(why) => {
                Health::Degraded(format!("the broker blocks publishing: {why}"))
            }
            LinkStatus::Reconnecting { for_, last_error } => Health::Degraded(format!(
                "reconnecting to the broker for {for_:.1?}{}",
                last_error.map(|e| format!(" ({e})")).unwrap_or_default()
            )),
            LinkStatus::Closed => Health::Unhealthy("closed".into()),
        }
    }

    /// Waits for the messages published and not yet confirmed (within the deadline),
    /// then closes the connection.
    async fn stop(&mut self, deadline: Instant) -> Result<(), BoxError> {
        self.metrics = None;
        let Some(broker) = self.broker.take() else {
            return Ok(());
        };
        let flushed = broker.flush(deadline).await;
        let state = broker.inner.state.send_replace(LinkState::Closed);
        broker.inner.window.close();
        if let Some(stop) = self.stop.take() {
            stop.send_replace(true);
        }
        if let LinkState::Up(link) = state {
            let close = link.connection.close(200, "service stopping".into());
            let left = deadline
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(100));
            let _ = tokio::time::timeout(left, close).await;
        }
        if flushed {
            tracing::debug!(target: "nucleon::amqp", "connection closed");
            Ok(())
        } else {
            Err(format!(
                "{} message(s) still unconfirmed at the deadline",
                broker.stats().unconfirmed
            )
            .into())
        }
    }
}
