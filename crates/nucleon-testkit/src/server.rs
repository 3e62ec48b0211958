//! Servers a test needs: found reachable, skipped on purpose, or a panic saying what to do.

use std::fmt;
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::{asks_to_skip, note_once, process_env};

/// How long the reachability check waits for each address to accept a connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// A server that tests need, described once: where it is, how to skip the tests that
/// need it, how to start it.
///
/// [`POSTGRES`] and [`AMQP`] are two; an adapter's tests describe theirs the same way:
///
/// ```no_run
/// use nucleon_testkit::Server;
///
/// const REDIS: Server = Server {
///     name: "Redis",
///     url_var: "NUCLEON_TEST_REDIS_URL",
///     skip_var: "NUCLEON_TEST_SKIP_REDIS",
///     default_url: "redis://127.0.0.1:6379/0",
///     start_hint: "redis-server --daemonize yes",
/// };
///
/// #[test]
/// fn cached_values_expire() {
///     let Some(url) = REDIS.url() else { return };
///     // connect to `url`…
/// #   drop(url);
/// }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Server {
    /// What it is, for people: `PostgreSQL`.
    pub name: &'static str,
    /// The variable that gives its URL: `NUCLEON_TEST_DATABASE_URL`.
    pub url_var: &'static str,
    /// The variable that, set to `1`, skips the tests that need it:
    /// `NUCLEON_TEST_SKIP_POSTGRES`.
    pub skip_var: &'static str,
    /// The URL when `url_var` is unset or empty.
    pub default_url: &'static str,
    /// How to start it on this machine, as a command.
    pub start_hint: &'static str,
}

/// The PostgreSQL that tests use: `NUCLEON_TEST_DATABASE_URL`, by default
/// `postgres://postgres@127.0.0.1:5432/test`; skipped with `NUCLEON_TEST_SKIP_POSTGRES=1`.
///
/// ```no_run
/// let url = nucleon_testkit::POSTGRES.url(); // as nucleon_testkit::postgres_url()
/// ```
pub const POSTGRES: Server = Server {
    name: "PostgreSQL",
    url_var: "NUCLEON_TEST_DATABASE_URL",
    skip_var: "NUCLEON_TEST_SKIP_POSTGRES",
    default_url: "postgres://postgres@127.0.0.1:5432/test",
    start_hint: "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start",
};

/// The RabbitMQ that tests use: `NUCLEON_TEST_AMQP_URL`, by default
/// `amqp://guest:guest@127.0.0.1:5672/%2f`; skipped with `NUCLEON_TEST_SKIP_AMQP=1`.
///
/// ```no_run
/// let url = nucleon_testkit::AMQP.url(); // as nucleon_testkit::amqp_url()
/// ```
pub const AMQP: Server = Server {
    name: "RabbitMQ",
    url_var: "NUCLEON_TEST_AMQP_URL",
    skip_var: "NUCLEON_TEST_SKIP_AMQP",
    default_url: "amqp://guest:guest@127.0.0.1:5672/%2f",
    start_hint: "rabbitmq-server -detached",
};

/// The Redis that tests use: `NUCLEON_TEST_REDIS_URL`, by default
/// `redis://127.0.0.1:6379`; skipped with `NUCLEON_TEST_SKIP_REDIS=1`.
///
/// ```no_run
/// let url = nucleon_testkit::REDIS.url(); // as nucleon_testkit::redis_url()
/// ```
pub const REDIS: Server = Server {
    name: "Redis",
    url_var: "NUCLEON_TEST_REDIS_URL",
    skip_var: "NUCLEON_TEST_SKIP_REDIS",
    default_url: "redis://127.0.0.1:6379",
    start_hint: "redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save '' --appendonly no",
};

/// The URL of the PostgreSQL for tests ([`POSTGRES`]), checked reachable; `None` when
/// `NUCLEON_TEST_SKIP_POSTGRES=1` skips those tests on purpose (said once per test
/// binary, on standard error).
///
/// # Panics
/// When the server does not accept a connection (or the URL names no host and port),
/// with the URL (password masked), `NUCLEON_TEST_DATABASE_URL`, how to start it here,
/// and `NUCLEON_TEST_SKIP_POSTGRES=1`.
///
/// ```no_run
/// #[test]
/// fn orders_are_stored() {
///     let Some(url) = nucleon_testkit::postgres_url() else { return };
///     // connect to `url`…
/// #   drop(url);
/// }
/// ```
#[track_caller]
pub fn postgres_url() -> Option<String> {
    POSTGRES.url()
}

