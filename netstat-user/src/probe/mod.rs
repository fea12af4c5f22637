//! Loading, attaching and reading the kernel programs: the only module that touches aya.
//!
//! [`Probe::start`] checks privileges and BTF, resolves struct offsets, loads the object with
//! them as globals, and attaches to `inet_sock_set_state`. Dropping the [`Probe`] detaches
//! everything; the kernel also releases the programs if the process dies, since they are held
//! only by this process's file descriptors (nothing is pinned).

// `pub(crate)` for `crate::source`, which names the error without depending on this module.
pub(crate) mod error;
mod misses;
mod mode;
mod preflight;
mod ring;
mod stream;
mod timer;
mod tracefs;

use std::{
    os::fd::AsFd as _,
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, Map, MapError, PerCpuArray},
    programs::{BtfTracePoint, FExit, ProgramError, TracePoint},
};
use netstat_common::{Config, KernelFilter, counter};

pub use error::ProbeError;
pub use mode::{FORCE_ENV, Mode};
pub use preflight::kernel_release;
pub use stream::EventStream;
pub use tracefs::TracefsError;

use crate::btf;

/// The kernel object, built by `build.rs` with aya-build.
static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/netstat"));

/// The program `name` in the object, as the kind `P` that attaches to `tracepoint`.
fn program<'a, P>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
    tracepoint: &'static str,
) -> Result<&'a mut P, ProbeError>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(ProbeError::Missing {
            what: "program",
            name,
        })?
        .try_into()
        .map_err(|e| ProbeError::attach(tracepoint, e))
}

/// Loads the BTF tracepoint program `name` and attaches it to `tracepoint`.
fn attach_btf(
    ebpf: &mut Ebpf,
    btf: &Btf,
    name: &'static str,
    tracepoint: &'static str,
) -> Result<(), ProbeError> {
    let program: &mut BtfTracePoint = program(ebpf, name, tracepoint)?;
    program
        .load(tracepoint, btf)
        .map_err(|e| classify_program_error(name, e))?;
    program
        .attach()
        .map_err(|e| ProbeError::attach(tracepoint, e))?;
    Ok(())
}

/// Loads the fexit program `name` and attaches it to the kernel function `function`.
fn attach_fexit(
    ebpf: &mut Ebpf,
    btf: &Btf,
    name: &'static str,
    function: &'static str,
) -> Result<(), ProbeError> {
    let program: &mut FExit = program(ebpf, name, function)?;
    program
        .load(function, btf)
        .map_err(|e| ProbeError::attach(function, e))?;
    program
        .attach()
        .map_err(|e| ProbeError::attach(function, e))?;
    Ok(())
}

/// Loads the classic tracepoint program `name` and attaches it to `sock:<tracepoint>`.
fn attach_classic(
    ebpf: &mut Ebpf,
    name: &'static str,
    tracepoint: &'static str,
) -> Result<(), ProbeError> {
    attach_classic_in(ebpf, name, "sock", tracepoint)
}

/// Loads the classic tracepoint program `name` and attaches it to `<category>:<tracepoint>`.
fn attach_classic_in(
    ebpf: &mut Ebpf,
    name: &'static str,
    category: &'static str,
    tracepoint: &'static str,
) -> Result<(), ProbeError> {
    let program: &mut TracePoint = program(ebpf, name, tracepoint)?;
    program
        .load()
        .map_err(|e| classify_program_error(name, e))?;
    program
        .attach(category, tracepoint)
        .map_err(|e| ProbeError::attach(tracepoint, e))?;
    Ok(())
}

/// What `-v` says before the hook the accept program is attached to (`inet_csk_accept` or
/// `sys_exit_accept`): the kernel matrix checks it is the one each kernel should get.
pub const ACCEPTS_AT: &str = "accepts followed at ";

/// The BTF exit programs, in the order they attach: the first, then its rescue copy (see
/// `owner::exited` in the eBPF crate).
const EXIT_PROGRAMS: [&str; 2] = ["sched_process_exit_btf", "sched_process_exit_rescue"];

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

