use std::{
    net::{IpAddr, Ipv4Addr},
    time::Duration,
};

use super::*;
use crate::{
    diag::DiagSocket,
    event::{Final, Task},
};
use TcpState::*;

const NETNS: u32 = 4_026_531_840;
const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

fn t(
    cookie: u64,
    ts_ns: u64,
    old: TcpState,
    new: TcpState,
    ports: (u16, u16),
    pid: u32,
) -> Transition {
    Transition {
        ts_ns,
        cookie: Cookie(cookie),
        family: Family::Ipv4,
        local: Endpoint::new(LO, ports.0),
        remote: Endpoint::new(LO, ports.1),
        old,
        new,
        netns: NETNS,
        cgroup: 0,
        task: Task {
            pid,
            tid: pid,
            comm: format!("p{pid}").as_str().into(),
        },
        fin: (new == Close).then(Final::default),
    }
}

fn d(cookie: u64, proto: Proto, state: TcpState, ports: (u16, u16), inode: u64) -> DiagSocket {
    DiagSocket {
        proto,
        cookie: Cookie(cookie),
        family: Family::Ipv4,
        local: Endpoint::new(LO, ports.0),
        remote: Endpoint::new(LO, ports.1),
        state,
        recv_q: 1,
        send_q: 2,
        uid: 0,
        inode,
        cgroup: 0,
        bytes: None,
    }
}

/// The table as the pipeline feeds it: each transition's owner decided by the socket memory.
struct Tracked {
    table: Table,
    sockets: crate::sockets::Sockets,
}

impl Tracked {
    fn new(limits: Limits, netns: Option<u32>) -> Self {
        Self {
            table: Table::new(limits, netns),
            sockets: crate::sockets::Sockets::new(1 << 16),
        }
    }

    fn apply(&mut self, t: &Transition) {
        let mut t = t.clone();
        let ctx = self.sockets.apply(&mut t);
        self.table.apply(&t, ctx.owner.as_ref());
    }
}

impl std::ops::Deref for Tracked {
    type Target = Table;
    fn deref(&self) -> &Table {
        &self.table
    }
}

impl std::ops::DerefMut for Tracked {
    fn deref_mut(&mut self) -> &mut Table {
        &mut self.table
    }
}

fn table() -> Tracked {
    Tracked::new(Limits::default(), Some(NETNS))
}

#[test]
fn a_client_connection_lives_and_closes_into_the_history() {
    let mut tb = table();
    tb.seed(&[], 0);
    tb.apply(&t(1, 100, Close, SynSent, (0, 80), 500));
    tb.apply(&t(1, 200, SynSent, Established, (40000, 80), 9));
    let e = tb.get(Cookie(1)).unwrap();
    assert_eq!(e.state, Established);
    assert_eq!(e.local.port, Some(40000));
    assert_eq!(e.owner.as_ref().unwrap().pid, 500);
    assert_eq!(e.age_ns(1_200), Some(1_000));
    // Reset by the peer: no timewait socket.
    let mut rst = t(1, 1_100, Established, Close, (40000, 80), 9);
    rst.fin = Some(Final {
        errno: 104,
        ..Final::default()
    });
    tb.apply(&rst);
    assert!(tb.is_empty());
    let closed: Vec<_> = tb.history().since(0).collect();
    assert_eq!(closed.len(), 1);
    assert_eq!(closed[0].last_state, Established);
    assert_eq!(closed[0].lifetime(), Some(Duration::from_nanos(1_000)));
    assert_eq!(closed[0].entry.owner.as_ref().unwrap().pid, 500);
    assert_eq!(tb.history().since(1_101).count(), 0);
}

#[test]
fn accepted_sockets_take_the_listeners_owner() {
    let mut tb = table();
    tb.apply(&t(1, 0, Close, Listen, (80, 0), 700));
    tb.apply(&t(2, 10, Listen, SynRecv, (80, 40000), 9));
    tb.apply(&t(2, 20, SynRecv, Established, (80, 40000), 9));
    let e = tb.get(Cookie(2)).unwrap();
    assert_eq!((e.state, e.owner.as_ref().unwrap().pid), (Established, 700));
    assert_eq!(e.opened_ns(), Some(10));
}

