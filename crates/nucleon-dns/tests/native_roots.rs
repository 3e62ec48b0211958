//! The system's root certificates: a load that failed is an error naming what to do,
//! and is not kept (its own test binary: it sets the process-wide offload pools).

use std::time::Duration;

use nucleon_dns::{DnsConfig, HttpClient, HttpClientConfig, HttpError, Resolver};
use nucleon_runtime::offload::{self, OffloadConfig};

async fn resolver() -> Resolver {
    let config = DnsConfig {
        nameservers: vec!["127.0.0.1:53".to_owned()],
        hosts_file: None,
        ..DnsConfig::default()
    };
    Resolver::from_config(&config).await.unwrap()
}

#[tokio::test]
async fn a_failed_load_of_the_system_roots_is_an_error_and_is_not_kept() {
    // One blocking thread, no queue: while it is busy, the load cannot be offloaded.
    assert!(offload::configure(&OffloadConfig {
        blocking_threads: 1,
        blocking_queue: 0,
        ..OffloadConfig::default()
    }));
    let (release, held) = std::sync::mpsc::channel::<()>();
    let busy = tokio::spawn(offload::blocking(move || held.recv().ok()));
    while offload::stats().0.threads == offload::stats().0.idle {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let error = HttpClient::new(resolver().await, &HttpClientConfig::default())
        .await
        .expect_err("the roots could not be loaded");
    assert!(matches!(error, HttpError::Build { .. }), "{error:?}");
    let text = error.to_string();
    assert!(
        text.contains("system root certificates") && text.contains("http_client.native_roots"),
        "{text}"
    );

    // Once the pool has room, the next client loads them.
    release.send(()).unwrap();
    busy.await.unwrap().unwrap();
    HttpClient::new(resolver().await, &HttpClientConfig::default())
        .await
        .expect("loaded on the second try");
}
