//! Response caching for nucleon-http routes (feature `http`): `cached(ttl)`.

use std::cell::{Cell, OnceCell};
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use nucleon_http::header::{
    AUTHORIZATION, CACHE_CONTROL, CONTENT_TYPE, COOKIE, HeaderMap, HeaderValue, PRAGMA, SET_COOKIE,
    VARY,
};
use nucleon_http::{Body, Bytes, Endpoint, IntoResponse, Method, Request, Response, StatusCode};

use crate::handle::Redis;

/// The response header that says what the cache did: `HIT`, `MISS` (served by the
/// handler, and stored when it could be), `BYPASS` (the request asked not to be served
/// from the cache, or is not cacheable), `UNAVAILABLE` (the cache could not be asked:
/// served by the handler, not stored).
pub const X_CACHE: &str = "x-cache";

/// A cached route's answers: kept for `ttl` in the worker's [`Redis`] (the main one,
/// or the one named by [`CacheLayer::on`]).
///
/// ```no_run
/// use std::time::Duration;
/// use nucleon_http::{get, Json, Router};
/// use nucleon_redis::cached;
///
/// async fn countries() -> Json<Vec<&'static str>> { Json(vec!["gb", "fr"]) }
///
/// let router = Router::new().route(
///     "/countries/",
///     get(countries).layer(cached(Duration::from_secs(30))),
/// );
/// ```
///
/// See [`CacheLayer`] for what is cached, and how a Redis that is down is lived with.
pub fn cached(ttl: Duration) -> CacheLayer {
    CacheLayer::redis(ttl)
}

/// A request's cache key, the default one: `GET /path?query` (the method, the path and
/// the query as the client sent them), or `None` (not cached) for a request that
/// carries `Authorization` or `Cookie`: its answer may be that user's own, and must
/// not be served to another. A key function of your own may build on it.
///
/// ```
/// use nucleon_http::Request;
/// use nucleon_redis::default_key;
///
/// let request = Request::get("/countries/?page=2").body(Default::default()).unwrap();
/// assert_eq!(default_key(&request).as_deref(), Some("GET /countries/?page=2"));
/// let mine = Request::get("/me").header("authorization", "Bearer x").body(Default::default()).unwrap();
/// assert_eq!(default_key(&mine), None);
/// ```
pub fn default_key(request: &Request) -> Option<String> {
    let headers = request.headers();
    if headers.contains_key(AUTHORIZATION) || headers.contains_key(COOKIE) {
        return None;
    }
    let target = request
        .uri()
        .path_and_query()
        .map_or("/", |target| target.as_str());
    Some(format!("{} {target}", request.method()))
}

type LocalBoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

type KeyFn = Arc<dyn Fn(&Request) -> Option<String> + Send + Sync>;

/// Where a layer keeps its entries.
#[derive(Clone, Debug)]
enum Store {
    /// The worker's `Redis` handle, by instance name.
    Redis(Option<String>),
    /// A moka cache per worker, of at most this many bytes.
    Memory(u64),
}

#[derive(Clone)]
struct Settings {
    ttl: Duration,
    store: Store,
    key: KeyFn,
    prefix: String,
    timeout: Duration,
    pause: Duration,
    max_body: usize,
}

