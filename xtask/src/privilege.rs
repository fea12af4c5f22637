//! Whether we run as root, and how to get there when not: loading eBPF programs and running the
//! end-to-end tests need root (or CAP_BPF + CAP_PERFMON).

use std::path::PathBuf;

/// True when the effective user is root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `sudo`, when installed (the reference machine has none; everything runs as root there).
pub fn sudo() -> Option<PathBuf> {
    which::which("sudo").ok()
}
