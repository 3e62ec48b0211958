//! What the pipeline does around a route's future: its time limit, and a HEAD request's
//! body dropped.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use http::StatusCode;
use http::header::{CONTENT_LENGTH, HeaderValue, RETRY_AFTER};
use pin_project_lite::pin_project;
use tokio::time::Sleep;

use crate::response::{IntoResponse, Response};
use crate::{Body, HttpError};

/// A route's limits: its time limit (`None`: none), and whether it answers a HEAD with
/// its GET handler.
#[derive(Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) timeout: Option<Duration>,
    /// A HEAD served by the GET handler: drop the body.
    pub(crate) head: bool,
}

impl Limits {
    pub(crate) const NONE: Limits = Limits {
        timeout: None,
        head: false,
    };

    /// Runs `future` within these limits; past its time limit it answers 503 `TIMEOUT`
    /// with `Retry-After: retry_after`.
    pub(crate) fn run<F: Future<Output = Response>>(
        self,
        future: F,
        retry_after: u64,
    ) -> Limited<F> {
        Limited {
            future,
            // On the heap, and only for a route that has a limit: a timer is large,
            // and every request's future would carry one.
            deadline: self
                .timeout
                .map(|limit| Box::pin(tokio::time::sleep(limit))),
            limits: self,
            retry_after,
        }
    }
}

pin_project! {
    /// A route's future within its [`Limits`].
    pub(crate) struct Limited<F> {
        #[pin]
        future: F,
        deadline: Option<Pin<Box<Sleep>>>,
        limits: Limits,
        retry_after: u64,
    }
}

impl<F: Future<Output = Response>> Future for Limited<F> {
    type Output = Response;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Response> {
        let this = self.project();
        // The response is left where the future put it (a move copies 152 bytes).
        let mut polled = this.future.poll(cx);
        if polled.is_pending() {
            let Some(deadline) = this.deadline else {
                return Poll::Pending;
            };
            ready!(deadline.as_mut().poll(cx));
            let limit = this.limits.timeout.unwrap_or_default();
            polled = Poll::Ready(handler_timeout(limit, *this.retry_after).into_response());
        }
        if this.limits.head
            && let Poll::Ready(response) = &mut polled
        {
            strip_body(response);
        }
        polled
    }
}

/// A handler ran past its time limit: the server's own failure to answer in time, not
/// the client's (that is 408 `REQUEST_TIMEOUT`, for headers that arrive too slowly), so
/// 503 with `Retry-After` (`http.retry_after` seconds): worth retrying, maybe on
/// another instance.
fn handler_timeout(limit: Duration, retry_after: u64) -> HttpError {
    HttpError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "TIMEOUT",
        format!("the request took longer than its limit of {limit:?}"),
    )
    .with_header(RETRY_AFTER, HeaderValue::from(retry_after))
}

/// Drops a body for a HEAD response, keeping its length.
pub(crate) fn strip_body(response: &mut Response) {
    if let Some(length) = http_body::Body::size_hint(response.body()).exact() {
        response
            .headers_mut()
            .entry(CONTENT_LENGTH)
            .or_insert_with(|| HeaderValue::from(length));
    }
    *response.body_mut() = Body::empty();
}
