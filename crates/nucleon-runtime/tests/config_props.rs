//! Property tests (proptest) of the configuration loader (`Config::from_toml`,
//! `Config::load`, `Config::runtime_settings`, `Config::check_tables`):
//!
//! - no text, TOML or not, and no `NUCLEON_*` variables panic it: every call gives a
//!   value or a `ConfigError`;
//! - a file and the same text load alike;
//! - valid `[<env>.runtime]` values (every documented duration form) come back as
//!   written, from the file's `[default]`, the environment's table and the variables,
//!   each over the one before;
//! - an unknown key in the runtime's tables (`runtime`, `runtime.watchdog`,
//!   `runtime.offload`), from the file or a variable, is refused with an error naming
//!   it; so is an unknown top-level table (`check_tables`) and a framework section
//!   written outside any environment.
//!
//! Environment variables are the whole process's: every case runs in a
//! `figment::Jail` (one at a time, its variables and working directory put back
//! after), as the loader's unit tests do. Each property runs 256 cases (`cases()`).

#![allow(
    clippy::result_large_err,
    reason = "figment::Jail's closures return figment::Error"
)]

use std::fmt::Write as _;
use std::time::Duration;

use figment::Jail;
use nucleon_runtime::config::{RuntimeSettings, duration};
use nucleon_runtime::{Config, ConfigError, ConfigOptions, Drain};
use proptest::prelude::*;
use proptest::sample::select;

/// Cases per property: 256 (proptest's usual count, written out, as it bounds the
/// time the properties add to `cargo test`), or `PROPTEST_CASES` when set, for a
/// longer search by hand (`PROPTEST_CASES=20000 cargo test …`).
fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(256)
}

/// Runs `f` in a jail with `vars` set (and `app.toml` holding `file`, when given).
fn jailed<T>(vars: &[(String, String)], file: Option<&str>, f: impl FnOnce() -> T) -> T {
    let mut out = None;
    Jail::expect_with(|jail| {
        for (name, value) in vars {
            jail.set_env(name, value);
        }
        if let Some(text) = file {
            jail.create_file("app.toml", text)?;
        }
        out = Some(f());
        Ok(())
    });
    out.expect("the jail ran")
}

/// A TOML basic string of any text.
fn toml_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && c != '\t' => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Everything a loaded configuration offers, called; a panic fails the property.
/// What it returns: whether it loaded, and the runtime's settings when they are valid.
fn exercise(loaded: Result<Config, ConfigError>) -> (bool, Option<RuntimeSettings>) {
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return (false, None);
        }
    };
    let _ = format!("{config:?}");
    let _ = config.tables();
    if let Err(error) = config.check_tables(&["runtime", "http", "app"]) {
        assert!(!error.to_string().is_empty());
    }
    let _ = config.extract::<figment::value::Dict>();
    let _ = config.extract_at::<Option<String>>("runtime.watchdog.threshold");
    let settings = match config.runtime_settings() {
        Ok(settings) => settings,
        Err(error) => {
            assert!(!error.to_string().is_empty());
            return (true, None);
        }
    };
    usable(&settings);
    (true, Some(settings))
}

/// What the runtime computes from settings at start and in the drain, without
/// overflow: durations within `duration::MAX`, deadlines from now, 30 % of the
/// timeout.
fn usable(settings: &RuntimeSettings) {
    let reserve = settings.process_reserve_in_force();
    assert!(reserve <= settings.shutdown_timeout, "{settings:?}");
    assert_eq!(
        settings.workers_phase() + reserve,
        settings.shutdown_timeout
    );
    let durations = [
        Some(settings.shutdown_timeout),
        Some(settings.start_timeout),
        settings.process_reserve,
        Some(settings.watchdog.threshold),
        settings.watchdog.heartbeat,
        Some(settings.offload.keep_alive),
    ];
    for duration in durations.into_iter().flatten() {
        assert!(duration <= duration::MAX, "{settings:?}");
        let _ = Drain::new().deadline(duration);
        let _ = std::time::Instant::now() + duration;
    }
}

// ---- Generators ----------------------------------------------------------------

/// Environment names: the usual ones, figment's special `global`, a framework
/// section (refused at the top level), any other.
fn environment() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => select(vec!["default", "test", "production"]).prop_map(str::to_owned),
        1 => select(vec!["global", "runtime", "http", "Default", ""]).prop_map(str::to_owned),
        1 => "[a-z][a-z0-9_-]{0,8}",
    ]
}

