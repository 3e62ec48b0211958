//! Settings: `[<env>.dns]` and `[<env>.http_client]` in `app.toml`.

use std::path::PathBuf;
use std::time::Duration;

use nucleon_runtime::config::duration;
use serde::Deserialize;

/// The resolver's settings (`[<env>.dns]`).
///
/// With no `nameservers`, they come from `resolv_conf` (`/etc/resolv.conf`), with its
/// search domains, `ndots`, `timeout` and `attempts`; anything set here overrides those.
/// If neither gives a name server, the resolver does not start: there is no silent
/// fallback to public resolvers.
///
/// ```toml
/// [default.dns]
/// nameservers = ["10.0.0.2", "10.0.0.3:5353"]
/// search = ["svc.cluster.local"]
/// timeout = "2s"
/// attempts = 2
/// cache_size = 4096
/// positive_max_ttl = "5m"
/// ip_preference = "ipv4_first"
/// hosts_file = "/etc/hosts"
/// health_probe = "db.internal."
/// ```
///
/// The resolver's health (the `dns` adapter's health check, [`crate::Resolver::health`])
/// comes from its latest lookups, or from `health_probe` when it is set.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers, `ip` or `ip:port` (port 53 by default), asked over UDP then TCP.
    /// Empty: those of `resolv_conf`.
    pub nameservers: Vec<String>,
    /// Search domains tried for names with fewer than `ndots` dots. Empty: those of
    /// `resolv_conf` when the name servers come from it, none otherwise.
    pub search: Vec<String>,
    /// Dots a name needs to be tried as given before the search domains (default: from
    /// `resolv_conf`, else 1).
    pub ndots: Option<usize>,
    /// The resolver configuration file read when `nameservers` is empty.
    pub resolv_conf: PathBuf,
    /// The hosts file honoured before any query (`None`, or `hosts_file = false`: none).
    /// A name it lists (as given, or with a search domain) with an address of a family
    /// `ip_preference` asks for is answered from it alone, with no query, as glibc's
    /// `files` source does.
    #[serde(deserialize_with = "path_or_false")]
    pub hosts_file: Option<PathBuf>,
    /// How long to wait for one answer (default: from `resolv_conf`, else 5 s).
    ///
    /// Each candidate name of a lookup (the name as given, and the name with each
    /// search domain, see `search` and `ndots`) gets `timeout × attempts`; when one runs
    /// out, the next candidate is tried, as glibc does. So a lookup fails with
    /// [`crate::DnsError::Timeout`] after at most `timeout × attempts × candidates`
    /// ([`crate::Resolver::lookup_deadline_for`]); a fully qualified name
    /// (`api.example.org.`) has one candidate. Names the hosts file lists are answered
    /// without a query. Zero is refused (every lookup would time out).
    #[serde(with = "duration::nonzero::option")]
    pub timeout: Option<Duration>,
    /// How many times a query is sent before giving up (default: from `resolv_conf`,
    /// else 2). Bounds each candidate name's lookup to `timeout × attempts`: see
    /// `timeout`.
    pub attempts: Option<usize>,
    /// Answers kept in each worker's cache (default 4096).
    pub cache_size: u64,
    /// Shortest time a positive answer is cached, whatever its TTL says.
    #[serde(with = "duration::option")]
    pub positive_min_ttl: Option<Duration>,
    /// Longest time a positive answer is cached, whatever its TTL says.
    #[serde(with = "duration::option")]
    pub positive_max_ttl: Option<Duration>,
    /// Shortest time a negative answer (no such name, no records) is cached.
    #[serde(with = "duration::option")]
    pub negative_min_ttl: Option<Duration>,
    /// Longest time a negative answer is cached.
    #[serde(with = "duration::option")]
    pub negative_max_ttl: Option<Duration>,
    /// Which address families to ask for, in which order.
    pub ip_preference: IpPreference,
    /// For [`crate::Resolver::connect_tcp`]: how long one connection attempt may take
    /// (default 5 s; zero is refused).
    #[serde(with = "duration::nonzero")]
    pub connect_timeout: Duration,
    /// For [`crate::Resolver::connect_tcp`]: how long to wait for an attempt before
    /// starting the next address in parallel (RFC 8305 "connection attempt delay",
    /// default 250 ms).
    #[serde(with = "duration")]
    pub connect_attempt_delay: Duration,
    /// A name each health check resolves (say `"db.internal."`, a name the service
    /// needs), asked of the name servers every time (not the cache, not the hosts
    /// file), within 1.5 s. The check reports healthy when it has addresses, and
    /// unhealthy, naming it and the name servers, when it does not exist, has no
    /// addresses, or gets no answer. End it with a dot to spare the search domains.
    ///
    /// Unset (the default), health comes from the latest lookups that reached a name
    /// server: healthy when they were answered (or before any), degraded when some of
    /// the latest 8 got no answer, unhealthy when the last 3 in a row got none
    /// ([`crate::Resolver::recent_health`]).
    pub health_probe: Option<String>,
}

