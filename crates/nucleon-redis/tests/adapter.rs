//! The adapter and its handle against the real Redis (`NUCLEON_TEST_REDIS_URL`, by
//! default the local one; `NUCLEON_TEST_SKIP_REDIS=1` skips them, saying so): typed
//! calls, errors, start failures that name their reason, health, a named instance per
//! process, and a link cut and restored under a handle.

mod common;

use std::time::{Duration, Instant};

use common::{Service, on_a_worker, prefix, redis_toml, socket_addr};
use nucleon_redis::{Redis, RedisAdapter, RedisError};
use nucleon_runtime::{Health, RuntimeError};
use nucleon_testkit::{TcpProxy, redis_url, wait_until_async};

fn main_redis(worker: &mut nucleon_runtime::WorkerSetup) {
    worker.adapter(RedisAdapter::new());
}

#[tokio::test]
async fn the_handle_s_typed_calls() {
    let Some(url) = redis_url() else { return };
    let p = prefix("typed");
    let outcome = on_a_worker(&redis_toml(&url, ""), main_redis, move || {
        let p = p.clone();
        async move {
            let redis = Redis::current().expect("the adapter gave its handle");
            let k = |name: &str| format!("{p}{name}");
            let mut seen = Vec::new();
            redis.set(k("a"), "one").await.unwrap();
            seen.push(format!("{:?}", redis.get::<String>(k("a")).await.unwrap()));
            seen.push(format!(
                "{:?}",
                redis.get::<String>(k("none")).await.unwrap()
            ));
            seen.push(format!("{}", redis.exists(k("a")).await.unwrap()));
            seen.push(format!("{:?}", redis.ttl(k("a")).await.unwrap()));
            seen.push(format!(
                "{}",
                redis.expire(k("a"), Duration::from_secs(60)).await.unwrap()
            ));
            let left = redis.ttl(k("a")).await.unwrap().expect("an expiry now");
            seen.push(format!(
                "{}",
                left > Duration::from_secs(50) && left <= Duration::from_secs(60)
            ));
            seen.push(format!("{}", redis.del(k("a")).await.unwrap()));
            seen.push(format!("{}", redis.del(k("a")).await.unwrap()));
            seen.push(format!("{}", redis.incr(k("n"), 5).await.unwrap()));
            seen.push(format!("{}", redis.incr(k("n"), -2).await.unwrap()));
            seen.push(format!(
                "{}",
                redis
                    .set_nx(k("lock"), "me", Some(Duration::from_secs(60)))
                    .await
                    .unwrap()
            ));
            seen.push(format!(
                "{}",
                redis.set_nx(k("lock"), "you", None).await.unwrap()
            ));
            redis
                .set_ex(k("short"), 7, Duration::from_millis(400))
                .await
                .unwrap();
            seen.push(format!("{:?}", redis.get::<i64>(k("short")).await.unwrap()));
            tokio::time::sleep(Duration::from_millis(600)).await;
            seen.push(format!("{:?}", redis.get::<i64>(k("short")).await.unwrap()));
            let order = serde_json::json!({"id": 7, "items": ["a", "b"]});
            redis
                .set_json(k("json"), &order, Some(Duration::from_secs(60)))
                .await
                .unwrap();
            let back: Option<serde_json::Value> = redis.get_json(k("json")).await.unwrap();
            seen.push(format!("{}", back == Some(order)));
            // Any command, typed; and the raw connection manager.
            let pushed: i64 = redis
                .query(redis::cmd("RPUSH").arg(k("list")).arg("x").arg("y"))
                .await
                .unwrap();
            assert_eq!(pushed, 2);
            let list: Vec<String> = redis
                .query(redis::cmd("LRANGE").arg(k("list")).arg(0).arg(-1))
                .await
                .unwrap();
            seen.push(list.join(","));
            let mut raw = redis.connection();
            let len: i64 = redis::cmd("LLEN")
                .arg(k("list"))
                .query_async(&mut raw)
                .await
                .unwrap();
            seen.push(len.to_string());
            redis.ping().await.unwrap();
            for name in ["n", "lock", "json", "list"] {
                redis.del(k(name)).await.unwrap();
            }
            seen
        }
    })
    .await;
    assert_eq!(
        outcome,
        [
            "Some(\"one\")",
            "None",
            "true",
            "None",
            "true",
            "true",
            "true",
            "false",
            "5",
            "3",
            "true",
            "false",
            "Some(7)",
            "None",
            "true",
            "x,y",
            "2",
        ]
    );
}

