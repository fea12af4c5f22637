//! The live socket table: every TCP and UDP socket of one network namespace, keyed by cookie.
//!
//! Seeded from the kernel's socket dump ([`crate::diag`] sockets, read by netstat-user's
//! `sockdiag`), kept live by TCP transitions, and reconciled against a fresh dump now and then
//! ([`Table::reconcile`]): events say when and by whom, the dump says what events cannot (UDP
//! sockets, queues, inodes, TIME_WAIT endings). Every correction a dump makes to what events said is counted. Connections that
//! close go to a bounded [`history`]. Both are capped; overflow is counted.
//!
//! Pure state: no I/O. Times are kernel monotonic nanoseconds (`bpf_ktime_get_ns`).

mod history;
mod index;
mod reconcile;
pub mod select;

use serde::Serialize;

pub use history::{Closed, History};
pub use reconcile::Corrections;

use std::{collections::HashMap, sync::Arc};

use crate::{
    diag::Proto,
    event::{Cookie, Endpoint, Family, Final, Owner, Transition},
    state::TcpState,
};

/// One socket. Kept small (128 bytes): the table holds one per socket of the host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub cookie: Cookie,
    pub proto: Proto,
    pub family: Family,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub state: TcpState,
    /// Queues from the last dump (events do not carry them; 0 until a dump sees the socket).
    pub recv_q: u32,
    pub send_q: u32,
    /// Owner uid from the dump; [`NO_UID`] until a dump shows it (see [`Entry::uid`]).
    uid: u32,
    /// Socket inode from the dump (the kernel's is 32 bits); 0 when no file refers to it.
    inode: u32,
    /// cgroup v2 id, from a transition or the dump; 0: not known.
    cgroup: u64,
    /// When the socket entered its current state, if a transition showed it; 0: not known.
    since_ns: u64,
    /// When the socket was born (connect, listen or accept), if a transition showed it; 0:
    /// not known.
    opened_ns: u64,
    /// The last process known to own the socket: from owner-context transitions, the
    /// listener of an accepted socket, or a `/proc` scan (see [`Table::set_owner`]).
    /// Shared: most sockets have none, the table holds one entry per socket, and a socket's
    /// entry, its timewait successor and its history record share one.
    pub owner: Option<Arc<Owner>>,
    /// Kernel time of the last transition applied; 0 if none.
    last_event_ns: u64,
    /// Start of the dump that last set this entry's state; older transitions are stale.
    dumped_ns: u64,
    /// The socket ends without a transition (UDP, TIME_WAIT, request sockets), so its
    /// disappearance from a dump is expected, not a correction.
    ends_silently: bool,
}

/// [`Entry::uid`] not known (no dump has shown the socket): `(uid_t)-1`, never a real uid.
const NO_UID: u32 = u32::MAX;

fn known(ns: u64) -> Option<u64> {
    (ns != 0).then_some(ns)
}

impl Entry {
    /// Time in the current state at `now_ns`, when known.
    pub fn age_ns(&self, now_ns: u64) -> Option<u64> {
        self.since_ns().map(|s| now_ns.saturating_sub(s))
    }

    /// Owner uid from the dump.
    pub fn uid(&self) -> Option<u32> {
        (self.uid != NO_UID).then_some(self.uid)
    }

    /// Socket inode from the dump; 0 when no file refers to the socket.
    pub fn inode(&self) -> u64 {
        u64::from(self.inode)
    }

    /// cgroup v2 id of the socket; 0 when neither a transition nor a dump showed it.
    pub fn cgroup(&self) -> u64 {
        self.cgroup
    }

    /// When the socket entered its current state, if a transition showed it.
    pub fn since_ns(&self) -> Option<u64> {
        known(self.since_ns)
    }

    /// When the socket was born (connect, listen or accept), if a transition showed it.
    pub fn opened_ns(&self) -> Option<u64> {
        known(self.opened_ns)
    }
}

/// The default of `--max-sockets`: a busy host's sockets, at about 128 bytes each.
pub const DEFAULT_MAX_SOCKETS: usize = 1_000_000;
/// The default of `--max-closed`.
pub const DEFAULT_MAX_CLOSED: usize = 100_000;

/// Limits of a table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most live sockets kept.
    pub max_sockets: usize,
    /// Most closed connections kept in the history.
    pub max_closed: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_sockets: DEFAULT_MAX_SOCKETS,
            max_closed: DEFAULT_MAX_CLOSED,
        }
    }
}

/// What the table counted since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    /// Transitions applied.
    pub transitions: u64,
    /// Transitions of sockets in other network namespaces (not in this table).
    pub other_netns: u64,
    /// Transitions older than the dump that had already set the socket's state.
    pub stale: u64,
    /// Sockets not kept because the table was full.
    pub socket_overflow: u64,
    /// Closed connections dropped from the history because it was full.
    pub history_overflow: u64,
    /// Dumps compared with the table (the seed not included).
    pub reconciliations: u64,
    /// Corrections those dumps made.
    pub corrections: Corrections,
}

