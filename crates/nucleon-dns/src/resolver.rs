//! The resolver: a hickory `TokioResolver` with Nucleon's configuration, typed errors and
//! per-worker registration.

use std::cell::RefCell;
use std::fmt;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_resolver::config::{NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::NetError;
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::op::Query;
use hickory_resolver::proto::rr::{Name, RData, RecordType};
use hickory_resolver::{Hosts, TokioResolver};
use nucleon_runtime::{Health, LocalState};
use tokio::net::TcpStream;

use crate::config::{DnsConfig, IpPreference};
use crate::connect;
use crate::error::{ConnectError, DnsError};
use crate::health::{self, PROBE_TIMEOUT, Record, Servers};

/// An asynchronous, caching DNS resolver: cheap to clone, clones share one cache.
///
/// In a Nucleon service, [`crate::DnsAdapter`] builds one per worker at start and
/// registers it; find it with [`Resolver::current`]. Standalone, build one with
/// [`Resolver::from_config`] and keep it (each one has its own cache).
///
/// Its sockets belong to the tokio runtime it was first used on: use it on one worker
/// (the adapter does), never share it across workers' runtimes.
///
/// It keeps a record of how its recent lookups went, for [`Resolver::health`].
#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
    shared: Arc<Shared>,
}

struct Shared {
    preference: IpPreference,
    /// Each candidate name (the name as given, or with a search domain) fails with a
    /// timeout after this, whatever hickory does; then the next candidate is tried.
    deadline: Duration,
    connect_timeout: Duration,
    connect_attempt_delay: Duration,
    nameservers: Vec<SocketAddr>,
    /// Where the name servers were configured: `dns.nameservers`, or the resolv.conf file.
    nameservers_from: String,
    /// What turns a name into the candidate names tried.
    search: SearchList,
    /// The hosts file, consulted before any query.
    hosts: Option<Arc<Hosts>>,
    /// How the latest lookups that reached the network went.
    record: Record,
    /// `dns.health_probe`: the name a health check resolves.
    probe: Option<String>,
    /// The resolver of health checks: the same name servers, no cache (each check asks
    /// them), no hosts file, a timeout within [`PROBE_TIMEOUT`].
    check: TokioResolver,
}

/// `resolv.conf`'s `ndots`, `domain` and `search`, as hickory applies them.
#[derive(Debug, Clone)]
struct SearchList {
    ndots: usize,
    domain: Option<Name>,
    search: Vec<Name>,
}

impl SearchList {
    /// The fully qualified names to try for `name`, in order; hickory's order
    /// (`Resolver::build_names`): a name with more labels than `ndots` as given first,
    /// then with `domain`, then with each search domain; a shorter name as given last.
    /// A fully qualified name (`api.example.org.`) is the only candidate for itself.
    fn candidates(&self, name: &Name) -> Vec<Name> {
        let fqdn = |name: Name| {
            let mut name = name;
            name.set_fqdn(true);
            name
        };
        if name.is_fqdn() {
            return vec![name.clone()];
        }
        let as_given = fqdn(name.clone());
        let as_given_first = name.num_labels() as usize > self.ndots || name.is_localhost();
        let mut names = Vec::with_capacity(2 + self.search.len());
        if as_given_first {
            names.push(as_given.clone());
        }
        for domain in self.domain.iter().chain(&self.search) {
            match name.clone().append_domain(domain) {
                Ok(candidate) => {
                    let candidate = fqdn(candidate);
                    if !names.contains(&candidate) {
                        names.push(candidate);
                    }
                }
                Err(error) => tracing::debug!(
                    target: "nucleon::dns",
                    %name,
                    %domain,
                    %error,
                    "search domain skipped"
                ),
            }
        }
        if !names.contains(&as_given) {
            names.push(as_given);
        }
        names
    }
}

/// SRV targets in the order to try them (RFC 2782): by priority; within one, each
/// next target drawn with a chance in proportion to its weight, those of weight 0
/// placed first in the draw (so rarely drawn first). `draw(n)` is a uniform integer
/// in `0..=n`.
fn srv_order(mut targets: Vec<SrvTarget>, mut draw: impl FnMut(u32) -> u32) -> Vec<SrvTarget> {
    targets.sort_by_key(|t| (t.priority, t.weight != 0));
    let mut ordered = Vec::with_capacity(targets.len());
    while !targets.is_empty() {
        let priority = targets[0].priority;
        let group = targets
            .iter()
            .take_while(|t| t.priority == priority)
            .count();
        let total: u32 = targets[..group].iter().map(|t| u32::from(t.weight)).sum();
        let drawn = draw(total);
        let mut running = 0;
        let at = targets[..group]
            .iter()
            .position(|t| {
                running += u32::from(t.weight);
                running >= drawn
            })
            .unwrap_or(0);
        ordered.push(targets.remove(at));
    }
    ordered
}

