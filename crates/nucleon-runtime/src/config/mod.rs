//! Configuration: `app.toml` with one table per environment, `NUCLEON_<KEY>` overrides,
//! typed extraction.
//!
//! ```toml
//! [default]
//! database = "postgres://app:secret@127.0.0.1/app"
//!
//! [default.runtime]
//! workers = 2
//! shutdown_timeout = "10s"
//!
//! [test]
//! database = "postgres://postgres@127.0.0.1/test"
//!
//! [production.runtime.watchdog]
//! threshold = "20ms"
//! ```
//!
//! The environment is chosen once, at start: explicitly (`--env`), else `NUCLEON_ENV`,
//! else `NUCLEON_CONFIGURATION`, else `default`. The chosen table is merged over
//! `[default]`; then every `NUCLEON_<KEY>` environment variable overrides `<key>`
//! (`__` separates nested keys: `NUCLEON_RUNTIME__WORKERS=4`).

pub mod duration;
mod secret;

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Toml};
use figment::{Figment, Profile};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use secret::{InvalidUrl, Secret, SecretUrl};

use crate::offload::OffloadConfig;
use crate::watchdog::WatchdogConfig;

/// Environment variables that choose how configuration is loaded, not what it says.
const RESERVED: [&str; 4] = ["env", "configuration", "config", "log"];

/// Whether `NUCLEON_<key>` is the framework's own variable, not a configuration key
/// (`NUCLEON_ENV`, `NUCLEON_LOG`, `NUCLEON_TEST_DATABASE_URL`…). Variables keep their
/// case (`ENV`): compared without it.
fn reserved(key: &str) -> bool {
    RESERVED.iter().any(|name| key.eq_ignore_ascii_case(name))
        || key
            .get(..5)
            .is_some_and(|start| start.eq_ignore_ascii_case("test_"))
}

/// The framework's own sections. A top-level table of one of these names is a section
/// written outside any environment (`[http]` for `[default.http]`): the file's top-level
/// tables are environments, so it would be read as an environment named `http`, and
/// silently never used.
const SECTIONS: [&str; 7] = [
    "runtime",
    "http",
    "http_client",
    "dns",
    "db",
    "amqp",
    "metrics",
];

/// The environment to run in: `explicit` (`--env`) when given and not empty, else
/// `NUCLEON_ENV`, else `NUCLEON_CONFIGURATION`, else `default`.
///
/// ```
/// use nucleon_runtime::config::choose_environment;
///
/// assert_eq!(choose_environment(Some("production".into())), "production");
/// ```
pub fn choose_environment(explicit: Option<String>) -> String {
    let from_env = |name| std::env::var(name).ok().filter(|e: &String| !e.is_empty());
    explicit
        .filter(|e| !e.is_empty())
        .or_else(|| from_env("NUCLEON_ENV"))
        .or_else(|| from_env("NUCLEON_CONFIGURATION"))
        .unwrap_or_else(|| "default".to_owned())
}

/// Where to load configuration from; see [`Config::load`].
#[derive(Debug, Clone, Default)]
pub struct ConfigOptions {
    /// The file to read. `None`: `app.toml` in the working directory if it exists, else
    /// embedded defaults only.
    pub file: Option<PathBuf>,
    /// The environment. `None`: `NUCLEON_ENV`, `NUCLEON_CONFIGURATION`, else `default`.
    pub environment: Option<String>,
}

/// Loaded configuration for one environment.
///
/// Its `Debug` output names the environment, the file and the top-level keys, never the
/// values (which may hold secrets).
#[derive(Clone)]
pub struct Config {
    figment: Figment,
    environment: String,
    file: Option<PathBuf>,
}

