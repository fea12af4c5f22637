//! One socket as a netlink sock_diag dump describes it: the plain data the live table seeds
//! and reconciles from, and [`parse_datagram`], which reads it from the kernel's reply bytes.
//! Asking the kernel for the dump is netstat-user's `sockdiag` module.

use std::{
    fmt, io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use serde::Serialize;

use crate::{
    event::{Cookie, Endpoint, Family, shown_v6},
    state::TcpState,
};

/// Address families as a dump request and its replies carry them.
pub const AF_INET: u8 = libc::AF_INET as u8;
pub const AF_INET6: u8 = libc::AF_INET6 as u8;

const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const SOCK_DIAG_BY_FAMILY: u16 = 20;
/// `struct inet_diag_msg`.
const INET_DIAG_MSG_LEN: usize = 72;
/// The attribute carrying a full socket's cgroup id; the kernel adds it unasked.
const INET_DIAG_CGROUP_ID: u16 = 21;
/// The attribute carrying a full TCP socket's `struct tcp_info`, when asked for.
const INET_DIAG_INFO: u16 = 2;
/// Offsets in `struct tcp_info` (`linux/tcp.h`; fields only ever appended): the u64s
/// `tcpi_bytes_received`, `tcpi_bytes_sent` and `tcpi_bytes_retrans` (Linux 4.19+).
const TCPI_BYTES_RECEIVED: usize = 128;
const TCPI_BYTES_SENT: usize = 200;
const TCPI_BYTES_RETRANS: usize = 208;

/// A dump's reply that the kernel refused, or that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ReplyError {
    #[error(
        "the kernel refused to dump {what} sockets: {cause}. Load its socket-diagnostics \
         module (`modprobe tcp_diag udp_diag inet_diag`), as `ss` also needs"
    )]
    Refused {
        what: &'static str,
        cause: io::Error,
    },
    #[error("the kernel sent a sock_diag reply enetstat cannot read: {0}")]
    Decode(String),
}

/// Transport protocol of a socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    Tcp,
    Udp,
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// One socket as the kernel dumped it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiagSocket {
    pub proto: Proto,
    pub cookie: Cookie,
    /// As shown: a v4-mapped IPv6 socket is IPv4 (see [`Family`]).
    pub family: Family,
    pub local: Endpoint,
    pub remote: Endpoint,
    /// For UDP the kernel reports ESTABLISHED (connected) or CLOSE (not connected).
    pub state: TcpState,
    /// For a listener: connections waiting in the accept queue.
    pub recv_q: u32,
    /// For a listener: the accept queue's size (the listen() backlog).
    pub send_q: u32,
    pub uid: u32,
    /// Socket inode; 0 when no file refers to it (TIME_WAIT, SYN_RECV, orphans).
    pub inode: u64,
    /// cgroup v2 id of the socket (`INET_DIAG_CGROUP_ID`, Linux 5.7+); 0 when the kernel
    /// did not say (TIME_WAIT and request sockets have none).
    pub cgroup: u64,
    /// A full TCP socket's byte counters, when the dump asked for them
    /// (netstat-user's `sockdiag::dump_connections_with_bytes`).
    pub bytes: Option<TcpBytes>,
}

/// What a TCP socket has moved so far, from its `tcp_info`, counted as the kernel's record at
/// CLOSE counts it (so the two can be diffed): payload sent once (`tcpi_bytes_sent` less
/// `tcpi_bytes_retrans`) and payload received (`tcpi_bytes_received`, where the kernel also
/// counts the peer's FIN as a byte once it came).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpBytes {
    pub sent: u64,
    pub received: u64,
}

/// Whether a dump goes on after a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Datagram {
    More,
    Done,
}

