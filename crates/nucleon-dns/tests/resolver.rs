//! The resolver against a real DNS server on loopback (hickory-server, in-memory zone).

mod support;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use nucleon_dns::{DnsConfig, DnsError, IpPreference, Resolver, SrvTarget};
use support::{Rec, SilentDns, TestDns, standard_zone};

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// A server that never answers AAAA queries (some do not): the A answer is used
/// once RFC 8305's resolution delay has passed, not thrown away when the lookup's
/// deadline strikes.
#[tokio::test]
async fn a_family_that_never_answers_does_not_fail_the_lookup() {
    let dns = TestDns::start_with_silent_aaaa(standard_zone(), &["nucleon.test"]);
    for preference in [IpPreference::Ipv6First, IpPreference::Ipv4First] {
        let resolver = Resolver::from_config(&DnsConfig {
            ip_preference: preference,
            timeout: Some(Duration::from_millis(500)),
            attempts: Some(2),
            ..dns.config()
        })
        .await
        .unwrap();
        let answer = resolver.lookup_ip("api.nucleon.test.").await;
        assert_eq!(answer, Ok(vec![ip("127.0.0.1")]), "{preference:?}");
    }
}

#[tokio::test]
async fn a_and_aaaa_answers_in_preference_order() {
    let dns = TestDns::start(standard_zone());
    let v6_first = Resolver::from_config(&DnsConfig {
        ip_preference: IpPreference::Ipv6First,
        ..dns.config()
    })
    .await
    .unwrap();
    assert_eq!(
        v6_first.lookup_ip("api.nucleon.test.").await.unwrap(),
        vec![ip("::1"), ip("127.0.0.1")]
    );
    let v4_first = Resolver::from_config(&DnsConfig {
        ip_preference: IpPreference::Ipv4First,
        ..dns.config()
    })
    .await
    .unwrap();
    assert_eq!(
        v4_first.lookup_ip("api.nucleon.test").await.unwrap(),
        vec![ip("127.0.0.1"), ip("::1")]
    );
    let v4 = Resolver::from_config(&dns.config()).await.unwrap();
    let mut many = v4.lookup_ip("many.nucleon.test").await.unwrap();
    many.sort();
    assert_eq!(many, vec![ip("127.0.0.3"), ip("127.0.0.4")]);
    let addrs = v4
        .lookup_socket_addrs("api.nucleon.test", 8080)
        .await
        .unwrap();
    assert_eq!(addrs, vec!["127.0.0.1:8080".parse().unwrap()]);
}

#[tokio::test]
async fn a_second_lookup_within_the_ttl_is_served_from_the_cache() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    resolver.lookup_ip("api.nucleon.test.").await.unwrap();
    assert_eq!(dns.queries(), 1);
    for _ in 0..5 {
        assert_eq!(
            resolver.lookup_ip("api.nucleon.test.").await.unwrap(),
            vec![ip("127.0.0.1")]
        );
    }
    // Clones share the cache.
    resolver
        .clone()
        .lookup_ip("api.nucleon.test.")
        .await
        .unwrap();
    assert_eq!(dns.queries(), 1, "later lookups must come from the cache");
    resolver.clear_cache();
    resolver.lookup_ip("api.nucleon.test.").await.unwrap();
    assert_eq!(dns.queries(), 2, "a cleared cache asks again");
}

#[tokio::test]
async fn ttl_expiry_causes_a_new_query() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    // `short` has a TTL of 1 s.
    resolver.lookup_ip("short.nucleon.test.").await.unwrap();
    resolver.lookup_ip("short.nucleon.test.").await.unwrap();
    assert_eq!(dns.queries(), 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(
        resolver.lookup_ip("short.nucleon.test.").await.unwrap(),
        vec![ip("127.0.0.2")]
    );
    assert_eq!(
        dns.queries(),
        2,
        "an expired answer must be asked for again"
    );
}

#[tokio::test]
async fn positive_min_ttl_keeps_short_answers_longer() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&DnsConfig {
        positive_min_ttl: Some(Duration::from_secs(60)),
        ..dns.config()
    })
    .await
    .unwrap();
    resolver.lookup_ip("short.nucleon.test.").await.unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    resolver.lookup_ip("short.nucleon.test.").await.unwrap();
    assert_eq!(dns.queries(), 1);
}

#[tokio::test]
async fn nxdomain_is_no_such_host_naming_it() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    let error = resolver
        .lookup_ip("missing.nucleon.test.")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DnsError::NoSuchHost { host } if host == "missing.nucleon.test."),
        "{error:?}"
    );
    assert!(error.is_not_found());
    assert!(error.to_string().contains("missing.nucleon.test."));
    // Negative answers are cached too.
    let queries = dns.queries();
    let _ = resolver.lookup_ip("missing.nucleon.test.").await;
    assert_eq!(dns.queries(), queries);
}

