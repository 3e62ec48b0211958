//! The command line every app binary gets: `start` (default), `routes`, `check`.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
#[cfg(feature = "http")]
use nucleon_http::{HttpConfig, ServerError};
use nucleon_runtime::config::choose_environment;
use nucleon_runtime::{Config, ConfigError, ConfigOptions, RuntimeError};

use crate::App;
use crate::ops::{OpsError, Pidfile, Privileges};
use crate::start::StartOptions;
use nucleon_runtime::lifecycle::hook;

#[derive(Debug, Parser)]
#[command(disable_version_flag = true, args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    start: StartArgs,
    #[command(flatten)]
    config: ConfigArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve (the default command).
    Start {
        #[command(flatten)]
        start: StartArgs,
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// Print the route table and exit.
    #[cfg(feature = "http")]
    Routes,
    /// Load and validate the configuration, then exit (0 when valid).
    Check {
        #[command(flatten)]
        config: ConfigArgs,
    },
    /// The database: sync, reset, migrate, status.
    #[cfg(feature = "db")]
    #[command(subcommand)]
    Db(crate::db_cli::DbCommand),
}

#[derive(Debug, Args, Default, Clone)]
struct StartArgs {
    /// The address to listen on (overrides `http.host`).
    #[arg(long)]
    host: Option<String>,
    /// The port to listen on (overrides `http.port`; 0 picks a free one).
    #[arg(long)]
    port: Option<u16>,
    /// The number of workers (default: `runtime.workers`, else one per core).
    #[arg(long, short = 'j', value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Start beside a running instance on the same port, to replace it without
    /// downtime: bind the port although it is in use (`http.share_port`), then send
    /// the old one SIGTERM (see the README's "Running in production").
    #[arg(long)]
    replace: bool,
    /// Write the process id to FILE once the listeners are bound; removed at exit. A
    /// file naming a process still running is refused; one left by a process that is
    /// gone is replaced.
    #[arg(long, value_name = "FILE")]
    pidfile: Option<PathBuf>,
    /// Run as this user once the listeners are bound (port 80 without running as
    /// root); the start fails rather than go on as root if that cannot be done.
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Run as this group (default with `--user`: the user's own).
    #[arg(long, value_name = "GROUP")]
    group: Option<String>,
    /// The log's format: `text` (default) or `json`, one object per line (also
    /// `NUCLEON_LOG_FORMAT`).
    #[arg(long, value_enum, value_name = "FORMAT")]
    log_format: Option<LogFormat>,
}

/// The log's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One line of text per event (the access log's lines formatted off the `fmt`
    /// layer, cheaply).
    #[default]
    Text,
    /// One JSON object per event, its fields and its span's as keys (the access log's
    /// too), for a log collector.
    Json,
}

impl LogFormat {
    /// The format asked for: `--log-format` on the command line `args`, else
    /// `NUCLEON_LOG_FORMAT`, else text.
    fn chosen(args: &[OsString], variable: Option<String>) -> Self {
        let mut given = None;
        for (i, arg) in args.iter().enumerate() {
            let arg = arg.to_string_lossy();
            if let Some(value) = arg.strip_prefix("--log-format=") {
                given = Some(value.to_owned());
            } else if arg == "--log-format" {
                given = args.get(i + 1).map(|v| v.to_string_lossy().into_owned());
            }
        }
        match given.or(variable).as_deref().map(str::trim) {
            Some(v) if v.eq_ignore_ascii_case("json") => LogFormat::Json,
            _ => LogFormat::Text,
        }
    }
}

