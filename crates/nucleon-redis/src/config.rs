//! `[<env>.redis]`: where Redis is and how the connection behaves.

use std::collections::BTreeMap;
use std::time::Duration;

use nucleon_runtime::config::{SecretUrl, duration};
use nucleon_runtime::{ConfigError, HEALTH_TIMEOUT};
use redis::{ConnectionAddr, ConnectionInfo, IntoConnectionInfo};
use serde::Deserialize;

/// The URL schemes this crate connects to. TLS (`rediss://`) is not built in: redis-rs's
/// TLS would bring a second rustls set-up of its own.
const SCHEMES: [&str; 5] = ["redis", "valkey", "redis+unix", "valkey+unix", "unix"];

/// A Redis's settings: `[<env>.redis]` for the main one, `[<env>.redis.<name>]` for
/// others (`RedisAdapter::named("sessions")` reads `[<env>.redis.sessions]`).
///
/// ```toml
/// [default.redis]
/// # No url: the local Redis, redis://127.0.0.1:6379 (database 0).
///
/// [production.redis]
/// url = "redis://:s3cret@cache.internal:6379/2"  # never logged: a SecretUrl
/// required = false          # a cache: start and stay ready without it
/// command_timeout = "250ms" # past it, a command fails with Timeout
///
/// [production.redis.sessions]
/// url = "redis://sessions.internal/1"
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default)]
pub struct RedisConfig {
    /// `redis://[user][:password]@host[:port][/db]` (or `redis+unix:///path/to.sock`);
    /// `?protocol=resp3` asks for RESP3. Default `redis://127.0.0.1:6379`. A host name is
    /// resolved through nucleon-dns when the adapter starts (see
    /// [`crate::RedisAdapter`]).
    pub url: SecretUrl,
    /// Whether the service needs this Redis (default `true`): the start fails when it
    /// cannot connect, and health is unhealthy (readiness 503) while it does not answer.
    /// `false` for a cache the service does without: it starts anyway (connecting
    /// later), and a Redis that does not answer is only *degraded*.
    pub required: bool,
    /// How long one connection attempt may take, TCP and handshake (default 1 s).
    #[serde(with = "duration::nonzero")]
    pub connect_timeout: Duration,
    /// The longest one command may take through the handle, a wait for a reconnection
    /// included (default 1 s): past it, the call fails with
    /// [`RedisError::Timeout`](crate::RedisError::Timeout).
    #[serde(with = "duration::nonzero")]
    pub command_timeout: Duration,
    /// How long the health check's `PING` may take before it counts as failed (default
    /// 1 s; below the runtime's 2 s for any health check).
    #[serde(with = "duration::nonzero")]
    pub health_timeout: Duration,
    /// A `PING` slower than this reports the adapter degraded (default 250 ms; `"0s"`
    /// never).
    #[serde(with = "duration")]
    pub slow_ping: Duration,
    /// The first wait before reconnecting after the link is lost (default 100 ms); it
    /// grows exponentially (with jitter) up to `reconnect_max`.
    #[serde(with = "duration::nonzero")]
    pub reconnect_min: Duration,
    /// The longest wait between reconnection attempts (default 2 s).
    #[serde(with = "duration::nonzero")]
    pub reconnect_max: Duration,
    /// Other Redis instances (`[<env>.redis.sessions]`); anything here that is not a
    /// table is a typo, refused at start.
    #[serde(flatten)]
    pub(crate) others: BTreeMap<String, serde_json::Value>,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: "redis://127.0.0.1:6379"
                .parse()
                .expect("the default URL is valid"),
            required: true,
            connect_timeout: Duration::from_secs(1),
            command_timeout: Duration::from_secs(1),
            health_timeout: Duration::from_secs(1),
            slow_ping: Duration::from_millis(250),
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(2),
            others: BTreeMap::new(),
        }
    }
}

/// The settings that are not tables of other instances, for messages.
const SETTINGS: &str = "url, required, connect_timeout, command_timeout, health_timeout, slow_ping, reconnect_min, reconnect_max";

impl RedisConfig {
    /// Reads `[<env>.redis]` (`name` None) or `[<env>.redis.<name>]` from `config`
    /// (defaults when absent), and checks it.
    ///
    /// # Errors
    /// The runtime's [`ConfigError`], naming the file, the environment and the key (a
    /// start that fails on it exits with the configuration's exit code).
    pub fn load(config: &nucleon_runtime::Config, name: Option<&str>) -> Result<Self, ConfigError> {
        let key = table(name);
        let settings: RedisConfig = config.extract_at(&key)?;
        settings
            .check()
            .map_err(|(setting, message)| config.invalid(format!("{key}.{setting}"), message))?;
        Ok(settings)
    }

    /// Refuses what cannot work: `(setting, why)`.
    fn check(&self) -> Result<(), (String, String)> {
        if let Some((other, _)) = self.others.iter().find(|(_, v)| !v.is_object()) {
            return Err((
                other.clone(),
                format!(
                    "is not a setting ({SETTINGS}), nor the table of another Redis ([<env>.redis.<name>])"
                ),
            ));
        }
        self.connection_info()
            .map_err(|message| ("url".to_owned(), message))?;
        if self.health_timeout >= HEALTH_TIMEOUT {
            return Err((
                "health_timeout".to_owned(),
                format!(
                    "is {:?}: it must be below the runtime's {HEALTH_TIMEOUT:?} for a health check, or the check would count as unanswered",
                    self.health_timeout
                ),
            ));
        }
        if self.reconnect_min > self.reconnect_max {
            return Err((
                "reconnect_min".to_owned(),
                format!(
                    "is {:?}, above reconnect_max ({:?})",
                    self.reconnect_min, self.reconnect_max
                ),
            ));
        }
        Ok(())
    }

