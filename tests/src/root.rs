//! Skipping loudly: outside CI a skipped test says so in the test output (not captured), and
//! under CI (`CI=true`), where every prerequisite must be there, a skip fails the test instead.

use std::io::Write;

/// True under CI, which sets `CI=true` (or `CI=1`).
pub fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1")
}

/// Says loudly that `test` cannot run here because of `missing`, and what to do about it.
///
/// The line goes straight to the stderr file descriptor: the test harness captures `println!`
/// and `eprintln!` (and shows them only for failing tests), but not writes to the handle.
///
/// # Panics
///
/// Under CI, where every prerequisite must be installed (by `cargo xtask setup`) or present:
/// the test fails, naming what is missing.
pub fn skip(test: &str, missing: &str) {
    assert!(
        !under_ci(),
        "{test} must run under CI (CI=true), but {missing}"
    );
    let _ = writeln!(std::io::stderr(), "SKIPPED: {test}: {missing}");
}

/// Returns true when the test may run (euid 0). Otherwise prints a loud `SKIPPED` line naming
/// the test and returns false; the caller then returns, and the test passes. Under CI, where
/// the tests must run as root, it fails the test instead.
///
/// ```no_run
/// # use enetstat_tests::require_root;
/// #[test]
/// fn lifecycle_ipv4() {
///     if !require_root("lifecycle_ipv4") {
///         return;
///     }
///     // ... the test itself
/// }
/// ```
pub fn require_root(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        return true;
    }
    skip(
        test,
        "it needs root (end-to-end tests load eBPF programs); run as root, as CI does",
    );
    false
}

/// The path of `program` on `PATH`, or a loud skip naming the Debian package that has it
/// (a failure under CI).
pub fn require_program(test: &str, program: &str, package: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        skip(
            test,
            &format!(
                "`{program}` is missing (Debian package `{package}`; `cargo xtask setup` \
                 installs it)"
            ),
        );
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_present_program_is_found() {
        assert!(require_program("a_present_program_is_found", "sh", "dash").is_some());
    }
}
