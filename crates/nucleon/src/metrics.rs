//! The Prometheus endpoint of an app (feature `metrics`, on by default with `http`):
//! `metrics-exporter-prometheus`'s recorder installed as the process's `metrics`
//! recorder, its text served at `[<env>.metrics] path` (default `/metrics`) on the
//! app's listener, or on a port of its own (`port`).
//!
//! The recorder is the process's, installed once: the first app started in a process
//! sets the bucket bounds. An app that installed a `metrics` recorder of its own before
//! it starts keeps it (nucleon's metrics go to that recorder) and serves no endpoint.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use nucleon_http::{HttpConfig, IntoResponse, Response, Router, get};
use nucleon_runtime::metrics::{CollectorGuard, MetricsSettings, collect, register_collector};
use nucleon_runtime::{Config, ConfigError};

/// The process's exporter: `None` when another recorder was installed first.
static EXPORTER: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
/// The process collector (CPU, memory, file descriptors), registered once.
static PROCESS: OnceLock<CollectorGuard> = OnceLock::new();

/// The content type of Prometheus' text format.
const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// What an app serves: the endpoint's path, its own port if any, the exporter.
#[derive(Clone)]
pub(crate) struct Endpoint {
    pub(crate) path: String,
    pub(crate) port: Option<u16>,
    handle: PrometheusHandle,
}

impl Endpoint {
    /// Reads `[<env>.metrics]`; when metrics are on, installs the exporter (once per
    /// process) and gives the endpoint to serve.
    pub(crate) fn prepare(config: &Config) -> Result<Option<Self>, ConfigError> {
        let settings = MetricsSettings::load(config)?;
        if !settings.enabled {
            return Ok(None);
        }
        let handle = EXPORTER.get_or_init(|| install(&settings)).clone();
        if settings.process {
            PROCESS.get_or_init(|| {
                let collector = metrics_process::Collector::default();
                collector.describe();
                register_collector(move || collector.collect())
            });
        }
        Ok(handle.map(|handle| Endpoint {
            path: settings.path,
            port: settings.port,
            handle,
        }))
    }

    /// The endpoint as a route of `router` (unless the app has a route there: the
    /// app's own wins).
    pub(crate) fn add_route(&self, router: Router) -> Router {
        let endpoint = self.clone();
        let route = get(move || {
            let endpoint = endpoint.clone();
            async move { endpoint.render() }
        });
        let path = self.path.clone();
        let fallback = router.clone();
        router.try_route(&path, route).unwrap_or_else(|error| {
            tracing::debug!(target: "nucleon::metrics", "the app routes {path} itself: {error}");
            fallback
        })
    }

    /// A router serving the endpoint alone, and the settings of its own listener
    /// (`port` on the app's host, no probes, no access log).
    pub(crate) fn own_listener(&self, app: &HttpConfig, port: u16) -> (Router, HttpConfig) {
        let mut config = app.clone();
        config.port = port;
        config.share_port = false;
        config.readiness_path = None;
        config.liveness_path = None;
        config.access_log = false;
        (self.add_route(Router::new()), config)
    }

    /// The current figures in Prometheus' text format: collectors run, this worker's
    /// figures flushed, then rendered.
    fn render(&self) -> Response {
        collect();
        let text = self.handle.render();
        let mut response = text.into_response();
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(CONTENT_TYPE),
        );
        response
    }
}

fn install(settings: &MetricsSettings) -> Option<PrometheusHandle> {
    let builder = match PrometheusBuilder::new().set_buckets(&settings.buckets) {
        Ok(builder) => builder,
        // Not reached: the settings' check refuses empty buckets.
        Err(error) => {
            tracing::error!(target: "nucleon::metrics", "metrics.buckets: {error}");
            return None;
        }
    };
    let recorder = builder.build_recorder();
    let handle = recorder.handle();
    match metrics::set_global_recorder(recorder) {
        Ok(()) => {
            // Without scrapes, histograms' samples would pile up: drained now and then.
            let upkeep = handle.clone();
            std::mem::forget(register_collector(move || upkeep.run_upkeep()));
            Some(handle)
        }
        Err(_) => {
            tracing::info!(target: "nucleon::metrics", "a metrics recorder was installed by the app: nucleon's metrics go to it, and no /metrics endpoint is served");
            None
        }
    }
}