impl Default for DnsConfig {
    fn default() -> Self {
        Self {
            nameservers: Vec::new(),
            search: Vec::new(),
            ndots: None,
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            hosts_file: Some(PathBuf::from("/etc/hosts")),
            timeout: None,
            attempts: None,
            cache_size: 4096,
            positive_min_ttl: None,
            positive_max_ttl: None,
            negative_min_ttl: None,
            negative_max_ttl: None,
            ip_preference: IpPreference::default(),
            connect_timeout: Duration::from_secs(5),
            connect_attempt_delay: Duration::from_millis(250),
            health_probe: None,
        }
    }
}

/// The longest a cache entry is kept when no maximum is set (hickory's default).
const DEFAULT_MAX_TTL: Duration = Duration::from_secs(86_400);

impl DnsConfig {
    /// Checks what the types alone cannot: each minimum TTL is no longer than its
    /// maximum (set, or the default of one day), and `health_probe` is a name that
    /// needs a query. The cache clamps every answer's TTL between the two, and a
    /// minimum past the maximum would fail every lookup that misses the cache.
    ///
    /// [`crate::Resolver::from_config`] runs it, and so does the umbrella crate when it
    /// loads the configuration (`app check` included).
    ///
    /// # Errors
    /// [`DnsError::Misconfigured`](crate::DnsError::Misconfigured) naming the key.
    ///
    /// ```
    /// use std::time::Duration;
    /// use nucleon_dns::DnsConfig;
    ///
    /// let config = DnsConfig {
    ///     positive_min_ttl: Some(Duration::from_secs(600)),
    ///     positive_max_ttl: Some(Duration::from_secs(300)),
    ///     ..DnsConfig::default()
    /// };
    /// assert!(config.check().unwrap_err().to_string().contains("dns.positive_min_ttl"));
    /// ```
    pub fn check(&self) -> Result<(), crate::DnsError> {
        for (kind, min, max) in [
            ("positive", self.positive_min_ttl, self.positive_max_ttl),
            ("negative", self.negative_min_ttl, self.negative_max_ttl),
        ] {
            let Some(min) = min else { continue };
            let (max, max_is) = match max {
                Some(max) => (max, format!("dns.{kind}_max_ttl ({max:?})")),
                None => (
                    DEFAULT_MAX_TTL,
                    format!("the default maximum of one day (set dns.{kind}_max_ttl to raise it)"),
                ),
            };
            if min > max {
                return Err(crate::DnsError::Misconfigured {
                    source_of: format!("dns.{kind}_min_ttl"),
                    reason: format!(
                        "the minimum TTL ({min:?}) is longer than {max_is}: answers are \
                         cached between the two"
                    ),
                });
            }
        }
        if let Some(probe) = &self.health_probe {
            let misconfigured = |reason: String| crate::DnsError::Misconfigured {
                source_of: "dns.health_probe".to_owned(),
                reason,
            };
            let bare = probe.trim_end_matches('.').to_ascii_lowercase();
            if bare
                .trim_matches(['[', ']'])
                .parse::<std::net::IpAddr>()
                .is_ok()
                || bare == "localhost"
                || bare.ends_with(".localhost")
            {
                return Err(misconfigured(format!(
                    "`{probe}` is answered without asking a name server: give a name they serve"
                )));
            }
            if probe.trim().is_empty() {
                return Err(misconfigured(
                    "it is empty: give a name, or remove it".to_owned(),
                ));
            }
            hickory_resolver::proto::rr::Name::from_utf8(probe)
                .map_err(|e| misconfigured(format!("`{probe}` is not a domain name: {e}")))?;
        }
        Ok(())
    }
}

