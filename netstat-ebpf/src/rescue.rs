//! The recursion rescue: a second copy of the state program records the transitions the
//! kernel skipped the first for. See `inet_sock_set_state_nested` in `main.rs` for why.
//!
//! The first copy notes each call it takes; the copy takes the note off, or, finding none,
//! knows the first was skipped. Where the notes live depends on the kernel:
//! - Before Linux 7 a tracepoint's programs run with preemption off, so on one CPU a call is
//!   only ever interrupted, never interleaved with another at its own level: a call on a
//!   task's stack (process context) by one on the CPU's interrupt stack (softirq), and that
//!   one by nothing that changes a socket's state. One note per CPU and level
//!   ([`LEVEL_NOTES`]) then holds every call in flight, exactly: a few array lookups a
//!   transition. The level is where the call's arguments are: on the current task's kernel
//!   stack or not. Userspace turns this on (`Config::notes_per_cpu`) up to 6.18, the newest
//!   kernel it was checked on.
//! - From Linux 7 a task can be preempted inside a tracepoint's programs (and between them),
//!   and another task on that CPU runs the same level. There the notes live in one map for
//!   every CPU ([`IN_FLIGHT`]), keyed by the call: an LRU hash insert, lookup and delete,
//!   about 280 ns a transition on the benchmark's VM, half of the programs' time. (A per-CPU
//!   stack of notes made the nested copy record transitions twice and miss others on 7.3,
//!   the kernel matrix's `churn` check; eight per-CPU slots searched by content, tried
//!   before Linux 7, let a burst of nested calls evict a note in use.)

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_F_NO_COMMON_LRU,
    helpers::{bpf_get_current_task, generated::bpf_get_current_task_btf},
    macros::map,
    maps::{LruHashMap, PerCpuArray},
    programs::BtfTracePointContext,
};
use netstat_common::{Config, TASK_STACK_SIZE, counter, tcp_state};

use crate::{
    read::{cookie, field, offset},
    wakeup::now,
};

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

