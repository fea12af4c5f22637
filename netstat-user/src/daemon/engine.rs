//! The daemon's engine: one task that owns the probe's stream, the live table, the tracker and
//! the lifecycle book, and answers commands from client tasks over a channel. Nothing else
//! touches that state, so there are no locks; the engine never waits on a client (every queue
//! to a subscriber is bounded and filled with `try_send`).

use std::{
    pin::pin,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use serde::Serialize;
use tokio::sync::{mpsc, oneshot};

use crate::{
    cgroup,
    clock::{WallClock, monotonic_ns},
    event::{Cookie, Endpoint, Family, Owner},
    filter::{Filter, Observed, Subject},
    life::Lifecycle,
    live::Status,
    live::{Live, OnStep},
    mem,
    pids::SocketOwners,
    pipeline::{self, Context, SeedOwners as _, Step},
    probe::{KernelCounters, Mode, ProbeError},
    render::snapshot::Row,
    snapshot::{self, SnapshotOptions},
    sockdiag::SockDiagError,
    source::RecordSource,
    state::TcpState,
    table::{Entry, Limits},
};

use super::{
    event::Event,
    event_log::EventLog,
    limits::{GuardStats, Guards},
    metrics::Metrics,
    protocol::Stream,
};

/// A subscriber's end of the fan-out.
pub struct Subscription {
    pub stream: Stream,
    pub filter: Filter,
    pub queue: mpsc::Sender<Arc<Event>>,
    /// Events that did not fit in `queue`; the client task cuts the client off when non-zero.
    pub dropped: Arc<AtomicU64>,
    /// What one evaluation of `filter` may cost ([`Filter::cost`]).
    pub cost: u64,
    /// Set, with the reason, when the engine cut the subscriber off for taking more than its
    /// share of the filter budget; the client task tells the client.
    pub cut: Arc<std::sync::OnceLock<String>>,
    /// Work charged since the last check.
    pub work: u64,
}

/// A subscription, and the signal that it is in place: every event after that reaches it.
pub struct Subscribe {
    pub subscription: Subscription,
    pub registered: oneshot::Sender<()>,
}

/// What a client task asks of the engine.
pub enum Command {
    Subscribe(Subscribe),
    /// The rows of a snapshot; `owners` comes from a `/proc` scan the client task made.
    Snapshot {
        opts: Box<SnapshotOptions>,
        owners: SocketOwners,
        reply: oneshot::Sender<(Vec<Row>, Status)>,
    },
    Stats {
        reply: oneshot::Sender<Stats>,
    },
}

/// The engine's counters, as `{"op":"stats"}` returns them.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub pid: u32,
    /// How the kernel programs trace on this kernel (see [`crate::probe::Mode`]).
    pub mode: Option<Mode>,
    pub uptime_s: f64,
    /// Records received from the kernel.
    pub received: u64,
    pub undecodable: u64,
    /// Kernel: transitions seen, left out by the kernel-side filter, lost to a full ring, lost
    /// to recursion; socket reads that failed (records sent with zeroes there).
    pub kernel_seen: u64,
    pub kernel_filtered: u64,
    pub kernel_ringbuf_full: u64,
    pub kernel_recursion_misses: u64,
    pub kernel_read_errors: u64,
    #[serde(flatten)]
    pub table: crate::table::Counters,
    pub live: usize,
    pub closed: usize,
    pub subscribers: usize,
    /// Events dropped because a subscriber's queue was full (over all subscribers).
    pub subscriber_drops: u64,
    /// Sockets the socket memory (`--max-sockets`) could not follow because it was full,
    /// each counted once.
    pub untracked: u64,
    /// `--event-log`: events written, dropped (the writer fell behind), file rotations.
    pub event_log_written: u64,
    pub event_log_dropped: u64,
    pub event_log_rotations: u64,
    /// Reconciliations (socket dumps) that failed; each is retried at the next tick.
    pub reconcile_failures: u64,
    /// Connections, subscribers and filters: open, allowed, refused (see `--max-clients`).
    #[serde(flatten)]
    pub guards: GuardStats,
}

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    pub limits: Limits,
    pub max_sockets: usize,
    /// Compare the table with a socket dump this often.
    pub reconcile: Duration,
    /// Keep closed connections this long (for `--recent`).
    pub keep_closed: Duration,
    /// How the kernel programs trace, once they are attached.
    pub mode: Option<Mode>,
    /// Filter work per second (in [`Filter::cost`] units) all subscribers share; each may do
    /// its share (this divided among them), checked at every `reconcile` tick.
    pub filter_budget: u64,
}

