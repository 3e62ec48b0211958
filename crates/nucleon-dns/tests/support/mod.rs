//! A real DNS server for the tests: hickory-server with an in-memory authoritative zone
//! on 127.0.0.1 (UDP and TCP, a free port), on its own thread, counting the queries it
//! receives. Also a server that never answers.

#![allow(dead_code, unreachable_pub, missing_docs)]

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_server::Server;
use hickory_server::net::runtime::{Time, TokioRuntimeProvider};
use hickory_server::proto::rr::rdata::{A, AAAA, SOA, SRV, TXT};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use nucleon_dns::{DnsConfig, IpPreference};

/// The zone every test server serves.
pub const ZONE: &str = "nucleon.test.";

/// One record of the test zone.
pub enum Rec {
    A(&'static str, u32, [u8; 4]),
    Aaaa(&'static str, u32, &'static str),
    Srv(&'static str, u32, u16, u16, u16, &'static str),
    Txt(&'static str, u32, &'static str),
}

/// The zone most tests use.
pub fn standard_zone() -> Vec<Rec> {
    vec![
        Rec::A("api", 300, [127, 0, 0, 1]),
        Rec::Aaaa("api", 300, "::1"),
        Rec::A("short", 1, [127, 0, 0, 2]),
        Rec::A("many", 300, [127, 0, 0, 3]),
        Rec::A("many", 300, [127, 0, 0, 4]),
        // A name that exists, with no address records: an empty answer.
        Rec::Txt("textonly", 300, "v=nucleon1 hello"),
        Rec::Srv("_amqp._tcp", 300, 20, 5, 5673, "backup.nucleon.test."),
        Rec::Srv("_amqp._tcp", 300, 10, 10, 5672, "api.nucleon.test."),
        // RFC 2782: "." says the service is decidedly not available here.
        Rec::Srv("_mqtt._tcp", 300, 0, 0, 0, "."),
    ]
}

struct Counting {
    catalog: Catalog,
    queries: Arc<AtomicUsize>,
    delay: Duration,
    /// Queries for names ending in one of these (lower case, with the trailing dot) are
    /// read and never answered.
    black_holes: Vec<String>,
    /// The same, for AAAA queries only (a server that drops them, as some do).
    silent_aaaa: Vec<String>,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        response_handle: R,
    ) -> ResponseInfo {
        self.queries.fetch_add(1, Ordering::SeqCst);
        if let Ok(info) = request.request_info() {
            let name = info.query.name().to_string().to_ascii_lowercase();
            let aaaa = info.query.query_type() == hickory_server::proto::rr::RecordType::AAAA;
            let silent = |suffixes: &[String]| suffixes.iter().any(|s| name.ends_with(s.as_str()));
            if silent(&self.black_holes) || aaaa && silent(&self.silent_aaaa) {
                // Each request has its own task: this one never answers, others do.
                std::future::pending::<()>().await;
            }
        }
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        self.catalog
            .handle_request::<R, T>(request, response_handle)
            .await
    }
}

/// `.domain.` for each domain, lower case: what a queried name under it ends with.
fn suffixes(domains: &[&str]) -> Vec<String> {
    domains
        .iter()
        .map(|domain| format!(".{}.", domain.trim_end_matches('.').to_ascii_lowercase()))
        .collect()
}

/// A running test DNS server.
pub struct TestDns {
    pub addr: SocketAddr,
    queries: Arc<AtomicUsize>,
    stop: tokio::sync::oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

fn name(label: &str) -> Name {
    Name::from_str(&format!("{label}.{ZONE}")).unwrap()
}

fn catalog(records: Vec<Rec>) -> Catalog {
    let origin = Name::from_str(ZONE).unwrap();
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(
        name("ns"),
        name("admin"),
        1,
        3600,
        600,
        86_400,
        // Negative answers are cached for this long.
        60,
    );
    assert!(zone.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1));
    for rec in records {
        let record = match rec {
            Rec::A(label, ttl, ip) => Record::from_rdata(
                name(label),
                ttl,
                RData::A(A::new(ip[0], ip[1], ip[2], ip[3])),
            ),
            Rec::Aaaa(label, ttl, ip) => Record::from_rdata(
                name(label),
                ttl,
                RData::AAAA(AAAA::from(ip.parse::<std::net::Ipv6Addr>().unwrap())),
            ),
            Rec::Srv(label, ttl, priority, weight, port, target) => Record::from_rdata(
                name(label),
                ttl,
                RData::SRV(SRV::new(
                    priority,
                    weight,
                    port,
                    Name::from_str(target).unwrap(),
                )),
            ),
            Rec::Txt(label, ttl, text) => Record::from_rdata(
                name(label),
                ttl,
                RData::TXT(TXT::new(vec![text.to_owned()])),
            ),
        };
        assert!(zone.upsert_mut(record, 1));
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    catalog
}

impl TestDns {
    /// Starts a server for `records` (answering at once).
    pub fn start(records: Vec<Rec>) -> Self {
        Self::start_with_delay(records, Duration::ZERO)
    }

