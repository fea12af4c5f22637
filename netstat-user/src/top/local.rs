//! `enetstat top` tracing in this process (root): the probe's records go through the one
//! [`Pipeline`](crate::pipeline::Pipeline) (owners, time in the old state, the live table, how a connection ended and
//! its bytes), as for `watch`, `life` and `-c`; what the filter keeps becomes facts for the
//! model. Nothing new runs per event in the kernel. Each refresh's socket dump also gives the
//! bytes live connections moved ([`LiveBytes`]), and cgroup ids name containers
//! ([`Containers`]).

use std::time::Duration;

use rustc_hash::FxHashMap;

use super::{
    TopError,
    containers::Containers,
    live_bytes::LiveBytes,
    model::{Conn, Fact, Model, Socket, facts_of},
};
use crate::{
    cgroup,
    clock::monotonic_ns,
    daemon::engine::EntrySubject,
    event::{Cookie, Owner},
    filter::{Filter, Observed},
    live::{Dump, Live, OnStep},
    pids::SocketOwners,
    pipeline::{self, SeedOwners as _, Step},
    probe::{EventStream, Probe, ProbeOptions},
    sockdiag::{Proto, TcpBytes},
    state::TcpState,
    table::Limits,
};

/// How often sockets that predate tracing are matched to processes through `/proc`.
const OWNER_SCAN: Duration = Duration::from_secs(5);

/// Tracing in this process.
pub struct LocalFeed {
    // The stream goes before the probe that made it.
    stream: EventStream,
    probe: Probe,
    /// The one live-table loop (`-c` and the daemon run it too), dumping TCP connections
    /// with their bytes.
    live: Live,
    owners: SocketOwners,
    facts: Facts,
}

/// What turns the pipeline's steps into the model's facts.
struct Facts {
    filter: Filter,
    containers: Containers,
    bytes: LiveBytes,
}

/// The live loop's hook while `model` takes facts.
struct ToModel<'a> {
    facts: &'a mut Facts,
    model: &'a mut Model,
}

impl OnStep for ToModel<'_> {
    fn step(&mut self, step: &Step) {
        self.facts.apply(self.model, step);
    }
}

impl LocalFeed {
    /// Loads and attaches the programs, then seeds the table from the kernel's socket dump.
    pub fn start(ring_size: u32, max_sockets: usize, filter: Filter) -> Result<Self, TopError> {
        // The filter can change while top runs, so the kernel keeps nothing out.
        let mut probe = Probe::start(ProbeOptions {
            ring_size,
            ..ProbeOptions::default()
        })?;
        let stream = probe.events()?;
        let limits = Limits {
            max_sockets,
            max_closed: 0,
        };
        let mut feed = Self {
            stream,
            probe,
            live: Live::new(limits, max_sockets).dumping(Dump::TcpConnectionsWithBytes),
            owners: SocketOwners::new(),
            facts: Facts {
                filter,
                containers: Containers::new(cgroup::Paths::new()),
                bytes: LiveBytes::new(),
            },
        };
        let netns = pipeline::records_netns(feed.probe.mode());
        if let Err(e) = feed.live.pipeline.seed_owners(netns) {
            tracing::warn!("{e}; sockets that predate tracing show no owner until they act");
        }
        let Self {
            stream,
            live,
            facts,
            ..
        } = &mut feed;
        let mut model = Model::new();
        let mut on = ToModel {
            facts,
            model: &mut model,
        };
        // The bytes each connection had moved before: only what it moves from now on counts.
        let mut baseline = Vec::new();
        live.seed_seeing(stream, &mut on, |d| {
            if let Some(b) = d.bytes {
                baseline.push((d.cookie, b));
            }
        })?;
        for (cookie, b) in baseline {
            feed.facts.bytes.baseline(cookie, b);
        }
        Ok(feed)
    }

    /// Waits for records and turns them into facts.
    pub async fn next(&mut self, model: &mut Model) -> Result<(), TopError> {
        self.stream.ready().await?;
        self.drain(model);
        Ok(())
    }

    fn drain(&mut self, model: &mut Model) {
        let mut on = ToModel {
            facts: &mut self.facts,
            model,
        };
        self.live.drain(&mut self.stream, &mut on);
    }

