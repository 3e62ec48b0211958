//! `Dep<T>` and `Named<T, N>`: adapter handles as handler arguments.

use std::marker::PhantomData;
use std::ops::Deref;

use http::request::Parts;
use nucleon_runtime::HandleKey;
use nucleon_runtime::handle::{self, HandleName};

use crate::error::HttpError;
use crate::extract::{FromRequestParts, RequestContext};

/// An adapter's handle, by type: the worker's own for a per-worker adapter (a pool
/// bound to this worker's reactor), the process's for a per-process one (a broker
/// connection). See [`nucleon_runtime::handle`].
///
/// A route that takes a `Dep<T>` declares it needs one: when no adapter gives a `T`,
/// the start fails, naming the route and the type (and so does `app check`), rather
/// than its first request.
///
/// ```
/// use nucleon_http::{Dep, Json};
///
/// #[derive(Clone)]
/// struct Pool { name: &'static str }
///
/// async fn which(Dep(pool): Dep<Pool>) -> Json<&'static str> {
///     Json(pool.name)
/// }
/// # fn assert_handler<T>(_: impl nucleon_http::Handler<T>) {}
/// # assert_handler(which);
/// ```
#[derive(Debug, Clone)]
pub struct Dep<T>(pub T);

impl<T> Deref for Dep<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T: Clone + 'static> FromRequestParts for Dep<T> {
    async fn from_request_parts(
        _parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        handle::get::<T>()
            .map(Dep)
            .ok_or_else(|| missing(&HandleKey::of::<T>()))
    }

    fn required_handles(needs: &mut Vec<HandleKey>) {
        needs.push(HandleKey::of::<T>());
    }
}

/// One named instance of an adapter's handle type, for two of a kind (two databases):
/// `Named<Pool, Reporting>` is the `Pool` given by the adapter whose
/// [`instance`](nucleon_runtime::Adapter::instance) is `reporting`. Declare the marker
/// with [`nucleon_runtime::handle_name!`].
///
/// ```
/// use nucleon_http::{Json, Named};
///
/// #[derive(Clone)]
/// struct Pool { rows: u64 }
///
/// nucleon_runtime::handle_name!(Reporting = "reporting");
///
/// async fn report(pool: Named<Pool, Reporting>) -> Json<u64> {
///     Json(pool.rows)
/// }
/// # fn assert_handler<T>(_: impl nucleon_http::Handler<T>) {}
/// # assert_handler(report);
/// ```
#[derive(Debug, Clone)]
pub struct Named<T, N> {
    handle: T,
    name: PhantomData<fn() -> N>,
}

impl<T, N> Named<T, N> {
    /// The handle.
    pub fn into_inner(self) -> T {
        self.handle
    }
}

impl<T, N> Deref for Named<T, N> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.handle
    }
}

impl<T: Clone + 'static, N: HandleName> FromRequestParts for Named<T, N> {
    async fn from_request_parts(
        _parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        let key = key::<T, N>();
        let found = match N::NAME {
            Some(name) => handle::named::<T>(name),
            None => handle::get::<T>(),
        };
        found
            .map(|handle| Named {
                handle,
                name: PhantomData,
            })
            .ok_or_else(|| missing(&key))
    }

    fn required_handles(needs: &mut Vec<HandleKey>) {
        needs.push(key::<T, N>());
    }
}

fn key<T: 'static, N: HandleName>() -> HandleKey {
    match N::NAME {
        Some(name) => HandleKey::named::<T>(name),
        None => HandleKey::of::<T>(),
    }
}

/// The 500 of a handle that is not there (the start's check makes it rare: a handle an
/// adapter registers only on some workers, say).
fn missing(key: &HandleKey) -> HttpError {
    HttpError::internal(format_args!(
        "no adapter gives `{key}` on this worker: add one (App::adapter for one per process, App::per_worker_adapter for one per worker)"
    ))
}
