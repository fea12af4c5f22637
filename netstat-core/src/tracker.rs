//! Per-socket memory for the event log: when each socket last changed state and who owns it.
//!
//! A record says what happened at one instant. How long the socket sat in its previous state,
//! and which process it belongs to, need the socket's earlier records; this keeps them, bounded,
//! and forgets a socket when it reaches CLOSE. The owner rules themselves live in
//! [`crate::owner`].

use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::{
    event::{AcceptEvent, Cookie, ExitEvent, Owner, Transition},
    owner::{Owners, Source, in_owner_context},
    state::TcpState,
};

/// What the tracker adds to a transition.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Context {
    /// Time spent in the old state; `None` on the first transition seen for the socket.
    pub in_old: Option<Duration>,
    /// The socket's owner, when known; [`Owner::exited`] when its process has ended.
    pub owner: Option<Owner>,
}

#[derive(Debug)]
struct Memo {
    /// When the socket entered its current state; 0 when not known (first seen by accept).
    since_ns: u64,
    owner: Option<Owner>,
    source: Source,
    lport: Option<u16>,
    netns: u32,
}

/// Socket memory, capped at `capacity` sockets.
#[derive(Debug)]
pub struct Tracker {
    sockets: FxHashMap<Cookie, Memo>,
    owners: Owners,
    capacity: usize,
    /// Sockets not remembered because the tracker was full.
    pub overflow: u64,
}

impl Tracker {
    pub fn new(capacity: usize) -> Self {
        Self {
            sockets: FxHashMap::default(),
            owners: Owners::default(),
            capacity,
            overflow: 0,
        }
    }

    /// Number of sockets remembered.
    pub fn len(&self) -> usize {
        self.sockets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sockets.is_empty()
    }

    /// The owner rules' state, to seed from `/proc`.
    pub fn owners_mut(&mut self) -> &mut Owners {
        &mut self.owners
    }

    /// Records that a `/proc` scan found `owner` holding the socket `cookie`, which
    /// predates tracing; a socket's own facts, when they come, replace it.
    pub fn seed(&mut self, cookie: Cookie, netns: u32, port: u16, owner: Owner) {
        if self.sockets.len() >= self.capacity || self.sockets.contains_key(&cookie) {
            return;
        }
        self.sockets.insert(
            cookie,
            Memo {
                since_ns: 0,
                owner: Some(owner),
                source: Source::Own,
                lport: Some(port),
                netns,
            },
        );
    }

    /// A process accepted the socket: it owns it from now on.
    pub fn on_accept(&mut self, a: &AcceptEvent) {
        self.owners.on_accept(a);
        if let Some(memo) = self.sockets.get_mut(&a.cookie) {
            memo.owner = Some(a.owner.clone());
            memo.source = Source::Own;
        } else if self.sockets.len() < self.capacity {
            self.sockets.insert(
                a.cookie,
                Memo {
                    since_ns: 0,
                    owner: Some(a.owner.clone()),
                    source: Source::Own,
                    lport: Some(a.lport),
                    netns: a.netns,
                },
            );
        } else {
            self.overflow += 1;
        }
    }

    /// A process ended.
    pub fn on_exit(&mut self, e: &ExitEvent) {
        self.owners.on_exit(e.pid);
    }

