//! The engine driven by recorded records: fan-out by filter, a subscriber that falls behind,
//! and the live table, without root or kernel programs.

use std::{collections::VecDeque, sync::Arc, time::Duration};

use netstat_common::{StateChange, tcp_state};
use tokio::sync::{mpsc, oneshot};

use super::*;
use crate::{
    daemon::{limits::ConnectionLimits, protocol::Stream},
    decode::fixtures::record,
};

/// Records handed over in batches, as the ring would hand them.
struct Recorded {
    batches: mpsc::UnboundedReceiver<Vec<Vec<u8>>>,
    waiting: VecDeque<Vec<u8>>,
}

impl Recorded {
    fn pull(&mut self) {
        while let Ok(batch) = self.batches.try_recv() {
            self.waiting.extend(batch);
        }
    }
}

impl RecordSource for Recorded {
    async fn ready(&mut self) -> Result<(), ProbeError> {
        if self.waiting.is_empty() {
            match self.batches.recv().await {
                Some(batch) => self.waiting.extend(batch),
                None => std::future::pending().await,
            }
        }
        Ok(())
    }

    fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        self.pull();
        let n = self.waiting.len();
        for r in self.waiting.drain(..) {
            f(&r);
        }
        n
    }

    fn drain_all(&mut self, f: impl FnMut(&[u8])) -> usize {
        self.drain(f)
    }
}

fn bytes(r: &StateChange) -> Vec<u8> {
    // SAFETY: StateChange is a plain #[repr(C)] record, read as the kernel wrote it.
    unsafe {
        std::slice::from_raw_parts(
            std::ptr::from_ref::<StateChange>(r).cast::<u8>(),
            size_of::<StateChange>(),
        )
    }
    .to_vec()
}

/// A client connection's five transitions, from local port `lport` to remote port `rport`.
fn connection(cookie: u64, lport: u16, rport: u16, t0: u64) -> Vec<Vec<u8>> {
    use tcp_state::*;
    [
        (CLOSE, SYN_SENT),
        (SYN_SENT, ESTABLISHED),
        (ESTABLISHED, FIN_WAIT1),
        (FIN_WAIT1, FIN_WAIT2),
        (FIN_WAIT2, CLOSE),
    ]
    .into_iter()
    .enumerate()
    .map(|(i, (old, new))| {
        let mut r = record(old, new);
        r.cookie = cookie;
        r.skaddr = 0xffff_8880_0000_0000 + cookie * 0x1000;
        r.lport = lport;
        r.rport = rport;
        r.netns = 0;
        r.ts_ns = t0 + i as u64 * 1_000;
        bytes(&r)
    })
    .collect()
}

/// A running engine, its record feed and its command channel.
struct Running {
    records: mpsc::UnboundedSender<Vec<Vec<u8>>>,
    commands: mpsc::Sender<Command>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), EngineError>>,
}

impl Running {
    async fn start() -> Running {
        let opts = EngineOptions {
            limits: Limits::default(),
            max_sockets: 1 << 16,
            // No reconciliation during a test: the table is the events' alone.
            reconcile: Duration::from_secs(3600),
            keep_closed: Duration::from_secs(3600),
            mode: None,
            filter_budget: DEFAULT_FILTER_BUDGET,
        };
        let engine = Engine::new(opts, None, None, Guards::new(ConnectionLimits::default()));
        let (records, batches) = mpsc::unbounded_channel();
        let (commands, rx) = mpsc::channel(16);
        let (stop, stopped) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut source = Recorded {
                batches,
                waiting: VecDeque::new(),
            };
            engine
                .run(
                    &mut source,
                    rx,
                    async {
                        let _ = stopped.await;
                    },
                    || Ok(KernelCounters::default()),
                    move || {
                        let _ = ready_tx.send(());
                    },
                )
                .await
        });
        ready_rx.await.expect("the engine starts");
        Running {
            records,
            commands,
            stop: Some(stop),
            task,
        }
    }

    /// Subscribes with `filter`, a queue of `capacity` events.
    async fn subscribe(
        &self,
        filter: &str,
        capacity: usize,
    ) -> (mpsc::Receiver<Arc<Event>>, Arc<AtomicU64>) {
        let filter = crate::filter::parse(filter).expect("a valid filter");
        let (queue, events) = mpsc::channel(capacity);
        let dropped = Arc::new(AtomicU64::new(0));
        let (registered, done) = oneshot::channel();
        let subscription = Subscription {
            stream: Stream::Transitions,
            cost: filter.cost(),
            filter,
            queue,
            dropped: dropped.clone(),
            cut: Arc::new(std::sync::OnceLock::new()),
            work: 0,
        };
        self.commands
            .send(Command::Subscribe(Subscribe {
                subscription,
                registered,
            }))
            .await
            .map_err(|_| "engine gone")
            .unwrap();
        done.await.expect("registered");
        (events, dropped)
    }

    /// The engine's stats, once it has handled every record sent before.
    async fn stats(&self) -> Stats {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Stats { reply })
            .await
            .map_err(|_| "engine gone")
            .unwrap();
        answer.await.expect("stats")
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