/// Reads one datagram of a dump's reply (the kernel's bytes, read with hand-written
/// offsets): hands each socket to `f`, and says whether the dump is done. `family` is the
/// address family the dump asked for (an IPv6 dump in a kernel without IPv6 is empty).
/// Never panics, whatever the bytes (fuzzed by `fuzz/fuzz_targets/sockdiag.rs`).
pub fn parse_datagram(
    datagram: &[u8],
    proto: Proto,
    family: u8,
    f: &mut impl FnMut(DiagSocket),
) -> Result<Datagram, ReplyError> {
    let what = match (proto, family) {
        (Proto::Tcp, AF_INET) => "TCP/IPv4",
        (Proto::Tcp, _) => "TCP/IPv6",
        (Proto::Udp, AF_INET) => "UDP/IPv4",
        (Proto::Udp, _) => "UDP/IPv6",
    };
    let mut rest = datagram;
    while rest.len() >= NLMSG_HDRLEN {
        let len = u32::from_ne_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let kind = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < NLMSG_HDRLEN || len > rest.len() {
            return Err(ReplyError::Decode(format!(
                "a netlink message of {len} bytes in a datagram of {} left",
                rest.len()
            )));
        }
        let payload = &rest[NLMSG_HDRLEN..len];
        match kind {
            NLMSG_DONE => return Ok(Datagram::Done),
            NLMSG_ERROR => {
                let code = payload
                    .get(0..4)
                    .map_or(0, |b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]));
                if code != 0 {
                    let errno = code.checked_neg().unwrap_or(i32::MAX);
                    let cause = io::Error::from_raw_os_error(errno);
                    // IPv6 disabled in this kernel: nothing to dump.
                    if family == AF_INET6 && errno == libc::EAFNOSUPPORT {
                        return Ok(Datagram::Done);
                    }
                    return Err(ReplyError::Refused { what, cause });
                }
            }
            SOCK_DIAG_BY_FAMILY => f(parse_msg(proto, payload)?),
            _ => {}
        }
        rest = &rest[align4(len).min(rest.len())..];
    }
    Ok(Datagram::More)
}

fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The cookie as the kernel writes it: two host-endian 32-bit halves, low half first.
fn cookie(raw: [u8; 8]) -> Cookie {
    let lo = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let hi = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
    Cookie(u64::from(hi) << 32 | u64::from(lo))
}

/// The payload of the attribute `wanted` among a message's attributes (`struct nlattr`s after
/// the fixed part).
fn attr(mut attrs: &[u8], wanted: u16) -> Option<&[u8]> {
    while attrs.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
        let kind = u16::from_ne_bytes([attrs[2], attrs[3]]) & 0x3fff;
        if len < 4 || len > attrs.len() {
            break;
        }
        if kind == wanted {
            return Some(&attrs[4..len]);
        }
        attrs = &attrs[align4(len).min(attrs.len())..];
    }
    None
}

/// The cgroup id among a message's attributes, or 0.
fn cgroup_attr(attrs: &[u8]) -> u64 {
    attr(attrs, INET_DIAG_CGROUP_ID)
        .and_then(|p| Some(u64::from_ne_bytes(p.get(..8)?.try_into().ok()?)))
        .unwrap_or(0)
}

/// The byte counters of the `tcp_info` among a message's attributes; `None` without one, or
/// from a kernel whose `tcp_info` ends before them (before 4.19).
fn bytes_attr(attrs: &[u8]) -> Option<TcpBytes> {
    let info = attr(attrs, INET_DIAG_INFO)?;
    let u64_at = |i: usize| Some(u64::from_ne_bytes(info.get(i..i + 8)?.try_into().ok()?));
    Some(TcpBytes {
        sent: u64_at(TCPI_BYTES_SENT)?.saturating_sub(u64_at(TCPI_BYTES_RETRANS)?),
        received: u64_at(TCPI_BYTES_RECEIVED)?,
    })
}

