//! Serving one connection, in its own task: its protocol sniffed, then HTTP/1.1 or
//! HTTP/2 through hyper over [`SharedIo`], with the header read timeout, the send
//! timeout and the drain; and the answers the connection gives itself (408, or JSON
//! for a request head hyper could not parse).

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::StatusCode;
use hyper_util::rt::TokioIo;
use nucleon_runtime::BoxError;
use tokio::net::TcpStream;

use super::conn::{CLOSING, ConnState, EXPIRED, Ended};
use super::hyper_service::ConnectionService;
use super::io::SharedIo;
use super::shared::Shared;
use super::sniff::{Speaks, sniff};
use super::socket::{has_pending_bytes, linger_close};

struct ConnectionCount(Rc<Shared>);

impl Drop for ConnectionCount {
    fn drop(&mut self) {
        let left = self.0.connections.get() - 1;
        self.0.connections.set(left);
        if left == 0 {
            self.0.idle.notify_waiters();
        }
    }
}

/// Resolves once the drain closes the listener (at once if it has).
async fn closed(shared: &Shared) {
    loop {
        let notified = shared.closed.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        if *shared.shutdown.borrow() {
            return;
        }
        notified.await;
    }
}

pub(super) async fn serve_connection(shared: Rc<Shared>, state: Rc<ConnState>) {
    let count = ConnectionCount(Rc::clone(&shared));
    let stream = &state.stream;
    // The first bytes, within the header read timeout: an idle new connection is
    // closed after it. When the drain closes the listener first, the request is
    // waited for during the idle grace (its client may be sending it), and answered
    // (503, `Connection: close`).
    let http2 = shared.http2.is_some();
    let sniffed = async {
        tokio::select! {
            biased;
            protocol = sniff(stream, http2) => protocol,
            () = closed(&shared) => sniff_in_drain(&shared, stream, http2).await,
        }
    };
    let deadline = state.idle_since.get() + shared.header_read_timeout;
    let protocol = match tokio::time::timeout_at(deadline.into(), sniffed).await {
        Ok(protocol) => protocol,
        Err(_) => {
            // A partial HTTP/2 preface, or "P" of an HTTP/1 "POST" that never went on.
            if has_pending_bytes(stream) {
                tracing::debug!(target: "nucleon::http", remote = %state.remote, "header read timeout: 408");
                // Rare: boxed, so the connection task does not carry its state.
                Box::pin(write_timeout_response(&shared, &state)).await;
            }
            Speaks::Closed
        }
    };
    match protocol {
        Speaks::Http1 => serve_http1(&shared, state).await,
        Speaks::Http2 => Box::pin(serve_http2(&shared, state)).await,
        Speaks::Quiet => Box::pin(shared.drain_close(stream)).await,
        Speaks::Closed => {}
    }
    drop(count);
}

/// The drain closed the listener before the connection's first bytes (it was in the
/// listener's queue, or its client had not sent yet): the client may be sending its
/// request as the listener closes. Waits for it for the idle grace (the kernel is
/// asked first: the loop's readiness may not know of bytes already there).
async fn sniff_in_drain(shared: &Shared, stream: &RefCell<TcpStream>, http2: bool) -> Speaks {
    if has_pending_bytes(stream) {
        return sniff(stream, http2).await;
    }
    let until = shared.grace_end(Instant::now());
    tokio::time::timeout_at(until.into(), sniff(stream, http2))
        .await
        .unwrap_or(Speaks::Quiet)
}

/// Where an HTTP/1 connection is in the drain.
///
/// An HTTP/1.1 connection cannot be closed without a race: the client may be sending
/// its next request as the server closes the connection it sees idle, and that request
/// would get no answer. So a connection is closed only after a response that said
/// `Connection: close` (every response made once the listener has closed does), or
/// after the idle grace (`http.drain_idle_grace`) went by without a byte.
enum Http1Drain {
    Serving,
    /// A request under way (see `ConnState::request_under_way`): hyper finishes it.
    /// Its response says `Connection: close` (a request that arrives in the drain gets
    /// 503 with `Retry-After`), and hyper closes the connection after it.
    Request,
    /// Nothing under way: waits for one more request until the timer (the grace's end).
    Quiet(Pin<Box<tokio::time::Sleep>>),
    /// To shut down now: quiet for the whole grace.
    Now,
    Done,
}

