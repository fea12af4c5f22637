//! Comparing the table with a fresh socket dump, and counting what the dump corrected.
//!
//! A dump takes time, and transitions keep coming while it runs. A socket whose last
//! transition is at least as new as the dump's start is left as the transitions say; for
//! every other socket the dump is the truth.

use std::collections::HashSet;

use serde::Serialize;

use super::{Entry, Table};
use crate::{
    diag::{DiagSocket, Proto},
    event::Cookie,
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
    /// Seeds the table from the first dump (started at `started_ns`); nothing is counted. The
    /// engine seeds from a dump as it is read ([`seed_with`](Self::seed_with)); a list of
    /// sockets is for tests.
    #[cfg(test)]
    pub fn seed(&mut self, dump: &[DiagSocket], started_ns: u64) {
        self.merge(dump.iter().cloned(), started_ns, &[Proto::Tcp, Proto::Udp]);
        self.seeded = true;
    }

    /// Seeds the table from the first dump (started at `started_ns`), nothing counted, merging
    /// the dump as it is read: `dump` hands every socket to the sink it is given (see
    /// netstat-user's `sockdiag::dump_each`), and no list of the whole dump is kept. Only for
    /// a dump nothing else changes the table during.
    pub fn seed_with<E>(
        &mut self,
        started_ns: u64,
        dump: impl FnOnce(&mut dyn FnMut(DiagSocket)) -> Result<(), E>,
    ) -> Result<(), E> {
        let closed_since = self.closed_since(started_ns);
        let mut c = Corrections::default();
        self.index_stand_ins();
        dump(&mut |d| self.merge_one(&d, started_ns, &closed_since, &mut c))?;
        self.sweep(started_ns, &[Proto::Tcp, Proto::Udp], &mut c);
        self.seeded = true;
        Ok(())
    }

    /// Compares the table with a dump of `protos` that started at `started_ns`, takes the
    /// dump's word where transitions are not newer, and returns (and counts) the corrections.
    pub fn reconcile(
        &mut self,
        dump: &[DiagSocket],
        started_ns: u64,
        protos: &[Proto],
    ) -> Corrections {
        let c = self.merge(dump.iter().cloned(), started_ns, protos);
        self.count(c)
    }

    /// [`reconcile`](Self::reconcile) with a dump read as it is merged, a chunk at a time,
    /// so no list of the whole dump is kept (a dump of 200,000 sockets is 16 MB). `dump`
    /// hands every socket to the sink it is given (netstat-user's `sockdiag::dump_each`);
    /// `catch_up` applies the transitions that came meanwhile (drains the ring) and runs
    /// before each chunk is merged, so every socket is merged after every transition that
    /// preceded its line of the dump, as when the whole dump is read before the table
    /// catches up.
    pub fn reconcile_with<E>(
        &mut self,
        started_ns: u64,
        protos: &[Proto],
        dump: impl FnOnce(&mut dyn FnMut(DiagSocket)) -> Result<(), E>,
        mut catch_up: impl FnMut(&mut Table),
    ) -> Result<Corrections, E> {
        const CHUNK: usize = 4096;
        let mut c = Corrections::default();
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut merge_chunk =
            |table: &mut Table, chunk: &mut Vec<DiagSocket>, c: &mut Corrections| {
                catch_up(table);
                table.index_stand_ins();
                let closed_since = table.closed_since(started_ns);
                for d in chunk.drain(..) {
                    table.merge_one(&d, started_ns, &closed_since, c);
                }
            };
        dump(&mut |d| {
            chunk.push(d);
            if chunk.len() == CHUNK {
                merge_chunk(self, &mut chunk, &mut c);
            }
        })?;
        merge_chunk(self, &mut chunk, &mut c);
        self.sweep(started_ns, protos, &mut c);
        Ok(self.count(c))
    }

    fn count(&mut self, c: Corrections) -> Corrections {
        if self.seeded {
            self.counters.reconciliations += 1;
            self.counters.corrections += c;
            c
        } else {
            self.seeded = true;
            Corrections::default()
        }
    }

    /// Indexes the live sockets known by stand-in ids by their addresses, for a dump merge.
    fn index_stand_ins(&mut self) {
        if !self.has_stand_ins {
            return;
        }
        self.stand_ins = self
            .live
            .iter()
            .filter(|e| e.cookie.known().is_none())
            .map(|e| ((e.proto, e.local, e.remote), e.cookie))
            .collect();
    }

    /// Closed by a transition after the dump started: the dump's copy is older news.
    fn closed_since(&self, started_ns: u64) -> HashSet<Cookie> {
        self.history
            .since(started_ns)
            .map(|h| h.entry.cookie)
            .collect()
    }

    fn merge(
        &mut self,
        dump: impl Iterator<Item = DiagSocket>,
        started_ns: u64,
        protos: &[Proto],
    ) -> Corrections {
        let mut c = Corrections::default();
        let closed_since = self.closed_since(started_ns);
        self.index_stand_ins();
        for d in dump {
            self.merge_one(&d, started_ns, &closed_since, &mut c);
        }
        self.sweep(started_ns, protos, &mut c);
        c
    }

    /// One socket of a dump. Every entry the dump showed ends with `dumped_ns == started_ns`
    /// or a transition at least as new as the dump: that is how [`sweep`](Self::sweep) tells
    /// what the dump did not show.
    fn merge_one(
        &mut self,
        d: &DiagSocket,
        started_ns: u64,
        closed_since: &HashSet<Cookie>,
        c: &mut Corrections,
    ) {
        // A socket the transitions knew without a cookie (see `identity`) is the one with
        // its addresses; it keeps its stand-in id, which its transitions carry.
        let stand_in = self.stand_ins.get(&(d.proto, d.local, d.remote)).copied();
        let key = match stand_in {
            Some(id) if self.get(d.cookie).is_none() => id,
            _ => d.cookie,
        };
        if let Some(e) = self.get_mut(key) {
            e.recv_q = d.recv_q;
            e.send_q = d.send_q;
            e.uid = d.uid;
            e.inode = inode32(d.inode);
            if d.cgroup != 0 {
                e.cgroup = d.cgroup;
            }
            e.family = d.family;
            e.local = d.local;
            e.remote = d.remote;
            if e.last_event_ns >= started_ns {
                return;
            }
            if e.state != d.state {
                // A timewait socket seeing the peer's FIN has no transition either.
                let silent = e.ends_silently
                    && (e.state, d.state) == (TcpState::FinWait2, TcpState::TimeWait);
                if d.proto == Proto::Tcp && !silent {
                    c.state += 1;
                }
                e.state = d.state;
                e.since_ns = 0;
            }
            e.dumped_ns = started_ns;
            e.ends_silently = ends_silently(d);
            return;
        }
        if closed_since.contains(&d.cookie) {
            return;
        }
        if self.live.len() >= self.limits.max_sockets {
            self.counters.socket_overflow += 1;
            return;
        }
        if d.proto == Proto::Tcp && !ends_silently(d) {
            c.added += 1;
        }
        self.insert(from_dump(d, started_ns));
    }

    /// Drops the entries of `protos` the dump did not show, unless a transition since its
    /// start speaks for them.
    fn sweep(&mut self, started_ns: u64, protos: &[Proto], c: &mut Corrections) {
        self.retain(|e| {
            if e.dumped_ns == started_ns
                || !protos.contains(&e.proto)
                || e.last_event_ns >= started_ns
            {
                return true;
            }
            if e.proto == Proto::Tcp && !e.ends_silently {
                c.removed += 1;
            }
            false
        });
    }
}

/// The kernel's socket inodes are 32 bits (`inet_diag_msg.idiag_inode`).
fn inode32(inode: u64) -> u32 {
    u32::try_from(inode).unwrap_or(u32::MAX)
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
        uid: d.uid,
        inode: inode32(d.inode),
        cgroup: d.cgroup,
        since_ns: 0,
        opened_ns: 0,
        owner: None,
        last_event_ns: 0,
        dumped_ns: started_ns,
        ends_silently: ends_silently(d),
    }
}
