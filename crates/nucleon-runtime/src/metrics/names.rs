//! The names of the framework's own metrics, one place for all crates (the README's
//! table lists them with their labels).

/// Counter: HTTP requests answered, by `route` (the pattern, never the raw path),
/// `method` and `status` (`2xx`…).
pub const HTTP_REQUESTS: &str = "nucleon_http_requests_total";
/// Histogram (seconds): from a request's head to its response's head, by `route` and
/// `method`.
pub const HTTP_REQUEST_DURATION: &str = "nucleon_http_request_duration_seconds";
/// Gauge: requests being served.
pub const HTTP_IN_FLIGHT: &str = "nucleon_http_requests_in_flight";
/// Counter: request body bytes declared by requests (`Content-Length`).
pub const HTTP_REQUEST_BYTES: &str = "nucleon_http_request_body_bytes_total";
/// Counter: response body bytes of responses whose length is known when sent.
pub const HTTP_RESPONSE_BYTES: &str = "nucleon_http_response_body_bytes_total";
/// Counter: requests refused by the pipeline, by `reason`: `body_too_large` (413),
/// `headers_too_large` (431), `timeout` (408), `draining` (503 while draining).
pub const HTTP_REJECTED: &str = "nucleon_http_rejected_total";

/// Counter: live reports of polls still blocking, by `worker` and `task`.
pub const WATCHDOG_BLOCKING: &str = "nucleon_watchdog_blocking_reports_total";
/// Counter: slow polls ended, by `worker` and `task`.
pub const WATCHDOG_SLOW_POLLS: &str = "nucleon_watchdog_slow_polls_total";
/// Histogram (seconds): slow polls' durations.
pub const WATCHDOG_SLOW_POLL_DURATION: &str = "nucleon_watchdog_slow_poll_seconds";
/// Counter: heartbeat stalls (untracked code blocking a loop), by `worker`.
pub const WATCHDOG_STALLS: &str = "nucleon_watchdog_stalls_total";
/// Counter: workers restarted by the supervisor, by `worker`.
pub const WORKER_RESTARTS: &str = "nucleon_worker_restarts_total";
/// Gauge: 1 while the process drains, else 0.
pub const DRAINING: &str = "nucleon_draining";
/// Gauge: jobs waiting for a thread, by offload `pool` (`blocking`, `cpu`).
pub const OFFLOAD_QUEUED: &str = "nucleon_offload_queued";
/// Gauge: jobs running, by `pool`.
pub const OFFLOAD_RUNNING: &str = "nucleon_offload_running";
/// Gauge: live threads, by `pool`.
pub const OFFLOAD_THREADS: &str = "nucleon_offload_threads";
/// Counter: jobs finished, by `pool`.
pub const OFFLOAD_COMPLETED: &str = "nucleon_offload_completed_total";
/// Counter: jobs refused because the pool was saturated, by `pool`.
pub const OFFLOAD_REFUSED: &str = "nucleon_offload_refused_total";
/// Counter: jobs dropped because their caller stopped waiting first, by `pool`.
pub const OFFLOAD_ABANDONED: &str = "nucleon_offload_abandoned_total";

/// Counter: name lookups, by `source`: `cache` (answered from the resolver's cache),
/// `network` (a name server was asked), `hosts` (the hosts file). IP literals and
/// `localhost` are not lookups.
pub const DNS_LOOKUPS: &str = "nucleon_dns_lookups_total";
/// Counter: failed lookups, by `kind`: `no_such_host`, `no_records`, `timeout`,
/// `failed`, `invalid_name`.
pub const DNS_FAILURES: &str = "nucleon_dns_failures_total";
/// Histogram (seconds): lookups that asked a name server (answered or not).
pub const DNS_LOOKUP_DURATION: &str = "nucleon_dns_lookup_duration_seconds";

/// Histogram (seconds): queries, from the call to the result (a connection's
/// acquisition included), by `db` (`default` or the database's name) and `query` (its
/// declared name, else its first words).
pub const DB_QUERY_DURATION: &str = "nucleon_db_query_duration_seconds";
/// Histogram (seconds): waiting for a connection of the pool, by `db`.
pub const DB_ACQUIRE_DURATION: &str = "nucleon_db_acquire_duration_seconds";
/// Gauge: queries waiting for a connection of the pool, by `db`.
pub const DB_WAITING: &str = "nucleon_db_pool_waiting";
/// Gauge: connections of the pools, by `db`, `worker` (`process` for a pool of the
/// process) and `state` (`idle`, `busy`).
pub const DB_CONNECTIONS: &str = "nucleon_db_pool_connections";
/// Counter: failed queries, by `db` and `kind` (`not_found`, `conflict`, `timeout`,
/// `unavailable`, `retryable`, …).
pub const DB_ERRORS: &str = "nucleon_db_errors_total";

/// Counters of the broker link, process-wide, one metric each:
/// `nucleon_amqp_{published, confirmed, returned, nacked, republished, reconnects,
/// consumed, acked, requeued, retried, dead_lettered}_total` (see the fields of
/// `nucleon_amqp::BrokerStats`); this is their prefix.
pub const AMQP_PREFIX: &str = "nucleon_amqp_";
/// Gauge: messages published and not confirmed yet (the window in use).
pub const AMQP_UNCONFIRMED: &str = "nucleon_amqp_unconfirmed";
/// Gauge: 1 while the connection is up, else 0.
pub const AMQP_CONNECTED: &str = "nucleon_amqp_connected";
/// Counter: deliveries handled by consumers, by `queue` and `outcome`: `done`,
/// `failed`, `rejected` (undecodable), `panicked`.
pub const AMQP_HANDLED: &str = "nucleon_amqp_handled_total";
/// Histogram (seconds): consumers' handlers, by `queue`.
pub const AMQP_HANDLER_DURATION: &str = "nucleon_amqp_handler_duration_seconds";
