//! The resolver: a hickory `TokioResolver` with Nucleon's configuration, typed errors and
//! per-worker registration.

use std::cell::RefCell;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Hosts, TokioResolver};
use nucleon_runtime::LocalState;
use tokio::net::TcpStream;

use crate::config::{DnsConfig, IpPreference};
use crate::connect;
use crate::error::{ConnectError, DnsError};

/// An asynchronous, caching DNS resolver: cheap to clone, clones share one cache.
///
/// In a Nucleon service, [`crate::DnsAdapter`] builds one per worker at start and
/// registers it; find it with [`Resolver::current`]. Standalone, build one with
/// [`Resolver::from_config`] and keep it (each one has its own cache).
///
/// Its sockets belong to the tokio runtime it was first used on: use it on one worker
/// (the adapter does), never share it across workers' runtimes.
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    shared: Arc<Shared>,
}

struct Shared {
    preference: IpPreference,
    /// A lookup fails with a timeout after this, whatever hickory does.
    deadline: Duration,
    connect_timeout: Duration,
    connect_attempt_delay: Duration,
    nameservers: Vec<SocketAddr>,
    search: Vec<String>,
}

/// One target of an SRV lookup, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, the share of load (higher first here).
    pub weight: u16,
    /// The port of the service.
    pub port: u16,
    /// The host to resolve and connect to (without the trailing dot).
    pub target: String,
}

