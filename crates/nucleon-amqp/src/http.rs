//! AMQP errors as HTTP answers (feature `http`).

use nucleon_http::{HttpError, StatusCode};

use crate::error::AmqpError;

/// The retry delay of a 503 for an unavailable broker, in seconds.
const RETRY_AFTER: u64 = 1;

impl From<AmqpError> for HttpError {
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After` when the broker, the link or the
    /// receiving side is the cause (unreachable, lost, timed out, nacked, closing, a
    /// message no queue takes, an RPC nobody serves), 502 `REMOTE_ERROR` for an RPC
    /// whose remote side failed, 500 (details in the log) for the rest: a refused or
    /// undecodable message is the service's own mistake.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_receiving_side_missing_is_a_503_and_a_remote_failure_a_502() {
        let nobody = AmqpError::Returned {
            exchange: String::new(),
            routing_key: "rpc.primes".into(),
            reply: "NO_ROUTE".into(),
        };
        assert_eq!(
            HttpError::from(nobody).status(),
            StatusCode::SERVICE_UNAVAILABLE
        );
        let remote = AmqpError::Remote {
            rpc: "primes".into(),
            kind: "Overflow".into(),
            message: "too big".into(),
        };
        assert_eq!(HttpError::from(remote).status(), StatusCode::BAD_GATEWAY);
        let refused = AmqpError::Refused {
            what: "publish to exchange `x`".into(),
            reason: "NOT_FOUND".into(),
        };
        assert_eq!(
            HttpError::from(refused).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }
}