/// A table header under an environment.
fn header() -> impl Strategy<Value = String> {
    (
        environment(),
        select(vec![
            "",
            ".runtime",
            ".runtime.watchdog",
            ".runtime.offload",
            ".http",
            ".app",
            ".runtime.other",
        ]),
        0..10_u8,
    )
        .prop_map(|(env, table, how)| {
            let name = if env
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                && !env.is_empty()
            {
                env
            } else {
                toml_string(&env)
            };
            match how {
                0 => format!("[[{name}{table}]]"),
                _ => format!("[{name}{table}]"),
            }
        })
}

/// Keys: the runtime's, their tables', and others.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(vec![
            "workers", "shutdown_timeout", "start_timeout", "process_reserve", "watchdog",
            "offload", "enabled", "threshold", "heartbeat", "backtrace", "blocking_threads",
            "blocking_queue", "cpu_threads", "cpu_queue", "keep_alive", "port", "name",
        ])
        .prop_map(str::to_owned),
        1 => "[a-z_]{1,10}",
        1 => ".{1,6}".prop_map(|k| toml_string(&k)),
    ]
}

/// TOML values: in range and not, durations well and badly written, of every type.
fn value() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        "-?[0-9]{1,20}",
        select(vec![
            "9223372036854775807",
            "-9223372036854775808",
            "0",
            "nan",
            "inf",
            "-inf",
            "-0.0",
            "1e300",
            "5e-324",
            "true",
            "false",
            "1979-05-27T07:32:00Z",
            "07:32:00",
        ])
        .prop_map(str::to_owned),
        "-?[0-9]{1,20}\\.[0-9]{1,6}",
        "\"[0-9]{0,24}(\\.[0-9]{0,6})?(ms|s|m|min|h| s|ns|)\"",
        "\"[ -~]{0,12}\"",
        ".{0,8}".prop_map(|s| toml_string(&s)),
    ];
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3)
                .prop_map(|items| format!("[{}]", items.join(", "))),
            proptest::collection::vec(("[a-z]{1,6}", inner), 0..3).prop_map(|pairs| {
                let pairs: Vec<String> = pairs
                    .into_iter()
                    .enumerate()
                    .map(|(i, (k, v))| format!("{k}{i} = {v}"))
                    .collect();
                format!("{{ {} }}", pairs.join(", "))
            }),
        ]
    })
}

/// A TOML-ish document: tables of keys and values (some of them invalid TOML: a key
/// twice, a table twice).
fn document() -> impl Strategy<Value = String> {
    let table = (header(), proptest::collection::vec((key(), value()), 0..5));
    proptest::collection::vec(table, 0..6).prop_map(|tables| {
        let mut text = String::new();
        for (header, entries) in tables {
            let _ = writeln!(text, "{header}");
            for (key, value) in entries {
                let _ = writeln!(text, "{key} = {value}");
            }
        }
        text
    })
}

/// `NUCLEON_*` variables: configuration keys (nested with `__`) and the loader's own
/// (`NUCLEON_ENV`…), with values of every kind (figment parses them).
fn variables() -> impl Strategy<Value = Vec<(String, String)>> {
    let name = prop_oneof![
        select(vec![
            "RUNTIME__WORKERS",
            "RUNTIME__SHUTDOWN_TIMEOUT",
            "RUNTIME__PROCESS_RESERVE",
            "RUNTIME__WATCHDOG__THRESHOLD",
            "RUNTIME__WATCHDOG",
            "RUNTIME",
            "ENV",
            "CONFIGURATION",
            "LOG",
            "TEST_DATABASE_URL",
            "HTTP__PORT",
            "RUNTIME____WORKERS",
            "__",
        ])
        .prop_map(str::to_owned),
        "[A-Z][A-Z_]{0,10}",
        "RUNTIME__[A-Za-z_]{1,10}",
    ];
    let value = prop_oneof![
        "-?[0-9]{1,22}",
        "[0-9]{1,20}(\\.[0-9]{1,4})?(ms|s|m|h)",
        select(vec![
            "true",
            "[1, 2]",
            "{a = 1}",
            "[",
            "\"quoted\"",
            "",
            " ",
            "default",
            "test"
        ])
        .prop_map(str::to_owned),
        "[^\u{0}]{0,12}",
    ];
    proptest::collection::vec((name.prop_map(|n| format!("NUCLEON_{n}")), value), 0..4)
}

