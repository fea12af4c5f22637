//! The recursion rescue: a second copy of the state program records the transitions the
//! kernel skipped the first for. See `inet_sock_set_state_nested` in `main.rs` for why.

use aya_ebpf::{macros::map, maps::PerCpuArray, programs::BtfTracePointContext};

use crate::wakeup::now;

/// What identifies one tracepoint call: the socket's address, and the transition. (The
/// address, not the cookie: it is free to read, and it is there on kernels without the cookie
/// helper; two calls for one socket in progress at once on a CPU differ in their states.)
#[inline(always)]
pub fn call_id(ctx: &BtfTracePointContext) -> (u64, u64) {
    let sk: *const u8 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    // Never 0, so an empty slot matches nothing.
    let states = 1 << 16 | ((old_state as u64) & 0xff) << 8 | (new_state as u64) & 0xff;
    (sk as u64, states)
}

/// How many calls [`HANDLED`] can hold: one per level of nesting (process context, softirq)
/// and then some, for entries a skipped nested copy leaves behind.
const HANDLED_DEPTH: u32 = 8;

/// Per-CPU stack of the calls the primary program is handling or has handled and its nested
/// copy has not yet seen: `[socket address, states]` pairs. See [`inet_sock_set_state_nested`].
#[map]
static HANDLED: PerCpuArray<u64> = PerCpuArray::with_max_entries(2 * HANDLED_DEPTH, 0);

/// Per-CPU: the depth of [`HANDLED`], and whether the nested copy is running.
#[map]
static HANDLED_LEN: PerCpuArray<u32> = PerCpuArray::with_max_entries(2, 0);
const LEN: u32 = 0;
const NESTED_RUNNING: u32 = 1;

#[inline(always)]
pub fn set_nested_running(value: u32) {
    if let Some(slot) = HANDLED_LEN.get_ptr_mut(NESTED_RUNNING) {
        // SAFETY: a valid per-CPU slot, written only by the nested copy on this CPU.
        unsafe { core::ptr::write_volatile(slot, value) };
    }
}

/// The low bits of a note's second word say which transition; the high bits when it was made,
/// in units of 1024 ns.
const NOTE_ID_BITS: u64 = 20;
const NOTE_ID_MASK: u64 = (1 << NOTE_ID_BITS) - 1;
/// A note older than this (in units of 1024 ns: 10 ms) was left by a nested copy the kernel
/// skipped: no call is interrupted that long (the kernel hands softirq work over to
/// ksoftirqd after 2 ms).
const NOTE_MAX_AGE: u64 = 10_000;

#[inline(always)]
fn slot(index: u32) -> Option<*mut u64> {
    HANDLED.get_ptr_mut(index)
}

/// The primary program notes the call it is handling, unless it interrupted the nested copy:
/// then the kernel skips that copy for this call, and the note would never be taken off.
#[inline(always)]
pub fn push_handled(id: (u64, u64)) {
    let (Some(len), Some(nested)) = (
        HANDLED_LEN.get_ptr_mut(LEN),
        HANDLED_LEN.get_ptr_mut(NESTED_RUNNING),
    ) else {
        return;
    };
    // SAFETY: a valid per-CPU slot.
    if unsafe { core::ptr::read_volatile(nested) } != 0 {
        return;
    }
    let now = now() >> 10;
    // SAFETY: valid per-CPU slots; this CPU runs nothing else while we touch them but what
    // interrupts us, and that leaves the stack as it found it (see the nested program).
    unsafe {
        let mut n = core::ptr::read_volatile(len);
        // Notes left by skipped nested copies go once they are old.
        let mut i = HANDLED_DEPTH;
        while i > 0 {
            i -= 1;
            if i + 1 != n {
                continue;
            }
            let Some(top) = slot(2 * i + 1) else { break };
            if now.wrapping_sub(core::ptr::read_volatile(top) >> NOTE_ID_BITS) <= NOTE_MAX_AGE {
                break;
            }
            n = i;
        }
        if n >= HANDLED_DEPTH {
            // Full of recent notes: a burst of calls interrupting the nested copy, which the
            // kernel skipped for them. The note on top is one of those; a call in progress
            // is further down, so replace the top.
            n = HANDLED_DEPTH - 1;
        }
        if let (Some(socket), Some(states)) = (slot(2 * n), slot(2 * n + 1)) {
            core::ptr::write_volatile(socket, id.0);
            core::ptr::write_volatile(states, now << NOTE_ID_BITS | id.1);
            core::ptr::write_volatile(len, n + 1);
        }
    }
}

/// The nested copy looks for its call among those the primary noted. Found: the primary
/// handles it; the entry goes, with any above it (left by nested copies that were skipped).
#[inline(always)]
pub fn pop_handled(id: (u64, u64)) -> bool {
    let Some(len) = HANDLED_LEN.get_ptr_mut(LEN) else {
        return false;
    };
    // SAFETY: as in `push_handled`.
    unsafe {
        let n = core::ptr::read_volatile(len);
        let mut i = HANDLED_DEPTH;
        while i > 0 {
            i -= 1;
            if i >= n {
                continue;
            }
            let (Some(socket), Some(states)) = (slot(2 * i), slot(2 * i + 1)) else {
                return false;
            };
            if core::ptr::read_volatile(socket) == id.0
                && core::ptr::read_volatile(states) & NOTE_ID_MASK == id.1
            {
                core::ptr::write_volatile(len, i);
                return true;
            }
        }
    }
    false
}
