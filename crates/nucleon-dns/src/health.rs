//! The resolver's health: a cheap record of how its recent lookups went, and the
//! reports a health check makes of it.
//!
//! Only lookups that reached the network count: an answer from the cache, the hosts
//! file or an IP literal says nothing about the name servers. An answer (addresses,
//! NXDOMAIN, no records) is the name servers answering; a timeout, a refusal, a
//! SERVFAIL or a network error is a lookup that got no answer.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use nucleon_runtime::Health;

use crate::error::DnsError;

/// This many lookups in a row with no answer make the resolver unhealthy.
pub(crate) const UNHEALTHY_AFTER: u32 = 3;

/// How many of the latest lookups a failure among makes the resolver degraded.
pub(crate) const RECENT: u32 = 8;

/// A failure older than this no longer degrades (a quiet worker looks up little).
pub(crate) const DEGRADED_FOR: Duration = Duration::from_secs(300);

/// How long a health check's own lookup (the probe, or the re-check of a name that got
/// no answer) may take: under the runtime's two seconds for a health check.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_millis(1500);

const WINDOW_MASK: u32 = (1 << RECENT) - 1;

/// The outcomes of the latest lookups that reached the network. Cheap on the hot path:
/// an answer when nothing failed lately is two relaxed loads.
#[derive(Debug)]
pub(crate) struct Record {
    epoch: Instant,
    /// How many outcomes are recorded, up to [`RECENT`].
    recorded: AtomicU32,
    /// The latest [`RECENT`] outcomes, the newest in bit 0: 1 is a lookup with no answer.
    window: AtomicU32,
    /// Lookups with no answer since the last one answered.
    consecutive: AtomicU32,
    /// When the last failure was, in milliseconds since `epoch`.
    last_failure_at: AtomicU64,
    /// The last failure, for the report (locked only on a failure, and by a check).
    last_failure: Mutex<Option<DnsError>>,
}

impl Default for Record {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            recorded: AtomicU32::new(0),
            window: AtomicU32::new(0),
            consecutive: AtomicU32::new(0),
            last_failure_at: AtomicU64::new(0),
            last_failure: Mutex::new(None),
        }
    }
}

impl Record {
    /// A lookup that a name server answered.
    pub(crate) fn answered(&self) {
        if self.recorded.load(Relaxed) < RECENT {
            self.recorded.fetch_add(1, Relaxed);
        }
        let window = self.window.load(Relaxed);
        if window != 0 {
            self.window.store((window << 1) & WINDOW_MASK, Relaxed);
        }
        if self.consecutive.load(Relaxed) != 0 {
            self.consecutive.store(0, Relaxed);
        }
    }

    /// A lookup that no name server answered.
    pub(crate) fn failed(&self, error: &DnsError) {
        if self.recorded.load(Relaxed) < RECENT {
            self.recorded.fetch_add(1, Relaxed);
        }
        let _ = self
            .window
            .fetch_update(Relaxed, Relaxed, |w| Some(((w << 1) | 1) & WINDOW_MASK));
        self.consecutive.fetch_add(1, Relaxed);
        let at = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_failure_at.store(at, Relaxed);
        *self
            .last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(error.clone());
    }

    /// The last failure, if any lookup failed since the resolver was built.
    pub(crate) fn last_failure(&self) -> Option<DnsError> {
        self.last_failure
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// What the record says, for `servers`.
    pub(crate) fn health(&self, servers: &Servers<'_>) -> Health {
        let consecutive = self.consecutive.load(Relaxed);
        let failures = self.window.load(Relaxed).count_ones();
        if failures == 0 {
            return Health::Healthy;
        }
        let last = self
            .last_failure()
            .map_or_else(|| "unknown".to_owned(), |error| brief(&error));
        if consecutive >= UNHEALTHY_AFTER {
            return Health::Unhealthy(format!(
                "DNS: no answer to the last {consecutive} lookups (the last: {last}) from the \
                 name servers {servers}: check that they are running and reachable from this host, \
                 {}",
                servers.fix()
            ));
        }
        let at = Duration::from_millis(self.last_failure_at.load(Relaxed));
        let ago = self.epoch.elapsed().saturating_sub(at);
        if ago > DEGRADED_FOR {
            return Health::Healthy;
        }
        let recorded = self.recorded.load(Relaxed).max(failures);
        Health::Degraded(format!(
            "DNS: {failures} of the last {recorded} lookups got no answer, the last {}s ago \
             ({last}), from the name servers {servers}",
            ago.as_secs()
        ))
    }
}

/// The name servers asked, and where they were configured, for the reports.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Servers<'a> {
    pub(crate) addrs: &'a [SocketAddr],
    /// `dns.nameservers`, or the resolv.conf file they were read from.
    pub(crate) from: &'a str,
}

