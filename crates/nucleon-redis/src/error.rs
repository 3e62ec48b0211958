//! Redis's errors, as a user can act on them.

use std::time::Duration;

/// Why a Redis call (or the adapter's start) failed.
///
/// Messages name the command (`GET`, `SET`…) and where Redis is (`cache.internal:6379`),
/// never the keys, the values, or the URL's password. With the `http` feature, a handler
/// returns it with `?`: the client gets 503 for [`Unavailable`](RedisError::Unavailable)
/// and [`Timeout`](RedisError::Timeout), 500 for the others.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RedisError {
    /// A connection that redis-rs cannot set up from settings that passed their checks.
    #[error("{0}")]
    Config(String),
    /// Redis cannot be reached: refused, lost, or its name does not resolve. The
    /// connection manager reconnects by itself; a later call may succeed.
    #[error("Redis at {target} is unavailable: {reason}")]
    Unavailable {
        /// Where: `host:port`, or the socket's path.
        target: String,
        /// What happened.
        reason: String,
    },
    /// No answer within `redis.command_timeout` (or the time limit given), a wait for
    /// a reconnection included. The command may or may not have run.
    #[error("{command}: no answer from Redis at {target} within {after:?}")]
    Timeout {
        /// The command (`GET`).
        command: String,
        /// Where.
        target: String,
        /// The limit.
        after: Duration,
    },
    /// Redis answered with an error (`WRONGTYPE`, `NOPERM`, `OOM`, a wrong password…).
    #[error("{command}: Redis answered {}{message}", code.as_deref().map(|c| format!("{c} ")).unwrap_or_default())]
    Refused {
        /// The command.
        command: String,
        /// The error's code (`WRONGTYPE`), when it has one.
        code: Option<String>,
        /// The rest of Redis's message.
        message: String,
    },
    /// The reply does not fit the type asked for (a string read as a number).
    #[error("{command}: the reply does not fit the type asked for: {message}")]
    Type {
        /// The command.
        command: String,
        /// redis-rs's account of the mismatch.
        message: String,
    },
    /// A JSON value (`get_json`/`set_json`) that does not (de)serialize.
    #[error("{command}: the value is not the JSON expected: {source}")]
    Json {
        /// The command.
        command: String,
        /// serde's error.
        source: serde_json::Error,
    },
}

impl RedisError {
    /// Whether Redis could not be reached or did not answer in time (the cases a
    /// cache may shrug off), as opposed to an answer it gave.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            RedisError::Unavailable { .. } | RedisError::Timeout { .. }
        )
    }

    /// The HTTP status this error answers with (feature `http`): 503 when Redis is
    /// unavailable or slow, 500 otherwise.
    pub fn status(&self) -> u16 {
        if self.is_unavailable() { 503 } else { 500 }
    }

    /// Types redis-rs's error for `command` on `target`
    /// (`after`: the time limit, should it be a timeout).
    pub(crate) fn from_redis(
        command: &str,
        target: &str,
        after: Duration,
        error: &redis::RedisError,
    ) -> Self {
        use redis::ErrorKind;
        let command = command.to_owned();
        if error.is_timeout() {
            return RedisError::Timeout {
                command,
                target: target.to_owned(),
                after,
            };
        }
        // A reply of another type first: redis-rs counts it as a parse error, which
        // "needs a reconnection" were it the protocol's.
        if matches!(
            error.kind(),
            ErrorKind::UnexpectedReturnType | ErrorKind::Parse
        ) {
            return RedisError::Type {
                command,
                // Its description, without the value it quotes.
                message: error
                    .detail()
                    .unwrap_or(error.category())
                    .split(" (value was")
                    .next()
                    .unwrap_or_default()
                    .trim_matches('"')
                    .to_owned(),
            };
        }
        if error.kind() == ErrorKind::AuthenticationFailed {
            return RedisError::Refused {
                command,
                code: error.code().map(str::to_owned),
                message: "authentication failed: check the user and password of redis.url"
                    .to_owned(),
            };
        }
        if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_unrecoverable_error()
        {
            return RedisError::Unavailable {
                target: target.to_owned(),
                reason: format!("{command}: {error}"),
            };
        }
        RedisError::Refused {
            command,
            code: error.code().map(str::to_owned),
            message: error
                .detail()
                .map_or_else(|| error.category().to_owned(), str::to_owned),
        }
    }
}
