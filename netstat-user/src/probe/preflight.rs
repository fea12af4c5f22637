//! Checks made before loading anything, so the common failures get a clear message instead
//! of a raw `EPERM` from deep inside a syscall.

use caps::{CapSet, Capability};

use super::ProbeError;

/// Root, or CAP_BPF + CAP_PERFMON, or CAP_SYS_ADMIN (kernels before 5.8 had no CAP_BPF).
pub fn check_privileges() -> Result<(), ProbeError> {
    if nix::unistd::geteuid().is_root() {
        return Ok(());
    }
    let has = |c| caps::has_cap(None, CapSet::Effective, c).unwrap_or(false);
    if has(Capability::CAP_SYS_ADMIN) || (has(Capability::CAP_BPF) && has(Capability::CAP_PERFMON))
    {
        return Ok(());
    }
    let missing: Vec<&str> = [
        (Capability::CAP_BPF, "CAP_BPF"),
        (Capability::CAP_PERFMON, "CAP_PERFMON"),
    ]
    .into_iter()
    .filter(|(c, _)| !has(*c))
    .map(|(_, n)| n)
    .collect();
    Err(ProbeError::NotPermitted {
        detail: format!("not root, and missing {}", missing.join(" and ")),
    })
}

/// Raises RLIMIT_MEMLOCK for kernels before 5.11, which charge BPF maps against it. Newer
/// kernels account BPF memory to the cgroup and ignore the limit; failure is harmless there.
pub fn raise_memlock() {
    use nix::sys::resource::{RLIM_INFINITY, Resource, setrlimit};
    if let Err(e) = setrlimit(Resource::RLIMIT_MEMLOCK, RLIM_INFINITY, RLIM_INFINITY) {
        tracing::debug!("could not raise RLIMIT_MEMLOCK: {e}");
    }
}

/// The kernel release, for error reports.
pub fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown kernel".into(), |s| s.trim().to_owned())
}