#[test]
fn an_active_close_leaves_time_wait_which_reconciliation_confirms_and_expires() {
    let mut tb = table();
    tb.seed(&[], 0);
    tb.apply(&t(1, 10, Close, SynSent, (0, 80), 500));
    tb.apply(&t(1, 20, SynSent, Established, (40000, 80), 9));
    tb.apply(&t(1, 30, Established, FinWait1, (40000, 80), 500));
    tb.apply(&t(1, 40, FinWait1, FinWait2, (40000, 80), 9));
    // The peer's FIN, processed while the peer (pid 600) runs.
    tb.apply(&t(1, 50, FinWait2, Close, (40000, 80), 600));
    assert_eq!(tb.get(Cookie(1)).unwrap().state, TimeWait);
    assert_eq!(tb.history().len(), 1);
    // The dump shows the timewait socket: nothing to correct.
    let c = tb.reconcile(
        &[d(1, Proto::Tcp, TimeWait, (40000, 80), 0)],
        60,
        &[Proto::Tcp],
    );
    assert_eq!(c, Corrections::default());
    // It expires without a transition: expected, not a correction.
    let c = tb.reconcile(&[], 70, &[Proto::Tcp]);
    assert_eq!(c, Corrections::default());
    assert!(tb.is_empty());
}

#[test]
fn time_wait_that_events_missed_comes_from_reconciliation_and_is_counted() {
    let mut tb = table();
    tb.seed(&[d(1, Proto::Tcp, Established, (40000, 80), 77)], 0);
    // Transitions were lost (ring full): the next dump shows TIME_WAIT.
    let c = tb.reconcile(
        &[d(1, Proto::Tcp, TimeWait, (40000, 80), 0)],
        100,
        &[Proto::Tcp],
    );
    assert_eq!(c.state, 1);
    let e = tb.get(Cookie(1)).unwrap();
    assert_eq!((e.state, e.inode(), e.since_ns()), (TimeWait, 0, None));
    // A socket no transition announced, and one that vanished without a close.
    tb.apply(&t(2, 150, Close, SynSent, (0, 81), 5));
    let c = tb.reconcile(
        &[d(3, Proto::Tcp, Established, (40001, 80), 78)],
        200,
        &[Proto::Tcp],
    );
    assert_eq!(
        c,
        Corrections {
            added: 1,
            removed: 1,
            state: 0
        }
    );
    assert_eq!(tb.counters().corrections.total(), 3);
    assert_eq!(tb.counters().reconciliations, 2);
}

#[test]
fn transitions_newer_than_the_dump_win_and_older_ones_are_stale() {
    let mut tb = table();
    tb.seed(&[d(1, Proto::Tcp, Established, (40000, 80), 77)], 100);
    // Older than the seed dump: the dump already shows what came after.
    tb.apply(&t(1, 50, SynSent, Established, (40000, 80), 5));
    assert_eq!(tb.counters().stale, 1);
    tb.apply(&t(1, 300, Established, CloseWait, (40000, 80), 5));
    // A dump that started before that transition still shows ESTABLISHED: keep CLOSE_WAIT.
    let c = tb.reconcile(
        &[d(1, Proto::Tcp, Established, (40000, 80), 77)],
        250,
        &[Proto::Tcp],
    );
    assert_eq!(c, Corrections::default());
    assert_eq!(tb.get(Cookie(1)).unwrap().state, CloseWait);
    // A socket closed after a dump started is not brought back by that dump.
    tb.apply(&t(1, 400, CloseWait, LastAck, (40000, 80), 5));
    tb.apply(&t(1, 410, LastAck, Close, (40000, 80), 5));
    let c = tb.reconcile(
        &[d(1, Proto::Tcp, LastAck, (40000, 80), 77)],
        350,
        &[Proto::Tcp],
    );
    assert_eq!(c, Corrections::default());
    assert!(tb.get(Cookie(1)).is_none());
}

