//! Per-connection lifecycles for `enetstat life`: one record per connection when it ends,
//! with the time it spent in every state, in order.
//!
//! Fed the same transitions as the event log (after the tracker has added owner and timing),
//! plus the reset records. Listening sockets are not connections and produce no lifecycle.

use std::time::Duration;

use rustc_hash::FxHashMap;

use crate::{
    end::{End, classify},
    event::{Cookie, Endpoint, Family, Owner, ResetDirection, ResetEvent, Transition},
    state::TcpState,
};

/// A finished connection.
#[derive(Clone, Debug, PartialEq)]
pub struct Lifecycle {
    pub cookie: Cookie,
    pub family: Family,
    pub local: Endpoint,
    pub remote: Endpoint,
    pub owner: Option<Owner>,
    pub netns: u32,
    /// cgroup v2 id at the close; 0 if not known.
    pub cgroup: u64,
    /// Kernel monotonic time of the first transition seen and of the close.
    pub start_ns: u64,
    pub end_ns: u64,
    /// SYN_SENT -> ESTABLISHED; `None` for passive sockets or when not seen.
    pub connect: Option<Duration>,
    /// States passed through, in order, with the time spent in each (CLOSE excluded).
    pub states: Vec<(TcpState, Duration)>,
    /// True when tracing saw the connection being born (CLOSE -> SYN_SENT or LISTEN ->
    /// SYN_RECV); false for one that was already open when tracing began.
    pub complete: bool,
    pub bytes_sent: u64,
    pub bytes_received: u64,
    pub retransmits: u32,
    pub srtt_us: u32,
    /// Whether the kernel gave the counters above (it cannot without BTF).
    pub counters: bool,
    /// How it ended; `None` where the kernel cannot say (no BTF: no socket error or resets).
    pub end: Option<End>,
}

impl Lifecycle {
    pub fn lifetime(&self) -> Duration {
        Duration::from_nanos(self.end_ns.saturating_sub(self.start_ns))
    }
}

#[derive(Debug)]
struct Open {
    start_ns: u64,
    since_ns: u64,
    state: TcpState,
    states: Vec<(TcpState, Duration)>,
    connect: Option<Duration>,
    complete: bool,
    last_reset: Option<ResetDirection>,
}

/// Connections in flight, capped; ones beyond the cap are counted, not followed.
#[derive(Debug)]
pub struct Lives {
    open: FxHashMap<Cookie, Open>,
    capacity: usize,
    /// Connections not followed because `capacity` was reached.
    pub overflow: u64,
}

