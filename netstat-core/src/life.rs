//! Per-connection lifecycles for `enetstat life`: one record per connection when it ends,
//! with the time it spent in every state, in order.
//!
//! A connection's `Life` is part of its socket's memory in [`crate::sockets`], which feeds it
//! the transitions of the event log with the socket's time in each state, and the resets.
//! Listening sockets are not connections and produce no lifecycle.

use std::time::Duration;

use crate::{
    end::End,
    event::{Cookie, Endpoint, Family, Owner, ResetDirection, Transition},
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

/// Whether a transition belongs to a listening socket, which is not a connection and has no
/// lifecycle: into LISTEN, or a listener's close.
pub(crate) fn is_listener(t: &Transition) -> bool {
    t.new == TcpState::Listen || (t.old, t.new) == (TcpState::Listen, TcpState::Close)
}

/// The lifecycle part of a socket that is followed ([`crate::sockets`]): what a [`Lifecycle`]
/// needs beyond the socket's current state and when it entered it, which the socket keeps
/// for the event log as well.
#[derive(Debug)]
pub(crate) struct Life {
    start_ns: u64,
    states: Vec<(TcpState, Duration)>,
    connect: Option<Duration>,
    complete: bool,
    /// The last reset traced on the connection: it decides how the connection is said to
    /// have ended.
    pub(crate) last_reset: Option<ResetDirection>,
}

impl Life {
    /// A connection seen for the first time at `t`, its first transition other than a
    /// listener's. A socket first seen mid-life starts when it was first seen.
    pub(crate) fn begin(t: &Transition) -> Self {
        use TcpState::*;
        Self {
            start_ns: t.ts_ns,
            // A connection passes through four or five states.
            states: Vec::with_capacity(6),
            connect: None,
            complete: matches!((t.old, t.new), (Close, SynSent) | (Listen, SynRecv)),
            last_reset: None,
        }
    }

    /// A connection first seen at its close `t`, which [`Life::finish`] gives its one stay.
    pub(crate) fn seen_at_close(t: &Transition) -> Self {
        Self {
            start_ns: t.ts_ns,
            states: Vec::new(),
            connect: None,
            complete: false,
            last_reset: None,
        }
    }

    /// The stay in `state`, `spent` long, that transition `t` ended.
    pub(crate) fn stay(&mut self, state: TcpState, spent: Duration, t: &Transition) {
        self.states.push((state, spent));
        if (t.old, t.new) == (TcpState::SynSent, TcpState::Established) {
            self.connect = Some(spent);
        }
    }

    /// The finished connection, closed by `t` after a last stay, `spent` long, in the state
    /// the record says it left.
    #[inline]
    pub(crate) fn finish(
        mut self,
        t: &Transition,
        spent: Duration,
        owner: Option<&Owner>,
        end: Option<End>,
    ) -> Lifecycle {
        self.states.push((t.old, spent));
        let fin = t.fin.unwrap_or_default();
        // The kernel counts the peer's FIN in `bytes_received` (it advances rcv_nxt like a
        // byte of data); the record says whether one came.
        let peer_fin = fin.fin_received;
        Lifecycle {
            cookie: t.cookie,
            family: t.family,
            local: t.local,
            remote: t.remote,
            owner: owner.cloned(),
            netns: t.netns,
            cgroup: t.cgroup,
            start_ns: self.start_ns,
            end_ns: t.ts_ns,
            connect: self.connect,
            states: self.states,
            complete: self.complete,
            bytes_sent: fin.bytes_sent,
            bytes_received: fin.bytes_received.saturating_sub(u64::from(peer_fin)),
            retransmits: fin.retransmits,
            srtt_us: fin.srtt_us,
            counters: t.fin.is_some(),
            end,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::{
        event::{Final, ResetEvent, Task},
        sockets::Sockets,
    };
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

    fn run(lives: &mut Sockets, ts: &[Transition]) -> Option<Lifecycle> {
        let mut last = None;
        for tr in ts {
            last = lives.apply(&mut tr.clone()).life;
        }
        last
    }

    /// FIN_WAIT1>FIN_WAIT1 (Linux 6.12+ re-sets the state when it re-sends a FIN) is one stay
    /// in FIN_WAIT1, timed from the first FIN_WAIT1, not from the re-set.
    #[test]
    fn a_state_set_twice_is_one_stay_and_keeps_its_clock() {
        let mut lives = Sockets::new(10);
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
        let mut lives = Sockets::new(10);
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
        let mut lives = Sockets::new(10);
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
        let mut lives = Sockets::new(10);
        assert!(
            run(
                &mut lives,
                &[t(0, Close, Listen, 0), t(1, Listen, Close, 0)]
            )
            .is_none()
        );
        lives.apply(&mut t(0, Close, SynSent, 0));
        lives.apply(&mut t(1, SynSent, Established, 0));
        lives.on_reset(&ResetEvent {
            ts_ns: 1500,
            cookie: Cookie(1),
            direction: ResetDirection::Received,
            state: Established,
        });
        let l = lives.apply(&mut t(2, FinWait2, Close, 0)).life.unwrap();
        assert_eq!(l.end, Some(End::ResetReceived));
    }

    #[test]
    fn capacity_is_enforced_and_counted() {
        let mut lives = Sockets::new(0);
        lives.apply(&mut t(0, Close, SynSent, 0));
        assert_eq!(lives.untracked(), 1);
    }
}