impl Config {
    /// Loads configuration as [`ConfigOptions`] says (file, environment, overrides).
    ///
    /// Call it at start, before the workers run: it reads the file.
    ///
    /// # Errors
    /// A missing file that was asked for by name, a file that is not valid TOML, or an
    /// environment the file does not define.
    pub fn load(options: ConfigOptions) -> Result<Self, ConfigError> {
        let environment = choose_environment(options.environment);
        let (file, explicit) = match options.file {
            Some(file) => (Some(file), true),
            None => (Some(PathBuf::from("app.toml")), false),
        };
        let file = file.filter(|f| explicit || f.exists());
        if let Some(path) = &file
            && !path.exists()
        {
            return Err(ConfigError::MissingFile { file: path.clone() });
        }
        let base = match &file {
            Some(path) => Figment::new().merge(Toml::file_exact(path).nested()),
            None => Figment::new(),
        };
        Self::assemble(base, environment, file)
    }

    /// Configuration from TOML text (tests, embedded defaults), for `environment`.
    ///
    /// `NUCLEON_<KEY>` overrides apply as in [`Config::load`].
    ///
    /// # Errors
    /// As [`Config::load`].
    pub fn from_toml(text: &str, environment: &str) -> Result<Self, ConfigError> {
        let base = Figment::new().merge(Toml::string(text).nested());
        Self::assemble(base, environment.to_owned(), None)
    }

    /// Embedded defaults only (no file), in the `default` environment, with overrides.
    pub fn defaults() -> Self {
        Self::assemble(Figment::new(), "default".to_owned(), None)
            .expect("the default environment always exists")
    }

    fn assemble(
        base: Figment,
        environment: String,
        file: Option<PathBuf>,
    ) -> Result<Self, ConfigError> {
        let defined: Vec<String> = base.profiles().map(|p| p.as_str().to_string()).collect();
        if let Some(section) = defined.iter().find(|p| SECTIONS.contains(&p.as_str())) {
            return Err(ConfigError::SectionOutsideEnvironment {
                file: display_file(file.as_deref()),
                section: section.clone(),
            });
        }
        let env = Env::prefixed("NUCLEON_")
            .split("__")
            .filter(|key| !reserved(key.as_str()))
            .global();
        let figment = base.merge(env).select(Profile::new(&environment));
        // Surfaces TOML syntax errors now, at start, rather than at first use.
        if let Err(error) = figment.extract::<figment::value::Dict>() {
            return Err(ConfigError::from_figment(
                error,
                &environment,
                file.as_deref(),
            ));
        }
        if environment != "default" && !defined.is_empty() && !defined.contains(&environment) {
            return Err(ConfigError::UnknownEnvironment {
                file: display_file(file.as_deref()),
                environment,
                defined,
            });
        }
        Ok(Self {
            figment,
            environment,
            file,
        })
    }

    /// The environment in force (`default`, `test`, `production`…).
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The file read, if any.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The whole environment's configuration as `T`.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`], naming the file, environment and key.
    pub fn extract<T: DeserializeOwned>(&self) -> Result<T, ConfigError> {
        self.figment
            .extract()
            .map_err(|e| ConfigError::from_figment(e, &self.environment, self.file.as_deref()))
    }

    /// The value at `key` (dotted: `runtime.watchdog`) as `T`, or `T::default()` when the
    /// key is absent.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when the key is present but not a valid `T`.
    pub fn extract_at<T: DeserializeOwned + Default>(&self, key: &str) -> Result<T, ConfigError> {
        if !self.figment.contains(key) {
            return Ok(T::default());
        }
        self.extract_inner(key)
    }

