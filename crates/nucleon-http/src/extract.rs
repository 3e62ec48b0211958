//! Extractors: typed pieces of a request, as handler arguments.
//!
//! A handler takes any number of [`FromRequestParts`] arguments and, last, at most one
//! [`FromRequest`] argument that consumes the body ([`Json`], [`Bytes`], `String`,
//! [`Request`]). A failed extraction answers the client with its [`HttpError`] (a 400
//! `INVALID_PARAMETERS` naming the field, a 415, a 413…) and the handler is not called.
//!
//! Extractors get the request (or its head) and, beside it, the request's
//! [`RequestContext`] (its id, the client's address, the matched route and its
//! parameters, shared state): the context is not in the request's extensions, so a
//! request costs no extensions map on its way to a handler.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::ops::Deref;
use std::sync::Arc;

use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::request::Parts;
use http::{HeaderMap, Method, StatusCode, Uri};
use nucleon_runtime::{HandleKey, LocalState, request_id};
use serde::de::DeserializeOwned;

use crate::de;
use crate::error::HttpError;
use crate::response::Json;
use crate::{Body, Request};

/// What the server knows about a request besides the request itself: its id, the
/// client's address, the matched route and its parameters.
///
/// Extractors get it beside the request (the second argument of
/// [`FromRequestParts::from_request_parts`] and [`FromRequest::from_request`]); a
/// handler gets a copy by taking a `RequestContext` argument. Whatever is handed an
/// `http::Request` finds it in the request's extensions
/// (`request.extensions().get::<RequestContext>()`): a mounted service, a layer (of the
/// app or of a route), and a handler's [`Request`] argument.
#[derive(Clone)]
pub struct RequestContext {
    pub(crate) request_id: request_id::Id,
    pub(crate) remote: SocketAddr,
    pub(crate) route: Option<&'static str>,
    pub(crate) params: Params,
    pub(crate) state: Option<Arc<StateMap>>,
    pub(crate) body_limit: usize,
}

impl RequestContext {
    /// The request id (from `x-request-id`, or made by the server); it shows as text
    /// (`Display`, [`Id::with_str`](request_id::Id::with_str)).
    pub fn request_id(&self) -> &request_id::Id {
        &self.request_id
    }

    /// The client's address.
    pub fn remote_addr(&self) -> SocketAddr {
        self.remote
    }

    /// The matched route (`GET /countries/{code}`), once routed.
    pub fn route(&self) -> Option<&str> {
        self.route
    }

    /// The path parameters, by name, in pattern order.
    pub fn params(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params
            .as_slice()
            .iter()
            .map(|(k, v)| (&**k, v.as_str()))
    }
}

