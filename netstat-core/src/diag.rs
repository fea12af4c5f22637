//! One socket as a netlink sock_diag dump describes it: the plain data the live table seeds
//! and reconciles from. Reading the dump is netstat-user's `sockdiag` module.

use std::fmt;

use serde::Serialize;

use crate::{
    event::{Cookie, Endpoint, Family},
    state::TcpState,
};

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
    /// (netstat-user's `sockdiag::dump_each_with_bytes`).
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
