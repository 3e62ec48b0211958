//! `[<env>.metrics]`.

use std::time::Duration;

use serde::Deserialize;

use crate::config::duration;

/// The default histogram bucket bounds, in seconds: 1 ms to 10 s.
pub const DEFAULT_BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics settings, from `[<env>.metrics]`.
///
/// ```toml
/// [production.metrics]
/// enabled = true             # record and serve (default true)
/// path = "/metrics"          # where the Prometheus text is served
/// port = 9100                # serve it on its own port instead of the app's
/// buckets = [0.005, 0.05, 0.5, 5]   # histogram bounds in seconds
/// flush_interval = "1s"      # how stale a worker's figures may be
/// process = true             # CPU, memory and file descriptors of the process
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct MetricsSettings {
    /// Whether metrics are recorded and served (default true).
    pub enabled: bool,
    /// The path of the Prometheus endpoint (default `/metrics`).
    pub path: String,
    /// A port of its own for the endpoint (on the app's host), instead of the app's
    /// listener (default: none, the app's listener).
    pub port: Option<u16>,
    /// The bucket bounds of the histograms, in seconds, ascending (default
    /// [`DEFAULT_BUCKETS`]).
    pub buckets: Vec<f64>,
    /// How often each worker hands its figures to the recorder (default 1 s); a scrape
    /// sees the other workers' figures at most this old.
    #[serde(with = "duration")]
    pub flush_interval: Duration,
    /// Whether the process's own figures are exported: CPU seconds, resident memory,
    /// open file descriptors, threads (default true).
    pub process: bool,
}

impl Default for MetricsSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            path: "/metrics".to_owned(),
            port: None,
            buckets: DEFAULT_BUCKETS.to_vec(),
            flush_interval: Duration::from_secs(1),
            process: true,
        }
    }
}

impl MetricsSettings {
    /// Reads `[<env>.metrics]` from `config`, refusing what cannot work.
    ///
    /// # Errors
    /// A [`crate::ConfigError`] naming the key: a path not starting with `/`, buckets
    /// empty, not ascending or not positive, a zero flush interval, port 0.
    pub fn load(config: &crate::Config) -> Result<Self, crate::ConfigError> {
        let settings: MetricsSettings = config.extract_at("metrics")?;
        settings
            .check()
            .map_err(|(key, message)| config.invalid(format!("metrics.{key}"), message))?;
        Ok(settings)
    }

    fn check(&self) -> Result<(), (&'static str, String)> {
        if !self.path.starts_with('/') {
            return Err(("path", format!("`{}` must start with `/`", self.path)));
        }
        if self.buckets.is_empty() {
            return Err(("buckets", "is empty: give at least one bound".into()));
        }
        if self
            .buckets
            .iter()
            .any(|bound| !bound.is_finite() || *bound <= 0.0)
        {
            return Err((
                "buckets",
                "bounds are seconds: finite and above zero".into(),
            ));
        }
        if self.buckets.windows(2).any(|pair| pair[0] >= pair[1]) {
            return Err(("buckets", "bounds must be in ascending order".into()));
        }
        if self.flush_interval.is_zero() {
            return Err(("flush_interval", "must be above zero".into()));
        }
        if self.port == Some(0) {
            return Err(("port", "must be a port number, not 0".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<MetricsSettings, crate::ConfigError> {
        let config = crate::Config::from_toml(toml, "default").unwrap();
        MetricsSettings::load(&config)
    }

    #[test]
    fn defaults_serve_on_the_app_listener() {
        let settings = load("[default]\n").unwrap();
        assert_eq!(settings, MetricsSettings::default());
        assert!(settings.enabled);
        assert_eq!(settings.path, "/metrics");
        assert_eq!(settings.port, None);
    }

    #[test]
    fn settings_are_read_and_checked() {
        let settings = load(
            "[default.metrics]\npath = \"/m\"\nport = 9100\nbuckets = [0.1, 1]\nflush_interval = \"250ms\"\n",
        )
        .unwrap();
        assert_eq!(settings.port, Some(9100));
        assert_eq!(settings.buckets, vec![0.1, 1.0]);
        assert_eq!(settings.flush_interval, Duration::from_millis(250));

        for (toml, key) in [
            ("path = \"metrics\"", "metrics.path"),
            ("buckets = []", "metrics.buckets"),
            ("buckets = [1, 0.5]", "metrics.buckets"),
            ("buckets = [-1]", "metrics.buckets"),
            ("flush_interval = 0", "metrics.flush_interval"),
            ("port = 0", "metrics.port"),
        ] {
            let error = load(&format!("[default.metrics]\n{toml}\n")).unwrap_err();
            assert!(error.to_string().contains(key), "{toml}: {error}");
        }
        let error = load("[default.metrics]\nenable = true\n").unwrap_err();
        assert!(error.to_string().contains("enable"), "{error}");
    }
}