impl Resolver {
    /// Builds a resolver from `config`: its name servers, else `resolv_conf`'s; its hosts
    /// file. Reads those files asynchronously (tokio's file IO), so it may run on a worker.
    ///
    /// # Errors
    /// [`DnsError::Misconfigured`], naming the file or key, when no name server can be
    /// found (an unreadable or empty `resolv.conf` and no `dns.nameservers`), a name
    /// server is not an address, a search domain is not a name, or the hosts file cannot
    /// be read (a missing hosts file is only logged).
    pub async fn from_config(config: &DnsConfig) -> Result<Self, DnsError> {
        let (resolver_config, mut opts) = if config.nameservers.is_empty() {
            read_resolv_conf(&config.resolv_conf).await?
        } else {
            let servers = config
                .nameservers
                .iter()
                .map(|text| parse_nameserver(text))
                .collect::<Result<Vec<_>, _>>()?;
            (
                ResolverConfig::from_name_servers(servers),
                ResolverOpts::default(),
            )
        };
        let (domain, mut search, name_servers) = resolver_config.into_parts();
        if !config.search.is_empty() {
            search = config
                .search
                .iter()
                .map(|domain| {
                    Name::from_utf8(domain).map_err(|e| DnsError::Misconfigured {
                        source_of: "dns.search".to_owned(),
                        reason: format!("`{domain}` is not a domain name: {e}"),
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        let nameservers: Vec<SocketAddr> = name_servers
            .iter()
            .filter_map(|ns| {
                ns.connections
                    .first()
                    .map(|c| SocketAddr::new(ns.ip, c.port))
            })
            .collect();
        let search_text: Vec<String> = search.iter().map(ToString::to_string).collect();
        let resolver_config = ResolverConfig::from_parts(domain, search, name_servers);

        if let Some(ndots) = config.ndots {
            opts.ndots = ndots;
        }
        if let Some(timeout) = config.timeout {
            opts.timeout = timeout;
        }
        if let Some(attempts) = config.attempts {
            opts.attempts = attempts.max(1);
        }
        opts.cache_size = config.cache_size;
        opts.positive_min_ttl = config.positive_min_ttl;
        opts.positive_max_ttl = config.positive_max_ttl;
        opts.negative_min_ttl = config.negative_min_ttl;
        opts.negative_max_ttl = config.negative_max_ttl;
        opts.ip_strategy = config.ip_preference.strategy();
        // The hosts file is read below, asynchronously; hickory would read it blocking.
        opts.use_hosts_file = ResolveHosts::Never;
        let deadline = opts.timeout * u32::try_from(opts.attempts.max(1)).unwrap_or(u32::MAX);

        let mut inner =
            TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
                .with_options(opts)
                .build()
                .map_err(|e| DnsError::Misconfigured {
                    source_of: "dns".to_owned(),
                    reason: e.to_string(),
                })?;
        if let Some(path) = &config.hosts_file {
            if let Some(hosts) = read_hosts(path).await? {
                inner.set_hosts(Arc::new(hosts));
            }
        }
        tracing::debug!(
            target: "nucleon::dns",
            nameservers = ?nameservers,
            search = ?search_text,
            ?deadline,
            "resolver ready"
        );
        Ok(Self {
            inner,
            shared: Arc::new(Shared {
                preference: config.ip_preference,
                deadline,
                connect_timeout: config.connect_timeout,
                connect_attempt_delay: config.connect_attempt_delay,
                nameservers,
                search: search_text,
            }),
        })
    }

    /// The resolver registered on this worker (by [`crate::DnsAdapter`], or
    /// [`Resolver::register`]); `None` elsewhere.
    pub fn current() -> Option<Self> {
        LocalState::<Resolver>::current().map(|state| state.with(Clone::clone))
    }

    /// Registers this resolver as the current thread's (worker's), for
    /// [`Resolver::current`], [`lookup_host`], [`connect_tcp`] and
    /// [`crate::HttpClientAdapter`].
    pub fn register(&self) {
        LocalState::new(self.clone()).register();
    }

    /// The name servers asked, in order.
    pub fn nameservers(&self) -> &[SocketAddr] {
        &self.shared.nameservers
    }

    /// The longest a lookup can take before it fails with [`DnsError::Timeout`]
    /// (`timeout × attempts`).
    pub fn lookup_deadline(&self) -> Duration {
        self.shared.deadline
    }

    /// The addresses of `host`, in the configured preference order.
    ///
    /// IP literals (`10.0.0.1`, `::1`, `[::1]`) and `localhost` (and `*.localhost`,
    /// RFC 6761) are answered without a query; the hosts file comes next; then the
    /// cache; then the name servers.
    ///
    /// # Errors
    /// [`DnsError::NoSuchHost`], [`DnsError::NoRecords`], [`DnsError::Timeout`],
    /// [`DnsError::Failed`], [`DnsError::InvalidName`], each naming `host`.
    pub async fn lookup_ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        if is_localhost(host) {
            return Ok(self.loopback());
        }
        let name = parse_name(host)?;
        let started = Instant::now();
        let lookup = tokio::time::timeout(self.shared.deadline, self.inner.lookup_ip(name))
            .await
            .map_err(|_| DnsError::Timeout {
                host: host.to_owned(),
                after: started.elapsed(),
            })?
            .map_err(|e| map_error(host, "A/AAAA", &e, started))?;
        let addrs: Vec<IpAddr> = lookup.iter().collect();
        if addrs.is_empty() {
            return Err(DnsError::NoRecords {
                host: host.to_owned(),
                record_type: "A/AAAA".to_owned(),
            });
        }
        tracing::trace!(target: "nucleon::dns", host, ?addrs, "resolved");
        Ok(addrs)
    }

    /// The socket addresses of `host` with `port`, in preference order.
    ///
    /// # Errors
    /// As [`Resolver::lookup_ip`].
    pub async fn lookup_socket_addrs(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, DnsError> {
        Ok(self
            .lookup_ip(host)
            .await?
            .into_iter()
            .map(|ip| SocketAddr::new(ip, port))
            .collect())
    }

    /// The SRV targets of `name` (e.g. `_amqp._tcp.example.org`), by priority, then by
    /// weight (highest first).
    ///
    /// # Errors
    /// As [`Resolver::lookup_ip`].
    pub async fn lookup_srv(&self, name: &str) -> Result<Vec<SrvTarget>, DnsError> {
        let answers = self.lookup_records(name, RecordType::SRV, "SRV").await?;
        let mut targets: Vec<SrvTarget> = answers
            .into_iter()
            .filter_map(|data| match data {
                RData::SRV(srv) => Some(SrvTarget {
                    priority: srv.priority,
                    weight: srv.weight,
                    port: srv.port,
                    target: srv.target.to_string().trim_end_matches('.').to_owned(),
                }),
                _ => None,
            })
            .collect();
        targets.sort_by(|a, b| a.priority.cmp(&b.priority).then(b.weight.cmp(&a.weight)));
        non_empty(targets, name, "SRV")
    }

    /// The TXT records of `name`, each one's character-strings concatenated (invalid
    /// UTF-8 replaced).
    ///
    /// # Errors
    /// As [`Resolver::lookup_ip`].
    pub async fn lookup_txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let answers = self.lookup_records(name, RecordType::TXT, "TXT").await?;
        let texts: Vec<String> = answers
            .into_iter()
            .filter_map(|data| match data {
                RData::TXT(txt) => Some(
                    txt.txt_data
                        .iter()
                        .map(|part| String::from_utf8_lossy(part))
                        .collect::<String>(),
                ),
                _ => None,
            })
            .collect();
        non_empty(texts, name, "TXT")
    }

    async fn lookup_records(
        &self,
        host: &str,
        record_type: RecordType,
        label: &str,
    ) -> Result<Vec<RData>, DnsError> {
        let name = parse_name(host)?;
        let started = Instant::now();
        let lookup =
            tokio::time::timeout(self.shared.deadline, self.inner.lookup(name, record_type))
                .await
                .map_err(|_| DnsError::Timeout {
                    host: host.to_owned(),
                    after: started.elapsed(),
                })?
                .map_err(|e| map_error(host, label, &e, started))?;
        Ok(lookup
            .answers()
            .iter()
            .filter(|record| record.record_type() == record_type)
            .map(|record| record.data.clone())
            .collect())
    }

    /// Connects to `host:port`: resolves it, then tries its addresses in turn, IPv6 and
    /// IPv4 interleaved, starting the next attempt when the previous one has not
    /// succeeded within `dns.connect_attempt_delay` (Happy Eyeballs, RFC 8305), each
    /// attempt bounded by `dns.connect_timeout`. The first connection wins; the others
    /// are dropped. `TCP_NODELAY` is set.
    ///
    /// # Errors
    /// [`ConnectError::Dns`] when the name does not resolve;
    /// [`ConnectError::Unreachable`], listing every address tried and its failure.
    pub async fn connect_tcp(&self, host: &str, port: u16) -> Result<TcpStream, ConnectError> {
        let addrs = self.lookup_socket_addrs(host, port).await?;
        connect::happy_eyeballs(
            host,
            port,
            addrs,
            self.shared.connect_attempt_delay,
            self.shared.connect_timeout,
        )
        .await
    }

    /// Empties the cache (e.g. after a failover you know of).
    pub fn clear_cache(&self) {
        self.inner.clear_cache();
    }

    /// The hickory resolver underneath, for what this API does not cover.
    pub fn hickory(&self) -> &TokioResolver {
        &self.inner
    }

    fn loopback(&self) -> Vec<IpAddr> {
        let v4 = IpAddr::V4(Ipv4Addr::LOCALHOST);
        let v6 = IpAddr::V6(Ipv6Addr::LOCALHOST);
        match self.shared.preference {
            IpPreference::Ipv4Only => vec![v4],
            IpPreference::Ipv6Only => vec![v6],
            IpPreference::Ipv4First => vec![v4, v6],
            IpPreference::Ipv6First => vec![v6, v4],
        }
    }
}

impl fmt::Debug for Resolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Resolver")
            .field("nameservers", &self.shared.nameservers)
            .field("search", &self.shared.search)
            .field("preference", &self.shared.preference)
            .field("deadline", &self.shared.deadline)
            .finish_non_exhaustive()
    }
}

fn non_empty<T>(items: Vec<T>, host: &str, record_type: &str) -> Result<Vec<T>, DnsError> {
    if items.is_empty() {
        Err(DnsError::NoRecords {
            host: host.to_owned(),
            record_type: record_type.to_owned(),
        })
    } else {
        Ok(items)
    }
}

fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

fn is_localhost(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
    host == "localhost" || host.ends_with(".localhost")
}

fn parse_name(host: &str) -> Result<Name, DnsError> {
    let invalid = |reason: String| DnsError::InvalidName {
        host: host.to_owned(),
        reason,
    };
    if host.trim().is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    Name::from_utf8(host).map_err(|e| invalid(e.to_string()))
}

fn map_error(host: &str, record_type: &str, error: &NetError, started: Instant) -> DnsError {
    let host = host.to_owned();
    if error.is_nx_domain() {
        DnsError::NoSuchHost { host }
    } else if error.is_no_records_found() {
        DnsError::NoRecords {
            host,
            record_type: record_type.to_owned(),
        }
    } else if matches!(error, NetError::Timeout) {
        DnsError::Timeout {
            host,
            after: started.elapsed(),
        }
    } else {
        DnsError::Failed {
            host,
            reason: error.to_string(),
        }
    }
}

fn parse_nameserver(text: &str) -> Result<NameServerConfig, DnsError> {
    let addr = text
        .parse::<SocketAddr>()
        .or_else(|_| text.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
        .map_err(|_| DnsError::Misconfigured {
            source_of: "dns.nameservers".to_owned(),
            reason: format!(
                "`{text}` is not an IP address or IP:port (a name server cannot be given by name)"
            ),
        })?;
    let mut server = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut server.connections {
        connection.port = addr.port();
    }
    Ok(server)
}

async fn read_resolv_conf(path: &Path) -> Result<(ResolverConfig, ResolverOpts), DnsError> {
    let misconfigured = |reason: String| DnsError::Misconfigured {
        source_of: path.display().to_string(),
        reason,
    };
    let data = tokio::fs::read(path).await.map_err(|e| {
        misconfigured(format!(
            "cannot read it ({e}) and dns.nameservers is empty: set dns.nameservers, or fix the file"
        ))
    })?;
    hickory_resolver::system_conf::parse_resolv_conf(data).map_err(|e| {
        misconfigured(format!(
            "{e}; it must list at least one `nameserver`, or set dns.nameservers"
        ))
    })
}

async fn read_hosts(path: &Path) -> Result<Option<Hosts>, DnsError> {
    match tokio::fs::read(path).await {
        Ok(data) => {
            let mut hosts = Hosts::default();
            hosts
                .read_hosts_conf(&data[..])
                .map_err(|e| DnsError::Misconfigured {
                    source_of: path.display().to_string(),
                    reason: format!("not a hosts file: {e}"),
                })?;
            Ok(Some(hosts))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            tracing::info!(
                target: "nucleon::dns",
                file = %path.display(),
                "no hosts file at {}: names resolve through DNS only",
                path.display()
            );
            Ok(None)
        }
        Err(error) => Err(DnsError::Misconfigured {
            source_of: path.display().to_string(),
            reason: format!(
                "cannot read the hosts file ({error}); set dns.hosts_file = false to do without"
            ),
        }),
    }
}

thread_local! {
    /// Outside a worker: one system resolver per thread and tokio runtime.
    static FALLBACK: RefCell<Option<(tokio::runtime::Id, Resolver)>> = const { RefCell::new(None) };
}

/// The resolver to use here: the worker's ([`Resolver::current`]); outside a worker,
/// one built from the system configuration, kept per thread and tokio runtime.
///
/// # Errors
/// [`DnsError::Misconfigured`] when no resolver is registered and the system
/// configuration cannot be read.
pub async fn resolver() -> Result<Resolver, DnsError> {
    if let Some(resolver) = Resolver::current() {
        return Ok(resolver);
    }
    let runtime = tokio::runtime::Handle::try_current()
        .ok()
        .map(|handle| handle.id());
    let cached = FALLBACK.with(|slot| {
        slot.borrow()
            .as_ref()
            .filter(|(id, _)| Some(id) == runtime.as_ref())
            .map(|(_, resolver)| resolver.clone())
    });
    if let Some(resolver) = cached {
        return Ok(resolver);
    }
    let built = Resolver::from_config(&DnsConfig::default()).await?;
    if let Some(id) = runtime {
        FALLBACK.with(|slot| *slot.borrow_mut() = Some((id, built.clone())));
    }
    Ok(built)
}

/// Turns `host` into socket addresses with `port`, without `getaddrinfo`: the helper
/// other adapters (database, AMQP) call. Uses [`resolver`].
///
/// # Errors
/// As [`Resolver::lookup_ip`], or [`resolver`].
pub async fn lookup_host(host: &str, port: u16) -> Result<Vec<SocketAddr>, DnsError> {
    if let Some(ip) = ip_literal(host) {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    resolver().await?.lookup_socket_addrs(host, port).await
}

/// Connects to `host:port` with [`Resolver::connect_tcp`] on [`resolver`].
///
/// # Errors
/// As [`Resolver::connect_tcp`].
pub async fn connect_tcp(host: &str, port: u16) -> Result<TcpStream, ConnectError> {
    resolver().await?.connect_tcp(host, port).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literals_and_localhost_need_no_query() {
        assert_eq!(ip_literal("10.1.2.3"), Some("10.1.2.3".parse().unwrap()));
        assert_eq!(ip_literal("[::1]"), Some("::1".parse().unwrap()));
        assert_eq!(ip_literal("example.org"), None);
        assert!(is_localhost("localhost"));
        assert!(is_localhost("LocalHost."));
        assert!(is_localhost("api.localhost"));
        assert!(!is_localhost("localhost.example.org"));
    }

    #[test]
    fn nameservers_are_addresses_with_an_optional_port() {
        let server = parse_nameserver("10.0.0.3:5353").unwrap();
        assert_eq!(server.ip, "10.0.0.3".parse::<IpAddr>().unwrap());
        assert!(server.connections.iter().all(|c| c.port == 5353));
        assert!(
            parse_nameserver("10.0.0.3")
                .unwrap()
                .connections
                .iter()
                .all(|c| c.port == 53)
        );
        let error = parse_nameserver("dns.example.org").unwrap_err().to_string();
        assert!(error.contains("dns.nameservers"), "{error}");
        assert!(error.contains("dns.example.org"), "{error}");
    }

    #[tokio::test]
    async fn an_unreadable_resolv_conf_without_nameservers_fails_clearly() {
        let config = DnsConfig {
            resolv_conf: "/nonexistent/resolv.conf".into(),
            ..DnsConfig::default()
        };
        let error = Resolver::from_config(&config).await.unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, DnsError::Misconfigured { .. }));
        assert!(text.contains("/nonexistent/resolv.conf"), "{text}");
        assert!(text.contains("dns.nameservers"), "{text}");
    }

    #[tokio::test]
    async fn a_resolv_conf_without_nameservers_fails_clearly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        tokio::fs::write(&path, "search example.org\n")
            .await
            .unwrap();
        let config = DnsConfig {
            resolv_conf: path.clone(),
            ..DnsConfig::default()
        };
        let error = Resolver::from_config(&config)
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("nameserver"), "{error}");
    }

    #[tokio::test]
    async fn resolv_conf_settings_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("resolv.conf");
        tokio::fs::write(
            &path,
            "nameserver 127.0.0.1\nsearch corp.example\noptions timeout:1 attempts:3\n",
        )
        .await
        .unwrap();
        let config = DnsConfig {
            resolv_conf: path,
            hosts_file: None,
            ..DnsConfig::default()
        };
        let resolver = Resolver::from_config(&config).await.unwrap();
        assert_eq!(
            resolver.nameservers(),
            &["127.0.0.1:53".parse::<SocketAddr>().unwrap()]
        );
        assert_eq!(resolver.lookup_deadline(), Duration::from_secs(3));
        let lookup = resolver.lookup_ip("127.0.0.1").await.unwrap();
        assert_eq!(lookup, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
    }
}