#[tokio::test]
async fn an_empty_answer_is_no_records_naming_host_and_type() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    let error = resolver
        .lookup_ip("textonly.nucleon.test.")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DnsError::NoRecords { host, record_type }
            if host == "textonly.nucleon.test." && record_type == "A/AAAA"),
        "{error:?}"
    );
    let error = resolver
        .lookup_srv("textonly.nucleon.test.")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DnsError::NoRecords { record_type, .. } if record_type == "SRV"),
        "{error:?}"
    );
}

#[tokio::test]
async fn srv_targets_come_by_priority_and_txt_as_text() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    let targets = resolver
        .lookup_srv("_amqp._tcp.nucleon.test.")
        .await
        .unwrap();
    assert_eq!(
        targets,
        vec![
            SrvTarget {
                priority: 10,
                weight: 10,
                port: 5672,
                target: "api.nucleon.test".to_owned()
            },
            SrvTarget {
                priority: 20,
                weight: 5,
                port: 5673,
                target: "backup.nucleon.test".to_owned()
            },
        ]
    );
    let error = resolver
        .lookup_srv("_mqtt._tcp.nucleon.test.")
        .await
        .unwrap_err();
    assert!(
        matches!(&error, DnsError::NoRecords { record_type, .. } if record_type == "SRV"),
        "the `.` target means no service: {error:?}"
    );
    assert_eq!(
        resolver.lookup_txt("textonly.nucleon.test.").await.unwrap(),
        vec!["v=nucleon1 hello".to_owned()]
    );
}

#[tokio::test]
async fn search_domains_complete_short_names() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&DnsConfig {
        search: vec!["nucleon.test".to_owned()],
        ..dns.config()
    })
    .await
    .unwrap();
    assert_eq!(
        resolver.lookup_ip("api").await.unwrap(),
        vec![ip("127.0.0.1")]
    );
}

/// As glibc: resolv.conf's `domain` (or the host's domain, which hickory takes when
/// there is no `domain` line) is not searched when there is a `search` line.
#[tokio::test]
async fn a_search_line_replaces_the_domain() {
    let file = std::env::temp_dir().join(format!("nucleon-resolv-{}.conf", std::process::id()));
    tokio::fs::write(
        &file,
        "nameserver 127.0.0.1\ndomain corp.example\nsearch svc.example\noptions timeout:1 attempts:1\n",
    )
    .await
    .unwrap();
    let resolver = Resolver::from_config(&DnsConfig {
        resolv_conf: file.clone(),
        hosts_file: None,
        ..DnsConfig::default()
    })
    .await
    .unwrap();
    tokio::fs::remove_file(&file).await.unwrap();
    // `api`: api.svc.example. and api. — not api.corp.example. as well.
    assert_eq!(
        resolver.lookup_deadline_for("api"),
        resolver.lookup_deadline() * 2
    );
}

#[tokio::test]
async fn a_server_that_never_answers_gives_the_timeout_error_in_time() {
    let silent = SilentDns::start();
    let timeout = Duration::from_millis(400);
    let resolver = Resolver::from_config(&DnsConfig {
        timeout: Some(timeout),
        attempts: Some(2),
        ..support::dns_config(silent.addr)
    })
    .await
    .unwrap();
    assert_eq!(resolver.lookup_deadline(), timeout * 2);
    let started = Instant::now();
    let error = resolver.lookup_ip("api.nucleon.test.").await.unwrap_err();
    let elapsed = started.elapsed();
    assert!(
        matches!(&error, DnsError::Timeout { host, .. } if host == "api.nucleon.test."),
        "{error:?}"
    );
    assert!(error.to_string().contains("api.nucleon.test."), "{error}");
    // The configured bound (timeout × attempts) plus generous slack for a busy machine.
    assert!(
        elapsed < timeout * 2 + Duration::from_secs(2),
        "took {elapsed:?}"
    );
    assert!(silent.received.load(std::sync::atomic::Ordering::SeqCst) >= 1);
}

#[tokio::test]
async fn the_hosts_file_is_honoured_before_dns() {
    let dns = TestDns::start(standard_zone());
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    tokio::fs::write(
        &hosts,
        "# test hosts\n10.9.8.7 pinned.nucleon.test pinned\n127.0.0.9 api.nucleon.test\n",
    )
    .await
    .unwrap();
    let resolver = Resolver::from_config(&DnsConfig {
        hosts_file: Some(hosts),
        ..dns.config()
    })
    .await
    .unwrap();
    assert_eq!(
        resolver.lookup_ip("pinned.nucleon.test").await.unwrap(),
        vec![ip("10.9.8.7")]
    );
    assert_eq!(
        resolver.lookup_ip("api.nucleon.test").await.unwrap(),
        vec![ip("127.0.0.9")],
        "the hosts file wins over DNS"
    );
    assert_eq!(dns.queries(), 0, "hosts-file names need no query");
}

