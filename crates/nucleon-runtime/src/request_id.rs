//! The current request's id, forwarded by outbound clients (`nucleon_dns::HttpClient`) as `x-request-id`.
//!
//! The HTTP front end (`nucleon-http`) runs each request's handler inside [`scope`]; any outbound call the
//! handler makes (on the same task) then carries the id, so one request can be followed
//! across services in the logs.
//!
//! ```
//! # async fn demo() {
//! use nucleon_runtime::request_id;
//!
//! assert_eq!(request_id::current(), None);
//! request_id::scope("req-42", async {
//!     assert_eq!(request_id::current().as_deref(), Some("req-42"));
//! })
//! .await;
//! # }
//! ```

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// Runs `future` with `id` as the current request id.
pub fn scope<F: Future>(id: impl Into<Arc<str>>, future: F) -> impl Future<Output = F::Output> {
    REQUEST_ID.scope(id.into(), future)
}

/// The current request id, inside [`scope`].
pub fn current() -> Option<Arc<str>> {
    REQUEST_ID.try_with(Arc::clone).ok()
}
