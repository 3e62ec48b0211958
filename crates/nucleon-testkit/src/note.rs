//! Lines for the person running the tests, which libtest's output capture lets through.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Mutex, OnceLock, PoisonError};

/// Prints `line` on the process's standard error, once per process (per test binary)
/// whatever the number of calls, and past libtest's output capture.
///
/// libtest captures what the `print!` and `eprint!` macros write in a test, and shows
/// it only for a failed test (or with `--nocapture`); a write to [`std::io::stderr`]
/// itself is not captured. So a test that skips on purpose says so even when it passes.
/// Returns whether this call printed it.
///
/// ```
/// use nucleon_testkit::note_once;
///
/// let first = note_once("SKIPPED on purpose: tests needing a GPU (NUCLEON_TEST_SKIP_GPU=1)");
/// let again = note_once("SKIPPED on purpose: tests needing a GPU (NUCLEON_TEST_SKIP_GPU=1)");
/// assert!(first && !again);
/// ```
pub fn note_once(line: &str) -> bool {
    static NOTED: OnceLock<Mutex<HashSet<String>>> = OnceLock::new();
    let mut noted = NOTED
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(PoisonError::into_inner);
    if !noted.insert(line.to_owned()) {
        return false;
    }
    let mut stderr = std::io::stderr().lock();
    let _ = writeln!(stderr, "{line}");
    let _ = stderr.flush();
    true
}
