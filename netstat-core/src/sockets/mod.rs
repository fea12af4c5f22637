//! What is remembered of each socket between its records: when it entered its state, who owns
//! it, and, for a connection, its lifecycle so far.
//!
//! A record says what happened at one instant. How long the socket sat in its previous state,
//! which process it belongs to, and on its close the connection's whole life need the socket's
//! earlier records. They are kept in one record per socket, in one map: every record looks its
//! socket up once, and the time in a state is measured once, for the event log and the
//! lifecycle alike. A socket is forgotten when it reaches CLOSE; at most `capacity` are kept.
//! The owner rules live in [`crate::owner`], the lifecycle's in [`crate::life`].

mod refused;

use std::{collections::hash_map::Entry, time::Duration};

use rustc_hash::FxHashMap;

use crate::{
    end::{End, classify},
    event::{AcceptEvent, Cookie, ExitEvent, Owner, ResetEvent, Transition},
    life::{Life, Lifecycle, is_listener},
    owner::{Owners, Source, in_owner_context},
    state::TcpState,
};
use refused::Refused;

/// What a socket's earlier records add to a transition.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Context {
    /// Time spent in the old state; `None` on the first transition seen for the socket.
    pub in_old: Option<Duration>,
    /// The socket's owner, when known; [`Owner::exited`] when its process has ended.
    pub owner: Option<Owner>,
    /// How the connection ended, on its transition into CLOSE.
    pub end: Option<End>,
    /// The connection's whole life, on its transition into CLOSE (not for a listener).
    pub life: Option<Lifecycle>,
}

/// One socket's memory.
#[derive(Debug)]
struct Socket {
    /// When the socket entered `state`; 0 when not known (first seen by an accept or a
    /// `/proc` scan).
    since_ns: u64,
    /// The state its last transition put it in; CLOSE, never a remembered socket's state,
    /// while there has been none.
    state: TcpState,
    owner: Option<Owner>,
    source: Source,
    lport: Option<u16>,
    netns: u32,
    /// The connection so far, from its first transition other than a listener's; `None` for
    /// a listener and before any transition.
    ///
    /// Boxed: most sockets a daemon meets first in a `/proc` scan (every socket of the host
    /// at its start) or are listeners, and a lifecycle inline (56 bytes) doubled the record
    /// of each: 13 MiB more at 200,000 sockets in the scale benchmark.
    life: Option<Box<Life>>,
}

impl Socket {
    /// A socket known before any of its transitions, owned by `owner`.
    fn before_transitions(owner: Owner, lport: u16, netns: u32) -> Self {
        Self {
            since_ns: 0,
            state: TcpState::Close,
            owner: Some(owner),
            source: Source::Own,
            lport: Some(lport),
            netns,
            life: None,
        }
    }

    /// How long it has been in its state at `now_ns`, and the same for the event log, which
    /// says nothing when the socket's entry into the state was not seen.
    fn time_in_state(&self, now_ns: u64) -> (Duration, Option<Duration>) {
        let spent = Duration::from_nanos(now_ns.saturating_sub(self.since_ns));
        (spent, (self.since_ns != 0).then_some(spent))
    }
}

/// Socket memory, capped at `capacity` sockets.
#[derive(Debug)]
pub struct Sockets {
    sockets: FxHashMap<Cookie, Socket>,
    owners: Owners,
    capacity: usize,
    refused: Refused,
}

impl Sockets {
    pub fn new(capacity: usize) -> Self {
        Self {
            sockets: FxHashMap::default(),
            owners: Owners::default(),
            capacity,
            refused: Refused::default(),
        }
    }

    /// Number of sockets remembered.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// Sockets not remembered because `capacity` was reached, each counted once.
    pub fn untracked(&self) -> u64 {
        self.refused.count()
    }

    /// The owner rules' state, to seed from `/proc`.
    pub fn owners_mut(&mut self) -> &mut Owners {
        &mut self.owners
    }

