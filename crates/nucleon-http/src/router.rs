//! Routing: patterns with typed, constrained parameters; per-method handlers; mounted
//! tower services; layers.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::LocalBoxFuture;
use http::header::{ALLOW, HeaderValue, LOCATION};
use http::{Method, StatusCode, Uri};
use nucleon_runtime::task::{LabelHandle, StaticLabel};
use regex_lite::Regex;
use tower::{Layer, Service, ServiceExt};

use crate::extract::{ParamValue, Params, RequestContext, StateMap, missing_context};
use crate::handler::{Erased, ErasedHandler, Handler};
use crate::limits::Limits;
use crate::response::{IntoResponse, Response};
use crate::server::conn::name_task;
use crate::static_routes::StaticRoutes;
use crate::{Body, BoxError, HttpError, Request};
use nucleon_runtime::{HandleKey, Requirement};

/// A per-worker, type-erased HTTP service: what route and app [`Layer`]s wrap.
///
/// Layers are applied on each worker, so the services they build need not be `Send`.
#[derive(Clone)]
pub struct Endpoint(Rc<dyn Fn(Request) -> LocalBoxFuture<'static, Response>>);

impl Endpoint {
    fn from_fn(f: impl Fn(Request) -> LocalBoxFuture<'static, Response> + 'static) -> Self {
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

type LayerFn = Arc<dyn Fn(Endpoint) -> Endpoint + Send + Sync>;

fn layer_fn<L: EndpointLayer<B>, B>(layer: L) -> LayerFn {
    Arc::new(move |inner| layer.layer_endpoint(inner))
}

/// The handlers of one path, by method.
///
/// ```
/// use nucleon_http::{get, Json};
///
/// async fn list() -> Json<Vec<&'static str>> { Json(vec!["gb", "fr"]) }
/// async fn create(Json(code): Json<String>) -> Json<String> { Json(code) }
///
/// let countries = get(list).post(create);
/// ```
///
/// [`MethodRouter::layer`] and [`MethodRouter::timeout`] apply to the handlers added
/// before them, and stay with those handlers when routes for the same path are merged
/// (`.route("/x", get(a).layer(l)).route("/x", post(b))`: `l` wraps `a` only), as in
/// axum. A route's layers also wrap its 405 for a method it has no handler for, so a
/// CORS layer on one route answers the browser's `OPTIONS` preflight.
#[derive(Clone, Default)]
#[must_use]
pub struct MethodRouter {
    methods: Vec<MethodEntry>,
    /// The layers around the route's 405 (every layer given, in order).
    fallback_layers: Vec<LayerFn>,
}

/// One method's handler, with the layers and time limit given for it.
#[derive(Clone)]
struct MethodEntry {
    method: Method,
    handler: Arc<dyn ErasedHandler>,
    layers: Vec<LayerFn>,
    timeout: Option<Duration>,
}

macro_rules! method_fns {
    ($($name:ident => $method:ident),*) => {
        $(
            #[doc = concat!("Routes `", stringify!($method), "` requests to `handler`.")]
            pub fn $name<H: Handler<T>, T: 'static>(handler: H) -> MethodRouter {
                on(Method::$method, handler)
            }
        )*

        impl MethodRouter {
            $(
                #[doc = concat!("Adds a `", stringify!($method), "` handler.")]
                pub fn $name<H: Handler<T>, T: 'static>(self, handler: H) -> Self {
                    self.on(Method::$method, handler)
                }
            )*
        }
    };
}

method_fns!(get => GET, post => POST, put => PUT, patch => PATCH, delete => DELETE, head => HEAD, options => OPTIONS);

/// Routes requests with `method` to `handler`.
pub fn on<H: Handler<T>, T: 'static>(method: Method, handler: H) -> MethodRouter {
    MethodRouter::default().on(method, handler)
}

impl MethodRouter {
    /// Adds a handler for `method`.
    ///
    /// # Panics
    /// If `method` already has a handler here (a programming error, caught at start).
    pub fn on<H: Handler<T>, T: 'static>(mut self, method: Method, handler: H) -> Self {
        assert!(
            !self.has(&method),
            "{method} already has a handler on this route"
        );
        let handler: Arc<dyn ErasedHandler> = Arc::new(Erased {
            handler,
            _args: std::marker::PhantomData,
        });
        self.methods.push(MethodEntry {
            method,
            handler,
            layers: Vec::new(),
            timeout: None,
        });
        self
    }

    fn has(&self, method: &Method) -> bool {
        self.methods.iter().any(|entry| entry.method == *method)
    }

    /// Wraps the handlers added so far in a tower [`Layer`] (`tower-http`'s CORS,
    /// compression, your own…), and the route's 405 for methods it has no handler
    /// for; handlers added afterwards are not wrapped. Layers added later wrap earlier
    /// ones.
    pub fn layer<L: EndpointLayer<B>, B>(mut self, layer: L) -> Self {
        let layer = layer_fn(layer);
        for entry in &mut self.methods {
            entry.layers.push(Arc::clone(&layer));
        }
        self.fallback_layers.push(layer);
        self
    }

    /// A time limit for the handlers added so far (overrides `http.request_timeout`):
    /// past it, the handler is dropped and the client gets 503 `TIMEOUT` with
    /// `Retry-After`.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        for entry in &mut self.methods {
            entry.timeout = Some(timeout);
        }
        self
    }

    /// Adds `other`'s handlers (and its 405's layers, when this route has none).
    fn merge(&mut self, other: MethodRouter) -> Result<(), String> {
        if let Some(twice) = other.methods.iter().find(|entry| self.has(&entry.method)) {
            return Err(format!("{} already has a handler", twice.method));
        }
        self.methods.extend(other.methods);
        if self.fallback_layers.is_empty() {
            self.fallback_layers = other.fallback_layers;
        }
        Ok(())
    }
}

