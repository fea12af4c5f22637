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
use netstat_common::{Config, IPPROTO_TCP, StateChange, counter, record_flags, record_kind};

use crate::{counters::count, record, wakeup};

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

#[inline(always)]
pub fn state_change(ctx: &TracePointContext, config: &Config, bank: u32) {
    let off = &config.tracepoint;
    if field::<u16>(ctx, bank, off.protocol) != IPPROTO_TCP {
        return;
    }
    let family: u16 = field(ctx, bank, off.family);
    let lport: u16 = field(ctx, bank, off.sport);
    let rport: u16 = field(ctx, bank, off.dport);
    let Some(mut entry) = record::reserve(config, bank, family, lport, rport) else {
        return;
    };
    let now = wakeup::now();
    let pid_tgid = bpf_get_current_pid_tgid();
    let (saddr, daddr) = record::addresses(
        family,
        || {
            (
                field(ctx, bank, off.saddr_v6),
                field(ctx, bank, off.daddr_v6),
            )
        },
        || (field(ctx, bank, off.saddr), field(ctx, bank, off.daddr)),
    );
    entry.write(StateChange {
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
    });
    entry.submit(wakeup::flags(config));
}
