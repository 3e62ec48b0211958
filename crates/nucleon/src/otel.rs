//! Exporting spans to an OpenTelemetry collector (the `otel` feature), over OTLP/HTTP
//! with protobuf bodies, through `tracing-opentelemetry`.
//!
//! [`run`](crate::run) turns it on when the standard OpenTelemetry variables ask for it:
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the whole URL) or `OTEL_EXPORTER_OTLP_ENDPOINT`
//! (`/v1/traces` is added), unless `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none`. The service's name is `OTEL_SERVICE_NAME`, else the
//! app's; the SDK reads the rest of the standard variables itself
//! (`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_EXPORTER_OTLP_TIMEOUT`, `OTEL_TRACES_SAMPLER`,
//! `OTEL_TRACES_SAMPLER_ARG`, `OTEL_BSP_*`, `OTEL_RESOURCE_ATTRIBUTES`).
//! `NUCLEON_OTEL_FILTER` chooses the spans exported (an `EnvFilter` directive; by
//! default [`DEFAULT_FILTER`]: every request and delivery, and the spans and events at
//! `info` and above inside them).
//!
//! Each HTTP request and each AMQP delivery is one exported span (`GET /users/{id}`,
//! `process orders`), the child of the span whose `traceparent` came with it; the spans
//! a handler opens nest under it. The span's ids are the hop's trace context
//! ([`nucleon_runtime::trace::current`]): what the outbound HTTP client and the AMQP
//! publisher forward names the exported span, so a collector joins a request to its
//! calls and to the back-end worker's deliveries.
//!
//! Spans are exported by the SDK's batch processor on a thread of its own; the HTTP
//! requests run on a small runtime of this module's, on its own thread, with the
//! framework's client (asynchronous DNS, rustls): nothing of it runs on a worker.
//!
//! An app not started by [`run`](crate::run) (its own `main`, a test) installs the layer
//! itself:
//!
//! ```no_run
//! use nucleon::otel::{self, OtelSettings};
//! use tracing_subscriber::layer::SubscriberExt;
//!
//! let settings = OtelSettings::new("orders").endpoint("http://127.0.0.1:4318/v1/traces");
//! let (layer, guard) = otel::layer(&settings).expect("the exporter starts");
//! tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
//!     .expect("the first subscriber");
//! // … run the app; dropping `guard` exports what is left.
//! drop(guard);
//! ```

use std::fmt;
use std::str::FromStr;

use bytes::Bytes;
use nucleon_runtime::trace::{SpanId, TraceContext, TraceFlags, TraceId};
use opentelemetry::trace::{SpanContext, TraceContextExt as _, TracerProvider as _};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::EnvFilter;
use tracing_subscriber::registry::LookupSpan;

/// The spans exported unless `NUCLEON_OTEL_FILTER` or [`OtelSettings::filter`] says
/// otherwise: every HTTP request and AMQP delivery (their spans are at `debug`), and
/// what is at `info` or above.
pub const DEFAULT_FILTER: &str = "info,nucleon::http=debug,nucleon::amqp=debug";

/// What the exporter is told: where spans go, the service's name, which spans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtelSettings {
    /// The OTLP/HTTP traces endpoint (`http://collector:4318/v1/traces`); `None`: the
    /// SDK's own reading of the environment (`OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`), else `http://localhost:4318/v1/traces`.
    pub endpoint: Option<String>,
    /// The `service.name` resource attribute.
    pub service_name: String,
    /// Which spans and events are exported (an `EnvFilter` directive).
    pub filter: String,
}

impl OtelSettings {
    /// Spans of `service_name` to the endpoint the environment names (or the SDK's
    /// default), under [`DEFAULT_FILTER`].
    pub fn new(service_name: impl Into<String>) -> Self {
        Self {
            endpoint: None,
            service_name: service_name.into(),
            filter: DEFAULT_FILTER.to_owned(),
        }
    }

    /// The traces endpoint, whole (`http://127.0.0.1:4318/v1/traces`).
    #[must_use]
    pub fn endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Which spans and events are exported (an `EnvFilter` directive).
    #[must_use]
    pub fn filter(mut self, filter: impl Into<String>) -> Self {
        self.filter = filter.into();
        self
    }

    /// The settings the environment asks for, or `None` when it does not ask for an
    /// export (no OTLP endpoint set, or the SDK or the traces exporter turned off);
    /// `app_name` is the service's name unless `OTEL_SERVICE_NAME` gives one.
    pub fn from_env(app_name: &str) -> Option<Self> {
        Self::from_vars(app_name, |name| {
            std::env::var(name)
                .ok()
                .filter(|value| !value.trim().is_empty())
        })
    }

