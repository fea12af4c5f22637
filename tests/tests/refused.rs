//! A refused connect: the client's SYN meets a port nothing listens on, the kernel answers with
//! a reset, and the socket goes CLOSE->SYN_SENT->CLOSE.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use enetstat_tests::{
    Checker, Expect, Peer, PortReservation, REFUSED, Signal, Tracer, current_netns, require_root,
};

/// `enetstat-peer connect` exits with this when the connection is refused.
const EXIT_REFUSED: i32 = 3;

fn refused(test: &str, ip: IpAddr) {
    if !require_root(test) {
        return;
    }
    // Bound and never listening: a connect to it is refused, and no one else gets the port.
    let reservation = PortReservation::new(ip);
    let closed = reservation.addr();
    let tracer = Tracer::watch_json(&["--port", &closed.port().to_string()]);

    let mut client = Peer::connect(closed, 1);
    let status = client.wait();
    assert_eq!(
        status.code(),
        Some(EXIT_REFUSED),
        "connect to {closed} should be refused"
    );

    tracer.wait_for_lines(2, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    finished.summary();
    let transitions = finished.transitions();

    let mut check = Checker::new(Expect {
        server: closed,
        netns: current_netns(),
        server_pid: 0, // no server
        client_pid: client.pid(),
        comm: "enetstat-peer",
    });
    check.check(transitions.len() == REFUSED.len(), || {
        format!(
            "expected exactly {} transitions, got {}",
            REFUSED.len(),
            transitions.len()
        )
    });
    let roles = check.sort(&transitions);
    check.check(
        roles.clients.len() == 1 && roles.listeners.is_empty() && roles.accepted.is_empty(),
        || "expected one client socket and nothing else".to_owned(),
    );
    for seq in &roles.clients {
        check.client(seq, &REFUSED);
    }
    check.finish();
    reservation.release();
}

#[test]
fn refused_ipv4() {
    refused("refused_ipv4", IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn refused_ipv6() {
    refused("refused_ipv6", IpAddr::V6(Ipv6Addr::LOCALHOST));
}
