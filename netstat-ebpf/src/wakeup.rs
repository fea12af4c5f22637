//! When a record wakes the reader.
//!
//! A wakeup is an IPI to the reader's CPU (irq_work, then a reschedule); on a virtual machine
//! each is an exit to the hypervisor, and the kernel's default (wake a reader that had read
//! everything) wakes a fast reader on nearly every event. So the reader says when it wants
//! waking: it sets [`READER_ASLEEP`] just before it sleeps on the ring, and the first record
//! after that wakes it (and clears the flag). While it is awake it polls the ring on its own
//! timer and no record sends an IPI. Two CPUs racing on the flag cost one spare wakeup.
//!
//! No wakeup is lost to the race between the two: a program commits its record, then reads
//! the flag; the reader sets the flag, then, after a full barrier, looks at the ring's
//! positions and sleeps only if nothing is reserved. The commit is the kernel's `xchg` on the
//! record's header, a full barrier, after the reservation published the producer position.
//! So either the program sees the flag, or the reader sees the record (see `EventStream` in
//! userspace).
//!
//! The flag is read after the commit, not before it, so that the record's own flags cannot
//! carry the wakeup: a program that finds the reader asleep wakes it with a second,
//! empty reservation, discarded with `BPF_RB_FORCE_WAKEUP` (the reader skips discarded
//! records). That happens once per sleep. Reading the flag before the commit needed a barrier
//! of its own, a locked add, which waited for the record's stores to reach memory the
//! reader's CPU last held: half of the state program's time on the benchmark's VM, which the
//! commit's `xchg` then paid nothing more for.

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, RingBuf},
};
use netstat_common::Config;

/// 1 while the reader sleeps waiting for a wakeup; set by userspace, cleared here.
#[map]
static READER_ASLEEP: Array<u32> = Array::with_max_entries(1, 0);

const BPF_RB_NO_WAKEUP: u64 = 1;
const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// Kernel monotonic time, for records and wakeups.
#[inline(always)]
pub fn now() -> u64 {
    // SAFETY: no preconditions.
    unsafe { bpf_ktime_get_ns() }
}

/// The kernel's header before each record in the ring.
const RECORD_HEADER: u64 = 8;

/// The submit flags for a record of `size` bytes: wake the reader if this record takes the
/// ring's backlog past another multiple of `wakeup_bytes` (an eighth of the ring: a reader
/// stalled on its timer) or, once half the ring waits, on every record. Otherwise leave it
/// be; a sleeping reader is woken after the commit, by [`wake_if_asleep`].
/// `wakeup_interval_ns` 0 (`--wakeup-us 0`) keeps the kernel's default.
///
/// Waking on every record above the first mark was an irq_work IPI per event whenever a busy
/// reader fell an eighth behind (152k in 4 s of the benchmark's server shape). Only crossing
/// the marks, a reader that cannot keep up lost records instead: those wakeups, costly as
/// they are, slow the traced host down to what the reader can take. So they are kept for
/// when the ring is half full, and lose nothing there.
#[inline(always)]
pub fn flags(config: &Config, ring: &RingBuf, size: usize) -> u64 {
    if config.wakeup_interval_ns == 0 {
        return 0;
    }
    // `wakeup_bytes` is a power of two (an eighth of the ring); the backlog counts this
    // record, reserved but not yet submitted.
    let backlog = ring.query(BPF_RB_AVAIL_DATA);
    let span = (size as u64 + RECORD_HEADER + 7) & !7;
    let mark = config.wakeup_bytes;
    if backlog >= 4 * mark || (backlog >= mark && backlog & (mark - 1) < span) {
        BPF_RB_FORCE_WAKEUP
    } else {
        BPF_RB_NO_WAKEUP
    }
}

/// After a record's commit: wakes the reader if it sleeps waiting for one, by reserving an
/// empty record and discarding it with a forced wakeup. Must follow the commit (see the
/// module's docs for why that order loses no wakeup).
#[inline(always)]
pub fn wake_if_asleep(config: &Config, ring: &RingBuf) {
    if config.wakeup_interval_ns == 0 {
        return;
    }
    let Some(asleep) = READER_ASLEEP.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: a valid map value pointer; racing CPUs at worst both wake the reader.
    unsafe {
        if core::ptr::read_volatile(asleep) == 0 {
            return;
        }
        core::ptr::write_volatile(asleep, 0);
    }
    match ring.reserve::<u64>(0) {
        Some(entry) => entry.discard(BPF_RB_FORCE_WAKEUP),
        // No room for even that (the ring is full, so the marks have woken the reader
        // already): leave the flag for the next record.
        // SAFETY: as above.
        None => unsafe { core::ptr::write_volatile(asleep, 1) },
    }
}