// ---- Valid values --------------------------------------------------------------

/// A duration in a documented form: as TOML, as a variable's value, and its value.
fn duration() -> impl Strategy<Value = (String, String, Duration)> {
    prop_oneof![
        (0..100_000_u64).prop_map(|n| (
            format!("\"{n}ms\""),
            format!("{n}ms"),
            Duration::from_millis(n)
        )),
        (0..100_000_u64).prop_map(|n| (
            format!("\"{n}s\""),
            format!("{n}s"),
            Duration::from_secs(n)
        )),
        (0..100_000_u64).prop_map(|n| (format!("{n}"), format!("{n}"), Duration::from_secs(n))),
        (0..1_000_u64).prop_map(|n| (
            format!("\"{n}m\""),
            format!("{n}m"),
            Duration::from_secs(n * 60)
        )),
        (0..100_u64).prop_map(|n| (
            format!("\"{n}h\""),
            format!("{n}h"),
            Duration::from_secs(n * 3600)
        )),
        (0..100_000_u64).prop_map(|n| (
            format!("{n}.5"),
            format!("{n}.5"),
            Duration::from_millis(n * 1000 + 500)
        )),
        (0..100_000_u64).prop_map(|n| (
            format!("\"{n}.25s\""),
            format!("{n}.25s"),
            Duration::from_millis(n * 1000 + 250)
        )),
    ]
}

fn nonzero_duration() -> impl Strategy<Value = (String, String, Duration)> {
    duration().prop_filter("more than 0", |(_, _, d)| !d.is_zero())
}

/// One valid setting: its table (under `runtime`), key, TOML value, variable value,
/// and what it does to the settings.
#[derive(Clone, Debug)]
struct Setting {
    table: &'static str,
    key: &'static str,
    toml: String,
    variable: String,
    value: Value,
}

#[derive(Clone, Debug)]
enum Value {
    Count(usize),
    Flag(bool),
    Time(Duration),
}

impl Setting {
    fn apply(&self, settings: &mut RuntimeSettings) {
        let (w, o) = (&mut settings.watchdog, &mut settings.offload);
        match (self.table, self.key, &self.value) {
            ("", "workers", Value::Count(n)) => settings.workers = Some(*n),
            ("", "shutdown_timeout", Value::Time(d)) => settings.shutdown_timeout = *d,
            ("", "start_timeout", Value::Time(d)) => settings.start_timeout = *d,
            ("", "process_reserve", Value::Time(d)) => settings.process_reserve = Some(*d),
            ("watchdog", "enabled", Value::Flag(b)) => w.enabled = *b,
            ("watchdog", "threshold", Value::Time(d)) => w.threshold = *d,
            ("watchdog", "heartbeat", Value::Time(d)) => w.heartbeat = Some(*d),
            ("watchdog", "backtrace", Value::Flag(b)) => w.backtrace = *b,
            ("offload", "blocking_threads", Value::Count(n)) => o.blocking_threads = *n,
            ("offload", "blocking_queue", Value::Count(n)) => o.blocking_queue = *n,
            ("offload", "cpu_threads", Value::Count(n)) => o.cpu_threads = Some(*n),
            ("offload", "cpu_queue", Value::Count(n)) => o.cpu_queue = *n,
            ("offload", "keep_alive", Value::Time(d)) => o.keep_alive = *d,
            other => panic!("no such setting: {other:?}"),
        }
    }

    /// `runtime.watchdog.threshold`.
    fn path(&self) -> String {
        match self.table {
            "" => format!("runtime.{}", self.key),
            table => format!("runtime.{table}.{}", self.key),
        }
    }

    /// `NUCLEON_RUNTIME__WATCHDOG__THRESHOLD`.
    fn variable_name(&self) -> String {
        format!("NUCLEON_{}", self.path().replace('.', "__").to_uppercase())
    }
}