impl Http1Drain {
    /// The next state, on any wake-up of the connection task (`cx` for the grace's
    /// timer).
    fn next(self, shared: &Shared, state: &ConnState, cx: &mut Context<'_>) -> Self {
        let mut timer = match self {
            Http1Drain::Serving if !state.is(CLOSING) => return self,
            Http1Drain::Now | Http1Drain::Done => return self,
            // `graceful_shutdown` would close at once a connection whose next request
            // head is only partly read (or has not been read from the socket yet).
            _ if state.request_under_way() => return Http1Drain::Request,
            Http1Drain::Quiet(timer) => timer,
            Http1Drain::Serving | Http1Drain::Request => Box::pin(tokio::time::sleep_until(
                shared.grace_end(Instant::now()).into(),
            )),
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Http1Drain::Now,
            Poll::Pending => Http1Drain::Quiet(timer),
        }
    }
}

pub(super) async fn serve_http1(shared: &Shared, state: Rc<ConnState>) {
    // A request runs in this task: its label becomes the request's route meanwhile.
    // (HTTP/2's requests each run in a task of their own, named so.)
    if let Some(label) = nucleon_runtime::task::label_handle() {
        let _ = state.label.set(label);
    }
    let timeout = shared.header_read_timeout;
    let service = ConnectionService {
        service: shared.service.clone(),
        body_read_timeout: shared.body_read_timeout,
        state: Rc::clone(&state),
        poll_at_once: true,
    };
    let connection = shared
        .http1
        .serve_connection(TokioIo::new(SharedIo(Rc::clone(&state))), service);
    tokio::pin!(connection);
    shared.watcher.watch(&state);
    // The header read timeout and the drain reach the connection as flags set by the
    // worker's watcher (see `Watcher`), not as a timer and a `Notify` polled on every
    // wake-up of the connection.
    let mut drain = Http1Drain::Serving;
    let ended = std::future::poll_fn(|cx| {
        state.remember(cx.waker());
        loop {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                log_end(result.map_err(Into::into), state.remote);
                return Poll::Ready(Ended::Done);
            }
            if state.take(EXPIRED)
                && let Some(ended) = state.expired(timeout)
            {
                return Poll::Ready(ended);
            }
            drain = std::mem::replace(&mut drain, Http1Drain::Done).next(shared, &state, cx);
            if let Http1Drain::Now = drain {
                drain = Http1Drain::Done;
                connection.as_mut().graceful_shutdown();
                // Poll it again: the shutdown may have finished it.
                continue;
            }
            return Poll::Pending;
        }
    })
    .await;
    match ended {
        Ended::Done => {
            if let Some(status) = state.rejected.get() {
                // hyper's connection is gone: the stream is the JSON answer's.
                let (code, message) = rejection(status);
                tracing::debug!(target: "nucleon::http", remote = %state.remote, "unparsable request head: {status}");
                Box::pin(write_error_response(shared, &state, status, code, message)).await;
            } else if state.is(CLOSING) {
                // Whatever the client sends after the last answer (a pipelined
                // request, or one sent as the grace ended) must not turn the close
                // into a reset.
                Box::pin(shared.drain_close(&state.stream)).await;
            } else if state.body_left_unread.get() || has_pending_bytes(&state.stream) {
                // Closing on unread bytes would reset the connection, and the client
                // (still sending a body, or a pipelined request) could lose the
                // answer it was sent.
                Box::pin(linger_close(&state.stream)).await;
            }
        }
        Ended::Idle => {
            tracing::debug!(target: "nucleon::http", remote = %state.remote, "idle past the header read timeout: closed");
        }
        Ended::Unread => {
            tracing::debug!(target: "nucleon::http", remote = %state.remote, "the client has read nothing for http.send_timeout: closed");
        }
        Ended::SlowHead => {
            tracing::debug!(target: "nucleon::http", remote = %state.remote, "header read timeout: 408");
            // hyper's connection is gone: the stream is the 408 writer's.
            Box::pin(write_timeout_response(shared, &state)).await;
        }
    }
}

/// The error code and message of a request head hyper rejected.
fn rejection(status: StatusCode) -> (&'static str, &'static str) {
    match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "HEADERS_TOO_LARGE",
            "the request's head is too large (http.max_header_size) or has more than 100 headers",
        ),
        StatusCode::URI_TOO_LONG => ("URI_TOO_LONG", "the request's URI is too long"),
        _ => (
            "BAD_REQUEST",
            "the request's head is not valid HTTP/1.1 (request line or header syntax)",
        ),
    }
}

