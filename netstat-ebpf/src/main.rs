//! enetstat's kernel side: a BTF tracepoint on `inet_sock_set_state` that turns every TCP
//! state transition into a [`StateChange`] record in the `EVENTS` ring buffer, and two on the
//! TCP reset tracepoints that say which connections ended by a reset, and which way it went.
//!
//! The program stays small on purpose. It reads the socket's identity and, at CLOSE, its final
//! counters, and leaves every decision that can be made later (owner attribution, state names,
//! durations, most filtering) to userspace. Struct layouts come from the `CONFIG` global, filled
//! in from the running kernel's BTF at load time, never from constants compiled in here.
#![no_std]
#![no_main]

use aya_ebpf::{
    Global,
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_ktime_get_ns, bpf_probe_read_kernel,
        generated::bpf_get_socket_cookie,
    },
    macros::{btf_tracepoint, map},
    maps::{Array, PerCpuArray, RingBuf},
    programs::BtfTracePointContext,
};
use netstat_common::{
    AF_INET, AF_INET6, Config, IPPROTO_TCP, Reset, StateChange, counter, record_kind,
    reset_direction, tcp_state,
};

/// Load-time configuration: field offsets from BTF, the kernel-side filter, wakeup policy.
#[unsafe(no_mangle)]
static CONFIG: Global<Config> = Global::new(Config::ZERO);

/// Transition records for userspace. Userspace sets the size at load time (`--ring-size`).
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(4 * 1024 * 1024, 0);

/// Per-CPU event counters, indexed by [`counter`]; userspace sums them.
#[map]
static COUNTERS: PerCpuArray<u64> =
    PerCpuArray::with_max_entries(counter::COUNT * counter::BANKS, 0);

/// `bpf_ktime_get_ns()` of the last time we woke the reader, shared by all CPUs. Races between
/// CPUs only cost an extra or a skipped wakeup, and the reader's own timer covers the latter.
#[map]
static LAST_WAKEUP: Array<u64> = Array::with_max_entries(1, 0);

/// `enum sock_flags`: SOCK_DEAD is 0, SOCK_DONE 1 (stable since Linux 2.6).
const SOCK_DONE: u64 = 1;

const BPF_RB_AVAIL_DATA: u64 = 0;
const BPF_RB_FORCE_WAKEUP: u64 = 2;

/// How many calls [`HANDLED`] can hold: one per level of nesting (process context, softirq)
/// and then some, for entries a skipped nested copy leaves behind.
const HANDLED_DEPTH: u32 = 8;

/// Per-CPU stack of the calls the primary program is handling or has handled and its nested
/// copy has not yet seen: `[cookie, states]` pairs. See [`inet_sock_set_state_nested`].
#[map]
static HANDLED: PerCpuArray<u64> = PerCpuArray::with_max_entries(2 * HANDLED_DEPTH, 0);

/// Per-CPU: the depth of [`HANDLED`], and whether the nested copy is running.
#[map]
static HANDLED_LEN: PerCpuArray<u32> = PerCpuArray::with_max_entries(2, 0);
const LEN: u32 = 0;
const NESTED_RUNNING: u32 = 1;

#[inline(always)]
fn set_nested_running(value: u32) {
    if let Some(slot) = HANDLED_LEN.get_ptr_mut(NESTED_RUNNING) {
        // SAFETY: a valid per-CPU slot, written only by the nested copy on this CPU.
        unsafe { core::ptr::write_volatile(slot, value) };
    }
}

/// Counter banks, one per program that may interrupt another on the same CPU.
const BANK_PRIMARY: u32 = 0;
const BANK_NESTED: u32 = 1;
const BANK_RESETS: u32 = 2;

#[inline(always)]
fn count(bank: u32, index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(bank * counter::COUNT + index) {
        // SAFETY: a valid per-CPU slot, and each bank is written by one program, which the
        // kernel never runs twice at once on a CPU; so a plain increment cannot race.
        unsafe { *slot += 1 };
    }
}

/// What identifies one tracepoint call: the socket's cookie, and the transition.
#[inline(always)]
fn call_id(ctx: &BtfTracePointContext) -> (u64, u64) {
    let sk: *const u8 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);
    // SAFETY: `sk` is the tracepoint's own BTF-typed socket pointer, as the helper requires.
    let cookie = unsafe { bpf_get_socket_cookie(sk as *mut _) };
    // Never 0, so an empty slot matches nothing.
    let states = 1 << 16 | ((old_state as u64) & 0xff) << 8 | (new_state as u64) & 0xff;
    (cookie, states)
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
fn push_handled(id: (u64, u64)) {
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
    let now = unsafe { bpf_ktime_get_ns() } >> 10;
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
        if let (Some(cookie), Some(states)) = (slot(2 * n), slot(2 * n + 1)) {
            core::ptr::write_volatile(cookie, id.0);
            core::ptr::write_volatile(states, now << NOTE_ID_BITS | id.1);
            core::ptr::write_volatile(len, n + 1);
        }
    }
}