fn setting() -> impl Strategy<Value = Setting> {
    let count = |table: &'static str, key: &'static str| {
        (0..=u64::from(u32::MAX)).prop_map(move |n| Setting {
            table,
            key,
            toml: n.to_string(),
            variable: n.to_string(),
            value: Value::Count(usize::try_from(n).expect("a 64-bit usize")),
        })
    };
    let flag = |table: &'static str, key: &'static str| {
        any::<bool>().prop_map(move |b| Setting {
            table,
            key,
            toml: b.to_string(),
            variable: b.to_string(),
            value: Value::Flag(b),
        })
    };
    let time = |table: &'static str, key: &'static str, nonzero: bool| {
        let durations = if nonzero {
            nonzero_duration().boxed()
        } else {
            duration().boxed()
        };
        durations.prop_map(move |(toml, variable, d)| Setting {
            table,
            key,
            toml,
            variable,
            value: Value::Time(d),
        })
    };
    prop_oneof![
        count("", "workers"),
        time("", "shutdown_timeout", false),
        time("", "start_timeout", false),
        time("", "process_reserve", false),
        flag("watchdog", "enabled"),
        time("watchdog", "threshold", true),
        time("watchdog", "heartbeat", true),
        flag("watchdog", "backtrace"),
        count("offload", "blocking_threads"),
        count("offload", "blocking_queue"),
        count("offload", "cpu_threads"),
        count("offload", "cpu_queue"),
        time("offload", "keep_alive", false),
    ]
}

/// The TOML of `settings` under `[<env>.runtime…]`, one table per header; a key set
/// twice keeps its last value (TOML refuses a key twice).
fn toml_of(env: &str, settings: &[Setting]) -> String {
    let mut text = String::new();
    for table in ["", "watchdog", "offload"] {
        let mut lines: Vec<(&str, &str)> = Vec::new();
        for s in settings.iter().filter(|s| s.table == table) {
            lines.retain(|(k, _)| *k != s.key);
            lines.push((s.key, &s.toml));
        }
        if lines.is_empty() {
            continue;
        }
        let dot = if table.is_empty() { "" } else { "." };
        let _ = writeln!(text, "[{env}.runtime{dot}{table}]");
        for (key, value) in lines {
            let _ = writeln!(text, "{key} = {value}");
        }
    }
    text
}

/// A key none of the runtime's tables has: plausible, a typo of a known one, or any
/// text; lowercase ASCII without `__` (`for_variable`) when it is to be a variable's.
fn unknown_key(table: &'static str, for_variable: bool) -> impl Strategy<Value = String> {
    let known: &'static [&'static str] = match table {
        "" => &[
            "workers",
            "shutdown_timeout",
            "start_timeout",
            "process_reserve",
            "watchdog",
            "offload",
        ],
        "watchdog" => &["enabled", "threshold", "heartbeat", "backtrace"],
        _ => &[
            "blocking_threads",
            "blocking_queue",
            "cpu_threads",
            "cpu_queue",
            "keep_alive",
        ],
    };
    let typo = (
        select(known.to_vec()),
        any::<prop::sample::Index>(),
        "[a-z]",
        0..3_u8,
    )
        .prop_map(|(key, at, letter, how)| {
            let mut chars: Vec<char> = key.chars().collect();
            let i = at.index(chars.len());
            let letter = letter.chars().next().unwrap_or('x');
            match how {
                0 => chars[i] = letter,
                1 => chars.insert(i, letter),
                _ => {
                    chars.remove(i);
                }
            }
            chars.into_iter().collect::<String>()
        });
    let any_text = if for_variable {
        "[a-z][a-z0-9]{0,12}".boxed()
    } else {
        ".{1,10}".boxed()
    };
    prop_oneof!["[a-z][a-z0-9_]{0,15}", typo, any_text].prop_filter(
        "unknown, and a variable can say it",
        move |key| {
            !known.contains(&key.as_str())
                && !(for_variable && (key.contains("__") || key.ends_with('_') || key.is_empty()))
        },
    )
}