/// A route's path parameters, decoded: names interned with the compiled route (no
/// reference count per request), no allocation for a route without parameters, none
/// for one with one short value.
#[derive(Clone, Default)]
pub(crate) enum Params {
    #[default]
    None,
    One([(&'static str, ParamValue); 1]),
    Many(Vec<(&'static str, ParamValue)>),
}

/// The longest parameter value kept without an allocation.
const INLINE_PARAM: usize = 22;

/// A parameter's value: in place up to 22 bytes (codes, ids, slugs: most values), on
/// the heap past that. The same size as a `String`.
#[derive(Clone)]
pub(crate) enum ParamValue {
    Inline { len: u8, bytes: [u8; INLINE_PARAM] },
    Heap(String),
}

impl ParamValue {
    pub(crate) fn new(text: std::borrow::Cow<'_, str>) -> Self {
        match text {
            std::borrow::Cow::Borrowed(text) if text.len() <= INLINE_PARAM => {
                let mut bytes = [0; INLINE_PARAM];
                bytes[..text.len()].copy_from_slice(text.as_bytes());
                ParamValue::Inline {
                    len: text.len() as u8,
                    bytes,
                }
            }
            text => ParamValue::Heap(text.into_owned()),
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            // Copied whole from a `&str`, so always UTF-8.
            ParamValue::Inline { len, bytes } => {
                std::str::from_utf8(&bytes[..usize::from(*len)]).unwrap_or_default()
            }
            ParamValue::Heap(text) => text,
        }
    }
}

impl AsRef<str> for ParamValue {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Debug for ParamValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Params {
    pub(crate) fn as_slice(&self) -> &[(&'static str, ParamValue)] {
        match self {
            Params::None => &[],
            Params::One(one) => one,
            Params::Many(many) => many,
        }
    }

    pub(crate) fn push(&mut self, name: &'static str, value: ParamValue) {
        *self = match std::mem::take(self) {
            Params::None => Params::One([(name, value)]),
            Params::One([first]) => Params::Many(vec![first, (name, value)]),
            Params::Many(mut many) => {
                many.push((name, value));
                Params::Many(many)
            }
        };
    }

    fn is_empty(&self) -> bool {
        self.as_slice().is_empty()
    }
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

impl fmt::Debug for RequestContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RequestContext")
            .field("request_id", &self.request_id)
            .field("remote", &self.remote)
            .field("route", &self.route)
            .field("params", &self.params)
            .finish_non_exhaustive()
    }
}

/// Shared (cross-worker) state values, by type.
#[derive(Default, Clone)]
pub(crate) struct StateMap(pub(crate) HashMap<TypeId, Arc<dyn Any + Send + Sync>>);

/// The error of a request that reached a handler without its [`RequestContext`]
/// (it did not come through a nucleon server).
pub(crate) fn missing_context() -> HttpError {
    HttpError::internal(
        "the request has no RequestContext: it did not come through a nucleon server",
    )
}

/// Extracts a value from the request's head (method, URI, headers, extensions) and
/// its [`RequestContext`].
///
/// ```
/// use nucleon_http::{FromRequestParts, HttpError, RequestContext};
/// use http::request::Parts;
///
/// /// The request id and the client's address, for an audit trail.
/// struct Audit(String);
///
/// impl FromRequestParts for Audit {
///     async fn from_request_parts(
///         parts: &mut Parts,
///         ctx: &RequestContext,
///     ) -> Result<Self, HttpError> {
///         Ok(Audit(format!("{} {} from {}", ctx.request_id(), parts.method, ctx.remote_addr())))
///     }
/// }
///
/// async fn delete(Audit(line): Audit) -> String {
///     line
/// }
/// # fn assert_handler<T>(_: impl nucleon_http::Handler<T>) {}
/// # assert_handler(delete);
/// ```
pub trait FromRequestParts: Sized {
    /// Extracts it, or answers with the error.
    fn from_request_parts(
        parts: &mut Parts,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<Self, HttpError>>;

    /// The adapter handles this extractor needs ([`Dep`](crate::Dep)): declared, so
    /// that a route asking for a handle no adapter gives stops the start (and `app
    /// check`), not its first request. Default: none.
    fn required_handles(needs: &mut Vec<HandleKey>) {
        let _ = needs;
    }
}

/// Extracts a value from the whole request, consuming its body, and its
/// [`RequestContext`]. Only a handler's last argument may be one.
pub trait FromRequest<M = private::ViaRequest>: Sized {
    /// Extracts it, or answers with the error.
    fn from_request(
        request: Request,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<Self, HttpError>>;

    /// The adapter handles this extractor needs (see
    /// [`FromRequestParts::required_handles`]). Default: none.
    fn required_handles(needs: &mut Vec<HandleKey>) {
        let _ = needs;
    }
}

/// Markers keeping [`FromRequest`]'s blanket implementations apart.
pub mod private {
    /// The extractor reads the body.
    #[derive(Debug)]
    pub enum ViaRequest {}
    /// The extractor reads only the head.
    #[derive(Debug)]
    pub enum ViaParts {}
}

impl<T: FromRequestParts> FromRequest<private::ViaParts> for T {
    fn from_request(
        request: Request,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<Self, HttpError>> {
        // Taken apart before the future is made: it holds the head only, not the
        // request as well.
        let (mut parts, _body) = request.into_parts();
        async move { T::from_request_parts(&mut parts, ctx).await }
    }

    fn required_handles(needs: &mut Vec<HandleKey>) {
        <T as FromRequestParts>::required_handles(needs);
    }
}

fn invalid(error: de::Error, fallback: &str) -> HttpError {
    let field = error.field.unwrap_or_else(|| fallback.to_owned());
    HttpError::invalid_parameters([(field, error.message)])
}

/// Typed path parameters, deserialized with serde: a struct by name, a tuple by
/// position, or one value.
///
/// ```
/// use nucleon_http::{Json, Path};
///
/// async fn country(Path(code): Path<String>) -> Json<String> {
///     Json(code)
/// }
///
/// #[derive(serde::Deserialize)]
/// struct Page { country: String, page: u32 }
///
/// async fn page(Path(p): Path<Page>) -> String {
///     format!("{} page {}", p.country, p.page)
/// }
/// ```
///
/// A value that does not parse (`/items/abc` for a `u32`) answers 400
/// `INVALID_PARAMETERS` naming the parameter. A type that does not fit the route's
/// parameters (`Path<(u32, u32)>` on `/items/{id}`, a struct field the pattern lacks) is
/// the program's error, not the client's: 500 `INTERNAL_ERROR`, and the log names the
/// type, the route and what is wrong.
///
/// `Option<Path<T>>` is `None` on a route without parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned> FromRequestParts for Path<T> {
    async fn from_request_parts(
        _parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        de::from_pairs(ctx.params.as_slice())
            .map(Path)
            .map_err(|e| {
                if e.shape {
                    let names: Vec<&str> =
                        ctx.params.as_slice().iter().map(|(k, _)| &**k).collect();
                    HttpError::internal(format_args!(
                        "Path<{}> does not fit the parameters of route `{}` ({}): {}{}",
                        std::any::type_name::<T>(),
                        ctx.route().unwrap_or("?"),
                        if names.is_empty() {
                            "none".to_owned()
                        } else {
                            names.join(", ")
                        },
                        e.field.map(|f| format!("`{f}` ")).unwrap_or_default(),
                        e.message
                    ))
                } else {
                    invalid(e, "path")
                }
            })
    }
}

impl<T: DeserializeOwned> OptionalFromRequestParts for Path<T> {
    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Option<Self>, HttpError> {
        if ctx.params.is_empty() {
            return Ok(None);
        }
        <Self as FromRequestParts>::from_request_parts(parts, ctx)
            .await
            .map(Some)
    }
}

/// The query string, deserialized with serde (`?page=2&full=true`).
///
/// ```
/// use nucleon_http::{Json, Query};
///
/// #[derive(serde::Deserialize)]
/// struct Paging { page: Option<u32> }
///
/// async fn list(Query(paging): Query<Paging>) -> Json<u32> {
///     Json(paging.page.unwrap_or(1))
/// }
/// ```
///
/// `T` is a struct or a map, read by [`serde_html_form`] (as axum's `Query` is).
/// `Option<Query<T>>` is `None` when the request has no query string; a query string
/// that does not parse as `T` answers 400 `INVALID_PARAMETERS` naming the field. A key
/// given more than once fills a sequence field (`?tag=a&tag=b` into `tag:
/// Vec<String>`); for a field that takes one value it is a 400 naming the key. An
/// empty value (`?page=`) is `None` for an optional number or boolean; an optional
/// text keeps it (`Some("")`) unless the field says otherwise with
/// `#[serde(default, deserialize_with = "nucleon_http::extract::empty_as_none")]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query<T>(pub T);

/// For a [`Query`] field: an empty value (`?note=`) is `None`, as a missing one is
/// (serde_html_form's helper; use it with `#[serde(default, deserialize_with = …)]`).
pub use serde_html_form::de::empty_as_none;

impl<T: DeserializeOwned> FromRequestParts for Query<T> {
    async fn from_request_parts(
        parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, HttpError> {
    let deserializer = serde_html_form::Deserializer::from_bytes(query.as_bytes());
    serde_path_to_error::deserialize(deserializer)
        .map_err(|error| query_error(query, error.path(), &error.inner().to_string()))
}

/// A query that does not fit its type, as 400 `INVALID_PARAMETERS`: the field by its
/// path (`page`, `id[1]`, `inner.page`), and serde_html_form's message said in the
/// words of the value the client sent.
fn query_error(query: &str, path: &serde_path_to_error::Path, message: &str) -> HttpError {
    use serde_path_to_error::Segment;
    let at = path.to_string();
    if let Some(rest) = message.strip_prefix("missing field `") {
        // Reported at the path of what lacks it: named by its own full path instead.
        let name = rest.split('`').next().unwrap_or_default();
        let field = if at == "." {
            name.to_owned()
        } else {
            format!("{at}.{name}")
        };
        return HttpError::invalid_parameters([(field, "is required".to_owned())]);
    }
    if at == "." {
        return HttpError::invalid_parameters([("query".to_owned(), message.to_owned())]);
    }
    // The values of the field's key, and which one the error is about.
    let mut segments = path.iter();
    let key = match segments.next() {
        Some(Segment::Map { key }) => key.as_str(),
        _ => "",
    };
    let index = match segments.next() {
        Some(Segment::Seq { index }) => *index,
        _ => 0,
    };
    let values: Vec<_> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v)
        .collect();
    let value = values.get(index).map_or("", |v| &**v);
    let negative = value
        .strip_prefix('-')
        .is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()));
    let expected = match message {
        "unsupported value" => {
            return HttpError::invalid_parameters([(
                at,
                format!("is given {} times; expected one value", values.len()),
            )]);
        }
        "number too large to fit in target type" | "number too small to fit in target type" => {
            return HttpError::invalid_parameters([(at, format!("`{value}` is out of range"))]);
        }
        "invalid digit found in string" if negative => "a non-negative integer",
        "invalid digit found in string" | "cannot parse integer from empty string" => "an integer",
        "invalid float literal" | "cannot parse float from empty string" => "a number",
        _ => return HttpError::invalid_parameters([(at, message.to_owned())]),
    };
    let message = if value.is_empty() {
        format!("is empty; expected {expected}")
    } else {
        format!("`{value}` is not {expected}")
    };
    HttpError::invalid_parameters([(at, message)])
}

impl<T: DeserializeOwned> OptionalFromRequestParts for Query<T> {
    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Option<Self>, HttpError> {
        if parts.uri.query().is_none() {
            return Ok(None);
        }
        <Self as FromRequestParts>::from_request_parts(parts, ctx)
            .await
            .map(Some)
    }
}

/// The request id (`x-request-id`, accepted from the client or made by the server).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub String);

impl FromRequestParts for RequestId {
    async fn from_request_parts(
        _parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Ok(RequestId(ctx.request_id().to_string()))
    }
}

/// The client's address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RemoteAddr(pub SocketAddr);

impl FromRequestParts for RemoteAddr {
    async fn from_request_parts(
        _parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Ok(RemoteAddr(ctx.remote))
    }
}

/// The current worker's [`LocalState<T>`]: lock-free state, one value per worker,
/// registered with the app's `local_state` (or [`LocalState::register`]).
///
/// ```
/// use nucleon_http::{Json, Local};
///
/// async fn hits(Local(hits): Local<u64>) -> Json<u64> {
///     Json(hits.with_mut(|n| { *n += 1; *n }))
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Local<T>(pub LocalState<T>);

impl<T> Deref for Local<T> {
    type Target = LocalState<T>;

    fn deref(&self) -> &LocalState<T> {
        &self.0
    }
}

impl<T: 'static> FromRequestParts for Local<T> {
    async fn from_request_parts(
        _parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        LocalState::<T>::current().map(Local).ok_or_else(|| {
            HttpError::internal(format_args!(
                "no LocalState<{}> is registered on this worker: register it with App::local_state (or WorkerSetup::local_state)",
                std::any::type_name::<T>()
            ))
        })
    }
}

/// Shared state (the same value on every worker, so `Send + Sync`; usually an `Arc`
/// or a pool), registered with `Router::state`.
///
/// ```
/// use std::sync::Arc;
/// use nucleon_http::{Json, Router, State, get};
///
/// #[derive(Clone)]
/// struct Settings { greeting: Arc<str> }
///
/// async fn hello(State(s): State<Settings>) -> Json<String> {
///     Json(s.greeting.to_string())
/// }
///
/// let router = Router::new()
///     .state(Settings { greeting: "hello".into() })
///     .route("/hello", get(hello));
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct State<T>(pub T);

impl<T: Clone + Send + Sync + 'static> FromRequestParts for State<T> {
    async fn from_request_parts(
        _parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        ctx.state
            .as_ref()
            .and_then(|map| map.0.get(&TypeId::of::<T>()))
            .and_then(|any| any.downcast_ref::<T>())
            .cloned()
            .map(State)
            .ok_or_else(|| {
                HttpError::internal(format_args!(
                    "no shared state of type {} is registered: add it with App::state (or Router::state)",
                    std::any::type_name::<T>()
                ))
            })
    }
}

impl FromRequestParts for HeaderMap {
    async fn from_request_parts(
        parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Ok(parts.headers.clone())
    }
}

impl FromRequestParts for Method {
    async fn from_request_parts(
        parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Ok(parts.method.clone())
    }
}

impl FromRequestParts for Uri {
    async fn from_request_parts(
        parts: &mut Parts,
        _ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Ok(parts.uri.clone())
    }
}

impl FromRequestParts for RequestContext {
    async fn from_request_parts(
        _parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Ok(ctx.clone())
    }
}

/// Extracts a value that may be absent, for `Option<T>` arguments: `Ok(None)` when it
/// is absent; an error when it is there but invalid, or when the server is set up
/// wrong (missing state…), and that error still answers the client. Implemented for
/// [`Query`] (no query string) and [`Path`] (no parameters); implement it for your own
/// extractors that have a notion of "absent" (an optional header, say).
///
/// ```
/// use nucleon_http::{Json, Query};
///
/// #[derive(serde::Deserialize)]
/// struct Paging { page: u32 }
///
/// // `/list` → page 1; `/list?page=2` → page 2; `/list?page=x` → 400.
/// async fn list(paging: Option<Query<Paging>>) -> Json<u32> {
///     Json(paging.map_or(1, |Query(p)| p.page))
/// }
/// ```
///
/// Shared and per-worker state have no "absent": one that is not registered is a bug
/// in the program (500), so `Option<State<T>>` and `Option<Local<T>>` do not compile.
///
/// ```compile_fail
/// # fn assert_handler<T>(_: impl nucleon_http::Handler<T>) {}
/// async fn greet(_: Option<nucleon_http::State<String>>) {}
/// assert_handler(greet);
/// ```
pub trait OptionalFromRequestParts: Sized {
    /// Extracts it: `None` when absent, or answers with the error.
    fn from_request_parts(
        parts: &mut Parts,
        ctx: &RequestContext,
    ) -> impl Future<Output = Result<Option<Self>, HttpError>>;
}

impl<T: OptionalFromRequestParts> FromRequestParts for Option<T> {
    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        <T as OptionalFromRequestParts>::from_request_parts(parts, ctx).await
    }
}

impl<T: FromRequestParts> FromRequestParts for Result<T, HttpError> {
    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &RequestContext,
    ) -> Result<Self, HttpError> {
        Ok(T::from_request_parts(parts, ctx).await)
    }
}

/// Caps the request's body at its limit (`http.body_limit`): 413 at once when its
/// declared length is past the limit; reading past it fails with
/// [`http_body_util::LengthLimitError`]. The pipeline (`HttpService::call`) caps every
/// request's body with it before routing, so an extractor, a layer, a mounted service
/// or a route that never reads its body all see the same limit; a capped body keeps
/// its cap, so calling it again costs nothing.
pub(crate) fn limit_body(request: &mut Request, limit: usize) -> Result<(), HttpError> {
    if http_body::Body::size_hint(request.body())
        .upper()
        .is_some_and(|n| n <= limit as u64)
    {
        // Known to fit (an empty GET body): nothing to wrap.
        return Ok(());
    }
    let body = std::mem::replace(request.body_mut(), Body::empty());
    *request.body_mut() = body.limited(limit)?;
    Ok(())
}

/// The whole request; its body is capped at `http.body_limit` (413 at once when its
/// declared length is past it; reading past it fails with
/// [`http_body_util::LengthLimitError`]). Its extensions hold the [`RequestContext`]
/// (a copy), for whatever the handler hands the request to.
impl FromRequest for Request {
    async fn from_request(mut request: Request, ctx: &RequestContext) -> Result<Self, HttpError> {
        request.extensions_mut().insert(ctx.clone());
        limit_body(&mut request, ctx.body_limit)?;
        Ok(request)
    }
}

/// Reads the whole body within the body limit (413 past it).
async fn read_body(request: Request, ctx: &RequestContext) -> Result<Bytes, HttpError> {
    request.into_body().collect_bytes(ctx.body_limit).await
}

impl FromRequest for Bytes {
    async fn from_request(request: Request, ctx: &RequestContext) -> Result<Self, HttpError> {
        read_body(request, ctx).await
    }
}

impl FromRequest for String {
    async fn from_request(request: Request, ctx: &RequestContext) -> Result<Self, HttpError> {
        let bytes = read_body(request, ctx).await?;
        String::from_utf8(bytes.into()).map_err(|e| {
            HttpError::bad_request(format!("the request body is not valid UTF-8: {e}"))
        })
    }
}

/// The body, capped at `http.body_limit` as for [`Request`].
impl FromRequest for Body {
    async fn from_request(mut request: Request, ctx: &RequestContext) -> Result<Self, HttpError> {
        limit_body(&mut request, ctx.body_limit)?;
        Ok(request.into_body())
    }
}

fn is_json(headers: &HeaderMap) -> bool {
    let Some(value) = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let essence = value.split(';').next().unwrap_or_default().trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json")
            || subtype.len() > 5 && subtype[subtype.len() - 5..].eq_ignore_ascii_case("+json"))
}

/// Parses a JSON body as `T`: the answer for JSON that is malformed (400
/// `INVALID_JSON`, with line and column) or of the wrong shape (400
/// `INVALID_PARAMETERS`, naming the field).
///
/// # Errors
/// As above.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, HttpError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        json_error(&path, &inner)
    })?;
    deserializer.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

