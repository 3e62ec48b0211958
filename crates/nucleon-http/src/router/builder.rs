//! [`Router`]: the application's route table as it is built (routes, mounted
//! services, layers, state), checked as each route is added.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use nucleon_runtime::{HandleKey, Requirement};
use regex_lite::Regex;

use super::endpoint::{Endpoint, EndpointLayer, IntoEndpoint, LayerFn, layer_fn};
use super::method::MethodRouter;
use super::pattern::{ends_in_catch_all, parse_pattern};
use crate::extract::StateMap;

pub(super) type ServiceFactory = Arc<dyn Fn() -> Endpoint + Send + Sync>;

#[derive(Clone)]
pub(super) enum Target {
    Methods(MethodRouter),
    Mount {
        prefix: String,
        factory: ServiceFactory,
    },
}

#[derive(Clone)]
pub(super) struct Candidate {
    pub(super) display: String,
    pub(super) constraints: Vec<(String, Regex)>,
    pub(super) target: Target,
}

#[derive(Clone)]
pub(super) struct Entry {
    pub(super) pattern: String,
    pub(super) candidates: Vec<Candidate>,
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
    pub(super) table: matchit::Router<usize>,
    /// The patterns that end in a catch-all without constraints (mounts' and
    /// routes'): where a path goes when the route `table` gives it fails its
    /// constraints.
    pub(super) catch_alls: matchit::Router<usize>,
    pub(super) by_pattern: HashMap<String, usize>,
    pub(super) entries: Vec<Entry>,
    pub(super) layers: Vec<LayerFn>,
    pub(super) state: Option<Arc<StateMap>>,
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
    /// [`Layer`](tower::Layer), e.g. `tower_http::cors::CorsLayer` or
    /// `tower_http::trace::TraceLayer`. Layers added later wrap earlier ones.
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
