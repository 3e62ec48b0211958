//! The listening side: the address claimed for the workers, each worker's socket
//! bound, and its accept loop (with its back-off on failures), which hands every
//! accepted connection to a task of its own (`serve`).

use std::io;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::net::{TcpListener, TcpStream};

use super::config::HttpConfig;
use super::conn::{CONNECTION_LABEL, ConnState};
use super::serve::serve_connection;
use super::shared::Shared;
use crate::ServerError;

impl HttpConfig {
    /// Picks a free port when `port` is 0, so that every worker binds the same one
    /// (and checks that nothing listens on the address): [`HttpConfig::claim_port`],
    /// with the claim let go at once.
    ///
    /// # Errors
    /// As [`HttpConfig::claim_port`].
    pub fn resolve_port(&mut self) -> Result<SocketAddr, ServerError> {
        self.claim_port().map(|claim| claim.addr())
    }

    /// Claims the address for this process's workers: checks that nothing listens on
    /// it (the workers bind with `SO_REUSEPORT`, which the kernel would let a second
    /// instance of the service share with a running one, splitting the traffic between
    /// them without a word), picks a free port when `port` is 0, and holds the address
    /// until the claim is dropped, so that a port 0 picked here is not given to another
    /// socket before the workers have bound it. A socket bound to the address but not
    /// listening, with `SO_REUSEADDR` and `SO_REUSEPORT` (a reservation such as this
    /// claim), does not count.
    ///
    /// ```
    /// use nucleon_http::{HttpConfig, ServerError};
    ///
    /// let mut config = HttpConfig { port: 0, ..HttpConfig::default() };
    /// let claim = config.claim_port().unwrap();
    /// assert_eq!(claim.addr().port(), config.port);
    ///
    /// // A port something listens on is refused.
    /// let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    /// let port = listener.local_addr().unwrap().port();
    /// let mut taken = HttpConfig { port, ..HttpConfig::default() };
    /// assert!(matches!(taken.claim_port(), Err(ServerError::AddrInUse { .. })));
    /// ```
    ///
    /// # Errors
    /// [`ServerError::InvalidHost`]; [`ServerError::AddrInUse`] when a socket listens
    /// on the address (another process's, or this one's); [`ServerError::Bind`] for
    /// any other failure (no free port, no such local address…).
    pub fn claim_port(&mut self) -> Result<PortClaim, ServerError> {
        let addr = self.addr()?;
        let bind_error = |source: io::Error| {
            if source.kind() == io::ErrorKind::AddrInUse {
                ServerError::AddrInUse { addr }
            } else {
                ServerError::Bind { addr, source }
            }
        };
        let socket = |reuse_port: bool| -> io::Result<Socket> {
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.set_reuse_address(true)?;
            socket.set_reuse_port(reuse_port)?;
            Ok(socket)
        };
        if addr.port() != 0 && !self.share_port {
            // Without `SO_REUSEPORT` (with `SO_REUSEADDR`, so that connections of an
            // earlier run left in `TIME_WAIT` do not count), binding fails while any
            // socket listens on the address, one of this service's kind included.
            socket(false)
                .and_then(|probe| probe.bind(&addr.into()))
                .map_err(bind_error)?;
        }
        // Bound but never listening: no connection can queue on it; the workers'
        // sockets (`SO_REUSEPORT` too, same user) bind beside it.
        let claim = socket(true).map_err(bind_error)?;
        claim.bind(&addr.into()).map_err(bind_error)?;
        let port = claim
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .map(|a| a.port())
            .ok_or_else(|| bind_error(io::Error::other("no local address")))?;
        self.port = port;
        Ok(PortClaim {
            addr: SocketAddr::new(addr.ip(), port),
            _socket: claim,
        })
    }
}

/// The address a service is to listen on, held for its workers: see
/// [`HttpConfig::claim_port`]. Drop it once they listen (or keep it while they run: it
/// never accepts a connection).
#[derive(Debug)]
pub struct PortClaim {
    addr: SocketAddr,
    _socket: Socket,
}

