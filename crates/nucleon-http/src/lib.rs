//! # nucleon-http
//!
//! Nucleon's HTTP front end: hyper 1 on every worker (each binds its own listener with
//! `SO_REUSEPORT`), a [`Router`] with typed and constrained path parameters, handlers
//! whose futures may be `!Send`, extractors, JSON errors with a stable shape, limits
//! (header timeout, header size, body size, request timeout), tower layers, mounted
//! tower services, and a drain that answers every accepted request.
//!
//! ```no_run
//! use nucleon_http::{get, HttpConfig, HttpError, HttpServer, Json, Path, Router};
//! use nucleon_runtime::Runtime;
//!
//! async fn country(Path(code): Path<String>) -> Result<Json<&'static str>, HttpError> {
//!     match code.as_str() {
//!         "gb" => Ok(Json("United Kingdom")),
//!         _ => Err(HttpError::not_found(format!("no country with code `{code}`"))),
//!     }
//! }
//!
//! let router = Router::new().route("/countries/{code:[a-z]{2}}/", get(country));
//! Runtime::builder()
//!     .per_worker(move |worker| {
//!         worker.adapter(HttpServer::new(router.clone(), HttpConfig::default()));
//!         Ok(())
//!     })
//!     .build()?
//!     .run()?;
//! # Ok::<(), nucleon_runtime::RuntimeError>(())
//! ```
//!
//! ## Errors
//!
//! Every error is JSON with a stable shape, `{"error":"NOT_FOUND","message":"…"}`
//! (`"messages": {"field": "…"}` too for invalid parameters): clients branch on `error`,
//! the message is for people. The framework's codes:
//!
//! | Status | `error` | When |
//! |---|---|---|
//! | 308 | `MOVED` | `GET`/`HEAD` of a path that only exists with (or without) a trailing slash; `Location` has the other one |
//! | 400 | `INVALID_JSON` | the body is not JSON; the message has the parser's line and column |
//! | 400 | `INVALID_PARAMETERS` | a path, query or JSON field that does not parse; `messages` names each field |
//! | 400 | `BAD_REQUEST` | the body cannot be read, or is not UTF-8 for a `String`; or (HTTP/1.1) the request line or a header line does not parse |
//! | 404 | `NOT_FOUND` | no route (a failed constraint included), or a handler's own 404 |
//! | 405 | `METHOD_NOT_ALLOWED` | the path exists, the method does not; `Allow` lists those that do |
//! | 408 | `REQUEST_TIMEOUT` | the client did not send its headers within `http.header_read_timeout`, or its body stopped arriving for `http.body_read_timeout` while read |
//! | 413 | `PAYLOAD_TOO_LARGE` | the body is past `http.body_limit`, wherever it is read |
//! | 414 | `URI_TOO_LONG` | (HTTP/1.1) a request target past hyper's limit of 65534 bytes (reached first only when `http.max_header_size` is above 32 KiB) |
//! | 415 | `UNSUPPORTED_MEDIA_TYPE` | a JSON body without `content-type: application/json` |
//! | 431 | `HEADERS_TOO_LARGE` | the request head is past `http.max_header_size`, or (HTTP/1.1) has more than 100 headers |
//! | 500 | `INTERNAL_ERROR` | a handler error or panic, a `Path<T>` that does not fit its route, missing state: nothing internal to the client, the cause in the log with the request id |
//! | 503 | `SERVICE_UNAVAILABLE` | draining (readiness at once; every request after the lame duck), with `Retry-After` |
//! | 503 | `TIMEOUT` | the handler ran past its time limit (`http.request_timeout`, [`MethodRouter::timeout`]), with `Retry-After` |
//!
//! hyper answers a request head it cannot parse itself (400, 414, and 431 past its
//! buffer of `2 × http.max_header_size + 1 KiB` or past 100 headers) with an empty
//! body. The server holds that answer back and writes the JSON one above instead, with
//! a new request id, `Connection: close`, and an access log line (status, remote,
//! bytes, request id; no method or path, as none was parsed); 408 gets the same. What
//! is *not* intercepted, and keeps hyper's or h2's own answer (no JSON, no access
//! line):
//!
//! - an HTTP/1.1 head that fails to parse right behind a pipelined request whose
//!   response hyper had not yet flushed (the two answers leave in one write);
//! - HTTP/2: a header list past `http.max_header_size` is answered by the h2 library
//!   itself (a bodiless 431 on that stream), and a malformed frame ends the
//!   connection with a `GOAWAY`; no request reaches the pipeline either way.
//!
//! A bare error status from a handler (`StatusCode::CONFLICT`) gets the same shape, its
//! code from the status's reason (`CONFLICT`); applications add their own codes with
//! [`HttpError::new`].
//!
//! Why 503 `TIMEOUT` for a handler that runs too long, and not 408 as tower-http's
//! `TimeoutLayer` answers: 408 says the *client* was too slow to send its request
//! (here, its headers: `REQUEST_TIMEOUT`), and a client may repeat the request on its
//! own after a 408 (RFC 9110, 15.5.9; browsers do), running a slow handler again. A handler that does not
//! finish in time is the server failing to answer, which is what 503 and its
//! `Retry-After` say to clients and load balancers: try again later, or elsewhere. 504
//! is for gateways whose upstream did not answer. A distinct code keeps it apart from
//! draining. Who wants tower-http's 408 can add `tower_http::timeout::TimeoutLayer` as
//! a layer instead.
//!
//! Logs: `nucleon::access` (one line per request, at INFO, with the request id;
//! `bytes` is the body's size when it is known as the response starts, 0 for answers
//! sent without a body (HEAD, 204, 304), and absent for a streamed body of unknown
//! length; `duration_us` runs to the response's head, not to the body's end; a request
//! whose client left before its answer is logged with status 499 and `cancelled`),
//! `nucleon::http` (server events; a handler's 500 at ERROR with its cause, the request
//! id, and the path, or the route when the access log is off). Each request runs in a `request` span (target
//! `nucleon::http`: id, method, path, trace id) at **DEBUG**, as tower-http's `TraceLayer` makes
//! its span: at the default `info` level it costs nothing per request; turn it on with
//! `nucleon::http=debug`. Handlers get the id from [`RequestId`] or
//! `nucleon_runtime::request_id::current()`.
//!
//! Trace context: a request's W3C `traceparent` (and `tracestate`) becomes its
//! handler's `nucleon_runtime::trace::current()`: the same trace, a span of its own
//! whose parent is the sender's. An invalid one is ignored, as the specification
//! says. The trace id is in the `request` span (`trace_id`) and in the access line
//! (`trace_id`, only for a request that came with a `traceparent`). A request without
//! one gets a trace started when its handler first forwards one (an outbound call, a
//! publish), not before: it costs nothing otherwise.
//!
//! ## Draining
//!
//! On a drain (SIGTERM and the other stop signals, or `RuntimeHandle::shutdown`), each
//! worker's server:
//!
//! 1. answers its readiness route 503 at once, and everything else as usual for
//!    `http.lame_duck`, so that a load balancer takes the instance out first;
//! 2. then closes its listener (connections the kernel had already taken are served),
//!    and answers every request that arrives from then on 503 `SERVICE_UNAVAILABLE`
//!    with `Retry-After`: over HTTP/1.1 with `Connection: close`, and the connection
//!    closes after it; over HTTP/2 each connection gets a `GOAWAY`, whose last stream
//!    tells the client which of its requests were taken. Requests under way finish;
//! 3. keeps an HTTP/1.1 connection idle at that moment open for `http.drain_idle_grace`
//!    (1 s): its client may be sending its next request (the keep-alive race), which
//!    is answered as above. A connection quiet for the whole grace is closed. Every
//!    connection is closed with a lingering read (the server's side first, then what
//!    the client still sends is read and dropped), not with a reset that could destroy
//!    an answer the client has not read yet;
//! 4. stops once every connection has closed, by the drain's deadline.
//!
//! So a request sent on an open connection is answered: served, or 503 with
//! `Retry-After`. What a client can still see:
//!
//! - **connection refused**: a new connection after the listener closed. Nothing was
//!   sent: retry it elsewhere (or after `Retry-After`);
//! - an end of stream with no answer, for a request sent on an HTTP/1.1 connection
//!   that had been idle for the whole grace, just as the server closes it; and for
//!   requests pipelined behind the one answered with `Connection: close` (hyper reads
//!   no request after it: they are read and dropped). Neither was processed: a client
//!   may send them again on a new connection, as for any keep-alive connection closed
//!   under it;
//! - over HTTP/2, streams opened past the `GOAWAY`'s last stream: refused, never
//!   processed, safe to send again;
//! - a reset, for a connection whose handshake the kernel completes in the instant
//!   between the server's last `accept` and its listener's close (after it, connections
//!   are refused);
//! - whatever is still under way at the drain's deadline is cut.

