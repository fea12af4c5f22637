//! The kernel's socket dump (netlink `sock_diag`), as `ss` reads it: every TCP and UDP socket
//! of this network namespace, IPv4 and IPv6, in every state including TIME_WAIT and SYN_RECV.
//!
//! This is the only module that speaks netlink. It needs no privileges: the kernel shows an
//! unprivileged caller every socket (queues and inodes included), as `ss` shows them.

use std::{io, net::IpAddr, os::fd::AsRawFd};

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

pub use netstat_core::diag::{DiagSocket, Proto, TcpBytes};

use crate::{
    event::{Cookie, Endpoint, Family, shown_v6},
    state::TcpState,
};

#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    #[error("cannot open a netlink sock_diag socket: {0}. {hint}", hint = open_hint(.0))]
    Open(io::Error),
    #[error("cannot talk to the kernel over netlink sock_diag: {0}")]
    Io(io::Error),
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

/// What to do about a netlink socket that would not open, by its real cause.
fn open_hint(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(libc::EMFILE) => crate::fd_limit::hint(),
        Some(libc::ENFILE) => "The whole system is out of file descriptors (fs.file-max)".into(),
        Some(libc::ENOBUFS | libc::ENOMEM) => "The kernel is out of memory for sockets".into(),
        Some(libc::EACCES | libc::EPERM) => {
            "A security policy (seccomp, SELinux, AppArmor, RestrictAddressFamilies=) forbids \
             netlink sockets to this process; allow AF_NETLINK"
                .into()
        }
        Some(libc::EPROTONOSUPPORT | libc::EAFNOSUPPORT) => {
            "enetstat reads the socket table the way `ss` does; this kernel lacks \
             NETLINK_SOCK_DIAG (CONFIG_INET_DIAG)"
                .into()
        }
        _ => "enetstat reads the socket table the way `ss` does, over netlink sock_diag".into(),
    }
}

/// Dumps every socket of the given protocols in this network namespace, as a list. The engine
/// merges a dump as it is read ([`dump_each`]); a list is for tests.
#[cfg(test)]
pub fn dump(protos: &[Proto]) -> Result<Vec<DiagSocket>, SockDiagError> {
    let mut out = Vec::new();
    dump_each(protos, |d| out.push(d))?;
    Ok(out)
}

/// Bytes offered to the kernel per `recv`. A dump datagram is at most 32 KiB (the kernel
/// caps a dump's skb there however much the reader offers; ss reads 32 KiB at a time), so
/// this is never short; a larger buffer measured no faster.
const RECV_BUF: usize = 64 << 10;
/// The socket's receive buffer.
const SO_RCVBUF_BYTES: libc::c_int = 1 << 20;
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

/// Dumps every socket of the given protocols in this network namespace, handing each to `f`
/// as it is read: no list of the whole dump is built.
pub fn dump_each(protos: &[Proto], f: impl FnMut(DiagSocket)) -> Result<(), SockDiagError> {
    dump_with(protos, ExtensionFlags::empty(), f)
}

/// [`dump_each`], with each full TCP socket's byte counters ([`DiagSocket::bytes`]). The
/// kernel then fills a `tcp_info` (232 bytes) per socket: about three times the bytes of a
/// plain dump, still one dump.
pub fn dump_each_with_bytes(
    protos: &[Proto],
    f: impl FnMut(DiagSocket),
) -> Result<(), SockDiagError> {
    dump_with(protos, ExtensionFlags::INFO, f)
}

fn dump_with(
    protos: &[Proto],
    extensions: ExtensionFlags,
    mut f: impl FnMut(DiagSocket),
) -> Result<(), SockDiagError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(SockDiagError::Open)?;
    socket.bind_auto().map_err(SockDiagError::Open)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(SockDiagError::Open)?;
    let size = SO_RCVBUF_BYTES;
    // SAFETY: a valid fd and a c_int option of the right length. Failure only costs speed.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw const size).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
    let mut buf = vec![0u8; RECV_BUF];
    let mut seq = 0;
    for &proto in protos {
        for family in [AF_INET, AF_INET6] {
            seq += 1;
            dump_one(
                &socket,
                seq,
                proto,
                family,
                extensions.clone(),
                &mut buf,
                &mut f,
            )?;
        }
    }
    Ok(())
}