    /// The live TCP sockets the filter keeps (but those in TIME_WAIT, which are not
    /// connections any more, and may be many), with their owners (from events, or from
    /// `/proc` for sockets that predate tracing); the bytes they moved since the last
    /// refresh go to the model.
    pub fn live(&mut self, model: &mut Model) -> Result<Vec<Socket>, TopError> {
        self.drain(model);
        // Every refresh: events cannot tell a socket's move to TIME_WAIT; the dump can.
        let mut sampled: FxHashMap<Cookie, TcpBytes> = FxHashMap::default();
        let mut on = ToModel {
            facts: &mut self.facts,
            model,
        };
        self.live.reconcile_seeing(&mut self.stream, &mut on, |d| {
            if let Some(b) = d.bytes {
                sampled.insert(d.cookie, b);
            }
        })?;
        // A /proc scan reads every process's descriptors: at most every few seconds. Sockets
        // made since tracing began have their owners from events anyway.
        if self
            .owners
            .scanned_at()
            .is_none_or(|at| at.elapsed() >= OWNER_SCAN)
        {
            self.owners.refresh();
        }
        let now = monotonic_ns();
        let table = &self.live.table;
        let netns = table.netns();
        let Facts {
            filter,
            containers,
            bytes,
        } = &mut self.facts;
        let mut sockets = Vec::new();
        let live = table
            .live()
            .filter(|e| e.proto == Proto::Tcp && e.state != TcpState::TimeWait);
        for e in live {
            // Every socket's sample is taken up, kept or not, so a new filter starts right.
            let moved = sampled.get(&e.cookie).map(|&b| bytes.moved(e.cookie, b));
            let owner: Option<Owner> = e
                .owner
                .as_deref()
                .or_else(|| self.owners.get(e.inode()))
                .cloned();
            let subject = EntrySubject {
                entry: e,
                owners: owner.iter().cloned().collect(),
                netns,
            };
            if !filter.matches(&subject) {
                continue;
            }
            let container = containers.shared(e.cgroup());
            if let Some(b) = moved.filter(|b| b.sent + b.received > 0) {
                let conn = Conn {
                    owner: owner.as_ref(),
                    local: e.local,
                    remote: e.remote,
                    container: container.as_deref(),
                };
                model.record(&conn, Fact::from(b));
            }
            sockets.push(Socket {
                owner,
                local: e.local,
                remote: e.remote,
                state: e.state,
                age: e.age_ns(now).map(Duration::from_nanos),
                container,
            });
        }
        bytes.end_refresh();
        Ok(sockets)
    }

    pub fn set_filter(&mut self, filter: Filter) {
        self.facts.filter = filter;
    }

    /// Records lost to a full ring so far, and records that could not be decoded.
    pub fn losses(&self) -> (u64, u64) {
        let lost = self.probe.counters().map_or(0, |c| c.lost());
        (lost, self.live.pipeline.undecodable)
    }
}

/// The facts of one transition the filter keeps: opens, latency, how it ended, and, when it
/// finished a connection, the bytes it moved since a refresh last counted them.
impl Facts {
    fn apply(&mut self, model: &mut Model, step: &Step) {
        let Self {
            filter,
            containers,
            bytes,
        } = self;
        let Step {
            transition: t,
            context: cx,
        } = step;
        // Taken off whether the filter keeps it or not: the socket is gone either way.
        let left = cx.life.as_ref().filter(|l| l.counters).map(|l| {
            let total = TcpBytes {
                sent: l.bytes_sent,
                received: l.bytes_received,
            };
            bytes.closed(l.cookie, total)
        });
        let observed = Observed {
            transition: t,
            owner: cx.owner.as_ref(),
        };
        if !filter.matches(&observed) {
            return;
        }
        let conn = Conn {
            owner: cx.owner.as_ref(),
            local: t.local,
            remote: t.remote,
            container: containers.of(t.cgroup),
        };
        for fact in facts_of(t.old, t.new, cx.in_old, cx.end) {
            model.record(&conn, fact);
        }
        if let Some(b) = left {
            model.record(&conn, Fact::from(b));
        }
    }
}
