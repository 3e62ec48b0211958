//! What the server asks of a connection's socket directly, past the loop's
//! readiness: whether bytes wait in it, and the lingering close.

use std::cell::RefCell;
use std::io;
use std::time::{Duration, Instant};

use socket2::SockRef;
use tokio::net::TcpStream;

/// Bytes wait in the socket (the kernel's answer, not the loop's readiness).
pub(super) fn has_pending_bytes(stream: &RefCell<TcpStream>) -> bool {
    let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
    SockRef::from(&*stream.borrow())
        .peek(&mut byte)
        .is_ok_and(|n| n > 0)
}

/// The longest a connection is kept to read what its client still sends after the
/// last answer (as nginx's `lingering_time`), and the longest it waits for more.
pub(super) const LINGER_TIME: Duration = Duration::from_secs(5);
pub(super) const LINGER_IDLE: Duration = Duration::from_secs(2);
/// The least a connection closed in the drain waits for more (see `Shared::drain_close`).
pub(super) const DRAIN_LINGER_IDLE: Duration = Duration::from_millis(100);

/// Closes the writing side, then reads and drops what the client still sends (the rest
/// of a body the answer did not need, a pipelined request) until it closes its side,
/// sends nothing for [`LINGER_IDLE`], or [`LINGER_TIME`] has passed. Closing at once
/// with unread bytes would send a reset, and a client still sending could lose the
/// answer before it reads it (Python's `requests` sends a whole body first).
pub(super) async fn linger_close(stream: &RefCell<TcpStream>) {
    linger_close_until(stream, LINGER_IDLE, Instant::now() + LINGER_TIME).await;
}

/// [`linger_close`] with its bounds: `idle` without a byte, `until` in all.
pub(super) async fn linger_close_until(
    stream: &RefCell<TcpStream>,
    idle: Duration,
    until: Instant,
) {
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
