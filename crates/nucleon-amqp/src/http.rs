//! AMQP errors as HTTP answers (feature `http`).

use nucleon_http::{HttpError, StatusCode};

use crate::error::AmqpError;

/// The retry delay of a 503 for an unavailable broker, in seconds.
const RETRY_AFTER: u64 = 1;

impl From<AmqpError> for HttpError {
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After` when the broker or link is the
    /// cause (unreachable, lost, timed out, nacked, closing), 502 `REMOTE_ERROR` for an
    /// RPC whose remote side failed, 500 (details in the log) for the rest: a returned,
    /// refused or undecodable message is the service's own mistake.
    fn from(error: AmqpError) -> Self {
        match &error {
            e if e.is_transient() => HttpError::unavailable(error.to_string(), RETRY_AFTER),
            AmqpError::Remote { .. } => {
                HttpError::new(StatusCode::BAD_GATEWAY, "REMOTE_ERROR", error.to_string())
            }
            _ => HttpError::internal(error.to_string()),
        }
    }
}
