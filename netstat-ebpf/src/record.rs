//! Building the ring-buffer records from a socket the kernel hands us.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, generated::bpf_skc_to_tcp_sock,
};
use netstat_common::{
    AF_INET, AF_INET6, Config, IPPROTO_TCP, Reset, StateChange, counter, record_kind, tcp_state,
};

use crate::{
    counters::count,
    read::{Head, cookie, direct, offset, read, socket_cgroup},
    ring, wakeup,
};

/// `enum sock_flags`: SOCK_DEAD is 0, SOCK_DONE 1 (stable since Linux 2.6).
const SOCK_DONE: u64 = 1;

/// Records the transition `old -> new` of the BTF-typed socket `sk`. `HELPER`: whether this
/// kernel has the cookie helper for tracing programs (see [`cookie`]).
#[inline(always)]
pub fn state_change<const HELPER: bool>(
    config: &Config,
    bank: u32,
    sk: *const u8,
    old_state: i32,
    new_state: i32,
) {
    let off = &config.offsets;
    let protocol: u16 = if HELPER {
        direct(sk, offset!(offsets.sk_protocol))
    } else {
        read(bank, sk, off.sk_protocol)
    };
    if protocol != IPPROTO_TCP {
        return;
    }
    count(bank, counter::SEEN);

    // With the helper (5.12+) the socket is read in place (see [`direct`]); before, its head
    // is copied once.
    let head = if HELPER {
        None
    } else {
        let Some(head) = Head::read(bank, sk) else {
            return;
        };
        Some(head)
    };
    let (family, lport, rport) = match &head {
        None => {
            let family: u16 = direct(sk, offset!(offsets.skc_family));
            let num: u16 = direct(sk, offset!(offsets.skc_num));
            let dport: u16 = direct(sk, offset!(offsets.skc_dport));
            // At CLOSE the kernel has released an automatically bound port (see
            // `Head::ports`); `inet_sport` lies beyond `struct sock`, out of a direct load's
            // reach.
            let lport = if num != 0 {
                num
            } else {
                u16::from_be(read(bank, sk, off.inet_sport))
            };
            (family, lport, u16::from_be(dport))
        }
        Some(head) => {
            let (lport, rport) = head.ports(off);
            (head.field(off.skc_family), lport, rport)
        }
    };
    if !config.filter.keeps(family, lport, rport) {
        count(bank, counter::FILTERED);
        return;
    }

    // Before the reservation: see `ring.rs` for why the merge needs it so.
    let now = wakeup::now();
    let pid_tgid = bpf_get_current_pid_tgid();

    let mut saddr = [0u8; 16];
    let mut daddr = [0u8; 16];
    match &head {
        None if family == AF_INET6 => {
            let half = |at: u32| direct::<u64>(sk, at).to_ne_bytes();
            saddr[..8].copy_from_slice(&half(offset!(offsets.skc_v6_rcv_saddr)));
            saddr[8..].copy_from_slice(&half(offset!(offsets.skc_v6_rcv_saddr) + 8));
            daddr[..8].copy_from_slice(&half(offset!(offsets.skc_v6_daddr)));
            daddr[8..].copy_from_slice(&half(offset!(offsets.skc_v6_daddr) + 8));
        }
        None if family == AF_INET => {
            let s: u32 = direct(sk, offset!(offsets.skc_rcv_saddr));
            let d: u32 = direct(sk, offset!(offsets.skc_daddr));
            saddr[..4].copy_from_slice(&s.to_ne_bytes());
            daddr[..4].copy_from_slice(&d.to_ne_bytes());
        }
        None => {}
        Some(head) if family == AF_INET6 => {
            saddr = head.field(off.skc_v6_rcv_saddr);
            daddr = head.field(off.skc_v6_daddr);
        }
        Some(head) if family == AF_INET => {
            let s: [u8; 4] = head.field(off.skc_rcv_saddr);
            let d: [u8; 4] = head.field(off.skc_daddr);
            saddr[..4].copy_from_slice(&s);
            daddr[..4].copy_from_slice(&d);
        }
        Some(_) => {}
    }
    let netns: u32 = match &head {
        None => {
            let net: *const u8 = direct(sk, offset!(offsets.skc_net));
            if net.is_null() {
                0
            } else {
                direct(net, offset!(offsets.net_ns_inum))
            }
        }
        Some(head) => {
            let net = head.field::<usize>(off.skc_net) as *const u8;
            if net.is_null() {
                0
            } else {
                read(bank, net, off.net_ns_inum)
            }
        }
    };

    let cgroup = socket_cgroup::<HELPER>(bank, sk, off);
    let new = new_state as u8;
    let (mut sk_err, mut retransmits, mut srtt_us, mut bytes_sent, mut bytes_received) =
        (0, 0, 0, 0, 0);
    let mut fin_received = 0;
    if new == tcp_state::CLOSE && HELPER {
        sk_err = direct(sk, offset!(offsets.sk_err));
        // SOCK_DONE is bit 1 of sk_flags, set by tcp_fin() when the peer's FIN arrives.
        fin_received = ((direct::<u64>(sk, offset!(offsets.sk_flags)) >> SOCK_DONE) & 1) as u32;
        // SAFETY: `sk` is the tracepoint's BTF-typed socket; the helper checks it is a TCP
        // socket and gives it typed as one (the tracepoint's type is `struct sock`, which a
        // direct load may not go beyond), or NULL.
        let tp = unsafe { bpf_skc_to_tcp_sock(sk as *mut _) } as *const u8;
        if !tp.is_null() {
            retransmits = direct(tp, offset!(offsets.tcp_total_retrans));
            srtt_us = direct::<u32>(tp, offset!(offsets.tcp_srtt_us)) >> 3;
            let sent: u64 = direct(tp, offset!(offsets.tcp_bytes_sent));
            bytes_sent = sent.saturating_sub(direct(tp, offset!(offsets.tcp_bytes_retrans)));
            bytes_received = direct(tp, offset!(offsets.tcp_bytes_received));
        }
    } else if new == tcp_state::CLOSE {
        sk_err = read(bank, sk, off.sk_err);
        retransmits = read(bank, sk, off.tcp_total_retrans);
        srtt_us = read::<u32>(bank, sk, off.tcp_srtt_us) >> 3;
        let sent: u64 = read(bank, sk, off.tcp_bytes_sent);
        bytes_sent = sent.saturating_sub(read(bank, sk, off.tcp_bytes_retrans));
        bytes_received = read(bank, sk, off.tcp_bytes_received);
        // SOCK_DONE is bit 1 of sk_flags, set by tcp_fin() when the peer's FIN arrives.
        fin_received = ((read::<u64>(bank, sk, off.sk_flags) >> SOCK_DONE) & 1) as u32;
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
        cookie: cookie::<HELPER>(bank, sk, off),
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
    };
    ring::emit_state_change(config, bank, record);
}

/// Records a reset sent or received on the BTF-typed socket `sk` (NULL for resets answering
/// segments that match no socket: those belong to no connection and are skipped).
#[inline(always)]
pub fn reset<const HELPER: bool>(config: &Config, bank: u32, sk: *const u8, direction: u8) {
    let Some(head) = Head::read(bank, sk) else {
        return;
    };
    let off = &config.offsets;
    let family: u16 = head.field(off.skc_family);
    let (lport, rport) = head.ports(off);
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
