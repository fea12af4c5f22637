//! `enetstat top` tracing in this process (root): the probe's records go through the one
//! [`Pipeline`] (owners, time in the old state, the live table, how a connection ended and
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
    netns::own_netns,
    pids::SocketOwners,
    pipeline::{self, Pipeline, SeedOwners as _, Step},
    probe::{EventStream, Probe, ProbeOptions},
    sockdiag::{self, Proto, TcpBytes},
    state::TcpState,
    table::{Limits, Table},
};

/// How often sockets that predate tracing are matched to processes through `/proc`.
const OWNER_SCAN: Duration = Duration::from_secs(5);

/// Tracing in this process.
pub struct LocalFeed {
    // The stream goes before the probe that made it.
    stream: EventStream,
    probe: Probe,
    pipeline: Pipeline,
    table: Table,
    owners: SocketOwners,
    filter: Filter,
    containers: Containers,
    bytes: LiveBytes,
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
        let mut feed = Self {
            stream,
            pipeline: Pipeline::new(max_sockets),
            probe,
            table: Table::new(
                Limits {
                    max_sockets,
                    max_closed: 0,
                },
                own_netns(),
            ),
            owners: SocketOwners::new(),
            filter,
            containers: Containers::new(cgroup::Paths::new()),
            bytes: LiveBytes::new(),
        };
        let netns = pipeline::records_netns(feed.probe.mode());
        if let Err(e) = feed.pipeline.seed_owners(netns) {
            tracing::warn!("{e}; sockets that predate tracing show no owner until they act");
        }
        // Tracing is on before the seed, so nothing falls between the dump and the first event.
        feed.drain(&mut Model::new());
        let bytes = &mut feed.bytes;
        feed.table.seed_with(monotonic_ns(), |sink| {
            sockdiag::dump_connections_with_bytes(&[Proto::Tcp], |d| {
                if let Some(b) = d.bytes {
                    bytes.baseline(d.cookie, b);
                }
                sink(d);
            })
        })?;
        Ok(feed)
    }

    /// Waits for records and turns them into facts.
    pub async fn next(&mut self, model: &mut Model) -> Result<(), TopError> {
        self.stream.ready().await?;
        self.drain(model);
        Ok(())
    }

    fn drain(&mut self, model: &mut Model) {
        let (mut part, table) = self.parts();
        part.run(table, model);
    }

    /// The table, and the rest that a drain needs (a reconciliation drains into the table it
    /// holds).
    fn parts(&mut self) -> (Drain<'_>, &mut Table) {
        (
            Drain {
                stream: &mut self.stream,
                pipeline: &mut self.pipeline,
                filter: &self.filter,
                containers: &mut self.containers,
                bytes: &mut self.bytes,
            },
            &mut self.table,
        )
    }

    /// The live TCP sockets the filter keeps (but those in TIME_WAIT, which are not
    /// connections any more, and may be many), with their owners (from events, or from
    /// `/proc` for sockets that predate tracing); the bytes they moved since the last
    /// refresh go to the model.
    pub fn live(&mut self, model: &mut Model) -> Result<Vec<Socket>, TopError> {
        self.drain(model);
        // Every refresh: events cannot tell a socket's move to TIME_WAIT; the dump can.
        let mut sampled: FxHashMap<Cookie, TcpBytes> = FxHashMap::default();
        let (mut part, table) = self.parts();
        table.reconcile_with(
            monotonic_ns(),
            &[Proto::Tcp],
            |sink| {
                sockdiag::dump_connections_with_bytes(&[Proto::Tcp], |d| {
                    if let Some(b) = d.bytes {
                        sampled.insert(d.cookie, b);
                    }
                    sink(d);
                })
            },
            |table| part.run(table, model),
        )?;
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
        let netns = self.table.netns();
        let mut sockets = Vec::new();
        let live = self
            .table
            .live()
            .filter(|e| e.proto == Proto::Tcp && e.state != TcpState::TimeWait);
        for e in live {
            // Every socket's sample is taken up, kept or not, so a new filter starts right.
            let moved = sampled
                .get(&e.cookie)
                .map(|&b| self.bytes.moved(e.cookie, b));
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
            if !self.filter.matches(&subject) {
                continue;
            }
            let container = self.containers.shared(e.cgroup());
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
        self.bytes.end_refresh();
        Ok(sockets)
    }

    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = filter;
    }

    /// Records lost to a full ring so far, and records that could not be decoded.
    pub fn losses(&self) -> (u64, u64) {
        let lost = self.probe.counters().map_or(0, |c| c.lost());
        (lost, self.pipeline.undecodable)
    }
}

/// The parts of the feed a reconciliation's catch-up drains with, apart from the table.
struct Drain<'a> {
    stream: &'a mut EventStream,
    pipeline: &'a mut Pipeline,
    filter: &'a Filter,
    containers: &'a mut Containers,
    bytes: &'a mut LiveBytes,
}

impl Drain<'_> {
    fn run(&mut self, table: &mut Table, model: &mut Model) {
        let Self {
            stream,
            pipeline,
            filter,
            containers,
            bytes,
        } = self;
        stream.drain(|raw| {
            if let Some(step) = pipeline.feed(raw, Some(table)) {
                apply(filter, containers, bytes, model, step);
            }
        });
    }
}

/// The facts of one transition the filter keeps: opens, latency, how it ended, and, when it
/// finished a connection, the bytes it moved since a refresh last counted them.
fn apply(
    filter: &Filter,
    containers: &mut Containers,
    bytes: &mut LiveBytes,
    model: &mut Model,
    step: Step,
) {
    let t = &step.transition;
    // Taken off whether the filter keeps it or not: the socket is gone either way.
    let left = step.life.as_ref().filter(|l| l.counters).map(|l| {
        let total = TcpBytes {
            sent: l.bytes_sent,
            received: l.bytes_received,
        };
        bytes.closed(l.cookie, total)
    });
    let observed = Observed {
        transition: t,
        owner: step.owner.as_ref(),
    };
    if !filter.matches(&observed) {
        return;
    }
    let conn = Conn {
        owner: step.owner.as_ref(),
        local: t.local,
        remote: t.remote,
        container: containers.of(t.cgroup),
    };
    for fact in facts_of(t.old, t.new, step.in_old, step.end) {
        model.record(&conn, fact);
    }
    if let Some(b) = left {
        model.record(&conn, Fact::from(b));
    }
}
