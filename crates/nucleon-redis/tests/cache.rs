//! Response caching over a real HTTP server: hits, misses, what the client may ask, what
//! is not stored, expiry, custom keys, the in-process backend, and a Redis cut off under
//! a route (it keeps answering, uncached, counted; caching resumes once Redis is back).
//! Redis tests use the local Redis (`NUCLEON_TEST_REDIS_URL`; skipped on purpose with
//! `NUCLEON_TEST_SKIP_REDIS=1`, saying so).

#![cfg(feature = "http")]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::{
    CacheHeader, Served, get, on_a_worker, prefix, redis_toml, request, serve, socket_addr,
};
use nucleon_http::{HttpError, Json, Path, Router, StatusCode, get as route, post};
use nucleon_redis::{CacheLayer, CacheStats, Redis, RedisAdapter, cached};
use nucleon_runtime::Health;
use nucleon_testkit::{TcpProxy, redis_url, wait_until_async};
use serde_json::json;

/// A route whose answers say how many times its handler ran, so that a cached answer
/// is told from a fresh one.
fn counted(layer: CacheLayer) -> (Router, Arc<AtomicU64>) {
    let calls = Arc::new(AtomicU64::new(0));
    let item = {
        let calls = Arc::clone(&calls);
        move |Path(id): Path<String>| {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Json(json!({"id": id, "call": n})) }
        }
    };
    let missing = {
        let calls = Arc::clone(&calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { Err::<Json<()>, _>(HttpError::not_found("no such thing")) }
        }
    };
    let text = {
        let calls = Arc::clone(&calls);
        move || {
            calls.fetch_add(1, Ordering::SeqCst);
            async { "plain text" }
        }
    };
    let private = {
        let calls = Arc::clone(&calls);
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move {
                let mut headers = nucleon_http::HeaderMap::new();
                headers.insert("cache-control", "private".parse().unwrap());
                (StatusCode::OK, headers, Json(json!({ "call": n })))
            }
        }
    };
    let create = {
        let calls = Arc::clone(&calls);
        move || {
            let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
            async move { Json(json!({ "created": n })) }
        }
    };
    let router = Router::new()
        .route("/items/{id}", route(item).post(create).layer(layer.clone()))
        .route("/missing", route(missing).layer(layer.clone()))
        .route("/text", route(text).layer(layer.clone()))
        .route("/private", route(private).layer(layer));
    (router, calls)
}

fn calls_of(reply: &common::Reply) -> u64 {
    reply.json()["call"]
        .as_u64()
        .unwrap_or_else(|| panic!("no call count: {}", reply.text()))
}

async fn redis_service(url: &str, router: Router, workers: usize) -> Served {
    serve(&redis_toml(url, ""), workers, router, |worker| {
        worker.adapter(RedisAdapter::new());
    })
    .await
}

#[tokio::test]
async fn hits_misses_bypasses_and_what_is_not_stored() {
    let Some(url) = redis_url() else { return };
    let layer = cached(Duration::from_secs(60))
        .prefix(prefix("hits"))
        .timeout(Duration::from_secs(1));
    let stats = layer.stats();
    let (router, calls) = counted(layer);
    let served = redis_service(&url, router, 2).await;
    let addr = served.addr;

    let first = get(addr, "/items/1").await;
    assert_eq!(
        (first.status, first.cache()),
        (200, "MISS"),
        "{}",
        first.text()
    );
    assert_eq!(first.header("content-type"), Some("application/json"));
    let second = get(addr, "/items/1").await;
    assert_eq!((second.status, second.cache()), (200, "HIT"));
    assert_eq!(second.json(), first.json(), "the stored answer");
    assert_eq!(second.header("content-type"), Some("application/json"));
    assert_eq!(calls.load(Ordering::SeqCst), 1, "one call of the handler");

    // Another query is another key.
    let other = get(addr, "/items/1?page=2").await;
    assert_eq!(other.cache(), "MISS");
    assert_eq!(get(addr, "/items/1?page=2").await.cache(), "HIT");

    // no-cache: served fresh, and the fresh answer replaces the entry.
    let fresh = request(addr, "GET", "/items/1", &[("cache-control", "no-cache")]).await;
    assert_eq!(fresh.cache(), "BYPASS");
    assert!(calls_of(&fresh) > calls_of(&first), "{}", fresh.text());
    let after = get(addr, "/items/1").await;
    assert_eq!((after.cache(), after.json()), ("HIT", fresh.json()));
    let pragma = request(addr, "GET", "/items/1", &[("pragma", "no-cache")]).await;
    assert_eq!(pragma.cache(), "BYPASS");

    // no-store and Authorization: served fresh, and the entry stays as it was.
    let before = calls.load(Ordering::SeqCst);
    let no_store = request(addr, "GET", "/items/1", &[("cache-control", "no-store")]).await;
    assert_eq!(no_store.cache(), "BYPASS");
    let mine = request(addr, "GET", "/items/1", &[("authorization", "Bearer t")]).await;
    assert_eq!(mine.cache(), "BYPASS");
    assert_eq!(calls.load(Ordering::SeqCst), before + 2);
    assert_eq!(get(addr, "/items/1").await.json(), pragma.json());

    // Other methods pass through untouched.
    let created = request(addr, "POST", "/items/1", &[]).await;
    assert_eq!((created.status, created.cache()), (200, "-"));

    // Not a 200, not JSON, or marked private: served each time, never stored.
    for path in ["/missing", "/text", "/private"] {
        let before = calls.load(Ordering::SeqCst);
        let one = get(addr, path).await;
        let two = get(addr, path).await;
        assert_eq!((one.cache(), two.cache()), ("MISS", "MISS"), "{path}");
        assert_eq!(calls.load(Ordering::SeqCst), before + 2, "{path}");
    }
    assert_eq!(get(addr, "/missing").await.status, 404);

    let counts = stats.counts();
    assert_eq!(counts.hits, 4, "{counts:?}");
    assert_eq!(
        counts.stored, 4,
        "two misses and two no-cache refreshes: {counts:?}"
    );
    assert_eq!(counts.bypassed, 4, "{counts:?}");
    assert_eq!(counts.not_stored, 7, "{counts:?}");
    assert_eq!(counts.unavailable, 0, "{counts:?}");
    served.service.stop().await.unwrap();
}