impl Lives {
    pub fn new(capacity: usize) -> Self {
        Self {
            open: FxHashMap::default(),
            capacity,
            overflow: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.open.len()
    }

    pub fn is_empty(&self) -> bool {
        self.open.is_empty()
    }

    /// Notes a reset on a connection; it decides how the connection is said to have ended.
    pub fn on_reset(&mut self, r: &ResetEvent) {
        if let Some(open) = self.open.get_mut(&r.cookie) {
            open.last_reset = Some(r.direction);
        }
    }

    /// How a transition into CLOSE ended, with what is known of the socket's resets.
    pub fn end_of(&self, t: &Transition) -> Option<End> {
        let fin = t.fin.as_ref()?;
        let reset = self.open.get(&t.cookie).and_then(|o| o.last_reset);
        Some(classify(t.old, fin.errno, reset))
    }

    /// Applies a transition; returns the finished lifecycle when it closes a connection.
    pub fn on_transition(&mut self, t: &Transition, owner: Option<&Owner>) -> Option<Lifecycle> {
        use TcpState::*;
        if t.new == Listen || t.old == Listen && t.new == Close {
            return None;
        }
        if t.new == Close {
            let end = self.end_of(t);
            let mut open = self.open.remove(&t.cookie).unwrap_or_else(|| Open {
                start_ns: t.ts_ns,
                since_ns: t.ts_ns,
                state: t.old,
                states: Vec::new(),
                connect: None,
                complete: false,
                last_reset: None,
            });
            if t.old == Close {
                return None;
            }
            open.states.push((
                t.old,
                Duration::from_nanos(t.ts_ns.saturating_sub(open.since_ns)),
            ));
            let fin = t.fin.unwrap_or_default();
            // The kernel counts the peer's FIN in `bytes_received` (it advances rcv_nxt like a
            // byte of data); the record says whether one came.
            let peer_fin = fin.fin_received;
            return Some(Lifecycle {
                cookie: t.cookie,
                family: t.family,
                local: t.local,
                remote: t.remote,
                owner: owner.cloned(),
                netns: t.netns,
                cgroup: t.cgroup,
                start_ns: open.start_ns,
                end_ns: t.ts_ns,
                connect: open.connect,
                states: open.states,
                complete: open.complete,
                bytes_sent: fin.bytes_sent,
                bytes_received: fin.bytes_received.saturating_sub(u64::from(peer_fin)),
                retransmits: fin.retransmits,
                srtt_us: fin.srtt_us,
                counters: t.fin.is_some(),
                end,
            });
        }
        if let Some(open) = self.open.get_mut(&t.cookie) {
            // A state set again (FIN_WAIT1 -> FIN_WAIT1 when a FIN is re-sent, Linux 6.12+)
            // is one stay in that state, not two.
            if t.old == t.new && open.state == t.new {
                return None;
            }
            let spent = Duration::from_nanos(t.ts_ns.saturating_sub(open.since_ns));
            open.states.push((open.state, spent));
            if (t.old, t.new) == (SynSent, Established) {
                open.connect = Some(spent);
            }
            open.state = t.new;
            open.since_ns = t.ts_ns;
            return None;
        }
        if self.open.len() >= self.capacity {
            self.overflow += 1;
            return None;
        }
        let born = matches!((t.old, t.new), (Close, SynSent) | (Listen, SynRecv));
        self.open.insert(
            t.cookie,
            Open {
                // A socket first seen mid-life starts when we first saw it.
                start_ns: t.ts_ns,
                since_ns: t.ts_ns,
                state: t.new,
                // A connection passes through four or five states.
                states: Vec::with_capacity(6),
                connect: None,
                complete: born,
                last_reset: None,
            },
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::event::{Final, Task};
    use TcpState::*;

    fn t(ts_us: u64, old: TcpState, new: TcpState, errno: i32) -> Transition {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Transition {
            ts_ns: ts_us * 1000,
            cookie: Cookie(1),
            family: Family::Ipv4,
            local: Endpoint::new(lo, 40000),
            remote: Endpoint::new(lo, 80),
            old,
            new,
            netns: 1,
            cgroup: 0,
            task: Task {
                pid: 1,
                tid: 1,
                comm: "x".into(),
            },
            fin: (new == Close).then_some(Final {
                errno,
                bytes_sent: 10,
                bytes_received: 20,
                retransmits: 1,
                srtt_us: 50,
                fin_received: new == Close && errno == 0 && old != SynSent,
            }),
        }
    }

    fn run(lives: &mut Lives, ts: &[Transition]) -> Option<Lifecycle> {
        let mut last = None;
        for tr in ts {
            last = lives.on_transition(tr, None);
        }
        last
    }

    /// FIN_WAIT1>FIN_WAIT1 (Linux 6.12+ re-sets the state when it re-sends a FIN) is one stay
    /// in FIN_WAIT1, timed from the first FIN_WAIT1, not from the re-set.
    #[test]
    fn a_state_set_twice_is_one_stay_and_keeps_its_clock() {
        let mut lives = Lives::new(10);
        let l = run(
            &mut lives,
            &[
                t(0, Close, SynSent, 0),
                t(90, SynSent, Established, 0),
                t(1_000, Established, FinWait1, 0),
                t(1_400, FinWait1, FinWait1, 0),
                t(1_500, FinWait1, FinWait2, 0),
                t(1_520, FinWait2, Close, 0),
            ],
        )
        .unwrap();
        let stays: Vec<_> = l
            .states
            .iter()
            .map(|(s, d)| (s.name(), d.as_micros()))
            .collect();
        assert_eq!(
            stays,
            [
                ("SYN_SENT", 90),
                ("ESTABLISHED", 910),
                ("FIN_WAIT1", 500),
                ("FIN_WAIT2", 20),
            ]
        );
        assert!(l.complete);
    }

    #[test]
    fn active_connection_lists_states_and_connect_latency() {
        let mut lives = Lives::new(10);
        let l = run(
            &mut lives,
            &[
                t(0, Close, SynSent, 0),
                t(90, SynSent, Established, 0),
                t(1_200_090, Established, FinWait1, 0),
                t(1_200_110, FinWait1, FinWait2, 0),
                t(1_200_120, FinWait2, Close, 0),
            ],
        )
        .unwrap();
        let names: Vec<_> = l
            .states
            .iter()
            .map(|(s, d)| (s.name(), d.as_micros()))
            .collect();
        assert_eq!(
            names,
            [
                ("SYN_SENT", 90),
                ("ESTABLISHED", 1_200_000),
                ("FIN_WAIT1", 20),
                ("FIN_WAIT2", 10)
            ]
        );
        assert_eq!(l.connect, Some(Duration::from_micros(90)));
        assert_eq!(l.lifetime(), Duration::from_micros(1_200_120));
        assert!(l.complete);
        assert_eq!(l.end, Some(End::Normal));
        // The kernel counted 20 received, one of them the peer's FIN.
        assert_eq!(
            (l.bytes_sent, l.bytes_received, l.retransmits, l.srtt_us),
            (10, 19, 1, 50)
        );
        assert!(lives.is_empty());
    }

    #[test]
    fn refused_and_passive_and_partial() {
        let mut lives = Lives::new(10);
        let l = run(
            &mut lives,
            &[
                t(0, Close, SynSent, 0),
                t(5, SynSent, Close, libc::ECONNREFUSED),
            ],
        )
        .unwrap();
        assert_eq!(l.end, Some(End::Refused));
        assert_eq!(l.connect, None);

        let l = run(
            &mut lives,
            &[
                t(0, Listen, SynRecv, 0),
                t(1, SynRecv, Established, 0),
                t(2, Established, CloseWait, 0),
                t(3, CloseWait, LastAck, 0),
                t(4, LastAck, Close, 0),
            ],
        )
        .unwrap();
        assert_eq!(l.connect, None);
        assert_eq!(l.states.len(), 4);
        assert!(l.complete);

        // Already established when tracing began.
        let l = run(
            &mut lives,
            &[
                t(0, Established, CloseWait, 0),
                t(9, CloseWait, LastAck, 0),
                t(10, LastAck, Close, 0),
            ],
        )
        .unwrap();
        assert!(!l.complete);
        assert_eq!(l.states[0].0, CloseWait);
    }

    #[test]
    fn resets_decide_the_ending_and_listeners_are_not_connections() {
        let mut lives = Lives::new(10);
        assert!(
            run(
                &mut lives,
                &[t(0, Close, Listen, 0), t(1, Listen, Close, 0)]
            )
            .is_none()
        );
        lives.on_transition(&t(0, Close, SynSent, 0), None);
        lives.on_transition(&t(1, SynSent, Established, 0), None);
        lives.on_reset(&ResetEvent {
            ts_ns: 1500,
            cookie: Cookie(1),
            direction: ResetDirection::Received,
            state: Established,
        });
        let l = lives
            .on_transition(&t(2, FinWait2, Close, 0), None)
            .unwrap();
        assert_eq!(l.end, Some(End::ResetReceived));
    }

    #[test]
    fn capacity_is_enforced_and_counted() {
        let mut lives = Lives::new(0);
        lives.on_transition(&t(0, Close, SynSent, 0), None);
        assert_eq!(lives.overflow, 1);
    }
}
