//! The application: routes, state, adapters and hooks, assembled once.

use std::path::PathBuf;
use std::sync::Arc;

#[cfg(feature = "http")]
use nucleon_http::{EndpointLayer, IntoEndpoint, MethodRouter, Router};
use nucleon_runtime::lifecycle::{Hook, hook};
use nucleon_runtime::{
    Adapter, BoxError, Config, ConfigError, LocalState, RuntimeBuilder, WorkerSetup,
};

pub(crate) type LocalFn = Arc<dyn Fn() + Send + Sync>;
pub(crate) type WorkerFn = Arc<dyn Fn(&mut WorkerSetup) -> Result<(), BoxError> + Send + Sync>;
/// Adds a per-process adapter to the runtime being built.
pub(crate) type ProcessFn = Box<dyn FnOnce(RuntimeBuilder) -> RuntimeBuilder + Send>;

/// A service, assembled: routes, mounted services, layers, shared and per-worker state,
/// per-process and per-worker adapters, lifecycle hooks, default configuration.
///
/// Hand it to [`crate::run`] for the command line, to [`App::into_runtime`] to start it
/// from code, or to [`TestClient`](crate::test::TestClient) in tests.
///
/// A service need not speak HTTP: without routes (or without the `http` feature) it
/// starts no listener, and is a back-end worker made of adapters and tasks (an AMQP
/// consumer, a ticker).
///
/// Per-process adapters ([`App::adapter`]) start first, on the runtime's process loop.
/// Then each worker is set up in this order: per-worker state ([`App::local_state`]);
/// with the `dns` feature, the worker's resolver and outbound HTTP client (unless
/// [`App::without_dns`]); your [`App::per_worker_adapter`]s and [`App::per_worker`]
/// setups, in the order added; the HTTP server last, so every handler and adapter can
/// use what comes before it.
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
    #[cfg(feature = "http")]
    pub(crate) router: Router,
    pub(crate) workers: Vec<WorkerFn>,
    pub(crate) process: Vec<ProcessFn>,
    /// The databases (`None`: the main one), feature `db`.
    #[cfg(feature = "db")]
    pub(crate) databases: Vec<Option<String>>,
    /// The schema synced at start, feature `db`.
    #[cfg(feature = "db")]
    pub(crate) schema: Option<&'static str>,
    /// The service's messaging, feature `amqp`.
    #[cfg(feature = "amqp")]
    pub(crate) amqp: Option<nucleon_amqp::Amqp>,
    pub(crate) locals: Vec<LocalFn>,
    pub(crate) initialise: Vec<Hook>,
    pub(crate) start: Vec<Hook>,
    pub(crate) stop: Vec<Hook>,
    pub(crate) default_config: Option<&'static str>,
    /// Configuration tables the app reads for itself (`App::config_table`).
    pub(crate) tables: Vec<&'static str>,
    pub(crate) config_file: Option<PathBuf>,
    #[cfg(feature = "dns")]
    pub(crate) dns: bool,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut app = f.debug_struct("App");
        app.field("name", &self.name);
        #[cfg(feature = "http")]
        app.field("router", &self.router);
        app.finish_non_exhaustive()
    }
}