/// The layer that caches a route's JSON answers (a tower `Layer`, for
/// `MethodRouter::layer` or `Router::layer`); made by [`cached`] (in Redis) or
/// [`CacheLayer::in_process`] (in the worker's memory).
///
/// **What is cached**: the answers to `GET` requests whose key function gives a key
/// ([`default_key`]: method, path and query; none for requests with `Authorization` or
/// `Cookie`), when the answer is a `200` with a JSON `Content-Type`
/// (`application/json`, `…+json`), a body of known length up to
/// [`CacheLayer::max_body`] (1 MiB), no `Set-Cookie`, no `Vary`, and no
/// `Cache-Control: no-store`, `private` or `no-cache`. Only the status, the
/// `Content-Type` and the body are kept; a hit answers them with `x-cache: HIT`. Other
/// methods pass through untouched.
///
/// **What the client may ask**: `Cache-Control: no-cache` (or `Pragma: no-cache`) is
/// served by the handler, never from the cache, and its answer replaces the entry;
/// `Cache-Control: no-store` is served by the handler and not stored. Both answer
/// `x-cache: BYPASS`.
///
/// **A Redis that is down** never fails a request: a lookup or a store that fails, or
/// takes longer than [`CacheLayer::timeout`] (50 ms), is served by the handler
/// (`x-cache: UNAVAILABLE`) and counted ([`CacheStats::unavailable`]; the Redis
/// adapter's health says so too); and for [`CacheLayer::pause`] (1 s) after it, that
/// worker does not ask Redis at all, so that an outage costs no request a timeout.
/// Then it tries again: caching resumes by itself when Redis is back.
#[derive(Clone)]
#[must_use]
pub struct CacheLayer {
    settings: Settings,
    stats: CacheStats,
}

impl std::fmt::Debug for CacheLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheLayer")
            .field("ttl", &self.settings.ttl)
            .field("store", &self.settings.store)
            .field("prefix", &self.settings.prefix)
            .finish_non_exhaustive()
    }
}

impl CacheLayer {
    /// Entries kept in Redis for `ttl` (as [`cached`]).
    pub fn redis(ttl: Duration) -> Self {
        Self::with_store(ttl, Store::Redis(None))
    }

    /// Entries kept in each worker's memory for `ttl`, for a service without Redis: a
    /// [moka](https://docs.rs/moka) cache per worker (LRU-like eviction, by bytes: see
    /// [`CacheLayer::capacity`]). Each worker fills its own, so a first request per
    /// worker is a miss.
    ///
    /// moka's `sync` cache, not its `future` one: each worker's cache is used by that
    /// worker's thread alone, so its locks are never contended and no call waits; it
    /// runs no background thread (moka 0.12 does its housekeeping inside the calls, a
    /// bounded amount each); and nothing here needs the `future` cache's async
    /// coalescing of loads.
    pub fn in_process(ttl: Duration) -> Self {
        Self::with_store(ttl, Store::Memory(8 * 1024 * 1024))
    }

    fn with_store(ttl: Duration, store: Store) -> Self {
        Self {
            settings: Settings {
                ttl,
                store,
                key: Arc::new(default_key),
                prefix: "nucleon:cache:".to_owned(),
                timeout: Duration::from_millis(50),
                pause: Duration::from_secs(1),
                max_body: 1024 * 1024,
            },
            stats: CacheStats::default(),
        }
    }

    /// The key function: a request's key, or `None` to serve it without the cache
    /// (counted as bypassed). The key is stored under [`CacheLayer::prefix`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use nucleon_redis::{cached, default_key};
    ///
    /// // One entry per language: the answer depends on Accept-Language.
    /// let layer = cached(Duration::from_secs(60)).key(|request| {
    ///     let language = request.headers().get("accept-language")?.to_str().ok()?.to_owned();
    ///     Some(format!("{}|{language}", default_key(request)?))
    /// });
    /// ```
    pub fn key<F>(mut self, key: F) -> Self
    where
        F: Fn(&Request) -> Option<String> + Send + Sync + 'static,
    {
        self.settings.key = Arc::new(key);
        self
    }

