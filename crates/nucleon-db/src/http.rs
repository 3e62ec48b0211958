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

#[cfg(test)]
mod tests {
    use super::*;
    use nucleon_http::IntoResponse;

    fn answer(error: DbError) -> (u16, Option<String>, serde_json::Value) {
        let response = HttpError::from(error).into_response();
        let retry = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        let status = response.status().as_u16();
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(http_body_util::BodyExt::collect(response.into_body()))
            .unwrap()
            .to_bytes();
        (status, retry, serde_json::from_slice(&body).unwrap())
    }

    #[test]
    fn each_error_answers_in_the_framework_s_shape() {
        let q = || "orders.by_id".to_owned();
        let (status, _, body) = answer(DbError::NotFound { query: q() });
        assert_eq!((status, body["error"].as_str()), (404, Some("NOT_FOUND")));
        let (status, _, body) = answer(DbError::Conflict {
            query: q(),
            constraint: Some("orders_pkey".into()),
            unique: true,
            message: "duplicate key".into(),
        });
        assert_eq!(status, 409);
        assert!(
            body["message"].as_str().unwrap().contains("orders_pkey"),
            "{body}"
        );
        let (status, retry, body) = answer(DbError::Unavailable {
            reason: "down".into(),
        });
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert_eq!(body["error"], "SERVICE_UNAVAILABLE");
        let (status, _, body) = answer(DbError::Timeout {
            query: q(),
            after: None,
        });
        assert_eq!((status, body["error"].as_str()), (504, Some("TIMEOUT")));
        let (status, _, body) = answer(DbError::BadQuery {
            query: q(),
            message: "syntax".into(),
        });
        assert_eq!(status, 500);
        assert!(
            !body.to_string().contains("syntax"),
            "details stay in the log: {body}"
        );
    }
}
