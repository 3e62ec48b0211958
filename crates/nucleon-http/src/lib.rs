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
//! Errors are JSON: `{"error":"NOT_FOUND","message":"…"}`; 405 carries `Allow`; bad JSON
//! is 400 `INVALID_JSON` with line and column; extractor failures are 400
//! `INVALID_PARAMETERS` with per-field `messages`; 413, 415, 431, 408; a handler error or
//! panic is 500 `INTERNAL_ERROR` (the cause goes to the log with the request id); while
//! draining, 503 `SERVICE_UNAVAILABLE` with `Retry-After`.
//!
//! Logs: `nucleon::access` (one line per request), `nucleon::http` (server events).

mod body;
mod de;
mod error;
pub mod extract;
mod handler;
mod response;
mod router;
mod server;
mod service;

pub use body::Body;
pub use bytes::Bytes;
pub use error::{HttpError, ServerError};
pub use extract::{
    FromRequest, FromRequestParts, Local, Path, Query, RemoteAddr, RequestContext, RequestId,
    State, parse_json,
};
pub use handler::Handler;
pub use http::{HeaderMap, Method, StatusCode, Uri, header};
pub use response::{IntoResponse, Json, Response};
pub use router::{
    Endpoint, MethodRouter, RouteInfo, Router, delete, get, head, on, options, patch, post, put,
};
pub use server::{DEFAULT_BODY_LIMIT, HttpConfig, HttpServer};
pub use service::{HttpService, X_REQUEST_ID};

/// Any error, boxed (as the runtime's adapters use).
pub type BoxError = nucleon_runtime::BoxError;

/// The request type handlers and services see.
pub type Request<B = Body> = http::Request<B>;