    /// What every key starts with (default `nucleon:cache:`): the service's name, a
    /// version, anything that keeps its entries apart from others' in one Redis.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.settings.prefix = prefix.into();
        self
    }

    /// Keeps the entries in the Redis named `name` (`RedisAdapter::named`) rather than
    /// the main one.
    pub fn on(mut self, name: impl Into<String>) -> Self {
        self.settings.store = Store::Redis(Some(name.into()));
        self
    }

    /// The longest a lookup or a store may take in Redis before the request is served
    /// without it (default 50 ms).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.settings.timeout = timeout;
        self
    }

    /// How long a worker leaves Redis alone after a failed lookup or store (default
    /// 1 s): its requests are served by the handler meanwhile, with no wait.
    pub fn pause(mut self, pause: Duration) -> Self {
        self.settings.pause = pause;
        self
    }

    /// The largest body stored (default 1 MiB); larger answers are served, not stored.
    pub fn max_body(mut self, bytes: usize) -> Self {
        self.settings.max_body = bytes;
        self
    }

    /// The in-process cache's size, per worker, in bytes of keys and bodies (default
    /// 8 MiB). No effect on a Redis cache.
    pub fn capacity(mut self, bytes: u64) -> Self {
        if let Store::Memory(capacity) = &mut self.settings.store {
            *capacity = bytes;
        }
        self
    }

    /// The layer's counters (every worker's, summed when read). Take them before
    /// giving the layer to a route.
    pub fn stats(&self) -> CacheStats {
        self.stats.clone()
    }
}

impl tower::Layer<Endpoint> for CacheLayer {
    type Service = CacheService;

    /// Builds the worker's service (called on each worker): its own moka cache, its
    /// own counters, its own pause.
    fn layer(&self, inner: Endpoint) -> CacheService {
        let store = match &self.settings.store {
            Store::Redis(name) => WorkerStore::Redis {
                name: name.clone(),
                handle: OnceCell::new(),
            },
            Store::Memory(capacity) => WorkerStore::Memory(
                moka::sync::Cache::builder()
                    .max_capacity(*capacity)
                    .weigher(|key: &String, entry: &Entry| {
                        u32::try_from(key.len() + entry.body.len()).unwrap_or(u32::MAX)
                    })
                    .time_to_live(self.settings.ttl)
                    .build(),
            ),
        };
        CacheService {
            inner,
            settings: Arc::new(self.settings.clone()),
            worker: Rc::new(WorkerCache {
                store,
                paused_until: Cell::new(None),
                missing_warned: Cell::new(false),
                counters: self.stats.register(),
            }),
        }
    }
}

/// One cached answer.
#[derive(Clone)]
struct Entry {
    content_type: HeaderValue,
    body: Bytes,
}

impl Entry {
    /// As stored in Redis: the content type, a newline, the body.
    fn encode(&self) -> Vec<u8> {
        let mut raw = Vec::with_capacity(self.content_type.len() + 1 + self.body.len());
        raw.extend_from_slice(self.content_type.as_bytes());
        raw.push(b'\n');
        raw.extend_from_slice(&self.body);
        raw
    }

    fn decode(raw: Bytes) -> Option<Self> {
        let split = raw.iter().position(|b| *b == b'\n')?;
        let content_type = HeaderValue::from_maybe_shared(raw.slice(..split)).ok()?;
        Some(Self {
            content_type,
            body: raw.slice(split + 1..),
        })
    }

    fn response(&self) -> Response {
        let mut response = Response::new(Body::from(self.body.clone()));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, self.content_type.clone());
        mark(response, "HIT")
    }
}

enum WorkerStore {
    Redis {
        name: Option<String>,
        handle: OnceCell<Redis>,
    },
    Memory(moka::sync::Cache<String, Entry>),
}

/// A layer's state on one worker.
struct WorkerCache {
    store: WorkerStore,
    /// Redis failed: leave it alone until then.
    paused_until: Cell<Option<Instant>>,
    missing_warned: Cell<bool>,
    counters: Arc<Counters>,
}

/// The worker's service of a [`CacheLayer`]: serves a cached route.
#[derive(Clone)]
pub struct CacheService {
    inner: Endpoint,
    settings: Arc<Settings>,
    worker: Rc<WorkerCache>,
}

impl std::fmt::Debug for CacheService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CacheService").finish_non_exhaustive()
    }
}

impl tower::Service<Request> for CacheService {
    type Response = Response;
    type Error = Infallible;
    type Future = LocalBoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { Ok(this.serve(request).await) })
    }
}

/// What a lookup found.
enum Lookup {
    Hit(Entry),
    Miss,
    Unavailable,
}

