//! RPC over AMQP: requests to the queue `rpc.<name>`, replies over RabbitMQ's direct
//! reply-to, matched by correlation id.

use std::collections::HashMap;
use std::future::{Future, IntoFuture};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{BasicConsumeOptions, BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Confirmation, Connection};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

use crate::broker::Broker;
use crate::error::AmqpError;
use crate::message::JSON;
use nucleon_runtime::trace::TraceContext;

/// RabbitMQ's pseudo-queue for replies on the requester's own channel.
const DIRECT_REPLY_TO: &str = "amq.rabbitmq.reply-to";

/// The queue of procedure `name`.
pub(crate) fn rpc_queue(name: &str) -> String {
    format!("rpc.{name}")
}

type Pending = HashMap<String, oneshot::Sender<Vec<u8>>>;

/// A link's RPC side: the channel requests go out on and replies come back to, and
/// the calls waiting for their reply.
pub(crate) struct RpcLink {
    channel: Channel,
    pending: Arc<Mutex<Pending>>,
}

impl RpcLink {
    /// Opens the channel and consumes the replies (on the current loop).
    pub(crate) async fn open(connection: &Connection) -> Result<Self, lapin::Error> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut replies = channel
            .basic_consume(
                DIRECT_REPLY_TO.into(),
                "nucleon-rpc-replies".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await?;
        let pending: Arc<Mutex<Pending>> = Arc::default();
        let waiting = Arc::clone(&pending);
        nucleon_runtime::spawn("amqp rpc replies", async move {
            while let Some(Ok(reply)) = replies.next().await {
                let Some(id) = reply.properties.correlation_id() else {
                    continue;
                };
                let caller = lock(&waiting).remove(id.as_str());
                // A caller gone (timed out) no longer waits: its reply is dropped.
                if let Some(caller) = caller {
                    let _ = caller.send(reply.data);
                }
            }
            // The link is gone: every call still waiting fails now, not at its timeout.
            lock(&waiting).clear();
        });
        Ok(Self { channel, pending })
    }

    /// Fails every call in flight (their senders drop: `ConnectionLost`).
    pub(crate) fn fail_all(&self) {
        lock(&self.pending).clear();
    }
}

fn lock(pending: &Mutex<Pending>) -> std::sync::MutexGuard<'_, Pending> {
    pending.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A reply's body: the result, or the remote error.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Reply<T> {
    /// The handler's result.
    Ok(T),
    /// The handler's error.
    Error(RemoteError),
}

/// An error as it crosses the wire.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct RemoteError {
    pub(crate) kind: String,
    pub(crate) message: String,
}

/// A call being prepared: [`Broker::call`]`(…).timeout(…)`, then `.await`.
#[must_use = "a call does nothing until awaited"]
pub struct RpcCall<R> {
    broker: Broker,
    name: String,
    args: Result<Vec<u8>, AmqpError>,
    timeout: Duration,
    /// The caller's trace context, taken when the call is made.
    trace: Option<TraceContext>,
    result: PhantomData<fn() -> R>,
}

impl<R> std::fmt::Debug for RpcCall<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RpcCall")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Calls procedure `name` (served by a service's `App::rpc(name, …)`) with `args` as
    /// JSON, and decodes its result as `R`. Waits `amqp.rpc_timeout` unless
    /// [`RpcCall::timeout`] says otherwise. The current trace context, as this call is
    /// made, goes with the request (`traceparent`/`tracestate` headers), and the
    /// procedure runs in it.
    ///
    /// ```no_run
    /// # async fn f(broker: nucleon_amqp::Broker) -> Result<(), nucleon_amqp::AmqpError> {
    /// use std::time::Duration;
    ///
    /// let primes: u64 = broker.call("primes", &100_000).timeout(Duration::from_secs(5)).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`AmqpError::Remote`] with the remote error's kind and message;
    /// [`AmqpError::Returned`] when no service serves `name` (its queue does not
    /// exist); [`AmqpError::Timeout`]; [`AmqpError::ConnectionLost`] when the link
    /// drops while the call waits (the procedure may or may not have run);
    /// [`AmqpError::Decode`] for a result that is not an `R`.
    pub fn call<R: DeserializeOwned, A: Serialize + ?Sized>(
        &self,
        name: &str,
        args: &A,
    ) -> RpcCall<R> {
        RpcCall {
            broker: self.clone(),
            name: name.to_owned(),
            args: serde_json::to_vec(args).map_err(|e| AmqpError::Decode {
                queue: format!("rpc {name}"),
                reason: format!("cannot serialise the arguments: {e}"),
            }),
            timeout: self.inner.config.rpc_timeout,
            trace: nucleon_runtime::trace::current(),
            result: PhantomData,
        }
    }
}

