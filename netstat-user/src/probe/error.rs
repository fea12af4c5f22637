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
    Tracefs(#[from] super::TracefsError),

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
        "cannot attach to the `{tracepoint}` tracepoint: {source}. Tracing needs Linux 5.8+ with \
         that tracepoint; the snapshot (`enetstat -tan`) needs no eBPF and still works"
    )]
    Attach {
        tracepoint: &'static str,
        source: aya::programs::ProgramError,
    },

    #[error("cannot load enetstat's eBPF object: {0}")]
    Load(#[source] aya::EbpfError),

    #[error(
        "the eBPF object has no {what} `{name}`; the build is broken (rebuild with `cargo xtask build`)"
    )]
    Missing {
        what: &'static str,
        name: &'static str,
    },

    #[error("cannot read the BPF map `{name}`: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },

    #[error("cannot {doing}: {source}. {hint}", hint = crate::fd_limit::hint())]
    NoDescriptors {
        doing: &'static str,
        source: std::io::Error,
    },

    #[error("cannot watch the ring buffer for events: {0}")]
    Poll(#[source] std::io::Error),

    #[error("--ring-size {0} is not a power of two of at least 4096 bytes (try 4M, 8M, 16M)")]
    RingSize(u32),
}

impl ProbeError {
    /// A tracepoint that would not attach, or the descriptor limit when that is the cause.
    pub(super) fn attach(tracepoint: &'static str, source: aya::programs::ProgramError) -> Self {
        if crate::fd_limit::caused(&source) {
            ProbeError::NoDescriptors {
                doing: "attach the eBPF programs",
                source: std::io::Error::from_raw_os_error(libc::EMFILE),
            }
        } else {
            ProbeError::Attach { tracepoint, source }
        }
    }

    /// An error from watching the ring buffer, or the descriptor limit when that is the cause.
    pub(super) fn poll(e: std::io::Error) -> Self {
        if crate::fd_limit::is_exhausted(&e) {
            ProbeError::NoDescriptors {
                doing: "watch the ring buffer for events",
                source: e,
            }
        } else {
            ProbeError::Poll(e)
        }
    }
}