#[tokio::test]
async fn literals_and_localhost_are_answered_without_a_query() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&DnsConfig {
        ip_preference: IpPreference::Ipv4First,
        ..dns.config()
    })
    .await
    .unwrap();
    assert_eq!(
        resolver.lookup_ip("192.0.2.1").await.unwrap(),
        vec![ip("192.0.2.1")]
    );
    assert_eq!(resolver.lookup_ip("[::1]").await.unwrap(), vec![ip("::1")]);
    assert_eq!(
        resolver.lookup_ip("localhost").await.unwrap(),
        vec![ip("127.0.0.1"), ip("::1")]
    );
    assert_eq!(dns.queries(), 0);
    let error = resolver.lookup_ip("").await.unwrap_err();
    assert!(matches!(error, DnsError::InvalidName { .. }), "{error:?}");
}

#[tokio::test]
async fn connect_tcp_reaches_a_name_only_the_test_dns_knows() {
    let dns = TestDns::start(vec![
        // The first address refuses (nothing listens on 127.0.0.2 at that port); the
        // second accepts.
        Rec::A("svc", 300, [127, 0, 0, 2]),
        Rec::A("svc", 300, [127, 0, 0, 1]),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    let stream = resolver
        .connect_tcp("svc.nucleon.test.", port)
        .await
        .unwrap();
    assert_eq!(stream.peer_addr().unwrap().port(), port);
    assert!(stream.nodelay().unwrap());

    let error = resolver
        .connect_tcp("nowhere.nucleon.test.", port)
        .await
        .unwrap_err();
    assert!(
        matches!(
            error,
            nucleon_dns::ConnectError::Dns(DnsError::NoSuchHost { .. })
        ),
        "{error:?}"
    );
}

#[tokio::test]
async fn lookup_host_uses_the_registered_resolver() {
    let dns = TestDns::start(standard_zone());
    let resolver = Resolver::from_config(&dns.config()).await.unwrap();
    resolver.register();
    assert!(Resolver::current().is_some());
    let addrs = nucleon_dns::lookup_host("api.nucleon.test.", 5432)
        .await
        .unwrap();
    assert_eq!(addrs, vec!["127.0.0.1:5432".parse().unwrap()]);
    assert_eq!(dns.queries(), 1);
}

#[tokio::test]
async fn a_hosts_file_name_is_answered_without_dns_whatever_families_it_lists() {
    // The only name server reads queries and never answers: any query would end in a
    // timeout. The hosts file lists the name with an IPv4 address only; the default
    // preference (IPv6 first) asks for both families. glibc answers such a name from
    // the hosts file alone, and so must we.
    let silent = SilentDns::start();
    let dir = tempfile::tempdir().unwrap();
    let hosts = dir.path().join("hosts");
    tokio::fs::write(&hosts, "10.9.8.7 pinned.nucleon.test pinned\n")
        .await
        .unwrap();
    let resolver = Resolver::from_config(&DnsConfig {
        hosts_file: Some(hosts),
        ip_preference: IpPreference::default(),
        ..support::dns_config(silent.addr)
    })
    .await
    .unwrap();
    assert_eq!(IpPreference::default(), IpPreference::Ipv6First);
    for name in [
        "pinned.nucleon.test",
        "pinned.nucleon.test.",
        "PINNED",
        "pinned",
    ] {
        let answer = tokio::time::timeout(Duration::from_secs(10), resolver.lookup_ip(name))
            .await
            .expect("the lookup must not hang");
        assert_eq!(answer, Ok(vec![ip("10.9.8.7")]), "{name}");
    }
    assert_eq!(
        silent.received.load(std::sync::atomic::Ordering::SeqCst),
        0,
        "a name the hosts file lists needs no query"
    );
}

#[tokio::test]
async fn a_search_candidate_that_times_out_does_not_stop_the_others() {
    // The server never answers for names under `hole1.test` and `hole2.test`, and
    // answers `nucleon.test` at once. `api` (fewer dots than ndots) is tried as
    // api.hole1.test., api.hole2.test., then api.nucleon.test.: two candidates time
    // out before the one that answers. Each candidate gets its own timeout × attempts.
    let dns = TestDns::start_with_black_holes(standard_zone(), &["hole1.test", "hole2.test"]);
    let timeout = Duration::from_millis(300);
    let resolver = Resolver::from_config(&DnsConfig {
        search: vec![
            "hole1.test".to_owned(),
            "hole2.test".to_owned(),
            "nucleon.test".to_owned(),
        ],
        timeout: Some(timeout),
        attempts: Some(1),
        ..dns.config()
    })
    .await
    .unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(Duration::from_secs(20), resolver.lookup_ip("api"))
        .await
        .expect("the lookup must end");
    let elapsed = started.elapsed();
    assert_eq!(answer, Ok(vec![ip("127.0.0.1")]), "after {elapsed:?}");
    assert!(
        elapsed >= timeout * 2,
        "two candidates must have timed out first: {elapsed:?}"
    );
    assert!(dns.queries() >= 3, "queries: {}", dns.queries());

    // A name no candidate answers for: the timeouts are reported, not the NXDOMAIN of
    // the last candidate (the name may well exist under a domain that did not answer).
    let error = tokio::time::timeout(Duration::from_secs(20), resolver.lookup_ip("missing"))
        .await
        .expect("the lookup must end")
        .unwrap_err();
    assert!(!error.is_not_found(), "{error:?}");
    assert_eq!(error.host(), Some("missing"));
}
