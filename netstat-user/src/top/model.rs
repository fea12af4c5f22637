//! What `enetstat top` shows, computed from facts: per process, remote endpoint and local
//! port, the connections opened, failed and reset in the last interval, connect latency
//! percentiles and bytes, with the live connections counted from the table. Pure: no I/O, no
//! clock; the caller says how long the interval was.
//!
//! Facts come from transitions ([`facts_of`]) and from bytes moved ([`Fact::Bytes`]: by
//! finished connections, and by live ones), so standalone tracing and a
//! daemon's streams feed the same model.
//!
//! A process row is keyed by pid and name alone: an owner that has since exited (the
//! tracker's [`Owner::exited`], the daemon's `owner_exited`) marks the row rather than
//! splitting it, and the container its sockets are in is carried along, not keyed on.
//!
//! Which socket counts where: a connection whose local port is one this host listens on (a
//! service port: a LISTEN socket in the table, or a port a connection was accepted on) counts
//! for that port in the local-port view and, in the remote view, for its client's address
//! with the port left out (`10.0.0.7:*`), since a client's ephemeral port names nothing. Every
//! other connection (an outgoing one) counts for its remote endpoint, port included, and not
//! in the local-port view, since its ephemeral local port names nothing either.

use foldhash::{HashMap, HashMapExt as _, HashSet};
use std::{cmp::Ordering, collections::hash_map::Entry, net::IpAddr, sync::Arc, time::Duration};

use crate::{
    end::End,
    event::{Endpoint, Owner},
    sockdiag::TcpBytes,
    state::TcpState,
};

/// Most groups of one view tallied per interval; more are counted in [`Frame::dropped`].
pub const MAX_GROUPS: usize = 10_000;

/// Most connect latencies kept per group per interval (the percentiles are of these).
pub const MAX_SAMPLES: usize = 10_000;

/// A row's failure or reset rate "jumped" when it reached at least this many per second...
const JUMP_FLOOR: f64 = 1.0;
/// ...and at least this many times the rate of the interval before.
const JUMP_FACTOR: f64 = 2.0;

/// How one view groups connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GroupBy {
    Process,
    Remote,
    LocalPort,
}

impl GroupBy {
    pub const ALL: [GroupBy; 3] = [GroupBy::Process, GroupBy::Remote, GroupBy::LocalPort];
}

/// The group a row stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// The owning process; `None` when no owner is known.
    Process(Option<Owner>),
    /// A remote endpoint; the port is `None` for the clients of a local service.
    Remote(Endpoint),
    LocalPort(u16),
}

impl Key {
    /// Orders keys of one view for ties: by pid, address or port.
    pub(super) fn cmp_for_ties(&self, other: &Key) -> Ordering {
        match (self, other) {
            (Key::Process(a), Key::Process(b)) => {
                let k = |o: &Option<Owner>| o.as_ref().map(|o| (o.pid, o.comm.clone()));
                k(a).cmp(&k(b))
            }
            (Key::Remote(a), Key::Remote(b)) => (a.addr, a.port).cmp(&(b.addr, b.port)),
            (Key::LocalPort(a), Key::LocalPort(b)) => a.cmp(b),
            _ => Ordering::Equal,
        }
    }
}

/// Which way a connection was opened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Opened {
    /// connect(): CLOSE -> SYN_SENT.
    Active,
    /// Accepted: SYN_RECV -> ESTABLISHED.
    Passive,
}

/// One thing that happened to a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fact {
    Opened(Opened),
    /// SYN_SENT -> ESTABLISHED took this long.
    Connected(Duration),
    /// It closed this way.
    Ended(End),
    /// It moved this many bytes: at its close, or (live) since the last refresh counted it.
    Bytes {
        sent: u64,
        received: u64,
    },
}

impl From<TcpBytes> for Fact {
    fn from(b: TcpBytes) -> Self {
        Fact::Bytes {
            sent: b.sent,
            received: b.received,
        }
    }
}

/// The facts in one transition: `in_old` is the time spent in the state it left, `end` how a
/// transition into CLOSE ended.
pub fn facts_of(
    old: TcpState,
    new: TcpState,
    in_old: Option<Duration>,
    end: Option<End>,
) -> impl Iterator<Item = Fact> {
    use TcpState::*;
    let opened = match (old, new) {
        (Close, SynSent) => Some(Fact::Opened(Opened::Active)),
        (SynRecv, Established) => Some(Fact::Opened(Opened::Passive)),
        _ => None,
    };
    let connected = match (old, new, in_old) {
        (SynSent, Established, Some(d)) => Some(Fact::Connected(d)),
        _ => None,
    };
    let ended = if new == Close {
        end.map(Fact::Ended)
    } else {
        None
    };
    opened.into_iter().chain(connected).chain(ended)
}