/// Default filter work per second: about a core at a few nanoseconds a unit, so 64
/// subscribers with filters of 25 conditions keep up with 280,000 events a second.
pub const DEFAULT_FILTER_BUDGET: u64 = 500_000_000;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Probe(#[from] ProbeError),
    #[error(transparent)]
    SockDiag(#[from] SockDiagError),
}

/// The engine's state: the table, and the flow of events around it.
pub struct Engine {
    opts: EngineOptions,
    /// The table and the pipeline that keeps it, as `-c` keeps them.
    live: Live,
    flow: Flow,
    started: std::time::Instant,
    metrics: Option<Arc<Metrics>>,
    guards: Arc<Guards>,
    reconcile_failures: u64,
    /// The kernel's counters as last read (kept when a read fails).
    kernel: KernelCounters,
}

/// Where each step goes beyond the table (metrics, subscribers, the event log): kept apart
/// from it, so the table can be reconciled against a dump streamed into it while events keep
/// flowing.
struct Flow {
    clock: WallClock,
    /// cgroup ids to paths and containers, for the events handed out.
    cgroups: cgroup::Paths,
    subscribers: Vec<Subscription>,
    subscriber_drops: u64,
    metrics: Option<Arc<Metrics>>,
    event_log: Option<EventLog>,
}

/// A dump costs in proportion to the host's sockets, and under churn those are mostly
/// TIME_WAIT (tens of thousands): reconciling every second then took a third of the daemon's
/// CPU. So the next dump waits at least this many times as long as the last one took, which
/// keeps reconciliation under 2% of a core, and `--reconcile` is the shortest interval.
const RECONCILE_COST_FACTOR: u32 = 50;

/// How long after a reconciliation that took `took` the next may begin (beyond `--reconcile`).
fn reconcile_pause(took: Duration) -> Duration {
    took * RECONCILE_COST_FACTOR
}

impl Engine {
    pub fn new(
        opts: EngineOptions,
        metrics: Option<Arc<Metrics>>,
        event_log: Option<EventLog>,
        guards: Arc<Guards>,
    ) -> Self {
        Self {
            live: Live::new(opts.limits, opts.max_sockets),
            flow: Flow {
                clock: WallClock::new(),
                cgroups: cgroup::Paths::new(),
                subscribers: Vec::new(),
                subscriber_drops: 0,
                metrics: metrics.clone(),
                event_log,
            },
            started: std::time::Instant::now(),
            metrics,
            guards,
            reconcile_failures: 0,
            kernel: KernelCounters::default(),
            opts,
        }
    }

    /// Keeps the table live from `stream` and serves `commands` until `stop` resolves.
    pub async fn run(
        mut self,
        stream: &mut impl RecordSource,
        mut commands: mpsc::Receiver<Command>,
        stop: impl std::future::Future<Output = ()>,
        counters: impl Fn() -> Result<KernelCounters, ProbeError>,
        ready: impl FnOnce(),
    ) -> Result<(), EngineError> {
        let mut stop = pin!(stop);
        self.live.seed(stream, &mut self.flow)?;
        if let Some(mode) = self.opts.mode {
            match self
                .live
                .pipeline
                .seed_owners(pipeline::records_netns(mode))
            {
                Ok(n) => tracing::debug!("{n} sockets that predate tracing got owners from /proc"),
                Err(e) => tracing::warn!("{e}; sockets that predate tracing show no owner"),
            }
        }
        mem::trim();
        self.observe(&counters);
        ready();
        let mut tick = tokio::time::interval(self.opts.reconcile);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut next_reconcile = std::time::Instant::now();
        loop {
            tokio::select! {
                biased;
                () = &mut stop => break,
                r = stream.ready() => {
                    r?;
                    self.drain(stream);
                }
                Some(cmd) = commands.recv() => {
                    self.drain(stream);
                    self.command(cmd, &counters);
                }
                _ = tick.tick() => {
                    self.drain(stream);
                    self.flow.police(self.opts.filter_budget, self.opts.reconcile);
                    // Every tick, not with the reconciliation, which a costly dump delays:
                    // --keep-closed holds whatever the dumps cost.
                    self.live
                        .expire_closed(monotonic_ns(), self.opts.keep_closed);
                    if std::time::Instant::now() < next_reconcile {
                        self.observe(&counters);
                        continue;
                    }
                    let began = std::time::Instant::now();
                    // A failed dump (out of file descriptors, a kernel hiccup) is counted and
                    // tried again at the next tick; the events keep the table live meanwhile.
                    let reconciled = self.live.reconcile(stream, &mut self.flow);
                    next_reconcile = began + reconcile_pause(began.elapsed());
                    if let Err(e) = reconciled {
                        self.reconcile_failures += 1;
                        if let Some(m) = &self.metrics {
                            m.reconcile_failed();
                        }
                        tracing::warn!(
                            "reconciliation failed (retrying in {:?}): {e}",
                            self.opts.reconcile
                        );
                    }
                    self.observe(&counters);
                }
            }
        }
        Ok(())
    }

    /// The kernel's counters, or the last ones read when reading fails.
    fn kernel_counters(
        &mut self,
        counters: &impl Fn() -> Result<KernelCounters, ProbeError>,
    ) -> KernelCounters {
        match counters() {
            Ok(k) => self.kernel = k,
            Err(e) => tracing::warn!("cannot read the kernel's counters: {e}"),
        }
        self.kernel
    }

    /// Refreshes the metrics' gauges and mirrored counters.
    fn observe(&mut self, counters: &impl Fn() -> Result<KernelCounters, ProbeError>) {
        let k = self.kernel_counters(counters);
        if let Some(m) = &self.metrics {
            m.observe_table(&self.live.table, k);
        }
    }

    fn command(
        &mut self,
        cmd: Command,
        counters: &impl Fn() -> Result<KernelCounters, ProbeError>,
    ) {
        match cmd {
            Command::Subscribe(s) => {
                self.flow.subscribers.push(s.subscription);
                let _ = s.registered.send(());
            }
            Command::Snapshot {
                opts,
                owners,
                reply,
            } => {
                let rows =
                    snapshot::traced_rows(&opts, &mut self.live.table, &owners, monotonic_ns());
                let k = self.kernel_counters(counters);
                let _ = reply.send((rows, self.live.status(k)));
            }
            Command::Stats { reply } => {
                let k = self.kernel_counters(counters);
                self.flow.subscribers.retain(|s| !s.queue.is_closed());
                let _ = reply.send(Stats {
                    pid: std::process::id(),
                    mode: self.opts.mode,
                    uptime_s: self.started.elapsed().as_secs_f64(),
                    received: self.live.pipeline.received,
                    undecodable: self.live.pipeline.undecodable,
                    kernel_seen: k.seen,
                    kernel_filtered: k.filtered,
                    kernel_ringbuf_full: k.ringbuf_full,
                    kernel_recursion_misses: k.recursion_misses,
                    kernel_read_errors: k.read_errors,
                    table: self.live.table.counters(),
                    live: self.live.table.len(),
                    closed: self.live.table.history().len(),
                    subscribers: self.flow.subscribers.len(),
                    subscriber_drops: self.flow.subscriber_drops,
                    untracked: self.live.pipeline.untracked(),
                    event_log_written: self.log_counter(|c| &c.written),
                    event_log_dropped: self.log_counter(|c| &c.dropped),
                    event_log_rotations: self.log_counter(|c| &c.rotations),
                    reconcile_failures: self.reconcile_failures,
                    guards: self.guards.snapshot(),
                });
            }
        }
    }

    fn log_counter(
        &self,
        which: impl Fn(&super::event_log::EventLogCounters) -> &AtomicU64,
    ) -> u64 {
        self.flow
            .event_log
            .as_ref()
            .map_or(0, |l| which(&l.counters).load(Ordering::Relaxed))
    }

    fn drain(&mut self, stream: &mut impl RecordSource) {
        self.live.drain(stream, &mut self.flow);
    }
}

impl Flow {
    /// Cuts off every subscriber whose filter did more work since the last check than its
    /// share of the budget for `window`, so one costly filter slows nobody else down.
    fn police(&mut self, budget: u64, window: Duration) {
        let n = self.subscribers.len().max(1) as u128;
        let share = (u128::from(budget) * window.as_millis() / 1000 / n) as u64;
        self.subscribers.retain_mut(|s| {
            let work = std::mem::take(&mut s.work);
            if work <= share {
                return true;
            }
            let _ = s.cut.set(format!(
                "cut off: this subscription's filter cost {work} units of work in {window:?} \
                 (a unit per condition tested per event, {} per event), more than its share of \
                 {share} (--filter-budget, shared by {n} subscribers). Narrow or simplify the filter",
                s.cost
            ));
            tracing::info!("a subscriber's filter took more than its share; cutting it off");
            false
        });
    }
}

impl OnStep for Flow {
    fn batch(&mut self) {
        self.clock.refresh();
    }

    /// Hands a step the table has applied to the metrics, to every subscriber whose filter it
    /// matches, and to the event log.
    fn step(&mut self, step: &Step) {
        let Step {
            transition: t,
            context:
                Context {
                    in_old,
                    owner,
                    end,
                    life,
                },
        } = step;
        let (in_old, end) = (*in_old, *end);
        if let Some(m) = &self.metrics {
            m.observe_transition(t, in_old, life.as_ref());
        }
        if self.subscribers.is_empty() && self.event_log.is_none() {
            return;
        }
        let observed = Observed {
            transition: t,
            owner: owner.as_ref(),
        };
        let clock = &self.clock;
        let cgroups = &mut self.cgroups;
        let mut event = |life: Option<Lifecycle>| {
            Arc::new(Event {
                transition: t.clone(),
                time: clock.wall(t.ts_ns),
                owner: owner.clone(),
                in_old,
                end,
                life,
                cgroup: cgroups.get(t.cgroup).cloned(),
            })
        };
        let mut shared: Option<Arc<Event>> = None;
        let mut drops = 0;
        self.subscribers.retain_mut(|s| {
            if s.stream == Stream::Lifecycles && life.is_none() {
                return true;
            }
            s.work += s.cost;
            if !s.filter.matches(&observed) {
                return true;
            }
            let event = shared.get_or_insert_with(|| event(life.clone())).clone();
            match s.queue.try_send(event) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(_)) => {
                    s.dropped.fetch_add(1, Ordering::Relaxed);
                    drops += 1;
                    true
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            }
        });
        self.subscriber_drops += drops;
        if let Some(log) = &self.event_log {
            log.offer(shared.unwrap_or_else(|| event(None)));
        }
    }
}

/// A table entry as the filter language sees it (for snapshot filters).
pub struct EntrySubject<'a> {
    pub entry: &'a Entry,
    pub owners: Vec<Owner>,
    pub netns: Option<u32>,
}

impl<'a> EntrySubject<'a> {
    pub fn new(entry: &'a Entry, netns: Option<u32>) -> Self {
        Self {
            entry,
            owners: entry.owner.iter().map(|o| Owner::clone(o)).collect(),
            netns,
        }
    }
}

impl Subject for EntrySubject<'_> {
    fn family(&self) -> Family {
        self.entry.family
    }

    fn local(&self) -> Endpoint {
        self.entry.local
    }

    fn remote(&self) -> Endpoint {
        self.entry.remote
    }

    fn state(&self) -> TcpState {
        self.entry.state
    }

    fn owners(&self) -> &[Owner] {
        &self.owners
    }

    fn netns(&self) -> Option<u32> {
        self.netns
    }

    fn cookie(&self) -> Option<Cookie> {
        Some(self.entry.cookie)
    }
}

#[cfg(test)]
mod tests;