pub(super) async fn serve_http2(shared: &Shared, state: Rc<ConnState>) {
    let Some(builder) = &shared.http2 else {
        return;
    };
    let service = ConnectionService {
        service: shared.service.clone(),
        body_read_timeout: shared.body_read_timeout,
        state: Rc::clone(&state),
        // A stream's future runs in a task of its own, not the connection's.
        poll_at_once: false,
    };
    let connection = builder.serve_connection(TokioIo::new(SharedIo(Rc::clone(&state))), service);
    tokio::pin!(connection);
    // The idle limit: `http.header_read_timeout` with no request in service (the
    // watcher's check, as HTTP/1's, see `ConnState::expired`) ends the connection with
    // a `GOAWAY`; streams already open still finish. A slow header block is one such
    // case: its request is not in service until all its headers have arrived.
    //
    // Once told to go away, its open streams may finish as long as they make progress:
    // when nothing has been written to it for `http.send_timeout`, it is closed. A
    // client that grants no flow-control window (and answers pings, so that nothing
    // else notices) would otherwise hold its streams' answers, and the connection, for
    // ever; a slow reader that keeps granting window keeps its download. The watcher
    // keeps waking a connection with nothing in service, so the check runs.
    let timeout = shared.header_read_timeout;
    shared.watcher.watch(&state);
    // After the GOAWAY: the bytes written so far, and since when that count stands.
    let mut progress: Option<(u64, Instant)> = None;
    let result = std::future::poll_fn(|cx| {
        state.remember(cx.waker());
        loop {
            if let Poll::Ready(result) = connection.as_mut().poll(cx) {
                return Poll::Ready(result);
            }
            if let Some((seen, since)) = &mut progress {
                if state.take(EXPIRED) {
                    let written = state.written.get();
                    if written != *seen {
                        (*seen, *since) = (written, Instant::now());
                    } else if since.elapsed() >= state.send_timeout.get() {
                        tracing::debug!(target: "nucleon::http", remote = %state.remote, "HTTP/2 streams made no progress for http.send_timeout after GOAWAY: closed");
                        return Poll::Ready(Ok(()));
                    }
                }
                return Poll::Pending;
            }
            let expired = state.take(EXPIRED) && state.expired(timeout).is_some();
            if expired {
                tracing::debug!(target: "nucleon::http", remote = %state.remote, "HTTP/2 idle past the header read timeout: GOAWAY");
            }
            if !expired && !state.is(CLOSING) {
                return Poll::Pending;
            }
            progress = Some((state.written.get(), Instant::now()));
            connection.as_mut().graceful_shutdown();
        }
    })
    .await;
    log_end(result.map_err(Into::into), state.remote);
    if state.is(CLOSING) {
        // Frames the client sent after the last GOAWAY must not turn the close into a
        // reset that could destroy answers it has not read yet.
        Box::pin(shared.drain_close(&state.stream)).await;
    }
}

fn log_end(result: Result<(), BoxError>, remote: SocketAddr) {
    if let Err(error) = result {
        tracing::debug!(target: "nucleon::http", %remote, %error, "connection ended: {error}");
    }
}

/// Answers 408 and closes the writing side.
async fn write_timeout_response(shared: &Shared, state: &ConnState) {
    write_error_response(
        shared,
        state,
        StatusCode::REQUEST_TIMEOUT,
        "REQUEST_TIMEOUT",
        "the request's headers did not arrive in time (http.header_read_timeout)",
    )
    .await;
}

/// Answers an error the connection itself found (no request reached the pipeline):
/// JSON, a new request id, `Connection: close`, one access log line; then closes the
/// writing side and reads what the client still sends for a moment, so that closing
/// with unread bytes does not reset the connection before the client reads the answer.
pub(super) async fn write_error_response(
    shared: &Shared,
    state: &ConnState,
    status: StatusCode,
    code: &str,
    message: &str,
) {
    let stream = &state.stream;
    let request_id = shared.service.new_request_id();
    let body = serde_json::json!({"error": code, "message": message}).to_string();
    let head = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nx-request-id: {request_id}\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    shared
        .service
        .log_rejected(state.remote, status, body.len(), &request_id);
    let mut out = head.into_bytes();
    out.extend_from_slice(body.as_bytes());
    let mut written = 0;
    while written < out.len() {
        let ready = std::future::poll_fn(|cx| stream.borrow().poll_write_ready(cx)).await;
        if ready.is_err() {
            return;
        }
        match stream.borrow().try_write(&out[written..]) {
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
    linger_close(stream).await;
}
