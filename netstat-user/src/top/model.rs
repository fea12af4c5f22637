//! What `enetstat top` shows, computed from facts: per process, remote endpoint and local
//! port, the connections opened, failed and reset in the last interval, connect latency
//! percentiles and bytes, with the live connections counted from the table. Pure: no I/O, no
//! clock; the caller says how long the interval was.
//!
//! Facts come from transitions ([`facts_of`]) and from finished connections ([`Fact::Bytes`]),
//! so standalone tracing and a daemon's streams feed the same model.
//!
//! Which socket counts where: a connection whose local port is one this host listens on (a
//! service port: a LISTEN socket in the table, or a port a connection was accepted on) counts
//! for that port in the local-port view and, in the remote view, for its client's address
//! with the port left out (`10.0.0.7:*`), since a client's ephemeral port names nothing. Every
//! other connection (an outgoing one) counts for its remote endpoint, port included, and not
//! in the local-port view, since its ephemeral local port names nothing either.

use std::{
    cmp::Ordering,
    collections::{HashMap, HashSet},
    net::IpAddr,
    time::Duration,
};

use crate::{
    end::End,
    event::{Endpoint, Owner},
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
    fn cmp_for_ties(&self, other: &Key) -> Ordering {
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
    /// It closed having moved this many bytes.
    Bytes {
        sent: u64,
        received: u64,
    },
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

/// A column of the grouped views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Name,
    Active,
    Connects,
    Accepts,
    Failed,
    ResetsIn,
    ResetsOut,
    P50,
    P99,
    BytesIn,
    BytesOut,
}

impl Column {
    pub const ALL: [Column; 11] = [
        Column::Name,
        Column::Active,
        Column::Connects,
        Column::Accepts,
        Column::Failed,
        Column::ResetsIn,
        Column::ResetsOut,
        Column::P50,
        Column::P99,
        Column::BytesIn,
        Column::BytesOut,
    ];

    fn value(self, r: &Row) -> u64 {
        let us = |d: Option<Duration>| d.map_or(0, |d| d.as_micros() as u64 + 1);
        match self {
            Column::Name => 0,
            Column::Active => r.active,
            Column::Connects => r.active_opens,
            Column::Accepts => r.passive_opens,
            Column::Failed => r.failed(),
            Column::ResetsIn => r.resets_in,
            Column::ResetsOut => r.resets_out,
            Column::P50 => us(r.connect_p50),
            Column::P99 => us(r.connect_p99),
            Column::BytesIn => r.bytes_in,
            Column::BytesOut => r.bytes_out,
        }
    }
}

/// Sorts rows by `column`: numbers largest first, names in order; `reverse` turns it round.
/// Ties go by pid, address or port, so the order is stable from one refresh to the next.
pub fn sort_rows(rows: &mut [Row], column: Column, reverse: bool) {
    rows.sort_by(|a, b| {
        let primary = match column {
            Column::Name => a.key.cmp_for_ties(&b.key),
            c => c.value(b).cmp(&c.value(a)),
        };
        let primary = if reverse { primary.reverse() } else { primary };
        primary.then_with(|| a.key.cmp_for_ties(&b.key))
    });
}

/// A column of the connections view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnColumn {
    Process,
    Local,
    Remote,
    State,
    Age,
}

impl ConnColumn {
    pub const ALL: [ConnColumn; 5] = [
        ConnColumn::Process,
        ConnColumn::Local,
        ConnColumn::Remote,
        ConnColumn::State,
        ConnColumn::Age,
    ];
}

/// Sorts live sockets by `column`: ages oldest first, the rest in order; `reverse` turns it
/// round. Ties go by local then remote endpoint.
pub fn sort_sockets(sockets: &mut [Socket], column: ConnColumn, reverse: bool) {
    let ends = |s: &Socket| (s.local.addr, s.local.port, s.remote.addr, s.remote.port);
    sockets.sort_by(|a, b| {
        let primary = match column {
            ConnColumn::Process => {
                let k = |s: &Socket| s.owner.as_ref().map(|o| (o.comm.clone(), o.pid));
                k(a).cmp(&k(b))
            }
            ConnColumn::Local => (a.local.addr, a.local.port).cmp(&(b.local.addr, b.local.port)),
            ConnColumn::Remote => {
                (a.remote.addr, a.remote.port).cmp(&(b.remote.addr, b.remote.port))
            }
            ConnColumn::State => a.state.name().cmp(b.state.name()),
            ConnColumn::Age => b.age.cmp(&a.age),
        };
        let primary = if reverse { primary.reverse() } else { primary };
        primary.then_with(|| ends(a).cmp(&ends(b)))
    });
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
        [
            Some(Key::Process(owner.cloned())),
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
        let keys = self.keys(owner, conn.local, conn.remote);
        for (by, key) in GroupBy::ALL.into_iter().zip(keys) {
            let Some(key) = key else { continue };
            let full = self.groups[slot(by)] >= MAX_GROUPS;
            match self.tallies.get_mut(&(by, key.clone())) {
                Some(t) => t.add(fact),
                None if full => self.dropped += 1,
                None => {
                    let mut t = Tally::default();
                    t.add(fact);
                    self.tallies.insert((by, key), t);
                    self.groups[slot(by)] += 1;
                }
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
        for s in live.iter().filter(|s| s.is_connection()) {
            let owner = s
                .owner
                .as_ref()
                .or_else(|| self.listeners.get(&s.local.port?));
            let keys = self.keys(owner, s.local, s.remote);
            for (by, key) in GroupBy::ALL.into_iter().zip(keys) {
                if let Some(key) = key {
                    *active.entry((by, key)).or_default() += 1;
                }
            }
        }
        let mut tallies = std::mem::take(&mut self.tallies);
        for k in active.keys() {
            tallies.entry(k.clone()).or_default();
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