    /// The URL as redis-rs reads it; a message (never with the password) when it
    /// cannot be used.
    pub(crate) fn connection_info(&self) -> Result<ConnectionInfo, String> {
        let url = self.url.expose();
        let scheme = url.scheme();
        if scheme == "rediss" || scheme == "valkeys" {
            return Err(format!(
                "`{}`: TLS (`{scheme}://`) is not built into nucleon-redis; reach Redis over a private network or a local TLS tunnel (stunnel, a sidecar)",
                self.url
            ));
        }
        if !SCHEMES.contains(&scheme) {
            return Err(format!(
                "`{}` is not a Redis URL (redis://host:port/db or redis+unix:///path)",
                self.url
            ));
        }
        if scheme == "redis" || scheme == "valkey" {
            let host = url.host_str().unwrap_or_default();
            if host.is_empty() {
                return Err(format!("`{}` names no host", self.url));
            }
        }
        // redis-rs's messages about a URL do not quote it; the masked one is ours.
        url.as_str()
            .into_connection_info()
            .map_err(|e| format!("`{}`: {}", self.url, e.detail().unwrap_or("invalid")))
    }
}

/// The configuration table of instance `name`: `redis`, or `redis.<name>`.
pub(crate) fn table(name: Option<&str>) -> String {
    name.map_or_else(|| "redis".to_owned(), |n| format!("redis.{n}"))
}

/// Where a connection goes, for messages (no password): `127.0.0.1:6379`.
pub(crate) fn describe(info: &ConnectionInfo) -> String {
    match info.addr() {
        ConnectionAddr::Tcp(host, port) if host.contains(':') => format!("[{host}]:{port}"),
        ConnectionAddr::Tcp(host, port) => format!("{host}:{port}"),
        ConnectionAddr::TcpTls { host, port, .. } => format!("{host}:{port} (TLS)"),
        ConnectionAddr::Unix(path) => path.display().to_string(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(toml: &str, name: Option<&str>) -> Result<RedisConfig, ConfigError> {
        let config = nucleon_runtime::Config::from_toml(toml, "default").unwrap();
        RedisConfig::load(&config, name)
    }

    #[test]
    fn defaults_are_the_local_redis() {
        let settings = load("[default]\n", None).unwrap();
        assert_eq!(settings.url.to_string(), "redis://127.0.0.1:6379");
        assert!(settings.required);
        let info = settings.connection_info().unwrap();
        assert_eq!(describe(&info), "127.0.0.1:6379");
        assert_eq!(info.redis_settings().db(), 0);
    }

    #[test]
    fn named_instances_durations_and_secrets() {
        let toml = r#"
[default.redis]
url = "redis://:s3cret@cache.internal:6380/2"
required = false
command_timeout = "250ms"

[default.redis.sessions]
url = "redis://sessions.internal/1"
"#;
        let main = load(toml, None).unwrap();
        assert!(!main.required);
        assert_eq!(main.command_timeout, Duration::from_millis(250));
        assert!(!format!("{main:?}").contains("s3cret"), "{main:?}");
        let info = main.connection_info().unwrap();
        assert_eq!(describe(&info), "cache.internal:6380");
        assert_eq!(info.redis_settings().db(), 2);
        let sessions = load(toml, Some("sessions")).unwrap();
        assert_eq!(
            describe(&sessions.connection_info().unwrap()),
            "sessions.internal:6379"
        );
    }

    #[test]
    fn unusable_settings_are_refused_by_key_without_the_password() {
        let typo = load("[default.redis]\ncomand_timeout = \"1s\"\n", None).unwrap_err();
        let text = typo.to_string();
        assert!(text.contains("redis.comand_timeout"), "{text}");
        assert!(text.contains("is not a setting"), "{text}");

        let tls = load("[default.redis]\nurl = \"rediss://:pw1@h:6380\"\n", None).unwrap_err();
        let text = tls.to_string();
        assert!(text.contains("redis.url") && text.contains("TLS"), "{text}");
        assert!(!text.contains("pw1"), "{text}");

        let other = load("[default.redis]\nurl = \"http://u:pw2@h/\"\n", None).unwrap_err();
        let text = other.to_string();
        assert!(
            text.contains("not a Redis URL") && !text.contains("pw2"),
            "{text}"
        );

        let db = load(
            "[default.redis]\nurl = \"redis://:pw3@h/notanumber\"\n",
            None,
        )
        .unwrap_err();
        let text = db.to_string();
        assert!(
            text.contains("redis.url") && !text.contains("pw3"),
            "{text}"
        );

        let slow = load("[default.redis]\nhealth_timeout = \"2s\"\n", None).unwrap_err();
        assert!(slow.to_string().contains("health_timeout"), "{slow}");

        let zero = load("[default.redis]\ncommand_timeout = \"0s\"\n", None).unwrap_err();
        assert!(zero.to_string().contains("command_timeout"), "{zero}");

        let order = load(
            "[default.redis]\nreconnect_min = \"5s\"\nreconnect_max = \"1s\"\n",
            None,
        )
        .unwrap_err();
        assert!(order.to_string().contains("reconnect_min"), "{order}");
    }
}
