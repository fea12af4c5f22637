//! Loading, attaching and reading the kernel programs: the only module that touches aya.
//!
//! [`Probe::start`] checks privileges and BTF, resolves struct offsets, loads the object with
//! them as globals, and attaches to `inet_sock_set_state`. Dropping the [`Probe`] detaches
//! everything; the kernel also releases the programs if the process dies, since they are held
//! only by this process's file descriptors (nothing is pinned).

mod error;
mod misses;
mod preflight;
mod stream;
mod timer;

use std::{os::fd::AsFd as _, time::Duration};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{MapError, PerCpuArray, RingBuf},
    programs::{BtfTracePoint, ProgramError},
};
use netstat_common::{Config, KernelFilter, counter};

pub use error::ProbeError;
pub use preflight::kernel_release;
pub use stream::EventStream;

use crate::btf;

/// The kernel object, built by `build.rs` with aya-build.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netstat"));

const TRACEPOINT: &str = "inet_sock_set_state";
/// The same tracepoint again, for the events the first program's recursion guard drops.
const NESTED: (&str, &str) = ("inet_sock_set_state_nested", "inet_sock_set_state");
const RESET_TRACEPOINTS: [&str; 2] = ["tcp_send_reset", "tcp_receive_reset"];

/// Loads the BTF tracepoint program named after `tracepoint` and attaches it.
fn attach(ebpf: &mut Ebpf, btf: &Btf, tracepoint: &'static str) -> Result<(), ProbeError> {
    attach_named(ebpf, btf, tracepoint, tracepoint)
}

/// Loads the BTF tracepoint program `name` and attaches it to `tracepoint`.
fn attach_named(
    ebpf: &mut Ebpf,
    btf: &Btf,
    name: &'static str,
    tracepoint: &'static str,
) -> Result<(), ProbeError> {
    let program: &mut BtfTracePoint = ebpf
        .program_mut(name)
        .ok_or(ProbeError::Missing {
            what: "program",
            name,
        })?
        .try_into()
        .map_err(|source| ProbeError::Attach { tracepoint, source })?;
    program
        .load(tracepoint, btf)
        .map_err(|e| classify_program_error(name, e))?;
    program
        .attach()
        .map_err(|source| ProbeError::Attach { tracepoint, source })?;
    Ok(())
}

/// How to start tracing.
#[derive(Clone, Debug)]
pub struct ProbeOptions {
    /// Ring-buffer size in bytes: a power of two, at least one page.
    pub ring_size: u32,
    /// The cheap part of the user's filter, applied in the kernel.
    pub filter: KernelFilter,
    /// Wake userspace at most this often while events keep coming; zero wakes on every event.
    pub wakeup_interval: Duration,
}

impl Default for ProbeOptions {
    fn default() -> Self {
        Self {
            ring_size: 8 << 20,
            filter: KernelFilter::default(),
            wakeup_interval: Duration::from_micros(250),
        }
    }
}

/// Kernel-side counters, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelCounters {
    /// TCP transitions the program saw.
    pub seen: u64,
    /// Left out by the kernel-side filter.
    pub filtered: u64,
    /// Lost because the ring buffer was full.
    pub ringbuf_full: u64,
    /// Kernel reads that failed (the record was still sent).
    pub read_errors: u64,
    /// Times the kernel skipped one of our programs because it was already running on that
    /// CPU (nested twice): each is a lost event.
    pub recursion_misses: u64,
}

impl KernelCounters {
    /// Every event lost in the kernel, for any reason.
    pub fn lost(&self) -> u64 {
        self.ringbuf_full + self.recursion_misses
    }
}

/// Attached kernel programs. Detached on drop.
pub struct Probe {
    ebpf: Ebpf,
    options: ProbeOptions,
    resets: bool,
}

impl Probe {
    /// Loads and attaches the programs.
    pub fn start(options: ProbeOptions) -> Result<Self, ProbeError> {
        preflight::check_privileges()?;
        preflight::check_btf()?;
        if options.ring_size < 4096 || !options.ring_size.is_power_of_two() {
            return Err(ProbeError::RingSize(options.ring_size));
        }
        preflight::raise_memlock();

        let offsets = btf::offsets()?;
        let wakeup_ns = options.wakeup_interval.as_nanos() as u64;
        let config = Config {
            offsets,
            filter: options.filter,
            wakeup_interval_ns: wakeup_ns,
            // A burst must not fill the ring while we sleep between wakeups.
            wakeup_bytes: u64::from(options.ring_size / 8),
        };
        tracing::debug!(?config, "loading the kernel programs");
        let mut ebpf = EbpfLoader::new()
            .override_global("CONFIG", &config, true)
            .map_max_entries("EVENTS", options.ring_size)
            .load(OBJECT)
            .map_err(classify_load_error)?;

        let kernel_btf = Btf::from_sys_fs().map_err(|e| ProbeError::Load(e.into()))?;
        attach(&mut ebpf, &kernel_btf, TRACEPOINT)?;
        attach_named(&mut ebpf, &kernel_btf, NESTED.0, NESTED.1)?;
        // The reset tracepoints only refine how connections ended; without them enetstat
        // still traces every transition, so a kernel lacking them is a warning, not an error.
        let mut resets = true;
        for tracepoint in RESET_TRACEPOINTS {
            if let Err(e) = attach(&mut ebpf, &kernel_btf, tracepoint) {
                tracing::warn!(
                    "{e}; connection endings by reset will be inferred from socket errors only"
                );
                resets = false;
            }
        }
        // Parsing the kernel's BTF (twice: for offsets, and by aya for the tracepoints) leaves
        // tens of MiB of freed heap behind.
        crate::mem::trim();
        Ok(Self {
            ebpf,
            options,
            resets,
        })
    }