#[tokio::test]
async fn entries_live_in_redis_for_their_ttl_under_their_prefix() {
    let Some(url) = redis_url() else { return };
    let p = prefix("ttl");
    let ttl = Duration::from_secs(2);
    let layer = cached(ttl)
        .prefix(p.clone())
        .timeout(Duration::from_secs(1));
    let (router, calls) = counted(layer);
    let served = redis_service(&url, router, 1).await;
    let addr = served.addr;
    let stored = Instant::now();
    assert_eq!(get(addr, "/items/7").await.cache(), "MISS");
    assert_eq!(get(addr, "/items/7").await.cache(), "HIT");
    let key = format!("{p}GET /items/7");
    let (exists, left) = on_a_worker(
        &redis_toml(&url, ""),
        |w| {
            w.adapter(RedisAdapter::new());
        },
        move || {
            let key = key.clone();
            async move {
                let redis = Redis::current().unwrap();
                (
                    redis.exists(&key).await.unwrap(),
                    redis.ttl(&key).await.unwrap(),
                )
            }
        },
    )
    .await;
    assert!(
        exists,
        "the entry is stored under the prefix and the default key"
    );
    assert!(left.is_some_and(|t| t <= ttl), "{left:?}");
    tokio::time::sleep_until((stored + ttl + Duration::from_millis(300)).into()).await;
    assert_eq!(get(addr, "/items/7").await.cache(), "MISS", "expired");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    served.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_key_function_of_one_s_own() {
    let Some(url) = redis_url() else { return };
    let layer = cached(Duration::from_secs(60))
        .prefix(prefix("custom-key"))
        .timeout(Duration::from_secs(1))
        .key(|request| {
            let language = request.headers().get("accept-language")?.to_str().ok()?;
            Some(format!("{}|{language}", request.uri().path()))
        });
    let (router, _) = counted(layer);
    let served = redis_service(&url, router, 2).await;
    let addr = served.addr;
    let en = |path| request(addr, "GET", path, &[("accept-language", "en")]);
    let fr = |path| request(addr, "GET", path, &[("accept-language", "fr")]);
    assert_eq!(en("/items/1").await.cache(), "MISS");
    assert_eq!(
        fr("/items/1").await.cache(),
        "MISS",
        "another language, another key"
    );
    assert_eq!(
        en("/items/1?ignored=1").await.cache(),
        "HIT",
        "the query is not in this key"
    );
    assert_eq!(fr("/items/1").await.cache(), "HIT");
    assert_eq!(
        get(addr, "/items/1").await.cache(),
        "BYPASS",
        "no key: not cached"
    );
    served.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_redis_cut_off_never_fails_the_route_and_caching_resumes() {
    let Some(url) = redis_url() else { return };
    let proxy = TcpProxy::start(socket_addr(&url)).await;
    let layer = cached(Duration::from_secs(60))
        .prefix(prefix("cut"))
        .timeout(Duration::from_millis(300))
        .pause(Duration::from_millis(200));
    let stats: CacheStats = layer.stats();
    let (router, calls) = counted(layer);
    let toml = redis_toml(
        &format!("redis://{}", proxy.addr()),
        "required = false\ncommand_timeout = \"300ms\"\nreconnect_max = \"200ms\"",
    );
    let served = serve(&toml, 2, router, |worker| {
        worker.adapter(RedisAdapter::new());
    })
    .await;
    let addr = served.addr;
    assert_eq!(get(addr, "/items/1").await.cache(), "MISS");
    assert_eq!(get(addr, "/items/1").await.cache(), "HIT");

    proxy.cut();
    for _ in 0..6 {
        let before = calls.load(Ordering::SeqCst);
        let reply = get(addr, "/items/1").await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(reply.cache(), "UNAVAILABLE", "{}", reply.text());
        assert_eq!(calls_of(&reply), before + 1, "served by the handler");
    }
    assert!(stats.unavailable() >= 6, "{:?}", stats.counts());
    // Not required: the instance stays ready, its health says why it is degraded.
    let served_ready = get(addr, "/readyz").await;
    assert_eq!(served_ready.status, 200, "{}", served_ready.text());
    match served.service.health_of("redis").await {
        Health::Degraded(_) => {}
        other => panic!("a Redis not required, cut off: degraded, got {other:?}"),
    }

    proxy.restore();
    wait_until_async(
        "the route to be served from Redis again",
        Duration::from_secs(15),
        async || get(addr, "/items/1").await.cache() == "HIT",
    )
    .await;
    wait_until_async("health to recover", Duration::from_secs(10), async || {
        served.service.health_of("redis").await == Health::Healthy
    })
    .await;
    served.service.stop().await.unwrap();
}

#[tokio::test]
async fn the_in_process_cache_needs_no_redis() {
    let ttl = Duration::from_secs(2);
    let layer = CacheLayer::in_process(ttl).capacity(1024 * 1024);
    let stats = layer.stats();
    let (router, calls) = counted(layer);
    // One worker: each worker has a cache of its own.
    let served = serve("[default]\n", 1, router, |_| {}).await;
    let addr = served.addr;
    let stored = Instant::now();
    let first = get(addr, "/items/a").await;
    assert_eq!(first.cache(), "MISS");
    let hit = get(addr, "/items/a").await;
    assert_eq!((hit.cache(), hit.json()), ("HIT", first.json()));
    assert_eq!(hit.header("content-type"), Some("application/json"));
    let fresh = request(addr, "GET", "/items/a", &[("cache-control", "no-cache")]).await;
    assert_eq!(fresh.cache(), "BYPASS");
    assert_eq!(
        get(addr, "/items/a").await.json(),
        fresh.json(),
        "refreshed"
    );
    assert_eq!(get(addr, "/missing").await.cache(), "MISS");
    assert_eq!(get(addr, "/missing").await.cache(), "MISS");
    // The no-cache refresh stored it again a little after `stored`.
    tokio::time::sleep_until((stored + ttl + Duration::from_millis(600)).into()).await;
    assert_eq!(get(addr, "/items/a").await.cache(), "MISS", "expired");
    assert_eq!(calls.load(Ordering::SeqCst), 5);
    let counts = stats.counts();
    assert_eq!(
        (counts.hits, counts.misses, counts.stored),
        (2, 4, 3),
        "{counts:?}"
    );
    assert_eq!(counts.unavailable, 0);
    served.service.stop().await.unwrap();
}

#[tokio::test]
async fn a_cached_route_without_redis_serves_uncached() {
    let layer = cached(Duration::from_secs(60));
    let stats = layer.stats();
    let (router, calls) = counted(layer);
    let served = serve("[default]\n", 1, router, |_| {}).await;
    for _ in 0..2 {
        let reply = get(served.addr, "/items/1").await;
        assert_eq!((reply.status, reply.cache()), (200, "UNAVAILABLE"));
    }
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(stats.unavailable(), 2);
    served.service.stop().await.unwrap();
}

/// A handler's own use of the handle: `?` turns a Redis error into the framework's
/// JSON (here a type error: 500, its cause in the log, not in the answer).
#[tokio::test]
async fn handlers_return_redis_errors_with_a_question_mark() {
    let Some(url) = redis_url() else { return };
    let key = format!("{}text", prefix("question-mark"));
    let handler = {
        let key = key.clone();
        move |nucleon_http::Dep(redis): nucleon_http::Dep<Redis>| {
            let key = key.clone();
            async move {
                redis.set_ex(&key, "text", Duration::from_secs(60)).await?;
                let n: i64 = redis.incr(&key, 1).await?;
                Ok::<_, HttpError>(Json(n))
            }
        }
    };
    let router = Router::new().route("/n", post(handler));
    let served = redis_service(&url, router, 1).await;
    let reply = request(served.addr, "POST", "/n", &[]).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["error"], "INTERNAL_ERROR");
    served.service.stop().await.unwrap();
}
