//! `RedisAdapter`: a Redis as part of the service.

use std::net::IpAddr;
use std::sync::PoisonError;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nucleon_runtime::{Adapter, AdapterContext, BoxError, Health};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo};

use crate::config::{RedisConfig, describe, table};
use crate::error::RedisError;
use crate::handle::Redis;

/// The Redis adapter: reads `[<env>.redis]` (or `[<env>.redis.<name>]`), connects at
/// start, and gives a [`Redis`] handle. redis-rs's [`ConnectionManager`] underneath
/// multiplexes every call of its worker on one connection and reconnects by itself
/// when the link drops (with backoff between `redis.reconnect_min` and
/// `redis.reconnect_max`); a call made while it reconnects waits for it, within
/// `redis.command_timeout`.
///
/// **Per worker** is the way to add it (`App::per_worker_adapter(RedisAdapter::new)`,
/// or [`WorkerSetup::adapter`](nucleon_runtime::WorkerSetup::adapter)): each worker has
/// its own connection, whose socket and driving task live on the worker's loop, so a
/// call never leaves it. Its handle is `Send + Sync`, so it works per process too
/// (`App::adapter`): one connection on the process loop, which every worker's calls
/// cross to and back. Measured on 2 workers against a local Redis (the crate's `scope`
/// example), per worker served 1.4× the calls per second with one call in flight per
/// worker, 1.3× with 32, for 0.6× and 0.75× the CPU per call; the connections it costs
/// (one per worker) are few. Per process has a catch besides: redis-rs spawns on the
/// *current* tokio runtime, so after a loss the manager's new connection (its socket
/// and driving task) lives on the loop of whichever worker's call noticed the loss,
/// not on the process loop.
///
/// **Name resolution.** A host name in `redis.url` is resolved through nucleon-dns
/// (the worker's `Resolver`: no `getaddrinfo`, on the loop) when the adapter starts,
/// trying its addresses as `connect_tcp` does (Happy Eyeballs: `localhost` is `::1` and
/// `127.0.0.1`, and Redis may listen on one only); redis-rs is then given the address
/// that answered. Why not redis-rs's own resolver hook: its `ConnectionManager` takes
/// no resolver (only a bare multiplexed connection does), and its default resolver is
/// tokio's `lookup_host`, which runs `getaddrinfo` on the blocking pool. The cost: a
/// Redis that moves to another address is found again at the next start (as a
/// PostgreSQL host is by nucleon-db); the reconnections in between go to the address
/// found.
///
/// **Health**: a `PING` within `redis.health_timeout`. Healthy; degraded when the
/// `PING` took longer than `redis.slow_ping`, or calls failed for want of Redis since
/// the last check; unhealthy when it does not answer, or *degraded* then too when
/// `redis.required = false` (a cache the service does without, which must not take the
/// instance out of its load balancer).
///
/// ```no_run
/// use nucleon_redis::RedisAdapter;
/// use nucleon_runtime::Runtime;
///
/// Runtime::builder()
///     .per_worker(|worker| {
///         worker.adapter(RedisAdapter::new()); // [<env>.redis]
///         worker.adapter(RedisAdapter::named("sessions")); // [<env>.redis.sessions]
///         Ok(())
///     })
///     .build()?
///     .run()?;
/// # Ok::<(), nucleon_runtime::RuntimeError>(())
/// ```
#[derive(Debug, Default)]
pub struct RedisAdapter {
    name: Option<String>,
    redis: Option<Redis>,
    settings: Option<RedisConfig>,
    /// The handle's count of unavailable calls at the last health check.
    seen: AtomicU64,
}

impl RedisAdapter {
    /// The main Redis (`[<env>.redis]`); its handle is `Dep<Redis>`, [`Redis::current`].
    pub fn new() -> Self {
        Self::default()
    }

    /// The Redis named `name` (`[<env>.redis.<name>]`); its handle is found by that
    /// name (`Named<Redis, N>`, [`Redis::named`]).
    pub fn named(name: impl Into<String>) -> Self {
        Self {
            name: Some(name.into()),
            ..Self::default()
        }
    }
}

impl Adapter for RedisAdapter {
    type Handle = Redis;

    fn name(&self) -> &str {
        "redis"
    }

    fn instance(&self) -> Option<&str> {
        self.name.as_deref()
    }

    async fn start(&mut self, ctx: &AdapterContext) -> Result<Redis, BoxError> {
        let settings = RedisConfig::load(ctx.config(), self.name.as_deref())?;
        let key = table(self.name.as_deref());
        let info = settings
            .connection_info()
            .map_err(|message| RedisError::Config(format!("`{key}.url`: {message}")))?;
        let (info, target) = resolve(info, settings.required).await?;
        let client = redis::Client::open(info).map_err(|e| {
            RedisError::Config(format!(
                "`{key}.url`: {}",
                e.detail().unwrap_or(e.category())
            ))
        })?;
        if settings.required {
            first_contact(&client, &settings, &target).await?;
        }
        let manager = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_min_delay(settings.reconnect_min)
            .set_max_delay(settings.reconnect_max);
        let conn = ConnectionManager::new_lazy_with_config(client, manager).map_err(|e| {
            RedisError::Config(format!("`{key}`: {}", e.detail().unwrap_or(e.category())))
        })?;
        let redis = Redis::new(conn, target.clone(), settings.command_timeout);
        if settings.required {
            // Connects the manager now, not at the first request.
            redis.ping().await?;
            tracing::info!(target: "nucleon::redis", worker = ?ctx.worker(), redis = %target, "{key}: connected to Redis at {target}");
        } else {
            tracing::info!(target: "nucleon::redis", worker = ?ctx.worker(), redis = %target, "{key}: Redis at {target} (not required: connects at first use)");
        }
        self.settings = Some(settings);
        self.redis = Some(redis.clone());
        Ok(redis)
    }