/// One `struct inet_diag_msg` and the attributes read from it (the cgroup id, the byte
/// counters).
fn parse_msg(proto: Proto, p: &[u8]) -> Result<DiagSocket, ReplyError> {
    if p.len() < INET_DIAG_MSG_LEN {
        return Err(ReplyError::Decode(format!(
            "an inet_diag_msg of {} bytes (expected {INET_DIAG_MSG_LEN})",
            p.len()
        )));
    }
    let u32_at = |i: usize| u32::from_ne_bytes(p[i..i + 4].try_into().unwrap());
    let (family, local, remote) = if p[0] == AF_INET {
        let v4 = |i: usize| IpAddr::V4(Ipv4Addr::new(p[i], p[i + 1], p[i + 2], p[i + 3]));
        (Family::Ipv4, v4(8), v4(24))
    } else {
        let v6 = |i: usize| {
            let raw: [u8; 16] = p[i..i + 16].try_into().unwrap();
            Ipv6Addr::from(raw)
        };
        shown_v6(v6(8), v6(24))
    };
    let state = match TcpState::from_kernel(p[1]) {
        TcpState::NewSynRecv => TcpState::SynRecv,
        s => s,
    };
    Ok(DiagSocket {
        proto,
        cookie: cookie(p[44..52].try_into().unwrap()),
        family,
        local: Endpoint::new(local, u16::from_be_bytes([p[4], p[5]])),
        remote: Endpoint::new(remote, u16::from_be_bytes([p[6], p[7]])),
        state,
        recv_q: u32_at(56),
        send_q: u32_at(60),
        uid: u32_at(64),
        inode: u64::from(u32_at(68)),
        cgroup: cgroup_attr(&p[INET_DIAG_MSG_LEN..]),
        bytes: bytes_attr(&p[INET_DIAG_MSG_LEN..]),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_halves_are_joined_low_first() {
        let mut raw = [0u8; 8];
        raw[..4].copy_from_slice(&0x89ab_cdefu32.to_ne_bytes());
        raw[4..].copy_from_slice(&0x0123_4567u32.to_ne_bytes());
        assert_eq!(cookie(raw), Cookie(0x0123_4567_89ab_cdef));
    }

    #[test]
    fn the_cgroup_attribute_is_found_among_others() {
        let mut attrs = Vec::new();
        // INET_DIAG_SHUTDOWN (u8, padded), then the cgroup id.
        attrs.extend_from_slice(&5u16.to_ne_bytes());
        attrs.extend_from_slice(&8u16.to_ne_bytes());
        attrs.extend_from_slice(&[0, 0, 0, 0]);
        attrs.extend_from_slice(&12u16.to_ne_bytes());
        attrs.extend_from_slice(&INET_DIAG_CGROUP_ID.to_ne_bytes());
        attrs.extend_from_slice(&0x1234_5678_9abcu64.to_ne_bytes());
        assert_eq!(cgroup_attr(&attrs), 0x1234_5678_9abc);
        assert_eq!(cgroup_attr(&attrs[..8]), 0);
        assert_eq!(
            cgroup_attr(&[0xff, 0xff, 21, 0]),
            0,
            "a bad length ends the walk"
        );
    }

    /// A netlink message: header (length, type) and payload.
    fn message(kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + payload.len();
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(payload);
        m.resize(align4(len), 0);
        m
    }

    #[test]
    fn datagrams_are_read_with_every_length_checked() {
        let mut msg = vec![0u8; INET_DIAG_MSG_LEN];
        msg[0] = AF_INET;
        msg[1] = 10; // LISTEN
        msg[4..6].copy_from_slice(&8080u16.to_be_bytes());
        msg[8..12].copy_from_slice(&[127, 0, 0, 1]);
        let mut d = message(SOCK_DIAG_BY_FAMILY, &msg);
        let mut got = Vec::new();
        let more = parse_datagram(&d, Proto::Tcp, AF_INET, &mut |s| got.push(s)).unwrap();
        assert_eq!(more, Datagram::More);
        assert_eq!(got[0].local.port, Some(8080));
        assert_eq!(got[0].state, TcpState::Listen);
        d.extend(message(NLMSG_DONE, &[0; 4]));
        let done = parse_datagram(&d, Proto::Tcp, AF_INET, &mut |_| {}).unwrap();
        assert_eq!(done, Datagram::Done);
        // Cut short anywhere: an error or fewer sockets, never a panic.
        for cut in 0..d.len() {
            let _ = parse_datagram(&d[..cut], Proto::Tcp, AF_INET, &mut |_| {});
        }
        // A header claiming more than the datagram holds; an inet_diag_msg too short.
        let mut bad = message(SOCK_DIAG_BY_FAMILY, &msg);
        bad[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&bad, Proto::Tcp, AF_INET, &mut |_| {}),
            Err(ReplyError::Decode(_))
        ));
        let short = message(SOCK_DIAG_BY_FAMILY, &msg[..40]);
        assert!(parse_datagram(&short, Proto::Tcp, AF_INET, &mut |_| {}).is_err());
        // An error code of i32::MIN (no errno has it) is refused, not negated into a panic.
        let e = message(NLMSG_ERROR, &i32::MIN.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&e, Proto::Udp, AF_INET, &mut |_| {}),
            Err(ReplyError::Refused { .. })
        ));
        let no_v6 = message(NLMSG_ERROR, &(-libc::EAFNOSUPPORT).to_ne_bytes());
        assert_eq!(
            parse_datagram(&no_v6, Proto::Tcp, AF_INET6, &mut |_| {}).unwrap(),
            Datagram::Done
        );
    }
}
