//! The command line's exit codes, as a user's shell sees them: 2 for a wrong command
//! line, with clap's message; 0 for `--help`; 3 for a configuration that cannot be used,
//! said once; the environment chosen as documented.

use std::process::Output;

use tokio::process::Command;

async fn countries(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countries"))
        .args(args)
        .env_remove("NUCLEON_ENV")
        .output()
        .await
        .expect("the countries binary runs")
}

#[tokio::test]
async fn a_usage_error_exits_2_with_clap_s_message() {
    for args in [
        &["--no-such-flag"][..],
        &["start", "--port", "not-a-port"],
        &["no-such-command"],
    ] {
        let output = countries(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.starts_with("error:"), "{args:?}: {stderr}");
        assert!(stderr.contains("--help"), "{args:?}: {stderr}");
    }
}

#[tokio::test]
async fn help_exits_0_and_prints_to_stdout() {
    for args in [&["--help"][..], &["-h"], &["help"], &["start", "--help"]] {
        let output = countries(args).await;
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert_eq!(
            output.status.code(),
            Some(0),
            "{args:?}: {stdout}{}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert!(stdout.contains("Usage:"), "{args:?}: {stdout}");
    }
}

/// `countries check` run in `dir` with `NUCLEON_CONFIGURATION=production`.
async fn check_in(dir: &std::path::Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_countries"))
        .arg("check")
        .current_dir(dir)
        .env_remove("NUCLEON_ENV")
        .env("NUCLEON_CONFIGURATION", "production")
        .output()
        .await
        .expect("the countries binary runs")
}

#[tokio::test]
async fn nucleon_configuration_chooses_the_environment_of_the_embedded_defaults() {
    // No app.toml here: the binary's embedded one is read.
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-embedded");
    tokio::fs::create_dir_all(&dir).await.unwrap();
    let output = check_in(&dir).await;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("environment `production`"), "{stdout}");
    assert!(stdout.contains("0.0.0.0:8888"), "{stdout}");
}

#[tokio::test]
async fn a_section_outside_any_environment_is_refused() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-flat-section");
    tokio::fs::create_dir_all(&dir).await.unwrap();
    tokio::fs::write(dir.join("app.toml"), "[http]\nport = 9000\n")
        .await
        .unwrap();
    let output = check_in(&dir).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("[default.http]"), "{stderr}");
}

/// Configuration mistakes as a user makes them: each said once, naming where it is (the
/// file, or the variable as written) and, for a typo, the key meant.
#[tokio::test]
async fn configuration_mistakes_are_said_once_naming_the_variable_or_the_key_meant() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-mistakes");
    tokio::fs::create_dir_all(&dir).await.unwrap();
    let said = |output: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    };
    tokio::fs::write(dir.join("app.toml"), "[default]\n")
        .await
        .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_countries"))
        .arg("check")
        .current_dir(&dir)
        .env_remove("NUCLEON_ENV")
        .env("NUCLEON_HTTP__PORT", "eighty")
        .output()
        .await
        .unwrap();
    let text = said(&output);
    assert_eq!(output.status.code(), Some(3), "{text}");
    assert!(
        text.contains("environment variable `NUCLEON_HTTP__PORT`"),
        "{text}"
    );
    assert_eq!(
        text.matches("NUCLEON_HTTP__PORT").count(),
        1,
        "said once: {text}"
    );
    for (toml, expected) in [
        (
            "[default.http]\nprot = 1\n",
            "unknown key `prot`: did you mean `port`?",
        ),
        ("[default.htp]\nport = 1\n", "did you mean `http`?"),
    ] {
        tokio::fs::write(dir.join("app.toml"), toml).await.unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_countries"))
            .arg("check")
            .current_dir(&dir)
            .env_remove("NUCLEON_ENV")
            .output()
            .await
            .unwrap();
        let text = said(&output);
        assert_eq!(output.status.code(), Some(3), "{toml}: {text}");
        assert!(text.contains(expected), "{toml}: {text}");
        assert_eq!(text.matches(expected).count(), 1, "said once: {text}");
    }
}