/// The connection a fact is about.
#[derive(Clone, Copy, Debug)]
pub struct Conn<'a> {
    pub owner: Option<&'a Owner>,
    pub local: Endpoint,
    pub remote: Endpoint,
    /// The container the socket is in (`runtime://id`), when its cgroup names one.
    pub container: Option<&'a str>,
}

/// A live socket, from the table.
#[derive(Clone, Debug, PartialEq)]
pub struct Socket {
    pub owner: Option<Owner>,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub state: TcpState,
    /// Time in the current state, when a transition showed when it began.
    pub age: Option<Duration>,
    /// The container it is in (`runtime://id`), when its cgroup names one.
    pub container: Option<Arc<str>>,
}

impl Socket {
    /// Whether it counts as an active connection: not a listener, not closed, not TIME_WAIT.
    pub fn is_connection(&self) -> bool {
        !matches!(
            self.state,
            TcpState::Listen | TcpState::Close | TcpState::TimeWait
        )
    }
}

/// What one group did in one interval.
#[derive(Clone, Debug, Default)]
struct Tally {
    active_opens: u64,
    passive_opens: u64,
    refused: u64,
    timeouts: u64,
    resets_in: u64,
    resets_out: u64,
    bytes_in: u64,
    bytes_out: u64,
    /// Connect latencies, microseconds.
    connect_us: Vec<u64>,
    container: Seen,
    /// A fact or live socket named its owner as exited.
    exited: bool,
}

/// The container of a group's sockets as far as seen: a row shows one only when every
/// socket that named one named the same (a process whose sockets are in two containers, or
/// the row of sockets with no known owner, shows none).
#[derive(Clone, Debug, Default, PartialEq)]
enum Seen {
    #[default]
    Nothing,
    One(Arc<str>),
    Several,
}

impl Seen {
    fn note(&mut self, container: Option<&str>) {
        let Some(c) = container else { return };
        match self {
            Seen::Nothing => *self = Seen::One(c.into()),
            Seen::One(known) if **known == *c => {}
            Seen::One(_) => *self = Seen::Several,
            Seen::Several => {}
        }
    }

    fn one(self) -> Option<Arc<str>> {
        match self {
            Seen::One(c) => Some(c),
            Seen::Nothing | Seen::Several => None,
        }
    }
}

impl Tally {
    fn add(&mut self, fact: Fact) {
        match fact {
            Fact::Opened(Opened::Active) => self.active_opens += 1,
            Fact::Opened(Opened::Passive) => self.passive_opens += 1,
            Fact::Connected(d) => {
                if self.connect_us.len() < MAX_SAMPLES {
                    self.connect_us
                        .push(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
                }
            }
            Fact::Ended(End::Refused) => self.refused += 1,
            Fact::Ended(End::Timeout) => self.timeouts += 1,
            Fact::Ended(End::ResetReceived) => self.resets_in += 1,
            Fact::Ended(End::ResetSent) => self.resets_out += 1,
            Fact::Ended(_) => {}
            Fact::Bytes { sent, received } => {
                self.bytes_out = self.bytes_out.saturating_add(sent);
                self.bytes_in = self.bytes_in.saturating_add(received);
            }
        }
    }
}

/// One row of a grouped view: counts over the interval (rates are counts divided by
/// [`Frame::interval`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    pub key: Key,
    /// Live connections now.
    pub active: u64,
    pub active_opens: u64,
    pub passive_opens: u64,
    pub refused: u64,
    pub timeouts: u64,
    pub resets_in: u64,
    pub resets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connect_p50: Option<Duration>,
    pub connect_p99: Option<Duration>,
    /// Connect latencies measured (the percentiles' sample size).
    pub connects_measured: usize,
    /// Failures plus resets per second rose sharply from the interval before.
    pub jumped: bool,
    /// Process view: the container of the process's sockets, when known and the same for
    /// all.
    pub container: Option<Arc<str>>,
    /// Process view: the process has exited (the row counts its last sockets).
    pub exited: bool,
}

impl Row {
    pub fn failed(&self) -> u64 {
        self.refused + self.timeouts
    }

    /// Failures and resets: what a jump is measured on.
    pub fn bad(&self) -> u64 {
        self.failed() + self.resets_in + self.resets_out
    }
}

