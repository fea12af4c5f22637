//! The one live-table loop's steps, shared by `enetstat -c` and the daemon's engine: seed the
//! table from a sock_diag dump once tracing is on, feed every record through the
//! [`Pipeline`] into it, reconcile it against a fresh dump now and then, forget closed
//! connections past their window. What a front end does with each step beyond the table
//! (the daemon fans it out, `-c` nothing) comes in through [`OnStep`]; when to refresh or
//! reconcile stays the front end's own policy.

use std::time::Duration;

use serde::Serialize;

use crate::{
    clock::monotonic_ns,
    mem,
    pipeline::{Pipeline, Step},
    probe::KernelCounters,
    sockdiag::{self, DiagSocket, Proto, SockDiagError},
    source::RecordSource,
    table::{Counters, Limits, Table},
};

/// What a live table's dumps ask the kernel for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dump {
    /// Every TCP and UDP socket, in every state: what `-c` and the daemon show.
    All,
    /// TCP sockets but those in TIME_WAIT, each with its byte counters: what `top` counts
    /// (see [`sockdiag::dump_connections_with_bytes`]).
    TcpConnectionsWithBytes,
}

impl Dump {
    /// The protocols a dump covers: a reconciliation judges only the table's sockets of these.
    fn protos(self) -> &'static [Proto] {
        match self {
            Dump::All => &[Proto::Tcp, Proto::Udp],
            Dump::TcpConnectionsWithBytes => &[Proto::Tcp],
        }
    }

    fn run(self, f: impl FnMut(DiagSocket)) -> Result<(), SockDiagError> {
        match self {
            Dump::All => sockdiag::dump_each(self.protos(), f),
            Dump::TcpConnectionsWithBytes => {
                sockdiag::dump_connections_with_bytes(self.protos(), f)
            }
        }
    }
}

/// What a front end does with each step, after the table has applied it.
pub trait OnStep {
    /// Before a batch of records is handled (the daemon reads the wall clock once a batch,
    /// not once a record).
    fn batch(&mut self) {}

    fn step(&mut self, step: &Step);
}

/// Nothing beyond the table (`-c`).
impl OnStep for () {
    fn step(&mut self, _: &Step) {}
}

/// Counters shown with each snapshot while tracing.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Status {
    #[serde(flatten)]
    pub table: Counters,
    /// Records lost because the kernel's ring buffer was full.
    pub lost: u64,
    /// Records that could not be decoded.
    pub undecodable: u64,
    pub live: usize,
    pub closed: usize,
}

/// The live table and the per-record path that keeps it.
pub struct Live {
    pub table: Table,
    /// Owners, time in state and lifecycles, kept once per socket.
    pub pipeline: Pipeline,
    dump: Dump,
}

impl Live {
    /// `max_sockets`: most sockets the pipeline follows for owners and durations. Dumps ask
    /// for every socket ([`Dump::All`]) unless [`Live::dumping`] says otherwise.
    pub fn new(limits: Limits, max_sockets: usize) -> Self {
        Self {
            table: Table::new(limits, crate::netns::own_netns()),
            pipeline: Pipeline::new(max_sockets),
            dump: Dump::All,
        }
    }

    /// Seeds and reconciles from `dump` instead.
    #[must_use]
    pub fn dumping(self, dump: Dump) -> Self {
        Self { dump, ..self }
    }

    /// Seeds the table straight from a dump (no list of every socket beside it). Tracing is
    /// on before, and what it saw is handled first, so nothing falls between the dump and
    /// the events. Callers trim memory once they have seeded what else they keep.
    pub fn seed(
        &mut self,
        stream: &mut impl RecordSource,
        on: &mut impl OnStep,
    ) -> Result<(), SockDiagError> {
        self.seed_seeing(stream, on, |_| {})
    }

    /// [`Live::seed`], showing `each` every socket of the dump as it goes into the table.
    pub fn seed_seeing(
        &mut self,
        stream: &mut impl RecordSource,
        on: &mut impl OnStep,
        mut each: impl FnMut(&DiagSocket),
    ) -> Result<(), SockDiagError> {
        self.catch_up(stream, on);
        let dump = self.dump;
        self.table.seed_with(monotonic_ns(), |sink| {
            dump.run(|d| {
                each(&d);
                sink(d);
            })
        })
    }

    /// Handles the records waiting (a bounded batch: the caller's loop comes back for more).
    pub fn drain(&mut self, stream: &mut impl RecordSource, on: &mut impl OnStep) -> usize {
        feed(stream, &mut self.pipeline, &mut self.table, on, false)
    }

    /// Handles every record waiting, however many: what a refresh or a dump must follow.
    pub fn catch_up(&mut self, stream: &mut impl RecordSource, on: &mut impl OnStep) -> usize {
        feed(stream, &mut self.pipeline, &mut self.table, on, true)
    }

    /// Corrects the table against a fresh dump, merged a chunk at a time; the records that
    /// come meanwhile are handled before each chunk, as everywhere else. Events cannot tell
    /// a socket's move to TIME_WAIT, nor a socket gone without a transition; the dump can.
    pub fn reconcile(
        &mut self,
        stream: &mut impl RecordSource,
        on: &mut impl OnStep,
    ) -> Result<(), SockDiagError> {
        self.reconcile_seeing(stream, on, |_| {})
    }

    /// [`Live::reconcile`], showing `each` every socket of the dump.
    pub fn reconcile_seeing(
        &mut self,
        stream: &mut impl RecordSource,
        on: &mut impl OnStep,
        mut each: impl FnMut(&DiagSocket),
    ) -> Result<(), SockDiagError> {
        let Self {
            table,
            pipeline,
            dump,
        } = self;
        let c = table.reconcile_with(
            monotonic_ns(),
            dump.protos(),
            |sink| {
                dump.run(|d| {
                    each(&d);
                    sink(d);
                })
            },
            |table| {
                feed(stream, pipeline, table, on, true);
            },
        )?;
        if c.total() > 0 {
            tracing::debug!(?c, "reconciliation corrected the table");
        }
        // A dump's transient memory goes back to the system.
        mem::trim();
        Ok(())
    }

    /// Forgets the connections that closed more than `keep` before `now_ns`.
    pub fn expire_closed(&mut self, now_ns: u64, keep: Duration) {
        let keep = u64::try_from(keep.as_nanos()).unwrap_or(u64::MAX);
        self.table.expire_closed(now_ns.saturating_sub(keep));
    }

    /// The counters a snapshot shows while tracing.
    pub fn status(&self, kernel: KernelCounters) -> Status {
        Status {
            table: self.table.counters(),
            lost: kernel.ringbuf_full,
            undecodable: self.pipeline.undecodable,
            live: self.table.len(),
            closed: self.table.history().len(),
        }
    }
}

/// Feeds the waiting records (a batch, or `all` of them) through the pipeline into `table`.
/// Takes the parts apart from `Live`: a reconciliation holds the table while it catches up.
fn feed(
    stream: &mut impl RecordSource,
    pipeline: &mut Pipeline,
    table: &mut Table,
    on: &mut impl OnStep,
    all: bool,
) -> usize {
    on.batch();
    let mut one = |bytes: &[u8]| {
        if let Some(step) = pipeline.feed(bytes, Some(table)) {
            on.step(step);
        }
    };
    if all {
        stream.drain_all(&mut one)
    } else {
        stream.drain(&mut one)
    }
}
