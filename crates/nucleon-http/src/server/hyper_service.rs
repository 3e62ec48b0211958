//! hyper's side of a connection: the service hyper calls for each request, which
//! hands it to the worker's pipeline ([`HttpService`]), and the executor of HTTP/2's
//! stream tasks.

use std::convert::Infallible;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::LocalBoxFuture;
use hyper::body::Incoming;

use super::conn::{ConnState, InService};
use crate::Body;
use crate::response::Response;
use crate::service::{HttpService, Outcome};

/// hyper's side of a connection: every request goes through the worker's pipeline.
pub(super) struct ConnectionService {
    pub(super) service: HttpService,
    /// `http.body_read_timeout`, for every request's body.
    pub(super) body_read_timeout: Duration,
    /// The connection: the client's address, and what the header read timeout needs.
    pub(super) state: Rc<ConnState>,
    /// Poll a request's future once inside `call`, with the connection task's waker
    /// (HTTP/1, where the request's future runs in the connection's task).
    ///
    /// Why: right after `call`, before it polls the future, hyper's HTTP/1 dispatcher
    /// reads the socket again (to notice a client hanging up). The request's head
    /// still holds the read buffer then (its URI and header values are slices of it),
    /// so that read makes hyper allocate a new buffer (8 KiB) and the old one is freed
    /// when the request is: an allocation and a free of a large block, per request. A
    /// handler done on its first poll (most are) has dropped the request before that
    /// read, and the buffer is used again.
    ///
    /// `false` (HTTP/2): the whole pipeline runs in the stream's task instead (see
    /// `ConnectionService::in_stream_task`).
    pub(super) poll_at_once: bool,
}

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let state = &self.state;
        state.in_service.set(state.in_service.get() + 1);
        let in_service = InService(Rc::clone(state));
        if !self.poll_at_once {
            return self.in_stream_task(request, in_service);
        }
        // The synchronous part here; one box (the handler's future inside the
        // pipeline's), none for an answer made at once.
        match self.service.start(
            request.map(|body| Body::request(body, self.body_read_timeout)),
            state.remote,
            Some(in_service),
        ) {
            Outcome::Ready(response) => ResponseFuture::Ready(Some(response)),
            Outcome::Pending(future) => state.poll_at_once(future),
        }
    }
}

impl ConnectionService {
    /// An HTTP/2 request: the whole pipeline runs in the stream's own task, routing
    /// included, so that the watchdog knows that task by the request's route (hyper
    /// calls the service in the connection's task, then spawns its future).
    #[cold]
    #[inline(never)]
    fn in_stream_task(
        &self,
        request: http::Request<Incoming>,
        in_service: InService,
    ) -> ResponseFuture {
        let service = self.service.clone();
        let remote = self.state.remote;
        let body_read_timeout = self.body_read_timeout;
        ResponseFuture::Pending(Box::pin(async move {
            let request = request.map(|body| Body::request(body, body_read_timeout));
            match service.start(request, remote, Some(in_service)) {
                Outcome::Ready(response) => response,
                Outcome::Pending(future) => future.await,
            }
        }))
    }
}

/// hyper's future for a response: ready at once, or the pipeline's boxed future.
pub(super) enum ResponseFuture {
    Ready(Option<Response>),
    Pending(LocalBoxFuture<'static, Response>),
}

impl Future for ResponseFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ResponseFuture::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            ResponseFuture::Pending(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

impl ConnState {
    /// Polls a request's future once with the connection task's waker (see
    /// `ConnectionService::poll_at_once`): its response, or the future to poll again.
    /// Without a waker kept (the connection not polled yet), hyper polls it.
    fn poll_at_once(&self, mut future: LocalBoxFuture<'static, Response>) -> ResponseFuture {
        let Ok(waker) = self.waker.try_borrow() else {
            return ResponseFuture::Pending(future);
        };
        let Some(waker) = waker.as_ref() else {
            return ResponseFuture::Pending(future);
        };
        match future.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(response) => ResponseFuture::Ready(Some(response)),
            Poll::Pending => ResponseFuture::Pending(future),
        }
    }
}

/// Runs hyper's HTTP/2 stream tasks on the worker, tracked by the watchdog.
#[derive(Clone, Copy)]
pub(super) struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        nucleon_runtime::spawn("http/2 stream", async move {
            future.await;
        });
    }
}
