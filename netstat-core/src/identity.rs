//! One identity per socket, where a record alone cannot give it.
//!
//! Records arrive here raw, before anything decodes them, so every front end sees the same
//! fixed records. Two kernel facts need this:
//!
//! - **No cookie.** Kernels before 5.12 have no `bpf_get_socket_cookie` for tracing programs,
//!   and the classic tracepoint (no BTF) has no cookie at all. There a record carries the
//!   cookie field as it stands, 0 until something (a sock_diag dump) asks for it. A socket
//!   first seen without a cookie gets a stand-in id ([`Cookie::stand_in`]), found by its
//!   kernel address until it closes, even after a dump gives it a cookie, so its records
//!   stay one socket.
//! - **Accepted sockets on Linux 6.1 to 6.12.** `inet_csk_clone_lock()` sets SYN_RECV on the
//!   new socket before it copies the ports, addresses and cookie in, so the LISTEN -> SYN_RECV
//!   record carries the listener's identity (remote port 0). The same softirq goes on to the
//!   socket's next transition (SYN_RECV -> ESTABLISHED, or CLOSE), whose record has the real
//!   one. Such a record waits here, by socket address, for that next record and takes its
//!   identity. Kernels that set the state after the copy (6.13+) send a remote port, and their
//!   records pass straight through. Deciding by the record, not the kernel version, covers
//!   every kernel and backport.

use netstat_common::{Accept, Reset, StateChange, record_kind, tcp_state};
use rustc_hash::FxHashMap;

use crate::event::Cookie;

/// How many sockets without a cookie are followed at once; more are counted in
/// [`Identities::overflow`] and fall back to one id per record's cookie field.
const CAPACITY: usize = 1 << 20;

/// How many accepted sockets may wait for their identity at once. They wait microseconds
/// (the rest of one softirq), so this is only a bound on a kernel that never sends it.
const PENDING_CAPACITY: usize = 256;

/// How long an accepted socket's first record waits for its identity before it goes out as
/// it is (counted in [`Identities::unmatched`]). The next record is normally microseconds
/// behind, but a vCPU descheduled in the middle of the softirq can hold it back for tens of
/// milliseconds (20 ms was once too short for the kernel matrix's emulated 5.10).
pub const PENDING_MAX_NS: u64 = 250_000_000;

#[derive(Debug, Default)]
pub struct Identities {
    /// Sockets first seen without a cookie: kernel address -> id, until CLOSE.
    by_address: FxHashMap<u64, u64>,
    /// Stand-in ids given so far.
    stand_ins: u64,
    /// LISTEN -> SYN_RECV records still carrying their listener's identity.
    pending: Vec<StateChange>,
    /// Sockets without a cookie not followed because [`CAPACITY`] was reached.
    pub overflow: u64,
    /// Accepted sockets whose first record went out without its own identity.
    pub unmatched: u64,
}

impl Identities {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether records wait for their socket's next one; the reader should come back soon.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Hands `bytes` (one ring-buffer record) to `out`, fixed where needed, preceded by any
    /// waiting record it completes. Records of unknown kinds pass through for the decoder to
    /// count.
    pub fn feed(&mut self, bytes: &[u8], out: &mut impl FnMut(&[u8])) {
        match kind(bytes) {
            Some(record_kind::STATE_CHANGE) if bytes.len() >= size_of::<StateChange>() => {
                let mut r: StateChange = read(bytes);
                if is_unfilled_clone(&r) {
                    if self.pending.len() >= PENDING_CAPACITY {
                        let oldest = self.pending.remove(0);
                        self.unmatched += 1;
                        out(as_bytes(&oldest));
                    }
                    self.pending.push(r);
                    return;
                }
                let changed = self.identify(&mut r);
                if let Some(i) = self.pending.iter().position(|p| p.skaddr == r.skaddr) {
                    let mut first = self.pending.remove(i);
                    adopt(&mut first, &r);
                    out(as_bytes(&first));
                }
                if changed {
                    out(as_bytes(&r));
                } else {
                    out(bytes);
                }
            }
            Some(record_kind::ACCEPT) if bytes.len() >= size_of::<Accept>() => {
                let mut r: Accept = read(bytes);
                match self.by_address.get(&r.skaddr) {
                    Some(&id) => {
                        r.cookie = id;
                        out(as_bytes(&r));
                    }
                    None => out(bytes),
                }
            }
            Some(record_kind::RESET) if bytes.len() >= size_of::<Reset>() => {
                let mut r: Reset = read(bytes);
                match self.by_address.get(&r.skaddr) {
                    Some(&id) => {
                        r.cookie = id;
                        out(as_bytes(&r));
                    }
                    None => out(bytes),
                }
            }
            _ => out(bytes),
        }
    }

