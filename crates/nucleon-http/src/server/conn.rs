//! A connection's state: what its task, hyper's IO, the worker's watcher and the
//! requests in service know of it (timeouts, the drain, bodies being sent). It
//! depends on nothing else of the server: the pipeline holds a request's mark
//! ([`InService`]) and counts a streaming body ([`SendingBody`]) through it.

use std::cell::{Cell, OnceCell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Waker;
use std::time::{Duration, Instant};

use http::StatusCode;
use nucleon_runtime::TaskLabel;
use nucleon_runtime::task::LabelHandle;
use tokio::net::TcpStream;

use super::socket::has_pending_bytes;

/// The label of a connection task between requests.
pub(crate) const CONNECTION_LABEL: &str = "http connection";

/// Names the current task for the watchdog: through the connection's handle to its
/// label when there is one (a lock, no lookup), else by finding the task.
pub(crate) fn name_task(handle: Option<&LabelHandle>, label: impl Into<TaskLabel>) {
    match handle {
        Some(handle) => handle.set(label),
        None => nucleon_runtime::task::set_label(label),
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
pub(super) struct ConnState {
    pub(super) stream: RefCell<TcpStream>,
    /// The client's address.
    pub(super) remote: SocketAddr,
    /// Bytes arrived since the last response was written: a request is under way.
    pub(super) awaiting_response: Cell<bool>,
    /// Requests whose response is not ready yet (handlers running).
    pub(super) in_service: Cell<u32>,
    /// The last write did not go through: the client is slow to read, not to send.
    pub(super) write_blocked: Cell<bool>,
    /// Bytes written so far in writes longer than
    /// [`CONTROL_WRITE`](super::io::CONTROL_WRITE): an HTTP/2 connection's progress
    /// after its GOAWAY (its keep-alive pings are not).
    pub(super) written: Cell<u64>,
    /// Since when writes have been blocked (read only while they are).
    pub(super) write_blocked_since: Cell<Instant>,
    /// `http.send_timeout`: how long writes may stay blocked.
    pub(super) send_timeout: Cell<Duration>,
    /// Streaming response bodies being sent (made on the first one).
    pub(super) sending: OnceCell<Arc<AtomicU32>>,
    /// The watcher saw a streaming body being sent, and has not seen it end yet.
    pub(super) was_sending: Cell<bool>,
    /// Since when hyper has been waiting for a request head: the connection's start,
    /// the last response's, or the end of a blocked write.
    pub(super) idle_since: Cell<Instant>,
    /// hyper could not parse a request head and its bare answer (400, 414, 431) was
    /// held back: the connection task answers in JSON instead once hyper is done.
    pub(super) rejected: Cell<Option<StatusCode>>,
    /// A request was answered before its body was read (413, 408): the client may
    /// still be sending it when the connection closes.
    pub(super) body_left_unread: Cell<bool>,
    /// The connection task's watchdog label, renamed to the route of each request.
    pub(super) label: OnceCell<LabelHandle>,
    /// The client's address as text, for the access log (written once).
    pub(super) remote_text: OnceCell<Rc<str>>,
    /// What the watcher found: `EXPIRED`, `CLOSING`.
    pub(super) flags: Cell<u8>,
    /// The connection task's waker, for the watcher.
    pub(super) waker: RefCell<Option<Waker>>,
}

impl ConnState {
    /// On the heap, not in the task: the stream and the address are not copied into
    /// every future of the connection.
    pub(super) fn new(stream: TcpStream, remote: SocketAddr) -> Rc<Self> {
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
    pub(super) fn remember(&self, waker: &Waker) {
        let mut slot = self.waker.borrow_mut();
        if !slot.as_ref().is_some_and(|kept| kept.will_wake(waker)) {
            *slot = Some(waker.clone());
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
    pub(super) fn request_under_way(&self) -> bool {
        self.awaiting_response.get()
            || self.in_service.get() > 0
            || self
                .sending
                .get()
                .is_some_and(|count| count.load(Ordering::Relaxed) > 0)
            || has_pending_bytes(&self.stream)
    }

    /// Whether `flag` is set.
    pub(super) fn is(&self, flag: u8) -> bool {
        self.flags.get() & flag != 0
    }

    /// Whether `flag` was set; clears it.
    pub(super) fn take(&self, flag: u8) -> bool {
        let set = self.is(flag);
        self.flags.set(self.flags.get() & !flag);
        set
    }

    /// How the connection ends if a write has been blocked past the send timeout, or if
    /// the header read timeout has passed: nothing in service, no blocked write, no
    /// streaming body being sent, and quiet since
    /// `idle_since + timeout` (the end of a streaming body counts as its time: when
    /// the watcher first finds it ended).
    pub(super) fn expired(&self, timeout: Duration) -> Option<Ended> {
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

/// A connection flag: the watcher found the header read timeout passed.
pub(super) const EXPIRED: u8 = 1;
/// A connection flag: the drain began.
pub(super) const CLOSING: u8 = 2;

/// How a connection's HTTP/1 serving ended.
pub(super) enum Ended {
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

/// The worker's watch over its serving connections: the header read timeout and the
/// drain. One task looks at every connection a few times per timeout and wakes the
/// ones whose time is up; the drain flags them all at once. A connection's own task
/// then has no timer and no `Notify` to poll on each of its wake-ups (a request on a
/// keep-alive connection is one or two), only a flag to read.
#[derive(Default)]
pub(super) struct Watcher {
    connections: RefCell<Vec<Weak<ConnState>>>,
    closing: Cell<bool>,
    /// The drain's deadline, once told (see [`Watcher::set_deadline`]).
    deadline: Cell<Option<Instant>>,
}

impl Watcher {
    /// The drain's deadline: the idle grace of connections (`http.drain_idle_grace`)
    /// and their lingering closes end by it. Set by the adapter's `drain(deadline)`,
    /// before [`Watcher::close_all`]; without it they are bounded by their own lengths.
    pub(super) fn set_deadline(&self, deadline: Instant) {
        self.deadline.set(Some(deadline));
    }

    /// `at`, or the drain's deadline if that comes first.
    pub(super) fn by_deadline(&self, at: Instant) -> Instant {
        self.deadline.get().map_or(at, |deadline| at.min(deadline))
    }

    /// Watches `state` until its connection ends.
    pub(super) fn watch(&self, state: &Rc<ConnState>) {
        self.connections.borrow_mut().push(Rc::downgrade(state));
        if self.closing.get() {
            state.raise(CLOSING);
        }
    }

    /// Flags the connections past `timeout` (and forgets the ended ones).
    pub(super) fn sweep(&self, timeout: Duration) {
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
    pub(super) fn close_all(&self) {
        self.closing.set(true);
        for state in self.connections.borrow().iter().filter_map(Weak::upgrade) {
            state.raise(CLOSING);
        }
    }
}

/// How often the watcher looks: a quarter of the header read timeout (so a timeout
/// ends within 1.25 times its length), between 5 ms and 1 s.
pub(super) fn watch_interval(timeout: Duration) -> Duration {
    (timeout / 4).clamp(Duration::from_millis(5), Duration::from_secs(1))
}

/// Marks a request in service until its response is ready (or it is dropped).
pub(crate) struct InService(pub(super) Rc<ConnState>);

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

impl Drop for InService {
    fn drop(&mut self) {
        let state = &self.0;
        state.in_service.set(state.in_service.get() - 1);
        state.idle_since.set(Instant::now());
    }
}

/// A streaming response body being sent: counted (see `ConnState::sending`) until
/// hyper drops it, at its end or the connection's. `Send`, as a [`Body`](crate::Body) must be.
#[derive(Debug)]
pub(crate) struct SendingBody(Arc<AtomicU32>);

impl Drop for SendingBody {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}
