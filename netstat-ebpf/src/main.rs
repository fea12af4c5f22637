//! enetstat's kernel side: entry points only. A BTF tracepoint on `inet_sock_set_state` turns
//! every TCP state transition into a [`StateChange`](netstat_common::StateChange) record in
//! this CPU's ring buffer (see [`ring`]), and two on the TCP reset tracepoints say which
//! connections ended by a reset, and which way it went. Programs in process context add the
//! owner facts softirq cannot give: who accepted a socket (the exit of `inet_csk_accept`, or
//! on older kernels the classic `accept` syscall tracepoints), and which processes ended (a
//! BTF tracepoint, with a rescue copy like the state program's).
//!
//! Each program comes in the variants the kernels we support need; userspace probes the
//! running kernel and loads one set:
//! - `*` (the default): BTF tracepoints with `bpf_get_socket_cookie` (Linux 5.12+);
//! - `*_cookie_field`: the same without that helper, reading the cookie field instead (5.8+);
//! - `inet_sock_set_state_classic`: the classic tracepoint, for kernels without BTF.
//!
//! The programs stay small on purpose. They read the socket's identity and, at CLOSE, its
//! final counters, and leave every decision that can be made later (owner attribution, state
//! names, durations, most filtering) to userspace. Struct layouts come from the `CONFIG`
//! global, filled in from the running kernel's BTF at load time, never from constants
//! compiled in here. `CONFIG` lives in a frozen read-only map, so the verifier reads its
//! offsets as constants, and the default programs load the socket's fields in place (see
//! `read.rs`).
#![no_std]
#![no_main]

mod classic;
mod counters;
mod owner;
mod read;
mod record;
mod rescue;
mod ring;
mod wakeup;

use aya_ebpf::{
    Global,
    macros::{btf_tracepoint, fexit, tracepoint},
    programs::{BtfTracePointContext, FExitContext, TracePointContext},
};
use counters::{BANK_PRIMARY, Call, STATE, STATE_NESTED, count};
use netstat_common::{Config, counter, reset_direction};
use owner::ExitCopy;

/// Load-time configuration: field offsets from BTF, the kernel-side filter, wakeup policy.
#[unsafe(no_mangle)]
static CONFIG: Global<Config> = Global::new(Config::ZERO);

/// [`CONFIG`], read where it lives, field by field as the programs use it.
///
/// `Global::load` copies the whole of it (some 250 bytes) to the stack with a volatile read,
/// on every call of every program: half the instructions of the nested copy, which mostly
/// has nothing to do. A plain reference would let the compiler fold each field to the zeros
/// it was compiled with; the address read back through a volatile load keeps it from
/// knowing what lies there, and the verifier still reads the frozen map's fields as the
/// constants they are.
#[inline(always)]
fn config() -> &'static Config {
    let at: *const Config = (&raw const CONFIG).cast();
    // SAFETY: `CONFIG` is a `Global<Config>`, transparent over the `Config`, in a map that
    // lives as long as the program; the volatile read of a local only hides the address.
    unsafe { &*core::ptr::read_volatile(&at) }
}

#[inline(always)]
fn primary<const HELPER: bool>(ctx: &BtfTracePointContext) {
    // TP_PROTO(const struct sock *sk, const int oldstate, const int newstate)
    let config = config();
    let call = Call::enter(STATE);
    let bank = call.bank;
    let sk = ctx.arg(0);
    let cookie = read::cookie::<HELPER>(bank, sk, &config.offsets);
    rescue::note::<HELPER>(ctx, config, bank, cookie);
    record::state_change::<HELPER>(config, bank, cookie, sk, ctx.arg(1), ctx.arg(2));
}