    /// Sends out, as they are, waiting records older than [`PENDING_MAX_NS`] at `now_ns`
    /// (kernel monotonic time), or all of them with `now_ns = u64::MAX`.
    pub fn expire(&mut self, now_ns: u64, out: &mut impl FnMut(&[u8])) {
        while let Some(first) = self.pending.first() {
            if now_ns.saturating_sub(first.ts_ns) < PENDING_MAX_NS {
                break;
            }
            let first = self.pending.remove(0);
            self.unmatched += 1;
            out(as_bytes(&first));
        }
    }

    /// Gives `r` its socket's id where the kernel gave no cookie; true if `r` changed.
    fn identify(&mut self, r: &mut StateChange) -> bool {
        if r.cookie != 0 && self.by_address.is_empty() {
            return false;
        }
        let born = matches!(
            (r.old_state, r.new_state),
            (tcp_state::CLOSE, tcp_state::SYN_SENT | tcp_state::LISTEN)
                | (tcp_state::LISTEN, tcp_state::SYN_RECV)
        );
        if born {
            // The address of a socket whose close we never saw, taken by a new one.
            self.by_address.remove(&r.skaddr);
        }
        let closing = r.new_state == tcp_state::CLOSE;
        let id = match self.by_address.get(&r.skaddr) {
            Some(&id) => {
                if closing {
                    self.by_address.remove(&r.skaddr);
                }
                id
            }
            None if r.cookie == 0 => {
                self.stand_ins += 1;
                let id = Cookie::stand_in(self.stand_ins).0;
                if !closing {
                    if self.by_address.len() < CAPACITY {
                        self.by_address.insert(r.skaddr, id);
                    } else {
                        self.overflow += 1;
                    }
                }
                id
            }
            None => return false,
        };
        let changed = r.cookie != id;
        r.cookie = id;
        changed
    }
}

/// A LISTEN -> SYN_RECV record made before the kernel gave the new socket its identity.
fn is_unfilled_clone(r: &StateChange) -> bool {
    r.old_state == tcp_state::LISTEN && r.new_state == tcp_state::SYN_RECV && r.rport == 0
}

/// Gives an accepted socket's first record the identity its next record shows.
fn adopt(first: &mut StateChange, next: &StateChange) {
    first.cookie = next.cookie;
    first.family = next.family;
    first.lport = next.lport;
    first.rport = next.rport;
    first.saddr = next.saddr;
    first.daddr = next.daddr;
    first.netns = next.netns;
}

fn kind(bytes: &[u8]) -> Option<u16> {
    Some(u16::from_ne_bytes(bytes.get(..2)?.try_into().ok()?))
}

/// `T` from the start of `bytes`; the caller has checked the length.
fn read<T: Copy>(bytes: &[u8]) -> T {
    assert!(bytes.len() >= size_of::<T>());
    // SAFETY: the length is checked and the record types are plain integers, valid for any bits.
    unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) }
}

/// The bytes of a record.
fn as_bytes<T: Copy>(r: &T) -> &[u8] {
    // SAFETY: the record types are `repr(C)` plain integers with explicit padding, so every
    // byte is initialized.
    unsafe { std::slice::from_raw_parts(std::ptr::from_ref::<T>(r).cast::<u8>(), size_of::<T>()) }
}

#[cfg(test)]
mod tests {
    use netstat_common::{AF_INET, AF_INET6};

    use super::*;
    use crate::decode::fixtures::record;

