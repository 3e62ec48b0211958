//! The command line's exit codes, as a user's shell sees them: 64 (`EX_USAGE`) for a
//! wrong command line, with clap's message; 0 for `--help`; 78 (`EX_CONFIG`) for a
//! configuration that cannot be used; the environment chosen as documented.

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
async fn a_usage_error_exits_64_with_clap_s_message() {
    for args in [
        &["--no-such-flag"][..],
        &["start", "--port", "not-a-port"],
        &["no-such-command"],
    ] {
        let output = countries(args).await;
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(64), "{args:?}: {stderr}");
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
    assert_eq!(output.status.code(), Some(78), "{stderr}");
    assert!(stderr.contains("[default.http]"), "{stderr}");
}
