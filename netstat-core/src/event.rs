//! Plain Rust types for what the kernel reports: no aya, no raw bytes (a task name's 16
//! bytes aside, made a string only where it is shown).

use std::{
    cell::RefCell,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    sync::Arc,
};

use rustc_hash::FxHashMap;
use serde::Serialize;

use crate::state::TcpState;

/// A socket cookie: the kernel's never-reused 64-bit socket id, the same one netlink
/// sock_diag reports (`ss -e` prints it as `sk:`), so events and dumps join on it.
///
/// Where the kernel cannot give the cookie (see netstat-user's `probe::Mode`), a socket gets an id
/// of enetstat's own while it lives ([`crate::identity`]). Such an id has the top bit set,
/// which no cookie (a counter) ever has; [`Cookie::known`] tells the two apart, and output
/// shows an unknown cookie as null. The id is never the socket's kernel address, which
/// would tell unprivileged readers where the kernel's memory lies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Cookie(pub u64);

impl Cookie {
    /// The `n`th id given to a socket whose cookie is unknown.
    pub fn stand_in(n: u64) -> Self {
        Self(n | STAND_IN_BIT)
    }

    /// A stand-in id for a socket whose cookie is unknown and that nothing else knows by an
    /// id: a scramble of its kernel address (which it does not reveal).
    pub fn of_address(skaddr: u64) -> Self {
        // splitmix64's finalizer: a bijection, so distinct addresses stay distinct.
        let mut z = skaddr;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Self::stand_in((z ^ (z >> 31)) >> 1)
    }

    /// The cookie, unless this is a stand-in for an unknown one.
    pub fn known(self) -> Option<u64> {
        (self.0 & STAND_IN_BIT == 0).then_some(self.0)
    }
}

/// The bit that marks a stand-in id.
const STAND_IN_BIT: u64 = 1 << 63;

/// Address family as shown to the user: a v4-mapped IPv6 socket shows as IPv4.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Family {
    #[default]
    Ipv4,
    Ipv6,
}

impl Family {
    /// `ipv4` or `ipv6`, as every output names it.
    pub fn name(self) -> &'static str {
        match self {
            Family::Ipv4 => "ipv4",
            Family::Ipv6 => "ipv6",
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

/// One end of a connection. `port` is `None` while the kernel has not assigned one yet (an
/// unbound client at its CLOSE -> SYN_SENT transition).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: IpAddr,
    pub port: Option<u16>,
}

impl Endpoint {
    /// An endpoint from an address and a kernel port, where port 0 means "not assigned".
    pub fn new(addr: IpAddr, port: u16) -> Self {
        Self {
            addr,
            port: (port != 0).then_some(port),
        }
    }
}

/// `0.0.0.0:*`: no address, no port.
impl Default for Endpoint {
    fn default() -> Self {
        Self::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0)
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = match (self.addr, self.port) {
            (IpAddr::V4(a), Some(p)) => format!("{a}:{p}"),
            (IpAddr::V4(a), None) => format!("{a}:*"),
            (IpAddr::V6(a), Some(p)) => format!("[{a}]:{p}"),
            (IpAddr::V6(a), None) => format!("[{a}]:*"),
        };
        f.pad(&text)
    }
}

/// The process a socket belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Owner {
    pub pid: u32,
    /// Shared: one process name is handed from record to tracker to table to subscribers.
    pub comm: Arc<str>,
    /// The process has ended since it was last known to own the socket: this is the last
    /// owner, not a current one (`*` after the pid in text, `owner_exited` in JSON).
    pub exited: bool,
}

impl Owner {
    /// A live owner.
    pub fn new(pid: u32, comm: impl Into<Arc<str>>) -> Self {
        Self {
            pid,
            comm: comm.into(),
            exited: false,
        }
    }
}

/// The task that was on the CPU when the tracepoint fired. Whether it owns the socket depends
/// on the transition; see [`crate::owner`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Task {
    pub pid: u32,
    pub tid: u32,
    pub comm: Comm,
}

/// A task's name as the kernel gives it: up to 16 bytes, NUL-padded.
///
/// Kept as bytes, and made a shared string ([`Comm::name`]) only where it names an owner:
/// most transitions are made in softirq, by whatever task the CPU was running, which owns
/// nothing. Looking every one up among the names made was a twentieth of `watch`'s time.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
pub struct Comm(pub [u8; 16]);

impl Comm {
    /// The kernel's 16 bytes, cut at the first NUL. A name loaded straight from the task (as
    /// the programs do where they can) may carry bytes of an older, longer name after its NUL
    /// on kernels that did not pad names; two such copies of one name must still be equal.
    #[inline]
    pub fn from_kernel(mut raw: [u8; 16]) -> Self {
        if let Some(end) = raw.iter().position(|&b| b == 0) {
            raw[end..].fill(0);
        }
        Self(raw)
    }

    /// The name, lossily as UTF-8 (escaping for display is the renderer's job), shared with
    /// every other use of it.
    ///
    /// Names repeat (a host runs a few hundred programs), so each is made once and shared: no
    /// allocation per record. The cache is dropped whole when it grows past a bound.
    pub fn name(&self) -> Arc<str> {
        const MAX_NAMES: usize = 4096;
        thread_local! {
            static NAMES: RefCell<FxHashMap<[u8; 16], Arc<str>>> = RefCell::default();
        }
        NAMES.with_borrow_mut(|names| {
            if let Some(name) = names.get(&self.0) {
                return name.clone();
            }
            if names.len() >= MAX_NAMES {
                names.clear();
            }
            let end = self.0.iter().position(|&b| b == 0).unwrap_or(self.0.len());
            let name: Arc<str> = String::from_utf8_lossy(&self.0[..end]).into();
            names.insert(self.0, name.clone());
            name
        })
    }
}

