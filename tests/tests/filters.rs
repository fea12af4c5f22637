//! The filters: `--lport` keeps the server side of a connection, `--rport` the client side,
//! `-4`/`-6` one family, and port lists are comma-separated.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use enetstat_tests::{
    CLIENT, Checker, Expect, Peer, PortReservation, Signal, Tracer, Transition, current_netns,
    require_root,
};

/// One connection to `server` (listener and client in two peers); returns their pids.
fn one_connection(server: SocketAddr) -> (u32, u32) {
    let (mut serve, _) = Peer::serve(server, 1);
    let mut client = Peer::connect(server, 1);
    client.wait_success();
    serve.wait_success();
    (serve.pid(), client.pid())
}

fn stop(tracer: Tracer, lines: usize) -> Vec<Transition> {
    tracer.wait_for_lines(lines, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    finished.summary();
    finished.transitions()
}

/// A checker for the connection to `server` the two peers made.
fn checker(server: SocketAddr, (server_pid, client_pid): (u32, u32)) -> Checker {
    Checker::new(Expect {
        server,
        netns: current_netns(),
        server_pid,
        client_pid,
        comm: "enetstat-peer",
    })
}

/// One connection to a reserved IPv4 port, traced by `watch -o json FLAG PORT` until
/// `lines` transitions came: what it printed, a checker, and the reservation.
fn traced_with(flag: &str, lines: usize) -> (Vec<Transition>, Checker, PortReservation) {
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let tracer = Tracer::watch_json(&[flag, &server.port().to_string()]);
    let pids = one_connection(server);
    (stop(tracer, lines), checker(server, pids), reservation)
}

#[test]
fn lport_keeps_the_server_side() {
    if !require_root("lport_keeps_the_server_side") {
        return;
    }
    let (transitions, mut check, reservation) = traced_with("--lport", 7);
    let server = reservation.addr();
    let roles = check.sort(&transitions);
    check.check(
        roles.listeners.len() == 1 && roles.accepted.len() == 1 && roles.clients.is_empty(),
        || {
            format!(
                "--lport {}: expected the listener and the accepted socket only, got {} \
                 listeners, {} accepted, {} clients",
                server.port(),
                roles.listeners.len(),
                roles.accepted.len(),
                roles.clients.len()
            )
        },
    );
    for seq in &roles.listeners {
        check.listener(seq);
    }
    for seq in &roles.accepted {
        check.accepted(seq);
    }
    check.finish();
    reservation.release();
}

#[test]
fn rport_keeps_the_client_side() {
    if !require_root("rport_keeps_the_client_side") {
        return;
    }
    let (transitions, mut check, reservation) = traced_with("--rport", 5);
    let server = reservation.addr();
    let roles = check.sort(&transitions);
    check.check(
        roles.clients.len() == 1 && roles.listeners.is_empty() && roles.accepted.is_empty(),
        || {
            format!(
                "--rport {}: expected the client socket only, got {} listeners, {} accepted, {} \
                 clients",
                server.port(),
                roles.listeners.len(),
                roles.accepted.len(),
                roles.clients.len()
            )
        },
    );
    for seq in &roles.clients {
        check.client(seq, &CLIENT);
    }
    check.finish();
    reservation.release();
}

/// With one IPv4 and one IPv6 connection on two ports, `-4`/`-6 --port P4,P6` keeps exactly
/// the 12 transitions of its own family.
fn family(test: &str, flag: &str, keep_v6: bool) {
    if !require_root(test) {
        return;
    }
    let v4 = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let v6 = PortReservation::new(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let ports = format!("{},{}", v4.port(), v6.port());
    let tracer = Tracer::watch_json(&[flag, "--port", &ports]);
    let v4_pids = one_connection(v4.addr());
    let v6_pids = one_connection(v6.addr());
    let transitions = stop(tracer, 12);

    let mut check = if keep_v6 {
        checker(v6.addr(), v6_pids)
    } else {
        checker(v4.addr(), v4_pids)
    };
    check.connections(&transitions, 1);
    check.finish();
    v4.release();
    v6.release();
}

#[test]
fn ipv4_flag_keeps_ipv4_only() {
    family("ipv4_flag_keeps_ipv4_only", "-4", false);
}

#[test]
fn ipv6_flag_keeps_ipv6_only() {
    family("ipv6_flag_keeps_ipv6_only", "-6", true);
}