fn runtime_table() -> impl Strategy<Value = &'static str> {
    select(vec!["", "watchdog", "offload"])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Any text at all: a value or a `ConfigError`, never a panic.
    #[test]
    fn no_text_panics_the_loader(text in any::<String>(), env in environment()) {
        jailed(&[], None, || exercise(Config::from_toml(&text, &env)));
    }

    /// TOML-ish documents and `NUCLEON_*` variables of every kind: no panic; and a
    /// file with the same text loads as the text does.
    #[test]
    fn no_document_or_variable_panics_the_loader(
        text in document(),
        vars in variables(),
        env in environment(),
        explicit in any::<bool>(),
    ) {
        let (from_text, from_file) = jailed(&vars, Some(&text), || {
            let from_text = exercise(Config::from_toml(&text, &env));
            let from_file = exercise(Config::load(ConfigOptions {
                file: None,
                environment: explicit.then(|| env.clone()),
            }));
            (from_text, from_file)
        });
        // `Config::load` without an explicit environment takes NUCLEON_ENV's: compare
        // only when both loaded the same environment.
        let chosen_by_variable = vars.iter().any(|(name, value)| {
            (name == "NUCLEON_ENV" || name == "NUCLEON_CONFIGURATION") && !value.is_empty()
        });
        if (explicit && !env.is_empty()) || (env == "default" && !chosen_by_variable) {
            prop_assert_eq!(from_text, from_file, "{}", text);
        }
    }

    /// A runtime duration of any size, in any form: refused naming its key, or one
    /// the runtime can compute with (100 years at most).
    #[test]
    fn durations_of_any_size_are_refused_or_usable(
        key in select(vec![
            "runtime.shutdown_timeout",
            "runtime.start_timeout",
            "runtime.process_reserve",
            "runtime.watchdog.threshold",
            "runtime.watchdog.heartbeat",
            "runtime.offload.keep_alive",
        ]),
        magnitude in 0..64_u32,
        mantissa in any::<u64>(),
        form in 0..6_u8,
        from_variable in any::<bool>(),
    ) {
        let n = mantissa >> magnitude;
        let signed = i64::try_from(n).unwrap_or(i64::MAX);
        let (toml, variable) = match form {
            0 => (signed.to_string(), signed.to_string()),
            1 => (format!("{n}.5"), format!("{n}.5")),
            2 => (format!("\"{n}s\""), format!("{n}s")),
            3 => (format!("\"{n}ms\""), format!("{n}ms")),
            4 => (format!("\"{n}h\""), format!("{n}h")),
            _ => (format!("{:e}", n as f64), format!("{:e}", n as f64)),
        };
        let (table, name) = key.rsplit_once('.').unwrap_or_default();
        let (text, vars) = if from_variable {
            (
                "[default]\n".to_owned(),
                vec![(format!("NUCLEON_{}", key.replace('.', "__").to_uppercase()), variable)],
            )
        } else {
            (format!("[default.{table}]\n{name} = {toml}\n"), Vec::new())
        };
        let loaded = jailed(&vars, None, || {
            Config::from_toml(&text, "default").and_then(|config| config.runtime_settings())
        });
        match loaded {
            Ok(settings) => usable(&settings),
            Err(error) => prop_assert!(
                matches!(&error, ConfigError::Invalid { key: named, .. } if named == key),
                "{text}{vars:?}\n{error}"
            ),
        }
    }

    /// Valid runtime settings come back as written: `[default.runtime…]` under
    /// `[production.runtime…]` under `NUCLEON_RUNTIME__…` variables, each key taking
    /// the last one's value, the keys set nowhere their defaults.
    #[test]
    fn valid_runtime_settings_round_trip(
        defaults in proptest::collection::vec(setting(), 0..6),
        production in proptest::collection::vec(setting(), 0..6),
        variables in proptest::collection::vec(setting(), 0..4),
        env in select(vec!["default", "production"]),
    ) {
        // `[production]` always: an environment the file does not define is refused.
        let text = format!(
            "{}[production]\n{}",
            toml_of("default", &defaults),
            toml_of("production", &production)
        );
        let vars: Vec<(String, String)> = variables
            .iter()
            .map(|s| (s.variable_name(), s.variable.clone()))
            .collect();
        let mut expected = RuntimeSettings::default();
        let layers: [&[Setting]; 3] = if env == "production" {
            [&defaults, &production, &variables]
        } else {
            [&defaults, &[], &variables]
        };
        for setting in layers.into_iter().flatten() {
            setting.apply(&mut expected);
        }
        // The last variable of one name wins, as `set_env` replaces it.
        let loaded = jailed(&vars, None, || {
            Config::from_toml(&text, env).and_then(|config| config.runtime_settings())
        });
        prop_assert!(loaded.is_ok(), "{}\n{:?}\n{:?}", text, vars, loaded);
        prop_assert_eq!(loaded.ok(), Some(expected), "{}\n{:?}", text, vars);
    }

    /// An app's own table, of any text and numbers, comes back as written (from the
    /// file; and from a variable, for text a variable keeps as text: figment reads a
    /// variable's value as a TOML-ish value, so `NUCLEON_APP__WORD=123`, `true` or
    /// `007` is a number or a boolean, refused for a `String` field, and must be
    /// written `'"123"'`; words with a space stay text).
    #[test]
    fn an_app_table_round_trips(
        name in ".{0,16}",
        count in any::<i64>(),
        ratio in -1.0e12..1.0e12_f64,
        tags in proptest::collection::vec(".{0,6}", 0..4),
        word in "[a-z]{1,6} [a-z ]{0,6}[a-z]",
    ) {
        #[derive(Debug, PartialEq, serde::Deserialize)]
        struct App {
            name: String,
            count: i64,
            ratio: f64,
            tags: Vec<String>,
            word: Option<String>,
        }
        let tags_toml: Vec<String> = tags.iter().map(|t| toml_string(t)).collect();
        let text = format!(
            "[default.app]\nname = {}\ncount = {count}\nratio = {ratio:?}\ntags = [{}]\n",
            toml_string(&name),
            tags_toml.join(", ")
        );
        let vars = vec![("NUCLEON_APP__WORD".to_owned(), word.clone())];
        let loaded = jailed(&vars, None, || {
            let config = Config::from_toml(&text, "default")?;
            config.extract_at::<Option<App>>("app")
        });
        prop_assert!(loaded.is_ok(), "{}\n{:?}", text, loaded);
        prop_assert_eq!(
            loaded.ok().flatten(),
            Some(App { name, count, ratio, tags, word: Some(word) }),
            "{}", text
        );
    }

    /// An unknown key in `[default.runtime]`, `[default.runtime.watchdog]` or
    /// `[default.runtime.offload]`, beside valid ones, is refused naming it.
    #[test]
    fn an_unknown_runtime_key_in_the_file_is_refused_naming_it(
        (table, key) in runtime_table().prop_flat_map(|t| (Just(t), unknown_key(t, false))),
        valid in proptest::collection::vec(setting(), 0..4),
        value in select(vec!["1", "\"5s\"", "true", "[1]", "{ a = 1 }"]),
    ) {
        let mut text = toml_of("default", &valid);
        let dot = if table.is_empty() { "" } else { "." };
        // A table of its own: TOML lets a table's keys come in two places only when
        // one of them is a sub-table.
        let _ = writeln!(text, "[default.runtime{dot}{table}]\n{} = {value}", toml_string(&key));
        let text = merge_tables(&text);
        let loaded = jailed(&[], None, || {
            Config::from_toml(&text, "default").and_then(|config| config.runtime_settings())
        });
        match loaded {
            Ok(settings) => prop_assert!(false, "`{key}` was taken:\n{text}\n{settings:?}"),
            Err(error) => {
                let message = error.to_string();
                prop_assert!(
                    message.contains(&format!("unknown key `{key}`")),
                    "the error does not name `{}`: {}\n{}", key, message, text
                );
            }
        }
    }

    /// An unknown key set by a variable (`NUCLEON_RUNTIME__WATCHDOG__TRESHOLD`) is
    /// refused naming it (lowercase, as figment reads variables).
    #[test]
    fn an_unknown_runtime_key_from_a_variable_is_refused_naming_it(
        (table, key) in runtime_table().prop_flat_map(|t| (Just(t), unknown_key(t, true))),
        value in select(vec!["1", "5s", "true", "x"]),
    ) {
        let path = if table.is_empty() { key.clone() } else { format!("{table}__{key}") };
        let vars = vec![(format!("NUCLEON_RUNTIME__{}", path.to_uppercase()), value.to_owned())];
        let loaded = jailed(&vars, None, || {
            Config::from_toml("[default]\n", "default").and_then(|config| config.runtime_settings())
        });
        match loaded {
            Ok(settings) => prop_assert!(false, "{vars:?} was taken: {settings:?}"),
            Err(error) => {
                let message = error.to_string();
                prop_assert!(
                    message.contains(&format!("unknown key `{key}`")),
                    "the error does not name `{}`: {}", key, message
                );
            }
        }
    }

    /// A top-level table of an environment the service does not read, from the file
    /// or a variable, is refused by `check_tables` naming it.
    #[test]
    fn an_unknown_table_is_refused_naming_it(
        name in "[a-z][a-z0-9_]{0,12}".prop_filter("unknown, one level", |n| {
            !["runtime", "http", "app"].contains(&n.as_str()) && !n.contains("__")
        }),
        from_variable in any::<bool>(),
    ) {
        let (text, vars) = if from_variable {
            let variable = format!("NUCLEON_{}", name.to_uppercase());
            ("[default]\n".to_owned(), vec![(variable, "1".to_owned())])
        } else {
            (format!("[default.{name}]\nx = 1\n"), Vec::new())
        };
        // The loader's own variables (`NUCLEON_ENV`, `NUCLEON_TEST_…`) are not tables.
        let reserved = ["env", "configuration", "config", "log"].contains(&name.as_str())
            || name.starts_with("test_");
        let checked = jailed(&vars, None, || {
            Config::from_toml(&text, "default")?.check_tables(&["runtime", "http", "app"])
        });
        if from_variable && reserved {
            prop_assert!(checked.is_ok(), "{:?}", checked);
        } else {
            match checked {
                Ok(()) => prop_assert!(false, "`{name}` was taken"),
                Err(error) => {
                    let named = error.to_string().contains(&format!("`{name}` is not a table"));
                    prop_assert!(named, "{error}");
                }
            }
        }
    }

    /// A framework section written as a top-level table is refused naming it.
    #[test]
    fn a_section_outside_any_environment_is_refused_naming_it(
        section in select(vec!["runtime", "http", "http_client", "dns", "db", "amqp"]),
        before in document(),
    ) {
        let text = format!("[{section}]\nx = 1\n{before}");
        let loaded = jailed(&[], None, || Config::from_toml(&text, "default").map(drop));
        match loaded {
            // The first one the loader finds: this one, or one in the document after.
            Err(ConfigError::SectionOutsideEnvironment { section: named, .. }) => prop_assert!(
                named == section
                    || text.lines().any(|l| l.starts_with(&format!("[{named}"))
                        || l.starts_with(&format!("[[{named}"))),
                "{} named, in:\n{}", named, text
            ),
            // The document after it may not be TOML, or may repeat `[section]`.
            Err(ConfigError::Invalid { .. }) => {}
            other => prop_assert!(false, "{:?}\n{}", other.map(|_| ()), text),
        }
    }
}

