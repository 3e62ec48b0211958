//! Consumer handlers: async functions of extracted arguments, and what their results
//! mean (`IntoOutcome`).

use std::fmt::Display;
use std::future::Future;

use futures_util::future::LocalBoxFuture;
use nucleon_runtime::HandleKey;
use serde::Serialize;

use crate::delivery::{Delivery, FromDelivery, Rejection};

/// What became of a delivery's handling.
#[derive(Debug)]
pub enum Outcome {
    /// Done; for an RPC, the reply's result as JSON.
    Done(Option<Vec<u8>>),
    /// The handler failed: the error's type name and message.
    Failed {
        /// The error's type (`DbError`), sent to RPC callers.
        kind: String,
        /// Its message.
        message: String,
    },
    /// The delivery could not become the handler's arguments.
    Rejected(Rejection),
    /// The handler panicked, with this message.
    Panicked(String),
}

/// A handler's return value, as an [`Outcome`]: `()` (done), or `Result<T, E>` with a
/// serialisable `T` (an RPC's result) and a displayable `E`.
pub trait IntoOutcome {
    /// The outcome.
    fn into_outcome(self) -> Outcome;
}

impl IntoOutcome for () {
    fn into_outcome(self) -> Outcome {
        Outcome::Done(None)
    }
}

impl<T: Serialize, E: Display> IntoOutcome for Result<T, E> {
    fn into_outcome(self) -> Outcome {
        match self {
            Ok(value) => match serde_json::to_vec(&value) {
                Ok(json) => Outcome::Done(Some(json)),
                Err(e) => Outcome::Failed {
                    kind: "Encode".into(),
                    message: format!("cannot serialise the result: {e}"),
                },
            },
            Err(error) => Outcome::Failed {
                kind: short_type_name::<E>().to_owned(),
                message: error.to_string(),
            },
        }
    }
}

/// `my_crate::errors::OrderError<X>` → `OrderError`.
fn short_type_name<T>() -> &'static str {
    let full = std::any::type_name::<T>();
    let base = full.split('<').next().unwrap_or(full);
    base.rsplit("::").next().unwrap_or(base)
}

/// An async function usable as a consumer: up to six arguments that implement
/// [`FromDelivery`], returning something that implements [`IntoOutcome`]. Its future
/// runs on a worker and need not be `Send`.
///
/// ```
/// use nucleon_amqp::{Handler, Msg};
///
/// #[derive(serde::Deserialize)]
/// struct Order { id: u64 }
///
/// async fn on_order(Msg(order): Msg<Order>) -> Result<(), std::io::Error> {
///     tracing::info!(order = order.id, "received");
///     Ok(())
/// }
/// # fn assert_handler<T>(_: impl Handler<T>) {}
/// # assert_handler(on_order);
/// ```
pub trait Handler<Args>: Send + Sync + 'static {
    /// Extracts the arguments from `delivery` and runs the function.
    fn call(&self, delivery: &Delivery) -> LocalBoxFuture<'static, Outcome>;

    /// The handles the arguments need.
    fn required_handles(needs: &mut Vec<HandleKey>);
}

macro_rules! impl_handler {
    ($($arg:ident),*) => {
        #[allow(non_snake_case, unused_variables)]
        impl<F, Fut, R, $($arg,)*> Handler<($($arg,)*)> for F
        where
            F: Fn($($arg),*) -> Fut + Send + Sync + 'static,
            Fut: Future<Output = R> + 'static,
            R: IntoOutcome,
            $($arg: FromDelivery,)*
        {
            fn call(&self, delivery: &Delivery) -> LocalBoxFuture<'static, Outcome> {
                $(
                    let $arg = match $arg::from_delivery(delivery) {
                        Ok(value) => value,
                        Err(rejection) => {
                            return Box::pin(std::future::ready(Outcome::Rejected(rejection)));
                        }
                    };
                )*
                let future = self($($arg),*);
                Box::pin(async move { future.await.into_outcome() })
            }

            fn required_handles(needs: &mut Vec<HandleKey>) {
                $($arg::required_handles(needs);)*
            }
        }
    };
}

impl_handler!();
impl_handler!(A1);
impl_handler!(A1, A2);
impl_handler!(A1, A2, A3);
impl_handler!(A1, A2, A3, A4);
impl_handler!(A1, A2, A3, A4, A5);
impl_handler!(A1, A2, A3, A4, A5, A6);

/// A handler with its argument types erased.
pub(crate) trait ErasedHandler: Send + Sync {
    fn call(&self, delivery: &Delivery) -> LocalBoxFuture<'static, Outcome>;
    fn required_handles(&self, needs: &mut Vec<HandleKey>);
}

pub(crate) struct Erased<H, A> {
    handler: H,
    args: std::marker::PhantomData<fn() -> A>,
}

impl<H, A> Erased<H, A> {
    pub(crate) fn new(handler: H) -> Self {
        Self {
            handler,
            args: std::marker::PhantomData,
        }
    }
}

impl<H: Handler<A>, A: 'static> ErasedHandler for Erased<H, A> {
    fn call(&self, delivery: &Delivery) -> LocalBoxFuture<'static, Outcome> {
        self.handler.call(delivery)
    }

    fn required_handles(&self, needs: &mut Vec<HandleKey>) {
        H::required_handles(needs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct OrderError;

    impl Display for OrderError {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("no such order")
        }
    }

    #[test]
    fn results_become_outcomes() {
        assert!(matches!(().into_outcome(), Outcome::Done(None)));
        match Ok::<_, OrderError>(7).into_outcome() {
            Outcome::Done(Some(json)) => assert_eq!(json, b"7"),
            other => panic!("{other:?}"),
        }
        match Err::<u8, _>(OrderError).into_outcome() {
            Outcome::Failed { kind, message } => {
                assert_eq!(kind, "OrderError");
                assert_eq!(message, "no such order");
            }
            other => panic!("{other:?}"),
        }
    }
}