    /// Records that a `/proc` scan found `owner` holding the socket `cookie`, which
    /// predates tracing; a socket's own facts, when they come, replace it.
    pub fn seed(&mut self, cookie: Cookie, netns: u32, port: u16, owner: Owner) {
        let full = self.sockets.len() >= self.capacity;
        if let Entry::Vacant(slot) = self.sockets.entry(cookie)
            && !full
        {
            slot.insert(Socket::before_transitions(owner, port, netns));
        }
    }

    /// A process accepted the socket: it owns it from now on.
    pub fn on_accept(&mut self, a: &AcceptEvent) {
        self.owners.on_accept(a);
        let full = self.sockets.len() >= self.capacity;
        match self.sockets.entry(a.cookie) {
            Entry::Occupied(known) => {
                let socket = known.into_mut();
                socket.owner = Some(a.owner.clone());
                socket.source = Source::Own;
            }
            Entry::Vacant(slot) if !full => {
                self.refused.forget(a.cookie);
                slot.insert(Socket::before_transitions(
                    a.owner.clone(),
                    a.lport,
                    a.netns,
                ));
            }
            Entry::Vacant(_) => self.refused.refuse(a.cookie),
        }
    }

    /// A process ended.
    pub fn on_exit(&mut self, e: &ExitEvent) {
        self.owners.on_exit(e.pid);
    }

    /// Notes a reset on a connection; it decides how the connection is said to have ended.
    pub fn on_reset(&mut self, r: &ResetEvent) {
        if let Some(life) = self
            .sockets
            .get_mut(&r.cookie)
            .and_then(|s| s.life.as_mut())
        {
            life.last_reset = Some(r.direction);
        }
    }

    /// Applies a transition and returns what the socket's earlier records add to it. May fill
    /// in the local port of a record the kernel sent before the port was assigned.
    pub fn apply(&mut self, t: &mut Transition) -> Context {
        let mut cx = Context::default();
        self.apply_to(t, &mut cx);
        cx
    }

    /// [`Sockets::apply`], writing the context into `cx`, field by field: the pipeline keeps
    /// one context and overwrites it for every record. A context returned by value (224
    /// bytes, most of them a lifecycle that is `None` nine records in ten) was copied whole,
    /// once or twice a record, on the path every record takes.
    pub fn apply_to(&mut self, t: &mut Transition, cx: &mut Context) {
        let born = t.old == TcpState::Close;
        let from_task = (in_owner_context(t.old, t.new) && t.task.pid != 0)
            .then(|| self.owners.of_task(&t.task, born));
        if t.new == TcpState::Close {
            self.close(t, from_task, cx);
        } else {
            self.change(t, from_task, cx);
        }
    }

