//! The resolver's metrics (names in [`nucleon_runtime::metrics`]): per thread, made on
//! the first lookup of a runtime thread that records metrics, flushed by the runtime.

use std::cell::OnceCell;
use std::time::Duration;

use nucleon_runtime::metrics::{
    DNS_FAILURES, DNS_LOOKUP_DURATION, DNS_LOOKUPS, LocalCounter, LocalHistogram,
};

use crate::DnsError;

/// Where a lookup's answer came from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source {
    Cache = 0,
    Network = 1,
    Hosts = 2,
}

const SOURCES: [&str; 3] = ["cache", "network", "hosts"];
const KINDS: [&str; 5] = [
    "no_such_host",
    "no_records",
    "timeout",
    "failed",
    "invalid_name",
];

struct DnsMetrics {
    lookups: [LocalCounter; 3],
    failures: [LocalCounter; 5],
    duration: LocalHistogram,
}

thread_local! {
    static METRICS: OnceCell<Option<DnsMetrics>> = const { OnceCell::new() };
}

fn with(record: impl FnOnce(&DnsMetrics)) {
    METRICS.with(|cell| {
        let metrics = cell.get_or_init(|| {
            nucleon_runtime::metrics::enabled().then(|| DnsMetrics {
                lookups: SOURCES.map(|source| {
                    LocalCounter::new(metrics::counter!(DNS_LOOKUPS, "source" => source))
                }),
                failures: KINDS
                    .map(|kind| LocalCounter::new(metrics::counter!(DNS_FAILURES, "kind" => kind))),
                duration: LocalHistogram::new(metrics::histogram!(DNS_LOOKUP_DURATION)),
            })
        });
        if let Some(metrics) = metrics {
            record(metrics);
        }
    });
}

/// A lookup answered from `source`; `took`: how long it took, for one that asked a
/// name server.
pub(crate) fn answered(source: Source, took: Duration) {
    with(|m| {
        m.lookups[source as usize].increment(1);
        if matches!(source, Source::Network) {
            m.duration.record(took.as_secs_f64());
        }
    });
}

/// A lookup that failed with `error`; `asked`: whether a name server was asked.
pub(crate) fn failed(error: &DnsError, asked: bool, took: Duration) {
    let kind = match error {
        DnsError::NoSuchHost { .. } => 0,
        DnsError::NoRecords { .. } => 1,
        DnsError::Timeout { .. } => 2,
        DnsError::InvalidName { .. } => 4,
        _ => 3,
    };
    with(|m| {
        m.failures[kind].increment(1);
        if asked {
            m.lookups[Source::Network as usize].increment(1);
            m.duration.record(took.as_secs_f64());
        } else if kind != 4 {
            m.lookups[Source::Cache as usize].increment(1);
        }
    });
}
