//! The ring buffers the records go to: one per CPU, up to [`RINGS`] (eight).
//!
//! One ring shared by every CPU serialises them on its spinlock and bounces its lock, its
//! producer position and the cache line between two records from CPU to CPU. In the
//! benchmark's server shape (both CPUs making transitions) that was a third of the state
//! program's time: 350 ns a record with one ring, 237 with the load on one CPU. So each CPU
//! writes to a ring of its own, and userspace merges them by the records' times (see
//! `probe/stream.rs` in netstat-user). Beyond [`RINGS`] CPUs, CPUs share rings (`cpu % rings`).
//!
//! Records take their time *before* the reservation. The merge relies on it: a transition
//! that follows another of the same socket starts after that one was committed, so its time
//! is later than the commit, and everything reserved ahead of the earlier one in its ring
//! took its time before that. Taken after, a program preempted between the two (Linux 7
//! preempts tracepoint programs) carried a late time at the head of its ring, while the
//! socket's earlier transition waited behind it and its next, in another ring, went first.
//!
//! Each ring is its own map, chosen by a branch, not an array of maps: map-in-map needs aya's
//! BTF map definitions, which the classic tracepoint's kernels (no BTF) may not take. The
//! branch costs the verifier nothing beyond the copy into the ring, because the record is
//! built in full before ([`emit`]). Filled in place, with eight rings Linux 6.1's verifier
//! stopped at its million instructions, and with two it took 875k; built before, it takes
//! 78k with eight. Userspace sizes the rings in use and shrinks the others to a page.

use aya_ebpf::{
    helpers::bpf_get_smp_processor_id,
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use netstat_common::{Config, StateChange, counter};

use crate::{counters::count, wakeup};

/// The most rings: userspace uses `min(possible CPUs, RINGS)` of them.
pub const RINGS: u32 = netstat_common::RINGS;

#[map]
static EVENTS_0: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_1: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_2: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_3: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_4: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_5: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_6: RingBuf = RingBuf::with_byte_size(4096, 0);
#[map]
static EVENTS_7: RingBuf = RingBuf::with_byte_size(4096, 0);

const _: () = assert!(RINGS == 8);

/// This CPU's ring's index.
#[inline(always)]
fn index(config: &Config) -> u32 {
    // SAFETY: no preconditions.
    let cpu = unsafe { bpf_get_smp_processor_id() };
    // `checked_rem`: no division-by-zero panic path for the verifier to refuse.
    cpu.checked_rem(config.rings as u32).unwrap_or(0)
}

/// Calls `f` with this CPU's ring. The program cannot migrate while it runs, so its reserve
/// and its backlog query go to the same ring.
#[inline(always)]
fn with<R>(config: &Config, f: impl FnOnce(&'static RingBuf) -> R) -> R {
    match index(config) {
        0 => f(&EVENTS_0),
        1 => f(&EVENTS_1),
        2 => f(&EVENTS_2),
        3 => f(&EVENTS_3),
        4 => f(&EVENTS_4),
        5 => f(&EVENTS_5),
        6 => f(&EVENTS_6),
        _ => f(&EVENTS_7),
    }
}

/// Copies `record`, built in full beforehand, into this CPU's ring and commits it, with the
/// wakeup flags (see [`wakeup`]) worked out right after the reservation, then wakes the
/// reader if it sleeps; a full ring counts in `bank`.
///
/// Nothing but the copy and the flags happens while the space is reserved, on purpose:
/// verifiers before Linux 6.3 never treat two paths as the same while they hold a
/// reservation (they compare the reference ids, which differ on every path), so every branch
/// taken between a reservation and its commit doubled the paths they followed. Filling the
/// record in place took Linux 6.1 to 875k instructions of its million with two rings; built
/// before, 78k with eight.
#[inline(always)]
pub fn emit<T: Copy + 'static>(config: &Config, bank: u32, record: &T) {
    let sent = with(config, |ring| {
        let Some(mut entry) = ring.reserve::<T>(0) else {
            return false;
        };
        entry.write(*record);
        entry.submit(wakeup::flags(config, ring, size_of::<T>()));
        wakeup::wake_if_asleep(config, ring);
        true
    });
    if !sent {
        count(bank, counter::RINGBUF_FULL);
    }
}

/// Where a [`StateChange`] is built before it is copied into the ring: a map value, as the
/// record is too large for the stack beside the rest. One per counter bank, as the read
/// scratch (see `read::SCRATCH`).
#[map]
static STAGED: PerCpuArray<StateChange> = PerCpuArray::with_max_entries(counter::BANKS, 0);

/// [`emit`] for a transition, by way of [`STAGED`].
#[inline(always)]
pub fn emit_state_change(config: &Config, bank: u32, record: StateChange) {
    let Some(staged) = STAGED.get_ptr_mut(bank) else {
        return;
    };
    // SAFETY: this CPU's and this bank's map value, which no other program writes.
    let staged = unsafe {
        staged.write(record);
        &*staged
    };
    emit(config, bank, staged);
}
