//! Redis errors as HTTP answers (feature `http`).

use nucleon_http::HttpError;

use crate::error::RedisError;

/// The retry delay of a 503 for an unavailable Redis, in seconds.
const RETRY_AFTER: u64 = 1;

impl From<RedisError> for HttpError {
    /// 503 `SERVICE_UNAVAILABLE` with `Retry-After` when Redis is unavailable or did not
    /// answer in time (the details, which name the host, go to the log, not to the
    /// client); 500 `INTERNAL_ERROR` otherwise (its cause in the log).
    fn from(error: RedisError) -> Self {
        if error.is_unavailable() {
            tracing::warn!(target: "nucleon::redis", %error, "answering 503: {error}");
            HttpError::unavailable("a service this one needs is unavailable", RETRY_AFTER)
        } else {
            HttpError::internal(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unavailable_answers_503_without_the_host() {
        let error = HttpError::from(RedisError::Timeout {
            command: "GET".into(),
            target: "cache.internal:6379".into(),
            after: Duration::from_secs(1),
        });
        assert_eq!(error.status().as_u16(), 503);
        assert!(
            !error.message().contains("cache.internal"),
            "{}",
            error.message()
        );
        let error = HttpError::from(RedisError::Refused {
            command: "INCRBY".into(),
            code: Some("ERR".into()),
            message: "value is not an integer".into(),
        });
        assert_eq!(error.status().as_u16(), 500);
    }
}
