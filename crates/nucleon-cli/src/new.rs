//! `nucleon new`: what an app is made of, rendered from the templates, and written.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use crate::name::{self, InvalidName};
use crate::template::{Context, TemplateError};

/// The app's database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Database {
    /// Embedded SQLite (`data/<name>.db`, created on first start): no server to run.
    Sqlite,
    /// PostgreSQL: the local server in development and tests, a URL in production.
    Postgres,
}

/// Where the app takes the `nucleon` crate from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// crates.io, by version (`0.1`).
    Registry,
    /// A checkout of Nucleon (the directory holding `crates/nucleon`): the app depends
    /// on its `crates/nucleon` by path, and builds without anything published.
    Checkout(PathBuf),
}

/// What `nucleon new` is asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewOptions {
    /// The directory to write into: created if missing, refused if not empty.
    pub dir: PathBuf,
    /// The app's name; `None`: the directory's name.
    pub name: Option<String>,
    /// A database, or none.
    pub database: Option<Database>,
    /// Messaging over AMQP.
    pub amqp: bool,
    /// Where `nucleon` comes from.
    pub source: Source,
}

/// The app to write: its name, its features, where `nucleon` comes from. The same
/// [`AppSpec`] always renders the same files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    /// The package's (and binary's) name, valid ([`name::check`]).
    pub name: String,
    /// A database, or none.
    pub database: Option<Database>,
    /// Messaging over AMQP.
    pub amqp: bool,
    /// `nucleon`'s path (`<checkout>/crates/nucleon`, UTF-8), or `None` for crates.io.
    pub nucleon_path: Option<String>,
}

/// One file of the app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppFile {
    /// Its path in the app's directory (`/`-separated).
    pub path: &'static str,
    /// Its text.
    pub text: String,
    /// What it is, in a few words (`nucleon new`'s listing).
    pub about: String,
}

/// An app written by [`create`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Created {
    /// The directory, as given.
    pub dir: PathBuf,
    /// The app.
    pub spec: AppSpec,
    /// Its files, in the order written.
    pub files: Vec<AppFile>,
}

/// Why `nucleon new` wrote nothing (or stopped).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NewError {
    /// `--name` is not a valid crate name.
    #[error("{0}")]
    Name(InvalidName),
    /// The directory's name, used as the app's, is not a valid crate name.
    #[error("the directory's name cannot name the app: {source}")]
    NameFromDir {
        /// Why.
        source: InvalidName,
        /// A valid name close to it.
        suggestion: Option<String>,
    },
    /// `--path` is not a checkout of Nucleon.
    #[error("`{}` is not a checkout of Nucleon: {reason}", path.display())]
    NotACheckout {
        /// The path given.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
    /// The directory has files in it already.
    #[error("`{}` is not empty (it holds {}): nucleon new writes into a new or empty directory", dir.display(), list(entries))]
    NotEmpty {
        /// The directory.
        dir: PathBuf,
        /// A few of its entries.
        entries: Vec<String>,
    },
    /// The path exists and is not a directory.
    #[error("`{}` exists and is not a directory", dir.display())]
    NotADirectory {
        /// The path.
        dir: PathBuf,
    },
    /// A directory or file could not be read or written.
    #[error("cannot {what} `{}`: {source}", path.display())]
    Io {
        /// What was being done (`create`, `write`, `read`).
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// The system's error.
        #[source]
        source: std::io::Error,
    },
    /// A template does not render (a bug of nucleon-cli's).
    #[error("nucleon-cli's templates are broken: {0}")]
    Template(#[from] TemplateError),
}

/// `a`, `a` and `b`, `a`, `b` and `c`, `a`, `b`, `c`…
fn list(entries: &[String]) -> String {
    let quoted: Vec<String> = entries.iter().map(|e| format!("`{e}`")).collect();
    match quoted.as_slice() {
        [] => "something".to_owned(),
        [one] => one.clone(),
        more if more.len() > MAX_LISTED => format!("{}…", more[..MAX_LISTED].join(", ")),
        [first @ .., last] => format!("{} and {last}", first.join(", ")),
    }
}

/// How many entries of a directory that is not empty are named.
const MAX_LISTED: usize = 4;

impl NewError {
    /// The exit code, as an app's own: 2 for what was asked wrong (a name, a `--path`,
    /// a directory that is not empty or not a directory), 1 when writing fails (or a
    /// template does not render).
    pub fn exit_code(&self) -> u8 {
        match self {
            NewError::Name(_)
            | NewError::NameFromDir { .. }
            | NewError::NotACheckout { .. }
            | NewError::NotEmpty { .. }
            | NewError::NotADirectory { .. } => 2,
            NewError::Io { .. } | NewError::Template(_) => 1,
        }
    }

    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        match self {
            NewError::NameFromDir {
                suggestion: Some(name),
                ..
            } => Some(format!("name the app with --name: `--name {name}`")),
            NewError::NameFromDir { .. } => Some("name the app with --name <NAME>".to_owned()),
            NewError::Name(error) => {
                let given = match error {
                    InvalidName::Character { name, .. }
                    | InvalidName::Start(name)
                    | InvalidName::TooLong(name) => name.as_str(),
                    _ => "",
                };
                name::suggest(given).map(|name| format!("`--name {name}` would do"))
            }
            NewError::NotEmpty { .. } => {
                Some("choose a new directory, or empty this one".to_owned())
            }
            NewError::NotACheckout { .. } => Some(
                "--path takes the root of a Nucleon checkout (the directory holding crates/nucleon)"
                    .to_owned(),
            ),
            _ => None,
        }
    }
}

