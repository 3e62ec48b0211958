//! `nucleon new` as a shell sees it: what it writes, what it refuses (with a message
//! and an exit code), and where the name comes from. Nothing is built here (see
//! `new_app.rs`).

use std::path::Path;
use std::process::{Command, Output};

/// Runs `nucleon args…` in `cwd`.
#[allow(
    clippy::disallowed_methods,
    reason = "a test waiting for the command it runs, outside any loop"
)]
fn nucleon(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nucleon"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("nucleon runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[allow(
    clippy::disallowed_methods,
    reason = "a test's check, outside any loop"
)]
fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[allow(
    clippy::disallowed_methods,
    reason = "a test's set-up, outside any loop"
)]
fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// The files of `dir`, sorted, relative, with `/`.
#[allow(
    clippy::disallowed_methods,
    reason = "a test's check, outside any loop"
)]
fn files(dir: &Path) -> Vec<String> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let relative = path.strip_prefix(root).unwrap();
                out.push(relative.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

#[test]
fn writes_an_app_named_after_its_directory() {
    let temp = tempfile::tempdir().unwrap();
    let output = nucleon(temp.path(), &["new", "hello"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).is_empty(), "{}", stderr(&output));
    let app = temp.path().join("hello");
    assert_eq!(
        files(&app),
        [
            ".gitignore",
            "Cargo.toml",
            "README.md",
            "app.toml",
            "clippy.toml",
            "deny.toml",
            "src/lib.rs",
            "src/main.rs",
            "tests/routes.rs",
        ]
    );
    let manifest = read(&app.join("Cargo.toml"));
    assert!(manifest.contains("name = \"hello\"\n"), "{manifest}");
    assert!(
        manifest.contains("nucleon = { version = \"0.1\", features = [\"http\"] }"),
        "{manifest}"
    );
    assert!(read(&app.join("src/main.rs")).contains("nucleon::run(hello::app())"));
    let report = stdout(&output);
    assert!(
        report.starts_with("Created the Nucleon app `hello` in `hello`:\n"),
        "{report}"
    );
    for file in files(&app) {
        assert!(report.contains(&format!("\n  {file} ")), "{file}: {report}");
    }
    assert!(report.contains("\n  cd hello\n"), "{report}");
}

#[test]
fn the_flags_choose_the_features() {
    let temp = tempfile::tempdir().unwrap();
    let output = nucleon(
        temp.path(),
        &[
            "new", "svc", "--name", "orders", "--db", "postgres", "--amqp",
        ],
    );
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let app = temp.path().join("svc");
    let manifest = read(&app.join("Cargo.toml"));
    assert!(manifest.contains("name = \"orders\"\n"), "{manifest}");
    assert!(
        manifest.contains("features = [\"http\", \"db\", \"amqp\"]"),
        "{manifest}"
    );
    assert!(files(&app).contains(&"database.sql".to_owned()));
    let lib = read(&app.join("src/lib.rs"));
    assert!(lib.contains(".rpc(SHOUT, shout)"), "{lib}");
    assert!(lib.contains("Dep(broker): Dep<Broker>"), "{lib}");
    assert!(lib.contains("Dep(db): Dep<Db>"), "{lib}");
    let report = stdout(&output);
    assert!(report.contains("It needs PostgreSQL"), "{report}");
    assert!(report.contains("RabbitMQ"), "{report}");
}

#[test]
fn the_current_directory_takes_its_own_name() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("inventory");
    #[allow(
        clippy::disallowed_methods,
        reason = "a test's set-up, outside any loop"
    )]
    std::fs::create_dir(&dir).unwrap();
    let output = nucleon(&dir, &["new", "."]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(read(&dir.join("Cargo.toml")).contains("name = \"inventory\"\n"));
    assert!(stdout(&output).contains("in `.`:"), "{}", stdout(&output));
}

#[test]
fn a_directory_that_is_not_empty_is_refused_with_2() {
    let temp = tempfile::tempdir().unwrap();
    let dir = temp.path().join("busy");
    write(&dir.join("notes.txt"), "mine");
    let output = nucleon(temp.path(), &["new", "busy"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "error: `busy` is not empty (it holds `notes.txt`): nucleon new writes into a new or empty directory\n\
         hint: choose a new directory, or empty this one\n"
    );
    assert_eq!(files(&dir), ["notes.txt"], "nothing written");
    assert!(stdout(&output).is_empty());

    write(&temp.path().join("plain"), "a file");
    let output = nucleon(temp.path(), &["new", "plain"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("`plain` exists and is not a directory"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_invalid_name_is_refused_with_2_and_a_suggestion() {
    let temp = tempfile::tempdir().unwrap();
    let output = nucleon(temp.path(), &["new", "My App"]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert_eq!(
        stderr(&output),
        "error: the directory's name cannot name the app: `My App` is not a valid crate name: `M` is not allowed (lowercase letters, digits, `-` and `_` only)\n\
         hint: name the app with --name: `--name my-app`\n"
    );
    assert!(
        !temp.path().join("My App").exists(),
        "nothing created on a refusal"
    );
    let output = nucleon(temp.path(), &["new", "My App", "--name", "my-app"]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stdout(&output).contains("\n  cd 'My App'\n"));

    for (name, why) in [
        ("2fast", "must start with a lowercase letter"),
        ("Orders", "`O` is not allowed"),
        ("type", "Rust keyword"),
        ("std", "standard library"),
        ("nucleon", "the app depends on a crate of that name"),
        ("", "an app needs a name"),
    ] {
        let output = nucleon(temp.path(), &["new", "elsewhere", "--name", name]);
        assert_eq!(output.status.code(), Some(2), "{name}: {}", stderr(&output));
        assert!(stderr(&output).contains(why), "{name}: {}", stderr(&output));
    }
    assert!(!temp.path().join("elsewhere").exists());
}

#[test]
fn a_path_that_is_not_a_checkout_is_refused_with_2() {
    let temp = tempfile::tempdir().unwrap();
    let output = nucleon(temp.path(), &["new", "app", "--path", "."]);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(
        stderr(&output).starts_with(
            "error: `.` is not a checkout of Nucleon: it has no crates/nucleon/Cargo.toml"
        ),
        "{}",
        stderr(&output)
    );
    assert!(!temp.path().join("app").exists());
}

#[test]
fn usage_errors_exit_2_and_help_0() {
    let temp = tempfile::tempdir().unwrap();
    let output = nucleon(temp.path(), &["new", "x", "--db", "oracle"]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).starts_with("error:"), "{}", stderr(&output));
    let output = nucleon(temp.path(), &["new", "--help"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).contains("Usage: nucleon new"),
        "{}",
        stdout(&output)
    );
    let output = nucleon(temp.path(), &["--version"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stdout(&output).starts_with("nucleon "),
        "{}",
        stdout(&output)
    );
}
