//! [`MethodRouter`]: the handlers of one path, by method, with their layers and time
//! limits.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::Method;

use super::endpoint::{EndpointLayer, LayerFn, layer_fn};
use crate::handler::{Erased, ErasedHandler, Handler};

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
    pub(super) methods: Vec<MethodEntry>,
    /// The layers around the route's 405 (every layer given, in order).
    pub(super) fallback_layers: Vec<LayerFn>,
}

/// One method's handler, with the layers and time limit given for it.
#[derive(Clone)]
pub(super) struct MethodEntry {
    pub(super) method: Method,
    pub(super) handler: Arc<dyn ErasedHandler>,
    pub(super) layers: Vec<LayerFn>,
    pub(super) timeout: Option<Duration>,
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

    /// Wraps the handlers added so far in a tower [`Layer`](tower::Layer)
    /// (`tower-http`'s CORS, compression, your own…), and the route's 405 for methods
    /// it has no handler for; handlers added afterwards are not wrapped. Layers added
    /// later wrap earlier ones.
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
    pub(super) fn merge(&mut self, other: MethodRouter) -> Result<(), String> {
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
