//! The delivery floor (`enetstat-loadgen floor`): the least a tracer can cost that delivers a
//! record of every TCP state transition to userspace.
//!
//! A raw tracepoint program on `sock:inet_sock_set_state` reserves a small record in its
//! CPU's ring buffer (one ring per CPU, as enetstat has), writes the time into it and commits
//! it with `BPF_RB_NO_WAKEUP`: no field of the socket read, no filter, no wakeup. A reader
//! wakes on its own timer, reads every record committed since (each line of each record, as a
//! real reader must), and releases them. Whatever a real tracer does on top (read the socket,
//! build a full record, decode, keep a table, print) costs more than this. The overhead
//! benchmark runs it beside enetstat, so a target below what the floor itself reaches shows
//! as such, on the host measured.
//!
//! The program is some twenty instructions a CPU, assembled here and loaded with the `bpf`
//! system call: the benchmark needs no compiler for it, and nothing of enetstat's own kernel
//! side. A reservation that fails (a full ring) is counted in a one-slot array map and
//! reported.

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    ptr::{self, NonNull},
    sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct FloorOptions {
    /// Bytes of each record (the ring adds an 8-byte header); the program writes one word
    /// every 64 bytes, so every cache line of it is written.
    pub record_bytes: u32,
    /// How often the reader wakes to read what came.
    pub interval: Duration,
    /// Each CPU's ring's size: a power of two, at least a page.
    pub ring_bytes: u32,
}

/// Printed when the floor stops.
#[derive(Clone, Debug, Serialize)]
pub struct FloorReport {
    pub mode: &'static str,
    pub record_bytes: u32,
    pub interval_us: u64,
    /// Records read.
    pub records: u64,
    /// Records the program could not reserve (the ring was full): lost.
    pub lost: u64,
    pub elapsed_s: f64,
}

// The bpf(2) commands, map and program types, and helpers used (include/uapi/linux/bpf.h).
const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_RAW_TRACEPOINT_OPEN: libc::c_long = 17;
const BPF_MAP_TYPE_ARRAY: u32 = 2;
const BPF_MAP_TYPE_RINGBUF: u32 = 27;
const BPF_PROG_TYPE_RAW_TRACEPOINT: u32 = 17;
const HELPER_MAP_LOOKUP_ELEM: i32 = 1;
const HELPER_KTIME_GET_NS: i32 = 5;
const HELPER_GET_SMP_PROCESSOR_ID: i32 = 8;
const HELPER_RINGBUF_RESERVE: i32 = 131;
const HELPER_RINGBUF_SUBMIT: i32 = 132;
const BPF_RB_NO_WAKEUP: i32 = 1;
/// A record's header: its length, and these two flags in the top bits.
const BPF_RINGBUF_BUSY_BIT: u32 = 1 << 31;
const BPF_RINGBUF_DISCARD_BIT: u32 = 1 << 30;
const BPF_RINGBUF_HDR_SZ: u64 = 8;

/// One eBPF instruction.
#[derive(Clone, Copy)]
#[repr(C)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}

/// `dst = src` (64-bit).
fn mov(dst: u8, src: u8) -> Insn {
    insn(0xbf, dst, src, 0, 0)
}

/// `dst = imm` (64-bit).
fn mov_imm(dst: u8, imm: i32) -> Insn {
    insn(0xb7, dst, 0, 0, imm)
}

/// `dst = map` (a 64-bit load that the verifier turns into the map's address): two slots.
fn ld_map(dst: u8, map: &OwnedFd) -> [Insn; 2] {
    const BPF_PSEUDO_MAP_FD: u8 = 1;
    [
        insn(0x18, dst, BPF_PSEUDO_MAP_FD, 0, map.as_raw_fd()),
        insn(0, 0, 0, 0, 0),
    ]
}

fn call(helper: i32) -> Insn {
    insn(0x85, 0, 0, 0, helper)
}

/// `if dst != imm goto +off`.
fn jne(dst: u8, imm: i32, off: i16) -> Insn {
    insn(0x55, dst, 0, off, imm)
}

/// `if dst == 0 goto +off`.
fn jeq_zero(dst: u8, off: i16) -> Insn {
    insn(0x15, dst, 0, off, 0)
}

fn exit() -> Insn {
    insn(0x95, 0, 0, 0, 0)
}

