//! The HTTP server: one listener per worker (`SO_REUSEPORT`), hyper connections on the
//! worker's loop, limits, and the drain.

use std::cell::{Cell, OnceCell, RefCell};
use std::convert::Infallible;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use futures_util::future::LocalBoxFuture;
use http::StatusCode;
use hyper::body::Incoming;
use hyper::server::conn::{http1, http2};
use hyper_util::rt::{TokioIo, TokioTimer};
use nucleon_runtime::config::duration;
use nucleon_runtime::task::LabelHandle;
use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health};
use serde::Deserialize;
use socket2::{Domain, Protocol, SockRef, Socket, Type};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, watch};

use crate::response::Response;
use crate::service::{CONNECTION_LABEL, HttpService, Outcome};
use crate::{Body, Router, ServerError};

/// The default body limit: 1 MiB.
pub const DEFAULT_BODY_LIMIT: usize = 1024 * 1024;

/// The server's settings: the `[<env>.http]` table of `app.toml`.
///
/// ```toml
/// [default.http]
/// host = "127.0.0.1"
/// port = 8888
/// body_limit = 1048576
/// header_read_timeout = "10s"
/// body_read_timeout = "30s"
/// lame_duck = "5s"
/// drain_idle_grace = "1s"
/// ```
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// The address to listen on (default `127.0.0.1`; `0.0.0.0` for every interface).
    pub host: String,
    /// The port (default 8000; 0 picks a free one at start).
    pub port: u16,
    /// The listen backlog of each worker's socket (default 4096).
    pub backlog: u32,
    /// How long a client may take to send a request's headers, and how long an idle
    /// connection (a new one before its first byte, or a keep-alive one between
    /// requests) stays open (default 10 s). A client cut mid-headers gets 408. A
    /// connection is not idle while a handler runs or a response is being sent, a
    /// streaming body however slow included. An HTTP/2 connection with no request in
    /// service for as long gets a `GOAWAY` (its open streams finish), and is pinged at
    /// this interval: a peer that does not answer within it is closed. Connections in
    /// service are checked a few times per timeout (every quarter of it, 5 ms to 1 s),
    /// so one ends between 1 and 1.25 times the timeout after it went quiet.
    #[serde(with = "duration::nonzero")]
    pub header_read_timeout: Duration,
    /// The largest request head (path, query and headers) in bytes (default 16 KiB):
    /// past it, 431.
    pub max_header_size: usize,
    /// The largest request body in bytes (default 1 MiB): past it, 413.
    pub body_limit: usize,
    /// How long a response may wait on a client that does not read it (default 60 s):
    /// a write that stays blocked for as long ends the connection. A client that stops
    /// reading does not hold its connection and the response's memory for ever.
    #[serde(with = "duration::nonzero")]
    pub send_timeout: Duration,
    /// How long a request's body may go without a byte arriving while it is read
    /// (default 30 s): past it, reading fails, the extractors answer 408
    /// `REQUEST_TIMEOUT`, and the connection closes. An upload that stalls does not
    /// hold its connection and its handler for ever.
    #[serde(with = "duration::nonzero")]
    pub body_read_timeout: Duration,
    /// A time limit for every handler (default none; routes may set their own). Zero
    /// is refused (it would answer every request that waits on anything with 503):
    /// leave the key out for no limit.
    #[serde(with = "duration::nonzero::option")]
    pub request_timeout: Option<Duration>,
    /// The readiness route: 200 while serving, 503 from the moment a drain starts
    /// (default `/readyz`; an empty string turns it off). A path, so it starts with
    /// `/` (one without would never match, and is refused).
    /// Its body lists every adapter's health (this worker's and the per-process ones):
    /// `{"status":"ready","adapters":[{"adapter":"http","worker":0,"health":"healthy"}]}`;
    /// 503 with `Retry-After` and the same body when one is unhealthy.
    #[serde(deserialize_with = "probe_path")]
    pub readiness_path: Option<String>,
    /// The liveness route: 200 `{"status":"alive"}` while the process runs, draining
    /// or not, asking nothing of the adapters (default `/livez`; an empty string turns
    /// it off).
    #[serde(deserialize_with = "probe_path")]
    pub liveness_path: Option<String>,
    /// How long to keep serving normally after readiness turns 503, so a load balancer
    /// takes the instance out before the listener closes (default 0).
    #[serde(with = "duration")]
    pub lame_duck: Duration,
    /// How long a keep-alive connection that is idle when the listener closes (after
    /// the lame duck) is kept open for one more request (default 1 s). An HTTP/1.1
    /// client may be sending its next request on a connection the server sees idle:
    /// closing it at once would lose that request. Within the grace, the request is
    /// served, its answer with `Connection: close`; a connection that
    /// stays quiet for the grace is closed. The same holds for a connection accepted
    /// whose first request has not arrived yet. The grace ends by the drain's deadline
    /// at the latest; 0 closes idle connections at once (a request on its way then
    /// meets a closed connection). Every connection closed in the drain is closed with
    /// a lingering read, not with a reset that could destroy an answer its client has
    /// not read yet: the writing side first, then what the client still sends is read
    /// and dropped until it closes its side or sends nothing for as long as the grace
    /// (at least 0.1 s, at most 2 s; 5 s in all).
    #[serde(with = "duration")]
    pub drain_idle_grace: Duration,
    /// The `Retry-After` (seconds) of 503s: while draining, and for a handler past its
    /// time limit (503 `TIMEOUT`) (default 1).
    pub retry_after: u64,
    /// Serve HTTP/2 with prior knowledge (h2c) besides HTTP/1.1 (default true).
    pub http2: bool,
    /// One `nucleon::access` log line per request (default true).
    pub access_log: bool,
    /// Bind the port even while another process listens on it (default false): the
    /// new process of a restart without downtime (the command line's `--replace`), whose
    /// listeners join the old one's `SO_REUSEPORT` group before the old one drains.
    /// Both must run as the same user (the kernel's rule for the group). Without it, a
    /// second instance on a port in use is refused at start, a mistake more often than
    /// not.
    pub share_port: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".into(),
            port: 8000,
            backlog: 4096,
            header_read_timeout: Duration::from_secs(10),
            max_header_size: 16 * 1024,
            body_limit: DEFAULT_BODY_LIMIT,
            send_timeout: Duration::from_secs(60),
            body_read_timeout: Duration::from_secs(30),
            request_timeout: None,
            readiness_path: Some("/readyz".into()),
            liveness_path: Some("/livez".into()),
            lame_duck: Duration::ZERO,
            drain_idle_grace: Duration::from_secs(1),
            retry_after: 1,
            http2: true,
            access_log: true,
            share_port: false,
        }
    }
}