#[test]
fn udp_sockets_come_and_go_with_dumps_without_corrections() {
    let mut tb = table();
    tb.seed(&[d(1, Proto::Udp, Close, (53, 0), 5)], 0);
    let c = tb.reconcile(
        &[d(2, Proto::Udp, Close, (54, 0), 6)],
        10,
        &[Proto::Tcp, Proto::Udp],
    );
    assert_eq!(c, Corrections::default());
    assert!(tb.get(Cookie(1)).is_none());
    assert_eq!(tb.get(Cookie(2)).unwrap().recv_q, 1);
    // A dump of TCP alone leaves UDP sockets alone.
    tb.reconcile(&[], 20, &[Proto::Tcp]);
    assert!(tb.get(Cookie(2)).is_some());
}

#[test]
fn caps_count_what_does_not_fit() {
    let mut tb = Tracked::new(
        Limits {
            max_sockets: 2,
            max_closed: 1,
        },
        Some(NETNS),
    );
    tb.seed(&[d(1, Proto::Tcp, Listen, (80, 0), 1)], 0);
    tb.apply(&t(2, 10, Close, SynSent, (0, 80), 5));
    tb.apply(&t(3, 10, Close, SynSent, (0, 81), 5));
    assert_eq!(tb.len(), 2);
    assert_eq!(tb.counters().socket_overflow, 1);
    for cookie in [2, 3, 4] {
        tb.apply(&t(cookie, 20, SynSent, Close, (40000, 80), 5));
    }
    assert_eq!(tb.history().len(), 1);
    assert_eq!(tb.counters().history_overflow, 2);
}

#[test]
fn other_namespaces_are_not_this_table() {
    let mut tb = table();
    let mut other = t(1, 10, Close, Listen, (80, 0), 5);
    other.netns = NETNS + 1;
    tb.apply(&other);
    assert!(tb.is_empty());
    assert_eq!(tb.counters().other_netns, 1);
}

#[test]
fn a_holder_found_in_proc_is_remembered_after_the_socket_is_orphaned() {
    let mut tb = table();
    tb.seed(&[d(1, Proto::Tcp, Established, (40000, 80), 77)], 0);
    let owner = Owner::new(42, "psql");
    tb.set_owner(Cookie(1), &owner);
    tb.apply(&t(1, 10, Established, FinWait1, (40000, 80), 42));
    tb.apply(&t(1, 20, FinWait1, FinWait2, (40000, 80), 9));
    // The owner closed the half-closed socket itself: an orphaned FIN_WAIT2 timewait socket.
    tb.apply(&t(1, 30, FinWait2, Close, (40000, 80), 42));
    let e = tb.get(Cookie(1)).unwrap();
    assert_eq!(e.state, FinWait2);
    assert_eq!(e.owner.as_ref().map(|o| o.pid), Some(owner.pid));
    // The peer's FIN later turns it into TIME_WAIT, silently: not a correction.
    let c = tb.reconcile(
        &[d(1, Proto::Tcp, TimeWait, (40000, 80), 0)],
        40,
        &[Proto::Tcp],
    );
    assert_eq!(c, Corrections::default());
}

#[test]
fn a_streamed_reconciliation_matches_one_from_a_list() {
    // 10,000 sockets (more than a chunk): some the table knows, some it does not, one it
    // knows in another state, and one it holds that the dump no longer shows.
    let dump: Vec<DiagSocket> = (1..=10_000)
        .map(|i| {
            d(
                i,
                Proto::Tcp,
                Established,
                (1000, (i % 60_000) as u16 + 1),
                i,
            )
        })
        .collect();
    let build = || {
        let mut tb = table();
        tb.seed(&dump[..5_000], 1);
        tb.apply(&t(7, 5, Established, FinWait1, (1000, 8), 1));
        tb.apply(&t(20_000, 6, SynSent, Established, (1000, 9), 1));
        tb
    };
    let mut listed = build();
    let c1 = listed.reconcile(&dump, 10, &[Proto::Tcp]);
    let mut streamed = build();
    let mut catch_ups = 0;
    let c2 = streamed
        .reconcile_with(
            10,
            &[Proto::Tcp],
            |sink| {
                dump.iter().cloned().for_each(sink);
                Ok::<(), ()>(())
            },
            |_| catch_ups += 1,
        )
        .unwrap();
    assert_eq!(c1, c2);
    assert_eq!((c1.added, c1.removed, c1.state), (5_000, 1, 1));
    assert_eq!(catch_ups, 3);
    assert_eq!(listed.counters(), streamed.counters());
    let mut a: Vec<_> = listed.live().cloned().collect();
    let mut b: Vec<_> = streamed.live().cloned().collect();
    a.sort_by_key(|e| e.cookie);
    b.sort_by_key(|e| e.cookie);
    assert_eq!(a, b);
    assert_eq!(streamed.get(Cookie(7)).map(|e| e.state), Some(Established));
}

