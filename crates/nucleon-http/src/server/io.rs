//! The socket as hyper sees it ([`SharedIo`]): reads and writes that keep the
//! connection's state (a request under way, writes blocked, progress), small
//! responses written in one `send`, and hyper's bare rejections held back.

use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http::StatusCode;
use socket2::SockRef;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::conn::ConnState;

/// The longest write that is only HTTP/2 control (a PING or its ack: 17 bytes; a
/// WINDOW_UPDATE: 13): not counted as a connection's progress.
pub(super) const CONTROL_WRITE: usize = 32;

pub(super) struct SharedIo(pub(super) Rc<ConnState>);

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
    use tokio::io::AsyncReadExt;
    use tokio::net::TcpListener;

    use super::*;

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
}