impl From<&str> for Comm {
    /// The first 15 bytes of `name`, as the kernel keeps a name.
    fn from(name: &str) -> Self {
        let mut raw = [0; 16];
        let n = name.len().min(15);
        raw[..n].copy_from_slice(&name.as_bytes()[..n]);
        Self(raw)
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.name(), f)
    }
}

/// What the kernel knew about a connection when it reached CLOSE.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Final {
    /// `sk_err` as a positive errno (0 if none).
    pub errno: i32,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
    pub srtt_us: u32,
    /// The peer's FIN arrived (the kernel counts it as a byte in `bytes_received`).
    pub fin_received: bool,
}

/// One TCP state transition, decoded. The default is a placeholder (CLOSE to CLOSE, cookie
/// 0, nowhere), for a buffer that records are decoded into.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Transition {
    /// Kernel monotonic nanoseconds.
    pub ts_ns: u64,
    pub cookie: Cookie,
    pub family: Family,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub old: TcpState,
    pub new: TcpState,
    /// Network namespace inode.
    pub netns: u32,
    /// cgroup v2 id of the socket (0 when unknown); see [`crate::event`] users for paths.
    pub cgroup: u64,
    pub task: Task,
    /// Present on transitions into CLOSE.
    pub fin: Option<Final>,
}

/// Turns an IPv6 address into IPv4 when it is v4-mapped (`::ffff:a.b.c.d`), as users think
/// of such sockets.
pub fn unmap(addr: Ipv6Addr) -> IpAddr {
    match addr.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(addr),
    }
}

/// How users think of an IPv6 socket's two addresses, the one rule for records and dumps: a
/// dual-stack socket talking IPv4 carries v4-mapped addresses (`::ffff:a.b.c.d`) and is
/// shown as IPv4, its unspecified end (`::`) as 0.0.0.0. A socket with no mapped address
/// (`[::]:80` listening, or IPv6 proper) stays IPv6.
pub fn shown_v6(local: Ipv6Addr, remote: Ipv6Addr) -> (Family, IpAddr, IpAddr) {
    let mapped = |a: Ipv6Addr| a.to_ipv4_mapped().is_some();
    let v4_or_unset = |a: Ipv6Addr| mapped(a) || a.is_unspecified();
    if v4_or_unset(local) && v4_or_unset(remote) && (mapped(local) || mapped(remote)) {
        let v4 = |a: Ipv6Addr| IpAddr::V4(a.to_ipv4_mapped().unwrap_or(Ipv4Addr::UNSPECIFIED));
        (Family::Ipv4, v4(local), v4(remote))
    } else {
        (Family::Ipv6, IpAddr::V6(local), IpAddr::V6(remote))
    }
}

/// The unspecified address of a family.
pub fn unspecified(family: Family) -> IpAddr {
    match family {
        Family::Ipv4 => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Family::Ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Which way a TCP reset went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ResetDirection {
    Sent,
    Received,
}

/// A TCP reset sent or received on a socket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResetEvent {
    pub ts_ns: u64,
    pub cookie: Cookie,
    pub direction: ResetDirection,
    /// The socket's state when the reset went or came.
    pub state: TcpState,
}

/// A process accepted a TCP socket: from now on it serves the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AcceptEvent {
    pub ts_ns: u64,
    pub cookie: Cookie,
    /// The listener's network namespace (inode) and local port.
    pub netns: u32,
    pub lport: u16,
    /// The accepting process (thread group), with its own name.
    pub owner: Owner,
}

/// A process ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExitEvent {
    pub ts_ns: u64,
    pub pid: u32,
}

/// Anything the kernel reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    Transition(Transition),
    Reset(ResetEvent),
    Accept(AcceptEvent),
    Exit(ExitEvent),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rule_for_dual_stack_addresses() {
        let p = |s: &str| s.parse::<Ipv6Addr>().unwrap();
        let v4 = |s: &str| IpAddr::V4(s.parse().unwrap());
        // Talking IPv4 through a dual-stack socket: IPv4, either end possibly unset.
        assert_eq!(
            shown_v6(p("::ffff:127.0.0.1"), p("::ffff:10.0.0.2")),
            (Family::Ipv4, v4("127.0.0.1"), v4("10.0.0.2"))
        );
        assert_eq!(
            shown_v6(p("::ffff:127.0.0.1"), p("::")),
            (Family::Ipv4, v4("127.0.0.1"), v4("0.0.0.0"))
        );
        assert_eq!(
            shown_v6(p("::"), p("::ffff:10.0.0.2")),
            (Family::Ipv4, v4("0.0.0.0"), v4("10.0.0.2"))
        );
        // Nothing mapped: IPv6, `[::]:80` listeners included.
        assert_eq!(shown_v6(p("::"), p("::")).0, Family::Ipv6);
        assert_eq!(shown_v6(p("::1"), p("::1")).0, Family::Ipv6);
        assert_eq!(shown_v6(p("::ffff:127.0.0.1"), p("::1")).0, Family::Ipv6);
    }
}
