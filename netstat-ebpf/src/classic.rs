//! The fallback for kernels without BTF: the classic `sock/inet_sock_set_state` tracepoint,
//! whose record carries the socket's address, states, ports and addresses at offsets
//! userspace read from the tracepoint's tracefs `format` file.
//!
//! Without BTF nothing inside `struct sock` can be located, so these records have no cookie,
//! network namespace, cgroup or counters at CLOSE ([`record_flags::NO_SOCKET_FIELDS`]); the
//! socket's address is its identity. The kernel's per-CPU guard for classic tracepoints
//! covers every BPF program on the CPU, so the recursion rescue cannot work here.

use aya_ebpf::{
    helpers::{bpf_get_current_comm, bpf_get_current_pid_tgid},
    programs::TracePointContext,
};
use netstat_common::{
    AF_INET, AF_INET6, Config, IPPROTO_TCP, StateChange, counter, record_flags, record_kind,
};

use crate::{counters::count, ring, wakeup};

/// A field of the tracepoint's record; a failed read counts and yields the default.
#[inline(always)]
fn field<T: Default>(ctx: &TracePointContext, bank: u32, offset: u32) -> T {
    // SAFETY: bpf_probe_read_kernel checks the address.
    match unsafe { ctx.read_at::<T>(offset as usize) } {
        Ok(value) => value,
        Err(_) => {
            count(bank, counter::READ_ERRORS);
            T::default()
        }
    }
}

/// Like `record::state_change`, but reading the tracepoint's record. Both hand the record to
/// [`ring::emit_state_change`], which copies it in from a map value: built on the stack and
/// reserved in place, an earlier shared helper made LLVM emit a BPF subprogram whose stack,
/// added to the caller's (672 bytes), Linux 5.10 to 6.12 refused (limit 512).
#[inline(always)]
pub fn state_change(ctx: &TracePointContext, config: &Config, bank: u32) {
    let off = &config.tracepoint;
    if field::<u16>(ctx, bank, off.protocol) != IPPROTO_TCP {
        return;
    }
    count(bank, counter::SEEN);
    let family: u16 = field(ctx, bank, off.family);
    let lport: u16 = field(ctx, bank, off.sport);
    let rport: u16 = field(ctx, bank, off.dport);
    if !config.filter.keeps(family, lport, rport) {
        count(bank, counter::FILTERED);
        return;
    }
    // Before the reservation: see `ring.rs` for why the merge needs it so.
    let now = wakeup::now();
    let pid_tgid = bpf_get_current_pid_tgid();
    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    if family == AF_INET6 {
        saddr = field(ctx, bank, off.saddr_v6);
        daddr = field(ctx, bank, off.daddr_v6);
    } else if family == AF_INET {
        let s: [u8; 4] = field(ctx, bank, off.saddr);
        let d: [u8; 4] = field(ctx, bank, off.daddr);
        saddr[..4].copy_from_slice(&s);
        daddr[..4].copy_from_slice(&d);
    }
    let record = StateChange {
        kind: record_kind::STATE_CHANGE,
        family,
        old_state: field::<i32>(ctx, bank, off.oldstate) as u8,
        new_state: field::<i32>(ctx, bank, off.newstate) as u8,
        lport,
        rport,
        flags: record_flags::NO_SOCKET_FIELDS,
        pid: (pid_tgid >> 32) as u32,
        ts_ns: now,
        cookie: 0,
        skaddr: field(ctx, bank, off.skaddr),
        tid: pid_tgid as u32,
        netns: 0,
        sk_err: 0,
        retransmits: 0,
        srtt_us: 0,
        fin_received: 0,
        bytes_sent: 0,
        bytes_received: 0,
        cgroup: 0,
        saddr,
        daddr,
        comm: bpf_get_current_comm().unwrap_or([0; 16]),
    };
    ring::emit_state_change(config, bank, record);
}