impl<R: DeserializeOwned> RpcCall<R> {
    /// How long to wait for the reply.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn run(self) -> Result<R, AmqpError> {
        let name = self.name.as_str();
        let args = self.args?;
        let deadline = Instant::now() + self.timeout;
        let what = || format!("rpc `{name}`");
        let timed_out = || AmqpError::Timeout {
            what: what(),
            after: self.timeout,
        };
        let link = self.broker.link(deadline, None, &what).await?;
        let id = crate::message::Message::bytes(Vec::new())
            .ensure_id()
            .to_string();
        let (sender, reply) = oneshot::channel();
        lock(&link.rpc.pending).insert(id.clone(), sender);
        let _forget = Forget {
            pending: &link.rpc.pending,
            id: &id,
        };
        let expiration = self.timeout.as_millis().max(1).to_string();
        let mut properties = BasicProperties::default()
            .with_correlation_id(id.as_str().into())
            .with_reply_to(DIRECT_REPLY_TO.into())
            .with_content_type(JSON.into())
            .with_expiration(expiration.into());
        if let Some(context) = &self.trace {
            let mut headers = FieldTable::default();
            crate::trace::insert(&mut headers, context);
            properties = properties.with_headers(headers);
        }
        let queue = rpc_queue(name);
        let lost = |_| AmqpError::ConnectionLost { what: what() };
        let confirm = link
            .rpc
            .channel
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    immediate: false,
                },
                &args,
                properties,
            )
            .await
            .map_err(lost)?;
        match tokio::time::timeout_at(deadline.into(), confirm).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(error)) => return Err(lost(error)),
            Ok(Ok(Confirmation::Ack(Some(returned)))) => {
                return Err(AmqpError::Returned {
                    exchange: String::new(),
                    routing_key: queue,
                    reply: format!("{} (no service serves rpc `{name}`)", returned.reply_text),
                });
            }
            Ok(Ok(Confirmation::Nack(_))) => {
                return Err(AmqpError::Nacked {
                    exchange: String::new(),
                    routing_key: queue,
                });
            }
            Ok(Ok(_)) => {}
        }
        let body = match tokio::time::timeout_at(deadline.into(), reply).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(_)) => return Err(AmqpError::ConnectionLost { what: what() }),
            Ok(Ok(body)) => body,
        };
        let decode = |reason: String| AmqpError::Decode {
            queue: format!("rpc {name}"),
            reason,
        };
        match serde_json::from_slice::<Reply<R>>(&body) {
            Ok(Reply::Ok(value)) => Ok(value),
            Ok(Reply::Error(remote)) => Err(AmqpError::Remote {
                rpc: name.to_owned(),
                kind: remote.kind,
                message: remote.message,
            }),
            Err(error) => Err(decode(format!(
                "the reply is not the expected result: {error}"
            ))),
        }
    }
}

impl<R: DeserializeOwned + 'static> IntoFuture for RpcCall<R> {
    type Output = Result<R, AmqpError>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.run())
    }
}

/// Removes a call from the waiting ones when it ends, however it ends.
struct Forget<'a> {
    pending: &'a Mutex<Pending>,
    id: &'a str,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(self.id);
    }
}
