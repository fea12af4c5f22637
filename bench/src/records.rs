//! Ring-buffer records for the replay benchmark: the exact bytes the kernel program writes.
//!
//! Two sources:
//! - [`synthetic`]: connections as the churn load generator makes them, ten transitions each
//!   in the order the kernel emits them on loopback, many connections in flight at once so
//!   their records interleave (as they do in the ring), IPv4 and IPv6 mixed.
//! - [`from_ndjson`]: a real capture, `enetstat watch -o json` output converted back to
//!   records. JSON keeps everything the userspace path reads except the task on the CPU
//!   (it shows the owner instead, which is what the tracker would derive from it) and the
//!   closing statistics, which are zero here.

use std::net::IpAddr;

use anyhow::{Context as _, Result, bail};
// Every one of the kernel's state numbers, by its kernel name.
#[allow(clippy::wildcard_imports)]
use netstat_common::{AF_INET, AF_INET6, StateChange, record_kind, tcp_state::*};
use serde::Deserialize;

/// One record as the ring buffer holds it.
pub type RawRecord = [u8; size_of::<StateChange>()];

/// The bytes of `record`, as the kernel writes them.
pub fn to_bytes(record: &StateChange) -> RawRecord {
    // SAFETY: StateChange is repr(C) plain integers and arrays with explicit padding and a
    // size assertion, so every byte is initialized and the sizes match.
    unsafe { std::mem::transmute_copy(record) }
}