/// The URL of the RabbitMQ for tests ([`AMQP`]), checked reachable; `None` when
/// `NUCLEON_TEST_SKIP_AMQP=1` skips those tests on purpose (said once per test binary,
/// on standard error).
///
/// # Panics
/// When the server does not accept a connection, with the URL (password masked),
/// `NUCLEON_TEST_AMQP_URL`, how to start it here, and `NUCLEON_TEST_SKIP_AMQP=1`.
///
/// ```no_run
/// #[test]
/// fn orders_are_published() {
///     let Some(url) = nucleon_testkit::amqp_url() else { return };
///     // connect to `url`…
/// #   drop(url);
/// }
/// ```
#[track_caller]
pub fn amqp_url() -> Option<String> {
    AMQP.url()
}

/// The URL of the Redis for tests ([`REDIS`]), checked reachable; `None` when
/// `NUCLEON_TEST_SKIP_REDIS=1` skips those tests on purpose (said once per test binary,
/// on standard error).
///
/// # Panics
/// When the server does not accept a connection, with the URL (password masked),
/// `NUCLEON_TEST_REDIS_URL`, how to start it here, and `NUCLEON_TEST_SKIP_REDIS=1`.
///
/// ```no_run
/// #[test]
/// fn sessions_expire() {
///     let Some(url) = nucleon_testkit::redis_url() else { return };
///     // connect to `url`…
/// #   drop(url);
/// }
/// ```
#[track_caller]
pub fn redis_url() -> Option<String> {
    REDIS.url()
}

/// Why a server (or a tool) that a test needs is not there; its text says what to do.
///
/// ```
/// use nucleon_testkit::Server;
///
/// const NOWHERE: Server = Server {
///     name: "Nowhere",
///     url_var: "NOWHERE_URL",
///     skip_var: "NOWHERE_SKIP",
///     default_url: "nowhere://127.0.0.1/",
///     start_hint: "true",
/// };
/// let error = NOWHERE.check_in(|_| None).unwrap_err(); // no port, unknown scheme
/// assert!(error.message().contains("NOWHERE_URL"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable {
    message: String,
}

impl Unavailable {
    pub(crate) fn new(message: String) -> Self {
        Self { message }
    }

    /// The whole message: what is missing, and the ways out.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Unavailable {}

impl Server {
    /// The server's URL, from the process's environment, checked reachable; `None` when
    /// `skip_var` is set to `1` (also `true`, `yes`), after printing once per test
    /// binary, past libtest's capture: `SKIPPED on purpose: tests needing <name>
    /// (<skip_var>=1)`.
    ///
    /// # Panics
    /// When it is not reachable: see [`Server::check_in`] for the message.
    ///
    /// ```no_run
    /// let Some(url) = nucleon_testkit::POSTGRES.url() else { return };
    /// ```
    #[track_caller]
    pub fn url(&self) -> Option<String> {
        self.url_in(process_env)
    }

    /// [`Server::url`] with the environment `env` gives (`name → value`) instead of the
    /// process's.
    ///
    /// # Panics
    /// When it is not reachable: see [`Server::check_in`].
    ///
    /// ```
    /// use nucleon_testkit::POSTGRES;
    ///
    /// let env = |name: &str| (name == "NUCLEON_TEST_SKIP_POSTGRES").then(|| "1".to_owned());
    /// assert_eq!(POSTGRES.url_in(env), None); // and a line says it is skipped
    /// ```
    #[track_caller]
    pub fn url_in(&self, env: impl Fn(&str) -> Option<String>) -> Option<String> {
        let skip = env(self.skip_var);
        match self.check_in(env) {
            Ok(None) => {
                note_once(&format!(
                    "SKIPPED on purpose: tests needing {} ({}={})",
                    self.name,
                    self.skip_var,
                    skip.as_deref().unwrap_or("1").trim()
                ));
                None
            }
            Ok(Some(url)) => Some(url),
            Err(unavailable) => panic!("{unavailable}"),
        }
    }