#[tokio::test]
async fn errors_are_typed_and_name_the_command_not_the_key() {
    let Some(url) = redis_url() else { return };
    let p = prefix("errors");
    let outcome = on_a_worker(&redis_toml(&url, ""), main_redis, move || {
        let p = p.clone();
        async move {
            let redis = Redis::current().unwrap();
            let key = format!("{p}text");
            redis.set(&key, "not a number").await.unwrap();
            let refused = redis.incr(&key, 1).await.unwrap_err();
            let typed = redis.get::<i64>(&key).await.unwrap_err();
            let json = redis.get_json::<Vec<u8>>(&key).await.unwrap_err();
            redis.del(&key).await.unwrap();
            (refused, typed, json)
        }
    })
    .await;
    let (refused, typed, json) = outcome;
    assert!(
        matches!(&refused, RedisError::Refused { command, code: Some(code), .. } if command == "INCRBY" && code == "ERR"),
        "{refused:?}"
    );
    assert!(
        matches!(&typed, RedisError::Type { command, .. } if command == "GET"),
        "{typed:?}"
    );
    assert!(matches!(&json, RedisError::Json { .. }), "{json:?}");
    for error in [&refused, &typed, &json] {
        assert!(!error.to_string().contains("errors:text"), "{error}");
        assert!(!error.to_string().contains("not a number"), "{error}");
        assert!(!error.is_unavailable());
    }
}

#[tokio::test]
async fn a_start_that_cannot_work_fails_with_its_reason() {
    let Some(url) = redis_url() else { return };
    // Nothing listens there: refused at once, naming the address.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let toml = redis_toml(&format!("redis://{closed}"), "");
    let started = Instant::now();
    let error = Service::start(&toml, 1, |b| b, main_redis)
        .await
        .err()
        .expect("no Redis there: the start fails");
    let text = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(
        text.contains("redis") && text.contains(&closed.to_string()),
        "{text}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );

    // A password the server refuses: Redis's own reason, without the password.
    let addr = socket_addr(&url);
    let toml = redis_toml(&format!("redis://:hunter2pw@{addr}/0"), "");
    let error = Service::start(&toml, 1, |b| b, main_redis)
        .await
        .err()
        .expect("a password this Redis does not take: the start fails");
    let text = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(!text.contains("hunter2pw"), "{text}");
    assert!(text.contains("authentication failed"), "{text}");
    assert!(
        matches!(&error, RuntimeError::AdapterStart { source, .. }
        if matches!(source.downcast_ref::<RedisError>(), Some(RedisError::Refused { .. }))),
        "{error:?}"
    );

    // A typo in the table: refused before connecting, naming the key.
    let toml = redis_toml(&url, "comand_timeout = \"1s\"");
    let error = Service::start(&toml, 1, |b| b, main_redis)
        .await
        .err()
        .expect("a typo: the start fails");
    let text = format!("{error}: {:?}", std::error::Error::source(&error));
    assert!(text.contains("redis.comand_timeout"), "{text}");
    assert!(
        matches!(&error, RuntimeError::AdapterStart { source, .. } if source.is::<nucleon_runtime::ConfigError>()),
        "a configuration error, for its exit code: {error:?}"
    );
}

#[tokio::test]
async fn health_pings_and_a_redis_not_required_is_only_degraded() {
    let Some(url) = redis_url() else { return };
    let service = Service::start(&redis_toml(&url, ""), 2, |b| b, main_redis)
        .await
        .unwrap();
    assert_eq!(service.health_of("redis").await, Health::Healthy);
    service.stop().await.unwrap();

    // Not required, and nowhere to be found: the service starts; health is degraded,
    // readiness would stay 200; a call fails fast, typed as unavailable.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap()
    };
    let toml = redis_toml(
        &format!("redis://{closed}"),
        "required = false\ncommand_timeout = \"300ms\"",
    );
    let service = Service::start(&toml, 1, |b| b, main_redis).await.unwrap();
    match service.health_of("redis").await {
        Health::Degraded(why) => assert!(why.contains("required = false"), "{why}"),
        other => panic!("expected degraded, got {other:?}"),
    }
    service.stop().await.unwrap();
    let error = on_a_worker(&toml, main_redis, || async {
        let started = Instant::now();
        let error = Redis::current()
            .unwrap()
            .get::<String>("k")
            .await
            .unwrap_err();
        (error, started.elapsed())
    })
    .await;
    assert!(error.0.is_unavailable(), "{:?}", error.0);
    assert!(error.1 < Duration::from_secs(1), "{:?}", error.1);
}