/// The program: on CPU i, reserve in ring i, stamp every line, commit without a wakeup;
/// count a failed reservation in `lost[0]`. One ring per CPU, as enetstat has: CPUs that
/// share a ring contend for its lock and its producer position on every record.
fn program(rings: &[OwnedFd], lost: &OwnedFd, record_bytes: u32) -> Vec<Insn> {
    let mut p = vec![call(HELPER_GET_SMP_PROCESSOR_ID)];
    let mut on_null = Vec::new();
    for (cpu, ring) in rings.iter().enumerate() {
        let check = p.len();
        if cpu + 1 < rings.len() {
            p.push(jne(0, cpu as i32, 0)); // patched below
        }
        p.extend(ld_map(1, ring));
        p.push(mov_imm(2, record_bytes as i32));
        p.push(mov_imm(3, 0));
        p.push(call(HELPER_RINGBUF_RESERVE));
        on_null.push(p.len());
        p.push(jeq_zero(0, 0)); // patched below
        p.push(mov(6, 0));
        p.push(call(HELPER_KTIME_GET_NS));
        for offset in (0..record_bytes.saturating_sub(7)).step_by(64) {
            // *(u64 *)(r6 + offset) = r0
            p.push(insn(0x7b, 6, 0, offset as i16, 0));
        }
        p.push(mov(1, 6));
        p.push(mov_imm(2, BPF_RB_NO_WAKEUP));
        p.push(call(HELPER_RINGBUF_SUBMIT));
        p.push(mov_imm(0, 0));
        p.push(exit());
        if cpu + 1 < rings.len() {
            p[check] = jne(0, cpu as i32, (p.len() - check - 1) as i16);
        }
    }
    let failed = p.len();
    for at in on_null {
        p[at] = jeq_zero(0, (failed - at - 1) as i16);
    }
    // key = 0 on the stack; r0 = lookup(lost, &key); if r0 { lock *(u64 *)r0 += 1 }
    p.push(insn(0x62, 10, 0, -4, 0));
    p.push(mov(2, 10));
    p.push(insn(0x07, 2, 0, 0, -4));
    p.extend(ld_map(1, lost));
    p.push(call(HELPER_MAP_LOOKUP_ELEM));
    p.push(jeq_zero(0, 2));
    p.push(mov_imm(1, 1));
    p.push(insn(0xdb, 0, 1, 0, 0));
    p.push(mov_imm(0, 0));
    p.push(exit());
    p
}

/// The `bpf` system call with `attr` (at most 128 bytes, zero-padded).
fn bpf(cmd: libc::c_long, attr: &[u8]) -> io::Result<libc::c_long> {
    let mut buf = [0u64; 16];
    assert!(attr.len() <= size_of_val(&buf));
    // SAFETY: `buf` is 128 bytes and `attr` fits in it.
    unsafe { ptr::copy_nonoverlapping(attr.as_ptr(), buf.as_mut_ptr().cast(), attr.len()) };
    // SAFETY: bpf(2) reads `size` bytes of `buf`, which outlives the call; pointers inside it
    // (set by the callers) point at buffers that outlive it too.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, buf.as_mut_ptr(), size_of_val(&buf)) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: a file descriptor the kernel just returned to us, owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(r as i32) }
}