/// The nested copy looks for its call among those the primary noted. Found: the primary
/// handles it; the entry goes, with any above it (left by nested copies that were skipped).
#[inline(always)]
fn pop_handled(id: (u64, u64)) -> bool {
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
            let (Some(cookie), Some(states)) = (slot(2 * i), slot(2 * i + 1)) else {
                return false;
            };
            if core::ptr::read_volatile(cookie) == id.0
                && core::ptr::read_volatile(states) & NOTE_ID_MASK == id.1
            {
                core::ptr::write_volatile(len, i);
                return true;
            }
        }
    }
    false
}

/// Reads a `T` at `offset` bytes into the kernel object at `base`; a failed read counts and
/// yields `T::default()`, so one unreadable field never costs the whole record.
#[inline(always)]
fn read<T: Default>(bank: u32, base: *const u8, offset: u32) -> T {
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one returns an error, not a fault.
    match unsafe { bpf_probe_read_kernel(base.wrapping_add(offset as usize).cast::<T>()) } {
        Ok(value) => value,
        Err(_) => {
            count(bank, counter::READ_ERRORS);
            T::default()
        }
    }
}

/// The local port. At the transition into CLOSE the kernel has already released an
/// automatically bound port (`skc_num` is 0), but `inet_sport` still holds it.
#[inline(always)]
fn local_port(bank: u32, sk: *const u8, off: &netstat_common::Offsets) -> u16 {
    let num: u16 = read(bank, sk, off.skc_num);
    if num != 0 {
        num
    } else {
        u16::from_be(read::<u16>(bank, sk, off.inet_sport))
    }
}

/// The id of the socket's cgroup: `sk->sk_cgrp_data.cgroup->kn->id`.
#[inline(always)]
fn socket_cgroup(bank: u32, sk: *const u8, off: &netstat_common::Offsets) -> u64 {
    if off.sk_cgroup == 0 {
        return 0;
    }
    let cgroup = read::<usize>(bank, sk, off.sk_cgroup) as *const u8;
    if cgroup.is_null() {
        return 0;
    }
    let kn = read::<usize>(bank, cgroup, off.cgroup_kn) as *const u8;
    if kn.is_null() {
        return 0;
    }
    read(bank, kn, off.kernfs_node_id)
}

/// Wake the reader when enough time has passed since the last wakeup or enough bytes wait.
/// Otherwise let the kernel decide (flags 0): it wakes the reader only when the reader had
/// read everything before this record, so it may be asleep; a reader that is behind is awake
/// and will get to the record, which saves a wakeup per event under load. (Never wake it
/// would strand a record that lands just after the reader found the ring empty.)
#[inline(always)]
fn wakeup_flags(config: &Config, now: u64) -> u64 {
    if config.wakeup_interval_ns == 0 {
        return 0;
    }
    let Some(last) = LAST_WAKEUP.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: a valid map value pointer; a torn read between CPUs only shifts one wakeup.
    let since = now.wrapping_sub(unsafe { *last });
    if since >= config.wakeup_interval_ns || EVENTS.query(BPF_RB_AVAIL_DATA) >= config.wakeup_bytes
    {
        unsafe { *last = now };
        BPF_RB_FORCE_WAKEUP
    } else {
        0
    }
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    let id = call_id(&ctx);
    push_handled(id);
    on_state_change(&ctx, BANK_PRIMARY, id.0);
    0
}

/// A second program on the same tracepoint that handles only what the first must miss.
///
/// The kernel never runs a tracing program inside itself on one CPU: when an interrupt lands
/// while `inet_sock_set_state` runs (or is about to, or has just finished, inside the
/// kernel's own wrapper) and its softirq processes packets that change another socket's
/// state, that nested call is skipped and only counted in the program's `recursion_misses`.
/// Under heavy churn that loses real transitions.
///
/// The tracepoint runs this copy right after the primary on every call, and it has its own
/// recursion guard, so it runs in those nested calls too. The primary notes each call it
/// takes (its socket cookie and transition) on a per-CPU stack as it starts; this copy takes
/// the note off, and records the transition itself when there is none: the primary was
/// skipped. A call that finds both programs busy (this copy was interrupted while it ran) is
/// lost; userspace counts it: the primary's misses minus this copy's rescues (NESTED_CALLS).
/// When the primary interrupts this copy it notes nothing, as this copy will be skipped; a
/// note left in the instants around that (when the flag saying so is not yet or no longer
/// set) is dropped once it is old.
#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_nested(ctx: BtfTracePointContext) -> i32 {
    set_nested_running(1);
    let id = call_id(&ctx);
    if !pop_handled(id) {
        count(BANK_NESTED, counter::NESTED_CALLS);
        on_state_change(&ctx, BANK_NESTED, id.0);
    }
    set_nested_running(0);
    0
}