/// The live socket table.
#[derive(Debug)]
pub struct Table {
    /// The live sockets, densely: a slab, so memory follows the number of sockets (not a
    /// hash table's power-of-two capacity of 168-byte slots).
    live: Vec<Entry>,
    /// Cookie -> position in `live`.
    index: index::Index,
    history: History,
    limits: Limits,
    /// The network namespace (inode) the table holds: only its transitions are applied.
    /// `None` takes all.
    netns: Option<u32>,
    seeded: bool,
    counters: Counters,
    /// Whether any transition came with a stand-in id (the kernel gave no cookie): then a
    /// dump, which always has cookies, must find those sockets by their addresses.
    has_stand_ins: bool,
    /// Stand-in ids by (protocol, local, remote), rebuilt for each dump merge.
    stand_ins: HashMap<(Proto, Endpoint, Endpoint), Cookie>,
}

impl Table {
    pub fn new(limits: Limits, netns: Option<u32>) -> Self {
        Self {
            live: Vec::new(),
            index: index::Index::default(),
            history: History::new(limits.max_closed),
            limits,
            netns,
            seeded: false,
            counters: Counters::default(),
            has_stand_ins: false,
            stand_ins: HashMap::new(),
        }
    }

    /// The network namespace (inode) whose sockets the table holds, when it was given one.
    pub fn netns(&self) -> Option<u32> {
        self.netns
    }

    pub fn counters(&self) -> Counters {
        Counters {
            history_overflow: self.history.overflow(),
            ..self.counters
        }
    }

    /// Live sockets, in no particular order.
    pub fn live(&self) -> impl Iterator<Item = &Entry> {
        self.live.iter()
    }

    /// Live sockets, in no particular order, as a slice (positions are not stable across
    /// changes to the table).
    pub fn entries(&self) -> &[Entry] {
        &self.live
    }

    pub fn get(&self, cookie: Cookie) -> Option<&Entry> {
        let i = self.index.get(&self.live, cookie.0)?;
        Some(&self.live[i as usize])
    }

    fn get_mut(&mut self, cookie: Cookie) -> Option<&mut Entry> {
        let i = self.index.get(&self.live, cookie.0)?;
        Some(&mut self.live[i as usize])
    }

    /// Adds an entry whose cookie is not in the table.
    fn insert(&mut self, e: Entry) {
        debug_assert!(self.index.get(&self.live, e.cookie.0).is_none());
        self.index.insert(e.cookie.0, self.live.len() as u32);
        self.live.push(e);
    }

    fn remove(&mut self, cookie: Cookie) -> Option<Entry> {
        let found = self.index.find(&self.live, cookie.0)?;
        Some(self.remove_found(found))
    }

    /// Removes the entry `found` names.
    fn remove_found(&mut self, found: index::Found) -> Entry {
        self.index.remove(found);
        let i = found.pos as usize;
        let e = self.live.swap_remove(i);
        if let Some(moved) = self.live.get(i) {
            self.index
                .moved(moved.cookie.0, self.live.len() as u32, i as u32);
        }
        e
    }

    /// Keeps the entries `keep` says to keep.
    fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let mut i = 0;
        while i < self.live.len() {
            if keep(&self.live[i]) {
                i += 1;
            } else {
                let cookie = self.live[i].cookie;
                self.remove(cookie);
            }
        }
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Forgets closed connections that closed before `before_ns`.
    pub fn expire_closed(&mut self, before_ns: u64) {
        self.history.expire(before_ns);
    }

    /// Records that `owner` holds the socket, from a fact made outside its transitions: a
    /// process accepted it (see [`crate::owner`]), or a `/proc` scan found it holding the
    /// socket, so the owner is still known after the process lets go of it (an orphaned
    /// FIN_WAIT2 or TIME_WAIT socket). One setter for both, so the two cannot drift.
    pub fn set_owner(&mut self, cookie: Cookie, owner: &Owner) {
        if let Some(e) = self.get_mut(cookie)
            && e.owner.as_deref() != Some(owner)
        {
            e.owner = Some(Arc::new(owner.clone()));
        }
    }