/// The `nucleon` version an app asks for: this one's `major.minor` (`0.1`).
fn nucleon_version() -> String {
    let version = env!("CARGO_PKG_VERSION");
    let mut parts = version.split('.');
    match (parts.next(), parts.next()) {
        (Some(major), Some(minor)) => format!("{major}.{minor}"),
        _ => version.to_owned(),
    }
}

/// `text` as a TOML basic string, quotes included.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The templates (`templates/*.tmpl`), built into the binary.
mod templates {
    pub(super) const CARGO_TOML: &str = include_str!("../templates/Cargo.toml.tmpl");
    pub(super) const APP_TOML: &str = include_str!("../templates/app.toml.tmpl");
    pub(super) const LIB_RS: &str = include_str!("../templates/lib.rs.tmpl");
    pub(super) const MAIN_RS: &str = include_str!("../templates/main.rs.tmpl");
    pub(super) const DATABASE_SQL: &str = include_str!("../templates/database.sql.tmpl");
    pub(super) const TESTS_RS: &str = include_str!("../templates/routes.rs.tmpl");
    pub(super) const CLIPPY_TOML: &str = include_str!("../templates/clippy.toml.tmpl");
    pub(super) const DENY_TOML: &str = include_str!("../templates/deny.toml.tmpl");
    pub(super) const README_MD: &str = include_str!("../templates/README.md.tmpl");
    pub(super) const GITIGNORE: &str = include_str!("../templates/gitignore.tmpl");
}

impl AppSpec {
    /// The library's name: the package's, `-` as `_`.
    pub fn crate_name(&self) -> String {
        self.name.replace('-', "_")
    }

