//! What can go wrong between "start tracing" and the first event, each with the fix.

use crate::btf::BtfError;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "enetstat needs root, or the CAP_BPF and CAP_PERFMON capabilities, to load its eBPF \
         programs ({detail}). Run it as root (sudo enetstat ...), or grant the capabilities \
         once: setcap cap_bpf,cap_perfmon+ep \"$(command -v enetstat)\""
    )]
    NotPermitted { detail: String },

    #[error(transparent)]
    Btf(#[from] BtfError),

    #[error(
        "{0}. Without BTF enetstat traces with the classic tracepoint, which it could not use; \
         the snapshot (`enetstat -tan`) needs neither and still works"
    )]
    Tracefs(super::TracefsError),

    #[error("{0}")]
    Mode(String),

    #[error(
        "this kernel has no BPF ring buffer (BPF_MAP_TYPE_RINGBUF, added in Linux 5.8): {detail}. \
         Tracing (watch, life, -c, the daemon) needs Linux 5.8 or newer; the snapshot \
         (`enetstat -tan`) needs no eBPF and still works"
    )]
    NoRingBuffer { detail: String },

    #[error(
        "the kernel's verifier rejected the eBPF program `{program}` ({errno}). This is a bug in \
         enetstat for this kernel ({kernel}); please report it with these last verifier lines:\n{log_tail}"
    )]
    Verifier {
        program: &'static str,
        errno: std::io::Error,
        kernel: String,
        log_tail: String,
    },

    #[error(
        "cannot attach to the `{tracepoint}` tracepoint: {}. Tracing needs Linux 5.8+ with \
         that tracepoint; the snapshot (`enetstat -tan`) needs no eBPF and still works",
        with_causes(cause)
    )]
    Attach {
        tracepoint: &'static str,
        cause: aya::programs::ProgramError,
    },

    #[error("cannot load enetstat's eBPF object: {}", with_causes(.0))]
    Load(aya::EbpfError),

    #[error(
        "the eBPF object has no {what} `{name}`; the build is broken (rebuild with `cargo xtask build`)"
    )]
    Missing {
        what: &'static str,
        name: &'static str,
    },

    #[error("cannot read the BPF map `{name}`: {cause}")]
    Map {
        name: &'static str,
        cause: aya::maps::MapError,
    },

    #[error("cannot {doing}: {cause}. {hint}", hint = crate::fd_limit::hint())]
    NoDescriptors {
        doing: &'static str,
        cause: std::io::Error,
    },

    #[error("cannot watch the ring buffer for events: {0}")]
    Poll(std::io::Error),

    #[error("--ring-size {0} is not a power of two of at least 4096 bytes (try 4M, 8M, 16M)")]
    RingSize(u32),
}

impl ProbeError {
    /// A tracepoint that would not attach, or the descriptor limit when that is the cause.
    pub(super) fn attach(tracepoint: &'static str, cause: aya::programs::ProgramError) -> Self {
        if crate::fd_limit::caused(&cause) {
            ProbeError::NoDescriptors {
                doing: "attach the eBPF programs",
                cause: std::io::Error::from_raw_os_error(libc::EMFILE),
            }
        } else {
            ProbeError::Attach { tracepoint, cause }
        }
    }

    /// An error from watching the ring buffer, or the descriptor limit when that is the cause.
    pub(super) fn poll(e: std::io::Error) -> Self {
        if crate::fd_limit::is_exhausted(&e) {
            ProbeError::NoDescriptors {
                doing: "watch the ring buffer for events",
                cause: e,
            }
        } else {
            ProbeError::Poll(e)
        }
    }
}

/// An aya error with the causes it chains: aya's messages name their cause inline in some
/// variants ("error parsing BPF object: {0}") and only chain it in others ("`bpf_link_create`
/// failed", the errno behind it chained), so a cause whose text the message before it already
/// quotes is left out. Our own errors name their cause once, inline, and chain nothing; this
/// is where a foreign chain is folded into that one message.
fn with_causes(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    for cause in std::iter::successors(e.source(), |c| c.source()) {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
    }
    out
}

