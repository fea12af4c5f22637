//! Prometheus metrics for `enetstat daemon --metrics ADDR`, with the `prometheus-client`
//! crate. The engine updates them as it applies transitions (counters, histograms) and at every
//! reconciliation tick (gauges, and counters mirrored from the kernel and the table); the HTTP
//! endpoint ([`super::http`]) only encodes.
//!
//! | metric | type | labels |
//! | --- | --- | --- |
//! | `enetstat_connections_opened_total` | counter | `direction` = active, passive |
//! | `enetstat_connections_closed_total` | counter | `end` = normal, refused, timeout, reset_received, reset_sent, aborted |
//! | `enetstat_transitions_total` | counter | `old`, `new` (netstat state names) |
//! | `enetstat_connect_latency_seconds` | histogram | SYN_SENT to ESTABLISHED |
//! | `enetstat_connection_lifetime_seconds` | histogram | first transition seen to CLOSE |
//! | `enetstat_sockets` | gauge | `state`: live TCP sockets in the table by state |
//! | `enetstat_table_sockets` | gauge | live sockets in the table (TCP and UDP) |
//! | `enetstat_history_connections` | gauge | closed connections remembered |
//! | `enetstat_ringbuf_drops_total` | counter | records lost because the ring buffer was full |
//! | `enetstat_kernel_recursion_misses_total` | counter | events lost to program recursion |
//! | `enetstat_kernel_read_errors_total` | counter | failed socket reads (zeroes sent) |
//! | `enetstat_reconciliation_corrections_total` | counter | `kind` = added, removed, state |
//! | `enetstat_table_overflow_total` | counter | `table` = sockets, history |
//! | `enetstat_reconcile_failures_total` | counter | socket dumps that failed (each retried) |
//! | `enetstat_refused_total` | counter | `what` = client, subscriber, metrics_connection, filter |
//! | `enetstat_subscribers_cut_off_total` | counter | subscribers that lagged or stopped reading |
//! | `enetstat_connections` | gauge | `kind` = client, subscriber, metrics: open now |

use std::sync::{Arc, Mutex};

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{counter::Counter, family::Family, gauge::Gauge, histogram::Histogram},
    registry::{Registry, Unit},
};

