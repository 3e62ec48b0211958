//! Happy Eyeballs (RFC 8305) connection establishment over already-resolved addresses.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::net::TcpStream;

use crate::error::ConnectError;

type Attempt = Pin<Box<dyn Future<Output = (SocketAddr, io::Result<TcpStream>)> + Send>>;

/// Orders addresses as RFC 8305 §4 says: alternate families, starting with the family of
/// the first (preferred) address, keeping each family's own order.
pub(crate) fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(first) = addrs.first() else {
        return addrs;
    };
    let first_v6 = first.is_ipv6();
    let (mut preferred, mut other): (Vec<_>, Vec<_>) =
        addrs.into_iter().partition(|a| a.is_ipv6() == first_v6);
    let mut out = Vec::with_capacity(preferred.len() + other.len());
    preferred.reverse();
    other.reverse();
    loop {
        match (preferred.pop(), other.pop()) {
            (None, None) => break,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
    out
}

fn attempt(addr: SocketAddr, timeout: Duration) -> Attempt {
    Box::pin(async move {
        let result = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => stream.set_nodelay(true).map(|()| stream),
            Ok(Err(error)) => Err(error),
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {timeout:?}"),
            )),
        };
        (addr, result)
    })
}

/// Tries `addrs` (interleaved by family); starts the next one when the running attempts
/// have not succeeded within `attempt_delay`, or as soon as one fails. First success wins.
pub(crate) async fn happy_eyeballs(
    host: &str,
    port: u16,
    addrs: Vec<SocketAddr>,
    attempt_delay: Duration,
    attempt_timeout: Duration,
) -> Result<TcpStream, ConnectError> {
    let mut queue = interleave(addrs).into_iter();
    let mut running: FuturesUnordered<Attempt> = FuturesUnordered::new();
    let mut failures = Vec::new();
    if let Some(addr) = queue.next() {
        running.push(attempt(addr, attempt_timeout));
    }
    while !running.is_empty() {
        let more = queue.len() > 0;
        tokio::select! {
            Some((addr, result)) = running.next() => match result {
                Ok(stream) => {
                    tracing::trace!(target: "nucleon::dns", host, %addr, "connected");
                    return Ok(stream);
                }
                Err(error) => {
                    tracing::debug!(target: "nucleon::dns", host, %addr, %error, "connection attempt failed");
                    failures.push((addr, error));
                    if let Some(next) = queue.next() {
                        running.push(attempt(next, attempt_timeout));
                    }
                }
            },
            () = tokio::time::sleep(attempt_delay), if more => {
                if let Some(next) = queue.next() {
                    running.push(attempt(next, attempt_timeout));
                }
            }
        }
    }
    Err(ConnectError::Unreachable {
        host: host.to_owned(),
        port,
        attempts: failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(text: &str) -> SocketAddr {
        text.parse().unwrap()
    }

    #[test]
    fn families_alternate_from_the_preferred_one() {
        let input = vec![
            addr("[::1]:1"),
            addr("[::2]:1"),
            addr("[::3]:1"),
            addr("10.0.0.1:1"),
            addr("10.0.0.2:1"),
        ];
        assert_eq!(
            interleave(input),
            vec![
                addr("[::1]:1"),
                addr("10.0.0.1:1"),
                addr("[::2]:1"),
                addr("10.0.0.2:1"),
                addr("[::3]:1"),
            ]
        );
        let v4_first = vec![addr("10.0.0.1:1"), addr("[::1]:1")];
        assert_eq!(interleave(v4_first.clone()), v4_first);
        assert!(interleave(Vec::new()).is_empty());
    }

    #[tokio::test]
    async fn a_refused_address_falls_through_to_the_next() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let good = listener.local_addr().unwrap();
        // A port just released: nothing listens there.
        let closed = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let stream = happy_eyeballs(
            "test",
            good.port(),
            vec![closed, good],
            Duration::from_secs(5),
            Duration::from_secs(5),
        )
        .await
        .unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good);
    }

    #[tokio::test]
    async fn every_failure_is_listed() {
        let closed = {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            l.local_addr().unwrap()
        };
        let error = happy_eyeballs(
            "db.internal",
            closed.port(),
            vec![closed],
            Duration::from_millis(250),
            Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        let text = error.to_string();
        assert!(text.contains("db.internal"), "{text}");
        assert!(text.contains(&closed.to_string()), "{text}");
    }
}
