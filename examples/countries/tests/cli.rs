//! The command line's exit codes, as a user's shell sees them: 64 (`EX_USAGE`) for a
//! wrong command line, with clap's message; 0 for `--help`.

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
