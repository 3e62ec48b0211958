//! Database errors as HTTP answers (feature `http`).

use nucleon_http::{HttpError, StatusCode};

use crate::error::DbError;

/// The retry delay of a 503 for an unavailable database, in seconds.
const RETRY_AFTER: u64 = 1;

impl From<DbError> for HttpError {
    /// 404 `NOT_FOUND`, 409 `CONFLICT` (naming the constraint), 503
    /// `SERVICE_UNAVAILABLE` with `Retry-After`, 504 `TIMEOUT`, 500 `INTERNAL_ERROR`
    /// (whose details go to the log, not to the client).
    fn from(error: DbError) -> Self {
        let status =
            StatusCode::from_u16(error.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        match status {
            StatusCode::SERVICE_UNAVAILABLE => {
                HttpError::unavailable(error.to_string(), RETRY_AFTER)
            }
            StatusCode::INTERNAL_SERVER_ERROR => HttpError::internal(error.to_string()),
            _ => HttpError::new(status, error.code(), error.to_string()),
        }
    }
}