fn json_error(path: &str, error: &serde_json::Error) -> HttpError {
    use serde_json::error::Category;
    // serde_json appends " at line L column C" to its messages: cut here, since data
    // errors name the field instead and syntax errors give line and column themselves.
    let text = error.to_string();
    let message = text
        .rsplit_once(" at line ")
        .map_or(text.as_str(), |(m, _)| m);
    match error.classify() {
        Category::Data => {
            // A missing field is reported at the path of the object that lacks it
            // (`address` for `{"address":{}}`): named by its own full path instead,
            // `address.city`, as a top-level one is (`city`).
            let (field, message) = match (path, message.strip_prefix("missing field `")) {
                (_, Some(rest)) => {
                    let name = rest.split('`').next().unwrap_or_default();
                    let field = if path == "." {
                        name.to_owned()
                    } else {
                        format!("{path}.{name}")
                    };
                    (field, "is required".to_owned())
                }
                (".", None) => ("body".to_owned(), message.to_owned()),
                _ => (path.to_owned(), message.to_owned()),
            };
            HttpError::invalid_parameters([(field, message)])
        }
        Category::Syntax | Category::Eof | Category::Io => HttpError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!(
                "invalid JSON at line {}, column {}: {message}",
                error.line(),
                error.column()
            ),
        ),
    }
}

