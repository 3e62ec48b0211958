//! Handlers: async functions of extractors, returning anything that becomes a response.

use std::future::Future;
use std::marker::PhantomData;

use futures_util::future::LocalBoxFuture;
use nucleon_runtime::HandleKey;

use crate::Request;
use crate::extract::{FromRequest, FromRequestParts, RequestContext, missing_context};
use crate::finish::Finish;
use crate::response::{IntoResponse, Response};

/// An async function usable as a route's handler.
///
/// Implemented for every `Fn` (a function or a closure that is `Clone + Send + Sync`, so
/// every worker can call it) taking up to 12 arguments, all [`FromRequestParts`] except
/// the last, which may be [`FromRequest`] (it consumes the body), and returning a future
/// whose output is [`IntoResponse`]. **The future need not be `Send`**: it runs on the
/// worker that took the connection and may hold `Rc`, `RefCell` or a
/// [`LocalState`](nucleon_runtime::LocalState) across `.await`s.
///
/// ```
/// use std::rc::Rc;
/// use nucleon_http::{Json, Path};
///
/// async fn greet(Path(name): Path<String>) -> Json<String> {
///     let local = Rc::new(format!("hello, {name}")); // !Send, and that is fine
///     tokio::task::yield_now().await;
///     Json(local.to_string())
/// }
/// # fn assert_handler<T>(_: impl nucleon_http::Handler<T>) {}
/// # assert_handler(greet);
/// ```
pub trait Handler<T>: Clone + Send + Sync + 'static {
    /// Runs the handler for a request and its context: its arguments extracted, then
    /// the function called. The server boxes the future once, together with its own
    /// work around the request.
    fn call(
        &self,
        request: Request,
        ctx: RequestContext,
    ) -> impl Future<Output = Response> + 'static;

    /// The adapter handles its arguments need ([`Dep`](crate::Dep)).
    fn required_handles(needs: &mut Vec<HandleKey>) {
        let _ = needs;
    }
}

impl<F, Fut, R> Handler<()> for F
where
    F: Fn() -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = R> + 'static,
    R: IntoResponse,
{
    fn call(
        &self,
        _request: Request,
        _ctx: RequestContext,
    ) -> impl Future<Output = Response> + 'static {
        let fut = self();
        async move { fut.await.into_response() }
    }
}

macro_rules! impl_handler {
    ([$($ty:ident),*], $last:ident) => {
        #[allow(non_snake_case, unused_mut, reason = "generated per arity")]
        impl<F, Fut, R, M, $($ty,)* $last> Handler<(M, $($ty,)* $last,)> for F
        where
            F: Fn($($ty,)* $last) -> Fut + Clone + Send + Sync + 'static,
            Fut: Future<Output = R> + 'static,
            R: IntoResponse,
            M: 'static,
            $($ty: FromRequestParts + 'static,)*
            $last: FromRequest<M> + 'static,
        {
            fn call(
                &self,
                request: Request,
                ctx: RequestContext,
            ) -> impl Future<Output = Response> + 'static {
                let handler = self.clone();
                async move {
                    let (mut parts, body) = request.into_parts();
                    $(
                        let $ty = match $ty::from_request_parts(&mut parts, &ctx).await {
                            Ok(value) => value,
                            Err(error) => return error.into_response(),
                        };
                    )*
                    let request = Request::from_parts(parts, body);
                    let $last = match $last::from_request(request, &ctx).await {
                        Ok(value) => value,
                        Err(error) => return error.into_response(),
                    };
                    drop(ctx);
                    handler($($ty,)* $last).await.into_response()
                }
            }

            fn required_handles(needs: &mut Vec<HandleKey>) {
                $(<$ty as FromRequestParts>::required_handles(needs);)*
                <$last as FromRequest<M>>::required_handles(needs);
            }
        }
    };
}

// One argument, the most common case: the request goes to its extractor whole, not
// taken apart and put back together (the handler's future is smaller by both).
impl<F, Fut, R, M, T1> Handler<(M, T1)> for F
where
    F: Fn(T1) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = R> + 'static,
    R: IntoResponse,
    M: 'static,
    T1: FromRequest<M> + 'static,
{
    fn call(
        &self,
        request: Request,
        ctx: RequestContext,
    ) -> impl Future<Output = Response> + 'static {
        let handler = self.clone();
        async move {
            let argument = match T1::from_request(request, &ctx).await {
                Ok(value) => value,
                Err(error) => return error.into_response(),
            };
            drop(ctx);
            handler(argument).await.into_response()
        }
    }

    fn required_handles(needs: &mut Vec<HandleKey>) {
        <T1 as FromRequest<M>>::required_handles(needs);
    }
}

impl_handler!([T1], T2);
impl_handler!([T1, T2], T3);
impl_handler!([T1, T2, T3], T4);
impl_handler!([T1, T2, T3, T4], T5);
impl_handler!([T1, T2, T3, T4, T5], T6);
impl_handler!([T1, T2, T3, T4, T5, T6], T7);
impl_handler!([T1, T2, T3, T4, T5, T6, T7], T8);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8], T9);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9], T10);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9, T10], T11);
impl_handler!([T1, T2, T3, T4, T5, T6, T7, T8, T9, T10, T11], T12);

/// A handler with its argument types erased.
pub(crate) trait ErasedHandler: Send + Sync {
    /// The handler's future, boxed (for a route's layers: the context comes in the
    /// request's extensions).
    fn call(&self, request: Request) -> LocalBoxFuture<'static, Response>;

    /// The handler's future, boxed, with its context.
    fn call_with(&self, request: Request, ctx: RequestContext)
    -> LocalBoxFuture<'static, Response>;

    /// The handler's future inside the pipeline's (`finish`): one box for both.
    fn call_finished(
        &self,
        request: Request,
        ctx: RequestContext,
        finish: Finish,
    ) -> LocalBoxFuture<'static, Response>;

    /// The adapter handles the handler's arguments need.
    fn required_handles(&self, needs: &mut Vec<HandleKey>);
}

pub(crate) struct Erased<H, T> {
    pub(crate) handler: H,
    pub(crate) _args: PhantomData<fn() -> T>,
}

impl<H: Handler<T>, T> ErasedHandler for Erased<H, T> {
    fn call(&self, mut request: Request) -> LocalBoxFuture<'static, Response> {
        match request.extensions_mut().remove::<RequestContext>() {
            Some(ctx) => self.call_with(request, ctx),
            None => Box::pin(std::future::ready(missing_context().into_response())),
        }
    }

    fn call_with(
        &self,
        request: Request,
        ctx: RequestContext,
    ) -> LocalBoxFuture<'static, Response> {
        Box::pin(self.handler.call(request, ctx))
    }

    fn call_finished(
        &self,
        request: Request,
        ctx: RequestContext,
        finish: Finish,
    ) -> LocalBoxFuture<'static, Response> {
        Box::pin(finish.run(self.handler.call(request, ctx)))
    }

    fn required_handles(&self, needs: &mut Vec<HandleKey>) {
        H::required_handles(needs);
    }
}
