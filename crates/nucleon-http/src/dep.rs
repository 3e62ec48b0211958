//! `Dep<T>` and `Named<T, N>` as route arguments: adapter handles, by type or by name.
//!
//! The types live in [`nucleon_runtime::handle`] (consumers of other crates take them
//! too); this module extracts them from a request.

use http::request::Parts;
use nucleon_runtime::HandleKey;
use nucleon_runtime::handle::HandleName;
pub use nucleon_runtime::handle::{Dep, Named};

use crate::error::HttpError;
use crate::extract::{FromRequestParts, RequestContext};

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
impl<T: Clone + 'static> FromRequestParts for Dep<T> {
    async fn from_request_parts(
        _parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Dep::current().ok_or_else(|| missing(&Dep::<T>::key()))
    }

    fn required_handles(needs: &mut Vec<HandleKey>) {
        needs.push(Dep::<T>::key());
    }
}

/// `Named<Pool, Reporting>`: the `Pool` of the adapter named `reporting`.
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
impl<T: Clone + 'static, N: HandleName> FromRequestParts for Named<T, N> {
    async fn from_request_parts(
        _parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Named::current().ok_or_else(|| missing(&Named::<T, N>::key()))
    }

    fn required_handles(needs: &mut Vec<HandleKey>) {
        needs.push(Named::<T, N>::key());
    }
}

/// The 500 of a handle that is not there (the start's check makes it rare: a handle an
/// adapter registers only on some workers, say).
fn missing(key: &HandleKey) -> HttpError {
    HttpError::internal(format_args!(
        "no adapter gives `{key}` on this worker: add one (App::adapter for one per process, App::per_worker_adapter for one per worker)"
    ))
}