impl PortClaim {
    /// The address claimed (with the port chosen, when 0 was asked for).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Binds a listening socket the way every worker does: `SO_REUSEPORT`, `SO_REUSEADDR`,
/// non-blocking, with `backlog`.
pub(super) fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

pub(super) async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
    let mut shutdown = shared.shutdown.subscribe();
    let mut backoff = AcceptBackoff::default();
    loop {
        let accepted = tokio::select! {
            biased;
            _ = shutdown.wait_for(|closing| *closing) => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, remote)) => {
                backoff.succeeded();
                start_connection(&shared, stream, remote);
            }
            Err(error) => {
                // Out of file descriptors and the like: back off, keep serving (and
                // stop backing off when the drain closes the listener).
                let pause = backoff.failed(Instant::now(), |failures| {
                    tracing::warn!(target: "nucleon::http", %error, failures, "accept failed: {error} ({failures} time(s) since the last such line; backing off)");
                });
                tokio::select! {
                    _ = shutdown.wait_for(|closing| *closing) => break,
                    () = tokio::time::sleep(pause) => {}
                }
            }
        }
    }
    // Connections already queued were accepted by the kernel: serve them rather than
    // reset them when the listener closes. Ask the kernel itself: the loop's readiness
    // for the listener may be stale (no epoll turn since connections arrived), and
    // `listener.accept()` would then answer `Pending` with connections still queued.
    let socket = SockRef::from(&listener);
    loop {
        match socket.accept() {
            Ok((accepted, remote)) => {
                let Some(remote) = remote.as_socket() else {
                    continue;
                };
                let stream = accepted
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(accepted.into()));
                match stream {
                    Ok(stream) => start_connection(&shared, stream, remote),
                    Err(error) => {
                        tracing::warn!(target: "nucleon::http", %error, "cannot serve a queued connection: {error}");
                    }
                }
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => {
                if error.kind() != io::ErrorKind::WouldBlock {
                    tracing::warn!(target: "nucleon::http", %error, "accept failed while closing: {error}");
                }
                break;
            }
        }
    }
}

/// The accept loop's pause after a failure (out of file descriptors, say): 10 ms,
/// doubling while the failures go on, up to 1 s; and its log line, the first failure's
/// and then one every 10 s at most, with the count since the last.
#[derive(Debug, Default)]
pub(super) struct AcceptBackoff {
    /// Consecutive failures.
    streak: u32,
    /// Failures not yet in a log line.
    unlogged: u64,
    last_line: Option<Instant>,
}

impl AcceptBackoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MOST: Duration = Duration::from_secs(1);
    const LOG_EVERY: Duration = Duration::from_secs(10);

    fn succeeded(&mut self) {
        self.streak = 0;
    }

    /// Counts a failure; calls `log` with the failures since the last line when one is
    /// due; returns how long to pause.
    fn failed(&mut self, now: Instant, log: impl FnOnce(u64)) -> Duration {
        self.unlogged += 1;
        if self
            .last_line
            .is_none_or(|last| now.duration_since(last) >= Self::LOG_EVERY)
        {
            log(self.unlogged);
            self.unlogged = 0;
            self.last_line = Some(now);
        }
        let pause = Self::FIRST
            .saturating_mul(1 << self.streak.min(7))
            .min(Self::MOST);
        self.streak += 1;
        pause
    }
}

pub(super) fn start_connection(shared: &Rc<Shared>, stream: TcpStream, remote: SocketAddr) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(target: "nucleon::http", %error, "cannot set TCP_NODELAY");
    }
    shared.connections.set(shared.connections.get() + 1);
    let shared = Rc::clone(shared);
    let state = ConnState::new(stream, remote);
    state.send_timeout.set(shared.send_timeout);
    nucleon_runtime::spawn(CONNECTION_LABEL, serve_connection(shared, state));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Accept failures back off from 10 ms to 1 s, and are logged once per 10 s with
    /// their count (out of file descriptors, a warning per failure filled the log at
    /// 100 lines a second per worker).
    #[test]
    fn accept_failures_back_off_and_are_logged_with_their_count() {
        let mut backoff = AcceptBackoff::default();
        let start = Instant::now();
        let mut lines = Vec::new();
        let mut pauses = Vec::new();
        for n in 0..12_u64 {
            // A failure every 100 ms.
            let now = start + Duration::from_millis(100 * n);
            pauses.push(backoff.failed(now, |count| lines.push(count)).as_millis());
        }
        assert_eq!(pauses[..3], [10, 20, 40]);
        assert!(pauses[7..].iter().all(|&p| p == 1000), "{pauses:?}");
        assert_eq!(lines, [1], "the first failure only, within 10 s");
        backoff.failed(start + Duration::from_secs(11), |count| lines.push(count));
        assert_eq!(lines, [1, 12], "then the count since the last line");
        backoff.succeeded();
        assert_eq!(
            backoff
                .failed(start + Duration::from_secs(12), |_| {})
                .as_millis(),
            10
        );
    }
}
