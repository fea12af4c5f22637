//! The recursion rescue: a second copy of the state program records the transitions the
//! kernel skipped the first for. See `inet_sock_set_state_nested` in `main.rs` for why.
//!
//! The first copy notes each call it takes, keyed by the call itself; the nested copy takes
//! the note off, or, finding none, knows the first was skipped. Where the notes live depends
//! on the kernel:
//! - before Linux 7, a tracepoint's programs run with preemption off, so a CPU's calls nest
//!   but never interleave: eight slots per CPU ([`NOTES`]) hold every call in flight there.
//!   That costs a per-CPU array lookup; the map below costs an LRU hash insert, lookup and
//!   delete, 270 ns a transition on the benchmark's VM, a third of the programs' time.
//! - from Linux 7 a task can be preempted inside a tracepoint's programs (and between them),
//!   and another task on that CPU can take a slot half written. There the notes live in one
//!   hash map for every CPU ([`IN_FLIGHT`]): a per-CPU record made the nested copy record
//!   transitions twice and miss others on 7.3 (the kernel matrix's `churn` check).

use aya_ebpf::{
    bindings::BPF_F_NO_COMMON_LRU,
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::BtfTracePointContext,
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
#[derive(Clone, Copy, PartialEq, Eq)]
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

/// A CPU's calls in flight, before Linux 7: a call's copies nest around the calls an
/// interrupt makes, so the calls in flight on one CPU at once are few.
#[repr(C)]
pub struct Notes {
    slots: [Slot; SLOTS],
}

#[repr(C)]
#[derive(Clone, Copy)]
struct Slot {
    /// `states` 0: free (every transition has a non-zero state).
    id: CallId,
    at: u64,
}

const SLOTS: usize = 8;

/// A slot older than this (ns) holds a note left behind (the kernel skipped the nested copy
/// too) and is free: with preemption off no call's copies are this far apart, even under
/// emulation (the kernel matrix's TCG runs the kernel a hundred times slower, and there 10 ms
/// freed notes still in use: transitions shown twice on 5.10). Notes are left behind rarely
/// (an interrupt must land in the nested copy's few instructions), so the slots do not fill.
const SLOT_MAX_AGE: u64 = 1_000_000_000;

#[map]
static NOTES: PerCpuArray<Notes> = PerCpuArray::with_max_entries(1, 0);

/// The first copy notes the call it is about to handle.
#[inline(always)]
pub fn note(config: &Config, id: &CallId) {
    if config.notes_per_cpu != 0 {
        note_per_cpu(id);
        return;
    }
    // A note that cannot be made (no memory) makes the nested copy record the call too: a
    // transition shown twice, and never one lost.
    let _ = IN_FLIGHT.insert(id, &now(), 0);
}

/// The nested copy takes the first's note off: `true` if there was one (the first copy
/// handled the call).
#[inline(always)]
pub fn take_note(config: &Config, id: &CallId) -> bool {
    let noted = if config.notes_per_cpu != 0 {
        take_per_cpu(id)
    } else {
        // SAFETY: the value is read at once, before anything can remove it.
        let noted = unsafe { IN_FLIGHT.get(id) }.copied();
        if noted.is_some() {
            let _ = IN_FLIGHT.remove(id);
        }
        noted
    };
    let Some(noted) = noted else {
        return false;
    };
    id.states & BY_ADDRESS == 0 || now().wrapping_sub(noted) <= ADDRESS_NOTE_MAX_AGE
}

/// Into the first free slot, or one left behind; with none, over the oldest note. A note is
/// left behind when an interrupt's call lands while this CPU runs the nested copy: the
/// kernel skips that call's nested copy, so its note stays. Those are the oldest notes, and
/// a call in flight is younger, so it keeps its slot (overwriting the first slot instead
/// showed a transition twice in the matrix, on 6.1, after four such skips). Slots are
/// written at constant offsets: an index chosen at run time is one the verifier must follow
/// through the rest of the program, and Linux 5.10 and 6.1 then gave up (a million
/// instructions processed).
#[inline(always)]
fn note_per_cpu(id: &CallId) {
    let Some(notes) = NOTES.get_ptr_mut(0) else {
        return;
    };
    let t = now();
    let new = Slot { id: *id, at: t };
    // SAFETY: this CPU's own map value; with preemption off nothing else runs on it until
    // this program returns but an interrupt's calls, which leave the slots they take free.
    let slots = unsafe { &mut (*notes).slots };
    for slot in slots.iter_mut() {
        if slot.id.states == 0 || t.wrapping_sub(slot.at) > SLOT_MAX_AGE {
            *slot = new;
            return;
        }
    }
    let mut oldest = u64::MAX;
    for slot in slots.iter() {
        oldest = oldest.min(slot.at);
    }
    for slot in slots.iter_mut() {
        if slot.at == oldest {
            *slot = new;
            return;
        }
    }
}

/// Frees the slot noting `id` and gives when it was noted.
#[inline(always)]
fn take_per_cpu(id: &CallId) -> Option<u64> {
    let notes = NOTES.get_ptr_mut(0)?;
    // SAFETY: as in `note_per_cpu`.
    let slots = unsafe { &mut (*notes).slots };
    for slot in slots.iter_mut() {
        if slot.id == *id {
            slot.id.states = 0;
            return Some(slot.at);
        }
    }
    None
}