impl fmt::Debug for MethodRouter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MethodRouter")
            .field(
                "methods",
                &self
                    .methods
                    .iter()
                    .map(|e| (&e.method, e.layers.len(), e.timeout))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

type ServiceFactory = Arc<dyn Fn() -> Endpoint + Send + Sync>;

#[derive(Clone)]
enum Target {
    Methods(MethodRouter),
    Mount {
        prefix: String,
        factory: ServiceFactory,
    },
}

#[derive(Clone)]
struct Candidate {
    display: String,
    constraints: Vec<(String, Regex)>,
    target: Target,
}

#[derive(Clone)]
struct Entry {
    pattern: String,
    candidates: Vec<Candidate>,
}

/// One row of the route table (for `routes` on the command line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteInfo {
    /// `GET`, `POST`…, or `*` for a mounted service.
    pub method: String,
    /// The pattern as written (`/countries/{code:[a-z]{2}}/`).
    pub path: String,
    /// The adapter handles its handler's arguments need ([`Dep`](crate::Dep)).
    pub requires: Vec<HandleKey>,
}

impl fmt::Display for RouteInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<7} {}", self.method, self.path)
    }
}

/// The application's routes: built once, then compiled on every worker.
///
/// Patterns are [matchit]'s (`/countries/{code}`, catch-all `/files/{*path}`), with an
/// optional regular-expression constraint per parameter (`/countries/{code:[a-z]{2}}/`):
/// a request whose parameter does not match is a 404, as if the route did not exist.
///
/// ```
/// use nucleon_http::{get, Json, Path, Router};
///
/// async fn list() -> Json<Vec<&'static str>> { Json(vec!["gb"]) }
/// async fn one(Path(code): Path<String>) -> Json<String> { Json(code) }
///
/// let router = Router::new()
///     .route("/countries/", get(list))
///     .route("/countries/{code:[a-z]{2}}/", get(one));
/// assert_eq!(router.routes().len(), 2);
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct Router {
    table: matchit::Router<usize>,
    /// The patterns that end in a catch-all without constraints (mounts' and
    /// routes'): where a path goes when the route `table` gives it fails its
    /// constraints.
    catch_alls: matchit::Router<usize>,
    by_pattern: HashMap<String, usize>,
    entries: Vec<Entry>,
    layers: Vec<LayerFn>,
    state: Option<Arc<StateMap>>,
}

impl fmt::Debug for Router {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Router")
            .field("routes", &self.routes())
            .field("layers", &self.layers.len())
            .finish_non_exhaustive()
    }
}

impl Router {
    /// An empty router.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a route.
    ///
    /// # Panics
    /// On an invalid pattern or constraint, a conflict with another route, or a method
    /// given twice for the same path: programming errors, caught at start.
    /// [`Router::try_route`] returns them instead.
    pub fn route(self, path: &str, methods: MethodRouter) -> Self {
        match self.try_route(path, methods) {
            Ok(router) => router,
            Err(error) => panic!("{error}"),
        }
    }

    /// Adds a route, or says why it cannot be added.
    ///
    /// # Errors
    /// [`crate::ServerError::Route`] naming the pattern and the problem.
    pub fn try_route(
        mut self,
        path: &str,
        methods: MethodRouter,
    ) -> Result<Self, crate::ServerError> {
        let (pattern, constraints) =
            parse_pattern(path).map_err(|message| crate::ServerError::Route {
                path: path.to_owned(),
                message,
            })?;
        let candidate = Candidate {
            display: path.to_owned(),
            constraints,
            target: Target::Methods(methods),
        };
        self.insert(pattern, candidate, path)?;
        Ok(self)
    }

    fn insert(
        &mut self,
        pattern: String,
        candidate: Candidate,
        path: &str,
    ) -> Result<(), crate::ServerError> {
        if let Some(&index) = self.by_pattern.get(&pattern) {
            let entry = &mut self.entries[index];
            let same = entry.candidates.iter_mut().find(|c| {
                c.constraints.len() == candidate.constraints.len()
                    && c.constraints
                        .iter()
                        .zip(&candidate.constraints)
                        .all(|(a, b)| a.0 == b.0 && a.1.as_str() == b.1.as_str())
            });
            match (same, candidate.target) {
                (Some(existing), Target::Methods(methods)) => match &mut existing.target {
                    Target::Methods(mine) => {
                        mine.merge(methods)
                            .map_err(|message| crate::ServerError::Route {
                                path: path.to_owned(),
                                message,
                            })?;
                    }
                    Target::Mount { .. } => {
                        return Err(crate::ServerError::Route {
                            path: path.to_owned(),
                            message: "a service is already mounted there".into(),
                        });
                    }
                },
                (Some(_), Target::Mount { .. }) => {
                    return Err(crate::ServerError::Route {
                        path: path.to_owned(),
                        message: "a route already exists there".into(),
                    });
                }
                (None, target) => {
                    // Its first candidate may have had constraints, and kept the
                    // pattern out of `catch_alls`.
                    add_catch_all(
                        &mut self.catch_alls,
                        &pattern,
                        &candidate.constraints,
                        index,
                    );
                    entry.candidates.push(Candidate {
                        target,
                        ..candidate
                    });
                }
            }
            return Ok(());
        }
        let index = self.entries.len();
        self.table
            .insert(pattern.clone(), index)
            .map_err(|error| crate::ServerError::Route {
                path: path.to_owned(),
                message: error.to_string(),
            })?;
        add_catch_all(
            &mut self.catch_alls,
            &pattern,
            &candidate.constraints,
            index,
        );
        self.by_pattern.insert(pattern.clone(), index);
        self.entries.push(Entry {
            pattern,
            candidates: vec![candidate],
        });
        Ok(())
    }

