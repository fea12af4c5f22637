//! Raising the open-file limit, which 100,000 held connections (200,000 sockets) need.

use std::fs;

use anyhow::{Result, bail};

/// Raises `RLIMIT_NOFILE` to at least `need` and returns the new soft limit. Raising the hard
/// limit needs root (CAP_SYS_RESOURCE); the kernel caps it at `fs.nr_open`.
pub fn raise_nofile(need: u64) -> Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &raw mut lim) } != 0 {
        bail!(
            "cannot read the open-file limit: {}",
            std::io::Error::last_os_error()
        );
    }
    if lim.rlim_cur >= need {
        return Ok(lim.rlim_cur);
    }
    let nr_open = fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(1 << 20);
    if need > nr_open {
        bail!(
            "{need} open files are needed but fs.nr_open is {nr_open}; raise it with \
             `sysctl -w fs.nr_open={need}` or hold fewer connections"
        );
    }
    let wanted = libc::rlimit {
        rlim_cur: need,
        rlim_max: lim.rlim_max.max(need),
    };
    // SAFETY: setrlimit reads the struct we pass.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raw const wanted) } != 0 {
        bail!(
            "cannot raise the open-file limit to {need} (hard limit {}): {}. Run as root or \
             raise `ulimit -n` first",
            lim.rlim_max,
            std::io::Error::last_os_error()
        );
    }
    Ok(need)
}
