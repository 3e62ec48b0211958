//! `Message`: what is published: a body and its properties.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use serde::Serialize;

use crate::error::AmqpError;

/// `application/json`, the content type of [`Message::json`].
pub const JSON: &str = "application/json";

/// A message to publish: bytes or JSON, with its properties.
///
/// Messages are persistent (delivery mode 2) and mandatory (a message no queue takes is
/// an error, [`AmqpError::Returned`]) unless told otherwise, and carry a message id
/// unique to this process's life (consumers de-duplicate by it: delivery is at least
/// once).
///
/// ```
/// use std::time::Duration;
/// use nucleon_amqp::Message;
///
/// let message = Message::json(&serde_json::json!({"order": 42}))
///     .unwrap()
///     .header("tenant", "acme")
///     .expiration(Duration::from_secs(60))
///     .priority(5);
/// assert_eq!(message.body(), br#"{"order":42}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Message {
    body: Vec<u8>,
    properties: BasicProperties,
    headers: FieldTable,
    pub(crate) mandatory: bool,
}

impl Message {
    /// A message of raw bytes (`application/octet-stream` unless
    /// [`content_type`](Self::content_type) says otherwise).
    pub fn bytes(body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            properties: BasicProperties::default().with_delivery_mode(2),
            headers: FieldTable::default(),
            mandatory: true,
        }
    }

    /// A message whose body is `value` as JSON (`application/json`).
    ///
    /// # Errors
    /// [`AmqpError::Decode`] when `value` cannot be serialised (a map with non-string
    /// keys, say).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Self, AmqpError> {
        let body = serde_json::to_vec(value).map_err(|e| AmqpError::Decode {
            queue: "(publish)".into(),
            reason: format!("cannot serialise the message as JSON: {e}"),
        })?;
        Ok(Self::bytes(body).content_type(JSON))
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Sets the content type.
    pub fn content_type(mut self, content_type: &str) -> Self {
        self.properties = self.properties.with_content_type(content_type.into());
        self
    }

    /// Sets the correlation id (RPC replies carry their request's).
    pub fn correlation_id(mut self, id: &str) -> Self {
        self.properties = self.properties.with_correlation_id(id.into());
        self
    }

    /// Sets the message id (by default, one unique to this process's life).
    pub fn message_id(mut self, id: &str) -> Self {
        self.properties = self.properties.with_message_id(id.into());
        self
    }

    /// Sets the type (`basic.type`), free text for the consumer.
    pub fn kind(mut self, kind: &str) -> Self {
        self.properties = self.properties.with_type(kind.into());
        self
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<HeaderValue>) -> Self {
        self.headers.insert(name.into(), value.into().0);
        self
    }

    /// Discards the message if no consumer took it within `ttl` (`expiration`).
    pub fn expiration(mut self, ttl: Duration) -> Self {
        self.properties = self
            .properties
            .with_expiration(ttl.as_millis().to_string().into());
        self
    }

    /// Sets the priority (0–9 on a queue declared with a maximum priority).
    pub fn priority(mut self, priority: u8) -> Self {
        self.properties = self.properties.with_priority(priority);
        self
    }

    /// Not written to disk by the broker (delivery mode 1): lost if it restarts.
    pub fn transient(mut self) -> Self {
        self.properties = self.properties.with_delivery_mode(1);
        self
    }

    /// Whether a message no queue takes is an error (default) or dropped in silence
    /// (`false`: events nobody listens to).
    pub fn mandatory(mut self, mandatory: bool) -> Self {
        self.mandatory = mandatory;
        self
    }

    /// The message id, set to a fresh one if there is none yet.
    pub(crate) fn ensure_id(&mut self) -> ShortString {
        if let Some(id) = self.properties.message_id() {
            return id.clone();
        }
        let id: ShortString = next_id().into();
        self.properties = std::mem::take(&mut self.properties).with_message_id(id.clone());
        id
    }

    /// Adds the current trace context to the headers, unless the message has a
    /// `traceparent` of its own.
    pub(crate) fn add_trace_context(&mut self) {
        crate::trace::add_current(&mut self.headers);
    }

    /// The body, the properties as sent (a message id set, headers included) and the
    /// mandatory flag, taken apart without a copy (a publish's path).
    pub(crate) fn into_parts(mut self) -> (Vec<u8>, BasicProperties, bool) {
        self.ensure_id();
        let properties = if self.headers.inner().is_empty() {
            self.properties
        } else {
            self.properties.with_headers(self.headers)
        };
        (self.body, properties, self.mandatory)
    }

    /// The properties as sent (headers included).
    pub(crate) fn properties(&self) -> BasicProperties {
        if self.headers.inner().is_empty() {
            self.properties.clone()
        } else {
            self.properties.clone().with_headers(self.headers.clone())
        }
    }

    /// A message that keeps `properties` (headers included), for messages forwarded
    /// elsewhere (dead letters, retries), but for two of them. No `expiration`, as
    /// RabbitMQ's own dead-lettering does: a dead letter must wait to be looked at, not
    /// vanish with the original's time to live (and a retry waits its whole delay). No
    /// `user_id`: the broker checks it against the user of the connection that
    /// publishes, this service's, and would refuse the copy.
    pub(crate) fn forwarded(body: Vec<u8>, properties: &BasicProperties) -> Self {
        let p = properties;
        let mut kept = BasicProperties::default();
        if let Some(v) = p.content_type() {
            kept = kept.with_content_type(v.clone());
        }
        if let Some(v) = p.content_encoding() {
            kept = kept.with_content_encoding(v.clone());
        }
        if let Some(v) = *p.delivery_mode() {
            kept = kept.with_delivery_mode(v);
        }
        if let Some(v) = *p.priority() {
            kept = kept.with_priority(v);
        }
        if let Some(v) = p.correlation_id() {
            kept = kept.with_correlation_id(v.clone());
        }
        if let Some(v) = p.reply_to() {
            kept = kept.with_reply_to(v.clone());
        }
        if let Some(v) = p.message_id() {
            kept = kept.with_message_id(v.clone());
        }
        if let Some(v) = *p.timestamp() {
            kept = kept.with_timestamp(v);
        }
        if let Some(v) = p.kind() {
            kept = kept.with_type(v.clone());
        }
        if let Some(v) = p.app_id() {
            kept = kept.with_app_id(v.clone());
        }
        if let Some(v) = p.cluster_id() {
            kept = kept.with_cluster_id(v.clone());
        }
        Self {
            body,
            headers: p.headers().clone().unwrap_or_default(),
            properties: kept,
            mandatory: true,
        }
    }
}