#[test]
fn the_index_finds_every_socket_through_inserts_and_removals() {
    // Sequential and scattered cookies, and some that share their low 32 bits (the index's
    // fingerprint and home); rounds of dumps that drop and add sockets, each checked against
    // the set the table should hold.
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let cookies: Vec<u64> = (1..=3_000)
        .map(|i| match i % 7 {
            0 => i << 32 | 0x2a,
            _ if i % 3 == 0 => next() | 1,
            _ => i,
        })
        .collect();
    let mut tb = table();
    let mut held = std::collections::BTreeSet::new();
    for round in 0..30u64 {
        let dump: Vec<DiagSocket> = cookies
            .iter()
            .filter(|_| next() % 4 != 0)
            .map(|&c| d(c, Proto::Tcp, Established, (1, 2), c))
            .collect();
        tb.reconcile(&dump, 100 + round, &[Proto::Tcp]);
        held = dump.iter().map(|s| s.cookie.0).collect();
        assert_eq!(tb.len(), held.len());
        for &c in &cookies {
            assert_eq!(
                tb.get(Cookie(c)).map(|e| e.cookie.0),
                held.contains(&c).then_some(c),
                "round {round}, cookie {c:#x}"
            );
        }
    }
    // Closing by transitions removes them one at a time.
    for &c in held.iter().take(500) {
        tb.apply(&t(c, 1_000, Established, Close, (1, 2), 1));
        assert!(tb.get(Cookie(c)).is_none());
    }
    assert_eq!(tb.len(), held.len() - 500);
    for &c in held.iter().skip(500) {
        assert_eq!(tb.get(Cookie(c)).map(|e| e.cookie.0), Some(c));
    }
}

#[test]
fn a_socket_known_by_a_stand_in_id_is_found_in_a_dump_by_its_addresses() {
    // Linux 5.8-5.11 or no BTF: the transitions carry no cookie (see `identity`).
    let id = Cookie::stand_in(1).0;
    let mut tb = table();
    tb.seed(&[], 0);
    tb.apply(&t(id, 100, Close, SynSent, (0, 80), 500));
    tb.apply(&t(id, 200, SynSent, Established, (40000, 80), 9));
    // The dump gives the socket a cookie; it is the same socket, not a new one.
    let c = tb.reconcile(
        &[d(77, Proto::Tcp, Established, (40000, 80), 1234)],
        1_000,
        &[Proto::Tcp],
    );
    assert_eq!(c, Corrections::default());
    assert_eq!(tb.len(), 1);
    let e = tb.get(Cookie(id)).expect("still known by its stand-in id");
    assert_eq!(e.inode(), 1234);
    assert_eq!(e.owner.as_ref().unwrap().pid, 500);
    // Its close (still carrying the stand-in id) ends it.
    tb.apply(&t(id, 2_000, Established, Close, (40000, 80), 9));
    assert_eq!(tb.len(), 0);
}

#[test]
fn a_transition_without_a_netns_is_applied() {
    let mut tb = table();
    tb.seed(&[], 0);
    let mut syn = t(Cookie::stand_in(2).0, 100, Close, SynSent, (0, 80), 500);
    syn.netns = 0;
    tb.apply(&syn);
    assert_eq!(tb.len(), 1);
}
