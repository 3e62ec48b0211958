//! The one body type of requests and responses.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::{BoxError, HttpError, StatusCode};

/// A request or response body: empty, a buffer, a request's incoming stream, or any
/// other [`http_body::Body`] (boxed).
///
/// ```
/// use nucleon_http::Body;
///
/// let body = Body::from("hello");
/// assert_eq!(http_body::Body::size_hint(&body).exact(), Some(5));
/// ```
#[derive(Debug, Default)]
pub struct Body(Kind);

#[derive(Debug, Default)]
enum Kind {
    #[default]
    Empty,
    Full(Option<Bytes>),
    Incoming(hyper::body::Incoming),
    Boxed(UnsyncBoxBody<Bytes, BoxError>),
    /// A request body capped at the body limit.
    Limited(Box<Limited<Body>>),
}

impl Body {
    /// An empty body.
    pub fn empty() -> Self {
        Self(Kind::Empty)
    }

    /// Wraps any body whose data is [`Bytes`].
    pub fn new<B>(body: B) -> Self
    where
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        // Avoid double wrapping.
        let mut slot = Some(body);
        if let Some(body) = (&mut slot as &mut dyn std::any::Any).downcast_mut::<Option<Body>>() {
            return body.take().unwrap_or_default();
        }
        let body = slot.take().expect("set above");
        Self(Kind::Boxed(body.map_err(Into::into).boxed_unsync()))
    }

    /// Collects the whole body into one buffer, reading at most `limit` bytes (a
    /// request's is `http.body_limit`: client input must never grow memory unbounded).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use nucleon_http::{Body, StatusCode};
    ///
    /// assert_eq!(Body::from("hello").collect_bytes(5).await.unwrap(), "hello");
    /// let error = Body::from("hello").collect_bytes(4).await.unwrap_err();
    /// assert_eq!(error.status(), StatusCode::PAYLOAD_TOO_LARGE);
    /// # });
    /// ```
    ///
    /// # Errors
    /// 413 `PAYLOAD_TOO_LARGE` past `limit` (at once when the declared length is past
    /// it); 400 `BAD_REQUEST` when reading fails (the client went away…).
    pub async fn collect_bytes(self, limit: usize) -> Result<Bytes, HttpError> {
        if http_body::Body::size_hint(&self).lower() > limit as u64 {
            return Err(HttpError::payload_too_large(limit));
        }
        match self.0 {
            Kind::Empty => Ok(Bytes::new()),
            Kind::Full(bytes) => Ok(bytes.unwrap_or_default()),
            _ => match Limited::new(self, limit).collect().await {
                Ok(collected) => Ok(collected.to_bytes()),
                Err(error) => Err(read_error(&error, limit)),
            },
        }
    }

    /// Caps the body at `limit` bytes: reading past it fails with
    /// [`LengthLimitError`]. A body known to fit is left as it is; a capped one keeps
    /// its cap.
    ///
    /// # Errors
    /// 413 `PAYLOAD_TOO_LARGE` when the declared length is already past `limit`.
    pub(crate) fn limited(self, limit: usize) -> Result<Self, HttpError> {
        let hint = http_body::Body::size_hint(&self);
        if hint.lower() > limit as u64 {
            return Err(HttpError::payload_too_large(limit));
        }
        if matches!(self.0, Kind::Limited(_)) || hint.upper().is_some_and(|n| n <= limit as u64) {
            return Ok(self);
        }
        Ok(Self(Kind::Limited(Box::new(Limited::new(self, limit)))))
    }
}

impl Body {
    /// A body that comes as a stream (its frames are not all at hand).
    pub(crate) fn is_streaming(&self) -> bool {
        matches!(
            self.0,
            Kind::Incoming(_) | Kind::Boxed(_) | Kind::Limited(_)
        )
    }

    /// This body, counted by `guard` until it is dropped (boxed: the streaming case
    /// pays for it, not every body's `match`).
    pub(crate) fn sending(self, guard: crate::server::conn::SendingBody) -> Self {
        Self(Kind::Boxed(
            Sending {
                body: self,
                _guard: guard,
            }
            .boxed_unsync(),
        ))
    }
}