/// Which owner facts from process context the kernel gives (see `netstat-ebpf/src/owner.rs`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OwnerHooks {
    /// `accept()` names the process that serves each accepted socket.
    pub accepts: bool,
    /// Process exits are traced, so an owner that ended is never shown as current.
    pub exits: bool,
}

/// Attached kernel programs. Detached on drop.
pub struct Probe {
    ebpf: Ebpf,
    options: ProbeOptions,
    mode: Mode,
    owners: OwnerHooks,
    /// The recursion misses last logged by program (logged again only when they change).
    misses_logged: AtomicU64,
}

impl Probe {
    /// Loads and attaches the programs, in the best mode the running kernel supports.
    pub fn start(options: ProbeOptions) -> Result<Self, ProbeError> {
        preflight::check_privileges()?;
        if options.ring_size < 4096 || !options.ring_size.is_power_of_two() {
            return Err(ProbeError::RingSize(options.ring_size));
        }
        preflight::raise_memlock();
        let forced = Mode::forced().map_err(ProbeError::Mode)?;
        let has_btf = Path::new(btf::VMLINUX_BTF).exists();
        let probe = if forced == Some(Mode::Tracepoint) || !has_btf {
            Self::start_classic(options)?
        } else {
            Self::start_btf(options, forced)?
        };
        tracing::info!("tracing in mode {}", probe.mode);
        probe.log_verified();
        if let Some(lacks) = probe.mode.lacks() {
            tracing::warn!("{lacks}");
        }
        // Parsing the kernel's BTF (twice: for offsets, and by aya for the tracepoints) leaves
        // tens of MiB of freed heap behind.
        crate::mem::trim();
        Ok(probe)
    }

    fn config(options: &ProbeOptions) -> Config {
        Config {
            filter: options.filter,
            wakeup_interval_ns: options.wakeup_interval.as_nanos() as u64,
            // A burst must not fill a ring while we sleep between wakeups.
            wakeup_bytes: u64::from(ring::size(options.ring_size) / 8),
            rings: u64::from(ring::count()),
            ..Config::ZERO
        }
    }

    fn load(options: &ProbeOptions, config: &Config) -> Result<Ebpf, ProbeError> {
        tracing::debug!(?config, "loading the kernel programs");
        let mut loader = EbpfLoader::new();
        loader.override_global("CONFIG", config, true);
        let size = ring::size(options.ring_size);
        for (i, name) in ring::NAMES.iter().enumerate() {
            // The rings no CPU writes to take a page each.
            let used = u64::try_from(i).is_ok_and(|i| i < config.rings);
            loader.map_max_entries(name, if used { size } else { ring::UNUSED_SIZE });
        }
        loader.load(OBJECT).map_err(classify_load_error)
    }

    /// The probe, once the state programs are attached: adds the owner programs.
    fn with_owner_programs(
        mut ebpf: Ebpf,
        options: ProbeOptions,
        mode: Mode,
        config: &Config,
        kernel: Option<(&Btf, &btf::Layout)>,
    ) -> Self {
        let owners = Self::attach_owner_programs(&mut ebpf, config, mode, kernel);
        Self {
            ebpf,
            options,
            mode,
            owners,
            misses_logged: AtomicU64::new(0),
        }
    }

    /// Attaches the owner programs (process context: accepts, and exits at a BTF tracepoint).
    /// They only refine owners, so a kernel without them (no task offsets, no
    /// CONFIG_FTRACE_SYSCALLS on older kernels) gets a warning that says what is lost.
    fn attach_owner_programs(
        ebpf: &mut Ebpf,
        config: &Config,
        mode: Mode,
        kernel: Option<(&Btf, &btf::Layout)>,
    ) -> OwnerHooks {
        let mut hooks = OwnerHooks {
            accepts: Self::attach_accept_program(ebpf, config, mode, kernel),
            exits: false,
        };
        if !hooks.accepts {
            tracing::warn!(
                "an accepted socket is shown with its listener's owner, not the process that \
                 accepted it"
            );
        }
        // A BTF tracepoint and its rescue copy, which goes second so it runs after it on every
        // call. Without BTF there is none: a classic tracepoint's program shares one per-CPU
        // guard with the classic state program, and while it runs the kernel skips that one
        // for the transitions a softirq makes on the CPU (the kernel matrix saw it lose one).
        let Some((btf, _)) = kernel else {
            tracing::warn!(
                "without BTF, process exits are not traced: owners that exited cannot be told \
                 from live ones, and are shown as current"
            );
            return hooks;
        };
        match EXIT_PROGRAMS
            .iter()
            .try_for_each(|&name| attach_btf(ebpf, btf, name, "sched_process_exit"))
        {
            Ok(()) => hooks.exits = true,
            Err(e) => tracing::warn!(
                "{e}; owners that exited cannot be told from live ones, and are shown as current"
            ),
        }
        hooks
    }

