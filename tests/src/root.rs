//! Skipping loudly when not root.

use std::io::Write;

/// Returns true when the test may run (euid 0). Otherwise prints a loud `SKIPPED` line naming
/// the test and returns false; the caller then returns, and the test passes.
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
    let line = format!(
        "SKIPPED (needs root): {test}: end-to-end tests load eBPF programs; run as root (CI does)"
    );
    // Straight to the stderr file descriptor: the test harness captures `println!` and
    // `eprintln!` (and shows them only for failing tests), but not writes to the handle.
    let _ = writeln!(std::io::stderr(), "{line}");
    false
}
