//! Which sockets of the table a snapshot shows, and in what order: netstat's `-l`/`-a`,
//! protocols, family, states and a filter; sorted by protocol, family, local then remote
//! endpoint, cookie.

use std::{net::IpAddr, sync::Arc};

use serde::{Deserialize, Serialize};

use super::{Entry, Table};
use crate::{
    diag::Proto,
    event::{Cookie, Family},
    render::snapshot::text::Title,
    state::TcpState,
};

/// Which sockets by their role, as netstat's `-l` and `-a` choose (and by these names on the
/// wire).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Servers {
    /// The default: connections, no listening TCP or unconnected UDP sockets.
    #[default]
    Exclude,
    /// `-l`: only those.
    Only,
    /// `-a`: everything.
    Include,
}

/// An extra test on each socket (for the filter-expression language).
pub type Matcher = Arc<dyn Fn(&Entry) -> bool + Send + Sync>;

/// Which sockets a snapshot shows.
#[derive(Clone)]
pub struct Selection {
    pub protos: Vec<Proto>,
    pub servers: Servers,
    /// As shown: a v4-mapped IPv6 socket is IPv4.
    pub family: Option<Family>,
    /// Only these states (any when empty); overrides `servers`.
    pub states: Vec<TcpState>,
    pub extra: Option<Matcher>,
}

impl std::fmt::Debug for Selection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selection")
            .field("protos", &self.protos)
            .field("servers", &self.servers)
            .field("family", &self.family)
            .field("states", &self.states)
            .field("extra", &self.extra.is_some())
            .finish()
    }
}

impl Default for Selection {
    fn default() -> Self {
        Self {
            protos: vec![Proto::Tcp, Proto::Udp],
            servers: Servers::Exclude,
            family: None,
            states: Vec::new(),
            extra: None,
        }
    }
}

/// A listening TCP socket, or an unconnected UDP socket: what netstat calls a server.
pub fn is_server(e: &Entry) -> bool {
    match e.proto {
        Proto::Tcp => e.state == TcpState::Listen,
        Proto::Udp => e.state != TcpState::Established,
    }
}

impl Selection {
    /// Whether a live socket is shown.
    pub fn matches(&self, e: &Entry) -> bool {
        self.protos.contains(&e.proto)
            && self.family.is_none_or(|f| f == e.family)
            && if self.states.is_empty() {
                match self.servers {
                    Servers::Exclude => !is_server(e),
                    Servers::Only => is_server(e),
                    Servers::Include => true,
                }
            } else {
                self.states.contains(&e.state)
            }
            && self.extra.as_ref().is_none_or(|m| m(e))
    }

    /// Whether a closed connection is shown (`--recent`): never with `-l`.
    pub fn matches_closed(&self, e: &Entry) -> bool {
        self.servers != Servers::Only
            && self.protos.contains(&e.proto)
            && self.family.is_none_or(|f| f == e.family)
            && self.extra.as_ref().is_none_or(|m| m(e))
    }

    /// The title a netstat table of this selection carries.
    pub fn title(&self) -> Title {
        match self.servers {
            _ if !self.states.is_empty() => Title::All,
            Servers::Include => Title::All,
            Servers::Only => Title::Servers,
            Servers::Exclude => Title::Connections,
        }
    }
}

/// The live sockets a snapshot shows, in the order shown.
pub fn shown_live<'t>(select: &Selection, table: &'t Table) -> Vec<&'t Entry> {
    // Sockets with two IPv4 addresses (nearly all, usually) sort as 16-byte integers: their
    // whole order but the cookie (100 bits, see `packed_key`) above their position in the
    // table (28 bits); equal keys (listeners sharing a port) are then put in cookie order.
    // The rest sort on the full key, and the two sorted runs are merged. Cookies are
    // unique, so no two keys are equal and unstable sorts show the same as a stable one.
    const POS_BITS: u32 = 28;
    const POS: u128 = (1 << POS_BITS) - 1;
    let entries = table.entries();
    let mut keys: Vec<u128> = Vec::new();
    let mut rest: Vec<&Entry> = Vec::new();
    for (i, e) in entries.iter().enumerate() {
        if !select.matches(e) {
            continue;
        }
        match packed_key(e) {
            Some(k) if (i as u128) <= POS => keys.push(k << POS_BITS | i as u128),
            _ => rest.push(e),
        }
    }
    keys.sort_unstable();
    let mut packed: Vec<&Entry> = Vec::with_capacity(keys.len());
    let mut run = 0;
    for (n, &k) in keys.iter().enumerate() {
        if n > 0 && k >> POS_BITS != keys[n - 1] >> POS_BITS {
            packed[run..].sort_unstable_by_key(|e| e.cookie);
            run = n;
        }
        packed.push(&entries[(k & POS) as usize]);
    }
    packed[run..].sort_unstable_by_key(|e| e.cookie);
    drop(keys);
    if rest.is_empty() {
        return packed;
    }
    rest.sort_unstable_by_key(|e| sort_key(e));
    let mut live = Vec::with_capacity(packed.len() + rest.len());
    let mut a = packed.into_iter().peekable();
    let mut b = rest.into_iter().peekable();
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if sort_key(x) < sort_key(y) => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, _) => b.next(),
        };
        match next {
            Some(e) => live.push(e),
            None => break,
        }
    }
    live
}