/// The nested copy of the state program handles only what the primary must miss.
///
/// From Linux 6.0 the kernel never runs a tracing program inside itself on one CPU (before,
/// it does, and the inner call takes a bank of its own: see `counters::Call`): when an
/// interrupt lands while `inet_sock_set_state` runs (or is about to, or has just finished,
/// inside the kernel's own wrapper) and its softirq processes packets that change another socket's
/// state, that nested call is skipped and only counted in the program's `recursion_misses`.
/// Under heavy churn that loses real transitions. From Linux 7.x the same happens when a task
/// is preempted inside the program and another task on that CPU changes a socket's state.
///
/// The tracepoint runs this copy right after the primary on every call, and it has its own
/// recursion guard, so it runs in those calls too. The primary notes each call it takes (its
/// socket and transition, see [`rescue`]) as it starts; this copy takes the note off, and
/// records the transition itself when there is none: the primary was skipped. A call that
/// finds both programs busy is lost; userspace counts it: the primary's misses minus this
/// copy's rescues (NESTED_CALLS).
#[inline(always)]
fn nested<const HELPER: bool>(ctx: &BtfTracePointContext) {
    let config = config();
    let call = Call::enter(STATE_NESTED);
    let bank = call.bank;
    if !rescue::take_note::<HELPER>(ctx, config, bank) {
        count(bank, counter::NESTED_CALLS);
        let sk = ctx.arg(0);
        let cookie = read::cookie::<HELPER>(bank, sk, &config.offsets);
        record::state_change::<HELPER>(config, bank, cookie, sk, ctx.arg(1), ctx.arg(2));
    }
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: BtfTracePointContext) -> i32 {
    primary::<true>(&ctx);
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_nested(ctx: BtfTracePointContext) -> i32 {
    nested::<true>(&ctx);
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_cookie_field(ctx: BtfTracePointContext) -> i32 {
    primary::<false>(&ctx);
    0
}

#[btf_tracepoint(function = "inet_sock_set_state")]
pub fn inet_sock_set_state_nested_cookie_field(ctx: BtfTracePointContext) -> i32 {
    nested::<false>(&ctx);
    0
}

/// `tcp:tcp_send_reset(sk, skb, reason)`.
#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset(ctx: BtfTracePointContext) -> i32 {
    record::reset::<true>(config(), ctx.arg(0), reset_direction::SENT);
    0
}

/// `tcp:tcp_receive_reset(sk)`.
#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset(ctx: BtfTracePointContext) -> i32 {
    record::reset::<true>(config(), ctx.arg(0), reset_direction::RECEIVED);
    0
}

#[btf_tracepoint(function = "tcp_send_reset")]
pub fn tcp_send_reset_cookie_field(ctx: BtfTracePointContext) -> i32 {
    record::reset::<false>(config(), ctx.arg(0), reset_direction::SENT);
    0
}

#[btf_tracepoint(function = "tcp_receive_reset")]
pub fn tcp_receive_reset_cookie_field(ctx: BtfTracePointContext) -> i32 {
    record::reset::<false>(config(), ctx.arg(0), reset_direction::RECEIVED);
    0
}

/// The classic tracepoint, for kernels without BTF (see [`classic`]).
#[tracepoint(category = "sock", name = "inet_sock_set_state")]
pub fn inet_sock_set_state_classic(ctx: TracePointContext) -> u32 {
    classic::state_change(&ctx, config(), BANK_PRIMARY);
    0
}

/// The exit of `inet_csk_accept(sk, arg)` (Linux 6.10+): the process that accepts a
/// connection serves it. The return value follows the parameters (see [`owner::accepted_sock`]).
#[fexit(function = "inet_csk_accept")]
pub fn inet_csk_accept_exit(ctx: FExitContext) -> i32 {
    owner::accepted_sock(config(), ctx.arg(2));
    0
}

/// As [`inet_csk_accept_exit`], before Linux 6.10: `inet_csk_accept(sk, flags, err, kern)`.
#[fexit(function = "inet_csk_accept")]
pub fn inet_csk_accept_exit_4(ctx: FExitContext) -> i32 {
    owner::accepted_sock(config(), ctx.arg(4));
    0
}

/// `syscalls:sys_exit_accept4`: the process that accepts a connection serves it, where
/// `inet_csk_accept`'s exit cannot be traced.
#[tracepoint(category = "syscalls", name = "sys_exit_accept4")]
pub fn sys_exit_accept4(ctx: TracePointContext) -> u32 {
    owner::accepted(&ctx, config());
    0
}

/// `syscalls:sys_exit_accept`: as `accept4`, for the older system call.
#[tracepoint(category = "syscalls", name = "sys_exit_accept")]
pub fn sys_exit_accept(ctx: TracePointContext) -> u32 {
    owner::accepted(&ctx, config());
    0
}

/// `sched:sched_process_exit`: a process that ended owns nothing any more.
///
/// A BTF tracepoint only (none without BTF): a classic tracepoint's program is skipped
/// whenever any classic-tracepoint or kprobe program is running on that CPU (one per-CPU
/// guard for them all), and makes the kernel skip the others meanwhile. A BTF tracepoint
/// guards only against itself, and its rescue copy records what that guard skips (see
/// [`owner::exited`]).
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit_btf(_ctx: BtfTracePointContext) -> i32 {
    owner::exited(config(), ExitCopy::First);
    0
}

/// The rescue copy of [`sched_process_exit_btf`], attached after it.
#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit_rescue(_ctx: BtfTracePointContext) -> i32 {
    owner::exited(config(), ExitCopy::Rescue);
    0
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
