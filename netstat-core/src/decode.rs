//! Ring-buffer records to [`Transition`]s, with every length and kind checked first.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netstat_common::{
    AF_INET, AF_INET6, Accept, Exit, Reset, StateChange, record_flags, record_kind,
    reset_direction, tcp_state,
};

use crate::{
    event::{
        AcceptEvent, Comm, Cookie, Endpoint, ExitEvent, Family, Final, Owner, Record,
        ResetDirection, ResetEvent, Task, Transition, shown_v6,
    },
    state::TcpState,
};

/// Why a record could not be decoded. Each is counted and the record skipped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is too short; expected {expected}")]
    Short { len: usize, expected: usize },
    #[error("record kind {0} is not one this version knows")]
    UnknownKind(u16),
    #[error("address family {0} is neither AF_INET nor AF_INET6")]
    Family(u16),
    #[error("reset direction {0} is neither sent nor received")]
    Direction(u8),
}

/// Reads a `T` from the start of `bytes` after checking the length.
fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    if bytes.len() < size_of::<T>() {
        return Err(DecodeError::Short {
            len: bytes.len(),
            expected: size_of::<T>(),
        });
    }
    // SAFETY: the length is checked and the record types are plain integers, valid for any bits.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) })
}

/// Decodes any ring-buffer record.
pub fn decode_record(bytes: &[u8]) -> Result<Record, DecodeError> {
    let kind: u16 = read(bytes)?;
    match kind {
        record_kind::STATE_CHANGE => Ok(Record::Transition(from_raw(&read(bytes)?)?)),
        record_kind::RESET => {
            let raw: Reset = read(bytes)?;
            Ok(Record::Reset(ResetEvent {
                ts_ns: raw.ts_ns,
                cookie: identity(raw.cookie, raw.skaddr),
                direction: match raw.direction {
                    reset_direction::SENT => ResetDirection::Sent,
                    reset_direction::RECEIVED => ResetDirection::Received,
                    other => return Err(DecodeError::Direction(other)),
                },
                state: TcpState::from_kernel(raw.state),
            }))
        }
        record_kind::ACCEPT => {
            let raw: Accept = read(bytes)?;
            Ok(Record::Accept(AcceptEvent {
                ts_ns: raw.ts_ns,
                cookie: identity(raw.cookie, raw.skaddr),
                netns: raw.netns,
                lport: raw.lport,
                owner: Owner::new(raw.pid, Comm::from_kernel(raw.comm).name()),
            }))
        }
        record_kind::EXIT => {
            let raw: Exit = read(bytes)?;
            Ok(Record::Exit(ExitEvent {
                ts_ns: raw.ts_ns,
                pid: raw.pid,
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// Whether `bytes` is an owner fact (an accept or a process exit) rather than something that
/// happened to a socket: those are not among the transitions the kernel counts as seen.
pub fn is_owner_fact(bytes: &[u8]) -> bool {
    matches!(
        read::<u16>(bytes),
        Ok(record_kind::ACCEPT | record_kind::EXIT)
    )
}

/// Decodes a state-change record; any other kind is an error. The engine decodes every kind
/// ([`decode_record`]); this is for tests that build one transition.
#[cfg(test)]
pub fn decode(bytes: &[u8]) -> Result<Transition, DecodeError> {
    match decode_record(bytes)? {
        Record::Transition(t) => Ok(t),
        Record::Reset(_) => Err(DecodeError::UnknownKind(record_kind::RESET)),
        Record::Accept(_) => Err(DecodeError::UnknownKind(record_kind::ACCEPT)),
        Record::Exit(_) => Err(DecodeError::UnknownKind(record_kind::EXIT)),
    }
}

/// The socket's id: its cookie, or where the kernel could not give one (0), its address.
pub fn identity(cookie: u64, skaddr: u64) -> Cookie {
    if cookie == 0 {
        Cookie::of_address(skaddr)
    } else {
        Cookie(cookie)
    }
}

/// Converts an already-copied record.
pub fn from_raw(raw: &StateChange) -> Result<Transition, DecodeError> {
    let (family, laddr, raddr) = addresses(raw)?;
    let new = TcpState::from_kernel(raw.new_state);
    // The classic tracepoint cannot reach the socket's counters: unknown, not zero.
    let socket_fields = raw.flags & record_flags::NO_SOCKET_FIELDS == 0;
    Ok(Transition {
        ts_ns: raw.ts_ns,
        cookie: identity(raw.cookie, raw.skaddr),
        family,
        local: Endpoint::new(laddr, raw.lport),
        remote: Endpoint::new(raddr, raw.rport),
        old: TcpState::from_kernel(raw.old_state),
        new,
        netns: raw.netns,
        cgroup: raw.cgroup,
        task: Task {
            pid: raw.pid,
            tid: raw.tid,
            comm: Comm::from_kernel(raw.comm),
        },
        fin: (socket_fields && raw.new_state == tcp_state::CLOSE).then(|| Final {
            errno: raw.sk_err.unsigned_abs() as i32,
            bytes_sent: raw.bytes_sent,
            bytes_received: raw.bytes_received,
            retransmits: raw.retransmits,
            srtt_us: raw.srtt_us,
            fin_received: raw.fin_received != 0,
        }),
    })
}

fn addresses(raw: &StateChange) -> Result<(Family, IpAddr, IpAddr), DecodeError> {
    match raw.family {
        AF_INET => {
            let v4 = |b: &[u8; 16]| IpAddr::V4(Ipv4Addr::new(b[0], b[1], b[2], b[3]));
            Ok((Family::Ipv4, v4(&raw.saddr), v4(&raw.daddr)))
        }
        AF_INET6 => Ok(shown_v6(
            Ipv6Addr::from(raw.saddr),
            Ipv6Addr::from(raw.daddr),
        )),
        other => Err(DecodeError::Family(other)),
    }
}

/// Records as the kernel writes them, for unit tests here and in netstat-user (which turns
/// this on with the `fixtures` feature, for its tests only).
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures {
    use netstat_common::{AF_INET, StateChange, record_kind};

    /// A record as the kernel would write it: 127.0.0.1:40000 -> 127.0.0.1:8080.
    pub fn record(old: u8, new: u8) -> StateChange {
        let mut r = StateChange {
            kind: record_kind::STATE_CHANGE,
            family: AF_INET,
            old_state: old,
            new_state: new,
            lport: 40000,
            rport: 8080,
            flags: 0,
            pid: 42,
            ts_ns: 1_000_000,
            cookie: 7,
            skaddr: 0xffff_0000,
            tid: 43,
            netns: 4_026_531_840,
            sk_err: 0,
            retransmits: 0,
            srtt_us: 0,
            fin_received: 0,
            bytes_sent: 0,
            bytes_received: 0,
            cgroup: 0,
            saddr: [0; 16],
            daddr: [0; 16],
            comm: [0; 16],
        };
        r.saddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        r.daddr[..4].copy_from_slice(&[127, 0, 0, 1]);
        r.comm[..4].copy_from_slice(b"curl");
        r
    }
}

#[cfg(test)]
mod tests {
    use super::{fixtures::record, *};

    const RECORD_LEN: usize = size_of::<StateChange>();

    fn bytes(r: &StateChange) -> Vec<u8> {
        // SAFETY: StateChange is repr(C) plain data without implicit padding.
        unsafe {
            std::slice::from_raw_parts(
                std::ptr::from_ref::<StateChange>(r).cast::<u8>(),
                RECORD_LEN,
            )
        }
        .to_vec()
    }

    #[test]
    fn decodes_an_ipv4_record() {
        let t = decode(&bytes(&record(tcp_state::SYN_SENT, tcp_state::ESTABLISHED))).unwrap();
        assert_eq!(t.cookie, Cookie(7));
        assert_eq!(t.family, Family::Ipv4);
        assert_eq!(t.local.to_string(), "127.0.0.1:40000");
        assert_eq!(t.remote.to_string(), "127.0.0.1:8080");
        assert_eq!((t.old, t.new), (TcpState::SynSent, TcpState::Established));
        assert_eq!(&*t.task.comm.name(), "curl");
        assert_eq!(t.task.pid, 42);
        assert!(t.fin.is_none());
    }

    #[test]
    fn close_carries_final_counters() {
        let mut r = record(tcp_state::LAST_ACK, tcp_state::CLOSE);
        r.bytes_sent = 1_048_576;
        r.bytes_received = 17;
        r.sk_err = 111;
        let t = decode(&bytes(&r)).unwrap();
        let fin = t.fin.unwrap();
        assert_eq!(fin.bytes_sent, 1_048_576);
        assert_eq!(fin.bytes_received, 17);
        assert_eq!(fin.errno, 111);
    }

    #[test]
    fn unassigned_port_is_none() {
        let mut r = record(tcp_state::CLOSE, tcp_state::SYN_SENT);
        r.lport = 0;
        let t = decode(&bytes(&r)).unwrap();
        assert_eq!(t.local.port, None);
        assert_eq!(t.local.to_string(), "127.0.0.1:*");
    }

    #[test]
    fn v4_mapped_ipv6_shows_as_ipv4_and_plain_ipv6_stays() {
        let mut r = record(tcp_state::LISTEN, tcp_state::SYN_RECV);
        r.family = AF_INET6;
        r.saddr = Ipv4Addr::new(10, 0, 0, 1).to_ipv6_mapped().octets();
        r.daddr = Ipv4Addr::new(10, 0, 0, 2).to_ipv6_mapped().octets();
        let t = decode(&bytes(&r)).unwrap();
        assert_eq!(t.family, Family::Ipv4);
        assert_eq!(t.local.to_string(), "10.0.0.1:40000");

        r.saddr = Ipv6Addr::LOCALHOST.octets();
        r.daddr = Ipv6Addr::LOCALHOST.octets();
        let t = decode(&bytes(&r)).unwrap();
        assert_eq!(t.family, Family::Ipv6);
        assert_eq!(t.remote.to_string(), "[::1]:8080");
    }

    #[test]
    fn ipv6_listener_on_any_stays_ipv6() {
        let mut r = record(tcp_state::CLOSE, tcp_state::LISTEN);
        r.family = AF_INET6;
        r.saddr = [0; 16];
        r.daddr = [0; 16];
        assert_eq!(decode(&bytes(&r)).unwrap().family, Family::Ipv6);
    }

    #[test]
    fn short_unknown_and_bad_family_records_are_errors_not_panics() {
        let full = bytes(&record(1, 2));
        for len in [0, 1, 2, 64, RECORD_LEN - 1] {
            assert!(decode(&full[..len]).is_err(), "length {len}");
        }
        let mut r = record(1, 2);
        r.kind = 99;
        assert_eq!(decode(&bytes(&r)), Err(DecodeError::UnknownKind(99)));
        let mut r = record(1, 2);
        r.family = 1;
        assert_eq!(decode(&bytes(&r)), Err(DecodeError::Family(1)));
    }

    #[test]
    fn decodes_reset_records() {
        let r = Reset {
            kind: record_kind::RESET,
            direction: reset_direction::SENT,
            state: tcp_state::CLOSE,
            _pad: 0,
            ts_ns: 9,
            cookie: 77,
            skaddr: 0xffff_8880_0000_1000,
        };
        // SAFETY: Reset is repr(C) plain data without implicit padding.
        let raw =
            unsafe { std::slice::from_raw_parts((&raw const r).cast::<u8>(), size_of::<Reset>()) };
        assert_eq!(
            decode_record(raw),
            Ok(Record::Reset(ResetEvent {
                ts_ns: 9,
                cookie: Cookie(77),
                direction: ResetDirection::Sent,
                state: TcpState::Close,
            }))
        );
        assert!(decode_record(&raw[..20]).is_err());
        let mut bad = raw.to_vec();
        bad[2] = 9;
        assert_eq!(decode_record(&bad), Err(DecodeError::Direction(9)));
    }

    #[test]
    fn comm_stops_at_nul_and_survives_bad_utf8() {
        let mut raw = [0u8; 16];
        raw[..3].copy_from_slice(&[b'a', 0xff, b'b']);
        assert_eq!(&*Comm(raw).name(), "a\u{fffd}b");
    }

    #[test]
    fn a_name_with_an_older_names_bytes_after_its_nul_is_that_name() {
        // `curl` set over `python3-worker`, by a kernel that did not pad.
        let mut stale = *b"python3-worker\0\0";
        stale[..5].copy_from_slice(b"curl\0");
        let mut r = record(tcp_state::SYN_SENT, tcp_state::ESTABLISHED);
        r.comm = stale;
        let t = decode(&bytes(&r)).unwrap();
        assert_eq!(t.task.comm, Comm::from("curl"));
        assert_eq!(&*t.task.comm.name(), "curl");
    }
}
