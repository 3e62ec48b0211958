//! A worker's compiled router: the route table with per-worker services made,
//! layers applied, constraints compiled and labels interned.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::header::{ALLOW, HeaderValue};
use http::{Method, StatusCode};
use nucleon_runtime::task::StaticLabel;

use super::builder::{Router, Target};
use super::endpoint::{Endpoint, LayerFn};
use super::method::MethodRouter;
use super::pattern::{Constraint, param_names};
use crate::extract::{Params, StateMap};
use crate::handler::ErasedHandler;
use crate::response::{IntoResponse, Response};
use crate::static_routes::StaticRoutes;
use crate::{HttpError, Request};

impl Router {
    /// Builds this worker's instance: per-worker services, layers applied.
    pub(crate) fn compile(&self, default_timeout: Option<Duration>, retry_after: u64) -> Compiled {
        let mut mounts: HashMap<String, Endpoint> = HashMap::new();
        let entries = self
            .entries
            .iter()
            .map(|entry| {
                let names = param_names(&entry.pattern);
                PatternRoutes {
                    candidates: entry
                        .candidates
                        .iter()
                        .map(|c| ConstrainedRoute {
                            constraints: c
                                .constraints
                                .iter()
                                .map(|(name, regex)| Constraint::new(&names, name, regex))
                                .collect(),
                            target: match &c.target {
                                Target::Methods(m) => compile_methods(m, &entry.pattern),
                                Target::Mount { prefix, factory } => RouteTarget::Mount {
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

fn compile_methods(methods: &MethodRouter, pattern: &str) -> RouteTarget {
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
            RouteMethod {
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
    RouteTarget::Methods {
        calls,
        allow,
        fallback,
    }
}

/// The `Allow` of a 405 made by a route's layered fallback.
#[derive(Clone)]
pub(super) struct AllowHeader(pub(super) HeaderValue);

/// What serves one method of a route: its handler, or the service its layers made
/// around it.
pub(super) enum Callee {
    Handler(Arc<dyn ErasedHandler>),
    Service(Endpoint),
}

/// One method of a compiled route.
pub(super) struct RouteMethod {
    pub(super) method: Method,
    /// The watchdog's label: `GET /countries/{code}`.
    pub(super) label: StaticLabel,
    pub(super) call: Callee,
    pub(super) timeout: Option<Duration>,
}

/// What a compiled route serves: its methods' handlers (and the 405 of the others),
/// or a mounted service.
pub(super) enum RouteTarget {
    Methods {
        calls: Vec<RouteMethod>,
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

/// One route of a pattern: the constraints its parameters must meet, and what serves
/// a request that meets them.
pub(super) struct ConstrainedRoute {
    pub(super) constraints: Vec<Constraint>,
    pub(super) target: RouteTarget,
}

/// A matchit pattern's routes: one per set of constraints, tried in order.
pub(super) struct PatternRoutes {
    pub(super) candidates: Vec<ConstrainedRoute>,
    /// The pattern's parameter names in order (its candidates differ only in their
    /// constraints), shared by every request's [`Params`].
    pub(super) names: Vec<&'static str>,
}

impl PatternRoutes {
    /// The first candidate from index `from` on whose constraints `params` meet.
    pub(super) fn candidate_from(&self, from: usize, params: &Params) -> Option<usize> {
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
    pub(super) table: matchit::Router<usize>,
    /// See [`Router`]'s.
    pub(super) catch_alls: matchit::Router<usize>,
    /// The routes without parameters, by path: found without walking `table`.
    pub(super) statics: StaticRoutes,
    pub(super) entries: Vec<PatternRoutes>,
    pub(super) state: Option<Arc<StateMap>>,
    pub(super) default_timeout: Option<Duration>,
    /// `http.retry_after`, for the 503 of a handler past its time limit.
    pub(super) retry_after: u64,
    pub(super) layers: Vec<LayerFn>,
}

impl Compiled {
    pub(crate) fn state(&self) -> Option<&Arc<StateMap>> {
        self.state.as_ref()
    }
}

/// 405 with `Allow`, for a method the route has no handler for.
#[cold]
#[inline(never)]
pub(super) fn method_not_allowed(request: &Request, allow: &HeaderValue) -> Response {
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

/// The number of path segments of a mount's prefix (`/a/{b}`: 2; `` for `/`: 0).
fn prefix_segments(prefix: &str) -> usize {
    prefix.matches('/').count()
}