fn comm(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    let n = name.len().min(15);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// A record with every field zero except its kind, family and network namespace. Built from
/// zeroes rather than a struct literal so fields added to the record later need no change here.
fn blank(family: u16) -> StateChange {
    // SAFETY: StateChange is plain integers and byte arrays, for which all zeroes is valid.
    let mut r: StateChange = unsafe { std::mem::zeroed() };
    r.kind = record_kind::STATE_CHANGE;
    r.family = family;
    r.netns = 4_026_531_840;
    r
}

fn loopback(v6: bool) -> [u8; 16] {
    let mut a = [0u8; 16];
    if v6 {
        a[15] = 1;
    } else {
        a[..4].copy_from_slice(&[127, 0, 0, 1]);
    }
    a
}

/// The transitions of one churn connection in the order the kernel emits them on loopback:
/// `(client side?, old, new)`.
pub const CONNECTION_SCRIPT: [(bool, u8, u8); 10] = [
    (true, CLOSE, SYN_SENT),
    (true, SYN_SENT, ESTABLISHED),
    (false, LISTEN, SYN_RECV),
    (false, SYN_RECV, ESTABLISHED),
    (true, ESTABLISHED, FIN_WAIT1),
    (false, ESTABLISHED, CLOSE_WAIT),
    (true, FIN_WAIT1, FIN_WAIT2),
    (false, CLOSE_WAIT, LAST_ACK),
    (true, FIN_WAIT2, CLOSE),
    (false, LAST_ACK, CLOSE),
];

/// Whether a transition runs in the owner's process context (so the record's pid is the
/// owner's) rather than in softirq.
fn in_process_context(old: u8, new: u8) -> bool {
    matches!(
        (old, new),
        (CLOSE, SYN_SENT | LISTEN) | (ESTABLISHED, FIN_WAIT1) | (CLOSE_WAIT, LAST_ACK)
    )
}

/// Records of `connections` churn connections to two listeners (127.0.0.1:8080 and
/// [::1]:8080), `in_flight` of them open at a time, one in `v6_every` over IPv6 (0: none).
/// Deterministic: the same arguments give the same bytes.
pub fn synthetic(connections: usize, in_flight: usize, v6_every: usize) -> Vec<RawRecord> {
    const PID: u32 = 4242;
    const LISTEN_PORT: u16 = 8080;
    let mut out = Vec::with_capacity(connections * CONNECTION_SCRIPT.len() + 4);
    let mut ts_ns: u64 = 1_000_000_000;
    let mut next_cookie: u64 = 4096;
    let mut rng: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut step = || {
        // xorshift64: cheap, deterministic, good enough to shuffle the interleaving.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };

    let listener = |v6: bool, cookie: u64, old: u8, new: u8, ts_ns: u64| {
        let mut r = blank(if v6 { AF_INET6 } else { AF_INET });
        (r.old_state, r.new_state, r.lport) = (old, new, LISTEN_PORT);
        (r.cookie, r.ts_ns, r.pid, r.tid) = (cookie, ts_ns, PID, PID);
        r.saddr = loopback(v6);
        r.comm = comm("enetstat-loadge");
        to_bytes(&r)
    };
    let listeners = [(false, 1u64), (true, 2u64)];
    for (v6, cookie) in listeners {
        out.push(listener(v6, cookie, CLOSE, LISTEN, ts_ns));
    }

    struct Conn {
        v6: bool,
        client: u64,
        server: u64,
        eport: u16,
        step: usize,
    }
    let mut open: Vec<Conn> = Vec::with_capacity(in_flight.max(1));
    let mut started = 0usize;
    while started < connections || !open.is_empty() {
        while open.len() < in_flight.max(1) && started < connections {
            let v6 = v6_every != 0 && started % v6_every == v6_every - 1;
            open.push(Conn {
                v6,
                client: next_cookie,
                server: next_cookie + 1,
                eport: 32768 + (started % 28_000) as u16,
                step: 0,
            });
            next_cookie += 2;
            started += 1;
        }
        let i = (step() % open.len() as u64) as usize;
        let c = &mut open[i];
        let (client, old, new) = CONNECTION_SCRIPT[c.step];
        ts_ns += 1_000 + step() % 4_000;
        let mut r = blank(if c.v6 { AF_INET6 } else { AF_INET });
        (r.old_state, r.new_state, r.ts_ns) = (old, new, ts_ns);
        r.saddr = loopback(c.v6);
        r.daddr = loopback(c.v6);
        if client {
            (r.cookie, r.lport, r.rport) = (c.client, c.eport, LISTEN_PORT);
        } else {
            (r.cookie, r.lport, r.rport) = (c.server, LISTEN_PORT, c.eport);
        }
        if in_process_context(old, new) {
            (r.pid, r.tid, r.comm) = (PID, PID + 1, comm("enetstat-loadge"));
        } else {
            // Softirq: whoever was on the CPU.
            (r.pid, r.tid, r.comm) = (0, 0, comm("swapper/1"));
        }
        if new == CLOSE {
            (r.bytes_sent, r.bytes_received, r.srtt_us) = (1, 1, 20);
        }
        out.push(to_bytes(&r));
        c.step += 1;
        if c.step == CONNECTION_SCRIPT.len() {
            open.swap_remove(i);
        }
    }
    for (v6, cookie) in listeners {
        ts_ns += 1_000;
        out.push(listener(v6, cookie, LISTEN, CLOSE, ts_ns));
    }
    out
}

/// The fields of an `enetstat watch -o json` line that a record carries.
#[derive(Deserialize)]
struct JsonLine {
    ts_ns: u64,
    cookie: u64,
    pid: Option<u32>,
    comm: Option<String>,
    family: String,
    laddr: IpAddr,
    lport: Option<u16>,
    raddr: IpAddr,
    rport: Option<u16>,
    old: String,
    new: String,
    netns: u32,
}

fn state(name: &str) -> Result<u8> {
    Ok(match name {
        "ESTABLISHED" => ESTABLISHED,
        "SYN_SENT" => SYN_SENT,
        "SYN_RECV" => SYN_RECV,
        "FIN_WAIT1" => FIN_WAIT1,
        "FIN_WAIT2" => FIN_WAIT2,
        "TIME_WAIT" => TIME_WAIT,
        "CLOSE" => CLOSE,
        "CLOSE_WAIT" => CLOSE_WAIT,
        "LAST_ACK" => LAST_ACK,
        "LISTEN" => LISTEN,
        "CLOSING" => CLOSING,
        "NEW_SYN_RECV" => NEW_SYN_RECV,
        other => bail!("unknown TCP state {other:?}"),
    })
}

fn addr_bytes(addr: IpAddr, v6: bool) -> [u8; 16] {
    match (addr, v6) {
        (IpAddr::V4(a), false) => {
            let mut out = [0u8; 16];
            out[..4].copy_from_slice(&a.octets());
            out
        }
        (IpAddr::V4(a), true) => a.to_ipv6_mapped().octets(),
        (IpAddr::V6(a), _) => a.octets(),
    }
}

/// Converts `enetstat watch -o json` output to records, at most `limit` of them.
pub fn from_ndjson(text: &str, limit: usize) -> Result<Vec<RawRecord>> {
    let mut out = Vec::new();
    for (n, line) in text.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        if out.len() >= limit {
            break;
        }
        let j: JsonLine = serde_json::from_str(line)
            .with_context(|| format!("line {}: not a transition", n + 1))?;
        // An IPv4 address on an IPv6 socket was shown unmapped; either way the decoder
        // shows what it showed.
        let v6 = j.family == "ipv6" || j.laddr.is_ipv6() || j.raddr.is_ipv6();
        let mut r = blank(if v6 { AF_INET6 } else { AF_INET });
        r.old_state = state(&j.old).with_context(|| format!("line {}", n + 1))?;
        r.new_state = state(&j.new).with_context(|| format!("line {}", n + 1))?;
        (r.ts_ns, r.cookie, r.netns) = (j.ts_ns, j.cookie, j.netns);
        (r.lport, r.rport) = (j.lport.unwrap_or(0), j.rport.unwrap_or(0));
        r.saddr = addr_bytes(j.laddr, v6);
        r.daddr = addr_bytes(j.raddr, v6);
        r.pid = j.pid.unwrap_or(0);
        r.tid = r.pid;
        r.comm = comm(j.comm.as_deref().unwrap_or("swapper/0"));
        out.push(to_bytes(&r));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(r: &RawRecord) -> StateChange {
        // SAFETY: the same layout, as in `to_bytes`.
        unsafe { std::mem::transmute_copy(r) }
    }

    #[test]
    fn every_connection_makes_its_ten_transitions_in_order() {
        let records = synthetic(100, 16, 4);
        assert_eq!(records.len(), 100 * 10 + 4);
        let mut per_cookie = std::collections::HashMap::<u64, Vec<(u8, u8)>>::new();
        for r in records.iter().map(raw) {
            per_cookie
                .entry(r.cookie)
                .or_default()
                .push((r.old_state, r.new_state));
        }
        let client: Vec<_> = CONNECTION_SCRIPT
            .iter()
            .filter(|s| s.0)
            .map(|s| (s.1, s.2))
            .collect();
        assert_eq!(per_cookie[&4096], client);
        assert_eq!(per_cookie[&1], [(CLOSE, LISTEN), (LISTEN, CLOSE)]);
        let v6 = records.iter().map(raw).filter(|r| r.family == AF_INET6);
        assert_eq!(v6.count(), 25 * 10 + 2);
    }

    #[test]
    fn ndjson_lines_become_records() {
        let line = r#"{"time":"2026-11-26T09:09:47.000001Z","ts_ns":5000,"cookie":7,"pid":4410,"comm":"psql","family":"ipv6","laddr":"::1","lport":null,"raddr":"::1","rport":8080,"old":"CLOSE","new":"SYN_SENT","ms_in_old":null,"netns":4026531840}"#;
        let records = from_ndjson(&format!("{line}\n{line}\n"), 1).unwrap();
        assert_eq!(records.len(), 1);
        let r = raw(&records[0]);
        assert_eq!(
            (r.family, r.old_state, r.new_state),
            (AF_INET6, CLOSE, SYN_SENT)
        );
        assert_eq!((r.cookie, r.ts_ns, r.rport, r.lport), (7, 5000, 8080, 0));
        assert_eq!(r.pid, 4410);
        assert_eq!(&r.comm[..5], b"psql\0");
    }
}