#[tokio::test]
async fn a_host_name_is_resolved_through_nucleon_dns() {
    let Some(url) = redis_url() else { return };
    let addr = socket_addr(&url);
    let named = if addr.ip().is_loopback() {
        format!("redis://localhost:{}", addr.port())
    } else {
        url.clone()
    };
    let target = on_a_worker(&redis_toml(&named, ""), main_redis, || async {
        let redis = Redis::current().unwrap();
        redis.ping().await.unwrap();
        redis.target().to_owned()
    })
    .await;
    if addr.ip().is_loopback() {
        assert!(
            target.starts_with(&format!("localhost:{} (", addr.port())),
            "{target}"
        );
    }
}

#[tokio::test]
async fn a_named_redis_per_process_is_every_worker_s() {
    let Some(url) = redis_url() else { return };
    let p = prefix("named");
    let toml = format!("[default.redis.shared]\nurl = \"{url}\"\n");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let service = Service::start(
        &toml,
        2,
        |builder| builder.adapter(RedisAdapter::named("shared")),
        move |worker| {
            let (tx, p, id) = (tx.clone(), p.clone(), worker.id());
            worker.spawn("count", async move {
                let redis = Redis::named("shared").expect("the process's named Redis");
                assert!(Redis::current().is_none(), "no main Redis here");
                let n = redis.incr(format!("{p}workers"), 1).await.unwrap();
                let _ = tx.send((id, n));
            });
        },
    )
    .await
    .unwrap();
    let mut counts = [rx.recv().await.unwrap(), rx.recv().await.unwrap()];
    counts.sort_unstable();
    assert_eq!(counts.iter().map(|c| c.0).collect::<Vec<_>>(), [0, 1]);
    let mut totals: Vec<i64> = counts.iter().map(|c| c.1).collect();
    totals.sort_unstable();
    assert_eq!(totals, [1, 2], "one counter, both workers");
    service.stop().await.unwrap();
    let cleanup = format!("{}workers", prefix("named"));
    on_a_worker(&redis_toml(&url, ""), main_redis, move || {
        let key = cleanup.clone();
        async move { Redis::current().unwrap().del(key).await.unwrap() }
    })
    .await;
}

#[tokio::test]
async fn a_cut_link_fails_calls_fast_and_reconnects_by_itself() {
    let Some(url) = redis_url() else { return };
    let proxy = TcpProxy::start(socket_addr(&url)).await;
    let toml = redis_toml(
        &format!("redis://{}", proxy.addr()),
        "command_timeout = \"500ms\"\nreconnect_max = \"200ms\"",
    );
    let key = format!("{}k", prefix("cut"));
    let (calls, mut results) =
        tokio::sync::mpsc::unbounded_channel::<Result<Option<String>, String>>();
    let (ask, asks) = tokio::sync::mpsc::unbounded_channel::<()>();
    let asks = std::sync::Arc::new(tokio::sync::Mutex::new(asks));
    let service = Service::start(&toml, 1, |b| b, {
        let key = key.clone();
        move |worker| {
            worker.adapter(RedisAdapter::new());
            let (calls, asks, key) = (calls.clone(), asks.clone(), key.clone());
            worker.spawn("caller", async move {
                let redis = Redis::current().unwrap();
                redis
                    .set_ex(&key, "v", Duration::from_secs(60))
                    .await
                    .unwrap();
                while asks.lock().await.recv().await.is_some() {
                    let got = redis.get::<String>(&key).await.map_err(|e| {
                        assert!(e.is_unavailable(), "{e:?}");
                        e.to_string()
                    });
                    let _ = calls.send(got);
                }
            });
        }
    })
    .await
    .unwrap();
    let mut call = async || {
        ask.send(()).unwrap();
        results.recv().await.unwrap()
    };
    assert_eq!(call().await, Ok(Some("v".to_owned())));

    proxy.cut();
    let started = Instant::now();
    let failed = call().await;
    assert!(failed.is_err(), "{failed:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    match service.health_of("redis").await {
        Health::Unhealthy(_) => {}
        other => panic!("a required Redis cut off: unhealthy, got {other:?}"),
    }

    proxy.restore();
    wait_until_async(
        "the handle to reconnect",
        Duration::from_secs(10),
        async || call().await == Ok(Some("v".to_owned())),
    )
    .await;
    wait_until_async("health to recover", Duration::from_secs(10), async || {
        service.health_of("redis").await == Health::Healthy
    })
    .await;
    drop(ask);
    service.stop().await.unwrap();
}
