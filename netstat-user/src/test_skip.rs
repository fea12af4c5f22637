//! Unit tests that read the machine (its BTF, its cgroups) skip loudly where the machine lacks
//! what they read, and fail under CI (`CI=true`), where it must be there.

use std::io::Write as _;

/// Says that `test` cannot run here because of `missing`; fails the test under CI.
///
/// The line goes straight to the stderr file descriptor, which the test harness does not
/// capture (it captures `eprintln!`).
pub(crate) fn skip(test: &str, missing: &str) {
    let ci = std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1");
    assert!(!ci, "{test} must run under CI (CI=true), but {missing}");
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {missing}");
}