    /// The program that says who accepted each socket: at the exit of `inet_csk_accept`
    /// where it can be (see `owner::accepted_sock` in the eBPF crate: every accept, the
    /// socket at hand, and no system call tracepoint to slow every system call on the host),
    /// which needs the in-place loads of [`Mode::TpBtf`] and the function's parameters from
    /// BTF; else at the exit of the accept system calls. Whether either is attached.
    fn attach_accept_program(
        ebpf: &mut Ebpf,
        config: &Config,
        mode: Mode,
        kernel: Option<(&Btf, &btf::Layout)>,
    ) -> bool {
        if config.tasks.task_group_leader == 0 {
            tracing::warn!("this kernel's BTF does not describe its task structures");
            return false;
        }
        if mode == Mode::TpBtf
            && let Some((btf, layout)) = kernel
        {
            // The returned socket follows the parameters in the program's context.
            let program = match layout.accept_params {
                Some(2) => Some("inet_csk_accept_exit"),
                Some(4) => Some("inet_csk_accept_exit_4"),
                _ => None,
            };
            match program.map(|name| attach_fexit(ebpf, btf, name, "inet_csk_accept")) {
                Some(Ok(())) => {
                    tracing::info!("{ACCEPTS_AT}inet_csk_accept");
                    return true;
                }
                // As root, a refusal is the kernel's: without a function tracer
                // (CONFIG_FUNCTION_TRACER) it refuses every fexit program with EPERM.
                Some(Err(e)) => {
                    tracing::info!(
                        "this kernel does not let enetstat trace inet_csk_accept's exit; \
                         following accepts at the accept system calls instead, which puts \
                         every system call on this host through the kernel's slower path"
                    );
                    tracing::debug!("{e}");
                }
                None => tracing::info!(
                    "this kernel's inet_csk_accept takes {:?} parameters, which enetstat does \
                     not know; following accepts at the accept system calls",
                    layout.accept_params
                ),
            }
        }
        if config.tasks.sys_exit_ret == 0 {
            tracing::warn!("this kernel has no syscalls:sys_exit_accept4 tracepoint");
            return false;
        }
        match [
            ("sys_exit_accept4", "sys_exit_accept4"),
            ("sys_exit_accept", "sys_exit_accept"),
        ]
        .into_iter()
        .try_for_each(|(name, tracepoint)| attach_classic_in(ebpf, name, "syscalls", tracepoint))
        {
            Ok(()) => {
                tracing::info!("{ACCEPTS_AT}sys_exit_accept");
                true
            }
            Err(e) => {
                tracing::warn!("{e}");
                false
            }
        }
    }

