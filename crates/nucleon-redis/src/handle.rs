//! `Redis`: the handle handlers use.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::ConnectionManager;
use redis::{Cmd, FromRedisValue, ToRedisArgs};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::RedisError;

/// A Redis connection, as the adapter gives it: cheap to clone (clones share one
/// connection), `Send + Sync`. Every call has a time limit (`redis.command_timeout`),
/// a wait for a reconnection included, and fails with a typed [`RedisError`].
///
/// In a handler, take it as `Dep<Redis>` (`Named<Redis, N>` for a named instance);
/// elsewhere on a worker, [`Redis::current`]. For what the typed calls do not cover, build
/// any command with [`redis::cmd`] and run it with [`Redis::query`] (same time limit,
/// same errors), or take the raw [`ConnectionManager`] with [`Redis::connection`].
///
/// ```no_run
/// # async fn f(redis: nucleon_redis::Redis) -> Result<(), nucleon_redis::RedisError> {
/// use std::time::Duration;
///
/// redis.set_ex("session:42", "alice", Duration::from_secs(3600)).await?;
/// let user: Option<String> = redis.get("session:42").await?;
/// let visits = redis.incr("visits:/home", 1).await?;
/// let members: Vec<String> = redis.query(redis::cmd("SMEMBERS").arg("online")).await?;
/// # let _ = (user, visits, members);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Redis {
    conn: ConnectionManager,
    shared: Arc<Shared>,
}

/// What every clone of one handle shares.
pub(crate) struct Shared {
    /// Where Redis is, for messages: `cache.internal:6379 (10.0.0.7)`.
    pub(crate) target: String,
    pub(crate) command_timeout: Duration,
    /// Calls that failed because Redis was unreachable or did not answer in time.
    pub(crate) unavailable: AtomicU64,
    /// The last of those, for health.
    pub(crate) last_problem: Mutex<Option<String>>,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis")
            .field("target", &self.shared.target)
            .finish_non_exhaustive()
    }
}

