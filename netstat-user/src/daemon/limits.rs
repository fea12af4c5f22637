//! What one client, or many, may take from the daemon: caps on Unix-socket clients,
//! subscribers and metrics connections, the file-descriptor limit they must fit under, and
//! the counters of everything refused. A refusal is a clear error to the one refused and a
//! counter in `stats` and the metrics; it never touches the engine or the other clients.
//!
//! | limit | default | flag |
//! | --- | --- | --- |
//! | Unix-socket clients at once | 256 | `--max-clients` |
//! | subscribers at once (of those clients) | 64 | `--max-subscribers` |
//! | metrics connections at once | 16 | `--max-metrics-connections` |
//! | events queued for one subscriber | 65,536 | `--client-queue` |
//! | seconds one write to a subscriber may block | 10 | (fixed) |
//! | filter work a second, shared by the subscribers | 500,000,000 units | `--filter-budget` |
//! | filter length | 4,096 bytes | (fixed, [`crate::filter::MAX_LEN`]) |
//! | filter nesting of `(`, `not`, `!` | 64 | (fixed, [`crate::filter::MAX_DEPTH`]) |
//! | request line | 64 KiB | (fixed, [`super::protocol::MAX_REQUEST`]) |
//! | metrics request head | 16 KiB, 10 s | (fixed) |

use std::{
    io,
    sync::{
        Arc,
        atomic::{AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use nix::sys::resource::{Resource, getrlimit, setrlimit};
use serde::Serialize;

pub const DEFAULT_MAX_CLIENTS: usize = 256;
pub const DEFAULT_MAX_SUBSCRIBERS: usize = 64;
pub const DEFAULT_MAX_METRICS_CONNECTIONS: usize = 16;
/// Longest a write to a subscriber may block (its socket buffer full because it does not
/// read) before it is cut off.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// File descriptors the daemon keeps for itself besides its clients: the programs and maps,
/// the ring buffer, netlink dumps, the `/proc` scans, the event log.
const RESERVED_FDS: usize = 128;

/// The caps on connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    pub clients: usize,
    pub subscribers: usize,
    pub metrics: usize,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            clients: DEFAULT_MAX_CLIENTS,
            subscribers: DEFAULT_MAX_SUBSCRIBERS,
            metrics: DEFAULT_MAX_METRICS_CONNECTIONS,
        }
    }
}

impl ConnectionLimits {
    /// The caps made to fit `fds` file descriptors (with room for the daemon's own), and a
    /// warning when they had to shrink.
    pub fn fit(self, fds: usize) -> (ConnectionLimits, Option<String>) {
        let room = fds.saturating_sub(RESERVED_FDS).max(2);
        if self.clients + self.metrics <= room {
            return (self, None);
        }
        let metrics = self.metrics.min(room / 4).max(1);
        let clients = self.clients.min(room - metrics).max(1);
        let fitted = ConnectionLimits {
            clients,
            subscribers: self.subscribers.min(clients),
            metrics,
        };
        let warning = format!(
            "the open-file limit (RLIMIT_NOFILE) is {fds}, too low for --max-clients {} and \
             --max-metrics-connections {}; serving at most {clients} clients and {metrics} \
             metrics connections. Raise the limit (LimitNOFILE= in the unit, `ulimit -n`)",
            self.clients, self.metrics
        );
        (fitted, Some(warning))
    }
}

/// Raises the soft open-file limit to the hard one, so the daemon has every descriptor it may
/// have. Returns the soft limit now in force.
pub fn raise_nofile() -> io::Result<usize> {
    let (mut soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
        soft = hard;
    }
    Ok(usize::try_from(soft).unwrap_or(usize::MAX))
}

/// One kind of connection: how many are open, how many may be, how many were refused.
#[derive(Debug)]
pub struct Gate {
    max: usize,
    open: AtomicUsize,
    refused: AtomicU64,
}

/// An open connection; leaving the gate when dropped.
#[derive(Debug)]
pub struct Pass(Arc<Gate>);

impl Drop for Pass {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Gate {
    pub fn new(max: usize) -> Arc<Gate> {
        Arc::new(Gate {
            max,
            open: AtomicUsize::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// A pass, or `None` (counted) when `max` are open.
    pub fn enter(self: &Arc<Self>) -> Option<Pass> {
        let before = self.open.fetch_add(1, Ordering::Relaxed);
        if before >= self.max {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.refused.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(Pass(self.clone()))
    }

    pub fn max(&self) -> usize {
        self.max
    }

    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// Every gate and refusal counter, shared by the client tasks, the metrics server, the
/// engine (for `stats`) and the metrics.
#[derive(Debug)]
pub struct Guards {
    pub clients: Arc<Gate>,
    pub subscribers: Arc<Gate>,
    pub metrics: Arc<Gate>,
    /// Filters refused for breaking a size limit (length, nesting).
    pub filters_refused: AtomicU64,
    /// Subscribers cut off because they read too slowly or not at all.
    pub subscribers_cut_off: AtomicU64,
}

impl Guards {
    pub fn new(limits: ConnectionLimits) -> Arc<Guards> {
        Arc::new(Guards {
            clients: Gate::new(limits.clients),
            subscribers: Gate::new(limits.subscribers),
            metrics: Gate::new(limits.metrics),
            filters_refused: AtomicU64::new(0),
            subscribers_cut_off: AtomicU64::new(0),
        })
    }

    pub fn snapshot(&self) -> GuardStats {
        GuardStats {
            clients: self.clients.open(),
            max_clients: self.clients.max(),
            clients_refused: self.clients.refused(),
            max_subscribers: self.subscribers.max(),
            subscribers_refused: self.subscribers.refused(),
            metrics_connections: self.metrics.open(),
            max_metrics_connections: self.metrics.max(),
            metrics_connections_refused: self.metrics.refused(),
            filters_refused: self.filters_refused.load(Ordering::Relaxed),
            subscribers_cut_off: self.subscribers_cut_off.load(Ordering::Relaxed),
        }
    }
}

/// The guards' counters, as `stats` shows them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct GuardStats {
    /// Unix-socket clients connected now.
    pub clients: usize,
    pub max_clients: usize,
    pub clients_refused: u64,
    pub max_subscribers: usize,
    pub subscribers_refused: u64,
    pub metrics_connections: usize,
    pub max_metrics_connections: usize,
    pub metrics_connections_refused: u64,
    pub filters_refused: u64,
    pub subscribers_cut_off: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_lets_max_through_and_counts_the_rest() {
        let g = Gate::new(2);
        let a = g.enter().unwrap();
        let _b = g.enter().unwrap();
        assert!(g.enter().is_none());
        assert_eq!((g.open(), g.refused()), (2, 1));
        drop(a);
        assert!(g.enter().is_some());
        assert_eq!(
            g.open(),
            1,
            "the pass taken in the assert was dropped again"
        );
    }

    #[test]
    fn caps_shrink_to_fit_the_descriptor_limit() {
        let asked = ConnectionLimits::default();
        assert_eq!(asked.fit(65_536), (asked, None));
        let (fitted, warning) = asked.fit(256);
        assert!(fitted.clients + fitted.metrics <= 256 - RESERVED_FDS);
        assert!(fitted.subscribers <= fitted.clients);
        assert!(warning.unwrap().contains("RLIMIT_NOFILE) is 256"));
    }
}