    fn run(ids: &mut Identities, records: &[StateChange]) -> Vec<StateChange> {
        let mut got = Vec::new();
        for r in records {
            ids.feed(as_bytes(r), &mut |b| got.push(read::<StateChange>(b)));
        }
        got
    }

    #[test]
    fn records_with_cookies_pass_through_untouched() {
        let mut ids = Identities::new();
        let records = [
            record(tcp_state::CLOSE, tcp_state::SYN_SENT),
            record(tcp_state::SYN_SENT, tcp_state::ESTABLISHED),
        ];
        assert_eq!(run(&mut ids, &records), records);
    }

    #[test]
    fn a_socket_first_seen_without_a_cookie_keeps_its_address_id_until_close() {
        let mut ids = Identities::new();
        let mut a = record(tcp_state::CLOSE, tcp_state::SYN_SENT);
        a.cookie = 0;
        let mut b = record(tcp_state::SYN_SENT, tcp_state::ESTABLISHED);
        b.cookie = 0;
        // A sock_diag dump gave the socket a cookie meanwhile.
        let mut c = record(tcp_state::ESTABLISHED, tcp_state::CLOSE);
        c.cookie = 99;
        let got = run(&mut ids, &[a, b, c]);
        let id = Cookie(got[0].cookie);
        assert_eq!(id.known(), None);
        assert_ne!(id.0 & !(1 << 63), a.skaddr & !(1 << 63), "not the address");
        assert!(got.iter().all(|r| r.cookie == id.0), "{got:?}");
        assert!(ids.by_address.is_empty());
    }

    #[test]
    fn an_accepted_socket_takes_its_identity_from_its_next_record() {
        let mut ids = Identities::new();
        // 6.1/6.12: the listener's cookie, family and ports.
        let mut clone = record(tcp_state::LISTEN, tcp_state::SYN_RECV);
        clone.cookie = 5;
        clone.family = AF_INET6;
        clone.lport = 8080;
        clone.rport = 0;
        clone.saddr = [0; 16];
        clone.daddr = [0; 16];
        let mut est = record(tcp_state::SYN_RECV, tcp_state::ESTABLISHED);
        est.cookie = 77;
        est.lport = 8080;
        est.rport = 40000;
        let got = run(&mut ids, &[clone]);
        assert!(got.is_empty(), "the clone's record waits");
        assert!(ids.has_pending());
        let got = run(&mut ids, &[est]);
        assert_eq!(got.len(), 2);
        let first = got[0];
        assert_eq!(
            (first.old_state, first.new_state),
            (tcp_state::LISTEN, tcp_state::SYN_RECV)
        );
        assert_eq!(first.cookie, 77);
        assert_eq!(first.family, AF_INET);
        assert_eq!((first.lport, first.rport), (8080, 40000));
        assert_eq!(first.saddr, est.saddr);
        assert_eq!(first.ts_ns, clone.ts_ns);
        assert_eq!(got[1], est);
        assert!(!ids.has_pending());
    }

    #[test]
    fn a_clone_without_a_next_record_goes_out_when_old() {
        let mut ids = Identities::new();
        let mut clone = record(tcp_state::LISTEN, tcp_state::SYN_RECV);
        clone.rport = 0;
        run(&mut ids, &[clone]);
        let mut got = Vec::new();
        ids.expire(clone.ts_ns + 1, &mut |b| got.push(read::<StateChange>(b)));
        assert!(got.is_empty());
        ids.expire(clone.ts_ns + PENDING_MAX_NS, &mut |b| {
            got.push(read::<StateChange>(b));
        });
        assert_eq!(got, [clone]);
        assert_eq!(ids.unmatched, 1);
    }

    #[test]
    fn a_reused_address_starts_a_new_socket() {
        let mut ids = Identities::new();
        let mut a = record(tcp_state::CLOSE, tcp_state::SYN_SENT);
        a.cookie = 0;
        run(&mut ids, &[a]);
        // Its close was never seen; a socket with a cookie now lives at that address.
        let mut b = record(tcp_state::CLOSE, tcp_state::SYN_SENT);
        b.cookie = 12;
        assert_eq!(run(&mut ids, &[b]), [b]);
    }
}