    /// What [`Server::url_in`] decides, without printing or panicking: `Ok(None)` when
    /// `skip_var` asks to skip, `Ok(Some(url))` when the URL's host and port accept a
    /// TCP connection (within 2 s per address), else the message a test panics with.
    ///
    /// The URL is `url_var`'s value, or `default_url` when it is unset or empty. The
    /// message names the URL with its password masked ([`mask_password`]), where it
    /// came from, what the connection attempt said, how to start the server here
    /// (`start_hint`), `url_var`, and `skip_var`.
    ///
    /// # Errors
    /// [`Unavailable`] when the server is not reachable, or the URL names no host and
    /// port.
    ///
    /// ```
    /// use nucleon_testkit::AMQP;
    ///
    /// let env = |name: &str| match name {
    ///     "NUCLEON_TEST_AMQP_URL" => Some("amqp://guest:guest@127.0.0.1:1/%2f".to_owned()),
    ///     _ => None,
    /// };
    /// let message = AMQP.check_in(env).unwrap_err().to_string();
    /// assert!(message.contains("amqp://guest:***@127.0.0.1:1/%2f"));
    /// assert!(message.contains("NUCLEON_TEST_SKIP_AMQP=1"));
    /// ```
    pub fn check_in(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<String>, Unavailable> {
        if asks_to_skip(env(self.skip_var).as_deref()) {
            return Ok(None);
        }
        let (url, from) = match env(self.url_var).filter(|url| !url.trim().is_empty()) {
            Some(url) => (url.trim().to_owned(), format!("from {}", self.url_var)),
            None => (
                self.default_url.to_owned(),
                format!("the default: {} is unset", self.url_var),
            ),
        };
        let problem = match host_and_port(&url) {
            Ok((host, port)) => match reach(&host, port) {
                Ok(()) => return Ok(Some(url)),
                Err(problem) => problem,
            },
            Err(problem) => problem,
        };
        Err(Unavailable::new(format!(
            "{name} is not reachable at {masked} ({from}): {problem}.\n\
             Tests that need {name} must not pass without it. Either:\n\
             \x20 - start it on this machine: {start}\n\
             \x20 - or set {url_var} to the URL of a {name} that runs\n\
             \x20 - or skip these tests on purpose: {skip_var}=1",
            name = self.name,
            masked = mask_password(&url),
            start = self.start_hint,
            url_var = self.url_var,
            skip_var = self.skip_var,
        )))
    }
}

/// Connects to `host:port`, each of its addresses in turn, within [`CONNECT_TIMEOUT`].
#[allow(
    clippy::disallowed_methods,
    reason = "a test helper, on the test's own thread: it blocks to connect (and resolves \
              the host with getaddrinfo), which no worker loop must"
)]
fn reach(host: &str, port: u16) -> Result<(), String> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .collect(),
    };
    let mut failures = Vec::new();
    for addr in &addrs {
        match TcpStream::connect_timeout(addr, CONNECT_TIMEOUT) {
            Ok(_) => return Ok(()),
            Err(e) => failures.push(format!("{addr}: {e}")),
        }
    }
    if failures.is_empty() {
        return Err(format!("`{host}` has no address"));
    }
    Err(failures.join("; "))
}

/// The port a scheme's server listens on when the URL gives none.
fn default_port(scheme: &str) -> Option<u16> {
    Some(match scheme.to_ascii_lowercase().as_str() {
        "postgres" | "postgresql" => 5432,
        "amqp" => 5672,
        "amqps" => 5671,
        "redis" | "rediss" => 6379,
        "mysql" | "mariadb" => 3306,
        "mongodb" => 27017,
        "nats" => 4222,
        "http" | "ws" => 80,
        "https" | "wss" => 443,
        _ => return None,
    })
}

/// The parts of `url`: scheme, user information (before `@`), authority's host part,
/// and the rest (path, query, fragment).
fn split(url: &str) -> Option<(&str, Option<&str>, &str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    match authority.rsplit_once('@') {
        Some((userinfo, hosts)) => Some((scheme, Some(userinfo), hosts, tail)),
        None => Some((scheme, None, authority, tail)),
    }
}

/// The host and port `url` points at (the first, if it lists several, as PostgreSQL's
/// may); the scheme's usual port when it gives none.
fn host_and_port(url: &str) -> Result<(String, u16), String> {
    let (scheme, _, hosts, _) =
        split(url).ok_or_else(|| "it is not a URL (scheme://host:port/…)".to_owned())?;
    let first = hosts.split(',').next().unwrap_or_default();
    let (host, port) = if let Some(bracketed) = first.strip_prefix('[') {
        let (ip, after) = bracketed
            .split_once(']')
            .ok_or_else(|| format!("`{first}`: an IPv6 address without its `]`"))?;
        (ip, after.strip_prefix(':'))
    } else {
        match first.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (first, None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host (a Unix socket?): the check needs host:port".into());
    }
    let port = match port {
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("`{port}` is not a port number"))?,
        None => default_port(scheme).ok_or_else(|| {
            format!("the URL gives no port, and `{scheme}` has no usual one: add :port")
        })?,
    };
    Ok((host.to_owned(), port))
}

