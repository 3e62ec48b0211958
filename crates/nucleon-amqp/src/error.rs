//! `AmqpError`: what can go wrong talking to the broker, named so a caller can act.

use std::time::Duration;

/// An AMQP operation's failure. Messages name the exchange, queue or routing key
/// involved, never the broker's password.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AmqpError {
    /// The broker could not be reached (at start, or for longer than an operation's
    /// timeout while reconnecting).
    #[error("the broker at {broker} is unreachable: {reason}")]
    Unreachable {
        /// Host, port and vhost.
        broker: String,
        /// The last connection error.
        reason: String,
    },
    /// A mandatory message no queue took: the broker returned it.
    #[error(
        "message to exchange `{exchange}` with routing key `{routing_key}` was returned by the broker: {reply} (no queue is bound for it)"
    )]
    Returned {
        /// The exchange it was published to (`""`: the default exchange).
        exchange: String,
        /// Its routing key.
        routing_key: String,
        /// The broker's reply text (`NO_ROUTE`).
        reply: String,
    },
    /// The broker refused responsibility for the message (a `basic.nack`): it may not
    /// have been stored. Publishing it again is safe (consumers de-duplicate by id).
    #[error(
        "the broker nacked the message to exchange `{exchange}` with routing key `{routing_key}`"
    )]
    Nacked {
        /// The exchange.
        exchange: String,
        /// The routing key.
        routing_key: String,
    },
    /// An operation took longer than its limit.
    #[error("{what} timed out after {after:?}")]
    Timeout {
        /// What timed out (`publish to exchange `orders``, `rpc `primes``).
        what: String,
        /// The limit.
        after: Duration,
    },
    /// The link to the broker dropped while the operation was under way (an RPC call in
    /// flight, a transaction): its outcome is unknown.
    #[error("the connection to the broker was lost during {what}; its outcome is unknown")]
    ConnectionLost {
        /// The operation.
        what: String,
    },
    /// A message that could not be read as what its consumer expects.
    #[error("undecodable message on `{queue}`: {reason}")]
    Decode {
        /// The queue, or `rpc <name>` for a reply.
        queue: String,
        /// The decoder's error.
        reason: String,
    },
    /// The remote side of an RPC call failed; `kind` and `message` are its error's.
    #[error("rpc `{rpc}` failed remotely: {kind}: {message}")]
    Remote {
        /// The procedure called.
        rpc: String,
        /// The remote error's type (`NotFound`, `Decode`, `Panic`…).
        kind: String,
        /// The remote error's message.
        message: String,
    },
    /// The broker refused an operation (a missing exchange or queue, a declaration
    /// that conflicts with an existing one, access refused).
    #[error("the broker refused {what}: {reason}")]
    Refused {
        /// The operation (`publish to exchange `orders``, `declare queue `jobs``).
        what: String,
        /// The broker's reply.
        reason: String,
    },
    /// The service is stopping: no new messages are taken.
    #[error("the AMQP connection is closing: {what} was not done")]
    Closing {
        /// The operation.
        what: String,
    },
    /// Bad `[<env>.amqp]` settings, or no connection adapter where one is needed.
    #[error("{0}")]
    Config(String),
}

impl AmqpError {
    /// Whether trying again later may succeed: the link or the broker is the cause,
    /// or the receiving side is not there yet (a message returned because no queue
    /// takes it; an RPC nobody serves), not the message itself.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Unreachable { .. }
                | Self::Returned { .. }
                | Self::Timeout { .. }
                | Self::ConnectionLost { .. }
                | Self::Nacked { .. }
                | Self::Closing { .. }
        )
    }
}

/// Whether a lapin error is about the link (the connection is lost or closing), as
/// opposed to one channel's operation refused by the broker.
pub(crate) fn is_link_error(error: &lapin::Error) -> bool {
    use lapin::ErrorKind;
    match error.kind() {
        ErrorKind::ProtocolError(amqp) => {
            matches!(amqp.kind(), lapin::protocol::AMQPErrorKind::Hard(_))
        }
        ErrorKind::InvalidChannelState(..) => false,
        _ => true,
    }
}

/// The broker's reply in a lapin error, for messages.
pub(crate) fn reason(error: &lapin::Error) -> String {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.to_string(),
        _ => error.to_string(),
    }
}