fn words(parts: &[u32]) -> Vec<u8> {
    parts.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

fn create_map(kind: u32, key: u32, value: u32, entries: u32) -> io::Result<OwnedFd> {
    bpf(BPF_MAP_CREATE, &words(&[kind, key, value, entries])).map(fd)
}

fn load(insns: &[Insn]) -> Result<OwnedFd> {
    let license = c"GPL";
    let mut log = vec![0u8; 64 * 1024];
    let mut attr = Vec::with_capacity(64);
    attr.extend(words(&[BPF_PROG_TYPE_RAW_TRACEPOINT, insns.len() as u32]));
    attr.extend((insns.as_ptr() as u64).to_ne_bytes());
    attr.extend((license.as_ptr() as u64).to_ne_bytes());
    attr.extend(words(&[1, log.len() as u32]));
    attr.extend((log.as_mut_ptr() as u64).to_ne_bytes());
    attr.extend(words(&[0, 0]));
    let mut name = [0u8; 16];
    name[..14].copy_from_slice(b"enetstat_floor");
    attr.extend(name);
    bpf(BPF_PROG_LOAD, &attr).map(fd).map_err(|e| {
        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
        anyhow::anyhow!(
            "cannot load the floor's program ({e}); the verifier said: {}",
            String::from_utf8_lossy(&log[..end]).trim()
        )
    })
}

fn attach(prog: &OwnedFd) -> io::Result<OwnedFd> {
    let name = CString::new("inet_sock_set_state").expect("no NUL in the name");
    let mut attr = (name.as_ptr() as u64).to_ne_bytes().to_vec();
    attr.extend(words(&[prog.as_raw_fd() as u32]));
    bpf(BPF_RAW_TRACEPOINT_OPEN, &attr).map(fd)
}

fn lost_count(lost: &OwnedFd) -> io::Result<u64> {
    let key = 0u32;
    let mut value = 0u64;
    let mut attr = words(&[lost.as_raw_fd() as u32, 0]);
    attr.extend((&raw const key as u64).to_ne_bytes());
    attr.extend((&raw mut value as u64).to_ne_bytes());
    bpf(BPF_MAP_LOOKUP_ELEM, &attr)?;
    Ok(value)
}

/// A shared mapping, unmapped on drop.
struct Mapping {
    addr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(map: &OwnedFd, len: usize, prot: libc::c_int, offset: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh mapping of the map's pages; the kernel checks the range and rights.
        let addr = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                map.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        match NonNull::new(addr.cast::<u8>()) {
            Some(addr) if addr.as_ptr().cast() != libc::MAP_FAILED => Ok(Mapping { addr, len }),
            _ => Err(io::Error::last_os_error()),
        }
    }

    /// The 64-bit position at the mapping's start, shared with the kernel.
    fn position(&self) -> &AtomicU64 {
        // SAFETY: the mapping is page-aligned and at least a page long; the kernel updates
        // the word atomically, and this process only through the returned atomic.
        unsafe { self.addr.cast::<AtomicU64>().as_ref() }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, no longer referenced.
        unsafe { libc::munmap(self.addr.as_ptr().cast(), self.len) };
    }
}

/// The most CPUs given a ring of their own; more share the last.
const MAX_CPUS: libc::c_long = 64;

/// One CPU's ring, mapped.
struct Ring {
    consumer: Mapping,
    /// The producer's page, then the data twice in a row, as the kernel maps it: a record
    /// that wraps reads as one.
    producer: Mapping,
    page: usize,
    mask: u64,
}

impl Ring {
    fn map(map: &OwnedFd, page: usize, bytes: usize) -> Result<Ring> {
        Ok(Ring {
            consumer: Mapping::new(map, page, libc::PROT_READ | libc::PROT_WRITE, 0)
                .context("cannot map a ring's consumer page")?,
            producer: Mapping::new(map, page + 2 * bytes, libc::PROT_READ, page)
                .context("cannot map a ring's data")?,
            page,
            mask: bytes as u64 - 1,
        })
    }

    /// Reads every line of every record committed since the last call (folded into `sink`),
    /// releases them, and returns how many there were.
    fn read(&mut self, sink: &mut u64) -> u64 {
        let end = self.producer.position().load(Ordering::Acquire);
        let mut at = self.consumer.position().load(Ordering::Relaxed);
        let mut records = 0;
        while at < end {
            // SAFETY: `at & mask` is inside the first copy of the data, and a record (at most
            // a quarter of the ring) ends inside the second.
            let header = unsafe {
                self.producer
                    .addr
                    .add(self.page + (at & self.mask) as usize)
            };
            // SAFETY: the header is 8-byte aligned; the kernel writes its length atomically.
            let len = unsafe { header.cast::<AtomicU32>().as_ref() }.load(Ordering::Acquire);
            if len & BPF_RINGBUF_BUSY_BIT != 0 {
                break;
            }
            let data_len = u64::from(len & !(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT));
            if len & BPF_RINGBUF_DISCARD_BIT == 0 {
                for offset in (0..data_len.saturating_sub(7)).step_by(64) {
                    // SAFETY: inside the committed record, 8-byte aligned.
                    *sink ^= unsafe {
                        header
                            .add((BPF_RINGBUF_HDR_SZ + offset) as usize)
                            .cast::<u64>()
                            .read_volatile()
                    };
                }
                records += 1;
            }
            at += (BPF_RINGBUF_HDR_SZ + data_len).next_multiple_of(8);
        }
        self.consumer.position().store(at, Ordering::Release);
        records
    }
}

/// Loads and attaches the floor, reads until `stop` is set, then detaches and reports.
/// `ready` is called once the program is attached.
pub fn run(opts: &FloorOptions, stop: &AtomicBool, ready: impl FnOnce()) -> Result<FloorReport> {
    let ring_bytes = opts.ring_bytes as usize;
    // SAFETY: sysconf reads a constant of the system.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    if !ring_bytes.is_power_of_two() || ring_bytes < page {
        bail!("the ring's size must be a power of two of at least {page} bytes");
    }
    if !(8..=ring_bytes as u32 / 4).contains(&opts.record_bytes) {
        bail!("--record-bytes must be between 8 and a quarter of the ring");
    }
    // SAFETY: sysconf reads a constant of the system.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_CONF) }.clamp(1, MAX_CPUS) as usize;
    let maps = (0..cpus)
        .map(|_| create_map(BPF_MAP_TYPE_RINGBUF, 0, 0, opts.ring_bytes))
        .collect::<io::Result<Vec<_>>>()
        .context("cannot create a ring buffer (Linux 5.8 or later, and root or CAP_BPF)")?;
    let lost = create_map(BPF_MAP_TYPE_ARRAY, 4, 8, 1).context("cannot create a map")?;
    let prog = load(&program(&maps, &lost, opts.record_bytes))?;
    let mut rings = maps
        .iter()
        .map(|map| Ring::map(map, page, ring_bytes))
        .collect::<Result<Vec<_>>>()?;
    let link = attach(&prog).context("cannot attach to sock:inet_sock_set_state")?;
    ready();

    let started = Instant::now();
    let mut records = 0u64;
    let mut sink = 0u64;
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(opts.interval);
        for ring in &mut rings {
            records += ring.read(&mut sink);
        }
    }
    std::hint::black_box(sink);
    drop(link);
    Ok(FloorReport {
        mode: "floor",
        record_bytes: opts.record_bytes,
        interval_us: opts.interval.as_micros() as u64,
        records,
        lost: lost_count(&lost).context("cannot read the floor's lost count")?,
        elapsed_s: started.elapsed().as_secs_f64(),
    })
}