    /// Mounts a tower service (an axum `Router`, a `tower::service_fn`…) under
    /// `prefix`: it gets every request whose path is `prefix` or starts with `prefix/`,
    /// with the prefix stripped from the path (the query, scheme and authority kept).
    /// The prefix may have parameters (`/tenants/{tenant}`): they are in the
    /// [`RequestContext`](crate::RequestContext)'s `params`, and what they matched is
    /// stripped too. A path that fails another route's constraints reaches the mount
    /// that also matches it (`/users/me` past `/users/{id:[0-9]+}` to a mount at `/`).
    ///
    /// # Panics
    /// When `prefix` does not start with `/`, is not a valid pattern, gives a parameter
    /// a constraint, or conflicts with a route.
    pub fn mount<S, B>(mut self, prefix: &str, service: S) -> Self
    where
        S: IntoEndpoint<B> + Send + Sync,
    {
        assert!(
            prefix.starts_with('/'),
            "mount prefix `{prefix}` must start with `/`"
        );
        match parse_pattern(prefix) {
            Ok((_, constraints)) => assert!(
                constraints.is_empty(),
                "mount prefix `{prefix}`: a mount's parameters cannot have constraints"
            ),
            Err(message) => panic!("mount prefix `{prefix}`: {message}"),
        }
        let prefix = prefix.trim_end_matches('/').to_owned();
        let factory: ServiceFactory = Arc::new(move || service.clone().into_endpoint());
        let display = format!("{prefix}/*");
        for pattern in [
            if prefix.is_empty() {
                "/".to_owned()
            } else {
                prefix.clone()
            },
            format!("{prefix}/{{*nucleon_mount_rest}}"),
        ] {
            let candidate = Candidate {
                display: display.clone(),
                constraints: Vec::new(),
                target: Target::Mount {
                    prefix: prefix.clone(),
                    factory: Arc::clone(&factory),
                },
            };
            if let Err(error) = self.insert(pattern, candidate, &display) {
                panic!("{error}");
            }
        }
        self
    }

    /// Wraps the whole application (every route and mounted service) in a tower
    /// [`Layer`], e.g. `tower_http::cors::CorsLayer` or `tower_http::trace::TraceLayer`.
    /// Layers added later wrap earlier ones.
    pub fn layer<L: EndpointLayer<B>, B>(mut self, layer: L) -> Self {
        self.layers.push(layer_fn(layer));
        self
    }

    /// Registers shared state, reachable from handlers with
    /// [`State<T>`](crate::State). One value per type; a later one replaces it.
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        let map = self.state.get_or_insert_with(Default::default);
        Arc::make_mut(map).0.insert(
            TypeId::of::<T>(),
            Arc::new(value) as Arc<dyn Any + Send + Sync>,
        );
        self
    }

    /// The route table, in the order routes were added.
    pub fn routes(&self) -> Vec<RouteInfo> {
        let mut out = Vec::new();
        let mut seen_mounts = Vec::new();
        for entry in &self.entries {
            for candidate in &entry.candidates {
                match &candidate.target {
                    Target::Methods(methods) => {
                        for entry in &methods.methods {
                            let mut requires = Vec::new();
                            entry.handler.required_handles(&mut requires);
                            out.push(RouteInfo {
                                method: entry.method.to_string(),
                                path: candidate.display.clone(),
                                requires,
                            });
                        }
                    }
                    Target::Mount { .. } => {
                        if !seen_mounts.contains(&candidate.display) {
                            seen_mounts.push(candidate.display.clone());
                            out.push(RouteInfo {
                                method: "*".into(),
                                path: candidate.display.clone(),
                                requires: Vec::new(),
                            });
                        }
                    }
                }
            }
        }
        out
    }

    /// What the routes need from the adapters ([`Dep`](crate::Dep) arguments), for the
    /// runtime to check at start ([`nucleon_runtime::RuntimeBuilder::require`]).
    pub fn requirements(&self) -> Vec<Requirement> {
        self.routes()
            .into_iter()
            .flat_map(|route| {
                let needed_by = format!("{} {}", route.method, route.path);
                route.requires.into_iter().map(move |key| Requirement {
                    key,
                    needed_by: needed_by.clone(),
                })
            })
            .collect()
    }

    /// Builds this worker's instance: per-worker services, layers applied.
    pub(crate) fn compile(&self, default_timeout: Option<Duration>, retry_after: u64) -> Compiled {
        let mut mounts: HashMap<String, Endpoint> = HashMap::new();
        let entries = self
            .entries
            .iter()
            .map(|entry| {
                let names = param_names(&entry.pattern);
                CEntry {
                    candidates: entry
                        .candidates
                        .iter()
                        .map(|c| CCandidate {
                            constraints: c
                                .constraints
                                .iter()
                                .map(|(name, regex)| Constraint::new(&names, name, regex))
                                .collect(),
                            target: match &c.target {
                                Target::Methods(m) => compile_methods(m, &entry.pattern),
                                Target::Mount { prefix, factory } => CTarget::Mount {
                                    segments: prefix_segments(prefix),
                                    label: StaticLabel::intern(&format!("MOUNT {prefix}/*")),
                                    endpoint: mounts
                                        .entry(prefix.clone())
                                        .or_insert_with(|| factory())
                                        .clone(),
                                },
                            },
                        })
                        .collect(),
                    names,
                }
            })
            .collect();
        Compiled {
            table: self.table.clone(),
            catch_alls: self.catch_alls.clone(),
            statics: StaticRoutes::new(self.entries.iter().map(|entry| entry.pattern.as_str())),
            entries,
            // A map of the worker's own (its values shared): every request clones the
            // map's `Arc` into its context, and one `Arc` shared by all workers would
            // have its count bounce between their cores on every request.
            state: self
                .state
                .as_ref()
                .map(|shared| Arc::new(StateMap(shared.0.clone()))),
            default_timeout,
            retry_after,
            layers: self.layers.clone(),
        }
    }
}