fn path_or_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum PathOrBool {
        Bool(bool),
        Path(PathBuf),
    }
    match PathOrBool::deserialize(d)? {
        PathOrBool::Path(path) => Ok(Some(path)),
        PathOrBool::Bool(false) => Ok(None),
        PathOrBool::Bool(true) => Ok(Some(PathBuf::from("/etc/hosts"))),
    }
}

/// Which address families a lookup asks for, and in which order it returns them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IpPreference {
    /// A records only.
    Ipv4Only,
    /// AAAA records only.
    Ipv6Only,
    /// A and AAAA in parallel, IPv4 addresses first.
    Ipv4First,
    /// A and AAAA in parallel, IPv6 addresses first (RFC 8305's preference).
    #[default]
    Ipv6First,
}

impl IpPreference {
    pub(crate) fn strategy(self) -> hickory_resolver::config::LookupIpStrategy {
        use hickory_resolver::config::LookupIpStrategy as S;
        match self {
            IpPreference::Ipv4Only => S::Ipv4Only,
            IpPreference::Ipv6Only => S::Ipv6Only,
            IpPreference::Ipv4First => S::Ipv4AndIpv6,
            IpPreference::Ipv6First => S::Ipv6AndIpv4,
        }
    }
}

/// The outbound HTTP client's settings (`[<env>.http_client]`).
///
/// ```toml
/// [default.http_client]
/// timeout = "10s"
/// connect_timeout = "2s"
/// ca_file = "/etc/nucleon/internal-ca.pem"
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpClientConfig {
    /// Whole-request deadline, from sending to the end of the body (default 30 s; zero
    /// is refused: every request would fail).
    #[serde(with = "duration::nonzero")]
    pub timeout: Duration,
    /// Deadline to establish a connection, name resolution and TLS included (default
    /// 5 s). Resolution gets nine tenths of it at most: a name server slower than that
    /// is a DNS timeout naming the host. Zero is refused.
    ///
    /// A lost DNS answer is asked again only after `dns.timeout` (resolv.conf's, 5 s
    /// when it sets none): with one name server and the defaults, the retry falls
    /// outside this deadline. Where UDP answers get lost (a conntrack race, say), set
    /// `dns.timeout = "1s"` or so, or raise this.
    #[serde(with = "duration::nonzero")]
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept (default 90 s).
    #[serde(with = "duration")]
    pub pool_idle_timeout: Duration,
    /// Idle connections kept per host (default 32).
    pub pool_max_idle_per_host: usize,
    /// Redirects followed before giving up (default 10; 0 follows none).
    pub max_redirects: usize,
    /// The `User-Agent` header (default `nucleon/<version>`).
    pub user_agent: String,
    /// Trust the operating system's root certificates (default true).
    pub native_roots: bool,
    /// Extra root certificates (PEM), e.g. an internal CA.
    pub ca_file: Option<PathBuf>,
    /// Forward the current request id as `x-request-id` (default true).
    pub forward_request_id: bool,
    /// Forward the current trace context as W3C `traceparent` and `tracestate`
    /// (default true; see `nucleon_runtime::trace`).
    pub forward_trace_context: bool,
    /// The largest response body [`crate::HttpClient::json`] reads, in bytes (default
    /// 16 MiB): past it, [`crate::HttpError::BodyTooLarge`], and the rest is not read.
    pub max_body_size: usize,
}