/// The `p`th percentile (nearest rank) of `values`, which it sorts; `None` when empty.
pub fn percentile(values: &mut [u64], p: f64) -> Option<u64> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    let rank = ((p / 100.0) * values.len() as f64).ceil() as usize;
    Some(values[rank.clamp(1, values.len()) - 1])
}

/// One refresh: every view's rows, unsorted.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Frame {
    pub interval: Duration,
    pub processes: Vec<Row>,
    pub remotes: Vec<Row>,
    pub local_ports: Vec<Row>,
    pub connections: Vec<Socket>,
    /// Groups not tallied because a view had [`MAX_GROUPS`] already.
    pub dropped: u64,
}

impl Frame {
    pub fn rows(&self, by: GroupBy) -> &[Row] {
        match by {
            GroupBy::Process => &self.processes,
            GroupBy::Remote => &self.remotes,
            GroupBy::LocalPort => &self.local_ports,
        }
    }

    pub fn rows_mut(&mut self, by: GroupBy) -> &mut Vec<Row> {
        match by {
            GroupBy::Process => &mut self.processes,
            GroupBy::Remote => &mut self.remotes,
            GroupBy::LocalPort => &mut self.local_ports,
        }
    }

    /// The sum of a view's rows (every connection counts once in each view but the
    /// local-port one, so the process view's sum is the host's).
    pub fn total(&self) -> Row {
        let mut total = Row {
            key: Key::Process(None),
            active: 0,
            active_opens: 0,
            passive_opens: 0,
            refused: 0,
            timeouts: 0,
            resets_in: 0,
            resets_out: 0,
            bytes_in: 0,
            bytes_out: 0,
            connect_p50: None,
            connect_p99: None,
            connects_measured: 0,
            jumped: false,
            container: None,
            exited: false,
        };
        for r in &self.processes {
            total.active += r.active;
            total.active_opens += r.active_opens;
            total.passive_opens += r.passive_opens;
            total.refused += r.refused;
            total.timeouts += r.timeouts;
            total.resets_in += r.resets_in;
            total.resets_out += r.resets_out;
            total.bytes_in += r.bytes_in;
            total.bytes_out += r.bytes_out;
            total.connects_measured += r.connects_measured;
        }
        total
    }
}

/// A count per second over `interval`.
pub fn per_second(count: u64, interval: Duration) -> f64 {
    let secs = interval.as_secs_f64();
    if secs <= 0.0 {
        0.0
    } else {
        count as f64 / secs
    }
}

/// The tallies of the current interval and what is needed to tell a jump.
#[derive(Debug, Default)]
pub struct Model {
    tallies: HashMap<(GroupBy, Key), Tally>,
    groups: [usize; 3],
    dropped: u64,
    /// Ports with a listener (from the last table) or an accepted connection.
    services: HashSet<u16>,
    /// The owners of the listeners in the last table, by port: the owner of an accepted
    /// connection whose events named none (its listener predates tracing).
    listeners: HashMap<u16, Owner>,
    /// Failures and resets per second of each group in the last interval.
    last_bad: HashMap<(GroupBy, Key), f64>,
}

fn slot(by: GroupBy) -> usize {
    match by {
        GroupBy::Process => 0,
        GroupBy::Remote => 1,
        GroupBy::LocalPort => 2,
    }
}

impl Model {
    pub fn new() -> Self {
        Self::default()
    }

    /// Forgets everything (a new filter starts afresh).
    pub fn clear(&mut self) {
        *self = Self::default();
    }

    /// Whether `port` is one this host serves on.
    fn serves(&self, port: Option<u16>) -> bool {
        port.is_some_and(|p| self.services.contains(&p))
    }

    /// The key of each view for a connection (no local-port key for an outgoing one).
    fn keys(&self, owner: Option<&Owner>, local: Endpoint, remote: Endpoint) -> [Option<Key>; 3] {
        let service = self.serves(local.port);
        let remote = if service {
            Endpoint {
                addr: remote.addr,
                port: None,
            }
        } else {
            remote
        };
        // Keyed as a live owner: whether it has exited is the row's mark, not its identity.
        let owner = owner.map(|o| Owner::new(o.pid, o.comm.clone()));
        [
            Some(Key::Process(owner)),
            Some(Key::Remote(remote)),
            local.port.filter(|_| service).map(Key::LocalPort),
        ]
    }

