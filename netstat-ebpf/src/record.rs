//! Building the ring-buffer records from a socket the kernel hands us.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid,
    generated::{bpf_get_current_task_btf, bpf_skc_to_tcp_sock},
};
use netstat_common::{
    AF_INET, AF_INET6, Config, IPPROTO_TCP, Reset, StateChange, counter, record_kind, tcp_state,
};

use crate::{
    counters::{Call, RESETS, count},
    read::{self, Head, cookie, field, offset, socket_cgroup},
    ring, wakeup,
};

/// `enum sock_flags`: SOCK_DEAD is 0, SOCK_DONE 1 (stable since Linux 2.6).
const SOCK_DONE: u64 = 1;

/// Records the transition `old -> new` of the BTF-typed socket `sk`, whose cookie is `cookie`
/// (see [`cookie`]). `HELPER`: whether this kernel has the cookie helper for tracing programs.
#[inline(always)]
pub fn state_change<const HELPER: bool>(
    config: &Config,
    bank: u32,
    cookie: u64,
    sk: *const u8,
    old_state: i32,
    new_state: i32,
) {
    // With the cookie helper (5.12+) every field is loaded in place (see `read::direct`);
    // before, through `bpf_probe_read_kernel`, the socket's head in one copy.
    if field::<HELPER, u16>(bank, sk, offset!(offsets.sk_protocol)) != IPPROTO_TCP {
        return;
    }
    count(bank, counter::SEEN);

    let Some(head) = Head::<HELPER>::read(bank, sk) else {
        return;
    };
    let family: u16 = head.field(offset!(offsets.skc_family));
    let (lport, rport) = head.ports();
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
        // In halves: a load in place is at most 8 bytes.
        let half = |at: u32| head.field::<u64>(at).to_ne_bytes();
        saddr[..8].copy_from_slice(&half(offset!(offsets.skc_v6_rcv_saddr)));
        saddr[8..].copy_from_slice(&half(offset!(offsets.skc_v6_rcv_saddr) + 8));
        daddr[..8].copy_from_slice(&half(offset!(offsets.skc_v6_daddr)));
        daddr[8..].copy_from_slice(&half(offset!(offsets.skc_v6_daddr) + 8));
    } else if family == AF_INET {
        let s: u32 = head.field(offset!(offsets.skc_rcv_saddr));
        let d: u32 = head.field(offset!(offsets.skc_daddr));
        saddr[..4].copy_from_slice(&s.to_ne_bytes());
        daddr[..4].copy_from_slice(&d.to_ne_bytes());
    }
    let net: *const u8 = head.field::<usize>(offset!(offsets.skc_net)) as _;
    let netns: u32 = if net.is_null() {
        0
    } else {
        field::<HELPER, u32>(bank, net, offset!(offsets.net_ns_inum))
    };

    let cgroup = socket_cgroup::<HELPER>(bank, sk);
    let new = new_state as u8;
    let (mut sk_err, mut retransmits, mut srtt_us, mut bytes_sent, mut bytes_received) =
        (0, 0, 0, 0, 0);
    let mut fin_received = 0;
    if new == tcp_state::CLOSE {
        sk_err = field::<HELPER, i32>(bank, sk, offset!(offsets.sk_err));
        // SOCK_DONE is bit 1 of sk_flags, set by tcp_fin() when the peer's FIN arrives.
        let flags: u64 = field::<HELPER, u64>(bank, sk, offset!(offsets.sk_flags));
        fin_received = ((flags >> SOCK_DONE) & 1) as u32;
        // In place, the counters need the socket typed as a `tcp_sock`, beyond the
        // tracepoint's `struct sock`: the helper checks it is one (or gives NULL).
        let tp = if HELPER {
            // SAFETY: `sk` is the tracepoint's BTF-typed socket.
            (unsafe { bpf_skc_to_tcp_sock(sk as *mut _) }) as *const u8
        } else {
            sk
        };
        if !tp.is_null() {
            retransmits = field::<HELPER, u32>(bank, tp, offset!(offsets.tcp_total_retrans));
            srtt_us = field::<HELPER, u32>(bank, tp, offset!(offsets.tcp_srtt_us)) >> 3;
            let sent: u64 = field::<HELPER, u64>(bank, tp, offset!(offsets.tcp_bytes_sent));
            let resent: u64 = field::<HELPER, u64>(bank, tp, offset!(offsets.tcp_bytes_retrans));
            bytes_sent = sent.saturating_sub(resent);
            bytes_received = field::<HELPER, u64>(bank, tp, offset!(offsets.tcp_bytes_received));
        }
    }

    let record = StateChange {
        kind: record_kind::STATE_CHANGE,
        family,
        old_state: old_state as u8,
        new_state: new,
        lport,
        rport,
        flags: 0,
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
        comm: current_comm::<HELPER>(bank),
    };
    ring::emit_state_change(config, bank, record);
}

/// The current task's name. With `IN_PLACE`, loaded from the BTF-typed task in two halves:
/// `bpf_get_current_comm` copies it byte by byte up to the NUL and pads the rest, about 40 ns
/// a transition on the benchmark's VM, a tenth of the program. The kernel pads names where it
/// sets them (or not, before 5.x: bytes of an older, longer name may follow the NUL, and
/// userspace cuts there). Without the task's layout, the helper.
#[inline(always)]
fn current_comm<const IN_PLACE: bool>(bank: u32) -> [u8; 16] {
    let at = offset!(tasks.task_comm);
    if !IN_PLACE || at == 0 {
        return bpf_get_current_comm().unwrap_or([0; 16]);
    }
    // SAFETY: the helper only returns the current task, BTF-typed (5.11+).
    let task = unsafe { bpf_get_current_task_btf() } as *const u8;
    read::comm::<true>(bank, task, at)
}

/// Records a reset sent or received on the BTF-typed socket `sk` (NULL for resets answering
/// segments that match no socket: those belong to no connection and are skipped).
#[inline(always)]
pub fn reset<const HELPER: bool>(config: &Config, sk: *const u8, direction: u8) {
    let call = Call::enter(RESETS);
    let bank = call.bank;
    let Some(head) = Head::<false>::read(bank, sk) else {
        return;
    };
    let off = &config.offsets;
    let family: u16 = head.field(off.skc_family);
    let (lport, rport) = head.ports();
    if !config.filter.keeps(family, lport, rport) {
        return;
    }
    // Before the reservation: see `ring.rs` for why the merge needs it so.
    let now = wakeup::now();
    let record = Reset {
        kind: record_kind::RESET,
        direction,
        state: head.field(off.skc_state),
        _pad: 0,
        ts_ns: now,
        cookie: cookie::<HELPER>(bank, sk, off),
        skaddr: sk as u64,
    };
    ring::emit(config, bank, &record);
}