impl HttpConfig {
    /// The address to listen on.
    ///
    /// # Errors
    /// [`ServerError::InvalidHost`] when `host` is not an IP address.
    pub fn addr(&self) -> Result<SocketAddr, ServerError> {
        let ip: IpAddr = self.host.parse().map_err(|_| ServerError::InvalidHost {
            host: self.host.clone(),
        })?;
        Ok(SocketAddr::new(ip, self.port))
    }

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

    fn normalised(mut self) -> Self {
        if self.liveness_path.as_deref() == Some("") {
            self.liveness_path = None;
        }
        if self.readiness_path.as_deref() == Some("") {
            self.readiness_path = None;
        }
        self
    }
}

/// `http.readiness_path`, `http.liveness_path`: empty (off) or a path.
fn probe_path<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<String>, D::Error> {
    let path = Option::<String>::deserialize(deserializer)?;
    match path.as_deref() {
        Some(path) if !path.is_empty() && !path.starts_with('/') => Err(serde::de::Error::custom(
            format!("`{path}` is not a path: write \"/{path}\" (or \"\" for no such route)"),
        )),
        _ => Ok(path),
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
fn bind(addr: SocketAddr, backlog: u32) -> io::Result<TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    TcpListener::from_std(socket.into())
}

/// The HTTP server adapter: add one per worker (the umbrella's `App` does).
///
/// ```no_run
/// use nucleon_http::{get, HttpConfig, HttpServer, Router};
/// use nucleon_runtime::Runtime;
///
/// async fn hello() -> &'static str { "hello" }
///
/// let router = Router::new().route("/", get(hello));
/// let mut config = HttpConfig::default();
/// config.port = 8080;
/// Runtime::builder()
///     .per_worker(move |worker| {
///         worker.adapter(HttpServer::new(router.clone(), config.clone()));
///         Ok(())
///     })
///     .build()?
///     .run()?;
/// # Ok::<(), nucleon_runtime::RuntimeError>(())
/// ```
pub struct HttpServer {
    router: Router,
    config: HttpConfig,
    running: Option<Running>,
}

struct Running {
    shared: Rc<Shared>,
    /// `None` once the drain closed the listener.
    accept: Option<tokio::task::JoinHandle<()>>,
    watch: tokio::task::JoinHandle<()>,
    local_addr: SocketAddr,
}

struct Shared {
    service: HttpService,
    http1: http1::Builder,
    /// `None` when `http.http2` is off.
    http2: Option<http2::Builder<LocalExec>>,
    header_read_timeout: Duration,
    body_read_timeout: Duration,
    send_timeout: Duration,
    shutdown: watch::Sender<bool>,
    /// `shutdown` for connections still waiting for their first bytes (serving ones
    /// learn of the drain from the watcher).
    closed: Notify,
    connections: Cell<usize>,
    idle: Notify,
    watcher: Watcher,
}

impl Shared {
    /// When a connection quiet in the drain since `since` is closed: after
    /// `http.drain_idle_grace`, by the drain's deadline at the latest.
    fn grace_end(&self, since: Instant) -> Instant {
        self.watcher
            .by_deadline(since + self.service.drain_idle_grace())
    }

    /// Closes a connection in the drain with a lingering read (see [`linger_close`]):
    /// for as long as the client sends something, up to the grace (0.1 to 2 s) apart,
    /// by the drain's deadline at the latest.
    async fn drain_close(&self, stream: &RefCell<TcpStream>) {
        let idle = self
            .service
            .drain_idle_grace()
            .clamp(DRAIN_LINGER_IDLE, LINGER_IDLE);
        let until = self.watcher.by_deadline(Instant::now() + LINGER_TIME);
        linger_close_until(stream, idle, until).await;
    }
}

impl std::fmt::Debug for HttpServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpServer")
            .field("config", &self.config)
            .field("local_addr", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl HttpServer {
    /// A server for `router` with `config`. Nothing binds until the runtime starts it.
    pub fn new(router: Router, config: HttpConfig) -> Self {
        Self {
            router,
            config: config.normalised(),
            running: None,
        }
    }

    /// The address this worker listens on, once started.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.running.as_ref().map(|r| r.local_addr)
    }
}

impl Adapter for HttpServer {
    type Handle = ();

    fn name(&self) -> &str {
        "http"
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<(), BoxError> {
        let addr = self.config.addr()?;
        let listener =
            bind(addr, self.config.backlog).map_err(|source| ServerError::Bind { addr, source })?;
        let local_addr = listener.local_addr()?;
        let service = HttpService::new(&self.router, &self.config, Some(ctx.drain().clone()));
        let (http1, http2) = builders(&self.config);
        let (shutdown, _) = watch::channel(false);
        let shared = Rc::new(Shared {
            service,
            http1,
            http2,
            header_read_timeout: self.config.header_read_timeout,
            body_read_timeout: self.config.body_read_timeout,
            send_timeout: self.config.send_timeout,
            shutdown,
            closed: Notify::new(),
            connections: Cell::new(0),
            idle: Notify::new(),
            watcher: Watcher::default(),
        });
        let watch = nucleon_runtime::spawn("http timeouts", watch_loop(Rc::clone(&shared)));
        let accept =
            nucleon_runtime::spawn("http accept", accept_loop(Rc::clone(&shared), listener));
        tracing::info!(target: "nucleon::http", worker = ?ctx.worker(), "listening on http://{local_addr}");
        self.running = Some(Running {
            shared,
            accept: Some(accept),
            watch,
            local_addr,
        });
        Ok(())
    }

    async fn health(&self) -> Health {
        match &self.running {
            Some(running) if *running.shared.shutdown.borrow() => {
                Health::Unhealthy("draining: listener closed".into())
            }
            Some(_) => Health::Healthy,
            None => Health::Unhealthy("not started".into()),
        }
    }

    /// Readiness answers 503 from the drain's start (the pipeline sees the drain); after
    /// `http.lame_duck` (bounded by `deadline`) the listener closes, and requests that
    /// still arrive on connections it accepted are served, with `Connection: close`
    /// (a restart on the same port hands new connections to the new process; the old
    /// one loses none it took).
    async fn drain(&mut self, deadline: Instant) {
        let lame_duck = self.config.lame_duck;
        if self.running.is_some() && !lame_duck.is_zero() {
            tracing::info!(target: "nucleon::http", "draining: readiness answers 503; lame duck for {lame_duck:?}");
            let until = (Instant::now() + lame_duck).min(deadline);
            tokio::time::sleep_until(until.into()).await;
        }
        self.close(deadline).await;
    }

    /// Waits for the connections still open to end, by `deadline`.
    async fn stop(&mut self, deadline: Instant) -> Result<(), BoxError> {
        // Not drained first (a later adapter failed to start): close now, with no
        // lame duck for a server that never served.
        self.close(deadline).await;
        let Some(running) = self.running.take() else {
            return Ok(());
        };
        let shared = &running.shared;
        let wait = async {
            loop {
                let idle = shared.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if shared.connections.get() == 0 {
                    return;
                }
                idle.await;
            }
        };
        let waited = tokio::time::timeout_at(deadline.into(), wait).await;
        running.watch.abort();
        match waited {
            Ok(()) => Ok(()),
            Err(_) => Err(format!(
                "{} connection(s) still open at the shutdown deadline",
                shared.connections.get()
            )
            .into()),
        }
    }
}

impl HttpServer {
    /// Closes the listener (once): no new connections, no new requests.
    async fn close(&mut self, deadline: Instant) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let Some(accept) = running.accept.take() else {
            return;
        };
        // First: connections time their grace and lingering close by it.
        running.shared.watcher.set_deadline(deadline);
        running.shared.service.set_closing();
        running.shared.shutdown.send_replace(true);
        running.shared.closed.notify_waiters();
        running.shared.watcher.close_all();
        let _ = accept.await;
    }
}

/// hyper's HTTP/1 and HTTP/2 (h2c with prior knowledge) connection builders.
///
/// hyper's own header read timeout is off: the connection task keeps it (see
/// `ConnState`).
fn builders(config: &HttpConfig) -> (http1::Builder, Option<http2::Builder<LocalExec>>) {
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

async fn accept_loop(shared: Rc<Shared>, listener: TcpListener) {
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
struct AcceptBackoff {
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

fn start_connection(shared: &Rc<Shared>, stream: TcpStream, remote: SocketAddr) {
    if let Err(error) = stream.set_nodelay(true) {
        tracing::debug!(target: "nucleon::http", %error, "cannot set TCP_NODELAY");
    }
    shared.connections.set(shared.connections.get() + 1);
    let shared = Rc::clone(shared);
    let state = ConnState::new(stream, remote);
    state.send_timeout.set(shared.send_timeout);
    nucleon_runtime::spawn(CONNECTION_LABEL, serve_connection(shared, state));
}

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

/// What the first bytes of a connection say.
enum Speaks {
    Http1,
    Http2,
    /// The client closed the connection (or it failed) before sending anything.
    Closed,
    /// The drain closed the listener, and nothing came within the idle grace.
    Quiet,
}

/// The HTTP/2 connection preface (h2c with prior knowledge starts with it).
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Waits for the connection's first bytes and tells HTTP/2 (its preface) from
/// HTTP/1.1, without reading them: hyper then reads the untouched stream into its own
/// buffer. A partial preface (`PRI` so far) waits for more bytes.
async fn sniff(stream: &RefCell<TcpStream>, http2: bool) -> Speaks {
    let mut buf = [0_u8; 24];
    loop {
        let mut read = ReadBuf::new(&mut buf);
        let peeked = std::future::poll_fn(|cx| stream.borrow().poll_peek(cx, &mut read)).await;
        let n = match peeked {
            Ok(0) | Err(_) => return Speaks::Closed,
            Ok(n) => n,
        };
        if !http2 || buf[..n] != H2_PREFACE[..n] {
            return Speaks::Http1;
        }
        if n == H2_PREFACE.len() {
            return Speaks::Http2;
        }
        // A peer that half-closed after part of the preface: tokio keeps a read-closed
        // socket ready, so waiting for more would spin. hyper reads the bytes and the
        // end of the stream, and ends the connection as any cut-off request head.
        if read_closed(&stream.borrow()) {
            return Speaks::Http1;
        }
        // The socket stays readable while those bytes wait in it: clear its readiness
        // unless more have come, so the next peek waits for them (tokio's readiness
        // tick keeps an arrival between the two from being lost).
        let stream = stream.borrow();
        let _ = stream.try_io(tokio::io::Interest::READABLE, || {
            let mut more = [std::mem::MaybeUninit::<u8>::uninit(); 24];
            match SockRef::from(&*stream).peek(&mut more)? {
                m if m > n => Ok(()),
                _ => Err(io::ErrorKind::WouldBlock.into()),
            }
        });
    }
}

/// The peer has closed its writing side (as far as the loop knows): a look at the
/// socket's readiness, without waiting.
fn read_closed(stream: &TcpStream) -> bool {
    let ready = std::pin::pin!(stream.ready(tokio::io::Interest::READABLE));
    matches!(
        ready.poll(&mut Context::from_waker(Waker::noop())),
        Poll::Ready(Ok(ready)) if ready.is_read_closed()
    )
}

/// Bytes wait in the socket (the kernel's answer, not the loop's readiness).
fn has_pending_bytes(stream: &RefCell<TcpStream>) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    SockRef::from(&*stream.borrow())
        .peek(&mut byte)
        .is_ok_and(|n| n > 0)
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

async fn serve_connection(shared: Rc<Shared>, state: Rc<ConnState>) {
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
enum Drain1 {
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

impl Drain1 {
    /// The next state, on any wake-up of the connection task (`cx` for the grace's
    /// timer).
    fn next(self, shared: &Shared, state: &ConnState, cx: &mut Context<'_>) -> Self {
        let mut timer = match self {
            Drain1::Serving if !state.is(CLOSING) => return self,
            Drain1::Now | Drain1::Done => return self,
            // `graceful_shutdown` would close at once a connection whose next request
            // head is only partly read (or has not been read from the socket yet).
            _ if state.request_under_way() => return Drain1::Request,
            Drain1::Quiet(timer) => timer,
            Drain1::Serving | Drain1::Request => Box::pin(tokio::time::sleep_until(
                shared.grace_end(Instant::now()).into(),
            )),
        };
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Drain1::Now,
            Poll::Pending => Drain1::Quiet(timer),
        }
    }
}

/// A connection flag: the watcher found the header read timeout passed.
const EXPIRED: u8 = 1;
/// A connection flag: the drain began.
const CLOSING: u8 = 2;

/// The worker's watch over its serving connections: the header read timeout and the
/// drain. One task looks at every connection a few times per timeout and wakes the
/// ones whose time is up; the drain flags them all at once. A connection's own task
/// then has no timer and no `Notify` to poll on each of its wake-ups (a request on a
/// keep-alive connection is one or two), only a flag to read.
#[derive(Default)]
struct Watcher {
    connections: RefCell<Vec<Weak<ConnState>>>,
    closing: Cell<bool>,
    /// The drain's deadline, once told (see [`Watcher::set_deadline`]).
    deadline: Cell<Option<Instant>>,
}

impl Watcher {
    /// The drain's deadline: the idle grace of connections (`http.drain_idle_grace`)
    /// and their lingering closes end by it. Set by the adapter's `drain(deadline)`,
    /// before [`Watcher::close_all`]; without it they are bounded by their own lengths.
    fn set_deadline(&self, deadline: Instant) {
        self.deadline.set(Some(deadline));
    }

    /// `at`, or the drain's deadline if that comes first.
    fn by_deadline(&self, at: Instant) -> Instant {
        self.deadline.get().map_or(at, |deadline| at.min(deadline))
    }

    /// Watches `state` until its connection ends.
    fn watch(&self, state: &Rc<ConnState>) {
        self.connections.borrow_mut().push(Rc::downgrade(state));
        if self.closing.get() {
            state.raise(CLOSING);
        }
    }

    /// Flags the connections past `timeout` (and forgets the ended ones).
    fn sweep(&self, timeout: Duration) {
        self.connections
            .borrow_mut()
            .retain(|weak| match weak.upgrade() {
                Some(state) => {
                    if state.expired(timeout).is_some() {
                        state.raise(EXPIRED);
                    }
                    true
                }
                None => false,
            });
    }

    /// The drain began: flags every connection, now and from now on.
    fn close_all(&self) {
        self.closing.set(true);
        for state in self.connections.borrow().iter().filter_map(Weak::upgrade) {
            state.raise(CLOSING);
        }
    }
}

/// How often the watcher looks: a quarter of the header read timeout (so a timeout
/// ends within 1.25 times its length), between 5 ms and 1 s.
fn watch_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

async fn watch_loop(shared: Rc<Shared>) {
    let timeout = shared.header_read_timeout;
    let mut ticks = tokio::time::interval(watch_interval(timeout));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        shared.watcher.sweep(timeout);
    }
}

/// How a connection's HTTP/1 serving ended.
enum Ended {
    /// hyper finished (the client closed, an error, a drained connection).
    Done,
    /// The header read timeout passed with nothing under way: close.
    Idle,
    /// The header read timeout passed in the middle of a request's head: 408.
    SlowHead,
    /// Writes stayed blocked past `http.send_timeout` (the client does not read):
    /// close.
    Unread,
}

async fn serve_http1(shared: &Shared, state: Rc<ConnState>) {
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
    let mut drain = Drain1::Serving;
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
            drain = std::mem::replace(&mut drain, Drain1::Done).next(shared, &state, cx);
            if let Drain1::Now = drain {
                drain = Drain1::Done;
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

async fn serve_http2(shared: &Shared, state: Rc<ConnState>) {
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

/// hyper's side of a connection: every request goes through the worker's pipeline.
struct ConnectionService {
    service: HttpService,
    /// `http.body_read_timeout`, for every request's body.
    body_read_timeout: Duration,
    /// The connection: the client's address, and what the header read timeout needs.
    state: Rc<ConnState>,
    /// Poll a request's future once inside `call`, with the connection task's waker
    /// (HTTP/1, where the request's future runs in the connection's task).
    ///
    /// Why: right after `call`, before it polls the future, hyper's HTTP/1 dispatcher
    /// reads the socket again (to notice a client hanging up). The request's head
    /// still holds the read buffer then (its URI and header values are slices of it),
    /// so that read makes hyper allocate a new buffer (8 KiB) and the old one is freed
    /// when the request is: an allocation and a free of a large block, per request. A
    /// handler done on its first poll (most are) has dropped the request before that
    /// read, and the buffer is used again.
    ///
    /// `false` (HTTP/2): the whole pipeline runs in the stream's task instead (see
    /// `ConnectionService::in_stream_task`).
    poll_at_once: bool,
}

/// Marks a request in service until its response is ready (or it is dropped).
pub(crate) struct InService(Rc<ConnState>);

impl InService {
    /// The connection task's watchdog label.
    pub(crate) fn label(&self) -> Option<&LabelHandle> {
        self.0.label.get()
    }

    /// The client's address as text, written on the connection's first request.
    pub(crate) fn remote_text(&self) -> Rc<str> {
        let state = &self.0;
        Rc::clone(
            state
                .remote_text
                .get_or_init(|| Rc::from(state.remote.to_string())),
        )
    }
}

impl InService {
    /// The request was answered before its body was read: the connection closes after
    /// the answer, reading what the client still sends first (see `linger_close`).
    pub(crate) fn body_left_unread(&self) {
        self.0.body_left_unread.set(true);
    }

    /// Counts a streaming response body of this connection until it is dropped.
    pub(crate) fn sending_body(&self) -> SendingBody {
        let count = self.0.sending.get_or_init(Arc::default);
        count.fetch_add(1, Ordering::Relaxed);
        SendingBody(Arc::clone(count))
    }
}

/// A streaming response body being sent: counted (see `ConnState::sending`) until
/// hyper drops it, at its end or the connection's. `Send`, as a [`Body`] must be.
#[derive(Debug)]
pub(crate) struct SendingBody(Arc<AtomicU32>);

impl Drop for SendingBody {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Drop for InService {
    fn drop(&mut self) {
        let state = &self.0;
        state.in_service.set(state.in_service.get() - 1);
        state.idle_since.set(Instant::now());
    }
}

impl hyper::service::Service<http::Request<Incoming>> for ConnectionService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, request: http::Request<Incoming>) -> Self::Future {
        let state = &self.state;
        state.in_service.set(state.in_service.get() + 1);
        let in_service = InService(Rc::clone(state));
        if !self.poll_at_once {
            return self.in_stream_task(request, in_service);
        }
        // The synchronous part here; one box (the handler's future inside the
        // pipeline's), none for an answer made at once.
        match self.service.start(
            request.map(|body| Body::request(body, self.body_read_timeout)),
            state.remote,
            Some(in_service),
        ) {
            Outcome::Ready(response) => ResponseFuture::Ready(Some(response)),
            Outcome::Pending(future) => state.poll_at_once(future),
        }
    }
}

impl ConnectionService {
    /// An HTTP/2 request: the whole pipeline runs in the stream's own task, routing
    /// included, so that the watchdog knows that task by the request's route (hyper
    /// calls the service in the connection's task, then spawns its future).
    #[cold]
    #[inline(never)]
    fn in_stream_task(
        &self,
        request: http::Request<Incoming>,
        in_service: InService,
    ) -> ResponseFuture {
        let service = self.service.clone();
        let remote = self.state.remote;
        let body_read_timeout = self.body_read_timeout;
        ResponseFuture::Pending(Box::pin(async move {
            let request = request.map(|body| Body::request(body, body_read_timeout));
            match service.start(request, remote, Some(in_service)) {
                Outcome::Ready(response) => response,
                Outcome::Pending(future) => future.await,
            }
        }))
    }
}

/// hyper's future for a response: ready at once, or the pipeline's boxed future.
enum ResponseFuture {
    Ready(Option<Response>),
    Pending(LocalBoxFuture<'static, Response>),
}

impl Future for ResponseFuture {
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            ResponseFuture::Ready(response) => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                None => Poll::Pending,
            },
            ResponseFuture::Pending(future) => future.as_mut().poll(cx).map(Ok),
        }
    }
}

/// Runs hyper's HTTP/2 stream tasks on the worker, tracked by the watchdog.
#[derive(Clone, Copy)]
struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
{
    fn execute(&self, future: F) {
        nucleon_runtime::spawn("http/2 stream", async move {
            future.await;
        });
    }
}

/// An HTTP/1 connection: the TCP stream, shared between hyper and the connection task
/// (which answers 408 itself when a client's headers are too slow), and what the
/// header read timeout needs to know.
///
/// hyper's IO goes through tokio's own `AsyncRead`/`AsyncWrite` for `TcpStream`: they
/// read into the buffer without zeroing it first, and a short read clears the socket's
/// readiness, so the next read waits for epoll instead of making a `recv` that would
/// only return `EAGAIN`. The `RefCell` is borrowed only inside one synchronous poll
/// (hyper's, or the 408 writer's once hyper's connection future has finished), never
/// across an `.await`.
///
/// The header read timeout (slowloris guard) is the connection's, not hyper's: hyper's
/// arms a timer for every request head (a boxed sleep registered in tokio's timer
/// wheel and dropped again: 3.3 % of the server's CPU against 2.1 % for bare hyper).
/// Here the worker's [`Watcher`] looks at every connection a few times per timeout
/// and flags those idle (or stuck in a head) since `idle_since + timeout`; a request
/// costs one clock read.
struct ConnState {
    stream: RefCell<TcpStream>,
    /// The client's address.
    remote: SocketAddr,
    /// Bytes arrived since the last response was written: a request is under way.
    awaiting_response: Cell<bool>,
    /// Requests whose response is not ready yet (handlers running).
    in_service: Cell<u32>,
    /// The last write did not go through: the client is slow to read, not to send.
    write_blocked: Cell<bool>,
    /// Bytes written so far in writes longer than [`CONTROL_WRITE`]: an HTTP/2
    /// connection's progress after its GOAWAY (its keep-alive pings are not).
    written: Cell<u64>,
    /// Since when writes have been blocked (read only while they are).
    write_blocked_since: Cell<Instant>,
    /// `http.send_timeout`: how long writes may stay blocked.
    send_timeout: Cell<Duration>,
    /// Streaming response bodies being sent (made on the first one).
    sending: OnceCell<Arc<AtomicU32>>,
    /// The watcher saw a streaming body being sent, and has not seen it end yet.
    was_sending: Cell<bool>,
    /// Since when hyper has been waiting for a request head: the connection's start,
    /// the last response's, or the end of a blocked write.
    idle_since: Cell<Instant>,
    /// hyper could not parse a request head and its bare answer (400, 414, 431) was
    /// held back: the connection task answers in JSON instead once hyper is done.
    rejected: Cell<Option<StatusCode>>,
    /// A request was answered before its body was read (413, 408): the client may
    /// still be sending it when the connection closes.
    body_left_unread: Cell<bool>,
    /// The connection task's watchdog label, renamed to the route of each request.
    label: OnceCell<LabelHandle>,
    /// The client's address as text, for the access log (written once).
    remote_text: OnceCell<Rc<str>>,
    /// What the watcher found: `EXPIRED`, `CLOSING`.
    flags: Cell<u8>,
    /// The connection task's waker, for the watcher.
    waker: RefCell<Option<Waker>>,
}

impl ConnState {
    /// On the heap, not in the task: the stream and the address are not copied into
    /// every future of the connection.
    fn new(stream: TcpStream, remote: SocketAddr) -> Rc<Self> {
        Rc::new(ConnState {
            stream: RefCell::new(stream),
            remote,
            awaiting_response: Cell::new(false),
            in_service: Cell::new(0),
            write_blocked: Cell::new(false),
            written: Cell::new(0),
            write_blocked_since: Cell::new(Instant::now()),
            send_timeout: Cell::new(Duration::from_secs(60)),
            sending: OnceCell::new(),
            was_sending: Cell::new(false),
            idle_since: Cell::new(Instant::now()),
            rejected: Cell::new(None),
            body_left_unread: Cell::new(false),
            label: OnceCell::new(),
            remote_text: OnceCell::new(),
            flags: Cell::new(0),
            waker: RefCell::new(None),
        })
    }

    /// Keeps the connection task's waker for the watcher (a new one only when it
    /// changed).
    fn remember(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|kept| kept.will_wake(waker)) {
            *slot = Some(waker.clone());
        }
    }

    /// Polls a request's future once with the connection task's waker (see
    /// `ConnectionService::poll_at_once`): its response, or the future to poll again.
    /// Without a waker kept (the connection not polled yet), hyper polls it.
    fn poll_at_once(&self, mut future: LocalBoxFuture<'static, Response>) -> ResponseFuture {
        let Ok(waker) = self.waker.try_borrow() else {
            return ResponseFuture::Pending(future);
        };
        let Some(waker) = waker.as_ref() else {
            return ResponseFuture::Pending(future);
        };
        match future.as_mut().poll(&mut Context::from_waker(waker)) {
            Poll::Ready(response) => ResponseFuture::Ready(Some(response)),
            Poll::Pending => ResponseFuture::Pending(future),
        }
    }

    /// Sets `flag` and wakes the connection task.
    fn raise(&self, flag: u8) {
        self.flags.set(self.flags.get() | flag);
        if let Some(waker) = self.waker.borrow().as_ref() {
            waker.wake_by_ref();
        }
    }

    /// A request is under way: bytes read since the last response was written, a
    /// handler running, a streaming body being sent, or bytes waiting in the socket
    /// (asks the kernel: only for the drain).
    fn request_under_way(&self) -> bool {
        self.awaiting_response.get()
            || self.in_service.get() > 0
            || self
                .sending
                .get()
                .is_some_and(|count| count.load(Ordering::Relaxed) > 0)
            || has_pending_bytes(&self.stream)
    }

    /// Whether `flag` is set.
    fn is(&self, flag: u8) -> bool {
        self.flags.get() & flag != 0
    }

    /// Whether `flag` was set; clears it.
    fn take(&self, flag: u8) -> bool {
        let set = self.is(flag);
        self.flags.set(self.flags.get() & !flag);
        set
    }

    /// How the connection ends if a write has been blocked past the send timeout, or if
    /// the header read timeout has passed: nothing in service, no blocked write, no
    /// streaming body being sent, and quiet since
    /// `idle_since + timeout` (the end of a streaming body counts as its time: when
    /// the watcher first finds it ended).
    fn expired(&self, timeout: Duration) -> Option<Ended> {
        if self.write_blocked.get() {
            // A client that does not read what it is sent: past `http.send_timeout`,
            // the connection ends.
            return (Instant::now() >= self.write_blocked_since.get() + self.send_timeout.get())
                .then_some(Ended::Unread);
        }
        if self.in_service.get() > 0 {
            return None;
        }
        if self
            .sending
            .get()
            .is_some_and(|count| count.load(Ordering::Relaxed) > 0)
        {
            self.was_sending.set(true);
            return None;
        }
        if self.was_sending.replace(false) {
            self.idle_since.set(Instant::now());
            return None;
        }
        if Instant::now() < self.idle_since.get() + timeout {
            return None;
        }
        Some(if self.awaiting_response.get() {
            Ended::SlowHead
        } else {
            Ended::Idle
        })
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
async fn write_error_response(
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

/// The longest a connection is kept to read what its client still sends after the
/// last answer (as nginx's `lingering_time`), and the longest it waits for more.
const LINGER_TIME: Duration = Duration::from_secs(5);
const LINGER_IDLE: Duration = Duration::from_secs(2);
/// The least a connection closed in the drain waits for more (see `Shared::drain_close`).
const DRAIN_LINGER_IDLE: Duration = Duration::from_millis(100);

/// Closes the writing side, then reads and drops what the client still sends (the rest
/// of a body the answer did not need, a pipelined request) until it closes its side,
/// sends nothing for [`LINGER_IDLE`], or [`LINGER_TIME`] has passed. Closing at once
/// with unread bytes would send a reset, and a client still sending could lose the
/// answer before it reads it (Python's `requests` sends a whole body first).
async fn linger_close(stream: &RefCell<TcpStream>) {
    linger_close_until(stream, LINGER_IDLE, Instant::now() + LINGER_TIME).await;
}

/// [`linger_close`] with its bounds: `idle` without a byte, `until` in all.
async fn linger_close_until(stream: &RefCell<TcpStream>, idle: Duration, until: Instant) {
    let _ = SockRef::from(&*stream.borrow()).shutdown(std::net::Shutdown::Write);
    let linger = async {
        let mut buf = [0_u8; 8192];
        loop {
            let ready = std::future::poll_fn(|cx| stream.borrow().poll_read_ready(cx));
            match tokio::time::timeout(idle, ready).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => return,
            }
            match stream.borrow().try_read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout_at(until.into(), linger).await;
}

/// The longest write that is only HTTP/2 control (a PING or its ack: 17 bytes; a
/// WINDOW_UPDATE: 13): not counted as a connection's progress.
const CONTROL_WRITE: usize = 32;

struct SharedIo(Rc<ConnState>);

impl AsyncRead for SharedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let state = &self.0;
        let before = buf.filled().len();
        ready!(Pin::new(&mut *state.stream.borrow_mut()).poll_read(cx, buf))?;
        if buf.filled().len() > before {
            state.awaiting_response.set(true);
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper's own answer to a request head it cannot parse (`Conn::on_parse_error`):
/// exactly `HTTP/1.1 <status> <reason>`, `connection: close`, `content-length: 0`, a
/// `date` and nothing else, in one write of its own. A response of the pipeline always
/// has an `x-request-id`, so it never looks like this.
fn hyper_rejection(data: &[u8]) -> Option<StatusCode> {
    const DATE: usize = "date: Thu, 01 Jan 1970 00:00:00 GMT\r\n\r\n".len();
    const REJECTIONS: [(&[u8], StatusCode); 3] = [
        (
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\ndate: ",
            StatusCode::BAD_REQUEST,
        ),
        (
            b"HTTP/1.1 414 URI Too Long\r\nconnection: close\r\ncontent-length: 0\r\ndate: ",
            StatusCode::URI_TOO_LONG,
        ),
        (
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: ",
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ),
    ];
    // The common case, a response's head or body, fails the first test.
    if data.len() > 128 || !data.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    REJECTIONS.iter().find_map(|&(head, status)| {
        (data.len() == head.len() - "date: ".len() + DATE
            && data.starts_with(head)
            && data.ends_with(b"\r\n\r\n"))
        .then_some(status)
    })
}

/// Up to this many bytes in several buffers, a vectored write (hyper's head and body)
/// is copied into one buffer and written with one `send`: the kernel's `writev` path
/// costs more than the copy (measured with `benches/http-bench`: bare hyper answering
/// `/json` used 7–10 % less CPU per request with one buffer per response than with its
/// usual head-and-body `writev`). A larger response goes out as it is, without a copy.
const COALESCE_LIMIT: usize = 4096;

/// Writes `bufs` (`len` bytes in all, at most `N`) as one buffer. A scratch buffer
/// of the size class above `len`, so a small response does not pay for zeroing 4 KiB.
fn write_coalesced<const N: usize>(
    stream: &mut TcpStream,
    cx: &mut Context<'_>,
    bufs: &[io::IoSlice<'_>],
    len: usize,
) -> Poll<io::Result<usize>> {
    let mut scratch = [0_u8; N];
    let mut at = 0;
    for buf in bufs {
        scratch[at..at + buf.len()].copy_from_slice(buf);
        at += buf.len();
    }
    Pin::new(stream).poll_write(cx, &scratch[..len])
}

impl SharedIo {
    /// Holds hyper's bare rejection back (reporting it written): the connection task
    /// answers in JSON once hyper's connection has finished.
    fn hold_rejection(&self, data: &[u8]) -> bool {
        match hyper_rejection(data) {
            Some(status) => {
                self.0.rejected.set(Some(status));
                true
            }
            None => false,
        }
    }

    fn wrote(&self, result: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        let state = &self.0;
        if let Poll::Ready(Ok(n)) = result
            && n > CONTROL_WRITE
        {
            state.written.set(state.written.get() + n as u64);
        }
        if result.is_pending() {
            if !state.write_blocked.replace(true) {
                state.write_blocked_since.set(Instant::now());
            }
        } else if state.write_blocked.get() {
            state.write_blocked.set(false);
            state.idle_since.set(Instant::now());
        }
        result
    }
}

impl AsyncWrite for SharedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.awaiting_response.set(false);
        if self.hold_rejection(data) {
            return Poll::Ready(Ok(data.len()));
        }
        let result = Pin::new(&mut *self.0.stream.borrow_mut()).poll_write(cx, data);
        self.wrote(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.0.awaiting_response.set(false);
        if let [only] = bufs
            && self.hold_rejection(only)
        {
            return Poll::Ready(Ok(only.len()));
        }
        let mut stream = self.0.stream.borrow_mut();
        let len: usize = bufs.iter().map(|buf| buf.len()).sum();
        let result = match (bufs.len(), len) {
            (2.., ..=512) => write_coalesced::<512>(&mut stream, cx, bufs, len),
            (2.., ..=COALESCE_LIMIT) => {
                write_coalesced::<COALESCE_LIMIT>(&mut stream, cx, bufs, len)
            }
            _ => Pin::new(&mut *stream).poll_write_vectored(cx, bufs),
        };
        drop(stream);
        self.wrote(result)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.0.rejected.get().is_some() {
            // The JSON answer is still to be written.
            return Poll::Ready(Ok(()));
        }
        Poll::Ready(SockRef::from(&*self.0.stream.borrow()).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;
    use crate::get;

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

    fn shared(closing: bool) -> Rc<Shared> {
        async fn hello() -> &'static str {
            "hello"
        }
        let router = Router::new().route("/", get(hello));
        let config = HttpConfig::default();
        let (shutdown, _) = watch::channel(closing);
        let service = HttpService::new(&router, &config, None);
        if closing {
            service.set_closing();
        }
        let (http1, http2) = builders(&config);
        Rc::new(Shared {
            service,
            http1,
            http2,
            header_read_timeout: config.header_read_timeout,
            body_read_timeout: config.body_read_timeout,
            send_timeout: config.send_timeout,
            shutdown,
            closed: Notify::new(),
            connections: Cell::new(0),
            idle: Notify::new(),
            watcher: Watcher::default(),
        })
    }

    /// The idle grace of the drain ends by the drain's deadline when the adapter has
    /// told it.
    #[test]
    fn the_idle_grace_ends_by_the_drain_deadline() {
        let shared = shared(true);
        let now = Instant::now();
        assert_eq!(shared.grace_end(now), now + Duration::from_secs(1));
        shared
            .watcher
            .set_deadline(now + Duration::from_millis(300));
        assert_eq!(shared.grace_end(now), now + Duration::from_millis(300));
        assert_eq!(
            shared.grace_end(now - Duration::from_secs(5)),
            now - Duration::from_secs(4)
        );
    }

    /// Past the lame duck a request that arrives on an accepted connection is served
    /// and the connection closes: an answer, not a reset.
    fn assert_answered(text: &str) {
        assert!(text.starts_with("HTTP/1.1 200"), "got {text:?}");
        assert!(text.ends_with("hello"), "got {text:?}");
        assert!(text.contains("connection: close\r\n"), "got {text:?}");
    }

    async fn read_all(mut client: TcpStream) -> String {
        let mut text = String::new();
        let _ = client.read_to_string(&mut text).await;
        text
    }

    /// Vectored writes reach the client byte for byte whichever way they go out: copied
    /// into one buffer (small, in either size class) or as they are (large).
    #[tokio::test]
    async fn vectored_writes_arrive_intact_coalesced_or_not() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (server, remote) = listener.accept().await.unwrap();
        let mut io = SharedIo(ConnState::new(server, remote));
        let reader = tokio::spawn(read_bytes(client));
        let mut expected = Vec::new();
        for (head, body) in [
            (60, 27),
            (200, 300),
            (300, 3000),
            (400, 5000),
            (500, 200_000),
        ] {
            let head: Vec<u8> = (0..head).map(|i| (i % 251) as u8).collect();
            let body: Vec<u8> = (0..body).map(|i| (i % 241) as u8).collect();
            expected.extend_from_slice(&head);
            expected.extend_from_slice(&body);
            let (mut head, mut body) = (&head[..], &body[..]);
            while !head.is_empty() || !body.is_empty() {
                let bufs = [io::IoSlice::new(head), io::IoSlice::new(body)];
                let n = std::future::poll_fn(|cx| Pin::new(&mut io).poll_write_vectored(cx, &bufs))
                    .await
                    .unwrap();
                let from_head = n.min(head.len());
                head = &head[from_head..];
                body = &body[n - from_head..];
            }
        }
        std::future::poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx))
            .await
            .unwrap();
        assert_eq!(reader.await.unwrap(), expected);
    }

    async fn read_bytes(mut client: TcpStream) -> Vec<u8> {
        let mut bytes = Vec::new();
        client.read_to_end(&mut bytes).await.unwrap();
        bytes
    }

    /// hyper's bare rejections are recognised exactly; the pipeline's answers, which
    /// always carry an `x-request-id`, never are.
    #[test]
    fn settings_that_could_not_work_are_refused_with_their_key() {
        let http = |toml: &str| {
            nucleon_runtime::Config::from_toml(&format!("[default.http]\n{toml}\n"), "default")
                .and_then(|config| config.extract_at::<HttpConfig>("http"))
        };
        for (toml, key, says) in [
            ("request_timeout = \"0s\"", "request_timeout", "more than 0"),
            (
                "readiness_path = \"readyz\"",
                "readiness_path",
                "write \"/readyz\"",
            ),
        ] {
            let error = http(toml).expect_err(toml).to_string();
            assert!(
                error.contains(key) && error.contains(says),
                "{toml}: {error}"
            );
        }
        let fine = http("request_timeout = \"2s\"\nreadiness_path = \"/health\"").unwrap();
        assert_eq!(fine.request_timeout, Some(Duration::from_secs(2)));
        assert_eq!(fine.readiness_path.as_deref(), Some("/health"));
        let off = http("readiness_path = \"\"").unwrap().normalised();
        assert_eq!(off.readiness_path, None);
        assert_eq!(http("").unwrap(), HttpConfig::default());
    }

    #[test]
    fn hyper_rejections_are_told_from_responses() {
        let date = "date: Thu, 26 Nov 2026 02:31:01 GMT\r\n\r\n";
        let bare = |line: &str| {
            format!("HTTP/1.1 {line}\r\nconnection: close\r\ncontent-length: 0\r\n{date}")
        };
        assert_eq!(
            hyper_rejection(bare("400 Bad Request").as_bytes()),
            Some(StatusCode::BAD_REQUEST)
        );
        assert_eq!(
            hyper_rejection(bare("414 URI Too Long").as_bytes()),
            Some(StatusCode::URI_TOO_LONG)
        );
        assert_eq!(
            hyper_rejection(bare("431 Request Header Fields Too Large").as_bytes()),
            Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)
        );
        let ours = format!(
            "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\nx-request-id: a-1\r\n{date}"
        );
        assert_eq!(hyper_rejection(ours.as_bytes()), None);
        assert_eq!(
            hyper_rejection(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"),
            None
        );
        assert_eq!(hyper_rejection(b"hello"), None);
    }

    /// A connection accepted after the drain began, whose request has already arrived,
    /// is answered, not cancelled by `graceful_shutdown` before its first read.
    #[tokio::test]
    async fn a_connection_started_during_the_drain_answers_its_request() {
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
                let addr = listener.local_addr().unwrap();
                for _ in 0..20 {
                    let mut client = TcpStream::connect(addr).await.unwrap();
                    client
                        .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
                        .await
                        .unwrap();
                    let (stream, remote) = listener.accept().await.unwrap();
                    let shared = shared(true);
                    shared.connections.set(1);
                    serve_connection(shared, ConnState::new(stream, remote)).await;
                    let text = read_all(client).await;
                    assert_answered(&text);
                }
            })
            .await;
    }

    /// Connections the kernel accepted before the listener closes are answered, even
    /// when the loop has not seen the listener's readiness since they arrived.
    #[tokio::test]
    #[allow(
        clippy::disallowed_methods,
        reason = "a blocking loopback connect: the loop must not turn before the drain"
    )]
    async fn the_backlog_is_answered_when_the_listener_closes() {
        use std::io::Write;
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async {
                let listener = bind("127.0.0.1:0".parse().unwrap(), 16).unwrap();
                let addr = listener.local_addr().unwrap();
                // No `.await` from here to the drain: the loop never learns of these.
                let clients: Vec<std::net::TcpStream> = (0..3)
                    .map(|_| {
                        let mut client = std::net::TcpStream::connect(addr).unwrap();
                        client
                            .write_all(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
                            .unwrap();
                        client
                    })
                    .collect();
                let shared = shared(true);
                accept_loop(Rc::clone(&shared), listener).await;
                assert_eq!(shared.connections.get(), 3, "every queued connection taken");
                for client in clients {
                    client.set_nonblocking(true).unwrap();
                    let text = read_all(TcpStream::from_std(client).unwrap()).await;
                    assert_answered(&text);
                }
            })
            .await;
    }
}