/// Puts `pattern` (entry `index`) in the catch-alls when it ends in a catch-all and
/// its candidate has no `constraints` (a catch-all with constraints stays out: a path it
/// fails goes past it). A subset of the route table's patterns, so matchit refuses no
/// conflict here that it did not refuse there; a pattern already in is left as it is.
fn add_catch_all(
    catch_alls: &mut matchit::Router<usize>,
    pattern: &str,
    constraints: &[(String, Regex)],
    index: usize,
) {
    if ends_in_catch_all(pattern) && constraints.is_empty() {
        let _ = catch_alls.insert(pattern, index);
    }
}

/// Whether a matchit pattern ends in a catch-all parameter (`/files/{*path}`).
fn ends_in_catch_all(pattern: &str) -> bool {
    pattern
        .rfind('{')
        .is_some_and(|at| pattern[at + 1..].starts_with('*') && pattern.ends_with('}'))
}

/// The parameter names of a matchit pattern, in order (the mount's rest left out).
fn param_names(pattern: &str) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut rest = pattern;
    while let Some(start) = rest.find('{') {
        if rest[start + 1..].starts_with('{') {
            rest = &rest[start + 2..];
            continue;
        }
        let Some(end) = rest[start..].find('}') else {
            break;
        };
        let name = rest[start + 1..start + end].trim_start_matches('*');
        if name != "nucleon_mount_rest" {
            // Interned (kept for the process's life, once per distinct name): a
            // request's parameters then name themselves without a reference count.
            names.push(StaticLabel::intern(name).as_str());
        }
        rest = &rest[start + end + 1..];
    }
    names
}

/// A compiled parameter constraint. Simple ones (`[a-z]{2}`, `[0-9]+`, `\d{1,4}`: one
/// ASCII character class, repeated) are checked byte by byte; the rest by the regex.
struct Constraint {
    /// The parameter's position in the pattern.
    index: usize,
    regex: Regex,
    simple: Option<SimpleClass>,
}

/// `[class]{min,max}` over ASCII.
struct SimpleClass {
    set: u128,
    min: usize,
    max: usize,
}

impl Constraint {
    fn new(names: &[&'static str], name: &str, regex: &Regex) -> Self {
        // The pattern as compiled: `^(?:…)$`.
        let source = regex.as_str();
        let inner = source
            .strip_prefix("^(?:")
            .and_then(|s| s.strip_suffix(")$"))
            .unwrap_or_default();
        Self {
            // Every constraint names one of the pattern's parameters (`parse_pattern`).
            index: names
                .iter()
                .position(|n| **n == *name)
                .unwrap_or(usize::MAX),
            regex: regex.clone(),
            simple: SimpleClass::parse(inner),
        }
    }

    fn is_match(&self, value: &str) -> bool {
        match &self.simple {
            Some(class) => class.is_match(value),
            None => self.regex.is_match(value),
        }
    }
}

impl SimpleClass {
    fn parse(pattern: &str) -> Option<Self> {
        let (set, rest) = if let Some(rest) = pattern.strip_prefix("\\d") {
            (ascii_range(b'0', b'9'), rest)
        } else {
            let body = pattern.strip_prefix('[')?;
            let close = body.find(']')?;
            let (class, rest) = (&body[..close], &body[close + 1..]);
            if class.is_empty() || class.starts_with('^') {
                return None;
            }
            let bytes = class.as_bytes();
            let mut set = 0_u128;
            let mut i = 0;
            while i < bytes.len() {
                let c = bytes[i];
                if !c.is_ascii_alphanumeric()
                    && c != b'_'
                    && !(c == b'-' && (i == 0 || i + 1 == bytes.len()))
                {
                    return None;
                }
                if i + 2 < bytes.len() && bytes[i + 1] == b'-' {
                    let hi = bytes[i + 2];
                    if !hi.is_ascii_alphanumeric() || hi < c {
                        return None;
                    }
                    set |= ascii_range(c, hi);
                    i += 3;
                } else {
                    set |= 1 << c;
                    i += 1;
                }
            }
            (set, rest)
        };
        let (min, max) = match rest {
            "" => (1, 1),
            "+" => (1, usize::MAX),
            "*" => (0, usize::MAX),
            _ => {
                let counts = rest.strip_prefix('{')?.strip_suffix('}')?;
                match counts.split_once(',') {
                    None => {
                        let n = counts.parse().ok()?;
                        (n, n)
                    }
                    Some((lo, "")) => (lo.parse().ok()?, usize::MAX),
                    Some((lo, hi)) => (lo.parse().ok()?, hi.parse().ok()?),
                }
            }
        };
        (min <= max).then_some(Self { set, min, max })
    }

