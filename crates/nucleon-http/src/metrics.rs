//! The HTTP pipeline's metrics (names in [`nucleon_runtime::metrics`]): recorded per
//! worker into local cells, keyed by the route's interned label (a pointer, not the
//! path: 10,000 paths on one pattern are one series), flushed to the `metrics`
//! recorder by the runtime. No lock and no shared cache line per request.

use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Duration;

use http::{Method, StatusCode};
use nucleon_runtime::metrics::{
    HTTP_IN_FLIGHT, HTTP_REJECTED, HTTP_REQUEST_BYTES, HTTP_REQUEST_DURATION, HTTP_REQUESTS,
    HTTP_RESPONSE_BYTES, LocalCounter, LocalGauge, LocalHistogram,
};

/// The `route` label of a request no route took (404, 405 without a route, a
/// request refused before routing).
const NO_ROUTE: &str = "none";

/// Why the pipeline refused a request: the `reason` label of `nucleon_http_rejected_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    BodyTooLarge,
    HeadersTooLarge,
    Timeout,
    Draining,
    BadRequest,
    UriTooLong,
}

impl Rejection {
    const ALL: [Rejection; 6] = [
        Rejection::BodyTooLarge,
        Rejection::HeadersTooLarge,
        Rejection::Timeout,
        Rejection::Draining,
        Rejection::BadRequest,
        Rejection::UriTooLong,
    ];

    fn label(self) -> &'static str {
        match self {
            Rejection::BodyTooLarge => "body_too_large",
            Rejection::HeadersTooLarge => "headers_too_large",
            Rejection::Timeout => "timeout",
            Rejection::Draining => "draining",
            Rejection::BadRequest => "bad_request",
            Rejection::UriTooLong => "uri_too_long",
        }
    }

    /// The refusal a response's status says, if it is one (`draining`: whether the
    /// service drains, for a 503).
    pub(crate) fn of(status: StatusCode, draining: bool) -> Option<Self> {
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => Some(Rejection::BodyTooLarge),
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Some(Rejection::HeadersTooLarge),
            StatusCode::REQUEST_TIMEOUT => Some(Rejection::Timeout),
            StatusCode::SERVICE_UNAVAILABLE if draining => Some(Rejection::Draining),
            StatusCode::BAD_REQUEST => Some(Rejection::BadRequest),
            StatusCode::URI_TOO_LONG => Some(Rejection::UriTooLong),
            _ => None,
        }
    }
}

/// A series' key: the route's interned label (its address; 0 for none), the method's
/// index, the status class (0 for the duration histogram, which has none).
type Key = (usize, u8, u8);

/// The series maps' hasher: foldhash with its fixed seed, the keys being the
/// application's routes, not the client's input (SipHash, the default, cost about 25 ns
/// of the two lookups a request makes).
type SeriesMap<V> = HashMap<Key, V, foldhash::fast::FixedState>;

/// One worker's HTTP metrics.
pub(crate) struct HttpMetrics {
    requests: RefCell<SeriesMap<LocalCounter>>,
    durations: RefCell<SeriesMap<LocalHistogram>>,
    in_flight: LocalGauge,
    request_bytes: LocalCounter,
    response_bytes: LocalCounter,
    rejected: [LocalCounter; Rejection::ALL.len()],
}

impl HttpMetrics {
    /// The worker's metrics, when the runtime records them on this thread.
    pub(crate) fn for_this_worker() -> Option<Self> {
        nucleon_runtime::metrics::enabled().then(|| HttpMetrics {
            requests: RefCell::default(),
            durations: RefCell::default(),
            in_flight: LocalGauge::new(metrics::gauge!(HTTP_IN_FLIGHT)),
            request_bytes: LocalCounter::new(metrics::counter!(HTTP_REQUEST_BYTES)),
            response_bytes: LocalCounter::new(metrics::counter!(HTTP_RESPONSE_BYTES)),
            rejected: Rejection::ALL.map(|reason| {
                LocalCounter::new(metrics::counter!(HTTP_REJECTED, "reason" => reason.label()))
            }),
        })
    }

