//! Snapshots of the socket table, in each [`Format`]: netstat's own table for people
//! ([`text`]), and for scripts JSON ([`json`]) and CSV ([`csv`]). All three render the same
//! [`Row`], so they show the same sockets with the same facts.
//!
//! [`Format`]: super::Format

pub mod csv;
pub mod json;
pub mod text;

use std::time::Duration;

use crate::{
    diag::Proto,
    event::{Cookie, Family},
    state::TcpState,
};

/// Which process a row names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShownOwner {
    pub pid: u32,
    pub comm: String,
    /// False when no process holds the socket now and this is the last one that did
    /// (orphaned FIN_WAIT2 and TIME_WAIT sockets, closed connections).
    pub holds: bool,
}

/// A closed connection's row data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClosedInfo {
    /// From birth to close, when the birth was seen.
    pub lifetime: Option<Duration>,
    /// How long ago it closed.
    pub ago: Duration,
    /// The state it closed from.
    pub last_state: TcpState,
    /// `sk_err` at the close (0: none).
    pub errno: i32,
}

/// One row of a snapshot: all numbers; names are looked up by the text renderer's caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub proto: Proto,
    pub family: Family,
    pub local_addr: std::net::IpAddr,
    pub local_port: Option<u16>,
    pub remote_addr: std::net::IpAddr,
    pub remote_port: Option<u16>,
    pub state: TcpState,
    pub recv_q: u32,
    pub send_q: u32,
    pub owner: Option<ShownOwner>,
    pub uid: Option<u32>,
    pub inode: u64,
    pub cookie: Cookie,
    /// The network namespace (inode) the socket lives in, when known.
    pub netns: Option<u32>,
    /// cgroup v2 id of the socket; 0 when not known.
    pub cgroup: u64,
    /// Time in the current state, when a transition showed when it began.
    pub age: Option<Duration>,
    /// Present for a connection that has closed (`--recent`).
    pub closed: Option<ClosedInfo>,
}

impl Row {
    /// netstat's protocol column: `tcp`, `tcp6`, `udp`, `udp6`.
    pub fn proto_name(&self) -> &'static str {
        match (self.proto, self.family) {
            (Proto::Tcp, Family::Ipv4) => "tcp",
            (Proto::Tcp, Family::Ipv6) => "tcp6",
            (Proto::Udp, Family::Ipv4) => "udp",
            (Proto::Udp, Family::Ipv6) => "udp6",
        }
    }

    /// The state as netstat prints it: blank for an unconnected UDP socket.
    pub fn state_text(&self) -> &'static str {
        if self.closed.is_some() {
            return "CLOSED";
        }
        match (self.proto, self.state) {
            (Proto::Udp, TcpState::Established) => "ESTABLISHED",
            (Proto::Udp, _) => "",
            (_, s) => s.name(),
        }
    }
}

/// One socket row, which the JSON and CSV tests render.
#[cfg(test)]
mod fixture {
    use std::{
        net::{IpAddr, Ipv6Addr},
        time::Duration,
    };

    use super::{Row, ShownOwner};
    use crate::{diag::Proto, event::Cookie, event::Family, state::TcpState};

    pub fn row() -> Row {
        Row {
            proto: Proto::Tcp,
            family: Family::Ipv6,
            local_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            local_port: Some(5432),
            remote_addr: IpAddr::V6(Ipv6Addr::LOCALHOST),
            remote_port: Some(40000),
            state: TcpState::Established,
            recv_q: 3,
            send_q: 4,
            owner: Some(ShownOwner {
                pid: 7,
                comm: "pg,\"x\"".into(),
                holds: true,
            }),
            uid: Some(1000),
            inode: 99,
            cookie: Cookie(5),
            netns: Some(4_026_531_840),
            cgroup: 0,
            age: Some(Duration::from_micros(1500)),
            closed: None,
        }
    }
}