fn received(events: &mut mpsc::Receiver<Arc<Event>>) -> Vec<Arc<Event>> {
    let mut out = Vec::new();
    while let Ok(e) = events.try_recv() {
        out.push(e);
    }
    out
}

#[tokio::test]
async fn each_subscriber_gets_exactly_the_events_its_filter_matches() {
    let engine = Running::start().await;
    let (mut web, _) = engine.subscribe("dport = :443", 1024).await;
    let (mut db, _) = engine.subscribe("dport = :5432", 1024).await;
    let (mut all, _) = engine.subscribe("", 1024).await;
    let mut batch = Vec::new();
    for i in 0..10u64 {
        let rport = if i % 2 == 0 { 443 } else { 5432 };
        batch.extend(connection(100 + i, 40_000 + i as u16, rport, 1_000_000 * i));
    }
    engine.records.send(batch).unwrap();
    let stats = engine.stats().await;
    assert_eq!(stats.received, 50);
    let (web, db, all) = (received(&mut web), received(&mut db), received(&mut all));
    assert_eq!((web.len(), db.len(), all.len()), (25, 25, 50));
    assert!(web.iter().all(|e| e.transition.remote.port == Some(443)));
    assert!(db.iter().all(|e| e.transition.remote.port == Some(5432)));
    // In the kernel's order, each connection's five transitions in turn.
    let cookies: Vec<u64> = all.iter().map(|e| e.transition.cookie.0).collect();
    let expected: Vec<u64> = (0..10).flat_map(|i| [100 + i; 5]).collect();
    assert_eq!(cookies, expected);
    // Lifecycles are computed on the way: the closing transition carries the connection.
    assert_eq!(all.iter().filter(|e| e.life.is_some()).count(), 10);
    assert_eq!(stats.subscriber_drops, 0);
    engine.stop().await;
}

#[tokio::test]
async fn a_subscriber_that_falls_behind_loses_only_its_own_events_and_each_is_counted() {
    let engine = Running::start().await;
    // Never read: room for 3 events.
    let (_slow, slow_dropped) = engine.subscribe("", 3).await;
    let (mut fast, fast_dropped) = engine.subscribe("", 1024).await;
    let batch: Vec<Vec<u8>> = (0..4u64)
        .flat_map(|i| connection(200 + i, 41_000 + i as u16, 80, 10_000_000 * i))
        .collect();
    engine.records.send(batch).unwrap();
    let stats = engine.stats().await;
    assert_eq!(received(&mut fast).len(), 20);
    assert_eq!(fast_dropped.load(Ordering::Relaxed), 0);
    assert_eq!(slow_dropped.load(Ordering::Relaxed), 17);
    assert_eq!(stats.subscriber_drops, 17);
    assert_eq!(stats.subscribers, 2);
    engine.stop().await;
}

#[tokio::test]
async fn the_live_table_follows_the_records_and_keeps_the_closed_ones() {
    let engine = Running::start().await;
    let before = engine.stats().await;
    // Two connections: one closes, one stays established.
    let mut batch = connection(300, 42_000, 8080, 0);
    batch.extend(connection(301, 42_001, 8080, 1_000_000).into_iter().take(2));
    engine.records.send(batch).unwrap();
    let stats = engine.stats().await;
    assert_eq!(stats.table.transitions - before.table.transitions, 7);
    assert_eq!(stats.closed - before.closed, 1);
    // The open one is live, and the closed one left its timewait socket behind: it closed
    // from FIN_WAIT2 in its owner's own call, which shows as FIN_WAIT2 until a dump says
    // otherwise. (Only events change the table here: no reconciliation runs.)
    assert_eq!(stats.live - before.live, 2);
    engine.stop().await;
}
