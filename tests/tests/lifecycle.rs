//! One connection's whole life, on 127.0.0.1 and on ::1: the exact transitions of the
//! listener, the client and the accepted socket, with addresses, ports, owners, namespace and
//! durations on every line.
//!
//! The server and the client are two `enetstat-peer` children, so each socket has a known
//! owner: the client's lines must name the client's pid, the listener's and the accepted
//! socket's lines the server's pid.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use enetstat_tests::{
    Checker, Expect, Peer, PortReservation, Signal, Tracer, current_netns, require_root,
};

fn lifecycle(test: &str, ip: IpAddr) {
    if !require_root(test) {
        return;
    }
    // Held until the tracer stops, so no other socket on this host gets the port.
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let tracer = Tracer::watch_json(&["--port", &server.port().to_string()]);

    let (mut serve, listening) = Peer::serve(server, 1);
    assert_eq!(listening, server.port());
    let mut client = Peer::connect(server, 1);
    let client_port: u16 = client.wait_line("connected ").parse().expect("a port");
    client.wait_success();
    serve.wait_success();

    tracer.wait_for_lines(12, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    let summary = finished.summary();
    let transitions = finished.transitions();

    let mut check = Checker::new(Expect {
        server,
        netns: current_netns(),
        server_pid: serve.pid(),
        client_pid: client.pid(),
        comm: "enetstat-peer",
    });
    let ports = check.connections(&transitions, 1);
    check.check(ports == [client_port], || {
        format!("the client's port should be {client_port} (what connect() got), got {ports:?}")
    });
    check.check(summary.lost == 0, || {
        format!("transitions lost: {summary:?}")
    });
    check.finish();
    reservation.release();
}

#[test]
fn lifecycle_ipv4() {
    lifecycle("lifecycle_ipv4", IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn lifecycle_ipv6() {
    lifecycle("lifecycle_ipv6", IpAddr::V6(Ipv6Addr::LOCALHOST));
}
