//! # The life of a request
//!
//! Each hop from the accepted socket to the written response, in order. All of it runs
//! on one worker's loop, in the connection's task (HTTP/1.1) or its stream's (HTTP/2):
//! nothing crosses threads. The links lead to the crate's private items, which
//! `cargo doc -p nucleon-http --no-deps --document-private-items` renders. (A
//! documentation module: it holds no code.)
//!
//! 1. **Accept.** The worker's [`accept_loop`](super::listener::accept_loop), on its
//!    own `SO_REUSEPORT` socket ([`bind`](super::listener::bind)), takes the connection
//!    from the kernel (and backs off when accepting fails,
//!    [`AcceptBackoff`](super::listener::AcceptBackoff));
//!    [`start_connection`](super::listener::start_connection) sets `TCP_NODELAY`, makes
//!    the connection's [`ConnState`](super::conn::ConnState) and spawns its task.
//! 2. **Sniff.** The task, [`serve_connection`](super::serve::serve_connection), waits
//!    for the first bytes (for `http.header_read_timeout`: then 408, or a quiet close)
//!    and [`sniff`](super::sniff::sniff) peeks at them: the HTTP/2 preface, or
//!    HTTP/1.1.
//! 3. **hyper's connection.** [`serve_http1`](super::serve::serve_http1) (or
//!    [`serve_http2`](super::serve::serve_http2)) runs hyper's connection over
//!    [`SharedIo`](super::io::SharedIo), which reads the socket for hyper and marks a
//!    request under way. The worker's [`Watcher`](super::conn::Watcher) flags the
//!    connection when its header read timeout passes or the drain starts.
//! 4. **Into the pipeline.** hyper parses the request's head and calls
//!    [`ConnectionService`](super::hyper_service::ConnectionService): the request is
//!    marked in service ([`InService`](super::conn::InService)), its body becomes a
//!    [`Body`](crate::Body) with the body read timeout, and the worker's pipeline takes
//!    it. Over HTTP/1.1 the pipeline's future is polled once at once, in the
//!    connection's task; over HTTP/2 it runs in the stream's task.
//! 5. **The pipeline.** [`HttpService::start`](crate::service::HttpService::start): the
//!    request id (the client's `x-request-id`, or a new one), the trace context and the
//!    `request` span, the access log's start
//!    ([`AccessStart`](crate::request_log::AccessStart)) and the metrics'; the probes
//!    (`/readyz`, `/livez`); the answers given before routing (431 for a head past
//!    `http.max_header_size`, 413 for a declared body past `http.body_limit`); the
//!    drain's guard; the body capped at `http.body_limit`; the request's
//!    [`RequestContext`](crate::RequestContext). An application with layers goes
//!    through them first
//!    ([`Compiled::app_endpoint`](crate::router::Compiled::app_endpoint)).
//! 6. **Routing.** [`Compiled::dispatch`](crate::router::Compiled::dispatch): the
//!    routes without parameters ([`StaticRoutes`](crate::static_routes::StaticRoutes)),
//!    else matchit's table, then the parameters' constraints and the method; the task
//!    takes the route's name for the watchdog ([`name_task`](super::conn::name_task)).
//!    Routing gives a [`Dispatch`](crate::router::Dispatch): an answer at once (404,
//!    405, 308), a handler, or a service (a route's layers, a mounted service).
//! 7. **The handler.**
//!    [`ErasedHandler::call_finished`](crate::handler::ErasedHandler::call_finished)
//!    boxes the handler's future inside the pipeline's
//!    ([`Finish::run`](crate::finish::Finish::run)): one box for both.
//!    [`Handler::call`](crate::Handler::call) runs the extractors
//!    ([`FromRequestParts`](crate::FromRequestParts), then
//!    [`FromRequest`](crate::FromRequest) for the last argument) and the function,
//!    whose result becomes a [`Response`](crate::Response)
//!    ([`IntoResponse`](crate::IntoResponse)).
//! 8. **Around the handler.** [`Finishing`](crate::finish::Finishing) polls it within
//!    its [`Limits`](crate::limits::Limits) (the time limit, 503 `TIMEOUT`; HEAD, the
//!    body dropped), with the request id and the trace context in scope, and makes a
//!    panic a 500.
//! 9. **The response finished.** [`Started::respond`](crate::finish::Started::respond):
//!    the `x-request-id` header, `Connection: close` when the connection is to close
//!    (the listener closed, a body left unread), the error line of a 500, the metrics,
//!    the access log line ([`AccessStart::log`](crate::request_log::AccessStart::log));
//!    a streaming body is counted by its connection until it is sent
//!    ([`SendingBody`](super::conn::SendingBody)); the task takes the connection's name
//!    back.
//! 10. **Written.** hyper writes the response through [`SharedIo`](super::io::SharedIo)
//!     (a small one in one `send`; a bare answer of hyper's own to a head it could not
//!     parse is held back and answered in JSON by
//!     [`write_error_response`](super::serve::write_error_response) instead). The
//!     connection then waits for its next request, or closes: after a lingering read
//!     ([`linger_close`](super::socket::linger_close)) when the client may still be
//!     sending, so that the close does not reset the answer.
//!
//! In-process, [`HttpService::call`](crate::HttpService::call) (the umbrella's
//! `TestClient`) starts at step 5 and ends with step 9's response.