#[cfg(test)]
mod tests {
    use std::{sync::mpsc, thread};

    use enetstat_tests::require_root;

    use super::*;
    use crate::{
        TRANSITIONS_PER_CONNECTION, TRANSITIONS_PER_LISTENER,
        churn::{self, ChurnOptions, Families, Shape},
        placement::Placement,
    };

    /// Runs the floor with `opts` around a churn of `connections`; returns its report and
    /// the transitions the churn made.
    fn floor_around_churn(opts: FloorOptions, connections: u64) -> (FloorReport, u64) {
        let stop = AtomicBool::new(false);
        thread::scope(|s| {
            let (ready_tx, ready_rx) = mpsc::channel();
            let floor = s.spawn(|| run(&opts, &stop, move || ready_tx.send(()).unwrap()));
            ready_rx.recv().expect("the floor failed to start");
            let churn = churn::run(&ChurnOptions {
                shape: Shape::Server,
                connectors: 1,
                payload: 1,
                workers: 1,
                duration: None,
                connections: Some(connections),
                rate: None,
                base_port: 0,
                families: Families::V4,
                placement: Placement::Free,
            })
            .unwrap();
            assert_eq!(churn.errors, 0, "{:?}", churn.first_error);
            // The reader's next pass reads the churn's last records.
            thread::sleep(opts.interval * 3);
            stop.store(true, Ordering::Relaxed);
            (floor.join().unwrap().unwrap(), churn.transitions)
        })
    }

    #[test]
    fn the_floor_reads_a_record_of_every_transition() {
        if !require_root("the_floor_reads_a_record_of_every_transition") {
            return;
        }
        let opts = FloorOptions {
            record_bytes: 136,
            interval: Duration::from_millis(4),
            ring_bytes: 4 << 20,
        };
        let (report, transitions) = floor_around_churn(opts, 300);
        assert_eq!(
            transitions,
            300 * TRANSITIONS_PER_CONNECTION + TRANSITIONS_PER_LISTENER
        );
        assert_eq!(report.lost, 0);
        // Other tests' sockets may add theirs; none of the churn's may be missing.
        assert!(
            report.records >= transitions,
            "{} records for {transitions} transitions",
            report.records
        );
    }

    #[test]
    fn a_full_ring_counts_what_the_floor_could_not_keep() {
        if !require_root("a_full_ring_counts_what_the_floor_could_not_keep") {
            return;
        }
        // One page of ring (170 records of 24 bytes), read every 200 ms: a churn of 5,002
        // transitions cannot fit, and what does not is counted.
        let opts = FloorOptions {
            record_bytes: 16,
            interval: Duration::from_millis(200),
            ring_bytes: 4096,
        };
        let (report, transitions) = floor_around_churn(opts, 500);
        assert!(report.lost > 0, "{report:?}");
        assert!(report.records + report.lost >= transitions, "{report:?}");
    }

    #[test]
    fn a_record_too_large_for_the_ring_is_refused_before_anything_loads() {
        let stop = AtomicBool::new(true);
        let opts = FloorOptions {
            record_bytes: 4096,
            interval: Duration::from_millis(1),
            ring_bytes: 4096,
        };
        let e = run(&opts, &stop, || panic!("must not attach")).unwrap_err();
        assert!(e.to_string().contains("--record-bytes"), "{e}");
    }
}