    fn from_vars(app_name: &str, var: impl Fn(&str) -> Option<String>) -> Option<Self> {
        let off = |name: &str, value: &str| {
            var(name).is_some_and(|set| set.trim().eq_ignore_ascii_case(value))
        };
        if off("OTEL_SDK_DISABLED", "true") || off("OTEL_TRACES_EXPORTER", "none") {
            return None;
        }
        var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))?;
        Some(Self {
            // The SDK reads the endpoint itself, with its rules for each variable.
            endpoint: None,
            service_name: var("OTEL_SERVICE_NAME").unwrap_or_else(|| app_name.to_owned()),
            filter: var("NUCLEON_OTEL_FILTER").unwrap_or_else(|| DEFAULT_FILTER.to_owned()),
        })
    }
}

/// Why the exporter did not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtelError {
    /// The filter is not a valid `EnvFilter` directive.
    #[error(
        "NUCLEON_OTEL_FILTER / OtelSettings::filter `{filter}` is not a valid filter: {reason}"
    )]
    Filter {
        /// The filter given.
        filter: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The exporter refused its settings (an endpoint that is not a URL, say).
    #[error("the OTLP span exporter cannot be built: {0}")]
    Exporter(String),
    /// The exporter's thread or its client could not start.
    #[error("the OTLP span exporter's thread cannot start: {0}")]
    Thread(String),
}

/// Keeps the exporter running; dropping it exports the spans still waiting (within the
/// exporter's timeout) and stops its threads.
pub struct OtelGuard {
    provider: SdkTracerProvider,
    runtime: Option<export_client::ExportRuntime>,
}

impl OtelGuard {
    /// Exports the spans ended so far, and waits for the collector's answer.
    ///
    /// # Errors
    /// The exporter's error, as text (a collector that cannot be reached, say).
    pub fn flush(&self) -> Result<(), String> {
        self.provider
            .force_flush()
            .map_err(|error| error.to_string())
    }
}

impl Drop for OtelGuard {
    fn drop(&mut self) {
        if let Err(error) = self.provider.shutdown() {
            tracing::warn!(target: "nucleon::otel", "the span exporter's last export failed: {error}");
        }
        drop(self.runtime.take());
    }
}

impl fmt::Debug for OtelGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OtelGuard").finish_non_exhaustive()
    }
}

/// The layer that exports spans, under its filter, and the guard that keeps its
/// exporter running. Also installs the trace context's span binder
/// ([`nucleon_runtime::trace::set_span_binder`]), so that a request's context takes the
/// ids of its exported span.
///
/// # Errors
/// [`OtelError`]: a filter or an endpoint that is not valid, or a thread that cannot
/// start.
pub fn layer<S>(
    settings: &OtelSettings,
) -> Result<(Box<dyn Layer<S> + Send + Sync + 'static>, OtelGuard), OtelError>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let filter = EnvFilter::builder()
        .parse(&settings.filter)
        .map_err(|error| OtelError::Filter {
            filter: settings.filter.clone(),
            reason: error.to_string(),
        })?;
    let runtime = export_client::ExportRuntime::start().map_err(OtelError::Thread)?;
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpBinary)
        .with_http_client(runtime.client());
    if let Some(endpoint) = &settings.endpoint {
        exporter = exporter.with_endpoint(endpoint.clone());
    }
    let exporter = exporter
        .build()
        .map_err(|error| OtelError::Exporter(error.to_string()))?;
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name(settings.service_name.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("nucleon");
    // Installed once per process; a second exporter's layer binds the same way.
    let _ = nucleon_runtime::trace::set_span_binder(nucleon_runtime::trace::SpanBinder {
        bind,
        rename,
    });
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(filter);
    Ok((
        Box::new(layer),
        OtelGuard {
            provider,
            runtime: Some(runtime),
        },
    ))
}

/// The span binder: the hop's span is made the child of the span its context came
/// from (when one came), and its exported ids become the hop's context.
fn bind(span: &tracing::Span, received: Option<TraceContext>) -> Option<TraceContext> {
    if let Some(received) = &received
        && let Some(caller) = received.parent_id()
    {
        let state = received
            .tracestate()
            .and_then(|state| opentelemetry::trace::TraceState::from_str(state).ok())
            .unwrap_or_default();
        let remote = SpanContext::new(
            opentelemetry::trace::TraceId::from_bytes(received.trace_id().to_bytes()),
            opentelemetry::trace::SpanId::from_bytes(caller.to_bytes()),
            opentelemetry::trace::TraceFlags::new(received.flags().bits()),
            true,
            state,
        );
        // Refused only for a span already started: not this one, just made.
        let _ = span.set_parent(opentelemetry::Context::new().with_remote_span_context(remote));
    }
    let exported = span.context().span().span_context().clone();
    if !exported.is_valid() {
        // The span is not one this layer sees (its filter): the hop keeps its own ids.
        return received;
    }
    let (Some(trace_id), Some(span_id)) = (
        TraceId::from_bytes(exported.trace_id().to_bytes()),
        SpanId::from_bytes(exported.span_id().to_bytes()),
    ) else {
        return received;
    };
    let parent_id = received.as_ref().and_then(TraceContext::parent_id);
    let state = received.and_then(|received| received.trace_state().cloned());
    Some(TraceContext::from_parts(
        trace_id,
        span_id,
        parent_id,
        TraceFlags::new(exported.trace_flags().to_u8()),
        state,
    ))
}

