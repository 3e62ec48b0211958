//! Protocol sniffing: a new connection's first bytes tell HTTP/2 with prior
//! knowledge (its preface) from HTTP/1.1, peeked, not read.

use std::cell::RefCell;
use std::io;
use std::task::{Context, Poll, Waker};

use socket2::SockRef;
use tokio::io::ReadBuf;
use tokio::net::TcpStream;

/// What the first bytes of a connection say.
pub(super) enum Speaks {
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
pub(super) async fn sniff(stream: &RefCell<TcpStream>, http2: bool) -> Speaks {
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