impl<T: DeserializeOwned> FromRequest for Json<T> {
    async fn from_request(request: Request, ctx: &RequestContext) -> Result<Self, HttpError> {
        if !is_json(request.headers()) {
            let got = request
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map_or_else(|| "no content type".to_owned(), |v| format!("`{v}`"));
            return Err(HttpError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "UNSUPPORTED_MEDIA_TYPE",
                format!("expected `content-type: application/json`, got {got}"),
            ));
        }
        let bytes = read_body(request, ctx).await?;
        parse_json(&bytes).map(Json)
    }
}

#[cfg(test)]
mod tests {
    use http::header::HeaderValue;

    use super::*;

    #[test]
    fn param_values_are_kept_whole_in_place_or_on_the_heap() {
        use std::borrow::Cow;
        for text in [
            "",
            "gb",
            "a-22-byte-long-value!!",
            "a value that is longer than 22 bytes",
        ] {
            let value = ParamValue::new(Cow::Borrowed(text));
            assert_eq!(value.as_str(), text);
            assert_eq!(
                matches!(value, ParamValue::Inline { .. }),
                text.len() <= INLINE_PARAM,
                "{text:?}"
            );
        }
        let decoded = ParamValue::new(Cow::Owned("café au lait".to_owned()));
        assert_eq!(decoded.as_str(), "café au lait");
        let mut params = Params::None;
        params.push("code", ParamValue::new(Cow::Borrowed("gb")));
        params.push("name", decoded);
        let pairs: Vec<(&str, &str)> = params
            .as_slice()
            .iter()
            .map(|(k, v)| (&**k, v.as_str()))
            .collect();
        assert_eq!(pairs, [("code", "gb"), ("name", "café au lait")]);
    }

