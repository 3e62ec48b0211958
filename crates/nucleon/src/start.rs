//! Starting an app from code: the command line's `start`, as an API for tests and for
//! programs that embed a service.

use std::net::SocketAddr;
use std::path::PathBuf;

#[cfg(feature = "http")]
use nucleon_http::{HttpConfig, HttpServer, PortClaim};
use nucleon_runtime::{Config, Runtime, RuntimeError, RuntimeHandle};

use crate::App;
use crate::cli::AppError;

/// How to start an [`App`] with [`App::into_runtime`]: what the command line's `start`
/// takes as flags. Anything not set comes from the configuration, as for the command
/// line.
///
/// ```
/// use nucleon::StartOptions;
///
/// let options = StartOptions::new()
///     .port(0) // a free port: see AppRuntime::addr
///     .workers(1)
///     .environment("test")
///     .handle_signals(false);
/// # drop(options);
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct StartOptions {
    pub(crate) host: Option<String>,
    pub(crate) port: Option<u16>,
    pub(crate) workers: Option<usize>,
    pub(crate) environment: Option<String>,
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) handle_signals: bool,
    /// Bind the port although another instance listens on it (`--replace`).
    #[cfg_attr(
        not(feature = "http"),
        allow(dead_code, reason = "read when an HTTP listener claims its port")
    )]
    pub(crate) replace: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            host: None,
            port: None,
            workers: None,
            environment: None,
            config_file: None,
            handle_signals: true,
            replace: false,
        }
    }
}

impl StartOptions {
    /// Everything from the configuration; signals handled (as the command line does).
    pub fn new() -> Self {
        Self::default()
    }

    /// The address to listen on (`--host`; overrides `http.host`).
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The port to listen on (`--port`; overrides `http.port`). 0 picks a free one:
    /// [`AppRuntime::addr`] says which.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// The number of workers (`-j`; default `runtime.workers`, else one per core).
    pub fn workers(mut self, workers: usize) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The environment, a table of the configuration (`--env`; default `NUCLEON_ENV`,
    /// else `NUCLEON_CONFIGURATION`, else `default`).
    pub fn environment(mut self, environment: impl Into<String>) -> Self {
        self.environment = Some(environment.into());
        self
    }

    /// The configuration file (`--config`; default [`App::config_file`], else
    /// `./app.toml`, else [`App::default_config`]).
    pub fn config_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.config_file = Some(path.into());
        self
    }

    /// Whether [`AppRuntime::run`] listens for SIGTERM, SIGINT, SIGHUP and SIGUSR1
    /// (default true). Tests and embedding programs usually turn it off and stop the
    /// runtime with [`RuntimeHandle::shutdown`].
    pub fn handle_signals(mut self, handle: bool) -> Self {
        self.handle_signals = handle;
        self
    }
}

/// What serves the app's routes on each worker.
pub(crate) enum Front {
    /// Nothing: a service without routes (or without the `http` feature).
    None,
    /// A listener: the HTTP server adapter, last on each worker.
    #[cfg(feature = "http")]
    Listener(HttpConfig),
    /// The test client's requests, on its worker.
    #[cfg(feature = "http")]
    InProcess(crate::test::Gateway),
}