    /// The umbrella's features the app turns on (`dns` comes with its defaults).
    pub fn features(&self) -> Vec<&'static str> {
        let mut features = vec!["http"];
        if self.database.is_some() {
            features.push("db");
        }
        if self.amqp {
            features.push("amqp");
        }
        features
    }

    /// The `nucleon = …` dependency's value in `Cargo.toml`.
    pub fn dependency(&self) -> String {
        let features = self
            .features()
            .iter()
            .map(|f| format!("\"{f}\""))
            .collect::<Vec<_>>()
            .join(", ");
        match &self.nucleon_path {
            Some(path) => format!(
                "{{ path = {}, features = [{features}] }}",
                toml_string(path)
            ),
            None => format!(
                "{{ version = \"{}\", features = [{features}] }}",
                nucleon_version()
            ),
        }
    }

    /// The routes the app serves, as `nucleon new` lists them.
    pub fn routes(&self) -> Vec<&'static str> {
        let mut routes = vec!["GET /", "GET /hello/{name}"];
        if self.database.is_some() {
            routes.extend(["GET /greetings", "GET /greetings/{language}"]);
        }
        if self.amqp {
            routes.push("GET /shout/{text}");
        }
        routes
    }

    /// Where `nucleon` comes from, for people: `nucleon 0.1`, `nucleon at /src/…`.
    pub fn source(&self) -> String {
        match &self.nucleon_path {
            Some(path) => format!("nucleon at {path}"),
            None => format!("nucleon {}", nucleon_version()),
        }
    }

    /// Every feature of the umbrella the app has, `dns` (a default) included.
    fn all_features(&self) -> String {
        let mut features = vec!["http", "dns"];
        features.extend(self.features().into_iter().skip(1));
        features.join(", ")
    }

    fn context(&self) -> Context {
        let mut context = Context::default();
        let mut description = String::new();
        match self.database {
            Some(Database::Sqlite) => description.push_str(", embedded SQLite"),
            Some(Database::Postgres) => description.push_str(", PostgreSQL"),
            None => {}
        }
        if self.amqp {
            description.push_str(", messaging over RabbitMQ");
        }
        context
            .value("name", self.name.as_str())
            .value("crate", self.crate_name())
            .value("rust_version", env!("CARGO_PKG_RUST_VERSION"))
            .value("nucleon_dependency", self.dependency())
            .value("nucleon_source", self.source())
            .value("features", self.all_features())
            .value("description", description)
            .flag("db", self.database.is_some())
            .flag("sqlite", self.database == Some(Database::Sqlite))
            .flag("postgres", self.database == Some(Database::Postgres))
            .flag("amqp", self.amqp);
        context
    }

    /// The app's files, rendered.
    ///
    /// # Errors
    /// [`TemplateError`]: a bug in the templates.
    pub fn render(&self) -> Result<Vec<AppFile>, TemplateError> {
        use templates::*;
        let context = self.context();
        let mut commands = vec!["start", "check", "routes"];
        if self.database.is_some() {
            commands.push("db …");
        }
        let mut files: Vec<(&'static str, &'static str, String)> = vec![
            (
                "Cargo.toml",
                CARGO_TOML,
                format!(
                    "the package, on {} (features: {})",
                    self.source(),
                    self.all_features()
                ),
            ),
            (
                "app.toml",
                APP_TOML,
                "settings per environment: [default], [test], [production]".to_owned(),
            ),
            (
                "src/lib.rs",
                LIB_RS,
                format!("the app: {}", self.routes().join(", ")),
            ),
            (
                "src/main.rs",
                MAIN_RS,
                format!("its command line: {}", commands.join(", ")),
            ),
        ];
        if self.database.is_some() {
            files.push((
                "database.sql",
                DATABASE_SQL,
                "the schema: tables missing are created at start".to_owned(),
            ));
        }
        files.extend([
            (
                "tests/routes.rs",
                TESTS_RS,
                "its tests, in-process (nucleon::test::TestClient)".to_owned(),
            ),
            (
                "clippy.toml",
                CLIPPY_TOML,
                "guard rail: `cargo clippy` refuses blocking std calls".to_owned(),
            ),
            (
                "deny.toml",
                DENY_TOML,
                "guard rail: `cargo deny check` refuses blocking clients".to_owned(),
            ),
            (
                "README.md",
                README_MD,
                "how to run and test it; what the guard rails catch".to_owned(),
            ),
            (".gitignore", GITIGNORE, "target/ and data/".to_owned()),
        ]);
        files
            .into_iter()
            .map(|(path, template, about)| {
                Ok(AppFile {
                    path,
                    text: context.render(path, template)?,
                    about,
                })
            })
            .collect()
    }
}