    /// The value at `key`, required.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] when absent or not a valid `T`.
    pub fn require<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        self.extract_inner(key)
    }

    fn extract_inner<T: DeserializeOwned>(&self, key: &str) -> Result<T, ConfigError> {
        self.figment.extract_inner(key).map_err(|mut error| {
            // figment appends the prefix after the path inside it; put it first.
            let prefix: Vec<String> = key.split('.').map(str::to_owned).collect();
            if error.path.ends_with(&prefix) {
                error.path.rotate_right(prefix.len());
            }
            ConfigError::from_figment(error, &self.environment, self.file.as_deref())
        })
    }

    /// The underlying figment, for providers of your own.
    pub fn figment(&self) -> &Figment {
        &self.figment
    }

    /// The runtime's own settings (`[<env>.runtime]`).
    ///
    /// # Errors
    /// As [`Config::extract_at`].
    pub fn runtime_settings(&self) -> Result<RuntimeSettings, ConfigError> {
        self.extract_at("runtime")
    }

    /// An error about `key` of this configuration, naming its file and environment: for
    /// checks the key's type alone cannot make (a value out of range, two values that
    /// contradict each other).
    pub fn invalid(&self, key: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            file: format!("`{}`", display_file(self.file.as_deref())),
            environment: self.environment.clone(),
            key: key.into(),
            message: message.into(),
        }
    }

    /// The environment's top-level keys (its tables: `http`, `runtime`, `db`…), from the
    /// file and the `NUCLEON_…` variables.
    pub fn tables(&self) -> Vec<String> {
        self.figment
            .extract::<figment::value::Dict>()
            .map(|dict| dict.into_keys().collect())
            .unwrap_or_default()
    }

    /// Refuses a top-level table that is not in `known`, naming it, the file and the
    /// environment, with the closest known name when one is close (`htp`: did you mean
    /// `http`?).
    ///
    /// ```
    /// use nucleon_runtime::Config;
    ///
    /// let config = Config::from_toml("[default.htp]\nport = 1\n", "default").unwrap();
    /// let error = config.check_tables(&["http", "runtime"]).unwrap_err();
    /// assert!(error.to_string().contains("did you mean `http`?"), "{error}");
    /// ```
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] for the first unknown table.
    pub fn check_tables(&self, known: &[&str]) -> Result<(), ConfigError> {
        for table in self.tables() {
            if known.contains(&table.as_str()) {
                continue;
            }
            let closest = known
                .iter()
                .map(|k| (edit_distance(k, &table), *k))
                .filter(|(d, k)| *d <= 2 && *d < k.len())
                .min();
            let hint = closest.map_or_else(
                || format!(" (known: {})", known.join(", ")),
                |(_, k)| format!(": did you mean `{k}`?"),
            );
            return Err(self.invalid(
                table.clone(),
                format!(
                    "`{table}` is not a table this service reads{hint}; a table an app reads for itself is declared with App::config_table"
                ),
            ));
        }
        Ok(())
    }
}

/// Levenshtein distance, for "did you mean" (short names only).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Not the figment: its `Debug` prints every value, passwords included.
        let keys: Vec<String> = self
            .figment
            .extract::<figment::value::Dict>()
            .map(|dict| dict.into_keys().collect())
            .unwrap_or_default();
        f.debug_struct("Config")
            .field("environment", &self.environment)
            .field("file", &self.file)
            .field("keys", &keys)
            .finish()
    }
}

fn display_file(file: Option<&Path>) -> String {
    file.map_or_else(|| "<embedded>".to_owned(), |f| f.display().to_string())
}

/// The runtime's settings, from `[<env>.runtime]`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct RuntimeSettings {
    /// Worker count (default: available cores).
    pub workers: Option<usize>,
    /// How long a drain may take before the process exits anyway (default 10 s).
    #[serde(with = "duration")]
    pub shutdown_timeout: Duration,
    /// How long one adapter may take to start (default 30 s).
    #[serde(with = "duration")]
    pub start_timeout: Duration,
    /// The part of `shutdown_timeout` kept for the per-process adapters' stop (publisher
    /// confirms, a last flush), which the workers' phases cannot eat (default: 30 % of
    /// `shutdown_timeout`, 3 s of the default 10 s). See
    /// [`RuntimeSettings::process_reserve_in_force`].
    #[serde(with = "duration::option")]
    pub process_reserve: Option<Duration>,
    /// Blocking-call detection.
    pub watchdog: WatchdogConfig,
    /// The offload pools.
    pub offload: OffloadConfig,
}

impl Default for RuntimeSettings {
    fn default() -> Self {
        Self {
            workers: None,
            shutdown_timeout: Duration::from_secs(10),
            start_timeout: Duration::from_secs(30),
            process_reserve: None,
            watchdog: WatchdogConfig::default(),
            offload: OffloadConfig::default(),
        }
    }
}