impl Servers<'_> {
    /// What to change when they are the wrong ones.
    pub(crate) fn fix(&self) -> String {
        if self.from == "dns.nameservers" {
            "or correct dns.nameservers".to_owned()
        } else {
            format!("or correct {}, or set dns.nameservers", self.from)
        }
    }
}

impl fmt::Display for Servers<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, addr) in self.addrs.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{addr}")?;
        }
        write!(f, " (from {})", self.from)
    }
}

/// A failed lookup in a few words, for a report that says what to do itself.
fn brief(error: &DnsError) -> String {
    match error {
        DnsError::Timeout { host, after } => format!(
            "`{host}` (timed out after {:?})",
            Duration::from_millis(u64::try_from(after.as_millis()).unwrap_or(u64::MAX))
        ),
        DnsError::Failed { host, reason } => format!("`{host}` ({reason})"),
        other => other.to_string(),
    }
}

/// What a health check reports from the probe's answer.
pub(crate) fn probe_health(
    probe: &str,
    answer: Option<Result<(), DnsError>>,
    servers: &Servers<'_>,
) -> Health {
    match answer {
        Some(Ok(())) => Health::Healthy,
        Some(Err(error)) if error.is_not_found() => {
            let what = match error {
                DnsError::NoSuchHost { .. } => "does not exist there (NXDOMAIN)",
                _ => "has no addresses there",
            };
            Health::Unhealthy(format!(
                "DNS health probe: the name servers {servers} answer, but `{probe}` {what}: \
                 check dns.health_probe, or that these are the name servers that serve it"
            ))
        }
        Some(Err(error)) => Health::Unhealthy(format!(
            "DNS health probe: no answer for {} from the name servers {servers}: check that \
             they are running and reachable from this host, {}",
            brief(&error),
            servers.fix()
        )),
        None => Health::Unhealthy(format!(
            "DNS health probe: no answer for `{probe}` within {PROBE_TIMEOUT:?} from the name \
             servers {servers}: check that they are running and reachable from this host, {}",
            servers.fix()
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout() -> DnsError {
        DnsError::Timeout {
            host: "db.internal.".to_owned(),
            after: Duration::from_secs(2),
        }
    }

    fn servers() -> Vec<SocketAddr> {
        vec![
            "10.0.0.2:53".parse().unwrap(),
            "10.0.0.3:5353".parse().unwrap(),
        ]
    }

    #[test]
    fn healthy_until_lookups_fail_degraded_then_unhealthy_then_recovering() {
        let addrs = servers();
        let servers = Servers {
            addrs: &addrs,
            from: "/etc/resolv.conf",
        };
        let record = Record::default();
        assert_eq!(record.health(&servers), Health::Healthy, "no lookup yet");
        record.answered();
        assert_eq!(record.health(&servers), Health::Healthy);

        record.failed(&timeout());
        let Health::Degraded(message) = record.health(&servers) else {
            panic!(
                "one failure among answers degrades: {:?}",
                record.health(&servers)
            );
        };
        assert!(message.contains("1 of the last 2 lookups"), "{message}");
        assert!(message.contains("10.0.0.2:53, 10.0.0.3:5353"), "{message}");

        record.failed(&timeout());
        assert!(matches!(record.health(&servers), Health::Degraded(_)));
        record.failed(&timeout());
        let Health::Unhealthy(message) = record.health(&servers) else {
            panic!("three in a row: {:?}", record.health(&servers));
        };
        assert!(message.contains("last 3 lookups"), "{message}");
        assert!(message.contains("db.internal."), "{message}");
        assert!(message.contains("10.0.0.2:53, 10.0.0.3:5353"), "{message}");
        assert!(message.contains("/etc/resolv.conf"), "{message}");
        assert!(message.contains("dns.nameservers"), "{message}");

        // One answer: no longer unhealthy, but the failures are recent.
        record.answered();
        assert!(matches!(record.health(&servers), Health::Degraded(_)));
        // The failures leave the window after RECENT answers.
        for _ in 1..RECENT {
            record.answered();
        }
        assert_eq!(record.health(&servers), Health::Healthy);
    }

    #[test]
    fn probe_reports_name_the_probe_and_the_servers() {
        let addrs = servers();
        let servers = Servers {
            addrs: &addrs,
            from: "dns.nameservers",
        };
        assert_eq!(
            probe_health("db.internal.", Some(Ok(())), &servers),
            Health::Healthy
        );
        let missing = DnsError::NoSuchHost {
            host: "db.internal.".to_owned(),
        };
        let Health::Unhealthy(message) = probe_health("db.internal.", Some(Err(missing)), &servers)
        else {
            panic!("not found is unhealthy")
        };
        assert!(message.contains("dns.health_probe"), "{message}");
        assert!(message.contains("10.0.0.3:5353"), "{message}");
        let Health::Unhealthy(message) = probe_health("db.internal.", None, &servers) else {
            panic!("no answer is unhealthy")
        };
        assert!(message.contains("db.internal."), "{message}");
        assert!(message.contains("correct dns.nameservers"), "{message}");
    }
}