impl Default for HttpClientConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            pool_idle_timeout: Duration::from_secs(90),
            pool_max_idle_per_host: 32,
            max_redirects: 10,
            user_agent: concat!("nucleon/", env!("CARGO_PKG_VERSION")).to_owned(),
            native_roots: true,
            ca_file: None,
            forward_request_id: true,
            forward_trace_context: true,
            max_body_size: 16 * 1024 * 1024,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_documented_table() {
        let config = nucleon_runtime::Config::from_toml(
            r#"
            [default.dns]
            nameservers = ["10.0.0.2", "10.0.0.3:5353"]
            timeout = "2s"
            attempts = 3
            ip_preference = "ipv4_only"
            hosts_file = false
            "#,
            "default",
        )
        .unwrap();
        let dns: DnsConfig = config.extract_at("dns").unwrap();
        assert_eq!(dns.nameservers.len(), 2);
        assert_eq!(dns.timeout, Some(Duration::from_secs(2)));
        assert_eq!(dns.attempts, Some(3));
        assert_eq!(dns.ip_preference, IpPreference::Ipv4Only);
        assert_eq!(dns.hosts_file, None);
        assert_eq!(dns.cache_size, 4096);
    }

    #[test]
    fn absent_tables_are_defaults() {
        let config = nucleon_runtime::Config::from_toml("", "default").unwrap();
        assert_eq!(
            config.extract_at::<DnsConfig>("dns").unwrap(),
            DnsConfig::default()
        );
        assert_eq!(
            config
                .extract_at::<HttpClientConfig>("http_client")
                .unwrap(),
            HttpClientConfig::default()
        );
    }

    #[test]
    fn zero_timeouts_are_refused_with_their_key() {
        for (table, key) in [
            ("dns", "timeout"),
            ("dns", "connect_timeout"),
            ("http_client", "timeout"),
            ("http_client", "connect_timeout"),
        ] {
            let config = nucleon_runtime::Config::from_toml(
                &format!("[default.{table}]\n{key} = \"0s\"\n"),
                "default",
            )
            .unwrap();
            let error = if table == "dns" {
                config.extract_at::<DnsConfig>(table).map(drop)
            } else {
                config.extract_at::<HttpClientConfig>(table).map(drop)
            }
            .expect_err(key)
            .to_string();
            assert!(
                error.contains(&format!("{table}.{key}")) && error.contains("more than 0"),
                "{table}.{key}: {error}"
            );
        }
    }

    #[test]
    fn a_minimum_ttl_past_its_maximum_is_refused_with_its_key() {
        let check = |toml: &str| {
            nucleon_runtime::Config::from_toml(&format!("[default.dns]\n{toml}\n"), "default")
                .unwrap()
                .extract_at::<DnsConfig>("dns")
                .unwrap()
                .check()
                .map_err(|e| e.to_string())
        };
        let error = check("positive_min_ttl = \"10m\"\npositive_max_ttl = \"5m\"").unwrap_err();
        assert!(
            error.contains("dns.positive_min_ttl") && error.contains("dns.positive_max_ttl"),
            "{error}"
        );
        let error = check("negative_min_ttl = \"48h\"").unwrap_err();
        assert!(
            error.contains("dns.negative_min_ttl") && error.contains("one day"),
            "{error}"
        );
        check("positive_min_ttl = \"1m\"\npositive_max_ttl = \"1m\"").unwrap();
        check("positive_min_ttl = \"24h\"\nnegative_max_ttl = \"1s\"").unwrap();
        check("").unwrap();
    }

    #[test]
    fn a_health_probe_must_be_a_name_a_server_answers() {
        let check = |probe: &str| {
            DnsConfig {
                health_probe: Some(probe.to_owned()),
                ..DnsConfig::default()
            }
            .check()
            .map_err(|e| e.to_string())
        };
        check("db.internal.").unwrap();
        check("db").unwrap();
        for bad in [
            "10.0.0.1",
            "[::1]",
            "localhost",
            "api.localhost.",
            "",
            "a..b",
        ] {
            let error = check(bad).unwrap_err();
            assert!(error.contains("dns.health_probe"), "{bad}: {error}");
        }
        let config = nucleon_runtime::Config::from_toml(
            "[default.dns]\nhealth_probe = \"db.internal.\"\n",
            "default",
        )
        .unwrap();
        let dns: DnsConfig = config.extract_at("dns").unwrap();
        assert_eq!(dns.health_probe.as_deref(), Some("db.internal."));
    }

    #[test]
    fn a_bad_value_names_the_key() {
        let config = nucleon_runtime::Config::from_toml(
            "[default.dns]\nip_preference = \"ipv5\"\n",
            "default",
        )
        .unwrap();
        let error = config
            .extract_at::<DnsConfig>("dns")
            .unwrap_err()
            .to_string();
        assert!(error.contains("ip_preference"), "{error}");
    }
}