    fn is_match(&self, value: &str) -> bool {
        (self.min..=self.max).contains(&value.len())
            && value.bytes().all(|b| b < 128 && self.set & (1 << b) != 0)
    }
}

fn ascii_range(lo: u8, hi: u8) -> u128 {
    (lo..=hi).fold(0, |set, c| set | 1 << c)
}

fn compile_methods(methods: &MethodRouter, pattern: &str) -> CTarget {
    let mut allowed: Vec<&str> = methods.methods.iter().map(|e| e.method.as_str()).collect();
    if allowed.contains(&"GET") && !allowed.contains(&"HEAD") {
        allowed.push("HEAD");
    }
    let allow = HeaderValue::from_str(&allowed.join(", ")).unwrap_or(HeaderValue::from_static(""));
    let calls = methods
        .methods
        .iter()
        .map(|entry| {
            let call = if entry.layers.is_empty() {
                Callee::Handler(Arc::clone(&entry.handler))
            } else {
                let handler = Arc::clone(&entry.handler);
                let inner = Endpoint::from_fn(move |request| handler.call(request));
                Callee::Service(entry.layers.iter().fold(inner, |ep, layer| layer(ep)))
            };
            CCall {
                method: entry.method.clone(),
                label: StaticLabel::intern(&format!("{} {pattern}", entry.method)),
                call,
                timeout: entry.timeout,
            }
        })
        .collect();
    // The route's 405 through its layers: the `Allow` it is to carry comes in the
    // request's extensions (it may name other routes' methods on the same pattern).
    let fallback = (!methods.fallback_layers.is_empty()).then(|| {
        let label = StaticLabel::intern(&format!("405 {pattern}"));
        let inner = Endpoint::from_fn(|request: Request| {
            let allow = request
                .extensions()
                .get::<AllowHeader>()
                .map_or(HeaderValue::from_static(""), |allow| allow.0.clone());
            Box::pin(std::future::ready(method_not_allowed(&request, &allow)))
        });
        let endpoint = methods
            .fallback_layers
            .iter()
            .fold(inner, |ep, layer| layer(ep));
        (endpoint, label)
    });
    CTarget::Methods {
        calls,
        allow,
        fallback,
    }
}

/// The `Allow` of a 405 made by a route's layered fallback.
#[derive(Clone)]
struct AllowHeader(HeaderValue);

/// Splits `/countries/{code:[a-z]{2}}/` into matchit's `/countries/{code}/` and the
/// constraints.
fn parse_pattern(path: &str) -> Result<(String, Vec<(String, Regex)>), String> {
    if !path.starts_with('/') {
        return Err("a route must start with `/`".into());
    }
    let mut pattern = String::with_capacity(path.len());
    let mut constraints = Vec::new();
    let mut chars = path.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        if c != '{' {
            pattern.push(c);
            continue;
        }
        if chars.peek().is_some_and(|&(_, n)| n == '{') {
            chars.next();
            pattern.push_str("{{");
            continue;
        }
        let mut depth = 1;
        let mut end = None;
        for (i, n) in chars.by_ref() {
            match n {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = end.ok_or_else(|| format!("unclosed `{{` at byte {start}"))?;
        let inner = &path[start + 1..end];
        let (name, regex) = match inner.split_once(':') {
            Some((name, regex)) => (name, Some(regex)),
            None => (inner, None),
        };
        let bare = name.strip_prefix('*').unwrap_or(name);
        if bare.is_empty() || !bare.chars().all(|c| c.is_alphanumeric() || c == '_') {
            return Err(format!(
                "parameter name `{name}` must be letters, digits or `_`"
            ));
        }
        if let Some(regex) = regex {
            let compiled = Regex::new(&format!("^(?:{regex})$"))
                .map_err(|e| format!("constraint of `{bare}` is not a valid regex: {e}"))?;
            constraints.push((bare.to_owned(), compiled));
        }
        pattern.push('{');
        pattern.push_str(name);
        pattern.push('}');
    }
    Ok((pattern, constraints))
}

enum Callee {
    Handler(Arc<dyn ErasedHandler>),
    Service(Endpoint),
}

/// One method of a compiled route.
struct CCall {
    method: Method,
    /// The watchdog's label: `GET /countries/{code}`.
    label: StaticLabel,
    call: Callee,
    timeout: Option<Duration>,
}

enum CTarget {
    Methods {
        calls: Vec<CCall>,
        allow: HeaderValue,
        /// The 405 inside the route's layers, when it has any, and its watchdog label.
        fallback: Option<(Endpoint, StaticLabel)>,
    },
    Mount {
        /// The prefix's path segments, taken off the request's path.
        segments: usize,
        label: StaticLabel,
        endpoint: Endpoint,
    },
}

struct CCandidate {
    constraints: Vec<Constraint>,
    target: CTarget,
}

/// A matchit pattern's routes: one per set of constraints, tried in order.
struct CEntry {
    candidates: Vec<CCandidate>,
    /// The pattern's parameter names in order (its candidates differ only in their
    /// constraints), shared by every request's [`Params`].
    names: Vec<&'static str>,
}

impl CEntry {
    /// The first candidate from index `from` on whose constraints `params` meet.
    fn candidate_from(&self, from: usize, params: &Params) -> Option<usize> {
        let values = params.as_slice();
        let found = self.candidates.get(from..)?.iter().position(|c| {
            c.constraints.iter().all(|constraint| {
                values
                    .get(constraint.index)
                    .is_some_and(|(_, value)| constraint.is_match(value.as_str()))
            })
        })?;
        Some(from + found)
    }
}

/// A worker's compiled router.
pub(crate) struct Compiled {
    table: matchit::Router<usize>,
    /// See [`Router`]'s.
    catch_alls: matchit::Router<usize>,
    /// The routes without parameters, by path: found without walking `table`.
    statics: StaticRoutes,
    entries: Vec<CEntry>,
    state: Option<Arc<StateMap>>,
    default_timeout: Option<Duration>,
    /// `http.retry_after`, for the 503 of a handler past its time limit.
    retry_after: u64,
    layers: Vec<LayerFn>,
}

/// 405 with `Allow`, for a method the route has no handler for.
#[cold]
#[inline(never)]
fn method_not_allowed(request: &Request, allow: &HeaderValue) -> Response {
    HttpError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        format!(
            "{} is not allowed on {}; allowed: {}",
            request.method(),
            request.uri().path(),
            allow.to_str().unwrap_or_default()
        ),
    )
    .with_header(ALLOW, allow.clone())
    .into_response()
}

/// A mounted service's request: the mount's prefix (its first `segments` path
/// segments, whatever its parameters matched) taken off its path, `/` when nothing is
/// left; the query, scheme and authority (an HTTP/2 request's `:authority`) kept.
#[inline(never)]
fn strip_prefix(request: &mut Request, segments: usize) {
    let uri = request.uri();
    let path = uri.path();
    // The prefix is `/s1/…/sN`: the rest starts at the path's (N + 1)th `/`.
    let rest = path
        .match_indices('/')
        .nth(segments)
        .map_or("/", |(at, _)| &path[at..]);
    let new = match uri.query() {
        Some(query) => format!("{rest}?{query}"),
        None => rest.to_owned(),
    };
    let mut parts = std::mem::take(request.uri_mut()).into_parts();
    parts.path_and_query = new.parse().ok();
    *request.uri_mut() = Uri::from_parts(parts).unwrap_or_default();
}

/// The number of path segments of a mount's prefix (`/a/{b}`: 2; `` for `/`: 0).
fn prefix_segments(prefix: &str) -> usize {
    prefix.matches('/').count()
}

/// A parameter, percent-decoded (borrowed when nothing is encoded); `None` when the
/// decoded bytes are not UTF-8.
fn decode(value: &str) -> Option<std::borrow::Cow<'_, str>> {
    if value.contains('%') {
        percent_encoding::percent_decode_str(value)
            .decode_utf8()
            .ok()
    } else {
        Some(std::borrow::Cow::Borrowed(value))
    }
}

