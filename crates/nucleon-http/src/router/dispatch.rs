//! Routing one request through a worker's compiled table: the static routes, then
//! matchit's, then the constraints; the method; a mount's prefix taken off; the
//! answers routing gives itself (404, 405, 308, 400 for a parameter not UTF-8).

use std::rc::Rc;

use http::header::{HeaderValue, LOCATION};
use http::{Method, StatusCode, Uri};
use nucleon_runtime::task::LabelHandle;

use super::compiled::{
    AllowHeader, Callee, Compiled, ConstrainedRoute, PatternRoutes, RouteMethod, RouteTarget,
    method_not_allowed,
};
use super::endpoint::Endpoint;
use crate::extract::{ParamValue, Params, RequestContext, missing_context};
use crate::handler::ErasedHandler;
use crate::limits::Limits;
use crate::response::{IntoResponse, Response};
use crate::server::conn::name_task;
use crate::{HttpError, Request};

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
    Route(&'a PatternRoutes, usize, Params),
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
            && matches!(entry.candidates[at].target, RouteTarget::Mount { .. })
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
        entry: &'a PatternRoutes,
        at: usize,
        params: Params,
        request: &mut Request,
        ctx: &mut RequestContext,
        task_label: Option<&LabelHandle>,
    ) -> Dispatch<'a> {
        match &entry.candidates[at].target {
            RouteTarget::Methods { calls, .. } => {
                let method = request.method();
                let mut head = false;
                let mut found = calls.iter().find(|c| c.method == method);
                if found.is_none() && method == Method::HEAD {
                    head = true;
                    found = calls.iter().find(|c| c.method == Method::GET);
                }
                let Some(RouteMethod {
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
            RouteTarget::Mount { .. } => self.to_mount(entry, at, params, request, ctx, task_label),
        }
    }

    /// A request for a mounted service: the prefix stripped off its path. `prefix/`
    /// that another mount's catch-all took (a mount at `/` beside one at `/api`, for
    /// `/api/`) goes to the mount at `prefix`.
    #[inline(never)]
    fn to_mount<'a>(
        &'a self,
        mut entry: &'a PatternRoutes,
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
            && matches!(exact.candidates[exact_at].target, RouteTarget::Mount { .. })
        {
            (entry, at, params) = (exact, exact_at, exact_params);
        }
        let RouteTarget::Mount {
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
        entry: &'a PatternRoutes,
        at: usize,
        params: Params,
        request: &mut Request,
        ctx: &mut RequestContext,
        task_label: Option<&LabelHandle>,
    ) -> Dispatch<'a> {
        let method = request.method();
        let serves = |candidate: &ConstrainedRoute| match &candidate.target {
            RouteTarget::Methods { calls, .. } => calls
                .iter()
                .any(|c| c.method == method || method == Method::HEAD && c.method == Method::GET),
            RouteTarget::Mount { .. } => true,
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
            if let RouteTarget::Methods { allow, .. } = &entry.candidates[index].target {
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
        if let RouteTarget::Methods {
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
