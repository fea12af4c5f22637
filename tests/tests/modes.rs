//! The fallback modes, forced on this kernel (`ENETSTAT_PROBE_MODE`), give the same exact
//! transitions and owners as the full one, with null where the mode cannot know:
//!
//! - `tp_btf_cookie_field` is how enetstat traces on Linux 5.8 to 5.11, which lack the cookie
//!   helper for tracing programs: sockets born while tracing have `cookie` null and an `id`
//!   of enetstat's own;
//! - `tracepoint` is how it traces without BTF: no cookie, network namespace or counters.
//!
//! The kernel matrix (`cargo xtask matrix`) runs the real kernels that need these modes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use enetstat_tests::{
    Checker, Expect, Peer, PortReservation, Signal, Tracer, current_netns, foreign_tracing_progs,
    require_root,
};
use serde_json::Value;

const MODE_ENV: &str = "ENETSTAT_PROBE_MODE";

/// The cookie-field tests take turns: each would see the other's tracing programs as
/// someone else's (see [`cookies_made_by_others`]) and so check less.
static COOKIE_FIELD_TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn(mode: &str) -> Option<std::sync::MutexGuard<'static, ()>> {
    (mode == "tp_btf_cookie_field")
        .then(|| COOKIE_FIELD_TURN.lock().unwrap_or_else(|e| e.into_inner()))
}

/// True when someone else's tracing programs ran at `tracer`'s start or end. The cookie-field
/// mode reads the cookie stored in the socket, which the kernel makes only when asked: another
/// tracer on the machine that asks for every socket's cookie then gives these sockets one too,
/// which this mode then shows (the real one). Without such a tracer, they must have none.
fn cookies_made_by_others(tracer: &Tracer, at_start: bool) -> bool {
    at_start || !foreign_tracing_progs(tracer.pid()).is_empty()
}

fn transitions_in(mode: &str, test: &str, ip: IpAddr) {
    if !require_root(test) {
        return;
    }
    let _turn = turn(mode);
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let port = server.port().to_string();
    let tracer = Tracer::start_with_env(
        &["watch", "-o", "json", "--port", &port],
        &[(MODE_ENV, mode)],
    );

    let others_at_start = !foreign_tracing_progs(tracer.pid()).is_empty();
    let (mut serve, listening) = Peer::serve(server, 1);
    assert_eq!(listening, server.port());
    let mut client = Peer::connect(server, 1);
    let client_port: u16 = client.wait_line("connected ").parse().expect("a port");
    client.wait_success();
    serve.wait_success();

    tracer.wait_for_lines(12, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let others = cookies_made_by_others(&tracer, others_at_start);
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    let summary = finished.summary();
    let transitions = finished.transitions();

    let classic = mode == "tracepoint";
    let mut check = Checker::new(Expect {
        server,
        netns: if classic { 0 } else { current_netns() },
        server_pid: serve.pid(),
        client_pid: client.pid(),
        comm: "enetstat-peer",
    });
    let ports = check.connections(&transitions, 1);
    check.check(ports == [client_port], || {
        format!("the client's port should be {client_port}, got {ports:?}")
    });
    for t in &transitions {
        match t.real_cookie {
            Some(cookie) if others && !classic => check.check(t.cookie == cookie, || {
                format!("{mode}: a socket with a cookie has it as its id:\n{t}")
            }),
            _ => {
                check.check(t.real_cookie.is_none(), || {
                    format!("{mode}: a socket born while tracing has no cookie to show:\n{t}")
                });
                check.check(t.cookie >> 63 == 1, || {
                    format!("{mode}: the id of a socket without a cookie has its top bit set:\n{t}")
                });
            }
        }
    }
    check.check(summary.lost == 0, || {
        format!("transitions lost: {summary:?}")
    });
    check.finish();
    reservation.release();
}

#[test]
fn cookie_field_mode_ipv4() {
    transitions_in(
        "tp_btf_cookie_field",
        "cookie_field_mode_ipv4",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
}

#[test]
fn cookie_field_mode_ipv6() {
    transitions_in(
        "tp_btf_cookie_field",
        "cookie_field_mode_ipv6",
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    );
}

#[test]
fn tracepoint_mode_ipv4() {
    transitions_in(
        "tracepoint",
        "tracepoint_mode_ipv4",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
    );
}

#[test]
fn tracepoint_mode_ipv6() {
    transitions_in(
        "tracepoint",
        "tracepoint_mode_ipv6",
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    );
}

/// `life` in each mode: the byte counts where the mode has them (exact), null where not, and
/// every connection complete (its birth seen).
fn life_in(mode: &str, test: &str) {
    if !require_root(test) {
        return;
    }
    let _turn = turn(mode);
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let port = server.port().to_string();
    let tracer = Tracer::start_with_env(
        &["life", "-o", "json", "--port", &port],
        &[(MODE_ENV, mode)],
    );
    let others_at_start = !foreign_tracing_progs(tracer.pid()).is_empty();
    let (mut serve, _) = Peer::serve(server, 1);
    let mut client = Peer::connect(server, 1);
    client.wait_success();
    serve.wait_success();
    tracer.wait_for_lines(2, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let others = cookies_made_by_others(&tracer, others_at_start);
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    let lives: Vec<Value> = finished
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(
        lives.len(),
        2,
        "one client and one accepted socket: {lives:#?}"
    );
    for life in &lives {
        assert_eq!(life["complete"], true, "{mode}: {life}");
        if !(others && mode != "tracepoint" && life["cookie"].is_u64()) {
            assert_eq!(life["cookie"], Value::Null, "{mode}: {life}");
        } else {
            assert_eq!(life["cookie"], life["id"], "{mode}: {life}");
        }
        if mode == "tracepoint" {
            assert_eq!(life["bytes_sent"], Value::Null, "{mode}: {life}");
            assert_eq!(life["netns"], Value::Null, "{mode}: {life}");
        } else {
            assert!(life["bytes_sent"].is_u64(), "{mode}: {life}");
            assert_eq!(life["netns"], current_netns(), "{mode}: {life}");
        }
        assert!(life["pid"].as_u64().is_some(), "{mode}: an owner: {life}");
    }
    reservation.release();
}

#[test]
fn life_in_cookie_field_mode() {
    life_in("tp_btf_cookie_field", "life_in_cookie_field_mode");
}

#[test]
fn life_in_tracepoint_mode() {
    life_in("tracepoint", "life_in_tracepoint_mode");
}