    /// Starts a server that waits `delay` before each answer.
    pub fn start_with_delay(records: Vec<Rec>, delay: Duration) -> Self {
        Self::start_with(records, delay, Vec::new(), Vec::new())
    }

    /// Starts a server that answers at once, except queries for names under one of
    /// `black_holes` (domains, e.g. `"slow.test"`), which it reads and never answers.
    pub fn start_with_black_holes(records: Vec<Rec>, black_holes: &[&str]) -> Self {
        Self::start_with(records, Duration::ZERO, suffixes(black_holes), Vec::new())
    }

    /// Starts a server that answers at once, except AAAA queries for names under one of
    /// `domains`, which it reads and never answers.
    pub fn start_with_silent_aaaa(records: Vec<Rec>, domains: &[&str]) -> Self {
        Self::start_with(records, Duration::ZERO, Vec::new(), suffixes(domains))
    }

    /// Starts a server for `records` on `addr` (UDP and TCP), say where a stopped one
    /// was: a name server that comes back.
    pub fn start_on(addr: SocketAddr, records: Vec<Rec>) -> Self {
        Self::start_at(Some(addr), records, Duration::ZERO, Vec::new(), Vec::new())
    }

    /// Stops the server and waits until its port is closed.
    pub fn stop(self) {
        let _ = self.stop.send(());
        self.thread.join().unwrap();
    }

    fn start_with(
        records: Vec<Rec>,
        delay: Duration,
        black_holes: Vec<String>,
        silent_aaaa: Vec<String>,
    ) -> Self {
        Self::start_at(None, records, delay, black_holes, silent_aaaa)
    }

    fn start_at(
        at: Option<SocketAddr>,
        records: Vec<Rec>,
        delay: Duration,
        black_holes: Vec<String>,
        silent_aaaa: Vec<String>,
    ) -> Self {
        let queries = Arc::new(AtomicUsize::new(0));
        let handler = Counting {
            catalog: catalog(records),
            queries: Arc::clone(&queries),
            delay,
            black_holes,
            silent_aaaa,
        };
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("test-dns".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let (udp, tcp, addr) = match at {
                        Some(addr) => udp_and_tcp_on(addr).await,
                        None => udp_and_tcp_on_one_port().await,
                    };
                    let mut server = Server::new(handler);
                    server.register_socket(udp);
                    server.register_listener(tcp, Duration::from_secs(5), 16);
                    ready_tx.send(addr).unwrap();
                    let _ = stop_rx.await;
                    let _ = server.shutdown_gracefully().await;
                });
            })
            .unwrap();
        let addr = ready_rx.recv().unwrap();
        Self {
            addr,
            queries,
            stop: stop_tx,
            thread,
        }
    }

    /// The query counter, to read from another thread.
    pub fn counter(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.queries)
    }

    /// Queries received so far.
    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::SeqCst)
    }

    /// A resolver configuration pointing at this server only: no hosts file, IPv4 only
    /// (one query per lookup), one attempt.
    pub fn config(&self) -> DnsConfig {
        dns_config(self.addr)
    }
}

/// A UDP socket and a TCP listener on the same loopback port (a DNS server needs both).
///
/// The kernel picks the UDP port; the same TCP port may be taken (on a busy machine,
/// by another process's connections), so try a few.
async fn udp_and_tcp_on_one_port() -> (tokio::net::UdpSocket, tokio::net::TcpListener, SocketAddr) {
    for _ in 0..100 {
        let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = udp.local_addr().unwrap();
        match tokio::net::TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp, addr),
            Err(error) if error.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(error) => panic!("cannot listen on {addr}: {error}"),
        }
    }
    panic!("no loopback port free for both UDP and TCP after 100 tries");
}