/// Writes a new app as `options` say.
///
/// # Errors
/// [`NewError`]: an invalid name, a `--path` that is not a checkout, a directory that is
/// not empty, a file that cannot be written.
pub fn create(options: &NewOptions) -> Result<Created, NewError> {
    let name = match &options.name {
        Some(name) => {
            name::check(name).map_err(NewError::Name)?;
            name.clone()
        }
        None => {
            let name = disk::dir_name(&options.dir)?;
            if let Err(source) = name::check(&name) {
                return Err(NewError::NameFromDir {
                    suggestion: name::suggest(&name),
                    source,
                });
            }
            name
        }
    };
    let nucleon_path = match &options.source {
        Source::Registry => None,
        Source::Checkout(checkout) => Some(disk::umbrella_in(checkout)?),
    };
    let spec = AppSpec {
        name,
        database: options.database,
        amqp: options.amqp,
        nucleon_path,
    };
    let files = spec.render()?;
    disk::check_empty(&options.dir)?;
    disk::write(&options.dir, &files)?;
    Ok(Created {
        dir: options.dir.clone(),
        spec,
        files,
    })
}

/// The file system's side: a command-line tool, run once from a shell, never on a
/// worker loop, so it uses `std::fs` (which `clippy.toml` keeps out of the framework).
#[allow(
    clippy::disallowed_methods,
    reason = "nucleon new is a synchronous command-line tool: there is no loop to block"
)]
mod disk {
    use super::*;

    fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NewError {
        let path = path.to_path_buf();
        move |source| NewError::Io { what, path, source }
    }

    /// The directory's own name (`.` is the current directory's).
    pub(super) fn dir_name(dir: &Path) -> Result<String, NewError> {
        let named = match dir.file_name() {
            Some(name) => name.to_owned(),
            None => {
                let full = std::fs::canonicalize(dir).map_err(io("find", dir))?;
                full.file_name().map(ToOwned::to_owned).unwrap_or_default()
            }
        };
        Ok(named.to_string_lossy().into_owned())
    }

    /// `<checkout>/crates/nucleon`, absolute, as UTF-8.
    pub(super) fn umbrella_in(checkout: &Path) -> Result<String, NewError> {
        let refuse = |reason: String| NewError::NotACheckout {
            path: checkout.to_path_buf(),
            reason,
        };
        let root = std::fs::canonicalize(checkout).map_err(|e| refuse(e.to_string()))?;
        let umbrella = root.join("crates").join("nucleon");
        if !umbrella.join("Cargo.toml").is_file() {
            return Err(refuse("it has no crates/nucleon/Cargo.toml".to_owned()));
        }
        umbrella
            .to_str()
            .map(ToOwned::to_owned)
            .ok_or_else(|| refuse("its path is not UTF-8, which Cargo.toml cannot hold".into()))
    }

    /// Refuses a directory with anything in it, or a path that is not a directory.
    pub(super) fn check_empty(dir: &Path) -> Result<(), NewError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(_) if dir.exists() && !dir.is_dir() => {
                return Err(NewError::NotADirectory {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) => return Err(io("read", dir)(e)),
        };
        let mut names: Vec<String> = entries
            .take(MAX_LISTED + 1)
            .map(|entry| {
                entry
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(io("read", dir))
            })
            .collect::<Result<_, _>>()?;
        if names.is_empty() {
            return Ok(());
        }
        names.sort();
        Err(NewError::NotEmpty {
            dir: dir.to_path_buf(),
            entries: names,
        })
    }

    /// Writes `files` into `dir` (created if missing), never over a file already there.
    pub(super) fn write(dir: &Path, files: &[AppFile]) -> Result<(), NewError> {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
        for file in files {
            let path = dir.join(file.path);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent).map_err(io("create", parent))?;
            }
            let mut out = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(io("create", &path))?;
            out.write_all(file.text.as_bytes())
                .map_err(io("write", &path))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(database: Option<Database>, amqp: bool, path: Option<&str>) -> AppSpec {
        AppSpec {
            name: "my-app".into(),
            database,
            amqp,
            nucleon_path: path.map(Into::into),
        }
    }

    fn variants() -> Vec<AppSpec> {
        let mut all = Vec::new();
        for database in [None, Some(Database::Sqlite), Some(Database::Postgres)] {
            for amqp in [false, true] {
                for path in [None, Some("/src/nucleon/crates/nucleon")] {
                    all.push(spec(database, amqp, path));
                }
            }
        }
        all
    }