// A newcomer's way in: `server/life_of_a_request.rs` follows a request from the
// accepted socket to the written response, hop by hop, with links to each
// (`cargo doc -p nucleon-http --no-deps --document-private-items`).
mod body;
mod de;
mod dep;
mod error;
pub mod extract;
mod finish;
mod handler;
mod limits;
mod metrics;
mod request_ids;
mod request_log;
mod response;
mod router;
mod server;
mod service;
mod static_routes;
mod trace_context;

pub use body::{Body, BodyReadTimeout};
pub use bytes::Bytes;
pub use dep::{Dep, Named};
pub use error::{HttpError, ServerError};
pub use extract::{
    FromRequest, FromRequestParts, Local, OptionalFromRequestParts, Path, Query, RemoteAddr,
    RequestContext, RequestId, State, parse_json,
};
pub use handler::Handler;
pub use http::{HeaderMap, Method, StatusCode, Uri, header};
pub use request_ids::X_REQUEST_ID;
pub use request_log::{AccessRecord, AccessSink, set_access_sink};
pub use response::{IntoResponse, Json, Response};
pub use router::{
    Endpoint, EndpointLayer, IntoEndpoint, MethodRouter, RouteInfo, Router, delete, get, head, on,
    options, patch, post, put,
};
pub use server::{DEFAULT_BODY_LIMIT, HttpConfig, HttpServer, PortClaim};
pub use service::HttpService;

/// Any error, boxed (as the runtime's adapters use).
pub type BoxError = nucleon_runtime::BoxError;

/// The request type handlers and services see.
pub type Request<B = Body> = http::Request<B>;
