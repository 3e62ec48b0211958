//! Turning handler results into responses, errors ([`HttpError`]) included.

use std::collections::BTreeMap;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, StatusCode};
use serde::Serialize;

use crate::Body;
use crate::error::{BodyLeftUnread, HttpError, InternalCause};

/// The response type of handlers and services.
pub type Response<B = Body> = http::Response<B>;

/// Anything a handler may return.
///
/// Implemented for [`Response`], [`Json`], [`HttpError`], [`StatusCode`], strings and
/// bytes, `()` (204), `(StatusCode, T)`, `(StatusCode, HeaderMap, T)`, `Option<T>` (`None`
/// is a 404) and `Result<T, E>` where both sides are responses.
pub trait IntoResponse {
    /// Builds the response.
    fn into_response(self) -> Response;
}

/// A JSON value, as a response (`application/json`) or an extracted request body.
///
/// ```
/// use nucleon_http::{IntoResponse, Json};
///
/// let response = Json(serde_json::json!({"code": "gb"})).into_response();
/// assert_eq!(response.headers()["content-type"], "application/json");
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json<T>(pub T);

pub(crate) fn json_response<T: Serialize + ?Sized>(status: StatusCode, value: &T) -> Response {
    match serde_json::to_vec(value) {
        Ok(bytes) => {
            let mut response = http::Response::new(Body::from(bytes));
            *response.status_mut() = status;
            response
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(error) => unserializable(&error),
    }
}

/// The 500 for a response body serde could not serialize.
#[cold]
#[inline(never)]
fn unserializable(error: &serde_json::Error) -> Response {
    HttpError::internal(format_args!("cannot serialize the response: {error}")).into_response()
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        json_response(StatusCode::OK, &self.0)
    }
}

impl IntoResponse for Response {
    fn into_response(self) -> Response {
        self
    }
}

/// An [`HttpError`]'s JSON body: `{"error":"…","message":"…"}`, and `messages` by
/// field when it has them.
#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    messages: Option<&'a BTreeMap<String, String>>,
}

/// The error's status, its JSON body and its headers; its cause (for the log) and an
/// unread body (for the connection) travel in the response's extensions.
impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: &self.code,
            message: &self.message,
            messages: self.messages.as_ref(),
        };
        let mut response = json_response(self.status, &body);
        if let Some(headers) = self.headers {
            response.headers_mut().extend(*headers);
        }
        if let Some(cause) = self.cause {
            response.extensions_mut().insert(InternalCause(cause));
        }
        if self.body_left_unread {
            response.extensions_mut().insert(BodyLeftUnread);
        }
        response
    }
}

/// A success, informational or redirection status has an empty body; an error status
/// (4xx, 5xx) has the standard JSON error body, its code from the status's canonical
/// reason: `StatusCode::NOT_FOUND` answers `{"error":"NOT_FOUND","message":"Not Found"}`.
/// The framework's own codes are kept where they differ from the reason: 500 is
/// `INTERNAL_ERROR` (and is logged), 431 `HEADERS_TOO_LARGE`.
///
/// ```
/// use nucleon_http::{IntoResponse, StatusCode};
///
/// let response = StatusCode::CONFLICT.into_response();
/// assert_eq!(response.headers()["content-type"], "application/json");
/// assert!(http_body::Body::is_end_stream(StatusCode::NO_CONTENT.into_response().body()));
/// ```
impl IntoResponse for StatusCode {
    fn into_response(self) -> Response {
        if self.is_client_error() || self.is_server_error() {
            return status_error(self).into_response();
        }
        let mut response = Response::new(Body::empty());
        *response.status_mut() = self;
        response
    }
}

/// The standard error for a bare error status.
fn status_error(status: StatusCode) -> HttpError {
    match status {
        StatusCode::INTERNAL_SERVER_ERROR => HttpError::internal(
            "the handler answered a bare 500 (StatusCode::INTERNAL_SERVER_ERROR)",
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => HttpError::new(
            status,
            "HEADERS_TOO_LARGE",
            "Request Header Fields Too Large",
        ),
        _ => match status.canonical_reason() {
            Some(reason) => {
                let code: String = reason
                    .chars()
                    .map(|c| {
                        if c.is_ascii_alphanumeric() {
                            c.to_ascii_uppercase()
                        } else {
                            '_'
                        }
                    })
                    .collect();
                HttpError::new(status, code, reason)
            }
            None => HttpError::new(status, "ERROR", format!("HTTP status {}", status.as_u16())),
        },
    }
}

impl IntoResponse for () {
    fn into_response(self) -> Response {
        StatusCode::NO_CONTENT.into_response()
    }
}

fn text(body: Body, content_type: &'static str) -> Response {
    let mut response = Response::new(body);
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

impl IntoResponse for &'static str {
    fn into_response(self) -> Response {
        text(self.into(), "text/plain; charset=utf-8")
    }
}

impl IntoResponse for String {
    fn into_response(self) -> Response {
        text(self.into(), "text/plain; charset=utf-8")
    }
}

impl IntoResponse for Bytes {
    fn into_response(self) -> Response {
        text(self.into(), "application/octet-stream")
    }
}

impl IntoResponse for Vec<u8> {
    fn into_response(self) -> Response {
        text(self.into(), "application/octet-stream")
    }
}

impl IntoResponse for Body {
    fn into_response(self) -> Response {
        Response::new(self)
    }
}

/// `T`'s response under another status; the body is `T`'s as it is, so
/// `(StatusCode::BAD_GATEWAY, HttpError::internal(e))` answers 502 with the body's
/// `INTERNAL_ERROR` code (as axum's tuple does). For another code, build the error
/// with it: `HttpError::new(StatusCode::BAD_GATEWAY, "UPSTREAM_FAILED", "…")`.
impl<T: IntoResponse> IntoResponse for (StatusCode, T) {
    fn into_response(self) -> Response {
        let mut response = self.1.into_response();
        *response.status_mut() = self.0;
        response
    }
}

impl<T: IntoResponse> IntoResponse for (StatusCode, HeaderMap, T) {
    fn into_response(self) -> Response {
        let mut response = self.2.into_response();
        *response.status_mut() = self.0;
        response.headers_mut().extend(self.1);
        response
    }
}

impl<T: IntoResponse> IntoResponse for Option<T> {
    fn into_response(self) -> Response {
        match self {
            Some(value) => value.into_response(),
            None => HttpError::not_found("not found").into_response(),
        }
    }
}

impl<T: IntoResponse, E: IntoResponse> IntoResponse for Result<T, E> {
    fn into_response(self) -> Response {
        match self {
            Ok(value) => value.into_response(),
            Err(error) => error.into_response(),
        }
    }
}
