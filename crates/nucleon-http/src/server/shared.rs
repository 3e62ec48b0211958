//! What one worker's server tasks share (its accept loop, its watcher, its
//! connections): the pipeline, hyper's builders, the timeouts, the drain's signals and
//! the count of open connections.

use std::cell::{Cell, RefCell};
use std::time::{Duration, Instant};

use hyper::server::conn::{http1, http2};
use hyper_util::rt::TokioTimer;
use tokio::net::TcpStream;
use tokio::sync::{Notify, watch};

use super::config::HttpConfig;
use super::conn::Watcher;
use super::hyper_service::LocalExec;
use super::socket::{DRAIN_LINGER_IDLE, LINGER_IDLE, LINGER_TIME, linger_close_until};
use crate::service::HttpService;

pub(super) struct Shared {
    pub(super) service: HttpService,
    pub(super) http1: http1::Builder,
    /// `None` when `http.http2` is off.
    pub(super) http2: Option<http2::Builder<LocalExec>>,
    pub(super) header_read_timeout: Duration,
    pub(super) body_read_timeout: Duration,
    pub(super) send_timeout: Duration,
    pub(super) shutdown: watch::Sender<bool>,
    /// `shutdown` for connections still waiting for their first bytes (serving ones
    /// learn of the drain from the watcher).
    pub(super) closed: Notify,
    pub(super) connections: Cell<usize>,
    pub(super) idle: Notify,
    pub(super) watcher: Watcher,
}

impl Shared {
    /// When a connection quiet in the drain since `since` is closed: after
    /// `http.drain_idle_grace`, by the drain's deadline at the latest.
    pub(super) fn grace_end(&self, since: Instant) -> Instant {
        self.watcher
            .by_deadline(since + self.service.drain_idle_grace())
    }

    /// Closes a connection in the drain with a lingering read (see
    /// [`linger_close`](super::socket::linger_close)): for as long as the client sends
    /// something, up to the grace (0.1 to 2 s) apart, by the drain's deadline at the
    /// latest.
    pub(super) async fn drain_close(&self, stream: &RefCell<TcpStream>) {
        let idle = self
            .service
            .drain_idle_grace()
            .clamp(DRAIN_LINGER_IDLE, LINGER_IDLE);
        let until = self.watcher.by_deadline(Instant::now() + LINGER_TIME);
        linger_close_until(stream, idle, until).await;
    }
}

/// hyper's HTTP/1 and HTTP/2 (h2c with prior knowledge) connection builders.
///
/// hyper's own header read timeout is off: the connection task keeps it (see
/// `ConnState`).
pub(super) fn builders(config: &HttpConfig) -> (http1::Builder, Option<http2::Builder<LocalExec>>) {
    let mut http1 = http1::Builder::new();
    http1
        .header_read_timeout(None)
        .max_buf_size((config.max_header_size * 2).max(8192) + 1024)
        .keep_alive(true);
    let http2 = config.http2.then(|| {
        let mut http2 = http2::Builder::new(LocalExec);
        // Pings while the connection is open: a peer that does not answer one within
        // the header read timeout is gone, even with a request in service.
        http2
            .timer(TokioTimer::new())
            .keep_alive_interval(config.header_read_timeout)
            .keep_alive_timeout(config.header_read_timeout)
            // A bound on memory only, looser than `http.max_header_size` (h2 counts 32
            // bytes more per header, and answers a bare 431 itself): the pipeline
            // checks the limit as for HTTP/1, and answers 431 in JSON.
            .max_header_list_size(
                u32::try_from(config.max_header_size * 2 + 32 * 100).unwrap_or(u32::MAX),
            );
        http2
    });
    (http1, http2)
}