/// What the route tables give a path.
enum Found<'a> {
    /// The route's entry, the first of its candidates the path meets, the parameters.
    Route(&'a CEntry, usize, Params),
    /// A parameter that is not UTF-8 once percent-decoded (`%FF`).
    NotUtf8(&'static str),
}

/// 400 for a path parameter that is not UTF-8 once percent-decoded: the two values
/// `%FE` and `%FF` are not told apart by replacing them, so neither is served.
#[cold]
#[inline(never)]
fn not_utf8(name: &str) -> Response {
    HttpError::invalid_parameters([(name, "is not valid UTF-8 once percent-decoded")])
        .into_response()
}

/// What routing makes of a request: an answer at once (404, 405…), a handler to call
/// with the request and its context (the pipeline boxes its future with its own), or
/// a mounted service or a layered route to call (the context in the request's
/// extensions). The request itself stays with the caller, which moves it once.
pub(crate) enum Dispatch<'a> {
    /// Answered at once (404, 405).
    Ready(Response),
    /// A handler, to call with the request and its context.
    Handler {
        handler: &'a dyn ErasedHandler,
        limits: Limits,
    },
    /// A service (a route's layers, a mounted service), to call with the request, its
    /// context in the extensions.
    Service {
        endpoint: &'a Endpoint,
        limits: Limits,
    },
}

impl Compiled {
    pub(crate) fn state(&self) -> Option<&Arc<StateMap>> {
        self.state.as_ref()
    }

    /// The app-level entry point: layers around the dispatcher (None: no layers).
    pub(crate) fn app_endpoint(self: &Rc<Self>) -> Option<Endpoint> {
        if self.layers.is_empty() {
            return None;
        }
        let this = Rc::clone(self);
        let inner = Endpoint::from_fn(move |mut request: Request| {
            let Some(ctx) = request.extensions_mut().remove::<RequestContext>() else {
                return Box::pin(std::future::ready(missing_context().into_response()));
            };
            let retry_after = this.retry_after;
            let mut ctx = ctx;
            match this.dispatch(&mut request, &mut ctx, None) {
                Dispatch::Ready(response) => Box::pin(std::future::ready(response)),
                Dispatch::Handler { handler, limits } => {
                    Box::pin(limits.run(handler.call_with(request, ctx), retry_after))
                }
                Dispatch::Service { endpoint, limits } => {
                    request.extensions_mut().insert(ctx);
                    Box::pin(limits.run(endpoint.call(request), retry_after))
                }
            }
        });
        Some(self.layers.iter().fold(inner, |ep, layer| layer(ep)))
    }

    pub(crate) fn retry_after(&self) -> u64 {
        self.retry_after
    }