/// A streaming response body on its way out, counted by its connection while it lasts
/// (the connection's idle limit waits for it).
struct Sending {
    body: Body,
    _guard: crate::server::conn::SendingBody,
}

impl http_body::Body for Sending {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

impl Body {
    /// A request's body as the server receives it: reading it fails with
    /// [`BodyReadTimeout`] when no byte of it arrives for `idle_limit` while it is
    /// awaited (`http.body_read_timeout`). A request without a body (most `GET`s) is
    /// left as it is; one with a body is boxed with its timer's state.
    pub(crate) fn request(body: hyper::body::Incoming, idle_limit: Duration) -> Self {
        if http_body::Body::is_end_stream(&body) {
            return Self(Kind::Incoming(body));
        }
        Self(Kind::Boxed(
            TimedIncoming {
                body,
                idle_limit,
                timer: None,
            }
            .boxed_unsync(),
        ))
    }
}

/// A request's body from hyper, and how long it may keep its reader waiting for the
/// next frame.
struct TimedIncoming {
    body: hyper::body::Incoming,
    idle_limit: Duration,
    /// Armed while a read waits (so only a body that makes its reader wait has a
    /// timer); dropped when a frame arrives.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl http_body::Body for TimedIncoming {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            this.timer = None;
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        let limit = this.idle_limit;
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.timer = None;
        Poll::Ready(Some(Err(Box::new(BodyReadTimeout { after: limit }))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// A request's body stopped arriving: nothing for `after` (`http.body_read_timeout`)
/// while it was read. The extractors answer it with 408 `REQUEST_TIMEOUT`.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the request body stopped arriving: no byte for {after:?} (http.body_read_timeout)")]
pub struct BodyReadTimeout {
    /// How long the reader waited.
    pub after: Duration,
}

/// The answer for a body that could not be read within `limit`.
pub(crate) fn read_error(error: &BoxError, limit: usize) -> HttpError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error.as_ref());
    while let Some(error) = source {
        if error.is::<LengthLimitError>() {
            return HttpError::payload_too_large(limit);
        }
        if let Some(timeout) = error.downcast_ref::<BodyReadTimeout>() {
            let mut error = HttpError::new(
                StatusCode::REQUEST_TIMEOUT,
                "REQUEST_TIMEOUT",
                timeout.to_string(),
            );
            error.body_left_unread = true;
            return error;
        }
        source = error.source();
    }
    HttpError::bad_request(format!("cannot read the request body: {error}"))
}

impl From<hyper::body::Incoming> for Body {
    fn from(body: hyper::body::Incoming) -> Self {
        Self(Kind::Incoming(body))
    }
}

impl From<Bytes> for Body {
    fn from(bytes: Bytes) -> Self {
        if bytes.is_empty() {
            Self::empty()
        } else {
            Self(Kind::Full(Some(bytes)))
        }
    }
}

impl From<Vec<u8>> for Body {
    fn from(bytes: Vec<u8>) -> Self {
        Bytes::from(bytes).into()
    }
}

impl From<String> for Body {
    fn from(text: String) -> Self {
        Bytes::from(text).into()
    }
}

impl From<&'static str> for Body {
    fn from(text: &'static str) -> Self {
        Bytes::from_static(text.as_bytes()).into()
    }
}

impl From<&'static [u8]> for Body {
    fn from(bytes: &'static [u8]) -> Self {
        Bytes::from_static(bytes).into()
    }
}

impl From<()> for Body {
    fn from((): ()) -> Self {
        Self::empty()
    }
}

impl http_body::Body for Body {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        match &mut self.0 {
            Kind::Empty => Poll::Ready(None),
            Kind::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            Kind::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Kind::Boxed(body) => Pin::new(body).poll_frame(cx),
            Kind::Limited(body) => Pin::new(&mut **body).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Kind::Empty => true,
            Kind::Full(bytes) => bytes.is_none(),
            Kind::Incoming(body) => body.is_end_stream(),
            Kind::Boxed(body) => body.is_end_stream(),
            Kind::Limited(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Kind::Empty => SizeHint::with_exact(0),
            Kind::Full(bytes) => SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64)),
            Kind::Incoming(body) => body.size_hint(),
            Kind::Boxed(body) => body.size_hint(),
            Kind::Limited(body) => body.size_hint(),
        }
    }
}
