//! The recursion rescue: a second copy of the state program records the transitions the
//! kernel skipped the first for. See `inet_sock_set_state_nested` in `main.rs` for why.
//!
//! The first copy notes each call it takes in [`IN_FLIGHT`], keyed by the call itself; the
//! copy takes the note off, or, finding none, knows the first was skipped. The notes live in
//! one map for every CPU, not per CPU: from Linux 7.x a task can be preempted inside a
//! tracepoint's programs (and between them, and move to another CPU), so a per-CPU record of
//! "what the first copy is doing" is overwritten by other tasks and read on the wrong CPU.
//! That made the nested copy record transitions twice and miss others on 7.3 (the kernel
//! matrix's `churn` check).

use aya_ebpf::{
    bindings::BPF_F_NO_COMMON_LRU,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use netstat_common::Config;

/// What identifies one tracepoint call: the socket's address, and the transition. (The
/// address, not the cookie: it is free to read, it is there on kernels without the cookie
/// helper, and on Linux 6.1 to 6.12 an accepted socket's cookie is not yet its own at its
/// first transition. One socket never has two calls in progress for the same transition.)
#[repr(C)]
pub struct CallId {
    socket: u64,
    states: u64,
}

#[inline(always)]
pub fn call_id(ctx: &BtfTracePointContext) -> CallId {
    let sk: *const u8 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    CallId {
        socket: sk as u64,
        states: ((old_state as u64) & 0xff) << 8 | (new_state as u64) & 0xff,
    }
}

/// Per CPU: whether the nested copy is running there. The first copy notes nothing then: the
/// kernel skips the nested copy for that call (it is busy on this CPU), so nothing would take
/// the note off, and a note left behind makes a later socket at the same address, doing the
/// same transition while the first copy is skipped, look handled: lost (counted). Only where
/// the kernel never preempts the programs (`Config::programs_not_preempted`): elsewhere the
/// flag on a CPU may be another task's, and a task may move to another CPU between the two
/// copies, where trusting it would record a call twice.
#[map]
static NESTED_RUNNING: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn set_nested_running(config: &Config, value: u32) {
    if config.programs_not_preempted == 0 {
        return;
    }
    if let Some(slot) = NESTED_RUNNING.get_ptr_mut(0) {
        // SAFETY: a valid per-CPU slot, written only by the nested copy, which the kernel
        // never runs twice at once on a CPU.
        unsafe { core::ptr::write_volatile(slot, value) };
    }
}

#[inline(always)]
fn nested_running(config: &Config) -> bool {
    config.programs_not_preempted != 0
        && NESTED_RUNNING
            .get_ptr(0)
            // SAFETY: a valid per-CPU slot.
            .is_some_and(|slot| unsafe { core::ptr::read_volatile(slot) } != 0)
}

/// The calls the first copy took and its nested copy has not yet seen. A note the nested copy
/// never takes off (the kernel skipped it too: it was busy on that CPU) is dropped as the
/// least recently used once the map fills. Per-CPU LRU lists: no lock shared by the CPUs.
#[map]
static IN_FLIGHT: LruHashMap<CallId, u8> = LruHashMap::with_max_entries(4096, BPF_F_NO_COMMON_LRU);

/// The first copy notes the call it is about to handle (unless the nested copy is running on
/// this CPU: see [`NESTED_RUNNING`]).
#[inline(always)]
pub fn note(config: &Config, id: &CallId) {
    if nested_running(config) {
        return;
    }
    // A note that cannot be made (no memory) makes the nested copy record the call too: a
    // transition shown twice, and never one lost.
    let _ = IN_FLIGHT.insert(id, &0, 0);
}

/// The nested copy takes the first's note off: `true` if there was one (the first copy
/// handled the call).
#[inline(always)]
pub fn take_note(id: &CallId) -> bool {
    IN_FLIGHT.remove(id).is_ok()
}