impl App {
    /// A new application; `name` is its name in the log (the `serving` line).
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            #[cfg(feature = "http")]
            router: Router::new(),
            workers: Vec::new(),
            process: Vec::new(),
            #[cfg(feature = "db")]
            databases: Vec::new(),
            #[cfg(feature = "db")]
            schema: None,
            #[cfg(feature = "amqp")]
            amqp: None,
            locals: Vec::new(),
            initialise: Vec::new(),
            start: Vec::new(),
            stop: Vec::new(),
            default_config: None,
            tables: Vec::new(),
            config_file: None,
            #[cfg(feature = "dns")]
            dns: true,
        }
    }

    #[cfg(feature = "http")]
    /// Adds a route (see [`Router::route`]).
    ///
    /// # Panics
    /// On an invalid pattern or a conflicting route.
    pub fn route(mut self, path: &str, methods: MethodRouter) -> Self {
        self.router = self.router.route(path, methods);
        self
    }

    #[cfg(feature = "http")]
    /// Mounts a tower service (an axum `Router`, say) under `prefix` (see
    /// [`Router::mount`]).
    pub fn mount<S, B>(mut self, prefix: &str, service: S) -> Self
    where
        S: IntoEndpoint<B> + Send + Sync,
    {
        self.router = self.router.mount(prefix, service);
        self
    }

    #[cfg(feature = "http")]
    /// Wraps the whole app in a tower layer (see [`Router::layer`]).
    pub fn layer<L: EndpointLayer<B>, B>(mut self, layer: L) -> Self {
        self.router = self.router.layer(layer);
        self
    }

    #[cfg(feature = "http")]
    /// Replaces the router (routes built elsewhere, or merged by hand).
    pub fn with_router(mut self, router: Router) -> Self {
        self.router = router;
        self
    }

    #[cfg(feature = "http")]
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

    /// Adds a per-process adapter: one instance for the whole process, run on the
    /// runtime's process loop (a thread of its own, watched by the watchdog), for a
    /// library that does its IO off the workers' reactors (a broker connection, an
    /// embedded database). Its handle is `Send + Sync`, and every worker's handlers get
    /// it (`Dep<T>`, or `nucleon::runtime::handle::get`). Per-process adapters start
    /// before the workers and stop after them, with a share of the shutdown timeout of
    /// their own (`runtime.process_reserve`).
    pub fn adapter<A>(mut self, adapter: A) -> Self
    where
        A: Adapter + Send,
        A::Handle: Send + Sync,
    {
        self.process
            .push(Box::new(move |builder| builder.adapter(adapter)));
        self
    }

    /// Adds a per-worker adapter: `make` builds one instance on each worker (at every
    /// (re)start), whose handle is that worker's own (it may be `!Send`: tokio IO bound
    /// to the worker's reactor, an `Rc`). Building must not do IO (`start` does): `app
    /// check` builds one to learn what it gives.
    pub fn per_worker_adapter<A: Adapter>(
        mut self,
        make: impl Fn() -> A + Send + Sync + 'static,
    ) -> Self {
        self.workers.push(Arc::new(move |worker: &mut WorkerSetup| {
            worker.adapter(make());
            Ok(())
        }));
        self
    }

    /// Adds the main database (`[<env>.db]`, feature `db`): a pool per worker for
    /// PostgreSQL, one per process for SQLite, chosen from its URL at start; with no
    /// URL, SQLite at `data/<app name>.db`, created on first start. Handlers take it as
    /// `Dep<Db>`.
    ///
    /// ```toml
    /// [production.db]
    /// url = "postgres://orders:secret@db.internal/orders"
    /// ```
    #[cfg(feature = "db")]
    pub fn database(mut self) -> Self {
        self.databases.push(None);
        self
    }

    /// The application's schema, `database.sql`'s text (usually
    /// `include_str!("../database.sql")`): synced on the main database at start (the
    /// tables missing are created, with their rows: [`nucleon_db::Db::sync`]), so a new
    /// service runs with no set-up, and used by `app db sync` and `app db reset` when
    /// there is no `database.sql` in the working directory.
    #[cfg(feature = "db")]
    pub fn schema(mut self, sql: &'static str) -> Self {
        self.schema = Some(sql);
        self
    }

    /// Adds the database named `name` (`[<env>.db.<name>]`), found by that name
    /// (`Named<Db, N>` with `handle_name!(N = "name")`, or `Db::named`).
    #[cfg(feature = "db")]
    pub fn named_database(mut self, name: impl Into<String>) -> Self {
        self.databases.push(Some(name.into()));
        self
    }

    /// Connects the service to the broker (`[<env>.amqp]`, feature `amqp`): one
    /// connection per process, whose handle is the [`Broker`](nucleon_amqp::Broker)
    /// (`Dep<Broker>` in handlers) to publish, dispatch events, submit tasks and call
    /// procedures. [`App::consume`] and its kin connect too; call this alone for a
    /// service that only publishes.
    #[cfg(feature = "amqp")]
    pub fn messaging(mut self) -> Self {
        self.amqp.get_or_insert_with(nucleon_amqp::Amqp::new);
        self
    }

    #[cfg(feature = "amqp")]
    fn with_amqp(mut self, add: impl FnOnce(nucleon_amqp::Amqp) -> nucleon_amqp::Amqp) -> Self {
        let amqp = self.amqp.take().unwrap_or_default();
        self.amqp = Some(add(amqp));
        self
    }

    /// Declares an exchange, queue or binding on the broker at every (re)connect
    /// (feature `amqp`).
    #[cfg(feature = "amqp")]
    pub fn declare(self, declaration: impl Into<nucleon_amqp::Declaration>) -> Self {
        self.with_amqp(|amqp| amqp.declare(declaration))
    }

    /// Consumes `queue` (declared durable) with `handler` on every worker (feature
    /// `amqp`): acked when the handler succeeds, retried then dead-lettered when it
    /// fails (see [`nucleon_amqp::OnError`]). [`App::consumer`] takes the options.
    ///
    /// ```
    /// use nucleon::App;
    /// use nucleon::amqp::Msg;
    ///
    /// async fn on_signup(Msg(email): Msg<String>) -> Result<(), std::io::Error> {
    ///     tracing::info!(%email, "welcome mail queued");
    ///     Ok(())
    /// }
    ///
    /// let app = App::new("mailer").consume("signups", on_signup);
    /// # drop(app);
    /// ```
    #[cfg(feature = "amqp")]
    pub fn consume<H: nucleon_amqp::Handler<A>, A: 'static>(self, queue: &str, handler: H) -> Self {
        self.with_amqp(|amqp| amqp.consume(queue, handler))
    }

    /// Adds a consumer built with its options ([`nucleon_amqp::Consumer`]).
    #[cfg(feature = "amqp")]
    pub fn consumer(self, consumer: nucleon_amqp::Consumer) -> Self {
        self.with_amqp(|amqp| amqp.consumer(consumer))
    }

    /// Serves procedure `name` over AMQP (queue `rpc.<name>`): callers use
    /// [`Broker::call`](nucleon_amqp::Broker::call) (feature `amqp`).
    #[cfg(feature = "amqp")]
    pub fn rpc<H: nucleon_amqp::Handler<A>, A: 'static>(self, name: &str, handler: H) -> Self {
        self.with_amqp(|amqp| amqp.rpc(name, handler))
    }

    /// Handles event `event` ([`Broker::dispatch`](nucleon_amqp::Broker::dispatch)) in
    /// `mode` (feature `amqp`).
    #[cfg(feature = "amqp")]
    pub fn on_event<H: nucleon_amqp::Handler<A>, A: 'static>(
        self,
        event: &str,
        mode: nucleon_amqp::EventMode,
        handler: H,
    ) -> Self {
        self.with_amqp(|amqp| amqp.on_event(event, mode, handler))
    }

    /// Handles task `name` ([`Broker::submit`](nucleon_amqp::Broker::submit)), sharing
    /// the tasks with every other worker and service that handles it (feature `amqp`).
    #[cfg(feature = "amqp")]
    pub fn task<H: nucleon_amqp::Handler<A>, A: 'static>(self, name: &str, handler: H) -> Self {
        self.with_amqp(|amqp| amqp.task(name, handler))
    }

    /// Per-worker setup of your own: adapters (a database pool, a client), tasks.
    /// Runs on each worker's thread at every (re)start (and in the test client's
    /// worker), after the per-worker state and the DNS adapters, before the HTTP server.
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

    /// A hook run after configuration loads, before anything starts. Hooks run on the
    /// runtime's control thread: the function must be `Send`, its future need not be.
    pub fn on_initialise<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.initialise.push(hook(f));
        self
    }

    /// A hook run once every worker serves; the per-process adapters' handles are
    /// reachable from it.
    pub fn on_start<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.start.push(hook(f));
        self
    }

    /// A hook run after the drain, before exit.
    pub fn on_stop<F, Fut>(mut self, f: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<(), BoxError>> + 'static,
    {
        self.stop.push(hook(f));
        self
    }

    /// Default configuration (TOML with `[default]`, `[test]`… tables), usually
    /// `include_str!("../app.toml")`: used when neither `--config` nor `./app.toml` is
    /// there.
    pub fn default_config(mut self, toml: &'static str) -> Self {
        self.default_config = Some(toml);
        self
    }

    /// Declares a configuration table the app reads for itself (`[<env>.ticker]`), so
    /// that it is known: a table that neither the framework nor the app reads is refused
    /// at start and by `app check` (`[default.htp]`: did you mean `http`?).
    pub fn config_table(mut self, name: &'static str) -> Self {
        self.tables.push(name);
        self
    }

    /// The tables this app's configuration may have: the framework's, and its own.
    pub(crate) fn known_tables(&self) -> Vec<&'static str> {
        let mut known = vec![
            "runtime",
            "http",
            "dns",
            "http_client",
            "db",
            "amqp",
            "metrics",
        ];
        known.extend(&self.tables);
        known
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

    #[cfg(feature = "http")]
    /// The router.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Takes what each worker is set up with (see [`WorkerPlan`]), reading the `dns` and
    /// `http_client` tables of `config` now, so that a bad value fails before any worker
    /// starts. The databases' pools are placed later ([`App::place_databases`]).
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
            #[cfg(feature = "db")]
            databases: Vec::new(),
            #[cfg(feature = "db")]
            schema: self.schema,
            #[cfg(feature = "amqp")]
            consumers: None,
        })
    }
}

