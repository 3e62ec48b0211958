//! Commands a test needs: found on `PATH`, skipped on purpose, or a panic saying how to
//! install them.

use std::path::{Path, PathBuf};

use crate::server::Unavailable;
use crate::{asks_to_skip, note_once, process_env};

/// A command that tests need (`strace`), with the variable that skips them and how to
/// install it.
///
/// ```no_run
/// use nucleon_testkit::Tool;
///
/// // `ss` comes in a package of another name.
/// let ss = Tool {
///     install_hint: "apt-get install iproute2".to_owned(),
///     ..Tool::new("ss")
/// };
/// if ss.require() {
///     // run `ss`…
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tool {
    /// The command, as on `PATH` (`strace`), or a path to it.
    pub name: String,
    /// The variable that, set to `1`, skips the tests that need it:
    /// `NUCLEON_TEST_SKIP_STRACE`.
    pub skip_var: String,
    /// How to install it on this machine: `apt-get install strace`.
    pub install_hint: String,
}

impl Tool {
    /// The tool `name`, skipped with `NUCLEON_TEST_SKIP_<NAME>=1` (upper case, other
    /// characters than letters and digits as `_`), installed with
    /// `apt-get install <name>`.
    ///
    /// ```
    /// use nucleon_testkit::Tool;
    ///
    /// let tool = Tool::new("perf-trace");
    /// assert_eq!(tool.skip_var, "NUCLEON_TEST_SKIP_PERF_TRACE");
    /// assert_eq!(tool.install_hint, "apt-get install perf-trace");
    /// ```
    pub fn new(name: &str) -> Self {
        let upper: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        Self {
            name: name.to_owned(),
            skip_var: format!("NUCLEON_TEST_SKIP_{upper}"),
            install_hint: format!("apt-get install {name}"),
        }
    }

    /// Whether the tests may use it: `true` when it is on `PATH`; `false` when
    /// `skip_var` is set to `1` (also `true`, `yes`), after printing once per test
    /// binary, past libtest's capture: `SKIPPED on purpose: tests needing <name>
    /// (<skip_var>=1)`.
    ///
    /// # Panics
    /// When it is not installed, saying how to install it and how to skip.
    ///
    /// ```no_run
    /// if !nucleon_testkit::Tool::new("strace").require() {
    ///     return; // skipped on purpose, and said so
    /// }
    /// ```
    #[track_caller]
    pub fn require(&self) -> bool {
        self.require_in(process_env)
    }

    /// [`Tool::require`] with the environment `env` gives (`PATH` included) instead of
    /// the process's.
    ///
    /// # Panics
    /// As [`Tool::require`].
    ///
    /// ```
    /// use nucleon_testkit::Tool;
    ///
    /// let env = |name: &str| (name == "NUCLEON_TEST_SKIP_STRACE").then(|| "1".to_owned());
    /// assert!(!Tool::new("strace").require_in(env));
    /// ```
    #[track_caller]
    pub fn require_in(&self, env: impl Fn(&str) -> Option<String>) -> bool {
        let skip = env(&self.skip_var);
        match self.find_in(env) {
            Ok(None) => {
                note_once(&format!(
                    "SKIPPED on purpose: tests needing {} ({}={})",
                    self.name,
                    self.skip_var,
                    skip.as_deref().unwrap_or("1").trim()
                ));
                false
            }
            Ok(Some(_)) => true,
            Err(unavailable) => panic!("{unavailable}"),
        }
    }

    /// What [`Tool::require_in`] decides, without printing or panicking: `Ok(None)`
    /// when `skip_var` asks to skip, `Ok(Some(path))` when an executable file of that
    /// name is on `env`'s `PATH` (or at `name`, when it has a `/`), else the message a
    /// test panics with.
    ///
    /// # Errors
    /// [`Unavailable`], naming the tool, `install_hint` and `skip_var`.
    ///
    /// ```
    /// use nucleon_testkit::Tool;
    ///
    /// let nowhere = |name: &str| (name == "PATH").then(|| "/nonexistent".to_owned());
    /// let message = Tool::new("strace").find_in(nowhere).unwrap_err().to_string();
    /// assert!(message.contains("apt-get install strace"));
    /// assert!(message.contains("NUCLEON_TEST_SKIP_STRACE=1"));
    /// ```
    pub fn find_in(
        &self,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<PathBuf>, Unavailable> {
        if asks_to_skip(env(&self.skip_var).as_deref()) {
            return Ok(None);
        }
        let path = env("PATH").unwrap_or_default();
        let found = if self.name.contains('/') {
            Some(PathBuf::from(&self.name)).filter(|p| is_executable(p))
        } else {
            std::env::split_paths(&path)
                .map(|dir| dir.join(&self.name))
                .find(|p| is_executable(p))
        };
        found.map(Some).ok_or_else(|| {
            Unavailable::new(format!(
                "`{name}` is not installed (not on PATH: {path}).\n\
                 Tests that need {name} must not pass without it. Either:\n\
                 \x20 - install it: {hint}\n\
                 \x20 - or skip these tests on purpose: {skip_var}=1",
                name = self.name,
                hint = self.install_hint,
                skip_var = self.skip_var,
            ))
        })
    }
}

/// Whether `path` is a file someone may execute.
#[allow(
    clippy::disallowed_methods,
    reason = "a test helper, on the test's own thread, looking along PATH"
)]
fn is_executable(path: &Path) -> bool {
    let Ok(metadata) = std::fs::metadata(path) else {
        return false;
    };
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        metadata.is_file() && metadata.permissions().mode() & 0o111 != 0
    }
    #[cfg(not(unix))]
    {
        metadata.is_file()
    }
}

/// Whether the tests may use the command `name` ([`Tool::new`]): `true` when it is on
/// `PATH`; `false` when `NUCLEON_TEST_SKIP_<NAME>=1` skips them on purpose (said once
/// per test binary, on standard error).
///
/// # Panics
/// When it is not installed, with `apt-get install <name>` and the skip variable.
///
/// ```no_run
/// #[test]
/// fn no_getaddrinfo() {
///     if !nucleon_testkit::require_tool("strace") {
///         return;
///     }
///     // run the probe under strace…
/// }
/// ```
#[track_caller]
pub fn require_tool(name: &str) -> bool {
    Tool::new(name).require()
}
