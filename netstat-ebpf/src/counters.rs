//! Per-CPU event counters, one bank per program that can interrupt another on a CPU; and
//! which bank a call takes, for the programs that can interrupt themselves.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use netstat_common::counter;

/// Per-CPU event counters, indexed by [`counter`]; userspace sums them.
#[map]
static COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(counter::COUNT * counter::BANKS, 0);

/// Counter banks, one per program (or level of a program) that may interrupt another on the
/// same CPU. A bank also picks the program's per-CPU scratch (`read.rs`, `ring.rs`).
pub const BANK_PRIMARY: u32 = 0;
pub const BANK_NESTED: u32 = 1;
pub const BANK_RESETS: u32 = 2;
pub const BANK_OWNERS: u32 = 3;
pub const BANK_EXIT_RESCUE: u32 = 4;
/// The banks of [`Reentrant`] programs' calls that interrupted a call of their own.
const BANK_PRIMARY_INNER: u32 = 5;
const BANK_NESTED_INNER: u32 = 6;
const BANK_RESETS_INNER: u32 = 7;
/// The first copy of the exit program: apart from the accept programs', which a preemptible
/// `fexit` program may be in the middle of on the CPU.
pub const BANK_EXITS: u32 = 8;

const _: () = assert!(BANK_EXITS + 1 == counter::BANKS);

#[inline(always)]
pub fn count(bank: u32, index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(bank * counter::COUNT + index) {
        // SAFETY: a valid per-CPU slot, and each bank is written by one call at a time on a
        // CPU (see [`Call`]); so a plain increment cannot race.
        unsafe { *slot += 1 };
    }
}

/// A BTF tracepoint program that can run inside itself on one CPU.
///
/// Kernels before 6.0 have no recursion guard for BTF (raw) tracepoint programs: a softirq
/// that interrupts a call in process context runs the same program again, on the same CPU,
/// before the first call resumes. Sharing a bank, the inner call wrote its socket over the
/// outer's scratch: on Debian's 5.10 the kernel matrix saw an accepted socket's CLOSE record
/// carry its own port twice, the remote one taken from another socket. So a call that
/// interrupts one of its own program takes another bank. (With the guard, from 6.0, the
/// kernel skips such a call and the nested copy records it, in its own bank.)
#[derive(Clone, Copy)]
pub struct Reentrant {
    /// Index in [`DEPTH`].
    slot: u32,
    outer: u32,
    inner: u32,
}

/// The state program, its nested copy, and the reset programs.
pub const STATE: Reentrant = Reentrant {
    slot: 0,
    outer: BANK_PRIMARY,
    inner: BANK_PRIMARY_INNER,
};
pub const STATE_NESTED: Reentrant = Reentrant {
    slot: 1,
    outer: BANK_NESTED,
    inner: BANK_NESTED_INNER,
};
pub const RESETS: Reentrant = Reentrant {
    slot: 2,
    outer: BANK_RESETS,
    inner: BANK_RESETS_INNER,
};

/// Calls of each [`Reentrant`] program in progress on this CPU. Calls nest strictly (an
/// interrupting call ends before the one it interrupted resumes), so a plain increment and
/// decrement cannot race; where the kernel preempts programs (Linux 7) it also guards them
/// against recursion, and a call never finds another of its program in progress.
#[map]
static DEPTH: PerCpuArray<u32> = PerCpuArray::with_max_entries(3, 0);

/// One call of a [`Reentrant`] program, from its start to its end (drop).
pub struct Call {
    depth: *mut u32,
    pub bank: u32,
}

impl Call {
    /// Begins a call of `program`: its outer bank, or the inner one when the call
    /// interrupted another of its program. (A third level cannot happen: no transition or
    /// reset is made in hard interrupt context.)
    #[inline(always)]
    pub fn enter(program: Reentrant) -> Self {
        let Some(depth) = DEPTH.get_ptr_mut(program.slot) else {
            return Call {
                depth: core::ptr::null_mut(),
                bank: program.outer,
            };
        };
        // SAFETY: this CPU's map value; see `DEPTH` for why a plain update cannot race.
        let outer = unsafe {
            let d = *depth;
            *depth = d.wrapping_add(1);
            d
        };
        Call {
            depth,
            bank: if outer == 0 {
                program.outer
            } else {
                program.inner
            },
        }
    }
}

impl Drop for Call {
    #[inline(always)]
    fn drop(&mut self) {
        if !self.depth.is_null() {
            // SAFETY: as in `enter`.
            unsafe { *self.depth = (*self.depth).wrapping_sub(1) };
        }
    }
}