impl App {
    /// Builds the runtime that serves this app, as the command line's `start` does
    /// (it calls this): configuration loaded and checked, the listening port chosen
    /// (when the app has routes), every worker set up with the app's state, adapters
    /// and HTTP server. Nothing runs until [`AppRuntime::run`], which blocks the calling
    /// thread until the drain ends. The runtime can be built on one thread and run on
    /// another.
    ///
    /// ```
    /// use nucleon::runtime::Phase;
    /// use nucleon::{App, Json, StartOptions, get};
    ///
    /// async fn hello() -> Json<&'static str> { Json("hello") }
    ///
    /// let app = App::new("hello").route("/", get(hello));
    /// let runtime = app
    ///     .into_runtime(StartOptions::new().port(0).workers(1).handle_signals(false))
    ///     .expect("valid configuration");
    /// let (addr, handle) = (runtime.addr().expect("it has routes"), runtime.handle());
    /// let server = std::thread::spawn(move || runtime.run());
    /// let phase = tokio::runtime::Builder::new_current_thread()
    ///     .build()
    ///     .unwrap()
    ///     .block_on(handle.wait_for(Phase::Serving));
    /// assert_eq!(phase, Phase::Serving);
    /// assert_ne!(addr.port(), 0);
    /// // … connect to `addr` …
    /// handle.shutdown();
    /// server.join().unwrap().expect("a clean drain");
    /// ```
    ///
    /// # Errors
    /// [`AppError::Config`] for invalid configuration (naming file, environment and
    /// key), [`AppError::Http`] for an invalid host or no free port,
    /// [`AppError::Runtime`] for invalid `runtime` settings.
    pub fn into_runtime(self, options: StartOptions) -> Result<AppRuntime, AppError> {
        let config = crate::cli::load_config_for(&self, &options)?;
        // Before the port is claimed: a typo'd table is refused first.
        config.check_tables(&self.known_tables())?;
        let name = self.name.clone();
        #[cfg(feature = "http")]
        if self.serves_http() {
            let mut http = crate::cli::http_config(&config, &options)?;
            let claim = http.claim_port()?;
            let runtime = self.build_runtime(config, &options, Front::Listener(http.clone()))?;
            return Ok(AppRuntime {
                name,
                runtime,
                listener: Some(Listening { http, claim }),
            });
        }
        let runtime = self.build_runtime(config, &options, Front::None)?;
        Ok(AppRuntime {
            name,
            runtime,
            #[cfg(feature = "http")]
            listener: None,
        })
    }

    /// Whether the app has routes (or mounted services) to serve: without any, it
    /// starts no listener.
    #[cfg(feature = "http")]
    pub(crate) fn serves_http(&self) -> bool {
        !self.router.routes().is_empty()
    }

    /// The one place an app becomes a runtime: the command line's `start` and `check`,
    /// [`App::into_runtime`] and the test client all go through it.
    pub(crate) fn build_runtime(
        mut self,
        config: Config,
        options: &StartOptions,
        front: Front,
    ) -> Result<Runtime, AppError> {
        config.check_tables(&self.known_tables())?;
        #[cfg(feature = "metrics")]
        let metrics = crate::metrics::Endpoint::prepare(&config)?;
        #[cfg(feature = "metrics")]
        let metrics_listener = match &metrics {
            Some(endpoint) => match endpoint.port {
                Some(port) => {
                    let app_http = match &front {
                        Front::Listener(http) => http.clone(),
                        _ => crate::cli::http_config(&config, options)?,
                    };
                    Some(endpoint.own_listener(&app_http, port))
                }
                None => {
                    if !matches!(front, Front::None) {
                        self.router = endpoint.add_route(self.router);
                    }
                    None
                }
            },
            None => None,
        };
        #[cfg_attr(not(any(feature = "db", feature = "amqp")), allow(unused_mut))]
        let mut plan = self.worker_plan(&config)?;
        #[cfg(feature = "db")]
        let databases = self.place_databases(&config, &mut plan)?;
        // Read now, so that `check` (which starts no adapter) refuses a bad value.
        #[cfg(feature = "amqp")]
        if self.amqp.is_some() {
            nucleon_amqp::AmqpConfig::load(&config)?;
        }
        let App {
            process,
            #[cfg(feature = "amqp")]
            amqp,
            #[cfg(feature = "amqp")]
            name,
            initialise,
            start,
            stop,
            ..
        } = self;
        let mut builder = Runtime::builder()
            .config(config)
            .handle_signals(options.handle_signals);
        if let Some(n) = options.workers {
            builder = builder.workers(n);
        }
        #[cfg(feature = "db")]
        for database in databases {
            builder = builder.adapter(database);
        }
        for add in process {
            builder = add(builder);
        }
        #[cfg(feature = "amqp")]
        if let Some(amqp) = amqp {
            let consumers = amqp.consumer_count() > 0;
            let (connection, factory) = amqp.build(&name);
            for requirement in connection.requirements() {
                builder = builder.require(requirement);
            }
            builder = builder.adapter(connection);
            if consumers {
                plan.consumers = Some(factory);
            }
        }
        #[cfg(feature = "http")]
        if !matches!(front, Front::None) {
            for requirement in self.router.requirements() {
                builder = builder.require(requirement);
            }
        }
        #[cfg(feature = "http")]
        let router = self.router;
        builder = builder.per_worker(move |worker| {
            plan.setup(worker)?;
            // The metrics' own listener: one worker serves it.
            #[cfg(feature = "metrics")]
            if let Some((router, http)) = &metrics_listener
                && worker.id() == 0
            {
                worker.adapter(HttpServer::new(router.clone(), http.clone()));
            }
            match &front {
                Front::None => {}
                #[cfg(feature = "http")]
                Front::Listener(http) => {
                    worker.adapter(HttpServer::new(router.clone(), http.clone()));
                }
                #[cfg(feature = "http")]
                Front::InProcess(gateway) => gateway.serve_on(worker, &router),
            }
            Ok(())
        });
        for hook in initialise {
            builder = builder.on_initialise(hook);
        }
        for hook in start {
            builder = builder.on_start(hook);
        }
        for hook in stop {
            builder = builder.on_stop(hook);
        }
        Ok(builder.build()?)
    }
}

