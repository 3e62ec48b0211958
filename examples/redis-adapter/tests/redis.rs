//! The README's adapter, against the real Redis on this machine: a handler reads and
//! writes through its worker's connection, readiness pings it, and a Redis that is not
//! there stops the start, naming the adapter.

use nucleon::test::TestClient;
use nucleon::{App, Dep, HttpError, Json, Path, get};
use nucleon_testkit::Server;
use redis_adapter::{Redis, RedisAdapter};

/// The Redis that these tests use (`NUCLEON_TEST_REDIS_URL`; skipped on purpose with
/// `NUCLEON_TEST_SKIP_REDIS=1`).
const REDIS: Server = Server {
    name: "Redis",
    url_var: "NUCLEON_TEST_REDIS_URL",
    skip_var: "NUCLEON_TEST_SKIP_REDIS",
    default_url: "redis://127.0.0.1:6379",
    start_hint: "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
};

/// `host:port` of a `redis://host:port` URL.
fn addr(url: &str) -> String {
    url.trim_start_matches("redis://")
        .trim_end_matches('/')
        .to_owned()
}

async fn visit(Dep(redis): Dep<Redis>, Path(page): Path<String>) -> Result<Json<u64>, HttpError> {
    let key = format!("nucleon-test:visits:{page}");
    let count = redis
        .call(&["INCR", &key])
        .await
        .map_err(|e| HttpError::internal(e.to_string()))?;
    redis
        .call(&["EXPIRE", &key, "60"])
        .await
        .map_err(|e| HttpError::internal(e.to_string()))?;
    Ok(Json(count.unwrap_or_default().parse().unwrap_or_default()))
}

/// A call its caller gave up on (a `BLPOP` that outlasts a 50 ms timeout) still reads
/// its own reply: the next call gets `PONG`, not the `BLPOP`'s answer.
async fn resync(Dep(redis): Dep<Redis>) -> Result<Json<Option<String>>, HttpError> {
    let key = format!("nucleon-test:empty:{}", std::process::id());
    let args = ["BLPOP", &key, "0.3"];
    let blpop = redis.call(&args);
    let gave_up = tokio::time::timeout(std::time::Duration::from_millis(50), blpop).await;
    assert!(gave_up.is_err(), "BLPOP answered before its timeout");
    let pong = redis.call(&["PING"]).await;
    pong.map(Json)
        .map_err(|e| HttpError::internal(e.to_string()))
}

fn app(addr: &str) -> App {
    let config = format!("[default.redis]\naddr = \"{addr}\"\n");
    App::new("visits")
        .default_config(config.leak())
        .config_table("redis")
        .without_dns()
        .per_worker_adapter(RedisAdapter::default)
        .route("/visits/{page}", get(visit))
        .route("/resync", get(resync))
}

#[test]
fn a_handler_talks_to_redis_through_its_worker_s_connection() {
    let Some(url) = REDIS.url() else { return };
    let page = format!("p{}", std::process::id());
    let client = TestClient::new(app(&addr(&url)));
    assert_eq!(client.get(&format!("/visits/{page}")).json::<u64>(), 1);
    assert_eq!(client.get(&format!("/visits/{page}")).json::<u64>(), 2);
    let pong = client.get("/resync");
    assert_eq!(
        pong.json::<Option<String>>().as_deref(),
        Some("PONG"),
        "{}",
        pong.text()
    );
    let ready: serde_json::Value = client.get("/readyz").json();
    assert_eq!(ready["status"], "ready", "{ready}");
    assert!(
        ready["adapters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["adapter"] == "redis" && a["health"] == "healthy"),
        "{ready}"
    );
    client.stop().expect("a clean stop");
}

#[test]
fn a_redis_that_is_not_there_stops_the_start_naming_the_adapter() {
    // A port nobody listens on: bound, then let go.
    let port = {
        #[allow(clippy::disallowed_methods, reason = "test setup, outside any loop")]
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let panic = std::panic::catch_unwind(|| TestClient::new(app(&format!("127.0.0.1:{port}"))))
        .expect_err("no Redis there");
    let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(
        message.contains("adapter `redis` on worker 0 failed to start"),
        "{message}"
    );
}