impl RuntimeSettings {
    /// The per-process adapters' reserve in force: `process_reserve` when set (at most
    /// the whole timeout; the runtime refuses one that leaves the workers nothing),
    /// else 30 % of `shutdown_timeout`. A runtime without per-process adapters keeps
    /// no reserve.
    pub fn process_reserve_in_force(&self) -> Duration {
        // 30 %, without the overflow of `* 3` for a timeout past 6 × 10¹⁸ s (set in
        // code: configuration takes 100 years at most).
        let share = self
            .shutdown_timeout
            .checked_mul(3)
            .map_or(self.shutdown_timeout / 10 * 3, |triple| triple / 10);
        self.process_reserve
            .unwrap_or(share)
            .min(self.shutdown_timeout)
    }

    /// How long after the drain's start the workers' phases end: `shutdown_timeout`
    /// less [`RuntimeSettings::process_reserve_in_force`].
    pub fn workers_phase(&self) -> Duration {
        self.shutdown_timeout - self.process_reserve_in_force()
    }
}

/// Configuration that cannot be used. Every message names the file and environment.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A file named explicitly does not exist.
    #[error("configuration file `{}` does not exist", file.display())]
    MissingFile {
        /// The file asked for.
        file: PathBuf,
    },
    /// The environment chosen is not a table of the file.
    #[error("environment `{environment}` is not defined in `{file}` (defined: {})", defined.join(", "))]
    UnknownEnvironment {
        /// The file read.
        file: String,
        /// The environment asked for.
        environment: String,
        /// The environments the file defines.
        defined: Vec<String>,
    },
    /// A section of the framework's (`http`, `runtime`…) is a top-level table, outside
    /// any environment.
    #[error(
        "`{file}` has a top-level `[{section}]` table: its top-level tables are environments; write `[default.{section}]` (or `[<environment>.{section}]`)"
    )]
    SectionOutsideEnvironment {
        /// The file read.
        file: String,
        /// The section's name.
        section: String,
    },
    /// A value is missing, malformed, or of the wrong type.
    #[error(
        "invalid configuration in {file} (environment `{environment}`), key `{key}`: {message}"
    )]
    Invalid {
        /// Where the value came from, as the message names it: the file
        /// (`` `app.toml` ``) or the variable as written (``environment variable
        /// `NUCLEON_HTTP__PORT` ``).
        file: String,
        /// The environment in force.
        environment: String,
        /// The dotted key (empty for the whole table).
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl ConfigError {
    fn from_figment(error: figment::Error, environment: &str, file: Option<&Path>) -> Self {
        let source = error.metadata.as_ref().and_then(|m| m.source.as_ref());
        let from_variables = error
            .metadata
            .as_ref()
            .is_some_and(|m| m.name.contains("environment variable"));
        let place = match source {
            Some(figment::Source::File(path)) => format!("`{}`", path.display()),
            _ if from_variables => match variable_for(&error.path) {
                Some(name) => format!("environment variable `{name}`"),
                None => "the `NUCLEON_` environment variables".to_owned(),
            },
            Some(other) => format!("`{other}`"),
            None => format!("`{}`", display_file(file)),
        };
        ConfigError::Invalid {
            file: place,
            environment: environment.to_owned(),
            key: error.path.join("."),
            message: describe(&error.kind),
        }
    }
}

/// The variable, as it is written in the environment, that set the key at `path`
/// (`NUCLEON_HTTP__PORT` for `http.port`).
fn variable_for(path: &[String]) -> Option<String> {
    let wanted = format!("NUCLEON_{}", path.join("__"));
    std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .find(|name| name.eq_ignore_ascii_case(&wanted))
}

/// What is wrong, in words: an unknown key says which known one is closest.
fn describe(kind: &figment::error::Kind) -> String {
    match kind {
        figment::error::Kind::UnknownField(found, expected) => {
            let closest = expected
                .iter()
                .map(|k| (edit_distance(k, found), *k))
                .filter(|(d, k)| *d <= 2 && *d < k.len())
                .min();
            match closest {
                Some((_, k)) => format!("unknown key `{found}`: did you mean `{k}`?"),
                None => format!("unknown key `{found}` (known: {})", expected.join(", ")),
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
#[allow(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]
mod tests {
    use super::*;
    use figment::Jail;

    const APP_TOML: &str = r#"
        [default]
        database = "postgres://app:hunter2@127.0.0.1/app"
        greeting = "hello"

        [default.runtime]
        workers = 2

        [test]
        database = "postgres://postgres@127.0.0.1/test"

        [production.runtime]
        workers = 8
        shutdown_timeout = "30s"

        [production.runtime.watchdog]
        threshold = "20ms"
    "#;

    #[derive(Debug, Deserialize)]
    struct App {
        database: SecretUrl,
        greeting: String,
    }

    fn load(env: Option<&str>) -> Result<Config, ConfigError> {
        Config::load(ConfigOptions {
            file: None,
            environment: env.map(str::to_owned),
        })
    }

    #[test]
    fn environments_merge_over_default() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", APP_TOML)?;
            let default = load(None).unwrap();
            assert_eq!(default.environment(), "default");
            assert_eq!(default.runtime_settings().unwrap().workers, Some(2));

            let test = load(Some("test")).unwrap();
            let app: App = test.extract().unwrap();
            assert_eq!(app.greeting, "hello", "inherited from [default]");
            assert_eq!(app.database.expose().path(), "/test");

            let production = load(Some("production")).unwrap();
            let settings = production.runtime_settings().unwrap();
            assert_eq!(settings.workers, Some(8));
            assert_eq!(settings.shutdown_timeout, Duration::from_secs(30));
            assert_eq!(settings.watchdog.threshold, Duration::from_millis(20));
            assert!(settings.watchdog.enabled, "unset keys keep their defaults");
            Ok(())
        });
    }

    #[test]
    fn environment_comes_from_nucleon_env_or_nucleon_configuration() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", APP_TOML)?;
            jail.set_env("NUCLEON_CONFIGURATION", "test");
            assert_eq!(load(None).unwrap().environment(), "test");
            jail.set_env("NUCLEON_ENV", "production");
            assert_eq!(load(None).unwrap().environment(), "production");
            assert_eq!(
                load(Some("test")).unwrap().environment(),
                "test",
                "--env wins"
            );
            Ok(())
        });
    }

    #[test]
    fn nucleon_variables_override_keys() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", APP_TOML)?;
            jail.set_env("NUCLEON_GREETING", "bonjour");
            jail.set_env("NUCLEON_RUNTIME__WORKERS", "5");
            jail.set_env("NUCLEON_TEST_DATABASE_URL", "postgres://ignored");
            jail.set_env("NUCLEON_LOG", "info");
            jail.set_env("NUCLEON_ENV", "test");
            let config = load(Some("test")).unwrap();
            assert_eq!(config.extract::<App>().unwrap().greeting, "bonjour");
            assert_eq!(config.runtime_settings().unwrap().workers, Some(5));
            // The framework's own variables are not keys (an app's struct that denies
            // unknown fields would refuse them).
            for key in ["log", "env", "test_database_url"] {
                assert!(!config.figment.contains(key), "{key}");
            }
            Ok(())
        });
    }

    #[test]
    fn a_bad_variable_is_named_as_written_and_a_typo_gets_its_closest_key() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", "[default.runtime]\nshutdown_timeuot = \"5s\"\n")?;
            let error = load(None)
                .unwrap()
                .runtime_settings()
                .unwrap_err()
                .to_string();
            assert!(error.contains("in `app.toml`"), "{error}");
            assert!(
                error.contains("unknown key `shutdown_timeuot`: did you mean `shutdown_timeout`?"),
                "{error}"
            );
            jail.create_file("app.toml", "[default]\n")?;
            jail.set_env("NUCLEON_RUNTIME__WORKERS", "many");
            let error = load(None)
                .unwrap()
                .runtime_settings()
                .unwrap_err()
                .to_string();
            assert!(
                error.contains("in environment variable `NUCLEON_RUNTIME__WORKERS`"),
                "{error}"
            );
            assert!(!error.contains("``"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn unknown_environment_is_refused_with_the_choices() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", APP_TOML)?;
            let error = load(Some("prodution")).unwrap_err().to_string();
            assert!(
                error.contains("`prodution` is not defined in `app.toml`"),
                "{error}"
            );
            assert!(error.contains("production"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_file_environment_and_key() {
        Jail::expect_with(|jail| {
            jail.create_file(
                "app.toml",
                "[default.runtime.watchdog]\nthreshold = \"fast\"\n[test]\n",
            )?;
            let error = load(Some("test"))
                .unwrap()
                .runtime_settings()
                .unwrap_err()
                .to_string();
            assert!(error.contains("app.toml"), "{error}");
            assert!(error.contains("environment `test`"), "{error}");
            assert!(error.contains("runtime.watchdog.threshold"), "{error}");
            assert!(error.contains("`fast` is not a duration"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn zero_watchdog_durations_are_refused_with_their_key() {
        for key in ["threshold = \"0ms\"", "heartbeat = \"0s\""] {
            Jail::expect_with(|jail| {
                jail.create_file("app.toml", &format!("[default.runtime.watchdog]\n{key}\n"))?;
                let error = load(None)
                    .unwrap()
                    .runtime_settings()
                    .unwrap_err()
                    .to_string();
                let name = key.split(' ').next().unwrap_or_default();
                assert!(
                    error.contains(name) && error.contains("more than 0"),
                    "{error}"
                );
                Ok(())
            });
        }
    }

    #[test]
    fn a_framework_section_outside_any_environment_is_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", "[http]\nport = 9000\n")?;
            let error = load(None).unwrap_err().to_string();
            assert!(error.contains("[default.http]"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn unknown_runtime_keys_are_refused() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", "[default.runtime]\nworkrs = 3\n")?;
            let error = load(None)
                .unwrap()
                .runtime_settings()
                .unwrap_err()
                .to_string();
            assert!(error.contains("workrs"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn malformed_toml_fails_at_load() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", "[default\nworkers = 2\n")?;
            let error = load(None).unwrap_err().to_string();
            assert!(error.contains("app.toml"), "{error}");
            Ok(())
        });
    }

    #[test]
    fn a_named_file_must_exist() {
        Jail::expect_with(|_| {
            let error = Config::load(ConfigOptions {
                file: Some("missing.toml".into()),
                environment: None,
            })
            .unwrap_err();
            assert!(matches!(error, ConfigError::MissingFile { .. }));
            assert!(load(None).is_ok(), "no app.toml: embedded defaults");
            Ok(())
        });
    }

    #[test]
    fn secrets_never_reach_debug_or_errors() {
        Jail::expect_with(|jail| {
            jail.create_file("app.toml", APP_TOML)?;
            let app: App = load(None).unwrap().extract().unwrap();
            let shown = format!("{app:?} {}", app.database);
            assert!(!shown.contains("hunter2"), "{shown}");
            let config = format!("{:?}", load(None).unwrap());
            assert!(!config.contains("hunter2"), "{config}");
            assert!(config.contains("database"), "{config}");
            assert!(shown.contains("app:***@127.0.0.1"), "{shown}");
            jail.create_file(
                "bad.toml",
                "[default]\ndatabase = \"postgres://u:hunter2@[::1\"\n",
            )?;
            let error = Config::load(ConfigOptions {
                file: Some("bad.toml".into()),
                environment: None,
            })
            .unwrap()
            .extract::<App>()
            .unwrap_err()
            .to_string();
            assert!(error.contains("key `database`"), "{error}");
            assert!(!error.contains("hunter2"), "{error}");

            #[derive(Debug, Deserialize)]
            struct Pin {
                #[allow(dead_code, reason = "only its error is looked at")]
                pin: Secret<u32>,
            }
            jail.create_file("pin.toml", "[default]\npin = \"hunter2\"\n")?;
            let error = Config::load(ConfigOptions {
                file: Some("pin.toml".into()),
                environment: None,
            })
            .unwrap()
            .extract::<Pin>()
            .unwrap_err()
            .to_string();
            assert!(error.contains("key `pin`"), "{error}");
            assert!(
                !error.contains("hunter2"),
                "a mistyped secret is not echoed: {error}"
            );
            Ok(())
        });
    }
}
