//! [`Endpoint`]: the per-worker, type-erased service that route and app layers wrap,
//! and the traits that make any tower service or layer one.

use std::convert::Infallible;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use tower::{Layer, Service, ServiceExt};

use crate::response::{IntoResponse, Response};
use crate::{Body, BoxError, HttpError, Request};

/// A per-worker, type-erased HTTP service: what route and app [`Layer`]s wrap.
///
/// Layers are applied on each worker, so the services they build need not be `Send`.
#[derive(Clone)]
pub struct Endpoint(Rc<dyn Fn(Request) -> LocalBoxFuture<'static, Response>>);

impl Endpoint {
    pub(super) fn from_fn(
        f: impl Fn(Request) -> LocalBoxFuture<'static, Response> + 'static,
    ) -> Self {
        Self(Rc::new(f))
    }

    /// Wraps a tower service: each request is served by a clone of it (tower's
    /// convention). A service error becomes a 500 (logged, not shown to the client).
    pub fn from_service<S: IntoEndpoint<B>, B>(service: S) -> Self {
        service.into_endpoint()
    }

    /// Serves one request.
    pub fn call(&self, request: Request) -> LocalBoxFuture<'static, Response> {
        (self.0)(request)
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Endpoint")
    }
}

impl Service<Request> for Endpoint {
    type Response = Response;
    type Error = Infallible;
    type Future = LocalBoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        Box::pin(Endpoint::call(self, request).map(Ok))
    }
}

/// A tower service nucleon can serve requests with: implemented for every
/// `tower::Service<Request>` that is `Clone + 'static` and answers `http::Response<B>`,
/// whose body `B` yields [`Bytes`] (an axum `Router`, a `tower::service_fn`, what a
/// [`Layer`] makes of an [`Endpoint`]…). `B` is inferred; there is nothing to implement.
pub trait IntoEndpoint<B>: Clone + 'static {
    /// Wraps the service: each request is served by a clone of it (tower's
    /// convention); a service error becomes a 500 (logged, not shown to the client).
    fn into_endpoint(self) -> Endpoint;
}

impl<S, B> IntoEndpoint<B> for S
where
    S: Service<Request, Response = http::Response<B>> + Clone + 'static,
    S::Future: 'static,
    S::Error: Into<BoxError>,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    fn into_endpoint(self) -> Endpoint {
        Endpoint::from_fn(move |request| {
            let service = self.clone();
            Box::pin(async move {
                match service.oneshot(request).await {
                    Ok(response) => response.map(Body::new),
                    Err(error) => {
                        let error: BoxError = error.into();
                        HttpError::internal(format_args!("service error: {error}")).into_response()
                    }
                }
            })
        })
    }
}

/// A tower [`Layer`] nucleon can wrap routes and apps in: implemented for every
/// `Layer<Endpoint>` that is `Send + Sync + 'static` and whose service is an
/// [`IntoEndpoint`] (`tower-http`'s layers, your own…). `B` is inferred; there is
/// nothing to implement.
pub trait EndpointLayer<B>: Send + Sync + 'static {
    /// Wraps `inner` (on each worker: the service made need not be `Send`).
    fn layer_endpoint(&self, inner: Endpoint) -> Endpoint;
}

impl<L, B> EndpointLayer<B> for L
where
    L: Layer<Endpoint> + Send + Sync + 'static,
    L::Service: IntoEndpoint<B>,
{
    fn layer_endpoint(&self, inner: Endpoint) -> Endpoint {
        self.layer(inner).into_endpoint()
    }
}

pub(super) type LayerFn = Arc<dyn Fn(Endpoint) -> Endpoint + Send + Sync>;

pub(super) fn layer_fn<L: EndpointLayer<B>, B>(layer: L) -> LayerFn {
    Arc::new(move |inner| layer.layer_endpoint(inner))
}
