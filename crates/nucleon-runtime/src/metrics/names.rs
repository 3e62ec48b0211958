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
