//! The kernel's socket dump (netlink `sock_diag`), as `ss` reads it: every TCP and UDP socket
//! of this network namespace, IPv4 and IPv6, in every state including TIME_WAIT and SYN_RECV.
//!
//! This is the only module that speaks netlink. It needs no privileges: the kernel shows an
//! unprivileged caller every socket (queues and inodes included), as `ss` shows them.

use std::io;

use netlink_packet_core::{NLM_F_DUMP, NLM_F_REQUEST, NetlinkHeader, NetlinkMessage};
use netlink_packet_sock_diag::{
    SockDiagMessage,
    constants::{AF_INET, AF_INET6, IPPROTO_TCP, IPPROTO_UDP},
    inet::{ExtensionFlags, InetRequest, SocketId, StateFlags},
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_SOCK_DIAG};

pub use netstat_core::diag::{Datagram, DiagSocket, Proto, ReplyError, TcpBytes, parse_datagram};

#[derive(Debug, thiserror::Error)]
pub enum SockDiagError {
    #[error("cannot open a netlink sock_diag socket: {0}. {hint}", hint = open_hint(.0))]
    Open(io::Error),
    #[error("cannot talk to the kernel over netlink sock_diag: {0}")]
    Io(io::Error),
    /// The reply said no, or could not be read.
    #[error(transparent)]
    Reply(#[from] ReplyError),
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
/// Dumps every socket of the given protocols in this network namespace, handing each to `f`
/// as it is read: no list of the whole dump is built.
pub fn dump_each(protos: &[Proto], f: impl FnMut(DiagSocket)) -> Result<(), SockDiagError> {
    dump_with(protos, Ask::default(), f)
}

/// Every state the kernel knows, NEW_SYN_RECV (bit 12) included: `ss -a` asks for the same,
/// so request sockets show as SYN_RECV.
const ALL_STATES: u32 = (1 << 13) - 1;
/// `TCP_TIME_WAIT`'s bit in a dump request's state mask.
const TIME_WAIT_BIT: u32 = 1 << 6;

/// [`dump_each`] without the sockets in TIME_WAIT (the kernel skips them without writing a
/// line for them; under churn they are nearly all of the dump), and with each full TCP
/// socket's byte counters ([`DiagSocket::bytes`]): the kernel then fills a `tcp_info` (232
/// bytes) per socket, about three times the bytes of a plain dump, still one dump.
pub fn dump_connections_with_bytes(
    protos: &[Proto],
    f: impl FnMut(DiagSocket),
) -> Result<(), SockDiagError> {
    let ask = Ask {
        extensions: ExtensionFlags::INFO,
        states: ALL_STATES & !TIME_WAIT_BIT,
    };
    dump_with(protos, ask, f)
}

/// What a dump asks the kernel for, beyond the protocol and family.
#[derive(Clone)]
struct Ask {
    /// Extra attributes per socket.
    extensions: ExtensionFlags,
    /// A mask of `1 << state`.
    states: u32,
}

impl Default for Ask {
    fn default() -> Self {
        Self {
            extensions: ExtensionFlags::empty(),
            states: ALL_STATES,
        }
    }
}

fn dump_with(
    protos: &[Proto],
    ask: Ask,
    mut f: impl FnMut(DiagSocket),
) -> Result<(), SockDiagError> {
    let mut socket = Socket::new(NETLINK_SOCK_DIAG).map_err(SockDiagError::Open)?;
    socket.bind_auto().map_err(SockDiagError::Open)?;
    socket
        .connect(&SocketAddr::new(0, 0))
        .map_err(SockDiagError::Open)?;
    // Failure only costs speed.
    let _ = socket.set_rx_buf_sz(SO_RCVBUF_BYTES);
    let mut buf = Vec::with_capacity(RECV_BUF);
    let mut seq = 0;
    for &proto in protos {
        for family in [AF_INET, AF_INET6] {
            seq += 1;
            dump_one(&socket, seq, proto, family, ask.clone(), &mut buf, &mut f)?;
        }
    }
    Ok(())
}

fn dump_one(
    socket: &Socket,
    seq: u32,
    proto: Proto,
    family: u8,
    ask: Ask,
    buf: &mut Vec<u8>,
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
                Proto::Tcp => ask.extensions,
                Proto::Udp => ExtensionFlags::empty(),
            },
            states: StateFlags::from_bits_retain(ask.states),
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
        // Into the buffer's whole capacity, each time.
        buf.clear();
        match socket.recv(buf, 0) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(SockDiagError::Io(e)),
        }
        if let Datagram::Done = parse_datagram(buf, proto, family, f)? {
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{Cookie, Family},
        state::TcpState,
    };

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
    fn a_connections_dump_leaves_out_time_wait() {
        use std::io::Read;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (mut server, _) = listener.accept().unwrap();
        let port = client.local_addr().unwrap().port();
        // The client closes first: its socket waits in TIME_WAIT once the server closes too.
        drop(client);
        server.read_exact(&mut [0]).unwrap_err();
        drop(server);
        let waiting = |s: &DiagSocket| s.local.port == Some(port) && s.state == TcpState::TimeWait;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        while !dump(&[Proto::Tcp]).unwrap().iter().any(waiting) {
            assert!(std::time::Instant::now() < deadline, "no TIME_WAIT socket");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let mut sockets = Vec::new();
        dump_connections_with_bytes(&[Proto::Tcp], |d| sockets.push(d)).unwrap();
        assert!(!sockets.iter().any(waiting));
        let listening = listener.local_addr().unwrap().port();
        assert!(sockets.iter().any(|s| s.local.port == Some(listening)));
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
        dump_connections_with_bytes(&[Proto::Tcp], |d| sockets.push(d)).unwrap();
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