/// `url` with its password masked, to print: `postgres://app:***@db/test`; a
/// `password=` query parameter is masked too. A URL without a password is unchanged.
///
/// ```
/// use nucleon_testkit::mask_password;
///
/// assert_eq!(
///     mask_password("amqp://guest:guest@127.0.0.1:5672/%2f"),
///     "amqp://guest:***@127.0.0.1:5672/%2f"
/// );
/// assert_eq!(
///     mask_password("postgres://app@db/test?sslmode=require&password=s3cret"),
///     "postgres://app@db/test?sslmode=require&password=***"
/// );
/// assert_eq!(mask_password("postgres://postgres@127.0.0.1/test"), "postgres://postgres@127.0.0.1/test");
/// ```
pub fn mask_password(url: &str) -> String {
    let Some((scheme, userinfo, hosts, tail)) = split(url) else {
        return url.to_owned();
    };
    let mut masked = format!("{scheme}://");
    if let Some(userinfo) = userinfo {
        match userinfo.split_once(':') {
            Some((user, _password)) => masked.push_str(&format!("{user}:***@")),
            None => masked.push_str(&format!("{userinfo}@")),
        }
    }
    masked.push_str(hosts);
    match tail.split_once('?') {
        Some((path, query)) => {
            let (query, fragment) = match query.split_once('#') {
                Some((query, fragment)) => (query, Some(fragment)),
                None => (query, None),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
                    _ => pair.to_owned(),
                })
                .collect();
            masked.push_str(path);
            masked.push('?');
            masked.push_str(&query.join("&"));
            if let Some(fragment) = fragment {
                masked.push('#');
                masked.push_str(fragment);
            }
        }
        None => masked.push_str(tail),
    }
    masked
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_and_port_of_the_usual_urls() {
        let hp = |url: &str| host_and_port(url).map_err(|e| e.to_string());
        assert_eq!(hp(POSTGRES.default_url), Ok(("127.0.0.1".to_owned(), 5432)));
        assert_eq!(hp(AMQP.default_url), Ok(("127.0.0.1".to_owned(), 5672)));
        assert_eq!(hp(REDIS.default_url), Ok(("127.0.0.1".to_owned(), 6379)));
        assert_eq!(
            hp("postgresql://u:p@db.internal/app"),
            Ok(("db.internal".to_owned(), 5432))
        );
        assert_eq!(
            hp("amqps://rabbit.internal"),
            Ok(("rabbit.internal".to_owned(), 5671))
        );
        assert_eq!(hp("redis://[::1]:6380/0"), Ok(("::1".to_owned(), 6380)));
        assert_eq!(hp("postgres://[::1]/x"), Ok(("::1".to_owned(), 5432)));
        assert_eq!(
            hp("postgres://a:5433,b:5434/x?target_session_attrs=read-write"),
            Ok(("a".to_owned(), 5433))
        );
        assert_eq!(
            hp("postgres://u:p:with:colons@h:1/x"),
            Ok(("h".to_owned(), 1))
        );
        assert!(
            hp("postgres:///test?host=/var/run/postgresql")
                .unwrap_err()
                .contains("no host")
        );
        assert!(hp("weird://h/").unwrap_err().contains(":port"));
        assert!(hp("h:5432").unwrap_err().contains("not a URL"));
        assert!(hp("postgres://h:http/").unwrap_err().contains("not a port"));
    }

    #[test]
    fn passwords_are_masked_wherever_they_are() {
        assert_eq!(
            mask_password("postgres://u:p@ss@h/x"),
            "postgres://u:***@h/x",
            "the host starts after the last @"
        );
        assert_eq!(mask_password("amqp://h:5672/%2f"), "amqp://h:5672/%2f");
        assert_eq!(
            mask_password("postgres://h/x?PASSWORD=a&user=u#frag"),
            "postgres://h/x?PASSWORD=***&user=u#frag"
        );
        assert_eq!(mask_password("not a url"), "not a url");
    }

    #[test]
    fn an_unparsable_url_is_unavailable_naming_its_variable() {
        let env = |name: &str| (name == POSTGRES.url_var).then(|| "localhost:5432".to_owned());
        let message = POSTGRES.check_in(env).unwrap_err().to_string();
        assert!(message.contains("not a URL"), "{message}");
        assert!(
            message.contains("from NUCLEON_TEST_DATABASE_URL"),
            "{message}"
        );
    }
}