impl CacheService {
    async fn serve(self, request: Request) -> Response {
        if request.method() != Method::GET {
            return self.inner.call(request).await;
        }
        let counters = &self.worker.counters;
        let asks = Directives::of(request.headers());
        let key = if asks.no_store {
            None
        } else {
            (self.settings.key)(&request)
        };
        let Some(key) = key else {
            Counters::add(&counters.bypassed);
            return mark(self.inner.call(request).await, "BYPASS");
        };
        let key = format!("{}{key}", self.settings.prefix);
        if asks.no_cache {
            Counters::add(&counters.bypassed);
            let response = self.inner.call(request).await;
            return self.store(key, response, "BYPASS").await;
        }
        match self.lookup(&key).await {
            Lookup::Hit(entry) => {
                Counters::add(&counters.hits);
                entry.response()
            }
            Lookup::Miss => {
                Counters::add(&counters.misses);
                let response = self.inner.call(request).await;
                self.store(key, response, "MISS").await
            }
            Lookup::Unavailable => {
                Counters::add(&counters.unavailable);
                mark(self.inner.call(request).await, "UNAVAILABLE")
            }
        }
    }

    async fn lookup(&self, key: &str) -> Lookup {
        let redis = match &self.worker.store {
            WorkerStore::Memory(cache) => {
                return cache.get(key).map_or(Lookup::Miss, Lookup::Hit);
            }
            WorkerStore::Redis { .. } => match self.redis() {
                Some(redis) => redis,
                None => return Lookup::Unavailable,
            },
        };
        let get = redis::cmd("GET").arg(key).clone();
        match redis
            .query_within::<Option<Bytes>>(&get, self.settings.timeout)
            .await
        {
            Ok(found) => {
                self.resumed(&redis);
                // An entry this code cannot read (written by another version) is a miss.
                found
                    .and_then(Entry::decode)
                    .map_or(Lookup::Miss, Lookup::Hit)
            }
            Err(error) => {
                self.failed(&redis, &error);
                Lookup::Unavailable
            }
        }
    }

    /// The worker's Redis, when it is to be asked now (not paused, and there is one).
    fn redis(&self) -> Option<Redis> {
        let WorkerStore::Redis { name, handle } = &self.worker.store else {
            return None;
        };
        if let Some(until) = self.worker.paused_until.get()
            && Instant::now() < until
        {
            return None;
        }
        if let Some(redis) = handle.get() {
            return Some(redis.clone());
        }
        let found = match name {
            Some(name) => Redis::named(name),
            None => Redis::current(),
        };
        match found {
            Some(redis) => Some(handle.get_or_init(|| redis).clone()),
            None => {
                if !self.worker.missing_warned.replace(true) {
                    let which = name.as_deref().map_or_else(
                        || "RedisAdapter::new()".to_owned(),
                        |n| format!("RedisAdapter::named(\"{n}\")"),
                    );
                    tracing::error!(target: "nucleon::redis", "a cached route has no Redis on this worker: add {which} to the service; serving uncached");
                }
                None
            }
        }
    }

    fn failed(&self, redis: &Redis, error: &crate::RedisError) {
        let pause = self.settings.pause;
        if self.worker.paused_until.get().is_none() {
            tracing::warn!(target: "nucleon::redis", redis = %redis.target(), %error, "response cache unavailable: serving uncached, trying again in {pause:?}");
        }
        self.worker.paused_until.set(Some(Instant::now() + pause));
    }

    fn resumed(&self, redis: &Redis) {
        if self.worker.paused_until.take().is_some() {
            tracing::info!(target: "nucleon::redis", redis = %redis.target(), "response cache available again");
        }
    }

