//! The runtime adapters: one resolver and one HTTP client per worker.

use std::time::Instant;

use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health};

use crate::client::HttpClient;
use crate::config::{DnsConfig, HttpClientConfig};
use crate::resolver::Resolver;

/// Builds the worker's [`Resolver`] at start: its handle ([`Resolver::current`], a
/// handler's `Dep<Resolver>`).
///
/// Settings come from `[<env>.dns]` (see [`DnsConfig`]) unless given with
/// [`DnsAdapter::with_config`]. Start fails, naming the file or key, when no name server
/// can be found.
///
/// ```no_run
/// use nucleon_dns::DnsAdapter;
/// use nucleon_runtime::Runtime;
///
/// let runtime = Runtime::builder()
///     .per_worker(|worker| {
///         worker.adapter(DnsAdapter::new());
///         Ok(())
///     })
///     .build()?;
/// # Ok::<(), nucleon_runtime::RuntimeError>(())
/// ```
#[derive(Debug, Default)]
pub struct DnsAdapter {
    config: Option<DnsConfig>,
    resolver: Option<Resolver>,
}

impl DnsAdapter {
    /// An adapter reading `[<env>.dns]` at start.
    pub fn new() -> Self {
        Self::default()
    }

    /// An adapter with these settings (the configuration's `dns` table is ignored).
    pub fn with_config(config: DnsConfig) -> Self {
        Self {
            config: Some(config),
            resolver: None,
        }
    }
}

impl Adapter for DnsAdapter {
    type Handle = Resolver;

    fn name(&self) -> &str {
        "dns"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<Resolver, BoxError> {
        let config = match &self.config {
            Some(config) => config.clone(),
            None => ctx.config().extract_at::<DnsConfig>("dns")?,
        };
        let resolver = Resolver::from_config(&config).await?;
        tracing::debug!(target: "nucleon::dns", worker = ?ctx.worker(), ?resolver, "resolver started");
        self.resolver = Some(resolver.clone());
        Ok(resolver)
    }

    async fn health(&self) -> Health {
        match &self.resolver {
            Some(resolver) => resolver.health().await,
            None => Health::Unhealthy("not started".to_owned()),
        }
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        self.resolver = None;
        Ok(())
    }
}

/// Builds the worker's [`HttpClient`] at start, on the worker's [`Resolver`]: its handle
/// ([`HttpClient::current`], a handler's `Dep<HttpClient>`). Add it after
/// [`crate::DnsAdapter`].
///
/// Settings come from `[<env>.http_client]` (see [`HttpClientConfig`]) unless given
/// with [`HttpClientAdapter::with_config`].
///
/// ```no_run
/// use nucleon_dns::{DnsAdapter, HttpClientAdapter};
/// use nucleon_runtime::Runtime;
///
/// let runtime = Runtime::builder()
///     .per_worker(|worker| {
///         worker.adapter(DnsAdapter::new()).adapter(HttpClientAdapter::new());
///         Ok(())
///     })
///     .build()?;
/// # Ok::<(), nucleon_runtime::RuntimeError>(())
/// ```
#[derive(Debug, Default)]
pub struct HttpClientAdapter {
    config: Option<HttpClientConfig>,
    client: Option<HttpClient>,
}

impl HttpClientAdapter {
    /// An adapter reading `[<env>.http_client]` at start.
    pub fn new() -> Self {
        Self::default()
    }

    /// An adapter with these settings.
    pub fn with_config(config: HttpClientConfig) -> Self {
        Self {
            config: Some(config),
            client: None,
        }
    }
}

impl Adapter for HttpClientAdapter {
    type Handle = HttpClient;

    fn name(&self) -> &str {
        "http-client"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<HttpClient, BoxError> {
        let config = match &self.config {
            Some(config) => config.clone(),
            None => ctx.config().extract_at::<HttpClientConfig>("http_client")?,
        };
        let resolver = Resolver::current().ok_or(
            "the http-client adapter needs this worker's resolver: add \
             `nucleon_dns::DnsAdapter` before `HttpClientAdapter` in the per-worker setup",
        )?;
        let client = HttpClient::new(resolver, &config).await?;
        self.client = Some(client.clone());
        Ok(client)
    }

    /// Healthy once started: an outbound client's own health is not applicable. It holds
    /// no connection of its own to lose (only a pool of idle ones, reopened on demand),
    /// so its health is that of its peers, one per host it calls; and each call's own
    /// [`crate::HttpError`] reports those, naming the URL, when the call is made. One
    /// unreachable peer must not make the whole service unhealthy; a peer the service
    /// cannot do without is checked by a health check of its own (a route that calls
    /// it, or a readiness check of yours). Its name lookups are checked by the `dns`
    /// adapter's health ([`crate::Resolver::health`]).
    async fn health(&self) -> Health {
        match self.client {
            Some(_) => Health::Healthy,
            None => Health::Unhealthy("not started".to_owned()),
        }
    }

    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        self.client = None;
        Ok(())
    }
}