    #[test]
    fn every_variant_renders_whole() {
        for spec in variants() {
            let files = spec.render().unwrap_or_else(|e| panic!("{spec:?}: {e}"));
            for file in &files {
                assert!(
                    !file.text.contains("{{") && !file.text.contains("}}"),
                    "{spec:?}: {} keeps a directive or placeholder:\n{}",
                    file.path,
                    file.text
                );
                assert!(!file.text.contains("\n\n\n"), "{spec:?}: {}", file.path);
                assert!(file.text.ends_with('\n'), "{spec:?}: {}", file.path);
            }
            let paths: Vec<&str> = files.iter().map(|f| f.path).collect();
            assert_eq!(
                paths.contains(&"database.sql"),
                spec.database.is_some(),
                "{spec:?}"
            );
            let text = |path: &str| &files.iter().find(|f| f.path == path).unwrap().text;
            let lib = text("src/lib.rs");
            assert_eq!(lib.contains("Dep<Db>"), spec.database.is_some());
            assert_eq!(lib.contains("Dep<Broker>"), spec.amqp);
            assert!(lib.contains(".local_state("), "{lib}");
            assert!(text("src/main.rs").contains("my_app::app()"));
            let app = text("app.toml");
            for environment in ["[default", "[test", "[production"] {
                assert!(app.contains(environment), "{environment}: {app}");
            }
        }
    }

    #[test]
    fn cargo_toml_names_the_dependency_and_its_own_workspace() {
        let registry = spec(None, false, None).render().unwrap();
        let cargo = &registry[0].text;
        assert!(cargo.contains("name = \"my-app\""), "{cargo}");
        assert!(
            cargo.contains("nucleon = { version = \"0.1\", features = [\"http\"] }"),
            "{cargo}"
        );
        assert!(cargo.contains("\n[workspace]\n"), "{cargo}");
        let all = spec(
            Some(Database::Postgres),
            true,
            Some("/a \"b\"/crates/nucleon"),
        );
        assert_eq!(
            all.dependency(),
            r#"{ path = "/a \"b\"/crates/nucleon", features = ["http", "db", "amqp"] }"#
        );
    }

    /// The text of table `[name]` of `toml` (to the next table).
    fn table<'a>(toml: &'a str, name: &str) -> &'a str {
        let header = format!("\n[{name}]\n");
        let start = toml
            .find(&header)
            .unwrap_or_else(|| panic!("no {header}: {toml}"));
        let rest = &toml[start + header.len()..];
        &rest[..rest.find("\n[").unwrap_or(rest.len())]
    }

    #[test]
    fn database_urls_per_environment() {
        let files = spec(Some(Database::Postgres), true, None).render().unwrap();
        let app = &files[1].text;
        for environment in ["default", "test", "production"] {
            let db = table(app, &format!("{environment}.db"));
            assert!(db.contains("\nurl = \"postgres://"), "{environment}: {db}");
            let amqp = table(app, &format!("{environment}.amqp"));
            assert!(amqp.contains("\nurl = \"amqp"), "{environment}: {amqp}");
        }
        let files = spec(Some(Database::Sqlite), false, None).render().unwrap();
        let app = &files[1].text;
        assert!(table(app, "test.db").contains("\nurl = \"sqlite://data/test.db\""));
        assert!(!app.contains("\n[default.db]"), "{app}");
        assert!(!app.contains("amqp]"), "{app}");
    }

    #[test]
    fn toml_strings_are_escaped() {
        assert_eq!(toml_string(r"C:\x"), r#""C:\\x""#);
        assert_eq!(toml_string("a\"b\u{1}"), "\"a\\\"b\\u0001\"");
    }

    #[test]
    fn entries_listed() {
        let names = |n: usize| (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>();
        assert_eq!(list(&names(1)), "`f0`");
        assert_eq!(list(&names(3)), "`f0`, `f1` and `f2`");
        assert_eq!(list(&names(4)), "`f0`, `f1`, `f2` and `f3`");
        assert_eq!(list(&names(5)), "`f0`, `f1`, `f2`, `f3`…");
    }
}