    async fn health(&self) -> Health {
        let (Some(redis), Some(settings)) = (&self.redis, &self.settings) else {
            return Health::Unhealthy("not started".into());
        };
        let started = Instant::now();
        let ping = redis
            .query_within::<String>(&redis::cmd("PING"), settings.health_timeout)
            .await;
        let took = started.elapsed();
        let failed = redis.unavailable_count();
        let since = failed.saturating_sub(self.seen.swap(failed, Ordering::Relaxed));
        match ping {
            Err(error) if settings.required => Health::Unhealthy(error.to_string()),
            Err(error) => Health::Degraded(format!(
                "{error} (redis.required = false: the service goes on without it)"
            )),
            Ok(_) if !settings.slow_ping.is_zero() && took > settings.slow_ping => {
                Health::Degraded(format!(
                    "PING took {took:.1?}, more than redis.slow_ping ({:?})",
                    settings.slow_ping
                ))
            }
            Ok(_) if since > 0 => {
                let last = redis
                    .shared()
                    .last_problem
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone()
                    .unwrap_or_default();
                Health::Degraded(format!(
                    "{since} call(s) failed for want of Redis since the last check (last: {last}); PING answers now"
                ))
            }
            Ok(_) => Health::Healthy,
        }
    }

    /// Lets the connection go: it closes with its last handle (the calls in flight
    /// have ended by now).
    async fn stop(&mut self, _deadline: Instant) -> Result<(), BoxError> {
        if let Some(redis) = self.redis.take() {
            tracing::debug!(target: "nucleon::redis", redis = %redis.target(), "connection released");
        }
        Ok(())
    }
}

/// A host name turned into the address to connect to, through nucleon-dns; the
/// connection info with that address, and the target as messages name it.
async fn resolve(
    info: ConnectionInfo,
    required: bool,
) -> Result<(ConnectionInfo, String), RedisError> {
    let ConnectionAddr::Tcp(host, port) = info.addr().clone() else {
        let target = describe(&info);
        return Ok((info, target));
    };
    if host.parse::<IpAddr>().is_ok() {
        let target = describe(&info);
        return Ok((info, target));
    }
    let name = format!("{host}:{port}");
    let ip = match nucleon_dns::connect_tcp(&host, port).await {
        Ok(probe) => probe
            .peer_addr()
            .map_err(|e| RedisError::Unavailable {
                target: name.clone(),
                reason: e.to_string(),
            })?
            .ip(),
        Err(error) if required => {
            return Err(RedisError::Unavailable {
                target: name,
                reason: error.to_string(),
            });
        }
        Err(error) => {
            // Not required: the name's first address, to connect to later.
            let addrs = nucleon_dns::lookup_host(&host, port).await.map_err(|e| {
                RedisError::Unavailable {
                    target: name.clone(),
                    reason: e.to_string(),
                }
            })?;
            let first = addrs.first().ok_or_else(|| RedisError::Unavailable {
                target: name.clone(),
                reason: "the name has no address".into(),
            })?;
            tracing::warn!(target: "nucleon::redis", redis = %name, "Redis at {name} does not answer yet ({error}); it will be tried at {}", first.ip());
            first.ip()
        }
    };
    tracing::debug!(target: "nucleon::redis", host, %ip, "Redis host resolved through nucleon-dns");
    let target = format!("{name} ({ip})");
    Ok((
        info.set_addr(ConnectionAddr::Tcp(ip.to_string(), port)),
        target,
    ))
}

/// One connection, made and dropped, so that a start that cannot work fails at once
/// with Redis's own reason (a wrong password, a database that does not exist), where
/// the manager would retry it with backoff.
async fn first_contact(
    client: &redis::Client,
    settings: &RedisConfig,
    target: &str,
) -> Result<(), RedisError> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(settings.connect_timeout))
        .set_response_timeout(Some(settings.command_timeout));
    let limit = settings.connect_timeout + settings.command_timeout;
    let connect = client.get_multiplexed_async_connection_with_config(&config);
    let mut conn = match tokio::time::timeout(limit, connect).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(error)) => return Err(RedisError::from_redis("connect", target, limit, &error)),
        Err(_) => {
            return Err(RedisError::Timeout {
                command: "connect".into(),
                target: target.to_owned(),
                after: limit,
            });
        }
    };
    let pong = redis::cmd("PING").query_async::<String>(&mut conn).await;
    pong.map(drop)
        .map_err(|error| RedisError::from_redis("PING", target, settings.command_timeout, &error))
}