/// A uniform integer in `0..=n`, from the standard library's per-process random keys
/// (a new `RandomState` each time; no random crate needed for load spreading).
fn uniform(n: u32) -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let random = std::hash::RandomState::new().build_hasher().finish();
    (random % (u64::from(n) + 1)) as u32
}

/// One target of an SRV lookup, in the order to try them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SrvTarget {
    /// Lower is tried first.
    pub priority: u16,
    /// Among equal priorities, the share of load.
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
    /// server is not an address, a search domain is not a name, a minimum TTL is past
    /// its maximum ([`DnsConfig::check`]), or the hosts file cannot be read (a missing
    /// hosts file is only logged).
    pub async fn from_config(config: &DnsConfig) -> Result<Self, DnsError> {
        config.check()?;
        let nameservers_from = if config.nameservers.is_empty() {
            config.resolv_conf.display().to_string()
        } else {
            "dns.nameservers".to_owned()
        };
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
        // As glibc: `domain` (hickory takes it from the host's name when resolv.conf has
        // no `domain` line) is the search list only when there is no other; tried
        // before a `search` line's domains, it could answer a short name from the
        // wrong domain.
        let domain = if search.is_empty() { domain } else { None };
        let search_list = SearchList {
            ndots: config.ndots.unwrap_or(opts.ndots),
            domain: domain.clone(),
            search: search.clone(),
        };
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
        let deadline = candidate_deadline(opts.timeout, opts.attempts);

        let build = |resolver_config: ResolverConfig, opts: ResolverOpts| {
            TokioResolver::builder_with_config(resolver_config, TokioRuntimeProvider::default())
                .with_options(opts)
                .build()
                .map_err(|e| DnsError::Misconfigured {
                    source_of: "dns".to_owned(),
                    reason: e.to_string(),
                })
        };
        let mut check_opts = opts.clone();
        check_opts.timeout = check_opts.timeout.min(PROBE_TIMEOUT / 2);
        check_opts.attempts = 2;
        check_opts.cache_size = 0;
        let check = build(resolver_config.clone(), check_opts)?;
        let mut inner = build(resolver_config, opts)?;
        let mut hosts = None;
        if let Some(path) = &config.hosts_file
            && let Some(read) = read_hosts(path).await?
        {
            let read = Arc::new(read);
            // For callers of `hickory()`; our lookups consult it before hickory.
            inner.set_hosts(Arc::clone(&read));
            hosts = Some(read);
        }
        tracing::debug!(
            target: "nucleon::dns",
            nameservers = ?nameservers,
            search = ?search_list,
            deadline_per_candidate = ?deadline,
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
                nameservers_from,
                search: search_list,
                hosts,
                record: Record::default(),
                probe: config.health_probe.clone(),
                check,
            }),
        })
    }

    /// The resolver registered on this worker (by [`crate::DnsAdapter`], or
    /// [`Resolver::register`]); `None` elsewhere.
    pub fn current() -> Option<Self> {
        nucleon_runtime::handle::get::<Resolver>()
            .or_else(|| LocalState::<Resolver>::current().map(|state| state.with(Clone::clone)))
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

    /// How long one candidate name may take before it counts as timed out
    /// (`timeout × attempts`); the next candidate (search domain) is tried then.
    ///
    /// A lookup tries at most one candidate per search domain, plus the name as given,
    /// so it fails with [`DnsError::Timeout`] after at most
    /// [`Resolver::lookup_deadline_for`] of it.
    pub fn lookup_deadline(&self) -> Duration {
        self.shared.deadline
    }

    /// The longest a lookup of `host` can take before it fails with
    /// [`DnsError::Timeout`]: [`Resolver::lookup_deadline`] for each candidate name
    /// (`host` as given, and with each search domain). Zero for IP literals and
    /// `localhost`, which need no query; [`Resolver::lookup_deadline`] for a name that
    /// is not valid (it fails at once anyway).
    pub fn lookup_deadline_for(&self, host: &str) -> Duration {
        if ip_literal(host).is_some() || is_localhost(host) {
            return Duration::ZERO;
        }
        let candidates =
            parse_name(host).map_or(1, |name| self.shared.search.candidates(&name).len());
        self.shared.deadline * u32::try_from(candidates).unwrap_or(u32::MAX)
    }

    /// The addresses of `host`, in the configured preference order.
    ///
    /// IP literals (`10.0.0.1`, `::1`, `[::1]`) and `localhost` (and `*.localhost`,
    /// RFC 6761) are answered without a query. The hosts file comes next, as with
    /// glibc: if it lists `host` (as given, else with a search domain) with an address
    /// of a family asked for, that is the answer and no query is sent, even for the
    /// family it lacks. Then the cache, then the name servers, for each candidate name
    /// in turn (`host` as given and with each search domain, in `resolv.conf` order),
    /// each bounded by [`Resolver::lookup_deadline`]; the first with addresses wins.
    ///
    /// # Errors
    /// [`DnsError::NoSuchHost`], [`DnsError::NoRecords`], [`DnsError::Timeout`],
    /// [`DnsError::Failed`], [`DnsError::InvalidName`], each naming `host`. When every
    /// candidate fails, the error is the most telling one: a timeout or a failure (the
    /// name may exist where no answer came) before "no records", before NXDOMAIN (which
    /// therefore means that no candidate exists).
    pub async fn lookup_ip(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        if let Some(ip) = ip_literal(host) {
            return Ok(vec![ip]);
        }
        if is_localhost(host) {
            return Ok(self.loopback());
        }
        let name = parse_name(host).inspect_err(|error| {
            crate::metrics::failed(error, false, Duration::ZERO);
        })?;
        let candidates = self.shared.search.candidates(&name);
        if let Some(addrs) = self.hosts_file_answer(&name, &candidates) {
            tracing::trace!(target: "nucleon::dns", host, ?addrs, "resolved from the hosts file");
            crate::metrics::answered(crate::metrics::Source::Hosts, Duration::ZERO);
            return Ok(addrs);
        }
        let preference = self.shared.preference;
        let addrs = self
            .first_answer(host, "A/AAAA", candidates, |name| {
                ip_lookup(&self.inner, name, preference)
            })
            .await?;
        tracing::trace!(target: "nucleon::dns", host, ?addrs, "resolved");
        Ok(addrs)
    }

    /// `name`'s A and AAAA records, asked at once, each family's answer taken as it
    /// comes: once one family has addresses, the other gets [`RESOLUTION_DELAY`] more
    /// (RFC 8305's resolution delay), so a server that never answers one family (AAAA,
    /// typically) costs that, not the lookup. hickory's own dual-stack lookup waits for
    /// both, and a family that never answers failed the whole lookup at its deadline.
    async fn both_families(
        resolver: &TokioResolver,
        name: Name,
        v6_first: bool,
    ) -> Result<Vec<IpAddr>, NetError> {
        let mut v4 = std::pin::pin!(resolver.ipv4_lookup(name.clone()));
        let mut v6 = std::pin::pin!(resolver.ipv6_lookup(name));
        let mut r4: Option<Result<Vec<IpAddr>, NetError>> = None;
        let mut r6: Option<Result<Vec<IpAddr>, NetError>> = None;
        let answered = |r: &Option<Result<Vec<IpAddr>, NetError>>| matches!(r, Some(Ok(addrs)) if !addrs.is_empty());
        let mut grace: Option<tokio::time::Instant> = None;
        while r4.is_none() || r6.is_none() {
            let until =
                grace.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                r = &mut v4, if r4.is_none() => r4 = Some(r.map(|l| addresses(&l))),
                r = &mut v6, if r6.is_none() => r6 = Some(r.map(|l| addresses(&l))),
                () = tokio::time::sleep_until(until), if grace.is_some() => break,
            }
            if grace.is_none() && (answered(&r4) || answered(&r6)) {
                grace = Some(tokio::time::Instant::now() + RESOLUTION_DELAY);
            }
        }
        let (first, second) = if v6_first { (r6, r4) } else { (r4, r6) };
        let mut addrs = Vec::new();
        let mut error = None;
        for result in [first, second].into_iter().flatten() {
            match result {
                Ok(found) => addrs.extend(found),
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        match error {
            Some(error) if addrs.is_empty() => Err(error),
            _ => Ok(addrs),
        }
    }

    /// The hosts file's addresses for `name` as given, else for the first candidate it
    /// lists, in preference order; `None` when it lists none with an address of a
    /// family asked for.
    fn hosts_file_answer(&self, name: &Name, candidates: &[Name]) -> Option<Vec<IpAddr>> {
        let hosts = self.shared.hosts.as_deref()?;
        let mut as_given = name.clone();
        as_given.set_fqdn(true);
        std::iter::once(&as_given)
            .chain(candidates)
            .find_map(|candidate| hosts_addresses(hosts, candidate, self.shared.preference))
    }

    /// Runs `query` for each candidate name in turn, each bounded by the per-candidate
    /// deadline, until one gives a non-empty answer; else the most telling error.
    ///
    /// Notes in the health record whether a name server answered: an answer that came
    /// over the network (not at once, as the cache's do) for any candidate, else the
    /// failure (a timeout, a refusal, a network error) of the lookup; a lookup that only
    /// the cache answered is not noted.
    async fn first_answer<T, F, Fut>(
        &self,
        host: &str,
        label: &str,
        candidates: Vec<Name>,
        query: F,
    ) -> Result<Vec<T>, DnsError>
    where
        F: Fn(Name) -> Fut,
        Fut: Future<Output = Result<Vec<T>, NetError>>,
    {
        let started = Instant::now();
        let mut failure: Option<DnsError> = None;
        // Whether a name server answered any candidate; the last candidate with no answer.
        let mut answered = false;
        let mut unanswered: Option<DnsError> = None;
        // Whether any candidate's query went to the name servers (for the metrics).
        let mut asked = false;
        for candidate in candidates {
            // A query the cache answers is ready at its first poll; one that waited
            // went to the name servers.
            let mut waited = false;
            let outcome = {
                let mut asked = std::pin::pin!(query(candidate.clone()));
                let watched = std::future::poll_fn(|cx| {
                    let poll = asked.as_mut().poll(cx);
                    waited |= poll.is_pending();
                    poll
                });
                tokio::time::timeout(self.shared.deadline, watched).await
            };
            asked |= waited;
            let error = match outcome {
                Ok(Ok(answers)) if !answers.is_empty() => {
                    self.note(answered || waited, unanswered.as_ref());
                    let source = if asked {
                        crate::metrics::Source::Network
                    } else {
                        crate::metrics::Source::Cache
                    };
                    crate::metrics::answered(source, started.elapsed());
                    return Ok(answers);
                }
                Ok(Ok(_)) => DnsError::NoRecords {
                    host: host.to_owned(),
                    record_type: label.to_owned(),
                },
                Ok(Err(error)) => map_error(host, label, &error, started),
                Err(_) => DnsError::Timeout {
                    host: host.to_owned(),
                    after: started.elapsed(),
                },
            };
            if error.is_not_found() {
                answered |= waited;
            } else {
                unanswered = Some(error.clone());
            }
            tracing::trace!(target: "nucleon::dns", host, %candidate, %error, "candidate failed");
            failure = Some(match failure {
                Some(previous) if telling(&previous) >= telling(&error) => previous,
                _ => error,
            });
        }
        self.note(answered, unanswered.as_ref());
        let error = failure.unwrap_or_else(|| DnsError::NoRecords {
            host: host.to_owned(),
            record_type: label.to_owned(),
        });
        crate::metrics::failed(&error, asked, started.elapsed());
        Err(error)
    }

    /// Notes a lookup in the health record: answered by a name server, else failed with
    /// `unanswered`'s error, else (the cache answered) nothing.
    fn note(&self, answered: bool, unanswered: Option<&DnsError>) {
        if answered {
            self.shared.record.answered();
        } else if let Some(error) = unanswered {
            self.shared.record.failed(error);
        }
    }

    /// The resolver's health, for [`crate::DnsAdapter`]'s health check.
    ///
    /// With `dns.health_probe` set, from a lookup of that name, asked of the name servers
    /// on each check (never answered from the cache or the hosts file) within 1.5 s:
    /// healthy when it has addresses; unhealthy when it does not exist or has no
    /// addresses (the name servers answer, but they are not the ones that know it), or
    /// when no answer came.
    ///
    /// Without it, from the record of the latest lookups that reached a name server
    /// (see [`Resolver::recent_health`]). When that record says unhealthy, the check
    /// also asks the name servers again for the last name that got no answer, so a
    /// resolver that sees no traffic recovers once they answer again.
    ///
    /// ```no_run
    /// # async fn check() -> Result<(), nucleon_dns::DnsError> {
    /// use nucleon_dns::{DnsConfig, Resolver};
    /// use nucleon_runtime::Health;
    ///
    /// let resolver = Resolver::from_config(&DnsConfig {
    ///     health_probe: Some("db.internal.".to_owned()),
    ///     ..DnsConfig::default()
    /// })
    /// .await?;
    /// if let Health::Unhealthy(why) = resolver.health().await {
    ///     tracing::warn!("{why}"); // names the probe and the name servers
    /// }
    /// # Ok(()) }
    /// ```
    pub async fn health(&self) -> Health {
        let servers = self.servers();
        if let Some(probe) = &self.shared.probe {
            let answer = tokio::time::timeout(PROBE_TIMEOUT, self.check_lookup(probe))
                .await
                .ok();
            return health::probe_health(probe, answer, &servers);
        }
        let recent = self.shared.record.health(&servers);
        if matches!(recent, Health::Unhealthy(_))
            && let Some(host) = self
                .shared
                .record
                .last_failure()
                .and_then(|error| error.host().map(str::to_owned))
        {
            // Noted in the record by `first_answer`, if it ends in time.
            let _ = tokio::time::timeout(PROBE_TIMEOUT, self.check_lookup(&host)).await;
            return self.shared.record.health(&servers);
        }
        recent
    }

    /// What the record of the latest lookups says, without a query: healthy when they
    /// were answered, or before any lookup reached a name server; degraded when some of
    /// the latest 8 got no answer (in the last 5 minutes), and unhealthy when the last 3
    /// in a row got none. The messages name the name servers and where they were
    /// configured.
    ///
    /// Only lookups that reached the network count: answers from the cache, the hosts
    /// file, IP literals and `localhost` say nothing about the name servers. An answer
    /// (addresses, or NXDOMAIN, or no records of the type) is a name server answering;
    /// a timeout, a refusal, a SERVFAIL or a network error is a lookup with no answer.
    /// The record is shared by clones of the resolver, and costs a lookup that went
    /// well two relaxed atomic loads.
    ///
    /// The lookups are your own: a name whose own servers are broken upstream (the name
    /// servers answer SERVFAIL, or time out, for it alone) counts too. A probe
    /// (`dns.health_probe`, see [`Resolver::health`]) checks a name you choose.
    pub fn recent_health(&self) -> Health {
        self.shared.record.health(&self.servers())
    }

    fn servers(&self) -> Servers<'_> {
        Servers {
            addrs: &self.shared.nameservers,
            from: &self.shared.nameservers_from,
        }
    }

    /// Looks `host` up for a health check: asks the name servers, whatever the cache,
    /// the hosts file and the configured families' order.
    async fn check_lookup(&self, host: &str) -> Result<(), DnsError> {
        let name = parse_name(host)?;
        let candidates = self.shared.search.candidates(&name);
        let check = &self.shared.check;
        check.clear_cache();
        let preference = self.shared.preference;
        self.first_answer(host, "A/AAAA", candidates, |name| {
            ip_lookup(check, name, preference)
        })
        .await
        .map(drop)
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

    /// The SRV targets of `name` (e.g. `_amqp._tcp.example.org`) in the order to try
    /// them, as RFC 2782 says: by priority (lowest first), and within a priority in a
    /// random order weighted by `weight` (a target of weight 60 comes first about twice
    /// as often as one of 30), so that clients spread their load as the records ask.
    ///
    /// # Errors
    /// As [`Resolver::lookup_ip`]; [`DnsError::NoRecords`] when the only target is `.`
    /// (RFC 2782: the service is decidedly not available at this domain).
    pub async fn lookup_srv(&self, name: &str) -> Result<Vec<SrvTarget>, DnsError> {
        let answers = self.lookup_records(name, RecordType::SRV, "SRV").await?;
        let targets: Vec<SrvTarget> = answers
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
            .filter(|target| !target.target.is_empty())
            .collect();
        non_empty(srv_order(targets, uniform), name, "SRV")
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
        let candidates = self.shared.search.candidates(&name);
        self.first_answer(host, label, candidates, |name| async move {
            self.inner.lookup(name, record_type).await.map(|lookup| {
                lookup
                    .answers()
                    .iter()
                    .filter(|record| record.record_type() == record_type)
                    .map(|record| record.data.clone())
                    .collect::<Vec<RData>>()
            })
        })
        .await
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
    ///
    /// Its lookups honour the hosts file and the search list hickory's way (per record
    /// type, so a name the file lists for one family is still queried for the other),
    /// without this type's per-candidate deadline.
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

/// `name`'s addresses from `resolver`, of the families `preference` asks for, in its
/// order.
async fn ip_lookup(
    resolver: &TokioResolver,
    name: Name,
    preference: IpPreference,
) -> Result<Vec<IpAddr>, NetError> {
    match preference {
        IpPreference::Ipv4First => Resolver::both_families(resolver, name, false).await,
        IpPreference::Ipv6First => Resolver::both_families(resolver, name, true).await,
        IpPreference::Ipv4Only | IpPreference::Ipv6Only => resolver
            .lookup_ip(name)
            .await
            .map(|lookup| lookup.iter().collect::<Vec<IpAddr>>()),
    }
}

/// How long a dual-stack lookup waits for the second family once the first has
/// addresses (RFC 8305 suggests 50 ms).
const RESOLUTION_DELAY: Duration = Duration::from_millis(50);

/// The addresses of an A or AAAA lookup's answers.
fn addresses(lookup: &hickory_resolver::lookup::Lookup) -> Vec<IpAddr> {
    lookup
        .answers()
        .iter()
        .filter_map(|record| record.data.ip_addr())
        .collect()
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

/// How long one candidate name may take: `timeout × attempts` (at least one attempt).
fn candidate_deadline(timeout: Duration, attempts: usize) -> Duration {
    timeout * u32::try_from(attempts.max(1)).unwrap_or(u32::MAX)
}

/// `name`'s addresses in `hosts`, of the families `preference` asks for, in its order;
/// `None` if it lists none of those.
fn hosts_addresses(hosts: &Hosts, name: &Name, preference: IpPreference) -> Option<Vec<IpAddr>> {
    let family = |record_type: RecordType| -> Vec<IpAddr> {
        hosts
            .lookup_static_host(&Query::query(name.clone(), record_type))
            .map(|lookup| {
                lookup
                    .answers()
                    .iter()
                    .filter_map(|record| record.data.ip_addr())
                    .collect()
            })
            .unwrap_or_default()
    };
    let addrs: Vec<IpAddr> = match preference {
        IpPreference::Ipv4Only => family(RecordType::A),
        IpPreference::Ipv6Only => family(RecordType::AAAA),
        IpPreference::Ipv4First => [family(RecordType::A), family(RecordType::AAAA)].concat(),
        IpPreference::Ipv6First => [family(RecordType::AAAA), family(RecordType::A)].concat(),
    };
    (!addrs.is_empty()).then_some(addrs)
}

/// How much an error says when every candidate name failed: a timeout or failure (the
/// name may exist where nobody answered) over "no records" over NXDOMAIN.
fn telling(error: &DnsError) -> u8 {
    match error {
        DnsError::NoSuchHost { .. } => 0,
        DnsError::NoRecords { .. } => 1,
        _ => 2,
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

    fn names(texts: &[&str]) -> Vec<Name> {
        texts.iter().map(|t| Name::from_utf8(t).unwrap()).collect()
    }

    #[test]
    fn srv_targets_go_by_priority_then_by_weighted_draw() {
        let target = |priority, weight, name: &str| SrvTarget {
            priority,
            weight,
            port: 5672,
            target: name.to_owned(),
        };
        let targets = vec![
            target(20, 5, "backup"),
            target(10, 30, "b"),
            target(10, 0, "zero"),
            target(10, 60, "a"),
        ];
        let names = |draws: &[u32]| {
            let mut draws = draws.iter().copied();
            srv_order(targets.clone(), |_| draws.next().unwrap())
                .into_iter()
                .map(|t| t.target)
                .collect::<Vec<_>>()
        };
        // Priority 10 first (draw order: zero, b, a; running sums 0, 30, 90).
        assert_eq!(names(&[0, 0, 0, 0]), ["zero", "b", "a", "backup"]);
        assert_eq!(names(&[31, 0, 0, 0]), ["a", "zero", "b", "backup"]);
        assert_eq!(names(&[90, 30, 0, 5]), ["a", "b", "zero", "backup"]);
        // Every draw in range, and each order's first pick a target of that priority.
        for _ in 0..200 {
            assert!(uniform(3) <= 3);
            let first = srv_order(targets.clone(), uniform);
            assert_eq!(first.len(), 4);
            assert_eq!(first[3].target, "backup");
        }
    }

    #[test]
    fn candidates_follow_ndots_and_the_search_list() {
        let list = SearchList {
            ndots: 1,
            domain: None,
            search: names(&["a.example", "b.example"]),
        };
        let candidates = |host: &str| list.candidates(&Name::from_utf8(host).unwrap());
        // Fewer labels than ndots + 1: the search domains first, the name as given last.
        assert_eq!(
            candidates("api"),
            names(&["api.a.example.", "api.b.example.", "api."])
        );
        // More: the name as given first.
        assert_eq!(
            candidates("api.corp"),
            names(&["api.corp.", "api.corp.a.example.", "api.corp.b.example."])
        );
        // Fully qualified: only itself.
        assert_eq!(candidates("api.corp."), names(&["api.corp."]));
        // `domain` comes before the search list; duplicates are tried once.
        let with_domain = SearchList {
            domain: Some(Name::from_utf8("b.example").unwrap()),
            ..list.clone()
        };
        assert_eq!(
            with_domain.candidates(&Name::from_utf8("api").unwrap()),
            names(&["api.b.example.", "api.a.example.", "api."])
        );
        // Every candidate is fully qualified, so hickory applies no search list again.
        assert!(candidates("api").iter().all(Name::is_fqdn));
    }

    #[tokio::test]
    async fn the_lookup_deadline_scales_with_the_candidate_names() {
        let config = DnsConfig {
            nameservers: vec!["127.0.0.1:53".to_owned()],
            search: vec!["a.example".to_owned(), "b.example".to_owned()],
            timeout: Some(Duration::from_millis(300)),
            attempts: Some(2),
            hosts_file: None,
            ..DnsConfig::default()
        };
        let resolver = Resolver::from_config(&config).await.unwrap();
        let per_candidate = Duration::from_millis(600);
        assert_eq!(resolver.lookup_deadline(), per_candidate);
        assert_eq!(resolver.lookup_deadline_for("api"), per_candidate * 3);
        assert_eq!(resolver.lookup_deadline_for("api.corp"), per_candidate * 3);
        assert_eq!(resolver.lookup_deadline_for("api.corp."), per_candidate);
        assert_eq!(resolver.lookup_deadline_for("10.0.0.1"), Duration::ZERO);
        assert_eq!(resolver.lookup_deadline_for("localhost"), Duration::ZERO);
        assert_eq!(candidate_deadline(per_candidate, 0), per_candidate);
    }

    #[test]
    fn hosts_answers_follow_the_preference_and_skip_absent_families() {
        let mut hosts = Hosts::default();
        hosts
            .read_hosts_conf(&b"10.0.0.1 both\n::5 both\n10.0.0.2 v4only\n"[..])
            .unwrap();
        let both = Name::from_utf8("both.").unwrap();
        let v4only = Name::from_utf8("v4only.").unwrap();
        let ip = |t: &str| t.parse::<IpAddr>().unwrap();
        assert_eq!(
            hosts_addresses(&hosts, &both, IpPreference::Ipv6First),
            Some(vec![ip("::5"), ip("10.0.0.1")])
        );
        assert_eq!(
            hosts_addresses(&hosts, &both, IpPreference::Ipv4First),
            Some(vec![ip("10.0.0.1"), ip("::5")])
        );
        assert_eq!(
            hosts_addresses(&hosts, &v4only, IpPreference::Ipv6First),
            Some(vec![ip("10.0.0.2")])
        );
        // Only IPv6 asked for, only IPv4 listed: not an answer (DNS is asked, as glibc).
        assert_eq!(
            hosts_addresses(&hosts, &v4only, IpPreference::Ipv6Only),
            None
        );
        assert_eq!(
            hosts_addresses(
                &hosts,
                &Name::from_utf8("other.").unwrap(),
                IpPreference::Ipv4First
            ),
            None
        );
    }

    #[test]
    fn a_timeout_tells_more_than_nxdomain() {
        let nx = DnsError::NoSuchHost { host: "h".into() };
        let none = DnsError::NoRecords {
            host: "h".into(),
            record_type: "A/AAAA".into(),
        };
        let timeout = DnsError::Timeout {
            host: "h".into(),
            after: Duration::ZERO,
        };
        assert!(telling(&timeout) > telling(&none));
        assert!(telling(&none) > telling(&nx));
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