fn dump_one(
    socket: &Socket,
    seq: u32,
    proto: Proto,
    family: u8,
    extensions: ExtensionFlags,
    buf: &mut [u8],
    f: &mut impl FnMut(DiagSocket),
) -> Result<(), SockDiagError> {
    let mut header = NetlinkHeader::default();
    header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    header.sequence_number = seq;
    let mut packet = NetlinkMessage::new(
        header,
        SockDiagMessage::InetRequest(InetRequest {
            family,
            protocol: match proto {
                Proto::Tcp => IPPROTO_TCP,
                Proto::Udp => IPPROTO_UDP,
            },
            // UDP has no tcp_info to give.
            extensions: match proto {
                Proto::Tcp => extensions,
                Proto::Udp => ExtensionFlags::empty(),
            },
            // Every state the kernel knows, NEW_SYN_RECV (bit 12) included: `ss -a` asks
            // for the same, so request sockets show as SYN_RECV.
            states: StateFlags::from_bits_retain((1 << 13) - 1),
            socket_id: if family == AF_INET {
                SocketId::new_v4()
            } else {
                SocketId::new_v6()
            },
        })
        .into(),
    );
    packet.finalize();
    let mut req = vec![0; packet.buffer_len()];
    packet.serialize(&mut req);
    socket.send(&req, 0).map_err(SockDiagError::Io)?;
    loop {
        // SAFETY: buf is valid for writes of its length.
        let n = unsafe { libc::recv(socket.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(SockDiagError::Io(e));
        }
        if let Datagram::Done = parse_datagram(&buf[..n as usize], proto, family, f)? {
            return Ok(());
        }
    }
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
) -> Result<Datagram, SockDiagError> {
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
            return Err(SockDiagError::Decode(format!(
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
                    return Err(SockDiagError::Refused { what, cause });
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
fn parse_msg(proto: Proto, p: &[u8]) -> Result<DiagSocket, SockDiagError> {
    if p.len() < INET_DIAG_MSG_LEN {
        return Err(SockDiagError::Decode(format!(
            "an inet_diag_msg of {} bytes (expected {INET_DIAG_MSG_LEN})",
            p.len()
        )));
    }
    let u32_at = |i: usize| u32::from_ne_bytes(p[i..i + 4].try_into().unwrap());
    let (family, local, remote) = if p[0] == AF_INET {
        let v4 = |i: usize| IpAddr::V4(std::net::Ipv4Addr::new(p[i], p[i + 1], p[i + 2], p[i + 3]));
        (Family::Ipv4, v4(8), v4(24))
    } else {
        let v6 = |i: usize| {
            let raw: [u8; 16] = p[i..i + 16].try_into().unwrap();
            std::net::Ipv6Addr::from(raw)
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

/// `::` next to an IPv4 address is shown as `0.0.0.0`.
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
            Err(SockDiagError::Decode(_))
        ));
        let short = message(SOCK_DIAG_BY_FAMILY, &msg[..40]);
        assert!(parse_datagram(&short, Proto::Tcp, AF_INET, &mut |_| {}).is_err());
        // An error code of i32::MIN (no errno has it) is refused, not negated into a panic.
        let e = message(NLMSG_ERROR, &i32::MIN.to_ne_bytes());
        assert!(matches!(
            parse_datagram(&e, Proto::Udp, AF_INET, &mut |_| {}),
            Err(SockDiagError::Refused { .. })
        ));
        let no_v6 = message(NLMSG_ERROR, &(-libc::EAFNOSUPPORT).to_ne_bytes());
        assert_eq!(
            parse_datagram(&no_v6, Proto::Tcp, AF_INET6, &mut |_| {}).unwrap(),
            Datagram::Done
        );
    }

    #[test]
    fn a_socket_that_will_not_open_is_blamed_on_its_real_cause() {
        let emfile = SockDiagError::Open(io::Error::from_raw_os_error(libc::EMFILE)).to_string();
        assert!(
            emfile.contains("open-file limit (RLIMIT_NOFILE"),
            "{emfile}"
        );
        assert!(!emfile.contains("lack"), "{emfile}");
        let missing =
            SockDiagError::Open(io::Error::from_raw_os_error(libc::EPROTONOSUPPORT)).to_string();
        assert!(missing.contains("lacks NETLINK_SOCK_DIAG"), "{missing}");
    }

    #[test]
    fn dumps_a_socket_of_this_process() {
        // Needs no privileges: the kernel shows everyone every socket.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let all = dump(&[Proto::Tcp]).unwrap();
        let mine = all
            .iter()
            .find(|s| s.local.port == Some(port) && s.state == TcpState::Listen)
            .expect("our listener is in the dump");
        assert_eq!(mine.family, Family::Ipv4);
        assert_ne!(mine.inode, 0);
        if let Some(own) = crate::cgroup::own_id() {
            assert_eq!(mine.cgroup, own, "the socket is in this process's cgroup");
        }
        assert_ne!(mine.cookie, Cookie(0));
    }

    #[test]
    fn a_dump_with_bytes_counts_what_a_connection_moved() {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        client.write_all(&[7; 3000]).unwrap();
        let mut got = [0u8; 3000];
        server.read_exact(&mut got).unwrap();
        server.write_all(&[1; 100]).unwrap();
        client.read_exact(&mut got[..100]).unwrap();
        let port = client.local_addr().unwrap().port();
        let mut sockets = Vec::new();
        dump_each_with_bytes(&[Proto::Tcp], |d| sockets.push(d)).unwrap();
        let by_port = |p: u16| {
            sockets
                .iter()
                .find(|s| s.local.port == Some(p) && s.state == TcpState::Established)
                .unwrap_or_else(|| panic!("no socket on port {p}"))
        };
        assert_eq!(
            by_port(port).bytes,
            Some(TcpBytes {
                sent: 3000,
                received: 100
            })
        );
        let server_port = server.local_addr().unwrap().port();
        let accepted = sockets
            .iter()
            .find(|s| s.local.port == Some(server_port) && s.remote.port == Some(port))
            .unwrap();
        assert_eq!(
            accepted.bytes,
            Some(TcpBytes {
                sent: 100,
                received: 3000
            })
        );
        // Without asking, no counters; a listener has none to give.
        let plain = dump(&[Proto::Tcp]).unwrap();
        assert!(plain.iter().all(|s| s.bytes.is_none()));
    }
}