    /// Whether the TCP reset tracepoints are attached.
    pub fn traces_resets(&self) -> bool {
        self.resets
    }

    /// The stream of raw records. Can be taken once.
    pub fn events(&mut self) -> Result<EventStream, ProbeError> {
        let map = self.ebpf.take_map("EVENTS").ok_or(ProbeError::Missing {
            what: "map",
            name: "EVENTS",
        })?;
        let ring = RingBuf::try_from(map).map_err(|source| ProbeError::Map {
            name: "EVENTS",
            source,
        })?;
        EventStream::new(ring, self.options.wakeup_interval)
    }

    /// Current kernel counters.
    pub fn counters(&self) -> Result<KernelCounters, ProbeError> {
        let map_err = |source: MapError| ProbeError::Map {
            name: "COUNTERS",
            source,
        };
        let map = self.ebpf.map("COUNTERS").ok_or(ProbeError::Missing {
            what: "map",
            name: "COUNTERS",
        })?;
        let array = PerCpuArray::<_, u64>::try_from(map).map_err(map_err)?;
        let sum = |index: u32| -> Result<u64, ProbeError> {
            let mut total = 0;
            for bank in 0..counter::BANKS {
                let values = array
                    .get(&(bank * counter::COUNT + index), 0)
                    .map_err(map_err)?;
                total += values.iter().sum::<u64>();
            }
            Ok(total)
        };
        Ok(KernelCounters {
            seen: sum(counter::SEEN)?,
            filtered: sum(counter::FILTERED)?,
            ringbuf_full: sum(counter::RINGBUF_FULL)?,
            read_errors: sum(counter::READ_ERRORS)?,
            recursion_misses: self.recursion_misses(sum(counter::NESTED_CALLS)?),
        })
    }

    /// Events the kernel skipped because a program was already running on that CPU and that
    /// nobody recorded: the primary state program's misses not rescued by its nested copy,
    /// plus the reset programs' misses. The nested copy's own misses are not events lost: it
    /// is skipped when it interrupts itself, and either the primary was not running then (and
    /// recorded the event) or it was, and the miss is already one of the primary's unrescued
    /// ones.
    fn recursion_misses(&self, nested_calls: u64) -> u64 {
        let misses = |name: &str| -> u64 {
            let Some(program) = self.ebpf.program(name) else {
                return 0;
            };
            let Ok(fd) = program.fd() else { return 0 };
            misses::recursion_misses(fd.as_fd()).unwrap_or_else(|e| {
                tracing::debug!("cannot read recursion misses of {name}: {e}");
                0
            })
        };
        let others: u64 = self
            .ebpf
            .programs()
            .map(|(name, _)| name)
            .filter(|name| *name != TRACEPOINT && *name != NESTED.0)
            .map(misses)
            .sum();
        misses(TRACEPOINT).saturating_sub(nested_calls) + others
    }
}

fn is_eperm(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

fn classify_load_error(e: aya::EbpfError) -> ProbeError {
    match e {
        aya::EbpfError::MapError(MapError::CreateError {
            ref name,
            ref io_error,
        }) if name == "EVENTS" && io_error.raw_os_error() == Some(libc::EINVAL) => {
            ProbeError::NoRingBuffer {
                detail: io_error.to_string(),
            }
        }
        aya::EbpfError::MapError(MapError::CreateError { ref io_error, .. })
            if is_eperm(io_error) =>
        {
            ProbeError::NotPermitted {
                detail: io_error.to_string(),
            }
        }
        aya::EbpfError::ProgramError(p) => classify_program_error(TRACEPOINT, p),
        other => ProbeError::Load(other),
    }
}

fn classify_program_error(program: &'static str, e: ProgramError) -> ProbeError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            if is_eperm(&io_error) && format!("{verifier_log:?}").trim().is_empty() {
                return ProbeError::NotPermitted {
                    detail: io_error.to_string(),
                };
            }
            let log = format!("{verifier_log:?}");
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(20)..].join("\n");
            ProbeError::Verifier {
                program,
                errno: io_error,
                kernel: preflight::kernel_release(),
                log_tail: tail,
            }
        }
        other => ProbeError::Load(other.into()),
    }
}