use super::limits::{GuardStats, Guards};
use crate::{
    end::End,
    life::Lifecycle,
    probe::KernelCounters,
    sockdiag::Proto,
    state::TcpState,
    table::{Counters, Table},
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Direction {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EndLabel {
    end: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Change {
    old: &'static str,
    new: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TableLabel {
    table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct What {
    what: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnKind {
    kind: &'static str,
}

/// Counters mirrored from elsewhere: the last values seen, so only the increase is added.
#[derive(Debug, Default)]
struct Mirrored {
    kernel: KernelCounters,
    table: Counters,
    guards: GuardStats,
}

/// Every metric, registered once.
pub struct Metrics {
    registry: Registry,
    opened: Family<Direction, Counter>,
    closed: Family<EndLabel, Counter>,
    transitions: Family<Change, Counter>,
    connect: Histogram,
    lifetime: Histogram,
    sockets: Family<StateLabel, Gauge>,
    table_sockets: Gauge,
    history: Gauge,
    ringbuf_drops: Counter,
    recursion_misses: Counter,
    read_errors: Counter,
    corrections: Family<Kind, Counter>,
    overflow: Family<TableLabel, Counter>,
    reconcile_failures: Counter,
    refused: Family<What, Counter>,
    cut_off: Counter,
    connections: Family<ConnKind, Gauge>,
    guards: Option<Arc<Guards>>,
    mirrored: Mutex<Mirrored>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// 50 µs to ~100 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(50e-6, 2.0, 22)
}

/// 1 ms to ~1.5 days, ×4.
fn lifetime_buckets() -> impl Iterator<Item = f64> {
    prometheus_client::metrics::histogram::exponential_buckets(1e-3, 4.0, 14)
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            opened: Family::default(),
            closed: Family::default(),
            transitions: Family::default(),
            connect: Histogram::new(latency_buckets()),
            lifetime: Histogram::new(lifetime_buckets()),
            sockets: Family::default(),
            table_sockets: Gauge::default(),
            history: Gauge::default(),
            ringbuf_drops: Counter::default(),
            recursion_misses: Counter::default(),
            read_errors: Counter::default(),
            corrections: Family::default(),
            overflow: Family::default(),
            reconcile_failures: Counter::default(),
            refused: Family::default(),
            cut_off: Counter::default(),
            connections: Family::default(),
            guards: None,
            mirrored: Mutex::new(Mirrored::default()),
            registry: Registry::default(),
        };
        registry.register(
            "enetstat_connections_opened",
            "TCP connections opened: active (connect) or passive (accepted)",
            m.opened.clone(),
        );
        registry.register(
            "enetstat_connections_closed",
            "TCP connections closed, by how they ended",
            m.closed.clone(),
        );
        registry.register(
            "enetstat_transitions",
            "TCP state transitions, by old and new state",
            m.transitions.clone(),
        );
        registry.register_with_unit(
            "enetstat_connect_latency",
            "Time from SYN_SENT to ESTABLISHED of active connections",
            Unit::Seconds,
            m.connect.clone(),
        );
        registry.register_with_unit(
            "enetstat_connection_lifetime",
            "Lifetime of closed TCP connections, first transition seen to CLOSE",
            Unit::Seconds,
            m.lifetime.clone(),
        );
        registry.register(
            "enetstat_sockets",
            "Live TCP sockets in the table, by state",
            m.sockets.clone(),
        );
        registry.register(
            "enetstat_table_sockets",
            "Live sockets in the table (TCP and UDP)",
            m.table_sockets.clone(),
        );
        registry.register(
            "enetstat_history_connections",
            "Closed connections remembered in the history",
            m.history.clone(),
        );
        registry.register(
            "enetstat_ringbuf_drops",
            "Records lost because the kernel ring buffer was full",
            m.ringbuf_drops.clone(),
        );
        registry.register(
            "enetstat_kernel_recursion_misses",
            "Events lost because the kernel skipped a nested run of a program",
            m.recursion_misses.clone(),
        );
        registry.register(
            "enetstat_kernel_read_errors",
            "Kernel reads of a socket that failed; the record was sent with zeroes there",
            m.read_errors.clone(),
        );
        registry.register(
            "enetstat_reconciliation_corrections",
            "Corrections socket dumps made to the table, by kind",
            m.corrections.clone(),
        );
        registry.register(
            "enetstat_table_overflow",
            "Sockets (or closed connections) not kept because the table (or history) was full",
            m.overflow.clone(),
        );
        registry.register(
            "enetstat_reconcile_failures",
            "Socket dumps that failed (each is retried at the next tick)",
            m.reconcile_failures.clone(),
        );
        registry.register(
            "enetstat_refused",
            "Clients, subscribers, metrics connections and filters refused for breaking a limit",
            m.refused.clone(),
        );
        registry.register(
            "enetstat_subscribers_cut_off",
            "Subscribers cut off because they read too slowly or stopped reading",
            m.cut_off.clone(),
        );
        registry.register(
            "enetstat_connections",
            "Connections open now: Unix-socket clients, subscribers, metrics",
            m.connections.clone(),
        );
        // Series that exist from the start, at zero, so rates and alerts work from the first
        // scrape.
        for direction in ["active", "passive"] {
            drop(m.opened.get_or_create(&Direction { direction }));
        }
        for end in End::ALL {
            drop(m.closed.get_or_create(&EndLabel { end: end.name() }));
        }
        for kind in ["added", "removed", "state"] {
            drop(m.corrections.get_or_create(&Kind { kind }));
        }
        for table in ["sockets", "history"] {
            drop(m.overflow.get_or_create(&TableLabel { table }));
        }
        for what in ["client", "subscriber", "metrics_connection", "filter"] {
            drop(m.refused.get_or_create(&What { what }));
        }
        for kind in ["client", "subscriber", "metrics"] {
            drop(m.connections.get_or_create(&ConnKind { kind }));
        }
        Metrics { registry, ..m }
    }

    /// Mirrors the daemon's connection gates and refusal counters at every scrape.
    pub fn with_guards(mut self, guards: Arc<Guards>) -> Self {
        self.guards = Some(guards);
        self
    }

    /// Counts a failed reconciliation.
    pub fn reconcile_failed(&self) {
        self.reconcile_failures.inc();
    }

    /// Brings the refusal counters and connection gauges up to date.
    fn observe_guards(&self) {
        let Some(guards) = &self.guards else { return };
        let now = guards.snapshot();
        for (kind, open) in [
            ("client", now.clients),
            ("subscriber", guards.subscribers.open()),
            ("metrics", now.metrics_connections),
        ] {
            self.connections
                .get_or_create(&ConnKind { kind })
                .set(open as i64);
        }
        let Ok(mut last) = self.mirrored.lock() else {
            return;
        };
        let was = last.guards;
        for (what, new, old) in [
            ("client", now.clients_refused, was.clients_refused),
            (
                "subscriber",
                now.subscribers_refused,
                was.subscribers_refused,
            ),
            (
                "metrics_connection",
                now.metrics_connections_refused,
                was.metrics_connections_refused,
            ),
            ("filter", now.filters_refused, was.filters_refused),
        ] {
            self.refused
                .get_or_create(&What { what })
                .inc_by(new.saturating_sub(old));
        }
        self.cut_off.inc_by(
            now.subscribers_cut_off
                .saturating_sub(was.subscribers_cut_off),
        );
        last.guards = now;
    }

    /// Counts one transition (and the connection it opened or closed).
    pub fn observe_transition(
        &self,
        t: &crate::event::Transition,
        in_old: Option<std::time::Duration>,
        life: Option<&Lifecycle>,
    ) {
        self.transitions
            .get_or_create(&Change {
                old: t.old.name(),
                new: t.new.name(),
            })
            .inc();
        match (t.old, t.new) {
            (TcpState::Close, TcpState::SynSent) => {
                self.opened
                    .get_or_create(&Direction {
                        direction: "active",
                    })
                    .inc();
            }
            (TcpState::Listen | TcpState::NewSynRecv, TcpState::SynRecv) => {
                self.opened
                    .get_or_create(&Direction {
                        direction: "passive",
                    })
                    .inc();
            }
            (TcpState::SynSent, TcpState::Established) => {
                if let Some(d) = in_old {
                    self.connect.observe(d.as_secs_f64());
                }
            }
            _ => {}
        }
        if let Some(l) = life {
            self.closed
                .get_or_create(&EndLabel {
                    end: l.end.map_or("unknown", End::name),
                })
                .inc();
            self.lifetime.observe(l.lifetime().as_secs_f64());
        }
    }

    /// Updates the gauges and mirrored counters from the table and the kernel.
    pub fn observe_table(&self, table: &Table, kernel: KernelCounters) {
        let mut by_state = [0i64; TcpState::ALL.len()];
        for e in table.live().filter(|e| e.proto == Proto::Tcp) {
            if let Some(i) = TcpState::ALL.iter().position(|s| *s == e.state) {
                by_state[i] += 1;
            }
        }
        for (s, n) in TcpState::ALL.iter().zip(by_state) {
            self.sockets
                .get_or_create(&StateLabel { state: s.name() })
                .set(n);
        }
        self.table_sockets.set(table.len() as i64);
        self.history.set(table.history().len() as i64);
        let counters = table.counters();
        let Ok(mut last) = self.mirrored.lock() else {
            return;
        };
        let grow = |c: &Counter, new: u64, old: u64| {
            c.inc_by(new.saturating_sub(old));
        };
        grow(
            &self.ringbuf_drops,
            kernel.ringbuf_full,
            last.kernel.ringbuf_full,
        );
        grow(
            &self.recursion_misses,
            kernel.recursion_misses,
            last.kernel.recursion_misses,
        );
        grow(
            &self.read_errors,
            kernel.read_errors,
            last.kernel.read_errors,
        );
        let (c, l) = (counters.corrections, last.table.corrections);
        for (kind, new, old) in [
            ("added", c.added, l.added),
            ("removed", c.removed, l.removed),
            ("state", c.state, l.state),
        ] {
            grow(&self.corrections.get_or_create(&Kind { kind }), new, old);
        }
        for (name, new, old) in [
            (
                "sockets",
                counters.socket_overflow,
                last.table.socket_overflow,
            ),
            (
                "history",
                counters.history_overflow,
                last.table.history_overflow,
            ),
        ] {
            grow(
                &self.overflow.get_or_create(&TableLabel { table: name }),
                new,
                old,
            );
        }
        last.kernel = kernel;
        last.table = counters;
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        self.observe_guards();
        let mut s = String::new();
        if prometheus_client::encoding::text::encode(&mut s, &self.registry).is_err() {
            s.clear();
        }
        s
    }
}

/// The classic Prometheus text format (0.0.4) from OpenMetrics text, for scrapers and tools
/// that do not ask for OpenMetrics (`curl`, `promtool check metrics`): counters' HELP and TYPE
/// lines carry the `_total` name, and there are no `# UNIT` or `# EOF` lines.
pub fn to_prometheus_text(openmetrics: &str) -> String {
    let mut out = String::with_capacity(openmetrics.len());
    let mut help: Option<&str> = None;
    for line in openmetrics.lines() {
        if line == "# EOF" || line.starts_with("# UNIT ") {
            continue;
        }
        if line.starts_with("# HELP ") {
            help = Some(line);
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap_or((rest, "untyped"));
            let name = if kind == "counter" && !name.ends_with("_total") {
                format!("{name}_total")
            } else {
                name.to_owned()
            };
            if let Some(h) = help.take() {
                let text = h
                    .strip_prefix("# HELP ")
                    .and_then(|r| r.split_once(' '))
                    .map_or("", |(_, t)| t);
                out.push_str(&format!("# HELP {name} {text}\n"));
            }
            out.push_str(&format!("# TYPE {name} {kind}\n"));
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::event::{Cookie, Endpoint, Family, Task, Transition};

    fn t(old: TcpState, new: TcpState) -> Transition {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Transition {
            ts_ns: 1,
            cookie: Cookie(1),
            family: Family::Ipv4,
            local: Endpoint::new(lo, 1000),
            remote: Endpoint::new(lo, 80),
            old,
            new,
            netns: 1,
            cgroup: 0,
            task: Task {
                pid: 0,
                tid: 0,
                comm: "".into(),
            },
            fin: None,
        }
    }

    #[test]
    fn names_follow_prometheus_conventions() {
        let m = Metrics::new();
        m.observe_transition(&t(TcpState::Close, TcpState::SynSent), None, None);
        m.observe_transition(
            &t(TcpState::SynSent, TcpState::Established),
            Some(std::time::Duration::from_millis(2)),
            None,
        );
        let text = m.encode();
        assert!(text.contains("enetstat_connections_opened_total{direction=\"active\"} 1"));
        assert!(
            text.contains("enetstat_transitions_total{old=\"CLOSE\",new=\"SYN_SENT\"} 1"),
            "{text}"
        );
        assert!(text.contains("# TYPE enetstat_connect_latency_seconds histogram"));
        assert!(text.contains("enetstat_connect_latency_seconds_count 1"));
        assert!(text.ends_with("# EOF\n"));
        let prom = to_prometheus_text(&text);
        assert!(prom.contains(
            "# HELP enetstat_connections_opened_total TCP connections opened: active (connect) \
             or passive (accepted).\n# TYPE enetstat_connections_opened_total counter\n"
        ));
        assert!(prom.contains("# TYPE enetstat_connect_latency_seconds histogram\n"));
        assert!(!prom.contains("# EOF") && !prom.contains("# UNIT"));
    }
}
