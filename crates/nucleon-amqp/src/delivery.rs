//! `Delivery`: a message as a consumer receives it, and the extractors that turn it
//! into a handler's arguments (`Msg<T>`, `Headers`, handles).

use std::sync::Arc;

use lapin::BasicProperties;
use lapin::types::FieldTable;
use nucleon_runtime::HandleKey;
use nucleon_runtime::handle::{Dep, HandleName, Named};
use serde::de::DeserializeOwned;

use crate::message::{header_count, header_text};

/// The header holding how many times a message was tried before (retries).
pub const ATTEMPTS_HEADER: &str = "x-nucleon-attempts";
/// The header holding why a message was dead-lettered.
pub const ERROR_HEADER: &str = "x-nucleon-error";
/// The header holding the queue a dead-lettered message came from.
pub const QUEUE_HEADER: &str = "x-nucleon-queue";

/// A message as received: body, properties, where it came from. Cheap to clone.
///
/// As a handler argument it gives the raw message; [`Msg`] gives its body decoded.
#[derive(Clone)]
pub struct Delivery(pub(crate) Arc<Received>);

pub(crate) struct Received {
    pub(crate) queue: Arc<str>,
    pub(crate) exchange: String,
    pub(crate) routing_key: String,
    pub(crate) redelivered: bool,
    pub(crate) properties: BasicProperties,
    pub(crate) body: Vec<u8>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue())
            .field("exchange", &self.exchange())
            .field("routing_key", &self.routing_key())
            .field("redelivered", &self.redelivered())
            .field("bytes", &self.body().len())
            .finish()
    }
}

impl Delivery {
    /// The queue it was consumed from.
    pub fn queue(&self) -> &str {
        &self.0.queue
    }

    /// The exchange it was published to (`""`: the default exchange).
    pub fn exchange(&self) -> &str {
        &self.0.exchange
    }

    /// Its routing key (an event's name, for events).
    pub fn routing_key(&self) -> &str {
        &self.0.routing_key
    }

    /// Whether the broker delivered it before (to a consumer that did not ack it).
    pub fn redelivered(&self) -> bool {
        self.0.redelivered
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.0.body
    }

    /// All properties (content type, headers, priority…).
    pub fn properties(&self) -> &BasicProperties {
        &self.0.properties
    }

    /// The message id (set by every Nucleon publisher): the key to de-duplicate by.
    pub fn message_id(&self) -> Option<&str> {
        self.0
            .properties
            .message_id()
            .as_ref()
            .map(|id| id.as_str())
    }

    /// The correlation id.
    pub fn correlation_id(&self) -> Option<&str> {
        self.0
            .properties
            .correlation_id()
            .as_ref()
            .map(|id| id.as_str())
    }

    /// A header, as text (`None` if absent or not text).
    pub fn header(&self, name: &str) -> Option<String> {
        header_text(self.0.properties.headers().as_ref(), name)
    }

    /// The trace context the message carries (`traceparent`/`tracestate` headers), as
    /// this hop's: the same trace, a new span under the publisher's. Consumers' handlers
    /// already run inside it; a [`Subscription`](crate::Subscription)'s reader scopes
    /// its handling with `nucleon_runtime::trace::scope(message.trace_context(), …)`.
    pub fn trace_context(&self) -> Option<nucleon_runtime::trace::TraceContext> {
        crate::trace::received(self.0.properties.headers().as_ref())
    }

    /// How many times this message was tried before this delivery (retries after a
    /// delay; 0 the first time).
    pub fn attempts(&self) -> u32 {
        header_count(self.0.properties.headers().as_ref(), ATTEMPTS_HEADER).unwrap_or(0)
    }
}

/// Why a delivery could not become a handler's arguments: it goes to the dead-letter
/// exchange with this reason in a header (or back to the caller, for an RPC).
#[derive(Debug, Clone)]
pub struct Rejection {
    /// The reason.
    pub reason: String,
}

/// A handler argument made from a delivery.
///
/// Implemented for [`Msg<T>`], [`Delivery`], [`Headers`], and handles (`Dep<T>`,
/// `Named<T, N>`); implement it for your own.
pub trait FromDelivery: Sized {
    /// Makes the argument.
    ///
    /// # Errors
    /// A [`Rejection`]: the message is dead-lettered with its reason.
    fn from_delivery(delivery: &Delivery) -> Result<Self, Rejection>;

    /// The adapter handles this argument needs (checked at start).
    fn required_handles(needs: &mut Vec<HandleKey>) {
        let _ = needs;
    }
}

/// The body, decoded from JSON as `T`. A body that is not a `T` is not retried: it goes
/// to the dead-letter exchange, with the decoder's error in the `x-nucleon-error`
/// header.
#[derive(Debug, Clone)]
pub struct Msg<T>(pub T);

impl<T: DeserializeOwned> FromDelivery for Msg<T> {
    fn from_delivery(delivery: &Delivery) -> Result<Self, Rejection> {
        serde_json::from_slice(delivery.body())
            .map(Msg)
            .map_err(|e| Rejection {
                reason: format!("the body is not the JSON expected: {e}"),
            })
    }
}

impl FromDelivery for Delivery {
    fn from_delivery(delivery: &Delivery) -> Result<Self, Rejection> {
        Ok(delivery.clone())
    }
}

/// The message's headers.
#[derive(Debug, Clone, Default)]
pub struct Headers(pub FieldTable);

impl Headers {
    /// A header, as text.
    pub fn get(&self, name: &str) -> Option<String> {
        header_text(Some(&self.0), name)
    }
}

impl FromDelivery for Headers {
    fn from_delivery(delivery: &Delivery) -> Result<Self, Rejection> {
        Ok(Headers(
            delivery.properties().headers().clone().unwrap_or_default(),
        ))
    }
}

impl<T: Clone + 'static> FromDelivery for Dep<T> {
    fn from_delivery(_delivery: &Delivery) -> Result<Self, Rejection> {
        Dep::current().ok_or_else(|| missing(&Dep::<T>::key()))
    }

    fn required_handles(needs: &mut Vec<HandleKey>) {
        needs.push(Dep::<T>::key());
    }
}

impl<T: Clone + 'static, N: HandleName> FromDelivery for Named<T, N> {
    fn from_delivery(_delivery: &Delivery) -> Result<Self, Rejection> {
        Named::current().ok_or_else(|| missing(&Named::<T, N>::key()))
    }

    fn required_handles(needs: &mut Vec<HandleKey>) {
        needs.push(Named::<T, N>::key());
    }
}

fn missing(key: &HandleKey) -> Rejection {
    Rejection {
        reason: format!("no adapter gives `{key}` on this worker"),
    }
}