/// `text` with each table header's keys gathered under its first occurrence (TOML
/// refuses a table defined twice; a test may append to one).
fn merge_tables(text: &str) -> String {
    let mut order: Vec<String> = Vec::new();
    let mut tables: std::collections::HashMap<String, Vec<String>> = Default::default();
    let mut current = String::new();
    for line in text.lines() {
        if line.starts_with('[') {
            current = line.to_owned();
            if !tables.contains_key(&current) {
                order.push(current.clone());
                tables.insert(current.clone(), Vec::new());
            }
        } else if !line.is_empty() {
            tables
                .entry(current.clone())
                .or_default()
                .push(line.to_owned());
        }
    }
    let mut out = String::new();
    for header in order {
        let _ = writeln!(out, "{header}");
        for line in &tables[&header] {
            let _ = writeln!(out, "{line}");
        }
    }
    out
}

/// Found by `durations_of_any_size_are_refused_or_usable`: a `shutdown_timeout` the
/// loader took (up to 2⁶⁴ s) made `process_reserve_in_force` overflow (`* 3`) and
/// the drain's deadline (`Instant + timeout`) panic. Configuration now takes 100
/// years at most, and the reserve is computed without overflow.
#[test]
fn a_duration_too_long_for_the_clocks_is_refused_naming_its_key() {
    for value in ["9223372036854775807", "1e19", "\"6148914691236517206s\""] {
        let text = format!("[default.runtime]\nshutdown_timeout = {value}\n");
        let error = jailed(&[], None, || {
            Config::from_toml(&text, "default").and_then(|config| config.runtime_settings())
        })
        .expect_err(value);
        assert!(
            matches!(&error, ConfigError::Invalid { key, .. } if key == "runtime.shutdown_timeout"),
            "{error}"
        );
        assert!(error.to_string().contains("100 years at most"), "{error}");
    }
    let settings = RuntimeSettings {
        shutdown_timeout: Duration::MAX,
        ..RuntimeSettings::default()
    };
    assert_eq!(settings.process_reserve_in_force(), Duration::MAX / 10 * 3);
    let century = jailed(&[], None, || {
        Config::from_toml(
            "[default.runtime]\nshutdown_timeout = \"876600h\"\n",
            "default",
        )
        .and_then(|config| config.runtime_settings())
    })
    .expect("100 years is taken");
    assert_eq!(century.shutdown_timeout, duration::MAX);
}
