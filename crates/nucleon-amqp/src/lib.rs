//! # nucleon-amqp
//!
//! Messaging for Nucleon services over AMQP 0-9-1 (RabbitMQ), on lapin: the seed's way
//! to hand CPU work to back-end workers, and to let services talk without waiting for
//! each other.
//!
//! - **One connection per process** ([`AmqpAdapter`], a per-process adapter; its handle
//!   is the [`Broker`]). It reconnects by itself after any loss, with jittered
//!   exponential backoff, and declares the recorded topology again each time; health is
//!   degraded while it reconnects or while the broker blocks publishing
//!   (`connection.blocked`, during which publishers wait).
//! - **Publishing with confirms** ([`Broker::publish`]): it returns once the broker has
//!   the message; a mandatory message no queue takes is [`AmqpError::Returned`]; a
//!   bounded window of unconfirmed messages makes publishers wait; a message whose
//!   confirm was lost with the link is published again on the next one (at least once,
//!   with a message id to de-duplicate by).
//! - **Consumers** ([`Consumer`], [`ConsumerAdapter`]): handlers are async functions of
//!   extracted arguments ([`Msg<T>`], [`Delivery`], [`Headers`], `Dep<T>`), run on every
//!   worker, each on its own channel with a prefetch equal to the handler's
//!   concurrency; acked after the handler succeeds; on failure, an [`OnError`] policy
//!   (requeue, dead-letter, retry after delays) that never loops forever. Or a
//!   queue's messages as a stream the caller pulls and acks itself
//!   ([`Broker::subscribe`]).
//! - **Ready topologies**: RPC ([`Broker::call`], [`Consumer::rpc`]) over direct
//!   reply-to, events in three modes ([`Broker::dispatch`], [`EventMode`]), task queues
//!   shared by competing workers ([`Broker::submit`], [`Consumer::task`]), and
//!   transactions ([`Broker::transaction`]).
//! - **Trace context**: a publish (and an RPC call) made while a W3C trace context is
//!   current (`nucleon_runtime::trace`: an HTTP request's, a delivery's) carries it as
//!   `traceparent`/`tracestate` message headers, the convention of OpenTelemetry's
//!   AMQP instrumentations; every handler (consumer, RPC, event, task) runs inside
//!   the context its message carries, a span of its own under the publisher's, so its
//!   own calls and publishes continue the trace. With `nucleon_amqp=debug`, each
//!   delivery runs in a `delivery` span with its queue, message id and trace id.
//! - **The drain**: consumers cancel at its start; handlers in flight finish and are
//!   acked; deliveries not started go back to their queue; publishes wait for their
//!   confirms; then the channels and the connection close.
//!
//! ```toml
//! [production.amqp]
//! url = "amqps://orders:secret@broker.internal/orders"
//! ```
//!
//! With the umbrella crate (feature `amqp`):
//!
//! ```ignore
//! use nucleon::App;
//! use nucleon::amqp::{Broker, Msg};
//!
//! async fn count_primes(Msg(below): Msg<u64>) -> Result<u64, std::convert::Infallible> {
//!     Ok(nucleon::runtime::offload::cpu(move || primes_below(below)).await.unwrap())
//! }
//!
//! nucleon::run(App::new("primes-worker").rpc("primes", count_primes));
//! ```
//!
//! Names on the broker: procedure `p` is queue `rpc.p`; task `t` is queue `tasks.t`;
//! an event handler's queue is `events.<event>.<service>` (one per service),
//! `events.<event>` (singleton) or `events.<event>.<service>.<instance>` (broadcast);
//! every consumed queue `q` has `q.dead-letter` and, with retries, `q.retry.<delay>`
//! (`q.retry.10s`) for each delay. A procedure's queue goes a minute after its last
//! server: calls then fail at once (`Returned`) rather than wait out their timeout.

mod acks;
mod adapter;
mod broker;
mod config;
mod consumer;
mod delivery;
mod error;
mod handler;
#[cfg(feature = "http")]
mod http;
mod link;
mod message;
mod metrics;
mod rpc;
mod runner;
mod subscription;
mod topology;
mod trace;

pub use adapter::{Amqp, AmqpAdapter, ConsumerFactory};
pub use broker::{Broker, BrokerStats, LinkStatus, Transaction};
pub use config::AmqpConfig;
pub use consumer::{Consumer, EventMode, OnError};
pub use delivery::{
    ATTEMPTS_HEADER, Delivery, ERROR_HEADER, FromDelivery, Headers, Msg, QUEUE_HEADER, Rejection,
};
pub use error::AmqpError;
pub use handler::{Handler, IntoOutcome, Outcome};
/// The AMQP client underneath, for what this crate does not wrap.
pub use lapin;
pub use message::{HeaderValue, JSON, Message};
pub use rpc::RpcCall;
pub use runner::ConsumerAdapter;
pub use subscription::{Incoming, Subscription};
pub use topology::{Binding, Declaration, Exchange, Queue};