    /// Counts a fact.
    pub fn record(&mut self, conn: &Conn<'_>, fact: Fact) {
        if let (Fact::Opened(Opened::Passive), Some(port)) = (fact, conn.local.port) {
            self.services.insert(port);
        }
        let owner = conn.owner.or_else(|| self.listeners.get(&conn.local.port?));
        let exited = owner.is_some_and(|o| o.exited);
        let keys = self.keys(owner, conn.local, conn.remote);
        for (by, key) in GroupBy::ALL.into_iter().zip(keys) {
            let Some(key) = key else { continue };
            let full = self.groups[slot(by)] >= MAX_GROUPS;
            // One hash a view, and the key moved in, never cloned, when it is new.
            let t = match self.tallies.entry((by, key)) {
                Entry::Occupied(t) => t.into_mut(),
                Entry::Vacant(_) if full => {
                    self.dropped += 1;
                    continue;
                }
                Entry::Vacant(v) => {
                    self.groups[slot(by)] += 1;
                    v.insert(Tally::default())
                }
            };
            t.add(fact);
            if by == GroupBy::Process {
                t.container.note(conn.container);
                t.exited |= exited;
            }
        }
    }

    /// Learns the service ports, and who listens on them, from the live table.
    pub fn note_listeners(&mut self, live: &[Socket]) {
        let listening = || live.iter().filter(|s| s.state == TcpState::Listen);
        self.services = listening().filter_map(|s| s.local.port).collect();
        self.listeners = listening()
            .filter_map(|s| Some((s.local.port?, s.owner.clone()?)))
            .collect();
    }

    /// Ends the interval: the rows of every view, with `live` counted as active connections,
    /// and a fresh tally for the next interval.
    pub fn roll(&mut self, interval: Duration, live: Vec<Socket>) -> Frame {
        // Ports accepted on during the interval stay services even if the table showed no
        // listener (it may have closed).
        let accepted = std::mem::take(&mut self.services);
        self.note_listeners(&live);
        self.services.extend(accepted);
        let mut active: HashMap<(GroupBy, Key), u64> = HashMap::new();
        let mut tallies = std::mem::take(&mut self.tallies);
        for s in live.iter().filter(|s| s.is_connection()) {
            let owner = s
                .owner
                .as_ref()
                .or_else(|| self.listeners.get(&s.local.port?));
            let exited = owner.is_some_and(|o| o.exited);
            let keys = self.keys(owner, s.local, s.remote);
            for (by, key) in GroupBy::ALL.into_iter().zip(keys) {
                if let Some(key) = key {
                    *active.entry((by, key.clone())).or_default() += 1;
                    let t = tallies.entry((by, key)).or_default();
                    if by == GroupBy::Process {
                        t.container.note(s.container.as_deref());
                        t.exited |= exited;
                    }
                }
            }
        }
        let mut frame = Frame {
            interval,
            connections: live,
            dropped: std::mem::take(&mut self.dropped),
            ..Frame::default()
        };
        let mut bad = HashMap::with_capacity(tallies.len());
        for ((by, key), mut t) in tallies {
            let rate = per_second(
                t.refused + t.timeouts + t.resets_in + t.resets_out,
                interval,
            );
            let before = self
                .last_bad
                .get(&(by, key.clone()))
                .copied()
                .unwrap_or(0.0);
            let jumped = rate >= JUMP_FLOOR && rate >= before * JUMP_FACTOR;
            if rate > 0.0 {
                bad.insert((by, key.clone()), rate);
            }
            let us = |v: Option<u64>| v.map(Duration::from_micros);
            let row = Row {
                active: active.get(&(by, key.clone())).copied().unwrap_or(0),
                active_opens: t.active_opens,
                passive_opens: t.passive_opens,
                refused: t.refused,
                timeouts: t.timeouts,
                resets_in: t.resets_in,
                resets_out: t.resets_out,
                bytes_in: t.bytes_in,
                bytes_out: t.bytes_out,
                connect_p50: us(percentile(&mut t.connect_us, 50.0)),
                connect_p99: us(percentile(&mut t.connect_us, 99.0)),
                connects_measured: t.connect_us.len(),
                jumped,
                container: t.container.one(),
                exited: t.exited,
                key,
            };
            // A group with nothing to show (only orderly closes) is left out.
            if row.active + row.active_opens + row.passive_opens + row.bad() > 0
                || row.bytes_in + row.bytes_out > 0
                || row.connects_measured > 0
            {
                frame.rows_mut(by).push(row);
            }
        }
        self.last_bad = bad;
        self.groups = [0; 3];
        frame
    }
}

/// The address a remote row names, for name lookups.
pub fn remote_addr(key: &Key) -> Option<IpAddr> {
    match key {
        Key::Remote(e) => Some(e.addr),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