    /// Applies a transition and returns what it adds. May fill in the local port of a record
    /// the kernel sent before the port was assigned.
    pub fn apply(&mut self, t: &mut Transition) -> Context {
        let born = t.old == TcpState::Close;
        let from_task = (in_owner_context(t.old, t.new) && t.task.pid != 0)
            .then(|| self.owners.of_task(&t.task, born));
        // One hash lookup per event: this runs for every record, at up to millions a second.
        let known = if t.new == TcpState::Close {
            self.sockets.remove(&t.cookie).map(|memo| {
                t.local.port = t.local.port.or(memo.lport);
                let in_old = known_since(memo.since_ns, t.ts_ns);
                (
                    in_old,
                    from_task.clone().or_else(|| {
                        self.owners
                            .standing(memo.owner, memo.source, memo.netns, t.local.port)
                    }),
                )
            })
        } else {
            let owners = &self.owners;
            self.sockets.get_mut(&t.cookie).map(|memo| {
                let in_old = known_since(memo.since_ns, t.ts_ns);
                t.local.port = t.local.port.or(memo.lport);
                // A state set again (FIN_WAIT1 -> FIN_WAIT1) does not restart its clock.
                if t.old != t.new || memo.since_ns == 0 {
                    memo.since_ns = t.ts_ns;
                }
                memo.lport = t.local.port;
                if let Some(owner) = &from_task {
                    memo.owner = Some(owner.clone());
                    memo.source = Source::Own;
                } else {
                    memo.owner =
                        owners.standing(memo.owner.take(), memo.source, memo.netns, memo.lport);
                }
                (in_old, memo.owner.clone())
            })
        };
        let (in_old, owner) = match known {
            Some((in_old, owner)) => (in_old, owner),
            None => {
                let accepted = (t.old, t.new) == (TcpState::Listen, TcpState::SynRecv);
                let owner = from_task.clone().or_else(|| {
                    accepted
                        .then(|| self.owners.listener_holder(t.netns, t.local.port).cloned())
                        .flatten()
                });
                if t.new != TcpState::Close {
                    if self.sockets.len() < self.capacity {
                        self.sockets.insert(
                            t.cookie,
                            Memo {
                                since_ns: t.ts_ns,
                                owner: owner.clone(),
                                source: if from_task.is_none() && accepted {
                                    Source::Listener
                                } else {
                                    Source::Own
                                },
                                lport: t.local.port,
                                netns: t.netns,
                            },
                        );
                    } else {
                        self.overflow += 1;
                    }
                }
                (None, owner)
            }
        };
        if matches!(t.new, TcpState::Listen) || t.old == TcpState::Listen {
            self.owners.observe_listener(t, owner.as_ref());
        }
        Context { in_old, owner }
    }
}

/// Time in the old state, when the socket's entry into it was seen.
fn known_since(since_ns: u64, now_ns: u64) -> Option<Duration> {
    (since_ns != 0).then(|| Duration::from_nanos(now_ns.saturating_sub(since_ns)))
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::event::{Endpoint, Family, Task};
    use TcpState::*;

    fn t(
        cookie: u64,
        ts_ns: u64,
        old: TcpState,
        new: TcpState,
        lport: u16,
        rport: u16,
        pid: u32,
    ) -> Transition {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Transition {
            ts_ns,
            cookie: Cookie(cookie),
            family: Family::Ipv4,
            local: Endpoint::new(lo, lport),
            remote: Endpoint::new(lo, rport),
            old,
            new,
            netns: 1,
            cgroup: 0,
            task: Task {
                pid,
                tid: pid,
                comm: format!("p{pid}").into(),
            },
            fin: None,
        }
    }

    #[test]
    fn client_owner_comes_from_connect_not_from_softirq() {
        let mut tr = Tracker::new(10);
        let c = tr.apply(&mut t(1, 100, Close, SynSent, 0, 80, 500));
        assert_eq!(c.in_old, None);
        assert_eq!(c.owner.as_ref().unwrap().pid, 500);
        // The SYN-ACK is processed in softirq while pid 9 happens to run.
        let mut est = t(1, 1_100, SynSent, Established, 40000, 80, 9);
        let c = tr.apply(&mut est);
        assert_eq!(c.owner.unwrap().pid, 500);
        assert_eq!(c.in_old, Some(Duration::from_nanos(1_000)));
    }

    #[test]
    fn accepted_socket_inherits_its_listeners_owner() {
        let mut tr = Tracker::new(10);
        tr.apply(&mut t(1, 0, Close, Listen, 80, 0, 700));
        let c = tr.apply(&mut t(2, 10, Listen, SynRecv, 80, 40000, 9));
        assert_eq!(c.owner.unwrap().pid, 700);
        assert_eq!(c.in_old, None);
        let c = tr.apply(&mut t(2, 20, SynRecv, Established, 80, 40000, 9));
        assert_eq!(c.owner.unwrap().pid, 700);
    }

    #[test]
    fn port_learned_later_is_kept_and_close_forgets_the_socket() {
        let mut tr = Tracker::new(10);
        tr.apply(&mut t(1, 0, Close, SynSent, 0, 80, 5));
        tr.apply(&mut t(1, 1, SynSent, Established, 40000, 80, 5));
        assert_eq!(tr.len(), 1);
        tr.apply(&mut t(1, 2, Established, Close, 40000, 80, 5));
        assert_eq!(tr.len(), 0);
    }

    #[test]
    fn a_full_tracker_counts_what_it_cannot_remember() {
        let mut tr = Tracker::new(1);
        tr.apply(&mut t(1, 0, Close, SynSent, 0, 80, 5));
        tr.apply(&mut t(2, 0, Close, SynSent, 0, 80, 5));
        assert_eq!(tr.overflow, 1);
        assert_eq!(tr.len(), 1);
    }
}
