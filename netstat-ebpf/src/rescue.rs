//! The recursion rescue: a second copy of the state program records the transitions the
//! kernel skipped the first for. See `inet_sock_set_state_nested` in `main.rs` for why.
//!
//! The first copy notes each call it takes in [`IN_FLIGHT`], keyed by the call itself; the
//! copy takes the note off, or, finding none, knows the first was skipped. The notes live in
//! one map for every CPU, not per CPU: from Linux 7.x a task can be preempted inside a
//! tracepoint's programs (and between them), so a per-CPU record of "what the first copy is
//! doing" is overwritten by other tasks. That made the nested copy record transitions twice
//! and miss others on 7.3 (the kernel matrix's `churn` check).

use aya_ebpf::{
    bindings::BPF_F_NO_COMMON_LRU, macros::map, maps::LruHashMap, programs::BtfTracePointContext,
};
use netstat_common::{Config, tcp_state};

use crate::{read::cookie, wakeup::now};

/// What identifies one tracepoint call: the socket, and the transition (one socket never has
/// two calls in progress for the same transition).
///
/// The socket by its cookie, which the kernel never gives two sockets: a note the nested copy
/// never takes off (the kernel skipped it too) then matches no later call. By its address
/// where there is no cookie to trust: on kernels without the cookie helper before anything
/// asked for it, and at an accepted socket's first transition (LISTEN>SYN_RECV), where Linux
/// 6.1 to 6.12 have not yet given the socket its own cookie (the matrix saw the two copies
/// read two). A note by address is trusted only while young, since the address is reused.
/// (Only that transition: a listener's own LISTEN>CLOSE is made in process context, which
/// 7.3 preempted for over 10 ms between the two copies, and it has a settled cookie.)
#[repr(C)]
pub struct CallId {
    socket: u64,
    /// The transition, and whether `socket` is an address.
    states: u64,
}

/// A note by address older than this (ns) was left behind: no call is interrupted that long
/// (the kernel hands softirq work over to ksoftirqd after 2 ms), and LISTEN>SYN_RECV is made
/// in softirq, which is never preempted.
const ADDRESS_NOTE_MAX_AGE: u64 = 10_000_000;

const BY_ADDRESS: u64 = 1 << 16;

#[inline(always)]
pub fn call_id<const HELPER: bool>(
    ctx: &BtfTracePointContext,
    config: &Config,
    bank: u32,
) -> CallId {
    let sk: *const u8 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    let states = ((old_state as u64) & 0xff) << 8 | (new_state as u64) & 0xff;
    let cookie = if old_state as u8 == tcp_state::LISTEN && new_state as u8 == tcp_state::SYN_RECV {
        0
    } else {
        cookie::<HELPER>(bank, sk, &config.offsets)
    };
    if cookie == 0 {
        CallId {
            socket: sk as u64,
            states: states | BY_ADDRESS,
        }
    } else {
        CallId {
            socket: cookie,
            states,
        }
    }
}

/// The calls the first copy took and its nested copy has not yet seen, with when they were
/// noted. A note the nested copy never takes off (the kernel skipped it too: it was busy on
/// that CPU) is dropped as the least recently used once the map fills. Per-CPU LRU lists: no
/// lock shared by the CPUs.
#[map]
static IN_FLIGHT: LruHashMap<CallId, u64> = LruHashMap::with_max_entries(4096, BPF_F_NO_COMMON_LRU);

/// The first copy notes the call it is about to handle.
#[inline(always)]
pub fn note(id: &CallId) {
    // A note that cannot be made (no memory) makes the nested copy record the call too: a
    // transition shown twice, and never one lost.
    let _ = IN_FLIGHT.insert(id, &now(), 0);
}

/// The nested copy takes the first's note off: `true` if there was one (the first copy
/// handled the call).
#[inline(always)]
pub fn take_note(id: &CallId) -> bool {
    // SAFETY: the value is read at once, before anything can remove it.
    let Some(noted) = (unsafe { IN_FLIGHT.get(id) }).copied() else {
        return false;
    };
    let _ = IN_FLIGHT.remove(id);
    id.states & BY_ADDRESS == 0 || now().wrapping_sub(noted) <= ADDRESS_NOTE_MAX_AGE
}