impl App {
    /// Reads where each database's pool belongs (its URL): per worker (PostgreSQL) into
    /// `plan`, per process (SQLite) as the adapters returned.
    #[cfg(feature = "db")]
    pub(crate) fn place_databases(
        &self,
        config: &Config,
        plan: &mut WorkerPlan,
    ) -> Result<Vec<nucleon_db::DbAdapter>, nucleon_db::DbError> {
        let mut per_process = Vec::new();
        for name in &self.databases {
            let adapter = match name {
                Some(name) => nucleon_db::DbAdapter::named(name.clone()),
                None => nucleon_db::DbAdapter::new(),
            }
            .app_name(self.name.clone());
            match adapter.scope(config)? {
                nucleon_db::Scope::PerProcess => per_process.push(adapter),
                nucleon_db::Scope::PerWorker => {
                    plan.databases.push((name.clone(), self.name.clone()));
                }
            }
        }
        Ok(per_process)
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
            return Err(config.invalid(key, message));
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
    /// The PostgreSQL databases, a pool per worker: their names, and the app's.
    #[cfg(feature = "db")]
    pub(crate) databases: Vec<(Option<String>, String)>,
    /// The schema each worker syncs at start (once the databases are up).
    #[cfg(feature = "db")]
    pub(crate) schema: Option<&'static str>,
    /// The consumers each worker runs, after its other adapters (their handlers may
    /// need them).
    #[cfg(feature = "amqp")]
    pub(crate) consumers: Option<nucleon_amqp::ConsumerFactory>,
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
        #[cfg(feature = "db")]
        for (name, app) in &self.databases {
            let adapter = match name {
                Some(name) => nucleon_db::DbAdapter::named(name.clone()),
                None => nucleon_db::DbAdapter::new(),
            };
            worker.adapter(adapter.app_name(app.clone()));
        }
        #[cfg(feature = "db")]
        if let Some(schema) = self.schema {
            worker.adapter(nucleon_db::SchemaSync::new(schema));
        }
        for setup in &self.setups {
            setup(worker)?;
        }
        #[cfg(feature = "amqp")]
        if let Some(consumers) = &self.consumers {
            worker.adapter(consumers.make());
        }
        Ok(())
    }
}
