//! The application: routes, state, adapters and hooks, assembled once.

use std::path::PathBuf;
use std::sync::Arc;

use futures_util::future::LocalBoxFuture;
use nucleon_http::{BoxError, EndpointLayer, IntoEndpoint, MethodRouter, Router};
use nucleon_runtime::{Config, ConfigError, LocalState, WorkerSetup};

/// A lifecycle hook (`on_initialise`, `on_start`, `on_stop`), run once.
pub(crate) type Hook = Box<dyn FnOnce() -> LocalBoxFuture<'static, Result<(), BoxError>>>;
pub(crate) type LocalFn = Arc<dyn Fn() + Send + Sync>;
pub(crate) type WorkerFn = Arc<dyn Fn(&mut WorkerSetup) -> Result<(), BoxError> + Send + Sync>;

/// A service, assembled: routes, mounted services, layers, shared and per-worker state,
/// per-worker adapters, lifecycle hooks, default configuration.
///
/// Hand it to [`crate::run`] for the command line, to [`App::into_runtime`] to start it
/// from code, or to [`TestClient`](crate::test::TestClient) in tests.
///
/// Each worker is set up in this order: per-worker state ([`App::local_state`]); with
/// the `dns` feature, the worker's resolver and outbound HTTP client (unless
/// [`App::without_dns`]); your [`App::per_worker`] setups, in the order added; the HTTP
/// server last, so every handler and adapter can use what comes before it.
///
/// ```
/// use nucleon::{App, Json, Local, get};
///
/// async fn hits(Local(hits): Local<u64>) -> Json<u64> {
///     Json(hits.with_mut(|n| { *n += 1; *n }))
/// }
///
/// let app = App::new("counter")
///     .local_state(|| 0_u64) // one counter per worker, no locks
///     .route("/hits", get(hits))
///     .on_start(|| async {
///         tracing::info!("ready");
///         Ok(())
///     });
/// assert_eq!(app.router().routes().len(), 1);
/// ```
#[must_use]
pub struct App {
    pub(crate) name: String,
    pub(crate) router: Router,
    pub(crate) workers: Vec<WorkerFn>,
    pub(crate) locals: Vec<LocalFn>,
    pub(crate) initialise: Vec<Hook>,
    pub(crate) start: Vec<Hook>,
    pub(crate) stop: Vec<Hook>,
    pub(crate) default_config: Option<&'static str>,
    pub(crate) config_file: Option<PathBuf>,
    #[cfg(feature = "dns")]
    pub(crate) dns: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("router", &self.router)
            .finish_non_exhaustive()
    }
}