    /// A transition to a state other than CLOSE.
    fn change(&mut self, t: &mut Transition, from_task: Option<Owner>, cx: &mut Context) {
        let full = self.sockets.len() >= self.capacity;
        // One hash lookup per record: this runs for every one, at up to millions a second.
        let socket = match self.sockets.entry(t.cookie) {
            Entry::Occupied(known) => known.into_mut(),
            Entry::Vacant(slot) => {
                let accepted = (t.old, t.new) == (TcpState::Listen, TcpState::SynRecv);
                let source = if from_task.is_none() && accepted {
                    Source::Listener
                } else {
                    Source::Own
                };
                let owner = from_task.or_else(|| {
                    accepted
                        .then(|| self.owners.listener_holder(t.netns, t.local.port).cloned())
                        .flatten()
                });
                if full {
                    self.refused.refuse(t.cookie);
                } else {
                    self.refused.forget(t.cookie);
                    slot.insert(Socket {
                        since_ns: t.ts_ns,
                        state: t.new,
                        owner: owner.clone(),
                        source,
                        lport: t.local.port,
                        netns: t.netns,
                        life: (!is_listener(t)).then(|| Box::new(Life::begin(t))),
                    });
                }
                observe_listener(&mut self.owners, t, owner.as_ref());
                cx.in_old = None;
                cx.owner = owner;
                cx.end = end_of(t, None);
                cx.life = None;
                return;
            }
        };
        let (spent, in_old) = socket.time_in_state(t.ts_ns);
        let end = end_of(t, socket.life.as_deref());
        t.local.port = t.local.port.or(socket.lport);
        socket.lport = t.local.port;
        // A state set again (FIN_WAIT1 -> FIN_WAIT1 when a FIN is re-sent, Linux 6.12+) is
        // one stay in that state, timed from its start. It is a new stay when the socket was
        // last seen entering another state (a record was lost) or none (CLOSE: its first
        // transition).
        let new_stay = t.old != t.new || socket.state != t.new;
        if !is_listener(t) {
            match &mut socket.life {
                Some(life) if new_stay => life.stay(socket.state, spent, t),
                Some(_) => {}
                None => socket.life = Some(Box::new(Life::begin(t))),
            }
        }
        if new_stay {
            socket.since_ns = t.ts_ns;
            socket.state = t.new;
        }
        socket.owner = match from_task {
            Some(owner) => {
                socket.source = Source::Own;
                Some(owner)
            }
            None => self.owners.standing(
                socket.owner.take(),
                socket.source,
                socket.netns,
                socket.lport,
            ),
        };
        observe_listener(&mut self.owners, t, socket.owner.as_ref());
        cx.in_old = in_old;
        // Most records follow one of the same process: the shared name's count is an atomic
        // add and subtract, a tenth of this function, for the same owner.
        if cx.owner != socket.owner {
            cx.owner.clone_from(&socket.owner);
        }
        cx.end = end;
        cx.life = None;
    }

    /// A transition into CLOSE: the socket is forgotten and its connection, if it is one,
    /// ends.
    fn close(&mut self, t: &mut Transition, from_task: Option<Owner>, cx: &mut Context) {
        let (in_old, owner, life) = match self.sockets.remove(&t.cookie) {
            Some(socket) => {
                t.local.port = t.local.port.or(socket.lport);
                let (spent, in_old) = socket.time_in_state(t.ts_ns);
                let owner = from_task.or_else(|| {
                    self.owners
                        .standing(socket.owner, socket.source, socket.netns, t.local.port)
                });
                (in_old, owner, socket.life.map(|life| (*life, spent)))
            }
            None => {
                // First seen at its close, or not followed because the map was full.
                self.refused.forget(t.cookie);
                (None, from_task, None)
            }
        };
        let end = end_of(t, life.as_ref().map(|(life, _)| life));
        observe_listener(&mut self.owners, t, owner.as_ref());
        cx.in_old = in_old;
        cx.end = end;
        cx.life = (!is_listener(t) && t.old != TcpState::Close).then(|| {
            // Seen only at its close, or after its listener's or owner's records: one stay
            // of no known length.
            let (life, spent) = life.unwrap_or_else(|| (Life::seen_at_close(t), Duration::ZERO));
            life.finish(t, spent, owner.as_ref(), end)
        });
        cx.owner = owner;
    }
}

/// Lets the owner rules learn from a listener's transition and its owner.
fn observe_listener(owners: &mut Owners, t: &Transition, owner: Option<&Owner>) {
    if t.new == TcpState::Listen || t.old == TcpState::Listen {
        owners.observe_listener(t, owner);
    }
}

/// How a connection ended, when the kernel sent its final counters with `t`: from the
/// socket's error, the state it left and the last reset traced on `life`.
fn end_of(t: &Transition, life: Option<&Life>) -> Option<End> {
    let fin = t.fin.as_ref()?;
    Some(classify(t.old, fin.errno, life.and_then(|l| l.last_reset)))
}

#[cfg(test)]
mod tests;