    /// Stores `response` under `key` when it may be, and answers it, marked `label`.
    async fn store(&self, key: String, response: Response, label: &'static str) -> Response {
        let counters = &self.worker.counters;
        let length = http_body::Body::size_hint(response.body()).exact();
        let fits = length.is_some_and(|n| n <= self.settings.max_body as u64);
        let Some(content_type) = storable(&response).filter(|_| fits) else {
            Counters::add(&counters.not_stored);
            return mark(response, label);
        };
        let (parts, body) = response.into_parts();
        let body = match body.collect_bytes(self.settings.max_body).await {
            Ok(body) => body,
            Err(error) => return error.into_response(),
        };
        let entry = Entry { content_type, body };
        let stored = match &self.worker.store {
            WorkerStore::Memory(cache) => {
                cache.insert(key, entry.clone());
                true
            }
            WorkerStore::Redis { .. } => match self.redis() {
                None => {
                    Counters::add(&counters.unavailable);
                    false
                }
                Some(redis) => {
                    let ttl = u64::try_from(self.settings.ttl.as_millis())
                        .unwrap_or(u64::MAX)
                        .max(1);
                    let set = redis::cmd("SET")
                        .arg(&key)
                        .arg(entry.encode())
                        .arg("PX")
                        .arg(ttl)
                        .clone();
                    match redis.query_within::<()>(&set, self.settings.timeout).await {
                        Ok(()) => true,
                        Err(error) => {
                            self.failed(&redis, &error);
                            Counters::add(&counters.unavailable);
                            false
                        }
                    }
                }
            },
        };
        if stored {
            Counters::add(&counters.stored);
        }
        mark(Response::from_parts(parts, Body::from(entry.body)), label)
    }
}

/// The `Content-Type` of an answer that may be stored, or `None`.
fn storable(response: &Response) -> Option<HeaderValue> {
    if response.status() != StatusCode::OK {
        return None;
    }
    let headers = response.headers();
    if headers.contains_key(SET_COOKIE) || headers.contains_key(VARY) {
        return None;
    }
    if headers.get_all(CACHE_CONTROL).iter().any(|value| {
        value.to_str().is_ok_and(|v| {
            v.split(',').any(|d| {
                let d = d.trim();
                d.eq_ignore_ascii_case("no-store")
                    || d.eq_ignore_ascii_case("private")
                    || d.eq_ignore_ascii_case("no-cache")
            })
        })
    }) {
        return None;
    }
    let content_type = headers.get(CONTENT_TYPE)?;
    let essence = content_type.to_str().ok()?.split(';').next()?.trim();
    let json = essence.eq_ignore_ascii_case("application/json")
        || essence
            .rsplit_once('+')
            .is_some_and(|(_, suffix)| suffix.eq_ignore_ascii_case("json"));
    json.then(|| content_type.clone())
}

/// What a request's `Cache-Control` (and `Pragma`) ask of the cache.
#[derive(Debug, Default, Clone, Copy)]
struct Directives {
    no_cache: bool,
    no_store: bool,
}

impl Directives {
    fn of(headers: &HeaderMap) -> Self {
        let mut asks = Self::default();
        for value in headers.get_all(CACHE_CONTROL) {
            let Ok(value) = value.to_str() else { continue };
            for directive in value.split(',').map(str::trim) {
                let name = directive.split('=').next().unwrap_or_default().trim();
                if name.eq_ignore_ascii_case("no-cache") {
                    asks.no_cache = true;
                } else if name.eq_ignore_ascii_case("no-store") {
                    asks.no_store = true;
                } else if directive.eq_ignore_ascii_case("max-age=0") {
                    asks.no_cache = true;
                }
            }
        }
        if !headers.contains_key(CACHE_CONTROL)
            && headers
                .get(PRAGMA)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("no-cache"))
        {
            asks.no_cache = true;
        }
        asks
    }
}

fn mark(mut response: Response, label: &'static str) -> Response {
    response
        .headers_mut()
        .insert(X_CACHE, HeaderValue::from_static(label));
    response
}

/// One worker's counters of one layer.
#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    stored: AtomicU64,
    bypassed: AtomicU64,
    not_stored: AtomicU64,
    unavailable: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// A cache layer's counters, every worker's summed when read. Cheap to clone; each
/// worker counts in counters of its own (no cache line shared between cores on every
/// request).
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    workers: Arc<Mutex<Vec<Arc<Counters>>>>,
}