impl App {
    /// A new application; `name` is its name in the log (the `serving` line).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            router: Router::new(),
            workers: Vec::new(),
            locals: Vec::new(),
            initialise: Vec::new(),
            start: Vec::new(),
            stop: Vec::new(),
            default_config: None,
            config_file: None,
            #[cfg(feature = "dns")]
            dns: true,
        }
    }

    /// Adds a route (see [`Router::route`]).
    ///
    /// # Panics
    /// On an invalid pattern or a conflicting route.
    pub fn route(mut self, path: &str, methods: MethodRouter) -> Self {
        self.router = self.router.route(path, methods);
        self
    }

    /// Mounts a tower service (an axum `Router`, say) under `prefix` (see
    /// [`Router::mount`]).
    pub fn mount<S, B>(mut self, prefix: &str, service: S) -> Self
    where
        S: IntoEndpoint<B> + Send + Sync,
    {
        self.router = self.router.mount(prefix, service);
        self
    }

    /// Wraps the whole app in a tower layer (see [`Router::layer`]).
    pub fn layer<L: EndpointLayer<B>, B>(mut self, layer: L) -> Self {
        self.router = self.router.layer(layer);
        self
    }

    /// Replaces the router (routes built elsewhere, or merged by hand).
    pub fn with_router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    /// Shared state for [`State<T>`](crate::State) (one value for every worker).
    pub fn state<T: Clone + Send + Sync + 'static>(mut self, value: T) -> Self {
        self.router = self.router.state(value);
        self
    }

    /// Per-worker state for [`Local<T>`](crate::Local): `init` runs on each worker (and
    /// in the test client) to build that worker's own value.
    pub fn local_state<T: 'static>(mut self, init: impl Fn() -> T + Send + Sync + 'static) -> Self {
        self.locals
            .push(Arc::new(move || LocalState::new(init()).register()));
        self
    }

    /// Per-worker setup of your own: adapters (a database pool, a client), tasks.
    /// Runs on each worker's thread at every (re)start (and in the test client, as worker
    /// 0), after the per-worker state and the DNS adapters, before the HTTP server.
    pub fn per_worker(
        mut self,
        setup: impl Fn(&mut WorkerSetup) -> Result<(), BoxError> + Send + Sync + 'static,
    ) -> Self {
        self.workers.push(Arc::new(setup));
        self
    }

    /// Leaves out the per-worker resolver and outbound HTTP client that the `dns` feature
    /// adds to every worker ([`DnsAdapter`](nucleon_dns::DnsAdapter) and
    /// [`HttpClientAdapter`](nucleon_dns::HttpClientAdapter)).
    ///
    /// For a service that never calls out: its workers then read neither
    /// `/etc/resolv.conf` nor the system's root certificates at start, and
    /// `HttpClient::current()` is `None` in its handlers. Add the adapters yourself in
    /// [`App::per_worker`] to configure them in code instead of `app.toml`.
    ///
    /// ```
    /// use nucleon::App;
    ///
    /// let app = App::new("no-outbound-calls").without_dns();
    /// # drop(app);
    /// ```
    ///
    /// Without the `dns` feature there is nothing to leave out, and it does nothing:
    /// an app can say it needs no DNS whatever features the build has (a workspace's
    /// other packages may turn `dns` on for it).
    pub fn without_dns(self) -> Self {
        #[cfg(feature = "dns")]
        return Self { dns: false, ..self };
        #[cfg(not(feature = "dns"))]
        self
    }

    /// A hook run after configuration loads, before anything starts.
    pub fn on_initialise<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.initialise.push(Box::new(move || Box::pin(hook())));
        self
    }

    /// A hook run once every worker serves.
    pub fn on_start<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.start.push(Box::new(move || Box::pin(hook())));
        self
    }

    /// A hook run after the drain, before exit.
    pub fn on_stop<F, Fut>(mut self, hook: F) -> Self
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.stop.push(Box::new(move || Box::pin(hook())));
        self
    }

    /// Default configuration (TOML with `[default]`, `[test]`… tables), usually
    /// `include_str!("../app.toml")`: used when neither `--config` nor `./app.toml` is
    /// there.
    pub fn default_config(mut self, toml: &'static str) -> Self {
        self.default_config = Some(toml);
        self
    }

    /// The configuration file to read when `--config` is not given (default:
    /// `app.toml` in the working directory, if it exists).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// The app's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Takes what each worker is set up with (see [`WorkerPlan`]), reading the `dns` and
    /// `http_client` tables of `config` now, so that a bad value fails before any worker
    /// starts.
    pub(crate) fn worker_plan(&mut self, config: &Config) -> Result<WorkerPlan, ConfigError> {
        #[cfg(feature = "dns")]
        let dns = if self.dns {
            Some(DnsSettings::load(config)?)
        } else {
            None
        };
        #[cfg(not(feature = "dns"))]
        let _ = config;
        Ok(WorkerPlan {
            locals: std::mem::take(&mut self.locals),
            setups: std::mem::take(&mut self.workers),
            #[cfg(feature = "dns")]
            dns,
        })
    }
}

/// The `dns` and `http_client` tables, read once at start.
#[cfg(feature = "dns")]
#[derive(Debug, Clone)]
pub(crate) struct DnsSettings {
    resolver: nucleon_dns::DnsConfig,
    client: nucleon_dns::HttpClientConfig,
}

#[cfg(feature = "dns")]
impl DnsSettings {
    /// Reads `[<env>.dns]` and `[<env>.http_client]` (defaults when absent), and checks
    /// what their types alone cannot ([`nucleon_dns::DnsConfig::check`]).
    pub(crate) fn load(config: &Config) -> Result<Self, ConfigError> {
        let resolver: nucleon_dns::DnsConfig = config.extract_at("dns")?;
        if let Err(error) = resolver.check() {
            let (key, message) = match error {
                nucleon_dns::DnsError::Misconfigured { source_of, reason } => (source_of, reason),
                other => ("dns".to_owned(), other.to_string()),
            };
            return Err(ConfigError::Invalid {
                file: config.file().map_or_else(
                    || "the embedded defaults".to_owned(),
                    |f| f.display().to_string(),
                ),
                environment: config.environment().to_owned(),
                key,
                message,
            });
        }
        Ok(Self {
            resolver,
            client: config.extract_at("http_client")?,
        })
    }
}

/// Everything a worker is set up with before its HTTP server: per-worker state, the DNS
/// adapters (feature `dns`), then the user's per-worker setups. Shared by the runtime's
/// workers and the test client.
#[derive(Clone)]
pub(crate) struct WorkerPlan {
    locals: Vec<LocalFn>,
    setups: Vec<WorkerFn>,
    #[cfg(feature = "dns")]
    dns: Option<DnsSettings>,
}

impl WorkerPlan {
    /// Sets up `worker` (on its own thread).
    pub(crate) fn setup(&self, worker: &mut WorkerSetup) -> Result<(), BoxError> {
        for register in &self.locals {
            register();
        }
        #[cfg(feature = "dns")]
        if let Some(dns) = &self.dns {
            worker
                .adapter(nucleon_dns::DnsAdapter::with_config(dns.resolver.clone()))
                .adapter(nucleon_dns::HttpClientAdapter::with_config(
                    dns.client.clone(),
                ));
        }
        for setup in &self.setups {
            setup(worker)?;
        }
        Ok(())
    }
}
