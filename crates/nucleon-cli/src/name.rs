//! An app's name: the name of its package, its binary and (`-` as `_`) its library.

/// Why a name cannot be an app's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidName {
    /// No name at all.
    #[error("an app needs a name")]
    Empty,
    /// Longer than crates.io takes.
    #[error("`{0}` is too long: {MAX_LEN} characters at most")]
    TooLong(String),
    /// A character other than lowercase ASCII letters, digits, `-` and `_`.
    #[error(
        "`{name}` is not a valid crate name: `{character}` is not allowed (lowercase letters, digits, `-` and `_` only)"
    )]
    Character {
        /// The name.
        name: String,
        /// The first character refused.
        character: char,
    },
    /// Not starting with a letter.
    #[error("`{0}` is not a valid crate name: it must start with a lowercase letter")]
    Start(String),
    /// A name Rust, Cargo or Windows keeps, or one of the app's dependencies.
    #[error("`{name}` is not a valid crate name: {why}")]
    Reserved {
        /// The name.
        name: String,
        /// Whose it is.
        why: &'static str,
    },
}

/// crates.io's limit.
const MAX_LEN: usize = 64;

/// Rust's keywords, strict and reserved (a library cannot be named after one).
const KEYWORDS: &[&str] = &[
    "abstract",
    "as",
    "async",
    "await",
    "become",
    "box",
    "break",
    "const",
    "continue",
    "crate",
    "do",
    "dyn",
    "else",
    "enum",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "pub",
    "ref",
    "return",
    "self",
    "static",
    "struct",
    "super",
    "trait",
    "true",
    "try",
    "type",
    "typeof",
    "unsafe",
    "unsized",
    "use",
    "virtual",
    "where",
    "while",
    "yield",
    "macro_rules",
];

/// The standard library's crates: a package of that name would shadow them.
const STD: &[&str] = &["std", "core", "alloc", "proc_macro", "test"];

/// Names of Cargo's own directories in `target/`: `cargo new` refuses them.
const CARGO_DIRS: &[&str] = &["build", "deps", "examples", "incremental"];

/// Names Windows keeps for devices.
const WINDOWS: &[&str] = &[
    "con", "prn", "aux", "nul", "com1", "com2", "com3", "com4", "com5", "com6", "com7", "com8",
    "com9", "lpt1", "lpt2", "lpt3", "lpt4", "lpt5", "lpt6", "lpt7", "lpt8", "lpt9",
];

/// The app's dependencies (Nucleon's crates and serde): its own name would clash.
const DEPENDENCIES: &[&str] = &[
    "serde",
    "nucleon",
    "nucleon_runtime",
    "nucleon_http",
    "nucleon_db",
    "nucleon_amqp",
    "nucleon_dns",
    "nucleon_testkit",
    "nucleon_cli",
];

/// Checks that `name` can name an app: lowercase ASCII letters, digits, `-` and `_`,
/// starting with a letter, at most 64 characters, and not a name Rust, Cargo or Windows
/// keeps, nor one of the app's dependencies (`-` and `_` are the same for that).
///
/// # Errors
/// [`InvalidName`], saying what is wrong.
pub fn check(name: &str) -> Result<(), InvalidName> {
    let Some(first) = name.chars().next() else {
        return Err(InvalidName::Empty);
    };
    if let Some(character) = name
        .chars()
        .find(|&c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_'))
    {
        return Err(InvalidName::Character {
            name: name.to_owned(),
            character,
        });
    }
    if !first.is_ascii_lowercase() {
        return Err(InvalidName::Start(name.to_owned()));
    }
    if name.len() > MAX_LEN {
        return Err(InvalidName::TooLong(name.to_owned()));
    }
    let library = name.replace('-', "_");
    let why = if KEYWORDS.contains(&library.as_str()) {
        "it is a Rust keyword"
    } else if STD.contains(&library.as_str()) {
        "it is the name of a crate of Rust's standard library"
    } else if CARGO_DIRS.contains(&library.as_str()) {
        "Cargo keeps it for a directory of its own"
    } else if WINDOWS.contains(&library.as_str()) {
        "Windows keeps it for a device"
    } else if DEPENDENCIES.contains(&library.as_str()) {
        "the app depends on a crate of that name"
    } else {
        return Ok(());
    };
    Err(InvalidName::Reserved {
        name: name.to_owned(),
        why,
    })
}

/// A valid name close to `name` (`My App` → `my-app`), to suggest, if there is one.
pub(crate) fn suggest(name: &str) -> Option<String> {
    let mut suggestion = String::new();
    for c in name.trim().chars() {
        match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9' | '_') => suggestion.push(c),
            _ if !suggestion.ends_with('-') => suggestion.push('-'),
            _ => {}
        }
    }
    let suggestion = suggestion
        .trim_start_matches(|c: char| !c.is_ascii_lowercase())
        .trim_end_matches('-')
        .to_owned();
    (suggestion != name && check(&suggestion).is_ok()).then_some(suggestion)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_names() {
        for name in ["hello", "my-app", "my_app", "a", "orders2", "x-1_y"] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
        assert_eq!(check(&"a".repeat(64)), Ok(()));
    }

    #[test]
    fn invalid_names_say_why() {
        let message = |name: &str| check(name).unwrap_err().to_string();
        assert_eq!(message(""), "an app needs a name");
        assert_eq!(
            message("MyApp"),
            "`MyApp` is not a valid crate name: `M` is not allowed (lowercase letters, digits, `-` and `_` only)"
        );
        assert!(message("my app").contains("` ` is not allowed"));
        assert!(message("café").contains("`é` is not allowed"));
        assert_eq!(
            message("1app"),
            "`1app` is not a valid crate name: it must start with a lowercase letter"
        );
        assert!(message("-app").contains("must start with a lowercase letter"));
        assert!(message("_app").contains("must start with a lowercase letter"));
        assert!(message(&"a".repeat(65)).contains("too long"));
        assert!(message("fn").contains("Rust keyword"));
        assert!(message("self").contains("Rust keyword"));
        assert!(message("proc-macro").contains("standard library"));
        assert!(message("test").contains("standard library"));
        assert!(message("deps").contains("Cargo"));
        assert!(message("nul").contains("Windows"));
        assert!(message("nucleon").contains("depends on"));
        assert!(message("nucleon-http").contains("depends on"));
        assert!(message("serde").contains("depends on"));
        assert_eq!(check("nucleon-demo"), Ok(()));
    }

    #[test]
    fn suggestions() {
        assert_eq!(suggest("My App").as_deref(), Some("my-app"));
        assert_eq!(suggest("1st.Service").as_deref(), Some("st-service"));
        assert_eq!(suggest("Hello").as_deref(), Some("hello"));
        assert_eq!(suggest("hello"), None);
        assert_eq!(suggest("Test"), None);
        assert_eq!(suggest("ÉÉ"), None);
    }
}
