//! # nucleon-testkit
//!
//! What Nucleon's tests (and yours) use when they need something outside the process:
//! a PostgreSQL, a RabbitMQ, a tool such as `strace`. The rule it keeps: **a test that
//! needs a server never passes silently without it.**
//!
//! - [`postgres_url`], [`amqp_url`] and [`redis_url`] give the server's URL once they
//!   have checked that it accepts connections; when it does not, they **panic** with
//!   what to do: the URL tried (its password masked), the variable that changes it, how
//!   to start the server on this machine, and the variable that skips those tests on
//!   purpose. With that
//!   variable set (`NUCLEON_TEST_SKIP_POSTGRES=1`), they return `None` and print one
//!   line per test binary saying so, which libtest's output capture does not swallow.
//! - [`require_tool`] does the same for a command (`strace`): present, skipped on
//!   purpose (`NUCLEON_TEST_SKIP_STRACE=1`), or a panic saying how to install it.
//! - [`Server`] and [`Tool`] underneath, for the servers and tools of adapters to come
//!   (a Redis, say): a `const` each, and the same behaviour. Their `*_in` methods take
//!   the environment as a parameter, so a test can try any environment without setting
//!   process-wide variables (tests in one binary run in parallel).
//! - [`http`]: a raw HTTP/1.1 client (one request per connection, or a keep-alive
//!   [`http::Connection`]) that shows exactly what a server answered.
//! - [`prometheus::Scrape`]: a `/metrics` scrape parsed, samples looked up by name
//!   and labels.
//! - [`TcpProxy`]: a proxy inside the test, to cut a client's link to a shared server
//!   (never restart the server itself).
//! - [`wait_until`] and [`wait_until_async`]: poll a condition until it holds, or panic
//!   with `timed out after … waiting for …`.
//!
//! ```no_run
//! #[test]
//! fn orders_are_stored() {
//!     let Some(url) = nucleon_testkit::postgres_url() else {
//!         return; // NUCLEON_TEST_SKIP_POSTGRES=1: skipped on purpose, and said so
//!     };
//!     // connect to `url`…
//! #   drop(url);
//! }
//! ```
//!
//! | server | URL from (default) | skipped with | started here with |
//! |---|---|---|---|
//! | PostgreSQL | `NUCLEON_TEST_DATABASE_URL` (`postgres://postgres@127.0.0.1:5432/test`) | `NUCLEON_TEST_SKIP_POSTGRES=1` | `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` |
//! | RabbitMQ | `NUCLEON_TEST_AMQP_URL` (`amqp://guest:guest@127.0.0.1:5672/%2f`) | `NUCLEON_TEST_SKIP_AMQP=1` | `rabbitmq-server -detached` |
//! | Redis | `NUCLEON_TEST_REDIS_URL` (`redis://127.0.0.1:6379`) | `NUCLEON_TEST_SKIP_REDIS=1` | `redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no` |
//!
//! The checks block (a TCP connect with a short timeout, a look along `PATH`): they
//! are for test code, never for a worker's loop.

pub mod http;
mod note;
pub mod prometheus;
mod proxy;
mod server;
mod tool;
mod wait;

pub use note::note_once;
pub use proxy::TcpProxy;
pub use server::{
    AMQP, POSTGRES, REDIS, Server, Unavailable, amqp_url, mask_password, postgres_url, redis_url,
};
pub use tool::{Tool, require_tool};
pub use wait::{wait_until, wait_until_async};

/// The process's environment, as the `*_in` methods take it: `std::env::var(name).ok()`.
///
/// ```
/// use nucleon_testkit::{POSTGRES, process_env};
///
/// // What `POSTGRES.url()` does.
/// # fn run() {
/// let url = POSTGRES.url_in(process_env);
/// # }
/// ```
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// Whether a skip variable's value asks to skip: `1`, `true` or `yes` (any case).
fn asks_to_skip(value: Option<&str>) -> bool {
    value.is_some_and(|v| {
        let v = v.trim();
        v == "1" || v.eq_ignore_ascii_case("true") || v.eq_ignore_ascii_case("yes")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_values() {
        for yes in ["1", "true", "YES", " 1 "] {
            assert!(asks_to_skip(Some(yes)), "{yes}");
        }
        for no in ["0", "", "false", "no", "2"] {
            assert!(!asks_to_skip(Some(no)), "{no}");
        }
        assert!(!asks_to_skip(None));
    }
}
