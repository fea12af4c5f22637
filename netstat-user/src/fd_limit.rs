//! Running out of file descriptors, named as such wherever it happens.
//!
//! EMFILE surfaces from places that otherwise fail for very different reasons: the verifier
//! (a program load needs a descriptor), the ring buffer's epoll registration, a netlink socket.
//! Each of those errors would otherwise blame the kernel or enetstat; this module lets them say
//! what really ran out and how to raise it.

use std::io;

use nix::sys::resource::{Resource, getrlimit};

/// Whether `e` means this process reached its open-file limit.
pub fn is_exhausted(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::EMFILE)
}

/// Whether `e`, or any error it wraps, means this process reached its open-file limit.
pub fn caused(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source())
        .any(|e| e.downcast_ref::<io::Error>().is_some_and(is_exhausted))
}

/// The soft open-file limit, if it can be read.
pub fn soft_limit() -> Option<u64> {
    getrlimit(Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// What to tell a user whose process has no descriptor left.
pub fn hint() -> String {
    let limit = soft_limit().map_or_else(String::new, |n| format!(" ({n})"));
    format!(
        "This process has no file descriptor left: it reached its open-file limit \
         (RLIMIT_NOFILE{limit}). Raise it (`ulimit -n`, LimitNOFILE= in a unit) or close \
         connections"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_emfile_is_exhaustion_and_the_hint_names_the_limit() {
        assert!(is_exhausted(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(!is_exhausted(&io::Error::from_raw_os_error(libc::ENFILE)));
        #[derive(Debug, thiserror::Error)]
        #[error("attach failed")]
        struct Wrapper(#[source] io::Error);
        assert!(caused(&Wrapper(io::Error::from_raw_os_error(libc::EMFILE))));
        assert!(!caused(&Wrapper(io::Error::from_raw_os_error(libc::EPERM))));
        assert!(!caused(&io::Error::other("no")));
        let hint = hint();
        assert!(hint.contains("RLIMIT_NOFILE ("), "{hint}");
        assert!(hint.contains("ulimit -n"), "{hint}");
    }
}
