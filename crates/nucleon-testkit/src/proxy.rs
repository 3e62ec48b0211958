//! `TcpProxy`: a TCP proxy inside a test, to cut a client's link to a shared server
//! without touching the server.

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy on `127.0.0.1` to `upstream`, running on the tokio runtime it was
/// started on: [`TcpProxy::cut`] closes every connection through it (the client sees
/// its link drop) and refuses new ones until [`TcpProxy::restore`];
/// [`TcpProxy::reset`] closes the connections but keeps accepting.
///
/// ```no_run
/// # async fn f() {
/// let proxy = nucleon_testkit::TcpProxy::start("127.0.0.1:5672".parse().unwrap()).await;
/// // connect the client to proxy.addr() …
/// proxy.reset(); // every connection through it drops; the client reconnects
/// # }
/// ```
#[derive(Debug)]
pub struct TcpProxy {
    addr: SocketAddr,
    open: watch::Sender<bool>,
    /// Bumped to close the connections of the moment.
    epoch: watch::Sender<u64>,
}

impl TcpProxy {
    /// Listens on a free port of `127.0.0.1`, forwarding to `upstream`.
    ///
    /// # Panics
    /// If no port can be bound.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("a free port");
        let addr = listener.local_addr().expect("a bound address");
        let (open, _) = watch::channel(true);
        let (epoch, _) = watch::channel(0_u64);
        let (gate, epochs) = (open.clone(), epoch.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !*gate.borrow() {
                    let _ = client.shutdown().await;
                    continue; // refused while cut
                }
                let mut closed = gate.subscribe();
                let mut reset = epochs.subscribe();
                reset.mark_unchanged();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = closed.wait_for(|open| !*open) => {}
                        _ = reset.changed() => {}
                    }
                });
            }
        });
        Self { addr, open, epoch }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection and refuses new ones.
    pub fn cut(&self) {
        self.open.send_replace(false);
    }

    /// Accepts connections again.
    pub fn restore(&self) {
        self.open.send_replace(true);
    }

    /// Closes every connection of the moment; new ones go through.
    pub fn reset(&self) {
        self.epoch.send_modify(|n| *n += 1);
    }
}