/// The span binder's renaming: the span was started by [`bind`], so a name recorded
/// as `otel.name` no longer reaches it.
fn rename(span: &tracing::Span, name: &'static str) {
    span.context().span().update_name(name);
}

/// The exporter's HTTP client: requests made on a runtime of its own, on its own thread.
mod export_client {
    use super::Bytes;
    use opentelemetry_http::{HttpError, Request, Response};
    use std::fmt;
    use tokio::sync::oneshot;

    /// A current-thread runtime on a thread of its own, for the exporter's requests:
    /// the SDK's batch processor calls the client from a thread with no runtime.
    pub(super) struct ExportRuntime {
        handle: tokio::runtime::Handle,
        client: nucleon_dns::HttpClient,
        stop: Option<oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl ExportRuntime {
        pub(super) fn start() -> Result<Self, String> {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|error| error.to_string())?;
            let handle = runtime.handle().clone();
            let (stop, stopped) = oneshot::channel::<()>();
            let (made, client) = std::sync::mpsc::channel();
            let thread = std::thread::Builder::new()
                .name("nucleon-otel".to_owned())
                .spawn(move || {
                    runtime.block_on(async move {
                        let _ = made.send(new_client().await);
                        let _ = stopped.await;
                    });
                })
                .map_err(|error| error.to_string())?;
            let client = client
                .recv()
                .map_err(|_| "the exporter's thread ended at its start".to_owned())??;
            Ok(Self {
                handle,
                client,
                stop: Some(stop),
                thread: Some(thread),
            })
        }

        /// The client the exporter is given.
        pub(super) fn client(&self) -> ExportClient {
            ExportClient {
                handle: self.handle.clone(),
                client: self.client.clone(),
            }
        }
    }

    impl Drop for ExportRuntime {
        fn drop(&mut self) {
            drop(self.stop.take());
            if let Some(thread) = self.thread.take() {
                let _ = thread.join();
            }
        }
    }

    /// The framework's client, on the system's DNS settings.
    async fn new_client() -> Result<nucleon_dns::HttpClient, String> {
        let resolver = nucleon_dns::Resolver::from_config(&nucleon_dns::DnsConfig::default())
            .await
            .map_err(|error| error.to_string())?;
        nucleon_dns::HttpClient::new(resolver, &nucleon_dns::HttpClientConfig::default())
            .await
            .map_err(|error| error.to_string())
    }

    /// What the OTLP exporter sends its requests with.
    #[derive(Clone)]
    pub(super) struct ExportClient {
        handle: tokio::runtime::Handle,
        client: nucleon_dns::HttpClient,
    }

    impl fmt::Debug for ExportClient {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.debug_struct("ExportClient").finish_non_exhaustive()
        }
    }

    #[async_trait::async_trait]
    impl opentelemetry_http::HttpClient for ExportClient {
        async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
            let client = self.client.clone();
            let sent = self.handle.spawn(async move {
                let (parts, body) = request.into_parts();
                let outbound = client
                    .request(parts.method, parts.uri.to_string())
                    .headers(parts.headers)
                    .body(body);
                let response = client.send(outbound).await?;
                let mut answer = Response::builder().status(response.status());
                if let Some(headers) = answer.headers_mut() {
                    *headers = response.headers().clone();
                }
                let body = response.bytes().await?;
                Ok::<_, HttpError>(answer.body(body)?)
            });
            sent.await?
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(vars: &[(&str, &str)]) -> Option<OtelSettings> {
        OtelSettings::from_vars("orders", |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        })
    }

    #[test]
    fn the_environment_turns_the_export_on_and_off() {
        assert_eq!(settings(&[]), None, "no endpoint: no export");
        let on = settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")]).unwrap();
        assert_eq!(on.service_name, "orders");
        assert_eq!(on.filter, DEFAULT_FILTER);
        let named = settings(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            ),
            ("OTEL_SERVICE_NAME", "orders-eu"),
            ("NUCLEON_OTEL_FILTER", "warn"),
        ])
        .unwrap();
        assert_eq!(
            (&*named.service_name, &*named.filter),
            ("orders-eu", "warn")
        );
        for off in [
            ("OTEL_SDK_DISABLED", "TRUE"),
            ("OTEL_TRACES_EXPORTER", "none"),
        ] {
            assert_eq!(
                settings(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"), off]),
                None,
                "{off:?}"
            );
        }
    }

    #[test]
    fn a_bad_filter_is_refused_by_name() {
        let settings = OtelSettings::new("orders").filter("info,[[[");
        let error = layer::<tracing_subscriber::Registry>(&settings)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("info,[[["), "{error}");
    }
}