/// The call `ctx` to a socket whose cookie is `cookie` (from [`cookie`]).
#[inline(always)]
fn call_id(ctx: &BtfTracePointContext, cookie: u64) -> CallId {
    let sk: *const u8 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    let states = ((old_state as u64) & 0xff) << 8 | (new_state as u64) & 0xff;
    let cookie = if old_state as u8 == tcp_state::LISTEN && new_state as u8 == tcp_state::SYN_RECV {
        0
    } else {
        cookie
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

/// The first copy notes the call it is about to handle, where this kernel keeps notes.
/// `cookie`: the socket's, which the first copy's record carries too (one helper call for
/// both).
#[inline(always)]
pub fn note<const HELPER: bool>(
    ctx: &BtfTracePointContext,
    config: &Config,
    bank: u32,
    cookie: u64,
) {
    let id = call_id(ctx, cookie);
    if config.notes_per_cpu != 0 {
        note_level::<HELPER>(ctx, bank, id);
    } else {
        note_in_map(&id);
    }
}

/// The nested copy takes the first's note off: `true` if there was one (the first copy
/// handled the call).
#[inline(always)]
pub fn take_note<const HELPER: bool>(
    ctx: &BtfTracePointContext,
    config: &Config,
    bank: u32,
) -> bool {
    let id = call_id(ctx, cookie::<HELPER>(bank, ctx.arg(0), &config.offsets));
    if config.notes_per_cpu != 0 {
        take_note_level::<HELPER>(ctx, bank, id)
    } else {
        take_from_map(&id)
    }
}

/// The first copy's note in the map ([`IN_FLIGHT`]).
#[inline(always)]
fn note_in_map(id: &CallId) {
    // A note that cannot be made (no memory) makes the nested copy record the call too: a
    // transition shown twice, and never one lost.
    let _ = IN_FLIGHT.insert(id, &now(), 0);
}

/// The nested copy takes the first's note off the map: `true` if there was one.
#[inline(always)]
fn take_from_map(id: &CallId) -> bool {
    // SAFETY: the value is read at once, before anything can remove it.
    let Some(noted) = (unsafe { IN_FLIGHT.get(id) }).copied() else {
        return false;
    };
    let _ = IN_FLIGHT.remove(id);
    id.states & BY_ADDRESS == 0 || now().wrapping_sub(noted) <= ADDRESS_NOTE_MAX_AGE
}

/// One call in flight on a CPU at one level, before Linux 7: where its arguments are (which
/// no other call in flight shares) and the call itself ([`CallId`]: the socket's cookie,
/// which no other socket ever has, so a note left behind never matches a later call; its
/// address only where the cookie is not settled).
#[repr(C)]
pub struct LevelNote {
    args: u64,
    socket: u64,
    states: u64,
}

impl LevelNote {
    /// Field by field, like the writes: a derived comparison may become a byte loop.
    #[inline(always)]
    fn is(&self, other: &LevelNote) -> bool {
        self.args == other.args && self.socket == other.socket && self.states == other.states
    }

    /// Whether this note at the task level may still be in flight for a call whose
    /// arguments are at `args`: it is from a shallower frame of the same stack, so its call
    /// may be one that ours interrupted (a kernel that ran softirq on the task's stack). A
    /// note from a deeper frame, or another task's stack, is of a call that has finished
    /// (preemption is off: no other task's call is halfway on this CPU). Taking a finished
    /// note for one in flight only costs the map; the other way round would lose a note in
    /// use, so the bound is generous (KASAN's stacks are 32 KiB).
    #[inline(always)]
    fn may_be_in_flight(&self, args: u64) -> bool {
        self.states != 0 && self.args > args && self.args - args < 2 * TASK_STACK_SIZE
    }
}

/// Index [`TASK`]: calls on a task's stack; [`INTERRUPT`]: calls on an interrupt stack.
#[map]
static LEVEL_NOTES: PerCpuArray<LevelNote> = PerCpuArray::with_max_entries(2, 0);

const TASK: u32 = 0;
const INTERRUPT: u32 = 1;

/// Notes that found the task level's slot held by a call that may be in flight: where a
/// kernel runs softirq on the interrupted task's stack, the two share that level. Rare, so
/// a map.
#[map]
static SPILLED: LruHashMap<LevelNote, u8> = LruHashMap::with_max_entries(1024, BPF_F_NO_COMMON_LRU);

/// Where a pointer becomes a number: the verifier compares no pointer with a number, but a
/// privileged program may store one in a map and read the number back. One per bank.
#[map]
static ADDRESS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::BANKS, 0);

/// This CPU's slot for the call's level, the level, and the note that identifies the call;
/// `None` only if a map value cannot be had (never, in practice).
#[inline(always)]
fn level_note<const HELPER: bool>(
    ctx: &BtfTracePointContext,
    bank: u32,
    id: CallId,
) -> Option<(*mut LevelNote, u32, LevelNote)> {
    let scratch = ADDRESS.get_ptr_mut(bank)?;
    // SAFETY: this CPU's and this copy's own map value, read back at once.
    let args = unsafe {
        core::ptr::write_volatile(scratch.cast::<*mut core::ffi::c_void>(), ctx.as_ptr());
        core::ptr::read_volatile(scratch)
    };
    // SAFETY: the helpers only return the current task: BTF-typed (5.11+), for a load in
    // place, or as an address.
    let task = unsafe {
        if HELPER {
            bpf_get_current_task_btf() as *const u8
        } else {
            bpf_get_current_task() as *const u8
        }
    };
    let stack: u64 = field::<HELPER, u64>(bank, task, offset!(tasks.task_stack));
    // The tracepoint's arguments are on the stack of whoever made the call: the task's own,
    // or, for softirq, the CPU's interrupt stack on most kernels (ksoftirqd's calls are on
    // its task stack, and nothing interrupts those with a transition either).
    let level = if args.wrapping_sub(stack) < TASK_STACK_SIZE {
        TASK
    } else {
        INTERRUPT
    };
    let slot = LEVEL_NOTES.get_ptr_mut(level)?;
    Some((
        slot,
        level,
        LevelNote {
            args,
            socket: id.socket,
            states: id.states,
        },
    ))
}

/// The first copy notes the call it is about to handle: in its level's slot, unless that
/// holds a call that may be in flight (then in [`SPILLED`]).
#[inline(always)]
fn note_level<const HELPER: bool>(ctx: &BtfTracePointContext, bank: u32, id: CallId) {
    let Some((slot, level, note)) = level_note::<HELPER>(ctx, bank, id) else {
        return;
    };
    // SAFETY: this CPU's map value. At the interrupt level no other call is in flight (no
    // transition interrupts a softirq); at the task level, a call that interrupts this one
    // and finds its note in a shallower frame spills instead of writing over it.
    unsafe {
        if level == TASK && (*slot).may_be_in_flight(note.args) {
            // A note that cannot be made makes the nested copy record the call too: a
            // transition shown twice, never one lost.
            let _ = SPILLED.insert(&note, &0, 0);
        } else {
            // Field by field: a struct copy is a byte loop the verifier refuses.
            (*slot).args = note.args;
            (*slot).socket = note.socket;
            (*slot).states = note.states;
        }
    }
}

/// The nested copy takes the first's note off: `true` if there was one (the first copy
/// handled the call). Another call's note at the interrupt level is of a call that has
/// finished and goes; at the task level it may be in flight, and is left for the next first
/// copy that finds it finished.
#[inline(always)]
fn take_note_level<const HELPER: bool>(ctx: &BtfTracePointContext, bank: u32, id: CallId) -> bool {
    let Some((slot, level, note)) = level_note::<HELPER>(ctx, bank, id) else {
        return false;
    };
    // SAFETY: as in `note_level`.
    unsafe {
        if (*slot).is(&note) {
            (*slot).states = 0;
            return true;
        }
        if level == INTERRUPT {
            (*slot).states = 0;
            return false;
        }
    }
    SPILLED.remove(&note).is_ok()
}