impl Redis {
    pub(crate) fn new(conn: ConnectionManager, target: String, command_timeout: Duration) -> Self {
        Self {
            conn,
            shared: Arc::new(Shared {
                target,
                command_timeout,
                unavailable: AtomicU64::new(0),
                last_problem: Mutex::new(None),
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The main Redis of this worker (or of the process, for a per-process adapter);
    /// `None` where no [`crate::RedisAdapter`] started.
    pub fn current() -> Option<Self> {
        nucleon_runtime::handle::get::<Redis>()
    }

    /// The Redis named `name` ([`crate::RedisAdapter::named`]).
    pub fn named(name: &str) -> Option<Self> {
        nucleon_runtime::handle::named::<Redis>(name)
    }

    /// Where it connects: `host:port` and the address it resolved to.
    pub fn target(&self) -> &str {
        &self.shared.target
    }

    /// The raw connection manager (redis-rs), for what this API does not cover:
    /// pipelines, scripts, `redis::AsyncCommands`. Calls made on it have redis-rs's own
    /// time limit (`redis.command_timeout` once connected) and errors.
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// How many calls through this handle (and its clones) failed because Redis was
    /// unreachable or did not answer in time, since the start.
    pub fn unavailable_count(&self) -> u64 {
        self.shared.unavailable.load(Ordering::Relaxed)
    }

    /// Runs any command, typed, within `redis.command_timeout`.
    ///
    /// # Errors
    /// As [`RedisError`]: unavailable, timed out, refused by Redis, or a reply of
    /// another type.
    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        self.query_within(cmd, self.shared.command_timeout).await
    }

    /// [`Redis::query`] with a time limit of its own (a cache lookup that is not worth
    /// more than a few milliseconds).
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn query_within<T: FromRedisValue>(
        &self,
        cmd: &Cmd,
        limit: Duration,
    ) -> Result<T, RedisError> {
        let mut conn = self.conn.clone();
        let outcome = tokio::time::timeout(limit, cmd.query_async::<T>(&mut conn)).await;
        let error = match outcome {
            Ok(Ok(value)) => return Ok(value),
            // redis-rs's own response timeout is `redis.command_timeout`.
            Ok(Err(error)) => RedisError::from_redis(
                &name_of(cmd),
                &self.shared.target,
                limit.min(self.shared.command_timeout),
                &error,
            ),
            Err(_) => RedisError::Timeout {
                command: name_of(cmd),
                target: self.shared.target.clone(),
                after: limit,
            },
        };
        if error.is_unavailable() {
            self.shared.unavailable.fetch_add(1, Ordering::Relaxed);
            *self
                .shared
                .last_problem
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(error.to_string());
        }
        Err(error)
    }

    /// `PING`: whether Redis answers.
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn ping(&self) -> Result<(), RedisError> {
        let _: String = self.query(&redis::cmd("PING")).await?;
        Ok(())
    }

    /// `GET key`: its value, `None` when there is none.
    ///
    /// # Errors
    /// As [`Redis::query`]; [`RedisError::Type`] when the value is not a `V`.
    pub async fn get<V: FromRedisValue>(
        &self,
        key: impl ToRedisArgs,
    ) -> Result<Option<V>, RedisError> {
        self.query(redis::cmd("GET").arg(key)).await
    }

    /// `SET key value`, with no expiry.
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn set(
        &self,
        key: impl ToRedisArgs,
        value: impl ToRedisArgs,
    ) -> Result<(), RedisError> {
        self.query(redis::cmd("SET").arg(key).arg(value)).await
    }

    /// `SET key value PX ttl`: set, expiring after `ttl` (millisecond precision; at
    /// least 1 ms).
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn set_ex(
        &self,
        key: impl ToRedisArgs,
        value: impl ToRedisArgs,
        ttl: Duration,
    ) -> Result<(), RedisError> {
        self.query(
            redis::cmd("SET")
                .arg(key)
                .arg(value)
                .arg("PX")
                .arg(millis(ttl)),
        )
        .await
    }

    /// `SET key value NX [PX ttl]`: set only when the key does not exist; whether it
    /// was set (a lock, a first writer).
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn set_nx(
        &self,
        key: impl ToRedisArgs,
        value: impl ToRedisArgs,
        ttl: Option<Duration>,
    ) -> Result<bool, RedisError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key).arg(value).arg("NX");
        if let Some(ttl) = ttl {
            cmd.arg("PX").arg(millis(ttl));
        }
        let set: Option<String> = self.query(&cmd).await?;
        Ok(set.is_some())
    }

    /// `DEL key`: whether it existed.
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn del(&self, key: impl ToRedisArgs) -> Result<bool, RedisError> {
        let removed: u64 = self.query(redis::cmd("DEL").arg(key)).await?;
        Ok(removed > 0)
    }

    /// `EXISTS key`.
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn exists(&self, key: impl ToRedisArgs) -> Result<bool, RedisError> {
        let found: u64 = self.query(redis::cmd("EXISTS").arg(key)).await?;
        Ok(found > 0)
    }

    /// `PEXPIRE key ttl`: whether the key exists (and now expires after `ttl`).
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn expire(&self, key: impl ToRedisArgs, ttl: Duration) -> Result<bool, RedisError> {
        let set: u64 = self
            .query(redis::cmd("PEXPIRE").arg(key).arg(millis(ttl)))
            .await?;
        Ok(set > 0)
    }

    /// `PTTL key`: the time the key has left; `None` when it does not exist or does not
    /// expire (tell them apart with [`Redis::exists`]).
    ///
    /// # Errors
    /// As [`Redis::query`].
    pub async fn ttl(&self, key: impl ToRedisArgs) -> Result<Option<Duration>, RedisError> {
        let left: i64 = self.query(redis::cmd("PTTL").arg(key)).await?;
        Ok(u64::try_from(left).ok().map(Duration::from_millis))
    }

    /// `INCRBY key by`: the new value (a missing key counts from 0).
    ///
    /// # Errors
    /// As [`Redis::query`]; [`RedisError::Refused`] when the value is not an integer.
    pub async fn incr(&self, key: impl ToRedisArgs, by: i64) -> Result<i64, RedisError> {
        self.query(redis::cmd("INCRBY").arg(key).arg(by)).await
    }

    /// `GET key`, read as JSON.
    ///
    /// # Errors
    /// As [`Redis::get`]; [`RedisError::Json`] when the value is not a `T` in JSON.
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        key: impl ToRedisArgs,
    ) -> Result<Option<T>, RedisError> {
        let Some(bytes) = self.get::<Vec<u8>>(key).await? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| RedisError::Json {
                command: "GET".to_owned(),
                source,
            })
    }

    /// `SET key json [PX ttl]`: `value` stored as JSON.
    ///
    /// # Errors
    /// As [`Redis::set`]; [`RedisError::Json`] when `value` does not serialize.
    pub async fn set_json<T: Serialize + ?Sized>(
        &self,
        key: impl ToRedisArgs,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<(), RedisError> {
        let json = serde_json::to_vec(value).map_err(|source| RedisError::Json {
            command: "SET".to_owned(),
            source,
        })?;
        match ttl {
            Some(ttl) => self.set_ex(key, json, ttl).await,
            None => self.set(key, json).await,
        }
    }
}

/// A duration in whole milliseconds for `PX`/`PEXPIRE`: at least 1 (Redis refuses 0).
fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The command's name (its first word), for messages: never its arguments.
fn name_of(cmd: &Cmd) -> String {
    match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).to_ascii_uppercase(),
        _ => "command".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_named_by_their_first_word_only() {
        assert_eq!(name_of(redis::cmd("get").arg("secret-key")), "GET");
        assert_eq!(millis(Duration::from_micros(10)), 1);
        assert_eq!(millis(Duration::from_secs(2)), 2000);
    }
}