    /// A request has started: in flight, and its declared body counted.
    #[inline]
    pub(crate) fn started(&self, declared_body: Option<u64>) {
        self.in_flight.add(1.0);
        if let Some(bytes) = declared_body {
            self.request_bytes.increment(bytes);
        }
    }

    /// A request has its answer (or was dropped: status 499): counted by route,
    /// method and status class, timed, out of flight.
    #[inline]
    pub(crate) fn finished(
        &self,
        elapsed: Duration,
        route: Option<&'static str>,
        method: &Method,
        status: u16,
        body_bytes: Option<u64>,
    ) {
        let elapsed = elapsed.as_secs_f64();
        self.in_flight.add(-1.0);
        if let Some(bytes) = body_bytes {
            self.response_bytes.increment(bytes);
        }
        let route_key = route.map_or(0, |label| label.as_ptr() as usize);
        let method_index = method_index(method);
        let class = (status / 100).clamp(1, 5) as u8;
        let mut requests = self.requests.borrow_mut();
        match requests.get(&(route_key, method_index, class)) {
            Some(counter) => counter.increment(1),
            None => {
                let counter = LocalCounter::new(metrics::counter!(
                    HTTP_REQUESTS,
                    "route" => route_pattern(route),
                    "method" => METHODS[method_index as usize],
                    "status" => STATUS_CLASSES[class as usize - 1],
                ));
                counter.increment(1);
                requests.insert((route_key, method_index, class), counter);
            }
        }
        drop(requests);
        let mut durations = self.durations.borrow_mut();
        match durations.get(&(route_key, method_index, 0)) {
            Some(histogram) => histogram.record(elapsed),
            None => {
                let histogram = LocalHistogram::new(metrics::histogram!(
                    HTTP_REQUEST_DURATION,
                    "route" => route_pattern(route),
                    "method" => METHODS[method_index as usize],
                ));
                histogram.record(elapsed);
                durations.insert((route_key, method_index, 0), histogram);
            }
        }
    }

    /// Counts a refusal.
    #[inline]
    pub(crate) fn rejected(&self, reason: Rejection) {
        self.rejected[reason as usize].increment(1);
    }
}

/// The route pattern of a route's label (`GET /users/{id}` → `/users/{id}`, `MOUNT
/// /static/*` → `/static/*`).
fn route_pattern(label: Option<&'static str>) -> &'static str {
    label
        .and_then(|label| label.split_once(' '))
        .map_or(NO_ROUTE, |(_, pattern)| pattern)
}

const METHODS: [&str; 10] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "OTHER",
];

/// The `method` label's index: the standard methods, else `OTHER` (a client's own
/// method must not make series).
fn method_index(method: &Method) -> u8 {
    match *method {
        Method::GET => 0,
        Method::POST => 1,
        Method::PUT => 2,
        Method::DELETE => 3,
        Method::PATCH => 4,
        Method::HEAD => 5,
        Method::OPTIONS => 6,
        Method::CONNECT => 7,
        Method::TRACE => 8,
        _ => 9,
    }
}

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_name_the_pattern_never_the_path() {
        assert_eq!(route_pattern(Some("GET /users/{id}")), "/users/{id}");
        assert_eq!(route_pattern(Some("MOUNT /static/*")), "/static/*");
        assert_eq!(route_pattern(None), NO_ROUTE);
        assert_eq!(
            METHODS[method_index(&Method::from_bytes(b"BREW").unwrap()) as usize],
            "OTHER"
        );
        assert_eq!(
            Rejection::of(StatusCode::PAYLOAD_TOO_LARGE, false),
            Some(Rejection::BodyTooLarge)
        );
        assert_eq!(Rejection::of(StatusCode::SERVICE_UNAVAILABLE, false), None);
        assert_eq!(
            Rejection::of(StatusCode::SERVICE_UNAVAILABLE, true),
            Some(Rejection::Draining)
        );
    }
}
