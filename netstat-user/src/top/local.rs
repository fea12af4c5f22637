//! `enetstat top` tracing in this process (root): the probe's records go through the tracker
//! (owners, time in the old state), the lifecycle book (how a connection ended, its bytes)
//! and the live table, as for `watch`, `life` and `-c`; what the filter keeps becomes facts
//! for the model. Nothing new runs per event in the kernel.

use std::time::Duration;

use super::{
    TopError,
    model::{Conn, Fact, Model, Socket, facts_of},
};
use crate::{
    clock::monotonic_ns,
    daemon::engine::EntrySubject,
    decode::decode_record,
    end::End,
    event::{Owner, Record, Transition},
    filter::{Filter, Observed},
    life::{Lifecycle, Lives},
    pids::SocketOwners,
    probe::{EventStream, Probe, ProbeOptions},
    snapshot::own_netns,
    sockdiag::{self, Proto},
    state::TcpState,
    table::{Limits, Table},
    tracker::{Context, Tracker},
};

/// How often sockets that predate tracing are matched to processes through `/proc`.
const OWNER_SCAN: Duration = Duration::from_secs(5);

/// Tracing in this process.
pub struct LocalFeed {
    // The stream goes before the probe that made it.
    stream: EventStream,
    probe: Probe,
    tracker: Tracker,
    lives: Lives,
    table: Table,
    owners: SocketOwners,
    filter: Filter,
    undecodable: u64,
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
            probe,
            tracker: Tracker::new(max_sockets),
            lives: Lives::new(max_sockets),
            table: Table::new(
                Limits {
                    max_sockets,
                    max_closed: 0,
                },
                own_netns(),
            ),
            owners: SocketOwners::new(),
            filter,
            undecodable: 0,
        };
        // Tracing is on before the seed, so nothing falls between the dump and the first event.
        feed.drain(&mut Model::new());
        feed.table.seed_with(monotonic_ns(), |sink| {
            sockdiag::dump_each(&[Proto::Tcp], sink)
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
                tracker: &mut self.tracker,
                lives: &mut self.lives,
                filter: &self.filter,
                undecodable: &mut self.undecodable,
            },
            &mut self.table,
        )
    }

    /// The live TCP sockets the filter keeps (but those in TIME_WAIT, which are not
    /// connections any more, and may be many), with their owners (from events, or from
    /// `/proc` for sockets that predate tracing).
    pub fn live(&mut self, model: &mut Model) -> Result<Vec<Socket>, TopError> {
        self.drain(model);
        // Every refresh: events cannot tell a socket's move to TIME_WAIT; the dump can.
        let (mut part, table) = self.parts();
        table.reconcile_with(
            monotonic_ns(),
            &[Proto::Tcp],
            |sink| sockdiag::dump_each(&[Proto::Tcp], sink),
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
        let sockets = self
            .table
            .live()
            .filter(|e| e.proto == Proto::Tcp && e.state != TcpState::TimeWait)
            .filter_map(|e| {
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
                self.filter.matches(&subject).then(|| Socket {
                    owner,
                    local: e.local,
                    remote: e.remote,
                    state: e.state,
                    age: e.age_ns(now).map(Duration::from_nanos),
                })
            })
            .collect();
        Ok(sockets)
    }

    pub fn set_filter(&mut self, filter: Filter) {
        self.filter = filter;
    }

    /// Records lost to a full ring so far, and records that could not be decoded.
    pub fn losses(&self) -> (u64, u64) {
        let lost = self.probe.counters().map_or(0, |c| c.lost());
        (lost, self.undecodable)
    }
}

/// The parts of the feed a reconciliation's catch-up drains with, apart from the table.
struct Drain<'a> {
    stream: &'a mut EventStream,
    tracker: &'a mut Tracker,
    lives: &'a mut Lives,
    filter: &'a Filter,
    undecodable: &'a mut u64,
}

impl Drain<'_> {
    fn run(&mut self, table: &mut Table, model: &mut Model) {
        let Self {
            stream,
            tracker,
            lives,
            filter,
            undecodable,
        } = self;
        stream.drain(|bytes| match decode_record(bytes) {
            Ok(Record::Reset(r)) => lives.on_reset(&r),
            Ok(Record::Transition(mut t)) => {
                let ctx = tracker.apply(&mut t);
                table.apply(&t);
                let end = lives.end_of(&t);
                let life = lives.on_transition(&t, ctx.owner.as_ref());
                apply(filter, model, &t, &ctx, end, life);
            }
            Err(e) => {
                **undecodable += 1;
                tracing::debug!("skipping a record: {e}");
            }
        });
    }
}

/// The facts of one transition the filter keeps: opens, latency, how it ended, and its bytes
/// when it finished a connection.
fn apply(
    filter: &Filter,
    model: &mut Model,
    t: &Transition,
    ctx: &Context,
    end: Option<End>,
    life: Option<Lifecycle>,
) {
    let observed = Observed {
        transition: t,
        owner: ctx.owner.as_ref(),
    };
    if !filter.matches(&observed) {
        return;
    }
    let conn = Conn {
        owner: ctx.owner.as_ref(),
        local: t.local,
        remote: t.remote,
    };
    for fact in facts_of(t.old, t.new, ctx.in_old, end) {
        model.record(&conn, fact);
    }
    if let Some(l) = life.filter(|l| l.counters) {
        model.record(
            &conn,
            Fact::Bytes {
                sent: l.bytes_sent,
                received: l.bytes_received,
            },
        );
    }
}
