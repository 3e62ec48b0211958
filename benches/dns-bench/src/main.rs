//! dns-bench: what a cached nucleon-dns lookup costs next to `tokio::net::lookup_host`
//! (glibc `getaddrinfo` on tokio's blocking pool) for the same name, and how many
//! distinct names per second one worker resolves with 1,000 lookups in flight against a
//! local hickory-server.
//!
//! Run: `cargo run --release -p dns-bench` in `benches/` (see README.md).

#![allow(clippy::print_stdout, reason = "a benchmark reports on stdout")]

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use hickory_server::Server;
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{LowerName, Name, RData, Record};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use nucleon_dns::{DnsConfig, IpPreference, Resolver};

const DISTINCT: usize = 1_000;

/// Starts an authoritative server for `origin` on its own thread: `origin` itself and
/// `n0.origin` … `n999.origin` resolve to 127.0.0.1.
fn start_dns(origin: &str) -> SocketAddr {
    let origin = Name::from_str(origin).unwrap();
    let mut zone = InMemoryZoneHandler::<TokioRuntimeProvider>::empty(
        origin.clone(),
        ZoneType::Primary,
        AxfrPolicy::Deny,
    );
    let soa = SOA::new(origin.clone(), origin.clone(), 1, 3600, 600, 86_400, 60);
    zone.upsert_mut(Record::from_rdata(origin.clone(), 3600, RData::SOA(soa)), 1);
    let a = || RData::A(A::new(127, 0, 0, 1));
    zone.upsert_mut(Record::from_rdata(origin.clone(), 3600, a()), 1);
    for i in 0..DISTINCT {
        let name = Name::from_str(&format!("n{i}")).unwrap().append_domain(&origin).unwrap();
        zone.upsert_mut(Record::from_rdata(name, 3600, a()), 1);
    }
    let mut catalog = Catalog::new();
    catalog.upsert(LowerName::new(&origin), vec![Arc::new(zone)]);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
            let addr = udp.local_addr().unwrap();
            let tcp = tokio::net::TcpListener::bind(addr).await.unwrap();
            let mut server = Server::new(catalog);
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 64);
            tx.send(addr).unwrap();
            let _ = server.block_until_done().await;
        });
    });
    rx.recv().unwrap()
}

fn config(addr: SocketAddr) -> DnsConfig {
    DnsConfig {
        nameservers: vec![addr.to_string()],
        hosts_file: None,
        ip_preference: IpPreference::Ipv4Only,
        timeout: Some(Duration::from_secs(5)),
        attempts: Some(2),
        ..DnsConfig::default()
    }
}

fn median(mut samples: Vec<f64>) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

async fn cached_vs_getaddrinfo(name: &str, addr: SocketAddr) -> (f64, f64) {
    let resolver = Resolver::from_config(&config(addr)).await.unwrap();
    let ours = resolver.lookup_ip(name).await.unwrap();
    let theirs: Vec<_> = tokio::net::lookup_host((name, 0))
        .await
        .unwrap()
        .map(|a| a.ip())
        .collect();
    assert!(
        theirs.contains(&ours[0]),
        "both must resolve `{name}` alike: {ours:?} vs {theirs:?}"
    );

    let mut cached = Vec::new();
    let mut gai = Vec::new();
    for _ in 0..7 {
        let n = 100_000;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(resolver.lookup_ip(name).await.unwrap());
        }
        cached.push(start.elapsed().as_nanos() as f64 / n as f64);

        let n = 10_000;
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(tokio::net::lookup_host((name, 0)).await.unwrap().count());
        }
        gai.push(start.elapsed().as_nanos() as f64 / n as f64);
    }
    (median(cached), median(gai))
}

async fn concurrent(addr: SocketAddr, origin: &str) -> (f64, f64) {
    let names: Vec<String> = (0..DISTINCT).map(|i| format!("n{i}.{origin}")).collect();
    let mut concurrent = Vec::new();
    let mut sequential = Vec::new();
    for _ in 0..7 {
        let resolver = Resolver::from_config(&config(addr)).await.unwrap();
        let start = Instant::now();
        let results = join_all(names.iter().map(|name| resolver.lookup_ip(name))).await;
        let elapsed = start.elapsed();
        let failed = results.iter().filter(|r| r.is_err()).count();
        assert_eq!(failed, 0, "{failed} concurrent lookups failed");
        concurrent.push(DISTINCT as f64 / elapsed.as_secs_f64());

        let resolver = Resolver::from_config(&config(addr)).await.unwrap();
        let start = Instant::now();
        for name in &names {
            resolver.lookup_ip(name).await.unwrap();
        }
        sequential.push(DISTINCT as f64 / start.elapsed().as_secs_f64());
    }
    (median(concurrent), median(sequential))
}

fn main() {
    let name = std::env::var("BENCH_NAME").unwrap_or_else(|_| {
        String::from_utf8(
            std::process::Command::new("hostname")
                .output()
                .expect("run `hostname`")
                .stdout,
        )
        .unwrap()
        .trim()
        .to_owned()
    });
    let origin = format!("{name}.");
    let addr = start_dns(&origin);
    // One worker: a current-thread runtime, as in Nucleon.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let (cached, gai) = cached_vs_getaddrinfo(&name, addr).await;
        println!("name `{name}`: getaddrinfo answers it from /etc/hosts; nucleon-dns from its cache");
        println!("cached nucleon-dns lookup     : {cached:>10.0} ns/lookup");
        println!("tokio::net::lookup_host       : {gai:>10.0} ns/lookup");
        println!("ratio (lookup_host / cached)  : {:>10.1}x", gai / cached);
        let (conc, seq) = concurrent(addr, &origin).await;
        println!("{DISTINCT} distinct names, cold cache, all in flight : {conc:>10.0} lookups/s");
        println!("{DISTINCT} distinct names, cold cache, one at a time : {seq:>10.0} lookups/s");
        println!("ratio (concurrent / sequential)           : {:>10.1}x", conc / seq);
    });
}
