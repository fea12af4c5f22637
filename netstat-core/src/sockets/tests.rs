use std::net::{IpAddr, Ipv4Addr};

use super::*;
use crate::event::{Endpoint, Family, ResetDirection, Task};
use TcpState::*;

fn t(
    cookie: u64,
    ts_ns: u64,
    old: TcpState,
    new: TcpState,
    lport: u16,
    rport: u16,
    pid: u32,
) -> Transition {
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    Transition {
        ts_ns,
        cookie: Cookie(cookie),
        family: Family::Ipv4,
        local: Endpoint::new(lo, lport),
        remote: Endpoint::new(lo, rport),
        old,
        new,
        netns: 1,
        cgroup: 0,
        task: Task {
            pid,
            tid: pid,
            comm: format!("p{pid}").as_str().into(),
        },
        fin: None,
    }
}

fn accept(cookie: u64, pid: u32, lport: u16) -> AcceptEvent {
    AcceptEvent {
        ts_ns: 1,
        cookie: Cookie(cookie),
        netns: 1,
        lport,
        owner: Owner::new(pid, format!("w{pid}")),
    }
}

#[test]
fn client_owner_comes_from_connect_not_from_softirq() {
    let mut tr = Sockets::new(10);
    let c = tr.apply(&mut t(1, 100, Close, SynSent, 0, 80, 500));
    assert_eq!(c.in_old, None);
    assert_eq!(c.owner.as_ref().unwrap().pid, 500);
    // The SYN-ACK is processed in softirq while pid 9 happens to run.
    let mut est = t(1, 1_100, SynSent, Established, 40000, 80, 9);
    let c = tr.apply(&mut est);
    assert_eq!(c.owner.unwrap().pid, 500);
    assert_eq!(c.in_old, Some(Duration::from_nanos(1_000)));
}

#[test]
fn accepted_socket_inherits_its_listeners_owner() {
    let mut tr = Sockets::new(10);
    tr.apply(&mut t(1, 0, Close, Listen, 80, 0, 700));
    let c = tr.apply(&mut t(2, 10, Listen, SynRecv, 80, 40000, 9));
    assert_eq!(c.owner.unwrap().pid, 700);
    assert_eq!(c.in_old, None);
    let c = tr.apply(&mut t(2, 20, SynRecv, Established, 80, 40000, 9));
    assert_eq!(c.owner.unwrap().pid, 700);
}

#[test]
fn port_learned_later_is_kept_and_close_forgets_the_socket() {
    let mut tr = Sockets::new(10);
    tr.apply(&mut t(1, 0, Close, SynSent, 0, 80, 5));
    tr.apply(&mut t(1, 1, SynSent, Established, 40000, 80, 5));
    assert_eq!(tr.len(), 1);
    let mut close = t(1, 2, Established, Close, 0, 80, 5);
    tr.apply(&mut close);
    assert_eq!(close.local.port, Some(40000));
    assert_eq!(tr.len(), 0);
}

#[test]
fn a_full_tracker_counts_what_it_cannot_remember() {
    let mut tr = Sockets::new(1);
    tr.apply(&mut t(1, 0, Close, SynSent, 0, 80, 5));
    tr.apply(&mut t(2, 0, Close, SynSent, 0, 80, 5));
    assert_eq!(tr.untracked(), 1);
    assert_eq!(tr.len(), 1);
}

/// Each record of a socket that is not followed finds nothing; the socket is still one.
#[test]
fn a_socket_not_followed_is_counted_once() {
    let mut tr = Sockets::new(1);
    tr.apply(&mut t(1, 10, Close, Listen, 80, 0, 5));
    tr.apply(&mut t(2, 20, Listen, SynRecv, 80, 40000, 9));
    tr.apply(&mut t(2, 30, SynRecv, Established, 80, 40000, 9));
    tr.on_accept(&accept(2, 6, 80));
    let c = tr.apply(&mut t(2, 40, Established, CloseWait, 80, 40000, 9));
    assert_eq!(c.in_old, None, "not followed: no time in state");
    assert_eq!(tr.untracked(), 1);
    tr.apply(&mut t(2, 50, LastAck, Close, 80, 40000, 9));
    assert_eq!(tr.untracked(), 1);
    assert_eq!(tr.len(), 1);
}

/// Accepts and `/proc` seeds make a socket known before any transition: its owner is
/// known, its time in state is not, and it has no lifecycle until a transition comes.
#[test]
fn a_socket_known_before_its_transitions_has_no_time_in_state() {
    let mut tr = Sockets::new(10);
    tr.on_accept(&accept(1, 42, 80));
    tr.seed(Cookie(2), 1, 81, Owner::new(43, "seeded"));
    tr.seed(Cookie(1), 1, 80, Owner::new(44, "ignored"));
    let c = tr.apply(&mut t(1, 100, Established, CloseWait, 0, 40000, 9));
    assert_eq!(c.in_old, None);
    assert_eq!(c.owner.as_ref().unwrap().pid, 42);
    let c = tr.apply(&mut t(1, 150, CloseWait, LastAck, 0, 40000, 0));
    assert_eq!(c.in_old, Some(Duration::from_nanos(50)));
    let mut close = t(1, 170, LastAck, Close, 0, 40000, 9);
    let c = tr.apply(&mut close);
    assert_eq!(close.local.port, Some(80), "the port the accept gave");
    let life = c.life.unwrap();
    assert!(!life.complete);
    assert_eq!(life.start_ns, 100);
    let stays: Vec<_> = life
        .states
        .iter()
        .map(|(s, d)| (*s, d.as_nanos()))
        .collect();
    assert_eq!(stays, [(CloseWait, 50), (LastAck, 20)]);

    // Closed before any other transition: one stay of no known length.
    let c = tr.apply(&mut t(2, 200, Established, Close, 81, 40000, 9));
    assert_eq!(c.in_old, None);
    assert_eq!(c.owner.unwrap().pid, 43);
    let life = c.life.unwrap();
    assert_eq!(life.states, [(Established, Duration::ZERO)]);
    assert_eq!(life.start_ns, 200);
    assert!(tr.is_empty());
}