    /// BTF tracepoints. The cookie helper's presence is probed by loading the program that
    /// calls it: a kernel without it (before 5.12) refuses it as an unknown function.
    fn start_btf(options: ProbeOptions, forced: Option<Mode>) -> Result<Self, ProbeError> {
        let layout = btf::layout()?;
        let mut tasks = layout.tasks;
        // The accept system calls' programs read the return value where tracefs says it is.
        tasks.sys_exit_ret = tracefs::root()
            .ok()
            .and_then(|root| tracefs::field_offset(&root, "syscalls/sys_exit_accept4", "ret"))
            .unwrap_or(0);
        let config = Config {
            offsets: layout.sockets,
            tasks,
            notes_per_cpu: u64::from(tasks.task_stack != 0 && notes_per_cpu_hold()),
            ..Self::config(&options)
        };
        let mut ebpf = Self::load(&options, &config)?;
        let kernel_btf = Btf::from_sys_fs().map_err(|e| classify_load_error(e.into()))?;
        let mut mode = forced.unwrap_or(Mode::TpBtf);
        let mut programs = mode.programs().iter();
        if let Some(&(name, tracepoint)) = programs.next() {
            match attach_btf(&mut ebpf, &kernel_btf, name, tracepoint) {
                Ok(()) => {}
                // The default programs read the socket in place, which the verifier allows only
                // where it can check each load against the kernel's types: proven on the
                // kernel matrix, not on every kernel in between. Any other refusal falls back
                // to the programs that read through the helper, unless the mode was forced.
                Err(ProbeError::Verifier { ref log_tail, .. })
                    if mode == Mode::TpBtf
                        && (lacks_cookie_helper(log_tail) || forced.is_none()) =>
                {
                    if lacks_cookie_helper(log_tail) {
                        tracing::debug!(
                            "no bpf_get_socket_cookie for tracing programs:\n{log_tail}"
                        );
                    } else {
                        tracing::warn!(
                            "the kernel's verifier refused the `tp_btf` programs ({}); using \
                             `tp_btf_cookie_field`, whose sockets born while tracing have no \
                             cookie. Please report this kernel",
                            log_tail.lines().last().unwrap_or("no log")
                        );
                        tracing::debug!("the refusal:\n{log_tail}");
                    }
                    mode = Mode::TpBtfCookieField;
                    programs = mode.programs().iter();
                    if let Some(&(name, tracepoint)) = programs.next() {
                        attach_btf(&mut ebpf, &kernel_btf, name, tracepoint)?;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        for &(name, tracepoint) in programs {
            attach_btf(&mut ebpf, &kernel_btf, name, tracepoint)?;
        }
        // The reset tracepoints only refine how connections ended; without them enetstat
        // still traces every transition, so a kernel lacking them is a warning, not an error.
        for &(name, tracepoint) in mode.reset_programs() {
            if let Err(e) = attach_btf(&mut ebpf, &kernel_btf, name, tracepoint) {
                tracing::warn!(
                    "{e}; connection endings by reset will be inferred from socket errors only"
                );
            }
        }
        Ok(Self::with_owner_programs(
            ebpf,
            options,
            mode,
            &config,
            Some((&kernel_btf, &layout)),
        ))
    }

    /// The classic tracepoint, with its record layout from tracefs.
    fn start_classic(options: ProbeOptions) -> Result<Self, ProbeError> {
        let root = tracefs::root()?;
        let config = Config {
            tracepoint: tracefs::offsets(&root)?,
            ..Self::config(&options)
        };
        let mut ebpf = Self::load(&options, &config)?;
        let mode = Mode::Tracepoint;
        for &(name, tracepoint) in mode.programs() {
            attach_classic(&mut ebpf, name, tracepoint)?;
        }
        Ok(Self::with_owner_programs(
            ebpf, options, mode, &config, None,
        ))
    }

    /// Says (with `-v`) how many instructions the kernel's verifier went through for each
    /// loaded program (Linux 5.16+): the kernel matrix's logs then show how near a change
    /// brings a program to the verifier's limit (a million) on each kernel, before one fails.
    fn log_verified(&self) {
        for (name, program) in self.ebpf.programs() {
            if let Some(n) = program
                .info()
                .ok()
                .and_then(|i| i.verified_instruction_count())
            {
                tracing::info!("verifier: {name} took {n} instructions");
            }
        }
    }

    /// How the programs trace on this kernel.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Which owner facts the kernel gives.
    pub fn owner_hooks(&self) -> OwnerHooks {
        self.owners
    }

    /// The stream of raw records, merged from the per-CPU rings. Can be taken once.
    pub fn events(&mut self) -> Result<EventStream, ProbeError> {
        let mut maps = Vec::new();
        for name in &ring::NAMES[..ring::count() as usize] {
            let map = self
                .ebpf
                .take_map(name)
                .ok_or(ProbeError::Missing { what: "map", name })?;
            let Map::RingBuf(data) = map else {
                return Err(ProbeError::Missing {
                    what: "ring buffer map",
                    name,
                });
            };
            maps.push(data);
        }
        // Wake-per-event (`--wakeup-us 0`) leaves the kernel's default and needs no flag.
        let asleep = if self.options.wakeup_interval.is_zero() {
            None
        } else {
            let map = self
                .ebpf
                .take_map("READER_ASLEEP")
                .ok_or(ProbeError::Missing {
                    what: "map",
                    name: "READER_ASLEEP",
                })?;
            Some(Array::try_from(map).map_err(|cause| ProbeError::Map {
                name: "READER_ASLEEP",
                cause,
            })?)
        };
        EventStream::new(
            maps,
            ring::size(self.options.ring_size) as usize,
            asleep,
            self.options.wakeup_interval,
        )
    }

    /// Current kernel counters.
    pub fn counters(&self) -> Result<KernelCounters, ProbeError> {
        let map_err = |cause: MapError| ProbeError::Map {
            name: "COUNTERS",
            cause,
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
            recursion_misses: self
                .recursion_misses(sum(counter::NESTED_CALLS)?, sum(counter::EXIT_RESCUES)?),
        })
    }

    /// Events the kernel skipped because a program was already running on that CPU and that
    /// nobody recorded: the primary state program's misses not rescued by its nested copy,
    /// plus the reset programs' misses. The nested copy's own misses are not events lost: it
    /// is skipped when it interrupts itself, and either the primary was not running then (and
    /// recorded the event) or it was, and the miss is already one of the primary's unrescued
    /// ones.
    fn recursion_misses(&self, nested_calls: u64, exit_rescues: u64) -> u64 {
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
        let state_programs: Vec<&str> =
            self.mode.programs().iter().map(|(name, _)| *name).collect();
        let state_programs = state_programs.as_slice();
        let others: u64 = self
            .ebpf
            .programs()
            .map(|(name, _)| name)
            .filter(|name| !state_programs.contains(name) && !EXIT_PROGRAMS.contains(name))
            .map(misses)
            .sum();
        // The nested copies' own misses are not events lost (see above); nor are the exit
        // rescue copy's, by the same reasoning.
        let primary = state_programs.first().map_or(0, |name| misses(name));
        let exits = misses(EXIT_PROGRAMS[0]);
        let lost =
            primary.saturating_sub(nested_calls) + exits.saturating_sub(exit_rescues) + others;
        let each: Vec<(&str, u64)> = self
            .ebpf
            .programs()
            .map(|(name, _)| (name, misses(name)))
            .filter(|(_, n)| *n > 0)
            .collect();
        let skipped: u64 = each.iter().map(|(_, n)| n).sum();
        if skipped > 0 && self.misses_logged.swap(skipped, Ordering::Relaxed) != skipped {
            // Which program, and what the rescue copies made up for: the lost sum alone
            // cannot tell a transition from an owner fact or a reset.
            let each: Vec<String> = each.iter().map(|(name, n)| format!("{name} {n}")).collect();
            tracing::info!(
                "the kernel skipped programs (recursion misses): {}; rescued: {nested_calls} \
                 transitions, {exit_rescues} process ends; lost: {lost}",
                each.join(", ")
            );
        }
        lost
    }
}

/// Whether a verifier log says the kernel lacks a helper the default programs need and the
/// `*_cookie_field` ones do without: `bpf_get_socket_cookie` for tracing programs (helper 46,
/// Linux 5.12) or `bpf_get_current_task_btf` (helper 158, 5.11). Debian's 5.10 says
/// `unknown func bpf_get_socket_cookie#46` (the kernel's `"unknown func %s#%d"`: a helper
/// this program type may not call) and `invalid func unknown#158` (`"invalid func %s#%d"`: a
/// helper it has never heard of). Any other refusal, another unknown helper included, is not
/// this one.
fn lacks_cookie_helper(log: &str) -> bool {
    log.lines().any(|line| {
        let line = line.trim();
        line.strip_prefix("unknown func ")
            .or_else(|| line.strip_prefix("invalid func "))
            .and_then(|f| f.rsplit_once('#'))
            .is_some_and(|(name, id)| {
                matches!(name, "bpf_get_socket_cookie" | "bpf_get_current_task_btf")
                    || matches!(id, "46" | "158")
            })
    })
}

fn is_eperm(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM | libc::EACCES))
}

fn classify_load_error(e: aya::EbpfError) -> ProbeError {
    match e {
        aya::EbpfError::MapError(MapError::CreateError {
            ref name,
            ref io_error,
        }) if name.starts_with("EVENTS") && io_error.raw_os_error() == Some(libc::EINVAL) => {
            ProbeError::NoRingBuffer {
                detail: io_error.to_string(),
            }
        }
        aya::EbpfError::MapError(MapError::CreateError { io_error, .. })
            if crate::fd_limit::is_exhausted(&io_error) =>
        {
            ProbeError::NoDescriptors {
                doing: "create the eBPF maps",
                cause: io_error,
            }
        }
        aya::EbpfError::MapError(MapError::CreateError { ref io_error, .. })
            if is_eperm(io_error) =>
        {
            ProbeError::NotPermitted {
                detail: io_error.to_string(),
            }
        }
        aya::EbpfError::ProgramError(p) => classify_program_error("inet_sock_set_state", p),
        other if crate::fd_limit::caused(&other) => ProbeError::NoDescriptors {
            doing: "load the eBPF object",
            cause: std::io::Error::from_raw_os_error(libc::EMFILE),
        },
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
            if crate::fd_limit::is_exhausted(&io_error) {
                return ProbeError::NoDescriptors {
                    doing: "load the eBPF programs",
                    cause: io_error,
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

/// Whether the recursion rescue can keep its notes per CPU and level
/// (`netstat-ebpf/src/rescue.rs`): the kernel runs a tracepoint's programs with preemption
/// off, and a task's kernel stack is the 16 KiB the programs assume (KASAN doubles it). Where
/// either cannot be told, the rescue keeps to the map, which holds everywhere. Linux 7 made
/// tracepoint callbacks preemptible (SRCU-fast instead of `preempt_disable`); the newest
/// kernel the per-level notes were checked on is 6.18 (this project's host; the kernel
/// matrix covers 5.10 to 6.16), so from 6.19 on the map is used.
fn notes_per_cpu_hold() -> bool {
    let Ok(version) = aya::util::KernelVersion::current() else {
        return false;
    };
    if version >= aya::util::KernelVersion::new(6, 19, 0) {
        return false;
    }
    let build_config = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .ok()
        .and_then(|release| {
            std::fs::read_to_string(format!("/boot/config-{}", release.trim())).ok()
        });
    !build_config.is_some_and(|config| config.lines().any(|l| l == "CONFIG_KASAN=y"))
}

#[cfg(test)]
mod tests {
    use super::lacks_cookie_helper;

    /// The last 20 lines of the verifier's log (what `ProbeError::Verifier` keeps) when the
    /// `tp_btf` program is loaded on Debian's 5.10 (5.10.0-46-cloud-amd64), as the kernel
    /// matrix's guest recorded it with `ENETSTAT_LOG=enetstat=debug`.
    const TAIL_5_10: &str = include_str!("testdata/verifier-tail-5.10.txt");

    #[test]
    fn the_5_10_refusal_of_the_cookie_helper_is_recognised() {
        assert!(lacks_cookie_helper(TAIL_5_10));
        // A log that names the helper only by its number.
        assert!(lacks_cookie_helper("unknown func #46\n"));
        // 5.10 meets `bpf_get_current_task_btf` first when the level notes are on.
        assert!(lacks_cookie_helper(
            "13: (85) call unknown#158\ninvalid func unknown#158\n"
        ));
    }

    #[test]
    fn other_refusals_are_not_taken_for_a_missing_cookie_helper() {
        let others = [
            // Another helper this kernel lacks: a real surprise, reported as a bug.
            "22: (85) call bpf_sk_storage_get#107\nunknown func bpf_sk_storage_get#107\n",
            "unknown func bpf_foo#460\n",
            "invalid func unknown#212\n",
            // The cookie helper called, but the refusal is about something else.
            "22: (85) call bpf_get_socket_cookie#46\nR1 type=inv expected=sock\n",
            "",
        ];
        for log in others {
            assert!(!lacks_cookie_helper(log), "{log}");
        }
    }
}
