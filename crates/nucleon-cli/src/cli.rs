//! The command line: parsing, and what it prints.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::new::{Created, Database, NewOptions, Source, create};

/// What `--help` ends with.
const EXIT_CODES: &str = "\
Exit codes (as an app's own): 0 written; 2 a wrong command line, an invalid name, a
--path that is not a Nucleon checkout, or a directory that is not empty; 1 a directory
that cannot be written.";

#[derive(Debug, Parser)]
#[command(name = "nucleon", version, about = "Nucleon's command line", after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Write a new app into DIR: it builds and passes its own tests at once.
    #[command(after_help = EXIT_CODES)]
    New(NewArgs),
}

#[derive(Debug, Args)]
struct NewArgs {
    /// The directory to write the app into: created if missing, refused if not empty.
    dir: PathBuf,
    /// The app's name (its package and binary); default: the directory's name.
    /// Lowercase letters, digits, `-` and `_`, starting with a letter.
    #[arg(long)]
    name: Option<String>,
    /// A database: embedded SQLite (the default for a bare `--db`) or PostgreSQL.
    #[arg(
        long,
        value_enum,
        num_args = 0..=1,
        default_missing_value = "sqlite",
        value_name = "KIND"
    )]
    db: Option<Database>,
    /// Messaging over AMQP (RabbitMQ): a procedure served by the app, and a route that
    /// calls it through the broker.
    #[arg(long)]
    amqp: bool,
    /// Depend on the `nucleon` crate of this Nucleon checkout (CHECKOUT/crates/nucleon),
    /// by path, instead of version 0.1 from crates.io.
    #[arg(long, value_name = "CHECKOUT")]
    path: Option<PathBuf>,
}

/// Runs the command line `args` (the first item is the program's name), printing to
/// `out` and `err`; returns the exit code.
pub fn main_with<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        // `--help`, `--version`: not errors, printed on stdout.
        Err(error) if !error.use_stderr() => {
            write_rendered(out, &error);
            return 0;
        }
        Err(error) => {
            write_rendered(err, &error);
            return 2;
        }
    };
    let Command::New(args) = cli.command;
    let options = NewOptions {
        dir: args.dir,
        name: args.name,
        database: args.db,
        amqp: args.amqp,
        source: args.path.map_or(Source::Registry, Source::Checkout),
    };
    match create(&options) {
        Ok(created) => match report(&created, out) {
            Ok(()) => 0,
            // The app is written; only its report is lost (`nucleon new x | head -1`).
            Err(_) => 0,
        },
        Err(error) => {
            let _ = writeln!(err, "error: {error}");
            if let Some(hint) = error.hint() {
                let _ = writeln!(err, "hint: {hint}");
            }
            error.exit_code()
        }
    }
}

/// clap's message, ending with a newline (its help does not).
fn write_rendered(to: &mut dyn Write, error: &clap::Error) {
    let text = error.render().to_string();
    let newline = if text.ends_with('\n') { "" } else { "\n" };
    let _ = write!(to, "{text}{newline}");
}

/// `nucleon new`'s report: what was written, and what to do next.
fn report(created: &Created, out: &mut dyn Write) -> std::io::Result<()> {
    let spec = &created.spec;
    let dir = created.dir.display().to_string();
    writeln!(out, "Created the Nucleon app `{}` in `{dir}`:", spec.name)?;
    writeln!(out)?;
    let width = created
        .files
        .iter()
        .map(|f| f.path.len())
        .max()
        .unwrap_or(0);
    for file in &created.files {
        writeln!(out, "  {:width$}  {}", file.path, file.about)?;
    }
    writeln!(out)?;
    if spec.database == Some(Database::Postgres) || spec.amqp {
        let mut needs = Vec::new();
        if spec.database == Some(Database::Postgres) {
            needs.push("PostgreSQL at 127.0.0.1:5432 (database `test`)");
        }
        if spec.amqp {
            needs.push("RabbitMQ at 127.0.0.1:5672");
        }
        writeln!(out, "It needs {} to run", needs.join(" and "))?;
        writeln!(out, "and to test: app.toml says where.")?;
        writeln!(out)?;
    }
    writeln!(out, "Next:")?;
    let lines = [
        (format!("cd {}", shell_word(&dir)), ""),
        ("cargo test".to_owned(), "# its tests, in-process"),
        ("cargo run".to_owned(), "# serves http://127.0.0.1:8080"),
        (
            "curl localhost:8080/hello/world".to_owned(),
            "# {\"message\":\"hello, world\",\"served\":1}",
        ),
        (
            "curl localhost:8080/readyz".to_owned(),
            "# health, from the framework (and /livez)",
        ),
    ];
    let width = lines.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    for (command, comment) in lines {
        if comment.is_empty() {
            writeln!(out, "  {command}")?;
        } else {
            writeln!(out, "  {command:width$}  {comment}")?;
        }
    }
    out.flush()
}

/// `word` as one shell word: quoted when it has to be.
fn shell_word(word: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./+,:@%".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> (u8, String, String) {
        let (mut out, mut err) = (Vec::new(), Vec::new());
        let argv = std::iter::once("nucleon").chain(args.iter().copied());
        let code = main_with(argv, &mut out, &mut err);
        (
            code,
            String::from_utf8(out).unwrap(),
            String::from_utf8(err).unwrap(),
        )
    }

    #[test]
    fn help_and_usage_errors() {
        let (code, out, _) = run(&["--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("new"), "{out}");
        let (code, out, _) = run(&["new", "--help"]);
        assert_eq!(code, 0);
        assert!(out.contains("--db [<KIND>]"), "{out}");
        assert!(out.contains("Exit codes"), "{out}");
        let (code, _, err) = run(&["new"]);
        assert_eq!(code, 2);
        assert!(err.starts_with("error:"), "{err}");
        let (code, _, err) = run(&["new", "x", "--db", "mysql"]);
        assert_eq!(code, 2);
        assert!(err.contains("sqlite, postgres"), "{err}");
    }

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("hello"), "hello");
        assert_eq!(shell_word("/tmp/a b"), "'/tmp/a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