#[inline(always)]
/// Records the call's transition; `cookie` is the socket's, from [`call_id`].
fn on_state_change(ctx: &BtfTracePointContext, bank: u32, cookie: u64) {
    let config = CONFIG.load();
    let off = &config.offsets;
    // TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
    let sk: *const u8 = ctx.arg(0);
    let old_state: i32 = ctx.arg(1);
    let new_state: i32 = ctx.arg(2);

    if read::<u16>(bank, sk, off.sk_protocol) != IPPROTO_TCP {
        return;
    }
    count(bank, counter::SEEN);

    let family: u16 = read(bank, sk, off.skc_family);
    let lport = local_port(bank, sk, off);
    let rport = u16::from_be(read::<u16>(bank, sk, off.skc_dport));
    if !config.filter.keeps(family, lport, rport) {
        count(bank, counter::FILTERED);
        return;
    }

    let Some(mut entry) = EVENTS.reserve::<StateChange>(0) else {
        count(bank, counter::RINGBUF_FULL);
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    let pid_tgid = bpf_get_current_pid_tgid();

    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    if family == AF_INET6 {
        saddr = read(bank, sk, off.skc_v6_rcv_saddr);
        daddr = read(bank, sk, off.skc_v6_daddr);
    } else if family == AF_INET {
        let s: [u8; 4] = read(bank, sk, off.skc_rcv_saddr);
        let d: [u8; 4] = read(bank, sk, off.skc_daddr);
        saddr[..4].copy_from_slice(&s);
        daddr[..4].copy_from_slice(&d);
    }
    let net: *const u8 = read::<usize>(bank, sk, off.skc_net) as *const u8;
    let netns: u32 = if net.is_null() {
        0
    } else {
        read(bank, net, off.net_ns_inum)
    };

    let cgroup = socket_cgroup(bank, sk, off);
    let new = new_state as u8;
    let (mut sk_err, mut retransmits, mut srtt_us, mut bytes_sent, mut bytes_received) =
        (0, 0, 0, 0, 0);
    let mut fin_received = 0;
    if new == tcp_state::CLOSE {
        sk_err = read(bank, sk, off.sk_err);
        retransmits = read(bank, sk, off.tcp_total_retrans);
        srtt_us = read::<u32>(bank, sk, off.tcp_srtt_us) >> 3;
        let sent: u64 = read(bank, sk, off.tcp_bytes_sent);
        bytes_sent = sent.saturating_sub(read(bank, sk, off.tcp_bytes_retrans));
        bytes_received = read(bank, sk, off.tcp_bytes_received);
        // SOCK_DONE is bit 1 of sk_flags, set by tcp_fin() when the peer's FIN arrives.
        fin_received = ((read::<u64>(bank, sk, off.sk_flags) >> SOCK_DONE) & 1) as u32;
    }

    entry.write(StateChange {
        kind: record_kind::STATE_CHANGE,
        family,
        old_state: old_state as u8,
        new_state: new,
        lport,
        rport,
        _pad0: 0,
        pid: (pid_tgid >> 32) as u32,
        ts_ns: now,
        cookie,
        skaddr: sk as u64,
        tid: pid_tgid as u32,
        netns,
        sk_err,
        retransmits,
        srtt_us,
        fin_received,
        bytes_sent,
        bytes_received,
        cgroup,
        saddr,
        daddr,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    });
    entry.submit(wakeup_flags(&config, now));
}

/// `tcp:tcp_send_reset(sk, skb, reason)`: `sk` is NULL for resets answering segments that
/// match no socket; those belong to no connection and are skipped.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    on_reset(&ctx, reset_direction::SENT);
    0
}

/// `tcp:tcp_receive_reset(sk)`.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    on_reset(&ctx, reset_direction::RECEIVED);
    0
}

#[inline(always)]
fn on_reset(ctx: &BtfTracePointContext, direction: u8) {
    let sk: *const u8 = ctx.arg(0);
    if sk.is_null() {
        return;
    }
    let bank = BANK_RESETS;
    let config = CONFIG.load();
    let off = &config.offsets;
    let family: u16 = read(bank, sk, off.skc_family);
    let lport = local_port(bank, sk, off);
    let rport = u16::from_be(read::<u16>(bank, sk, off.skc_dport));
    if !config.filter.keeps(family, lport, rport) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<Reset>(0) else {
        count(bank, counter::RINGBUF_FULL);
        return;
    };
    let now = unsafe { bpf_ktime_get_ns() };
    entry.write(Reset {
        kind: record_kind::RESET,
        direction,
        state: read(bank, sk, off.skc_state),
        _pad: 0,
        ts_ns: now,
        // SAFETY: the tracepoint's own BTF-typed, non-NULL socket pointer.
        cookie: unsafe { bpf_get_socket_cookie(sk as *mut _) },
    });
    entry.submit(wakeup_flags(&config, now));
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