#[derive(Debug, Args, Default, Clone)]
pub(crate) struct ConfigArgs {
    /// The environment: a table of app.toml (default: `NUCLEON_ENV`, else
    /// `NUCLEON_CONFIGURATION`, else `default`).
    #[arg(long = "env")]
    pub(crate) environment: Option<String>,
    /// The configuration file (default: ./app.toml, else the app's embedded defaults).
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// Why an app could not run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AppError {
    /// The command line is wrong, or asked for `--help` (clap's message says which).
    #[error(transparent)]
    Usage(#[from] clap::Error),
    /// The configuration is invalid (names file, environment and key).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The HTTP server cannot be set up.
    #[cfg(feature = "http")]
    #[error(transparent)]
    Http(#[from] ServerError),
    /// The database settings are unusable.
    #[cfg(feature = "db")]
    #[error(transparent)]
    Db(#[from] nucleon_db::DbError),
    /// The runtime failed to start or to stop cleanly.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// Writing the output failed.
    #[error("cannot write the output: {0}")]
    Output(#[from] std::io::Error),
    /// The pidfile or the privileges (`--pidfile`, `--user`, `--group`).
    #[error(transparent)]
    Ops(#[from] OpsError),
}

impl AppError {
    /// The process exit code (see [`nucleon_runtime::exit_code`]): 2 for a wrong
    /// command line (0 when it only asked for `--help`), 3 for configuration, 4 for what
    /// failed at the start, 1 for a forced stop.
    pub fn exit_code(&self) -> u8 {
        use nucleon_runtime::exit_code;
        match self {
            // Help is not an error: clap prints it to stdout.
            AppError::Usage(error) if !error.use_stderr() => exit_code::CLEAN,
            AppError::Usage(_) => exit_code::USAGE,
            AppError::Config(_) => exit_code::CONFIG,
            #[cfg(feature = "db")]
            AppError::Db(nucleon_db::DbError::Config(_)) => exit_code::CONFIG,
            #[cfg(feature = "http")]
            AppError::Http(ServerError::InvalidHost { .. }) => exit_code::CONFIG,
            #[cfg(feature = "http")]
            AppError::Http(_) => exit_code::START,
            AppError::Runtime(error) => error.exit_code(),
            AppError::Ops(OpsError::Unknown { .. }) => exit_code::USAGE,
            AppError::Ops(_) => exit_code::START,
            _ => exit_code::FORCED,
        }
    }
}

/// Runs the app with the process's command line, logging to stdout through a
/// non-blocking writer (filter: `NUCLEON_LOG`, else `RUST_LOG`, else `info`; an empty
/// variable counts as unset).
///
/// The writer never makes a worker wait: each thread's lines wait in a buffer of its
/// own, written out every 10 ms by the log's thread; when stdout does not keep up and a
/// thread has 256 KiB of lines waiting, it drops lines, and says how many on stderr
/// (`WARN nucleon::log: N log line(s) dropped`) within 10 seconds and when the app
/// exits.
///
/// ```text
/// app [start] [--host H] [--port P] [-j N] [--env E] [--config FILE]
///             [--pidfile FILE] [--user U] [--group G] [--log-format text|json]
/// app routes
/// app check [--env E] [--config FILE]
/// ```
pub fn run(app: App) -> ExitCode {
    // Lines wait in their thread's buffer and are written in batches by the log's
    // thread (`log_writer`); a block buffer turns a batch into few write(2)s.
    let (writer, guard) = crate::log_writer::log_writer(std::io::BufWriter::with_capacity(
        64 * 1024,
        std::io::stdout(),
    ));
    // Dropping the guard writes out the lines still buffered. A forced exit (a second
    // signal) runs no destructors, so it drops the guard through the runtime's hook.
    *lock_log_guard() = Some(guard);
    // The writer drops a line rather than make a worker wait; this says how many.
    // Its last report comes before the writer stops.
    let mut drops = Some(crate::dropped_lines::DropWatch::start(writer.dropped()));
    nucleon_runtime::before_forced_exit(|| {
        crate::ops::release_held();
        drop(lock_log_guard().take());
    });
    let filter = log_filter(
        std::env::var("NUCLEON_LOG").ok(),
        std::env::var("RUST_LOG").ok(),
    );
    let args: Vec<OsString> = std::env::args_os().collect();
    let installed = match LogFormat::chosen(&args, std::env::var("NUCLEON_LOG_FORMAT").ok()) {
        LogFormat::Text => {
            let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
            let subscriber = crate::log::subscriber(&filter, writer.clone(), ansi);
            let installed = install(subscriber, &app.name);
            // Access lines straight to the writer, past tracing's dispatch.
            #[cfg(feature = "http")]
            if matches!(installed, Ok(true)) {
                crate::log::install_access_sink(&writer);
            }
            installed
        }
        LogFormat::Json => install(crate::log::json_subscriber(&filter, writer), &app.name),
    };
    if let Err(error) = installed {
        drop(drops.take());
        drop(lock_log_guard().take());
        let _ = writeln!(std::io::stderr().lock(), "error: {error}");
        return ExitCode::from(nucleon_runtime::exit_code::CONFIG);
    }
    let code = match run_from(app, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(AppError::Usage(error)) => {
            // clap's own message (help on stdout, a usage error on stderr), and our exit
            // code (clap's own exit would run no destructors).
            let _ = error.print();
            ExitCode::from(AppError::Usage(error).exit_code())
        }
        Err(error) => {
            // Once, as a plain line on stderr (after the log's last lines): not also as
            // a log line, which would say it twice on a terminal.
            drop(drops.take());
            drop(lock_log_guard().take());
            let mut stderr = std::io::stderr().lock();
            let _ = writeln!(stderr, "error: {error}");
            ExitCode::from(error.exit_code())
        }
    };
    // The spans still waiting are exported while the log still writes.
    #[cfg(feature = "otel")]
    drop(lock_otel_guard().take());
    drop(drops.take());
    drop(lock_log_guard().take());
    code
}

/// Why the log could not be installed: the span exporter's settings (with `otel`).
#[cfg(feature = "otel")]
type InstallError = crate::otel::OtelError;
#[cfg(not(feature = "otel"))]
type InstallError = std::convert::Infallible;

/// Installs `subscriber` as the process's, with the span exporter's layer over it when
/// the standard OpenTelemetry variables ask for one (feature `otel`; its guard kept
/// until `run` ends); `Ok(false)` when a subscriber already was installed.
fn install<S>(subscriber: S, app_name: &str) -> Result<bool, InstallError>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a> + Send + Sync,
{
    #[cfg(feature = "otel")]
    if let Some(settings) = crate::otel::OtelSettings::from_env(app_name) {
        use tracing_subscriber::layer::SubscriberExt as _;
        let (layer, guard) = crate::otel::layer(&settings)?;
        let set = tracing::subscriber::set_global_default(subscriber.with(layer)).is_ok();
        if set {
            *lock_otel_guard() = Some(guard);
        }
        return Ok(set);
    }
    #[cfg(not(feature = "otel"))]
    let _ = app_name;
    Ok(tracing::subscriber::set_global_default(subscriber).is_ok())
}

/// The span exporter's guard, while `run` runs.
#[cfg(feature = "otel")]
static OTEL_GUARD: std::sync::Mutex<Option<crate::otel::OtelGuard>> = std::sync::Mutex::new(None);

#[cfg(feature = "otel")]
fn lock_otel_guard() -> std::sync::MutexGuard<'static, Option<crate::otel::OtelGuard>> {
    OTEL_GUARD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The log writer's guard, while `run` runs.
static LOG_GUARD: std::sync::Mutex<Option<crate::log_writer::WriterGuard>> =
    std::sync::Mutex::new(None);

fn lock_log_guard() -> std::sync::MutexGuard<'static, Option<crate::log_writer::WriterGuard>> {
    LOG_GUARD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Runs the app with the given command line (the first item is the program name).
///
/// # Errors
/// [`AppError`]: usage, configuration, server or runtime errors.
pub fn run_from<I, T>(app: App, args: I) -> Result<(), AppError>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = Cli::try_parse_from(args)?;
    match cli.command {
        None => start(app, cli.start, cli.config),
        Some(Command::Start { start: s, config }) => start(app, s, config),
        #[cfg(feature = "http")]
        Some(Command::Routes) => {
            let mut out = std::io::stdout().lock();
            for route in app.router.routes() {
                match writeln!(out, "{route}") {
                    // `app routes | head -1`: the reader has all it wanted.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    other => other?,
                }
            }
            Ok(())
        }
        Some(Command::Check { config }) => check(app, &options(StartArgs::default(), config)),
        #[cfg(feature = "db")]
        Some(Command::Db(command)) => crate::db_cli::run(&app, command),
    }
}

/// The command line's `check`: the configuration loads, every adapter's and the HTTP
/// server's settings are valid, and every handle a route asks for is given by an
/// adapter (the per-worker setup is run once to learn it; nothing starts or binds).
fn check(app: App, options: &StartOptions) -> Result<(), AppError> {
    let config = load_config_for(&app, options)?;
    let file = config.file().map_or_else(
        || "embedded defaults".to_owned(),
        |f| format!("`{}`", f.display()),
    );
    let environment = config.environment().to_owned();
    let settings = config.runtime_settings()?;
    #[cfg(feature = "http")]
    let (listens, front) = if app.serves_http() {
        let http = http_config(&config, options)?;
        let addr = http.addr()?;
        (
            format!("http on {addr}"),
            crate::start::Front::Listener(http),
        )
    } else {
        ("no HTTP listener".to_owned(), crate::start::Front::None)
    };
    #[cfg(not(feature = "http"))]
    let (listens, front) = ("no HTTP listener".to_owned(), crate::start::Front::None);
    let runtime = app.build_runtime(config, options, front)?;
    let handles = runtime.check()?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "configuration OK: {file} (environment `{environment}`); {listens}, {}; {} adapter handle(s) given",
        settings.workers.map_or_else(
            || "one worker per core".to_owned(),
            |n| format!("{n} worker(s)")
        ),
        handles.len(),
    )?;
    Ok(())
}

/// The log filter: `NUCLEON_LOG`, else `RUST_LOG`, else `info`. A variable set but
/// empty (`NUCLEON_LOG=` in a compose file) counts as unset: as a filter it would turn
/// every line but errors off, the access log included.
fn log_filter(nucleon_log: Option<String>, rust_log: Option<String>) -> String {
    let given = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    given(nucleon_log)
        .or_else(|| given(rust_log))
        .unwrap_or_else(|| "info".to_owned())
}

/// Loads configuration as `options` say.
pub(crate) fn load_config_for(app: &App, options: &StartOptions) -> Result<Config, ConfigError> {
    load_config(
        app,
        options.config_file.clone(),
        options.environment.clone(),
    )
}

/// The `http` table, with the command line's overrides.
#[cfg(feature = "http")]
pub(crate) fn http_config(config: &Config, options: &StartOptions) -> Result<HttpConfig, AppError> {
    let mut http: HttpConfig = config.extract_at("http")?;
    if let Some(host) = &options.host {
        http.host.clone_from(host);
    }
    if let Some(port) = options.port {
        http.port = port;
    }
    if options.replace {
        http.share_port = true;
    }
    Ok(http)
}

pub(crate) fn load_config(
    app: &App,
    file: Option<PathBuf>,
    environment: Option<String>,
) -> Result<Config, ConfigError> {
    let file = file.or_else(|| app.config_file.clone());
    let local = PathBuf::from("app.toml");
    match (file, app.default_config) {
        (None, Some(text)) if !local.exists() => {
            Config::from_toml(text, &choose_environment(environment))
        }
        (file, _) => Config::load(ConfigOptions { file, environment }),
    }
}

/// The test client's configuration: the `test` environment, else `default` (never
/// the one `NUCLEON_ENV` names: tests run where a shell exported `production` too).
#[cfg(feature = "http")]
pub(crate) fn config_for_tests(app: &App) -> Result<Config, ConfigError> {
    match load_config(app, None, Some("test".to_owned())) {
        Err(ConfigError::UnknownEnvironment { .. }) => {
            load_config(app, None, Some("default".to_owned()))
        }
        other => other,
    }
}

/// The command line's `start`: [`App::into_runtime`], then [`crate::AppRuntime::run`].
fn start(mut app: App, start: StartArgs, config: ConfigArgs) -> Result<(), AppError> {
    let privileges = Privileges::resolve(start.user.as_deref(), start.group.as_deref())?;
    if let Some(privileges) = privileges {
        // The first hook once every worker is up (their listeners bound): the app's
        // own hooks already run as the user asked for.
        let drop_them = hook(move || async move {
            privileges.drop_now()?;
            Ok(())
        });
        app.start.insert(0, drop_them);
    }
    let pidfile = start.pidfile.clone();
    if start.replace {
        crate::ops::check_migration();
    }
    let runtime = app.into_runtime(options(start, config))?;
    // After the bind (a second instance that cannot bind never touches it).
    let _pidfile = pidfile.as_deref().map(Pidfile::claim).transpose()?;
    runtime.run()?;
    Ok(())
}

fn options(start: StartArgs, config: ConfigArgs) -> StartOptions {
    StartOptions {
        host: start.host,
        port: start.port,
        workers: start.workers.map(usize::from),
        environment: config.environment,
        config_file: config.config,
        handle_signals: true,
        replace: start.replace,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_log_format_comes_from_the_flag_then_the_variable() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let json = Some("json".to_owned());
        assert_eq!(LogFormat::chosen(&args(&["app"]), None), LogFormat::Text);
        assert_eq!(
            LogFormat::chosen(&args(&["app"]), json.clone()),
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::chosen(&args(&["app", "--log-format", "json"]), None),
            LogFormat::Json
        );
        assert_eq!(
            LogFormat::chosen(&args(&["app", "start", "--log-format=text"]), json),
            LogFormat::Text
        );
    }

    #[test]
    fn an_empty_log_variable_counts_as_unset() {
        let some = |v: &str| Some(v.to_owned());
        assert_eq!(log_filter(None, None), "info");
        assert_eq!(log_filter(some("debug"), some("warn")), "debug");
        assert_eq!(log_filter(None, some("warn")), "warn");
        assert_eq!(log_filter(some(""), some("warn")), "warn");
        assert_eq!(log_filter(some("  "), None), "info");
        assert_eq!(log_filter(some(""), some("")), "info");
    }

    fn usage(args: &[&str]) -> AppError {
        let argv = std::iter::once("app").chain(args.iter().copied());
        match run_from(App::new("app"), argv) {
            Err(error @ AppError::Usage(_)) => error,
            other => panic!("{args:?}: expected a usage error, got {other:?}"),
        }
    }

    #[test]
    fn usage_errors_exit_2_and_help_exits_0() {
        assert_eq!(usage(&["--no-such-flag"]).exit_code(), 2);
        assert_eq!(usage(&["start", "--port", "x"]).exit_code(), 2);
        assert_eq!(usage(&["--help"]).exit_code(), 0);
        assert_eq!(usage(&["check", "--help"]).exit_code(), 0);
    }
}
