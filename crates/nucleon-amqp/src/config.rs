//! `[<env>.amqp]`: where the broker is and how the connection behaves.

use std::time::Duration;

use nucleon_runtime::config::{SecretUrl, duration};
use serde::Deserialize;

use nucleon_runtime::ConfigError;

/// The broker connection's settings, `[<env>.amqp]`.
///
/// ```toml
/// [production.amqp]
/// url = "amqps://orders:secret@broker.internal/orders"  # never logged: a SecretUrl
/// heartbeat = "30s"
/// publish_timeout = "10s"   # a publish not confirmed by then fails with Timeout
/// window = 1024             # unconfirmed messages in flight before publishers wait
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AmqpConfig {
    /// `amqp://user:password@host:port/vhost` (`amqps://` for TLS, by rustls with the
    /// system's roots). The vhost is URL-encoded: `%2f` is `/`. Default: the local
    /// broker, `amqp://guest:guest@127.0.0.1:5672/%2f`.
    pub url: SecretUrl,
    /// The heartbeat asked of the broker (default 30 s; `"0s"` for none). A link that
    /// misses two is declared lost and reconnected.
    #[serde(with = "duration")]
    pub heartbeat: Duration,
    /// How long connecting may take (TCP, TLS and the AMQP handshake) (default 5 s).
    #[serde(with = "duration")]
    pub connect_timeout: Duration,
    /// How long the start waits for a first connection before failing (default 10 s).
    /// Later losses never fail the service: it reconnects until it stops.
    #[serde(with = "duration")]
    pub start_timeout: Duration,
    /// The first wait between reconnection attempts (default 100 ms); each failure
    /// doubles it, up to `reconnect_max`, with jitter.
    #[serde(with = "duration")]
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts (default 10 s).
    #[serde(with = "duration")]
    pub reconnect_max: Duration,
    /// How long a publish may take, waiting for the link (while reconnecting or
    /// blocked), for room in the window and for the broker's confirm (default 10 s).
    #[serde(with = "duration")]
    pub publish_timeout: Duration,
    /// Messages published and not yet confirmed, for the whole process, past which
    /// publishers wait (default 1024).
    pub window: usize,
    /// Channels the process publishes on (default 0: one per worker, at least one).
    pub publish_channels: usize,
    /// How long an RPC call waits for its reply unless it says otherwise (default 30 s).
    #[serde(with = "duration")]
    pub rpc_timeout: Duration,
    /// The topic exchange events are dispatched on (default `nucleon.events`).
    pub events_exchange: String,
    /// The exchange failed messages are dead-lettered to (default
    /// `nucleon.dead-letter`, direct): each consumed queue `q` has its `q.dead-letter`
    /// queue bound to it by `q`.
    pub dead_letter_exchange: String,
    /// The connection's name in the broker's management UI (default
    /// `<app> (pid <pid>)`).
    pub connection_name: Option<String>,
}

impl Default for AmqpConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f"
                .parse()
                .expect("the default URL is valid"),
            heartbeat: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            start_timeout: Duration::from_secs(10),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            publish_timeout: Duration::from_secs(10),
            window: 1024,
            publish_channels: 0,
            rpc_timeout: Duration::from_secs(30),
            events_exchange: "nucleon.events".to_owned(),
            dead_letter_exchange: "nucleon.dead-letter".to_owned(),
            connection_name: None,
        }
    }
}

impl AmqpConfig {
    /// Reads `[<env>.amqp]` (defaults when absent) and checks it.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming the file (or variable), environment and key.
    pub fn load(config: &nucleon_runtime::Config) -> Result<Self, ConfigError> {
        let settings: AmqpConfig = config.extract_at("amqp")?;
        settings
            .check()
            .map_err(|(key, message)| config.invalid(format!("amqp.{key}"), message))?;
        Ok(settings)
    }

    /// Refuses what cannot work: `(key, why)`.
    fn check(&self) -> Result<(), (&'static str, String)> {
        let scheme = self.url.expose().scheme();
        if scheme != "amqp" && scheme != "amqps" {
            return Err((
                "url",
                format!("`{}` is not an AMQP URL (amqp:// or amqps://)", self.url),
            ));
        }
        if self.window == 0 {
            return Err(("window", "is 0: no message could ever be published".into()));
        }
        if self.reconnect_min.is_zero() || self.reconnect_min > self.reconnect_max {
            return Err((
                "reconnect_min",
                format!(
                    "must be above zero and at most reconnect_max ({:?})",
                    self.reconnect_max
                ),
            ));
        }
        if self.publish_timeout.is_zero() {
            return Err((
                "publish_timeout",
                "is 0: every publish would time out".into(),
            ));
        }
        Ok(())
    }

    /// The URI lapin connects to: the URL with the heartbeat and connect timeout.
    pub(crate) fn uri(&self) -> String {
        let mut url = self.url.expose().clone();
        let keep: Vec<(String, String)> = url
            .query_pairs()
            .filter(|(k, _)| k != "heartbeat" && k != "connection_timeout")
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        {
            let mut query = url.query_pairs_mut();
            query.clear();
            for (k, v) in &keep {
                query.append_pair(k, v);
            }
            query.append_pair("heartbeat", &self.heartbeat.as_secs().to_string());
            query.append_pair(
                "connection_timeout",
                &self.connect_timeout.as_millis().to_string(),
            );
        }
        url.to_string()
    }

    /// The broker's address as logs show it: host, port and vhost, no credentials.
    pub(crate) fn describe(&self) -> String {
        let url = self.url.expose();
        format!(
            "{}:{}{}",
            url.host_str().unwrap_or("?"),
            url.port()
                .unwrap_or(if url.scheme() == "amqps" { 5671 } else { 5672 }),
            url.path()
        )
    }

    /// How many channels the process publishes on, for `workers` workers.
    pub(crate) fn publish_channels(&self, workers: usize) -> usize {
        if self.publish_channels == 0 {
            workers.max(1)
        } else {
            self.publish_channels
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str) -> Result<AmqpConfig, ConfigError> {
        let config = nucleon_runtime::Config::from_toml(toml, "default").unwrap();
        AmqpConfig::load(&config)
    }

    #[test]
    fn defaults_reach_the_local_broker() {
        let settings = load("[default]\n").unwrap();
        assert_eq!(settings.describe(), "127.0.0.1:5672/%2f");
        let uri = settings.uri();
        assert!(uri.contains("heartbeat=30"), "{uri}");
        assert_eq!(settings.publish_channels(4), 4);
    }

    #[test]
    fn mistakes_name_their_key_and_never_the_password() {
        let error = load("[default.amqp]\nurl = \"http://u:s3cret@h/\"\n").unwrap_err();
        let text = error.to_string();
        assert!(text.contains("amqp.url"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        let error = load("[default.amqp]\nwindow = 0\n").unwrap_err();
        assert!(error.to_string().contains("amqp.window"), "{error}");
        let error = load("[default.amqp]\nwindwo = 3\n").unwrap_err();
        assert!(error.to_string().contains("windwo"), "{error}");
    }
}