    /// Applies one TCP transition, whose owner the tracker decided ([`crate::owner`] has the
    /// rules); without one the socket keeps the owner it had (from a `/proc` scan).
    pub fn apply(&mut self, t: &Transition, owner: Option<&Owner>) {
        // netns 0: the mode cannot tell (no BTF); the socket may be ours.
        if t.netns != 0 && self.netns.is_some_and(|n| n != t.netns) {
            self.counters.other_netns += 1;
            return;
        }
        self.counters.transitions += 1;
        self.has_stand_ins |= t.cookie.known().is_none();
        // Looked up once: the entry's position serves every step below.
        let found = self.index.find(&self.live, t.cookie.0);
        let known = found.map(|f| &self.live[f.pos as usize]);
        // Whether the socket keeps the owner it had: the tracker's is the same (nearly
        // always) or there is none. Then nothing is allocated or counted: the shared owner's
        // count is an atomic add and subtract, which most transitions need not pay.
        let had = known.and_then(|e| e.owner.as_ref());
        let keeps = match (owner, had) {
            (Some(o), Some(had)) => **had == *o,
            (Some(_), None) => false,
            (None, _) => true,
        };
        let changed = if keeps {
            None
        } else {
            owner.map(|o| Arc::new(o.clone()))
        };

        if known.is_some_and(|e| t.ts_ns < e.dumped_ns) {
            // The dump already showed what came after this transition.
            self.counters.stale += 1;
            if let (Some(f), Some(o)) = (found, changed) {
                self.live[f.pos as usize].owner.get_or_insert(o);
            }
            return;
        }

        if t.new == TcpState::Close {
            let owner = changed.or_else(|| had.cloned());
            self.close(t, owner, found);
            return;
        }
        if let Some(f) = found {
            let e = &mut self.live[f.pos as usize];
            e.state = t.new;
            e.since_ns = t.ts_ns;
            e.last_event_ns = t.ts_ns;
            if !keeps {
                e.owner = changed;
            }
            if t.cgroup != 0 {
                e.cgroup = t.cgroup;
            }
            fill(&mut e.local, t.local);
            fill(&mut e.remote, t.remote);
            return;
        }
        if self.live.len() >= self.limits.max_sockets {
            self.counters.socket_overflow += 1;
            return;
        }
        let born =
            t.old == TcpState::Close || (t.old, t.new) == (TcpState::Listen, TcpState::SynRecv);
        let mut entry = from_transition(t, t.new, changed);
        entry.since_ns = t.ts_ns;
        entry.opened_ns = if born { t.ts_ns } else { 0 };
        entry.last_event_ns = t.ts_ns;
        self.insert(entry);
    }

    /// A transition into CLOSE: the connection goes to the history; an active close that
    /// ended normally leaves a timewait socket with the same cookie behind (no transition
    /// announces it), which stays live until a dump no longer shows it.
    fn close(&mut self, t: &Transition, owner: Option<Arc<Owner>>, found: Option<index::Found>) {
        let entry = found.map(|f| self.remove_found(f));
        if t.old == TcpState::Close {
            return; // closing a socket that never connected: not a connection
        }
        let mut entry = entry.unwrap_or_else(|| from_transition(t, t.old, None));
        entry.owner = owner.or(entry.owner);
        fill(&mut entry.local, t.local);
        fill(&mut entry.remote, t.remote);
        let fin = t.fin.unwrap_or_default();
        if let Some(state) = timewait_state(t, &fin, entry.owner.as_deref()) {
            let mut tw = entry.clone();
            tw.state = state;
            tw.since_ns = t.ts_ns;
            tw.last_event_ns = t.ts_ns;
            tw.recv_q = 0;
            tw.send_q = 0;
            tw.inode = 0;
            tw.ends_silently = true;
            if self.live.len() < self.limits.max_sockets {
                self.insert(tw);
            } else {
                self.counters.socket_overflow += 1;
            }
        }
        self.history.push(Closed {
            last_state: t.old,
            closed_ns: t.ts_ns,
            fin: t.fin,
            entry,
        });
    }
}

/// The state of the timewait socket an active close leaves, if it leaves one: the kernel
/// turns a socket that closes normally from FIN_WAIT1, FIN_WAIT2 or CLOSING into a timewait
/// socket. Its state shows as TIME_WAIT once the peer's FIN came, and as FIN_WAIT2 when the
/// owner closed a half-closed socket (in its own system call) before the peer's FIN.
fn timewait_state(t: &Transition, fin: &Final, owner: Option<&Owner>) -> Option<TcpState> {
    if fin.errno != 0 {
        return None;
    }
    match t.old {
        TcpState::FinWait1 | TcpState::Closing => Some(TcpState::TimeWait),
        TcpState::FinWait2 if owner.is_some_and(|o| o.pid == t.task.pid) => {
            Some(TcpState::FinWait2)
        }
        TcpState::FinWait2 => Some(TcpState::TimeWait),
        _ => None,
    }
}

/// A socket first seen in a transition, in `state`: no dump has shown it yet.
fn from_transition(t: &Transition, state: TcpState, owner: Option<Arc<Owner>>) -> Entry {
    Entry {
        cookie: t.cookie,
        proto: Proto::Tcp,
        family: t.family,
        local: t.local,
        remote: t.remote,
        state,
        recv_q: 0,
        send_q: 0,
        uid: NO_UID,
        inode: 0,
        cgroup: t.cgroup,
        since_ns: 0,
        opened_ns: 0,
        owner,
        last_event_ns: 0,
        dumped_ns: 0,
        ends_silently: false,
    }
}

/// Fills in a port (or address) the kernel had not assigned when an earlier record was sent.
fn fill(known: &mut Endpoint, new: Endpoint) {
    if known.port.is_none() && new.port.is_some() {
        *known = new;
    } else if known.addr.is_unspecified() && !new.addr.is_unspecified() {
        known.addr = new.addr;
    }
}

#[cfg(test)]
mod tests;

const _: () = assert!(std::mem::size_of::<Entry>() <= 128);
