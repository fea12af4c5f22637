//! When a record wakes the reader.
//!
//! A wakeup is an IPI to the reader's CPU (irq_work, then a reschedule); on a virtual machine
//! each is an exit to the hypervisor, and the kernel's default (wake a reader that had read
//! everything) wakes a fast reader on nearly every event. So the reader says when it wants
//! waking: it sets [`READER_ASLEEP`] just before it sleeps on the ring, and the first record
//! after that wakes it (and clears the flag). While it is awake it polls the ring on its own
//! timer and no record sends an IPI. Two CPUs racing on the flag cost one spare wakeup.
//!
//! No wakeup is lost to the race between the two: a program reserves its record (which
//! publishes the ring's producer position), then, after a full barrier, reads the flag; the
//! reader sets the flag, then, after a full barrier, looks at the positions and sleeps only if
//! nothing is reserved. So either the program sees the flag, or the reader sees the record
//! (see `EventStream` in userspace).

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, PerCpuArray, RingBuf},
};
use netstat_common::Config;

/// 1 while the reader sleeps waiting for a wakeup; set by userspace, cleared here.
#[map]
static READER_ASLEEP: Array<u32> = Array::with_max_entries(1, 0);

/// Per-CPU scratch for the barrier before the flag is read: a locked add on a line no other
/// CPU touches.
#[map]
static BARRIER: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

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

/// The submit flags for a record of `size` bytes: wake the reader if it sleeps waiting for
/// one; if this record takes the ring's backlog past another multiple of `wakeup_bytes` (an
/// eighth of the ring: a reader stalled on its timer); or, once half the ring waits, on every
/// record. Otherwise leave it be. `wakeup_interval_ns` 0 (`--wakeup-us 0`) keeps the kernel's
/// default.
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
    let Some(asleep) = READER_ASLEEP.get_ptr_mut(0) else {
        return 0;
    };
    // The reservation stored the producer position with a plain release store, which a later
    // load may pass; a locked add (an atomic every supported kernel takes, result unused)
    // orders it before the flag is read.
    #[cfg(target_arch = "bpf")]
    if let Some(slot) = BARRIER.get_ptr_mut(0) {
        // SAFETY: a valid, aligned per-CPU map value; the asm touches nothing else.
        unsafe {
            core::arch::asm!(
                "lock *(u64 *)({slot} + 0) += {one}",
                slot = in(reg) slot,
                one = in(reg) 1u64,
                options(nostack),
            );
        }
    }
    // SAFETY: a valid map value pointer; racing CPUs at worst both wake the reader.
    unsafe {
        if core::ptr::read_volatile(asleep) != 0 {
            core::ptr::write_volatile(asleep, 0);
            return BPF_RB_FORCE_WAKEUP;
        }
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