/// A listener is followed for its owner and its time in state, and is no connection.
#[test]
fn a_listener_keeps_time_in_state_but_has_no_lifecycle() {
    let mut tr = Sockets::new(10);
    tr.apply(&mut t(1, 100, Close, Listen, 80, 0, 700));
    let c = tr.apply(&mut t(1, 300, Listen, Listen, 80, 0, 700));
    assert_eq!(c.in_old, Some(Duration::from_nanos(200)));
    let c = tr.apply(&mut t(1, 600, Listen, Close, 80, 0, 700));
    assert_eq!(
        c.in_old,
        Some(Duration::from_nanos(500)),
        "LISTEN set again"
    );
    assert_eq!(c.life, None);
    assert!(tr.is_empty());
    // Seen at its close in CLOSE: nothing to say.
    assert_eq!(tr.apply(&mut t(2, 700, Close, Close, 81, 0, 0)).life, None);
}

/// FIN_WAIT1>FIN_WAIT1 does not restart the clock for the event log either.
#[test]
fn a_state_set_again_keeps_its_clock_for_the_event_log() {
    let mut tr = Sockets::new(10);
    tr.apply(&mut t(1, 100, Close, SynSent, 40000, 80, 5));
    tr.apply(&mut t(1, 200, SynSent, Established, 40000, 80, 5));
    tr.apply(&mut t(1, 1_000, Established, FinWait1, 40000, 80, 5));
    let c = tr.apply(&mut t(1, 1_400, FinWait1, FinWait1, 40000, 80, 0));
    assert_eq!(c.in_old, Some(Duration::from_nanos(400)));
    let c = tr.apply(&mut t(1, 1_500, FinWait1, FinWait2, 40000, 80, 0));
    assert_eq!(c.in_old, Some(Duration::from_nanos(500)));
}

/// A reset is kept only for a connection being followed, and is what `end` reads.
#[test]
fn a_reset_counts_only_for_an_open_connection() {
    let mut tr = Sockets::new(10);
    let reset = |cookie| ResetEvent {
        ts_ns: 1,
        cookie: Cookie(cookie),
        direction: ResetDirection::Received,
        state: LastAck,
    };
    let close = |cookie, ts_ns| {
        let mut close = t(cookie, ts_ns, LastAck, Close, 80, 40000, 0);
        close.fin = Some(crate::event::Final::default());
        close
    };
    tr.on_reset(&reset(1)); // not known
    tr.on_accept(&accept(2, 42, 80));
    tr.on_reset(&reset(2)); // known, no lifecycle yet
    for cookie in [1, 2] {
        let c = tr.apply(&mut close(cookie, 10));
        assert_eq!(c.end, Some(End::Normal), "cookie {cookie}");
        assert_eq!(c.life.unwrap().end, Some(End::Normal));
    }
    tr.apply(&mut t(3, 10, CloseWait, LastAck, 80, 40000, 5));
    tr.on_reset(&reset(3));
    let c = tr.apply(&mut close(3, 20));
    assert_eq!(c.end, Some(End::ResetReceived));
    assert_eq!(c.life.unwrap().end, Some(End::ResetReceived));
}

/// ESTABLISHED>FIN_WAIT1 lost, then FIN_WAIT1>FIN_WAIT1: the socket was last seen in
/// ESTABLISHED, so the re-set starts a stay in FIN_WAIT1, for the event log as for the
/// lifecycle, which agree.
#[test]
fn after_a_lost_record_a_state_set_again_starts_a_stay() {
    let mut tr = Sockets::new(10);
    tr.apply(&mut t(1, 100, Close, SynSent, 40000, 80, 5));
    tr.apply(&mut t(1, 200, SynSent, Established, 40000, 80, 5));
    let c = tr.apply(&mut t(1, 1_000, FinWait1, FinWait1, 40000, 80, 0));
    assert_eq!(c.in_old, Some(Duration::from_nanos(800)));
    let c = tr.apply(&mut t(1, 1_500, FinWait1, FinWait2, 40000, 80, 0));
    assert_eq!(c.in_old, Some(Duration::from_nanos(500)));
    let life = tr
        .apply(&mut t(1, 1_600, FinWait2, Close, 40000, 80, 0))
        .life
        .unwrap();
    let stays: Vec<_> = life
        .states
        .iter()
        .map(|(s, d)| (*s, d.as_nanos()))
        .collect();
    assert_eq!(
        stays,
        [
            (SynSent, 100),
            (Established, 800),
            (FinWait1, 500),
            (FinWait2, 100)
        ]
    );
}