impl From<super::TracefsError> for ProbeError {
    /// By hand rather than `#[from]`, which would also chain the error its message names.
    fn from(e: super::TracefsError) -> Self {
        ProbeError::Tracefs(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("`bpf_link_create` failed")]
    struct ChainsOnly(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("program error: {0}")]
    struct InlinesAndChains(#[source] ChainsOnly);

    #[test]
    fn an_aya_cause_is_named_once_whichever_way_aya_reports_it() {
        let e = InlinesAndChains(ChainsOnly(std::io::Error::from_raw_os_error(libc::EPERM)));
        assert_eq!(
            with_causes(&e),
            "program error: `bpf_link_create` failed: Operation not permitted (os error 1)"
        );
    }

    /// A kernel lacking a feature is told so: the feature, the Linux version that has it, and
    /// that the snapshot still works; never "a bug in enetstat".
    fn says_what_is_missing(e: &ProbeError, feature: &str, version: &str) {
        let text = e.to_string();
        for want in [
            feature,
            version,
            "the snapshot (`enetstat -tan`)",
            "still works",
        ] {
            assert!(text.contains(want), "`{want}` not in: {text}");
        }
        assert!(!text.contains("bug"), "{text}");
    }

    #[test]
    fn a_kernel_without_ring_buffers_is_told_what_it_lacks() {
        let e = ProbeError::NoRingBuffer {
            detail: std::io::Error::from_raw_os_error(libc::EINVAL).to_string(),
        };
        says_what_is_missing(&e, "BPF_MAP_TYPE_RINGBUF", "Linux 5.8");
        assert!(e.to_string().contains("os error 22"), "{e}");
    }

    #[test]
    fn a_kernel_without_the_tracepoint_is_told_what_it_lacks() {
        let e = ProbeError::Tracefs(crate::probe::TracefsError::NoTracepoint {
            path: "/sys/kernel/tracing/events/sock/inet_sock_set_state/format".into(),
        });
        says_what_is_missing(&e, "sock:inet_sock_set_state tracepoint", "Linux 4.16");
        assert!(e.to_string().contains("Without BTF"), "{e}");
        let e = ProbeError::Tracefs(crate::probe::TracefsError::Mount(
            std::io::Error::from_raw_os_error(libc::EPERM),
        ));
        let text = e.to_string();
        assert!(
            text.contains("mount -t tracefs tracefs /sys/kernel/tracing")
                && text.contains("still works"),
            "{text}"
        );
    }

    #[test]
    fn a_tracepoint_that_cannot_be_attached_is_named() {
        let e = ProbeError::Attach {
            tracepoint: "inet_sock_set_state",
            cause: aya::programs::ProgramError::NotLoaded,
        };
        says_what_is_missing(&e, "`inet_sock_set_state` tracepoint", "Linux 5.8");
    }

    #[test]
    fn only_a_verifier_surprise_is_called_a_bug() {
        let e = ProbeError::Verifier {
            program: "inet_sock_set_state",
            errno: std::io::Error::from_raw_os_error(libc::EACCES),
            kernel: "5.10.0-46-cloud-amd64".to_owned(),
            log_tail: "unknown func bpf_sk_storage_get#107".to_owned(),
        };
        let text = e.to_string();
        for want in [
            "a bug in",
            "5.10.0-46-cloud-amd64",
            "bpf_sk_storage_get#107",
        ] {
            assert!(text.contains(want), "`{want}` not in: {text}");
        }
    }

    #[test]
    fn our_errors_chain_no_cause() {
        let e = ProbeError::poll(std::io::Error::from_raw_os_error(libc::EBADF));
        assert!(std::error::Error::source(&e).is_none(), "{e}");
    }
}