    /// The route table's entry for `path`, the first of its candidates whose
    /// constraints the path meets, and the path's parameters.
    fn lookup(&self, path: &str) -> Option<Found<'_>> {
        if let Some(index) = self.statics.get(path) {
            // No parameters, so no constraints: its first candidate is the route.
            let entry = &self.entries[index];
            return (!entry.candidates.is_empty()).then_some(Found::Route(entry, 0, Params::None));
        }
        self.lookup_in(&self.table, path)
    }

    /// `path` in `table` (the route table, or its catch-alls).
    fn lookup_in(&self, table: &matchit::Router<usize>, path: &str) -> Option<Found<'_>> {
        let matched = table.at(path).ok()?;
        let entry = &self.entries[*matched.value];
        // matchit gives the parameters in the pattern's order: the names by position,
        // and the mount's rest (always last) past them, left out.
        let mut params = Params::None;
        for (position, ((name, value), known)) in
            matched.params.iter().zip(&entry.names).enumerate()
        {
            debug_assert_eq!(name, &**known);
            let Some(value) = decode(value) else {
                // No constraint takes it: a route that leaves it unconstrained gets
                // 400; if every route here constrains it, it fails them all.
                let unconstrained = entry
                    .candidates
                    .iter()
                    .any(|c| c.constraints.iter().all(|k| k.index != position));
                return unconstrained.then_some(Found::NotUtf8(known));
            };
            params.push(known, ParamValue::new(value));
        }
        let at = entry.candidate_from(0, &params)?;
        Some(Found::Route(entry, at, params))
    }

    /// Routes one request: fills in its context (params, route) and, for a mounted
    /// service, rewrites its URI; the caller then moves the request once, into what
    /// serves it.
    pub(crate) fn dispatch(
        &self,
        request: &mut Request,
        ctx: &mut RequestContext,
        task_label: Option<&LabelHandle>,
    ) -> Dispatch<'_> {
        match self.lookup(request.uri().path()) {
            Some(Found::Route(entry, at, params)) => {
                self.dispatch_to(entry, at, params, request, ctx, task_label)
            }
            Some(Found::NotUtf8(name)) => Dispatch::Ready(not_utf8(name)),
            None => self.unrouted(request, ctx, task_label),
        }
    }

    /// No route takes the path: a path that failed the constraints of the route
    /// matchit gave goes to the mount or catch-all route that also matches it, as if
    /// that route did not exist (`/users/me` past `/users/{id:[0-9]+}` to a service
    /// mounted at `/`); `prefix/` goes to the service mounted at `prefix` (matchit's
    /// catch-all takes one character at least); anything else is 404 (or 308 to the
    /// same path with or without its trailing slash, when that one exists).
    #[cold]
    #[inline(never)]
    fn unrouted<'a>(
        &'a self,
        request: &mut Request,
        ctx: &mut RequestContext,
        task_label: Option<&LabelHandle>,
    ) -> Dispatch<'a> {
        let path = request.uri().path();
        match self.lookup_in(&self.catch_alls, path) {
            Some(Found::Route(entry, at, params)) => {
                return self.dispatch_to(entry, at, params, request, ctx, task_label);
            }
            Some(Found::NotUtf8(name)) => return Dispatch::Ready(not_utf8(name)),
            None => {}
        }
        if let Some(prefix) = path.strip_suffix('/')
            && !prefix.is_empty()
            && let Some(Found::Route(entry, at, params)) = self.lookup(prefix)
            && matches!(entry.candidates[at].target, CTarget::Mount { .. })
        {
            return self.dispatch_to(entry, at, params, request, ctx, task_label);
        }
        Dispatch::Ready(self.not_found(request))
    }

    /// Routes a request to candidate `at` of `entry` (inlined into `dispatch`, where
    /// it is hot; its other callers are cold).
    #[inline(always)]
    fn dispatch_to<'a>(
        &'a self,
        entry: &'a CEntry,
        at: usize,
        params: Params,
        request: &mut Request,
        ctx: &mut RequestContext,
        task_label: Option<&LabelHandle>,
    ) -> Dispatch<'a> {
        match &entry.candidates[at].target {
            CTarget::Methods { calls, .. } => {
                let method = request.method();
                let mut head = false;
                let mut found = calls.iter().find(|c| c.method == method);
                if found.is_none() && method == Method::HEAD {
                    head = true;
                    found = calls.iter().find(|c| c.method == Method::GET);
                }
                let Some(CCall {
                    label,
                    call,
                    timeout,
                    ..
                }) = found
                else {
                    return self.method_elsewhere(entry, at, params, request, ctx, task_label);
                };
                ctx.params = params;
                ctx.route = Some(label.as_str());
                name_task(task_label, *label);
                let limits = Limits {
                    timeout: timeout.or(self.default_timeout),
                    head,
                };
                match call {
                    Callee::Handler(handler) => Dispatch::Handler {
                        handler: &**handler,
                        limits,
                    },
                    // Layers see the context in the extensions, as the handler
                    // inside them does.
                    Callee::Service(endpoint) => Dispatch::Service { endpoint, limits },
                }
            }
            CTarget::Mount { .. } => self.to_mount(entry, at, params, request, ctx, task_label),
        }
    }

    /// A request for a mounted service: the prefix stripped off its path. `prefix/`
    /// that another mount's catch-all took (a mount at `/` beside one at `/api`, for
    /// `/api/`) goes to the mount at `prefix`.
    #[inline(never)]
    fn to_mount<'a>(
        &'a self,
        mut entry: &'a CEntry,
        mut at: usize,
        mut params: Params,
        request: &mut Request,
        ctx: &mut RequestContext,
        task_label: Option<&LabelHandle>,
    ) -> Dispatch<'a> {
        let path = request.uri().path();
        if let Some(prefix) = path.strip_suffix('/')
            && !prefix.is_empty()
            && let Some(Found::Route(exact, exact_at, exact_params)) = self.lookup(prefix)
            && !std::ptr::eq(exact, entry)
            && matches!(exact.candidates[exact_at].target, CTarget::Mount { .. })
        {
            (entry, at, params) = (exact, exact_at, exact_params);
        }
        let CTarget::Mount {
            segments,
            label,
            endpoint,
        } = &entry.candidates[at].target
        else {
            // Not reached: both candidates looked at here are mounts.
            return self.dispatch_to(entry, at, params, request, ctx, task_label);
        };
        strip_prefix(request, *segments);
        ctx.params = params;
        ctx.route = Some(label.as_str());
        name_task(task_label, *label);
        // Its body is capped already (the pipeline caps every request's).
        Dispatch::Service {
            endpoint,
            limits: Limits::NONE,
        }
    }

    /// Candidate `at` has no handler for the request's method: a later candidate the
    /// path also meets may have one (`/items/{id:[0-9]+}` for GET, `/items/{id}` for
    /// POST); else 405, allowing what every candidate the path meets allows.
    #[cold]
    #[inline(never)]
    fn method_elsewhere<'a>(
        &'a self,
        entry: &'a CEntry,
        at: usize,
        params: Params,
        request: &mut Request,
        ctx: &mut RequestContext,
        task_label: Option<&LabelHandle>,
    ) -> Dispatch<'a> {
        let method = request.method();
        let serves = |candidate: &CCandidate| match &candidate.target {
            CTarget::Methods { calls, .. } => calls
                .iter()
                .any(|c| c.method == method || method == Method::HEAD && c.method == Method::GET),
            CTarget::Mount { .. } => true,
        };
        let mut next = at + 1;
        while let Some(other) = entry.candidate_from(next, &params) {
            if serves(&entry.candidates[other]) {
                return self.dispatch_to(entry, other, params, request, ctx, task_label);
            }
            next = other + 1;
        }
        let mut allowed: Vec<&str> = Vec::new();
        let mut from = at;
        while let Some(index) = entry.candidate_from(from, &params) {
            if let CTarget::Methods { allow, .. } = &entry.candidates[index].target {
                for name in allow.to_str().unwrap_or_default().split(", ") {
                    if !name.is_empty() && !allowed.contains(&name) {
                        allowed.push(name);
                    }
                }
            }
            from = index + 1;
        }
        let allow =
            HeaderValue::from_str(&allowed.join(", ")).unwrap_or(HeaderValue::from_static(""));
        if let CTarget::Methods {
            fallback: Some((endpoint, label)),
            ..
        } = &entry.candidates[at].target
        {
            // The route's layers see the request (a CORS layer answers a preflight),
            // with the route's time limit, as its handlers do.
            let head = request.method() == Method::HEAD;
            request.extensions_mut().insert(AllowHeader(allow));
            ctx.params = params;
            ctx.route = Some(label.as_str());
            name_task(task_label, *label);
            return Dispatch::Service {
                endpoint,
                limits: Limits {
                    timeout: self.default_timeout,
                    head,
                },
            };
        }
        Dispatch::Ready(method_not_allowed(request, &allow))
    }

    #[cold]
    #[inline(never)]
    fn not_found(&self, request: &Request) -> Response {
        let path = request.uri().path();
        if matches!(*request.method(), Method::GET | Method::HEAD) {
            let alternative = match path.strip_suffix('/') {
                Some(stripped) if !stripped.is_empty() => stripped.to_owned(),
                Some(_) => String::new(),
                None => format!("{path}/"),
            };
            if !alternative.is_empty()
                && matches!(self.lookup(&alternative), Some(Found::Route(..)))
            {
                let location = match request.uri().query() {
                    Some(query) => format!("{alternative}?{query}"),
                    None => alternative,
                };
                if let Ok(value) = HeaderValue::from_str(&location) {
                    return HttpError::new(
                        StatusCode::PERMANENT_REDIRECT,
                        "MOVED",
                        format!("{path} is at {location}"),
                    )
                    .with_header(LOCATION, value)
                    .into_response();
                }
            }
        }
        HttpError::not_found(format!("no route for {} {path}", request.method())).into_response()
    }
}