/// The counts of a [`CacheStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct CacheCounts {
    /// Answered from the cache.
    pub hits: u64,
    /// Looked up and not found: served by the handler.
    pub misses: u64,
    /// Answers stored.
    pub stored: u64,
    /// Requests that did not read the cache: `Cache-Control: no-cache`/`no-store`, or
    /// no key (`Authorization`, `Cookie`, the key function's `None`).
    pub bypassed: u64,
    /// Answers not stored: not a 200, not JSON, too large, or marked not to be.
    pub not_stored: u64,
    /// Lookups and stores that could not be made: Redis down, slow, paused after a
    /// failure, or missing. Their requests were served without the cache.
    pub unavailable: u64,
}

impl CacheStats {
    fn register(&self) -> Arc<Counters> {
        let counters = Arc::new(Counters::default());
        self.workers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Arc::clone(&counters));
        counters
    }

    /// Every worker's counts, summed.
    pub fn counts(&self) -> CacheCounts {
        let workers = self.workers.lock().unwrap_or_else(PoisonError::into_inner);
        let mut sum = CacheCounts::default();
        for w in workers.iter() {
            let read = |c: &AtomicU64| c.load(Ordering::Relaxed);
            sum.hits += read(&w.hits);
            sum.misses += read(&w.misses);
            sum.stored += read(&w.stored);
            sum.bypassed += read(&w.bypassed);
            sum.not_stored += read(&w.not_stored);
            sum.unavailable += read(&w.unavailable);
        }
        sum
    }

    /// Requests served without the cache because it could not be asked (see
    /// [`CacheCounts::unavailable`]).
    pub fn unavailable(&self) -> u64 {
        self.counts().unavailable
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16, headers: &[(&str, &str)]) -> Response {
        let mut response = Response::new(Body::from("{}"));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().append(
                nucleon_http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        response
    }

    #[test]
    fn only_plain_json_200s_are_stored() {
        let json = [("content-type", "application/json")];
        assert!(storable(&response(200, &json)).is_some());
        assert!(
            storable(&response(
                200,
                &[("content-type", "application/problem+json; charset=utf-8")]
            ))
            .is_some()
        );
        assert!(storable(&response(404, &json)).is_none());
        assert!(storable(&response(201, &json)).is_none());
        assert!(storable(&response(200, &[("content-type", "text/plain")])).is_none());
        assert!(storable(&response(200, &[])).is_none());
        let with = |extra: (&'static str, &'static str)| response(200, &[json[0], extra]);
        assert!(storable(&with(("set-cookie", "a=b"))).is_none());
        assert!(storable(&with(("vary", "accept-language"))).is_none());
        assert!(storable(&with(("cache-control", "max-age=60, private"))).is_none());
        assert!(storable(&with(("cache-control", "No-Store"))).is_none());
        assert!(storable(&with(("cache-control", "max-age=60"))).is_some());
    }

    #[test]
    fn what_requests_ask() {
        let of = |pairs: &[(&'static str, &'static str)]| {
            let mut headers = HeaderMap::new();
            for (name, value) in pairs {
                headers.append(*name, HeaderValue::from_static(value));
            }
            Directives::of(&headers)
        };
        assert!(!of(&[]).no_cache && !of(&[]).no_store);
        assert!(of(&[("cache-control", "no-cache")]).no_cache);
        assert!(of(&[("cache-control", "max-age=0")]).no_cache);
        assert!(of(&[("cache-control", "max-age=10, No-Store")]).no_store);
        assert!(of(&[("pragma", "no-cache")]).no_cache);
        assert!(!of(&[("cache-control", "max-age=10"), ("pragma", "no-cache")]).no_cache);
    }

    #[test]
    fn entries_round_trip() {
        let entry = Entry {
            content_type: HeaderValue::from_static("application/json"),
            body: Bytes::from_static(b"{\"a\":\n1}"),
        };
        let back = Entry::decode(Bytes::from(entry.encode())).unwrap();
        assert_eq!(back.content_type, "application/json");
        assert_eq!(back.body, entry.body);
        assert!(Entry::decode(Bytes::from_static(b"no newline")).is_none());
    }
}