    #[test]
    fn json_errors_name_line_column_and_fields() {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only deserialized")]
        struct Country {
            code: String,
            population: u64,
        }
        let error = parse_json::<Country>(b"{\"code\": \"gb\",\n \"population\": }").unwrap_err();
        assert_eq!(error.code(), "INVALID_JSON");
        assert!(
            error.message().contains("line 2, column 16"),
            "{}",
            error.message()
        );
        let error = parse_json::<Country>(br#"{"code": "gb"}"#).unwrap_err();
        assert_eq!(error.code(), "INVALID_PARAMETERS");
        assert_eq!(error.messages().unwrap()["population"], "is required");
        let error = parse_json::<Country>(br#"{"code": "gb", "population": "many"}"#).unwrap_err();
        assert!(error.messages().unwrap()["population"].contains("invalid type"));

        // Nested, a missing field is named by its full path, as a top-level one is.
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only deserialized")]
        struct Person {
            name: String,
            address: Address,
            past: Vec<Address>,
        }
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only deserialized")]
        struct Address {
            city: String,
        }
        let error =
            parse_json::<Person>(br#"{"name": "x", "address": {}, "past": []}"#).unwrap_err();
        assert_eq!(
            error
                .messages()
                .unwrap()
                .get("address.city")
                .map(String::as_str),
            Some("is required"),
            "{:?}",
            error.messages()
        );
        let error = parse_json::<Person>(
            br#"{"name": "x", "address": {"city": "Paris"}, "past": [{"city": "Lyon"}, {}]}"#,
        )
        .unwrap_err();
        assert_eq!(
            error
                .messages()
                .unwrap()
                .get("past[1].city")
                .map(String::as_str),
            Some("is required"),
            "{:?}",
            error.messages()
        );
    }

    #[test]
    fn queries_fill_fields_and_name_them_in_errors() {
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Filter {
            tag: Vec<String>,
            ids: Option<Vec<u32>>,
            page: Option<u32>,
            #[serde(default, deserialize_with = "empty_as_none")]
            note: Option<String>,
        }
        let message = |query: &str, field: &str| {
            let error = parse_query::<Filter>(query).unwrap_err();
            assert_eq!(error.code(), "INVALID_PARAMETERS");
            let messages = error.messages().unwrap();
            messages.get(field).cloned().unwrap_or_else(|| {
                panic!("{query}: {field} not named: {messages:?}");
            })
        };
        let parsed: Filter = parse_query("tag=a&page=2&tag=b&ids=1&ids=2&note=").unwrap();
        assert_eq!(
            parsed,
            Filter {
                tag: vec!["a".into(), "b".into()],
                ids: Some(vec![1, 2]),
                page: Some(2),
                note: None,
            }
        );
        // One value still makes a one-element sequence; an empty number is `None`.
        let one: Filter = parse_query("tag=a&page=").unwrap();
        assert_eq!((one.tag, one.page), (vec!["a".to_owned()], None));
        assert_eq!(message("page=1", "tag"), "is required");
        assert_eq!(
            message("tag=a&page=three", "page"),
            "`three` is not an integer"
        );
        assert_eq!(
            message("tag=a&page=-3", "page"),
            "`-3` is not a non-negative integer"
        );
        assert_eq!(
            message("tag=a&page=99999999999", "page"),
            "`99999999999` is out of range"
        );
        // A value that does not parse, among several: named by its key and place.
        assert_eq!(
            message("tag=a&ids=1&ids=x", "ids[1]"),
            "`x` is not an integer"
        );
        // A key given twice for a field that takes one value.
        assert_eq!(
            message("tag=a&page=1&page=2", "page"),
            "is given 2 times; expected one value"
        );

        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Kinds {
            full: bool,
            ratio: f64,
            letter: char,
            #[serde(default)]
            text: Option<String>,
        }
        let kinds: Kinds = parse_query("full=true&ratio=1.5&letter=x&text=").unwrap();
        assert_eq!(kinds.text.as_deref(), Some(""), "text keeps an empty value");
        let error = parse_query::<Kinds>("full=yes&ratio=1&letter=x").unwrap_err();
        assert_eq!(
            error.messages().unwrap()["full"],
            "invalid value: string \"yes\", expected \"true\", \"on\" or \"false\""
        );
        let error = parse_query::<Kinds>("full=true&ratio=many&letter=x").unwrap_err();
        assert_eq!(error.messages().unwrap()["ratio"], "`many` is not a number");
        let error = parse_query::<Kinds>("full=true&ratio=1&letter=xy").unwrap_err();
        assert_eq!(
            error.messages().unwrap()["letter"],
            "invalid value: string \"xy\", expected a character"
        );
        let error = parse_query::<Kinds>("full=true&ratio=&letter=x").unwrap_err();
        assert_eq!(
            error.messages().unwrap()["ratio"],
            "is empty; expected a number"
        );

        // A repeated key the type does not use is ignored, as a single one is.
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Paging {
            page: u32,
        }
        assert_eq!(
            parse_query::<Paging>("page=1&utm=a&utm=b").unwrap(),
            Paging { page: 1 }
        );
        // Flattened (self-describing): the values as a list.
        #[derive(serde::Deserialize, Debug, PartialEq)]
        struct Open {
            page: u32,
            #[serde(flatten)]
            rest: std::collections::BTreeMap<String, Vec<String>>,
        }
        let open: Open = parse_query("page=1&utm=a&utm=b").unwrap();
        assert_eq!(open.rest["utm"], ["a", "b"]);
        // A tuple takes one value (serde_html_form's rule: a repeated key fills a
        // sequence): named by the key.
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code, reason = "only deserialized")]
        struct Range {
            r: (u32, u32),
        }
        let error = parse_query::<Range>("r=1&r=2").unwrap_err();
        assert_eq!(
            error.messages().unwrap()["r"],
            "is given 2 times; expected one value"
        );
        // A type that is not a struct or a map: named as the query.
        let error = parse_query::<u32>("id=1").unwrap_err();
        assert!(error.messages().unwrap().contains_key("query"), "{error:?}");
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!is_json(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert!(is_json(&headers));
        headers.insert(
            CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        assert!(is_json(&headers));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(!is_json(&headers));
    }
}