/// [`sort_key`] but the cookie, as one integer, for a socket with two IPv4 addresses:
/// protocol (1 bit), IPv6 family (1), local address (32), local port (17: 0 for none, else
/// port + 1, as `None < Some`), remote address (32), remote port (17).
fn packed_key(e: &Entry) -> Option<u128> {
    let (IpAddr::V4(l), IpAddr::V4(r)) = (e.local.addr, e.remote.addr) else {
        return None;
    };
    let port = |p: Option<u16>| p.map_or(0, |p| u128::from(p) + 1);
    Some(
        u128::from(e.proto == Proto::Udp) << 99
            | u128::from(e.family == Family::Ipv6) << 98
            | u128::from(u32::from(l)) << 66
            | port(e.local.port) << 49
            | u128::from(u32::from(r)) << 17
            | port(e.remote.port),
    )
}

/// The order of a snapshot: protocol, IPv4 first, local then remote endpoint, cookie.
#[inline]
fn sort_key(
    e: &Entry,
) -> (
    Proto,
    bool,
    IpAddr,
    Option<u16>,
    IpAddr,
    Option<u16>,
    Cookie,
) {
    (
        e.proto,
        e.family == Family::Ipv6,
        e.local.addr,
        e.local.port,
        e.remote.addr,
        e.remote.port,
        e.cookie,
    )
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::{
        diag::DiagSocket,
        event::Endpoint,
        table::{Limits, Table},
    };

    fn socket(cookie: u64, proto: Proto, state: TcpState, local: Endpoint) -> DiagSocket {
        let family = match local.addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        };
        let remote = match local.addr {
            IpAddr::V4(_) => Endpoint::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 443),
            IpAddr::V6(_) => Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 443),
        };
        DiagSocket {
            proto,
            cookie: Cookie(cookie),
            family,
            local,
            remote,
            state,
            recv_q: 0,
            send_q: 0,
            uid: 0,
            inode: 0,
            cgroup: 0,
            bytes: None,
        }
    }

    #[test]
    fn shown_in_protocol_family_and_endpoint_order_servers_as_asked() {
        let v4 = |last: u8, port| Endpoint::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, last)), port);
        let v6 = |port| Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        let dump = [
            socket(1, Proto::Udp, TcpState::Established, v4(1, 53)),
            socket(2, Proto::Tcp, TcpState::Established, v6(9000)),
            socket(3, Proto::Tcp, TcpState::Established, v4(2, 40000)),
            socket(4, Proto::Tcp, TcpState::Established, v4(1, 40001)),
            socket(5, Proto::Tcp, TcpState::Listen, v4(1, 80)),
            // Same endpoints as 4: the cookie decides.
            socket(0, Proto::Tcp, TcpState::Established, v4(1, 40001)),
        ];
        let mut table = Table::new(Limits::default(), None);
        table
            .seed_with(0, |sink| {
                dump.iter().cloned().for_each(sink);
                Ok::<(), ()>(())
            })
            .unwrap();
        let order = |select: &Selection| -> Vec<u64> {
            shown_live(select, &table)
                .iter()
                .map(|e| e.cookie.0)
                .collect()
        };
        assert_eq!(order(&Selection::default()), [0, 4, 3, 2, 1]);
        let servers = Selection {
            servers: Servers::Only,
            ..Selection::default()
        };
        assert_eq!(order(&servers), [5]);
        assert_eq!(servers.title(), Title::Servers);
        let all = Selection {
            servers: Servers::Include,
            ..Selection::default()
        };
        assert_eq!(order(&all), [5, 0, 4, 3, 2, 1]);
    }
}