/// The listener of an app with routes.
#[cfg(feature = "http")]
struct Listening {
    http: HttpConfig,
    /// The address, held from the build until the runtime ends (see
    /// [`HttpConfig::claim_port`]).
    claim: PortClaim,
}

/// An [`App`]'s runtime, built by [`App::into_runtime`] and not yet running.
#[must_use = "nothing serves until `run` is called"]
pub struct AppRuntime {
    name: String,
    runtime: Runtime,
    #[cfg(feature = "http")]
    listener: Option<Listening>,
}

impl AppRuntime {
    /// The address every worker listens on (`None` for an app without routes). When
    /// port 0 was asked for, this is the free port chosen at build time; when the host
    /// is `0.0.0.0` (or `::`), connect to a local address of your choice on this port.
    pub fn addr(&self) -> Option<SocketAddr> {
        #[cfg(feature = "http")]
        return self.listener.as_ref().map(|l| l.claim.addr());
        #[cfg(not(feature = "http"))]
        None
    }

    /// The HTTP settings in force (`port` is the one chosen); `None` for an app without
    /// routes.
    #[cfg(feature = "http")]
    pub fn http_config(&self) -> Option<&HttpConfig> {
        self.listener.as_ref().map(|l| &l.http)
    }

    /// A handle to watch and stop the runtime from other threads:
    /// [`RuntimeHandle::wait_for`], [`RuntimeHandle::shutdown`],
    /// [`RuntimeHandle::health`], watchdog figures.
    pub fn handle(&self) -> RuntimeHandle {
        self.runtime.handle()
    }

    /// The underlying runtime (its settings in force).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// The underlying runtime, to run it yourself.
    pub fn into_inner(self) -> Runtime {
        self.runtime
    }

    /// Runs the app on the calling thread until a drain (a signal, when they are
    /// handled, or [`RuntimeHandle::shutdown`]) ends; see [`Runtime::run`].
    ///
    /// # Errors
    /// A failed start (naming the adapter or hook and its cause), or a drain that missed
    /// its deadline.
    pub fn run(self) -> Result<(), RuntimeError> {
        let workers = self.runtime.handle().workers();
        let name = &self.name;
        match self.addr() {
            Some(addr) => {
                tracing::info!(target: "nucleon", app = %name, "{name} starting on http://{addr} with {workers} worker(s)");
            }
            None => {
                tracing::info!(target: "nucleon", app = %name, "{name} starting with {workers} worker(s), no HTTP listener");
            }
        }
        let Self {
            runtime,
            #[cfg(feature = "http")]
            listener,
            ..
        } = self;
        let result = runtime.run();
        #[cfg(feature = "http")]
        drop(listener);
        result
    }
}

impl std::fmt::Debug for AppRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppRuntime")
            .field("name", &self.name)
            .field("addr", &self.addr())
            .field("handle", &self.runtime.handle())
            .finish_non_exhaustive()
    }
}
