//! Comparing the table with a fresh socket dump, and counting what the dump corrected.
//!
//! A dump takes time, and transitions keep coming while it runs. A socket whose last
//! transition is at least as new as the dump's start is left as the transitions say; for
//! every other socket the dump is the truth.

use std::collections::HashSet;

use serde::Serialize;

use super::{Entry, Table};
use crate::{
    event::Cookie,
    sockdiag::{DiagSocket, Proto},
    state::TcpState,
};

/// What dumps corrected in the table. Changes events cannot announce (UDP sockets, timewait
/// sockets expiring, request sockets) are not corrections.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Corrections {
    /// TCP sockets the dump showed that no transition had announced.
    pub added: u64,
    /// TCP sockets the table held that the dump no longer showed (a missed close).
    pub removed: u64,
    /// TCP sockets whose state the dump corrected.
    pub state: u64,
}

impl Corrections {
    pub fn total(&self) -> u64 {
        self.added + self.removed + self.state
    }
}

impl std::ops::AddAssign for Corrections {
    fn add_assign(&mut self, o: Self) {
        self.added += o.added;
        self.removed += o.removed;
        self.state += o.state;
    }
}

/// Request sockets (SYN_RECV without a file) come and go without transitions.
fn ends_silently(d: &DiagSocket) -> bool {
    d.proto == Proto::Udp
        || d.state == TcpState::TimeWait
        || (d.inode == 0 && matches!(d.state, TcpState::SynRecv | TcpState::FinWait2))
}

impl Table {
    /// Seeds the table from the first dump (started at `started_ns`); nothing is counted.
    pub fn seed(&mut self, dump: &[DiagSocket], started_ns: u64) {
        self.merge(dump, started_ns, &[Proto::Tcp, Proto::Udp]);
        self.seeded = true;
    }

    /// Compares the table with a dump of `protos` that started at `started_ns`, takes the
    /// dump's word where transitions are not newer, and returns (and counts) the corrections.
    pub fn reconcile(
        &mut self,
        dump: &[DiagSocket],
        started_ns: u64,
        protos: &[Proto],
    ) -> Corrections {
        let c = self.merge(dump, started_ns, protos);
        if self.seeded {
            self.counters.reconciliations += 1;
            self.counters.corrections += c;
            c
        } else {
            self.seeded = true;
            Corrections::default()
        }
    }

    fn merge(&mut self, dump: &[DiagSocket], started_ns: u64, protos: &[Proto]) -> Corrections {
        let mut c = Corrections::default();
        // Closed by a transition after the dump started: the dump's copy is older news.
        let closed_since: HashSet<Cookie> = self
            .history
            .since(started_ns)
            .map(|h| h.entry.cookie)
            .collect();
        let mut seen = HashSet::with_capacity(dump.len());
        for d in dump {
            seen.insert(d.cookie);
            if let Some(e) = self.live.get_mut(&d.cookie) {
                e.recv_q = d.recv_q;
                e.send_q = d.send_q;
                e.uid = Some(d.uid);
                e.inode = d.inode;
                e.family = d.family;
                e.local = d.local;
                e.remote = d.remote;
                if e.last_event_ns >= started_ns {
                    continue;
                }
                if e.state != d.state {
                    // A timewait socket seeing the peer's FIN has no transition either.
                    let silent = e.ends_silently
                        && (e.state, d.state) == (TcpState::FinWait2, TcpState::TimeWait);
                    if d.proto == Proto::Tcp && !silent {
                        c.state += 1;
                    }
                    e.state = d.state;
                    e.since_ns = None;
                }
                e.dumped_ns = started_ns;
                e.ends_silently = ends_silently(d);
                continue;
            }
            if closed_since.contains(&d.cookie) {
                continue;
            }
            if self.live.len() >= self.limits.max_sockets {
                self.counters.socket_overflow += 1;
                continue;
            }
            if d.proto == Proto::Tcp && !ends_silently(d) {
                c.added += 1;
            }
            self.live.insert(d.cookie, from_dump(d, started_ns));
        }
        self.live.retain(|cookie, e| {
            if seen.contains(cookie) || !protos.contains(&e.proto) || e.last_event_ns >= started_ns
            {
                return true;
            }
            if e.proto == Proto::Tcp && !e.ends_silently {
                c.removed += 1;
            }
            false
        });
        c
    }
}

fn from_dump(d: &DiagSocket, started_ns: u64) -> Entry {
    Entry {
        cookie: d.cookie,
        proto: d.proto,
        family: d.family,
        local: d.local,
        remote: d.remote,
        state: d.state,
        recv_q: d.recv_q,
        send_q: d.send_q,
        uid: Some(d.uid),
        inode: d.inode,
        since_ns: None,
        opened_ns: None,
        owner: None,
        last_event_ns: 0,
        dumped_ns: started_ns,
        ends_silently: ends_silently(d),
    }
}