/// A handler ran past its time limit: the server's own failure to answer in time, not
/// the client's (that is 408 `REQUEST_TIMEOUT`, for headers that arrive too slowly), so
/// 503 with `Retry-After` (`http.retry_after` seconds): worth retrying, maybe on
/// another instance.
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_with_constraints() {
        let (p, c) = parse_pattern("/countries/{code:[a-z]{2}}/").unwrap();
        assert_eq!(p, "/countries/{code}/");
        assert_eq!(c.len(), 1);
        assert!(c[0].1.is_match("gb"));
        assert!(!c[0].1.is_match("gbr"));
        let (p, c) = parse_pattern("/files/{*path}").unwrap();
        assert_eq!(p, "/files/{*path}");
        assert!(c.is_empty());
        assert!(parse_pattern("/x/{a:[}").is_err());
        assert!(parse_pattern("/x/{:x}").is_err());
        assert!(parse_pattern("x").is_err());
    }

    #[test]
    fn simple_constraints_match_as_their_regex_does() {
        let cases = [
            "[a-z]{2}",
            "[0-9]+",
            "\\d{1,4}",
            "[a-zA-Z0-9_-]*",
            "[a-f]{2,}",
            "[a-z]",
            "(gb|fr)",
            "[^a-z]+",
            "[a-z]{2}x",
        ];
        let values = [
            "", "gb", "GB", "g", "gbr", "12", "1234", "12345", "a-_Z9", "é", "ab", "x",
        ];
        for case in cases {
            let (_, constraints) = parse_pattern(&format!("/x/{{p:{case}}}")).unwrap();
            let constraint = Constraint::new(&["p"], "p", &constraints[0].1);
            let simple = !matches!(case, "(gb|fr)" | "[^a-z]+" | "[a-z]{2}x");
            assert_eq!(constraint.simple.is_some(), simple, "{case}");
            for value in values {
                assert_eq!(
                    constraint.is_match(value),
                    constraints[0].1.is_match(value),
                    "{case} on {value:?}"
                );
            }
        }
    }

    #[test]
    fn parameter_names_in_pattern_order() {
        let names = param_names("/a/{x}/{{lit}}/{y}/{*nucleon_mount_rest}");
        assert_eq!(names.iter().map(|n| &**n).collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(param_names("/files/{*path}").len(), 1);
    }
}
