//! Per-CPU event counters, one bank per program that can interrupt another on a CPU.

use aya_ebpf::{macros::map, maps::PerCpuArray};
use netstat_common::counter;

/// Per-CPU event counters, indexed by [`counter`]; userspace sums them.
#[map]
static COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(counter::COUNT * counter::BANKS, 0);

/// Counter banks, one per program that may interrupt another on the same CPU.
pub const BANK_PRIMARY: u32 = 0;
pub const BANK_NESTED: u32 = 1;
pub const BANK_RESETS: u32 = 2;
pub const BANK_OWNERS: u32 = 3;
pub const BANK_EXIT_RESCUE: u32 = 4;

#[inline(always)]
pub fn count(bank: u32, index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(bank * counter::COUNT + index) {
        // SAFETY: a valid per-CPU slot, and each bank is written by one program, which the
        // kernel never runs twice at once on a CPU; so a plain increment cannot race.
        unsafe { *slot += 1 };
    }
}
