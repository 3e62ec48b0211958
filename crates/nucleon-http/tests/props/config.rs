//! The `[<env>.http]` table through the configuration loader
//! (`nucleon_runtime::Config::from_toml`, then `extract_at::<HttpConfig>("http")`):
//! valid values come back as written, an unknown key or a bad value is refused with
//! an error naming it, and no text panics. (`NUCLEON_*` variables are the runtime
//! crate's properties; this binary sets none.)

use std::fmt::Write as _;
use std::time::Duration;

use nucleon_http::HttpConfig;
use nucleon_runtime::{Config, ConfigError};
use proptest::prelude::*;
use proptest::sample::select;

use crate::support::cases;

/// The table's keys.
const KNOWN: [&str; 17] = [
    "host",
    "port",
    "backlog",
    "header_read_timeout",
    "max_header_size",
    "body_limit",
    "send_timeout",
    "body_read_timeout",
    "request_timeout",
    "readiness_path",
    "liveness_path",
    "lame_duck",
    "drain_idle_grace",
    "retry_after",
    "http2",
    "access_log",
    "share_port",
];

/// A TOML basic string of any text.
pub(crate) fn toml_string(text: &str) -> String {
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

/// A duration in each of the forms the loader documents, as TOML, and its value.
pub(crate) fn duration() -> impl Strategy<Value = (String, Duration)> {
    prop_oneof![
        (0..100_000_u64).prop_map(|n| (format!("\"{n}ms\""), Duration::from_millis(n))),
        (0..100_000_u64).prop_map(|n| (format!("\"{n}s\""), Duration::from_secs(n))),
        (0..100_000_u64).prop_map(|n| (format!("{n}"), Duration::from_secs(n))),
        (0..100_000_u64).prop_map(|n| (format!("\"{n}\""), Duration::from_secs(n))),
        (0..1_000_u64).prop_map(|n| (format!("\"{n}m\""), Duration::from_secs(n * 60))),
        (0..1_000_u64).prop_map(|n| (format!("\"{n}min\""), Duration::from_secs(n * 60))),
        (0..100_u64).prop_map(|n| (format!("\"{n}h\""), Duration::from_secs(n * 3600))),
        (0..100_000_u64).prop_map(|n| (format!("{n}.5"), Duration::from_millis(n * 1000 + 500))),
        (0..100_000_u64).prop_map(|n| (
            format!("\" {n}.25s \""),
            Duration::from_millis(n * 1000 + 250)
        )),
    ]
}

fn nonzero_duration() -> impl Strategy<Value = (String, Duration)> {
    duration().prop_filter("more than 0", |(_, d)| !d.is_zero())
}

/// A probe path: empty (no route) or starting with `/`.
fn probe_path() -> impl Strategy<Value = String> {
    prop_oneof![Just(String::new()), ".{0,12}".prop_map(|p| format!("/{p}"))]
}

/// Some of the table's keys, each with a valid value: the TOML lines, and the
/// configuration they make.
fn valid_table() -> impl Strategy<Value = (String, HttpConfig)> {
    use proptest::option::of;
    let first = (
        of(".{0,16}"),
        of(any::<u16>()),
        of(any::<u32>()),
        of(nonzero_duration()),
        of(0..=i64::MAX as u64),
        of(0..=i64::MAX as u64),
    );
    let second = (
        of(nonzero_duration()),
        of(nonzero_duration()),
        of(nonzero_duration()),
        of(probe_path()),
        of(probe_path()),
        of(duration()),
    );
    let third = (
        of(duration()),
        of(0..=i64::MAX as u64),
        of(any::<bool>()),
        of(any::<bool>()),
        of(any::<bool>()),
    );
    (first, second, third).prop_map(|(first, second, third)| {
        let (host, port, backlog, header_read_timeout, max_header_size, body_limit) = first;
        let (send_timeout, body_read_timeout, request_timeout, readiness, liveness, lame_duck) =
            second;
        let (drain_idle_grace, retry_after, http2, access_log, share_port) = third;
        let mut toml = String::new();
        let mut config = HttpConfig::default();
        let mut line = |key: &str, value: String| {
            let _ = writeln!(toml, "{key} = {value}");
        };
        if let Some(v) = host {
            line("host", toml_string(&v));
            config.host = v;
        }
        if let Some(v) = port {
            line("port", v.to_string());
            config.port = v;
        }
        if let Some(v) = backlog {
            line("backlog", v.to_string());
            config.backlog = v;
        }
        for (key, value, field) in [
            (
                "header_read_timeout",
                header_read_timeout,
                &mut config.header_read_timeout,
            ),
            ("send_timeout", send_timeout, &mut config.send_timeout),
            (
                "body_read_timeout",
                body_read_timeout,
                &mut config.body_read_timeout,
            ),
            ("lame_duck", lame_duck, &mut config.lame_duck),
            (
                "drain_idle_grace",
                drain_idle_grace,
                &mut config.drain_idle_grace,
            ),
        ] {
            if let Some((text, duration)) = value {
                line(key, text);
                *field = duration;
            }
        }
        if let Some((text, duration)) = request_timeout {
            line("request_timeout", text);
            config.request_timeout = Some(duration);
        }
        for (key, value, field) in [
            (
                "max_header_size",
                max_header_size,
                &mut config.max_header_size,
            ),
            ("body_limit", body_limit, &mut config.body_limit),
        ] {
            if let Some(v) = value {
                line(key, v.to_string());
                *field = usize::try_from(v).expect("a 64-bit usize");
            }
        }
        for (key, value, field) in [
            ("readiness_path", readiness, &mut config.readiness_path),
            ("liveness_path", liveness, &mut config.liveness_path),
        ] {
            if let Some(v) = value {
                line(key, toml_string(&v));
                *field = Some(v);
            }
        }
        if let Some(v) = retry_after {
            line("retry_after", v.to_string());
            config.retry_after = v;
        }
        for (key, value, field) in [
            ("http2", http2, &mut config.http2),
            ("access_log", access_log, &mut config.access_log),
            ("share_port", share_port, &mut config.share_port),
        ] {
            if let Some(v) = value {
                line(key, v.to_string());
                *field = v;
            }
        }
        (toml, config)
    })
}

/// A key the table does not have: a plausible name, a typo of a known one (a letter
/// changed, added or dropped), or any text (quoted).
fn unknown_key() -> impl Strategy<Value = String> {
    let typo = (
        select(KNOWN.to_vec()),
        any::<prop::sample::Index>(),
        "[a-z_]",
        0..3_u8,
    )
        .prop_map(|(known, at, letter, how)| {
            let mut chars: Vec<char> = known.chars().collect();
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
    prop_oneof![
        "[a-z_][a-z0-9_]{0,15}",
        typo,
        ".{1,10}",
        Just("HOST".to_owned()),
    ]
    .prop_filter("not a known key", |key| !KNOWN.contains(&key.as_str()))
}

fn http_table(toml: &str) -> Result<HttpConfig, ConfigError> {
    Config::from_toml(toml, "default")?.extract_at("http")
}

/// Whether `error` is about `key`.
fn names(error: &ConfigError, key: &str) -> bool {
    matches!(error, ConfigError::Invalid { key: named, .. } if named == key)
}

/// A known key and a value it refuses: of another type, out of range, a zero
/// timeout, a negative or too long duration, a path without its `/`.
fn bad_value() -> impl Strategy<Value = (&'static str, &'static str)> {
    let with = |keys: Vec<&'static str>, values: Vec<&'static str>| (select(keys), select(values));
    prop_oneof![
        with(
            vec!["port", "backlog"],
            vec!["-1", "\"8000\"", "1.5", "true", "[]", "99999999999"],
        ),
        with(
            vec!["max_header_size", "body_limit", "retry_after"],
            vec!["-1", "\"8000\"", "1.5", "true", "[]"],
        ),
        with(
            vec![
                "header_read_timeout",
                "send_timeout",
                "body_read_timeout",
                "request_timeout",
            ],
            vec![
                "0", "\"0ms\"", "-1", "\"soon\"", "\"-1s\"", "true", "nan", "1e300", "1e19"
            ],
        ),
        with(
            vec!["lame_duck", "drain_idle_grace"],
            vec![
                "-1",
                "\"1 parsec\"",
                "-0.5",
                "[]",
                "inf",
                "9223372036854775807",
                "\"876601h\"",
            ],
        ),
        with(
            vec!["readiness_path", "liveness_path"],
            vec!["\"readyz\"", "1", "false"],
        ),
        with(
            vec!["http2", "access_log", "share_port"],
            vec!["\"yes\"", "[true]", "{ a = 1 }"],
        ),
        with(vec!["host"], vec!["1", "[]", "{ a = 1 }", "false"]),
    ]
}

/// Lines of known and other keys, with values of every type, durations and numbers
/// in and out of range.
fn table_lines() -> impl Strategy<Value = Vec<(String, String)>> {
    let key = prop_oneof![select(KNOWN.to_vec()).prop_map(str::to_owned), "[a-z]{1,6}"];
    let value = prop_oneof![
        "-?[0-9]{1,25}",
        "-?[0-9]{1,20}\\.[0-9]{1,5}",
        "\"[0-9]{0,22}(\\.[0-9]{0,4})?(ms|s|m|min|h|d| s|)\"",
        "\"[ -~]{0,12}\"",
        select(vec!["nan", "-inf", "[]", "{}", "1979-05-27T07:32:00Z"]).prop_map(str::to_owned),
    ];
    proptest::collection::vec((key, value), 0..6)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// Valid values, in every documented form, come back as written; the keys left
    /// out keep their defaults.
    #[test]
    fn valid_http_tables_round_trip((lines, expected) in valid_table()) {
        let toml = format!("[default.http]\n{lines}");
        let loaded = http_table(&toml);
        prop_assert!(loaded.is_ok(), "{toml}\n{:?}", loaded.map(drop));
        prop_assert_eq!(loaded.unwrap_or_default(), expected, "{}", toml);
    }

    /// An unknown key, beside valid ones, is refused with an error naming it.
    #[test]
    fn an_unknown_http_key_is_refused_naming_it(
        (lines, _) in valid_table(),
        key in unknown_key(),
        value in select(vec!["1", "\"x\"", "true", "[1, 2]", "{ a = 1 }", "1.5"]),
    ) {
        let toml = format!("[default.http]\n{lines}{} = {value}\n", toml_string(&key));
        match http_table(&toml) {
            Ok(_) => prop_assert!(false, "`{key}` was taken:\n{toml}"),
            Err(error) => {
                let text = error.to_string();
                prop_assert!(
                    text.contains(&format!("unknown key `{key}`")),
                    "the error does not name `{}`: {}\n{}", key, text, toml
                );
                prop_assert!(names(&error, &format!("http.{key}")), "{error:?}");
            }
        }
    }

    /// A value of the wrong type or out of range for a known key is refused with an
    /// error naming `http.<key>`.
    #[test]
    fn a_bad_http_value_is_refused_naming_its_key((key, value) in bad_value()) {
        let toml = format!("[default.http]\n{key} = {value}\n");
        match http_table(&toml) {
            Ok(config) => prop_assert!(false, "{toml} was taken: {config:?}"),
            Err(error) => prop_assert!(names(&error, &format!("http.{key}")), "{toml}\n{error}"),
        }
    }

    /// No text panics the loader or the table's extraction.
    #[test]
    fn no_http_table_text_panics_the_loader(lines in table_lines()) {
        let mut toml = String::from("[default.http]\n");
        let mut seen = Vec::new();
        for (key, value) in lines {
            if !seen.contains(&key) {
                let _ = writeln!(toml, "{key} = {value}");
                seen.push(key);
            }
        }
        if let Ok(config) = http_table(&toml) {
            let _ = config.addr();
        }
    }
}