/// A header's value: text, a number or a flag.
#[derive(Debug, Clone)]
pub struct HeaderValue(pub(crate) AMQPValue);

impl From<&str> for HeaderValue {
    fn from(value: &str) -> Self {
        Self(AMQPValue::LongString(LongString::from(value)))
    }
}

impl From<String> for HeaderValue {
    fn from(value: String) -> Self {
        Self(AMQPValue::LongString(LongString::from(value)))
    }
}

impl From<i64> for HeaderValue {
    fn from(value: i64) -> Self {
        Self(AMQPValue::LongLongInt(value))
    }
}

impl From<u32> for HeaderValue {
    fn from(value: u32) -> Self {
        Self(AMQPValue::LongLongInt(i64::from(value)))
    }
}

impl From<bool> for HeaderValue {
    fn from(value: bool) -> Self {
        Self(AMQPValue::Boolean(value))
    }
}

/// A header as text, if it is text.
pub(crate) fn header_text(headers: Option<&FieldTable>, name: &str) -> Option<String> {
    let value = headers?.inner().get(name)?;
    match value {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// A header as a count, if it is an integer.
pub(crate) fn header_count(headers: Option<&FieldTable>, name: &str) -> Option<u32> {
    let value = headers?.inner().get(name)?;
    let n = match *value {
        AMQPValue::LongLongInt(n) => n,
        AMQPValue::LongInt(n) => i64::from(n),
        AMQPValue::ShortInt(n) => i64::from(n),
        AMQPValue::LongUInt(n) => i64::from(n),
        AMQPValue::ShortShortInt(n) => i64::from(n),
        AMQPValue::ShortShortUInt(n) => i64::from(n),
        _ => return None,
    };
    u32::try_from(n).ok()
}

/// A message id unique to this process's life: a random prefix drawn once, and a
/// counter.
fn next_id() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(random_u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}-{n:x}")
}

/// 64 random bits from the standard library's per-instance hasher keys.
pub(crate) fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_kept() {
        let mut a = Message::bytes("x");
        let mut b = Message::bytes("x");
        assert_ne!(a.ensure_id(), b.ensure_id());
        let first = a.ensure_id();
        assert_eq!(a.ensure_id(), first, "an id once set stays");
        let mut named = Message::bytes("x").message_id("order-42");
        assert_eq!(named.ensure_id().as_str(), "order-42");
    }

    #[test]
    fn forwarded_copies_keep_all_but_expiration_and_user_id() {
        let original = Message::json(&1)
            .unwrap()
            .header("tenant", "acme")
            .priority(3)
            .correlation_id("c-1")
            .message_id("m-1")
            .kind("order")
            .expiration(Duration::from_secs(5))
            .properties()
            .with_user_id("alice".into());
        let copy = Message::forwarded(b"1".to_vec(), &original).properties();
        assert_eq!(*copy.expiration(), None);
        assert_eq!(*copy.user_id(), None);
        assert_eq!(*copy.delivery_mode(), Some(2));
        assert_eq!(*copy.priority(), Some(3));
        assert_eq!(copy.content_type().as_ref().unwrap().as_str(), JSON);
        assert_eq!(copy.correlation_id().as_ref().unwrap().as_str(), "c-1");
        assert_eq!(copy.message_id().as_ref().unwrap().as_str(), "m-1");
        assert_eq!(copy.kind().as_ref().unwrap().as_str(), "order");
        assert_eq!(
            header_text(copy.headers().as_ref(), "tenant").as_deref(),
            Some("acme")
        );
    }

    #[test]
    fn persistent_and_mandatory_by_default() {
        let message = Message::json(&[1, 2]).unwrap().header("attempt", 2_u32);
        let properties = message.properties();
        assert_eq!(*properties.delivery_mode(), Some(2));
        assert_eq!(properties.content_type().as_ref().unwrap().as_str(), JSON);
        assert_eq!(
            header_count(properties.headers().as_ref(), "attempt"),
            Some(2)
        );
        assert!(message.mandatory);
        assert!(!Message::bytes("x").mandatory(false).mandatory);
    }
}