/// A UDP socket and a TCP listener on `addr`.
async fn udp_and_tcp_on(
    addr: SocketAddr,
) -> (tokio::net::UdpSocket, tokio::net::TcpListener, SocketAddr) {
    let udp = tokio::net::UdpSocket::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot bind UDP {addr} again: {e}"));
    let tcp = tokio::net::TcpListener::bind(addr)
        .await
        .unwrap_or_else(|e| panic!("cannot listen on TCP {addr} again: {e}"));
    (udp, tcp, addr)
}

/// A resolver configuration asking only `addr`.
pub fn dns_config(addr: SocketAddr) -> DnsConfig {
    DnsConfig {
        nameservers: vec![addr.to_string()],
        hosts_file: None,
        timeout: Some(Duration::from_secs(2)),
        attempts: Some(1),
        ip_preference: IpPreference::Ipv4Only,
        ..DnsConfig::default()
    }
}

/// A "name server" that reads every query (UDP and TCP) and never answers.
pub struct SilentDns {
    pub addr: SocketAddr,
    pub received: Arc<AtomicUsize>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl SilentDns {
    pub fn start() -> Self {
        let received = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&received);
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("silent-dns".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let (udp, tcp, addr) = udp_and_tcp_on_one_port().await;
                    ready_tx.send(addr).unwrap();
                    let mut held = Vec::new();
                    let mut buf = [0_u8; 1500];
                    tokio::pin!(stop_rx);
                    loop {
                        tokio::select! {
                            _ = &mut stop_rx => break,
                            Ok(_) = udp.recv_from(&mut buf) => {
                                counter.fetch_add(1, Ordering::SeqCst);
                            }
                            Ok((stream, _)) = tcp.accept() => {
                                counter.fetch_add(1, Ordering::SeqCst);
                                held.push(stream);
                            }
                        }
                    }
                });
            })
            .unwrap();
        let addr = ready_rx.recv().unwrap();
        Self {
            addr,
            received,
            _stop: stop_tx,
        }
    }
}

/// The loopback address the zone gives `api`.
pub fn loopback() -> IpAddr {
    "127.0.0.1".parse().unwrap()
}

/// A loopback HTTP/1.1 server (plain tokio) on 127.0.0.1, on its own thread. Answers
/// `/json` with a JSON body, `/missing` with 404, `/bad` with a non-JSON 200; sends each
/// request's head (lower-cased) on `heads`.
pub struct TestHttp {
    pub port: u16,
    pub heads: std::sync::mpsc::Receiver<String>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestHttp {
    pub fn start() -> Self {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (heads_tx, heads) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("test-http".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                    ready_tx
                        .send(listener.local_addr().unwrap().port())
                        .unwrap();
                    tokio::pin!(stop_rx);
                    loop {
                        let (mut stream, _) = tokio::select! {
                            _ = &mut stop_rx => break,
                            accepted = listener.accept() => accepted.unwrap(),
                        };
                        let heads_tx = heads_tx.clone();
                        tokio::spawn(async move {
                            let mut head = Vec::new();
                            let mut buf = [0_u8; 1024];
                            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                                match stream.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => head.extend_from_slice(&buf[..n]),
                                }
                            }
                            let head = String::from_utf8_lossy(&head).to_lowercase();
                            let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
                            let _ = heads_tx.send(head);
                            let (status, body) = match path.as_str() {
                                "/json" => ("200 OK", r#"{"hello":"world"}"#),
                                "/missing" => ("404 Not Found", "no such thing here"),
                                _ => ("200 OK", "this is not json"),
                            };
                            let response = format!(
                                "HTTP/1.1 {status}\r\ncontent-type: application/json\r\n\
                                 content-length: {}\r\nconnection: close\r\n\r\n{body}",
                                body.len()
                            );
                            let _ = stream.write_all(response.as_bytes()).await;
                            let _ = stream.shutdown().await;
                        });
                    }
                });
            })
            .unwrap();
        let port = ready_rx.recv().unwrap();
        Self {
            port,
            heads,
            _stop: stop_tx,
        }
    }
}
