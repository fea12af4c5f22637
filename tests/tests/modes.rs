//! The fallback modes, forced on this kernel (`ENETSTAT_PROBE_MODE`), give the same exact
//! transitions and owners as the full one, with null where the mode cannot know:
//!
//! - `tp_btf_cookie_field` is how enetstat traces on Linux 5.8 to 5.11, which lack the cookie
//!   helper for tracing programs: sockets born while tracing have `cookie` null and an `id`
//!   of enetstat's own;
//! - `tracepoint` is how it traces without BTF: no cookie, network namespace or counters.
//!
//! Each mode is named by `-v` and the daemon's `stats`, and `-c --recent` shows closed and
//! live connections in every mode. The kernel matrix (`cargo xtask matrix`) runs the real
//! kernels that need these modes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use enetstat_tests::daemon::{Conn, Daemon};
use enetstat_tests::recent::continuous_shows_closed_and_live;
use enetstat_tests::scenario::Netns;
use enetstat_tests::{
    Checker, Expect, Peer, PortReservation, Signal, Tracer, current_netns, foreign_tracing_progs,
    require_root, under_ci, wait_progs_gone,
};
use serde_json::{Value, json};

const MODE_ENV: &str = "ENETSTAT_PROBE_MODE";

/// Every mode, as `-v` and `stats` name them.
const MODES: [&str; 3] = ["tp_btf", "tp_btf_cookie_field", "tracepoint"];

/// The tests of this file take turns: each would see the other's tracing programs as someone
/// else's (see [`cookies_made_by_others`]) and so check less.
static TURN: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn turn() -> std::sync::MutexGuard<'static, ()> {
    TURN.lock().unwrap_or_else(|e| e.into_inner())
}

/// Whether someone else's tracing programs are loaded beside `tracer`'s, after giving those
/// of a tracer that just ended (an earlier test's) the moment the kernel takes to free them.
fn others_now(tracer: &Tracer) -> bool {
    let foreign = foreign_tracing_progs(tracer.pid());
    !foreign.is_empty() && !wait_progs_gone(&foreign, Duration::from_secs(2)).is_empty()
}

/// True when someone else's tracing programs ran at `tracer`'s start or end. The cookie-field
/// mode reads the cookie stored in the socket, which the kernel makes only when asked: another
/// tracer on the machine that asks for every socket's cookie then gives these sockets one too,
/// which this mode then shows (the real one). Without such a tracer, they must have none.
///
/// Then the test can only check the weaker rule (a cookie shown is the socket's own). Under CI
/// (`CI=true`), where nothing else traces, that fails the test; elsewhere it is said on stderr.
fn cookies_made_by_others(test: &str, tracer: &Tracer, at_start: bool) -> bool {
    let others = at_start || others_now(tracer);
    if others {
        assert!(
            !under_ci(),
            "{test}: another process's tracing programs ran beside the test's tracer, so the              cookie-field mode's sockets could get cookies from it; under CI nothing else may              trace"
        );
        use std::io::Write as _;
        let _ = writeln!(
            std::io::stderr(),
            "{test}: another process traces on this machine: checking only that any cookie              shown is the socket's own, not that there is none"
        );
    }
    others
}

fn transitions_in(mode: &str, test: &str, ip: IpAddr) {
    if !require_root(test) {
        return;
    }
    let _turn = turn();
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let port = server.port().to_string();
    let tracer = Tracer::start_with_env(
        &["watch", "-o", "json", "--port", &port],
        &[(MODE_ENV, mode)],
    );

    let others_at_start = others_now(&tracer);
    let (mut serve, listening) = Peer::serve(server, 1);
    assert_eq!(listening, server.port());
    let mut client = Peer::connect(server, 1);
    let client_port: u16 = client.wait_line("connected ").parse().expect("a port");
    client.wait_success();
    serve.wait_success();

    tracer.wait_for_lines(12, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let others = cookies_made_by_others(test, &tracer, others_at_start);
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
        // The classic tracepoint cannot reach the socket's cgroup: null, not 0.
        let line: Value = serde_json::from_str(&t.raw).expect("JSON");
        check.check(line["cgroup"].is_null() == classic, || {
            format!("{mode}: cgroup should be null exactly without BTF:\n{t}")
        });
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

/// `life` in each mode: the byte counts where the mode has them (exact: the connection carries
/// no data, so 0), null where not, and every connection complete (its birth seen).
fn life_in(mode: &str, test: &str) {
    if !require_root(test) {
        return;
    }
    let _turn = turn();
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let port = server.port().to_string();
    let tracer = Tracer::start_with_env(
        &["life", "-o", "json", "--port", &port],
        &[(MODE_ENV, mode)],
    );
    let others_at_start = others_now(&tracer);
    let (mut serve, _) = Peer::serve(server, 1);
    let mut client = Peer::connect(server, 1);
    client.wait_success();
    serve.wait_success();
    tracer.wait_for_lines(2, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let others = cookies_made_by_others(test, &tracer, others_at_start);
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
            assert_eq!(life["bytes_received"], Value::Null, "{mode}: {life}");
            assert_eq!(life["netns"], Value::Null, "{mode}: {life}");
            assert_eq!(life["cgroup"], Value::Null, "{mode}: not known: {life}");
        } else {
            assert!(life["cgroup"].is_u64(), "{mode}: {life}");
            assert_eq!(life["bytes_sent"], 0, "{mode}: {life}");
            assert_eq!(life["bytes_received"], 0, "{mode}: {life}");
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

/// `-v` says `tracing in mode <mode>` and the daemon's `stats` says `"mode": "<mode>"`, for
/// each mode forced with `ENETSTAT_PROBE_MODE` (all three load on this kernel).
#[test]
fn each_mode_is_named_by_verbose_and_the_daemons_stats() {
    if !require_root("each_mode_is_named_by_verbose_and_the_daemons_stats") {
        return;
    }
    let _turn = turn();
    for mode in MODES {
        let env = [(MODE_ENV, mode)];
        let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let port = reservation.port().to_string();
        let tracer = Tracer::start_with_env(&["watch", "-v", "--port", &port], &env);
        let finished = tracer.stop(Signal::Int);
        finished.assert_success();
        let said = format!("tracing in mode {mode}");
        assert!(
            finished.stderr.iter().any(|l| l.contains(&said)
                && l[l.find(&said).unwrap_or(0) + said.len()..]
                    .chars()
                    .next()
                    .is_none_or(|c| !c.is_ascii_alphanumeric() && c != '_')),
            "{mode}: `watch -v` should say `{said}`: {:#?}",
            finished.stderr
        );
        reservation.release();

        let daemon = Daemon::start_with_env("mode", &[], &env);
        let stats = Conn::connect(&daemon.socket).request(&json!({"v": 1, "op": "stats"}));
        assert_eq!(
            stats["stats"]["mode"], mode,
            "{mode}: the daemon's stats: {stats}"
        );
        let (stopped, _dir, _socket) = daemon.stop(Signal::Term);
        stopped.assert_success();
    }
}

/// `-c --recent -o json` in a fallback mode, in a namespace of the test's own (its table is
/// that namespace's): see [`continuous_shows_closed_and_live`].
fn continuous_in(mode: &str, test: &str) {
    if !require_root(test) {
        return;
    }
    let _turn = turn();
    let ns = Netns::new("cmode");
    // The port is the namespace's own: nothing else listens there.
    continuous_shows_closed_and_live(mode, 7070, &|bin| ns.command(bin), &[(MODE_ENV, mode)]);
}

#[test]
fn continuous_snapshots_in_cookie_field_mode() {
    continuous_in(
        "tp_btf_cookie_field",
        "continuous_snapshots_in_cookie_field_mode",
    );
}

#[test]
fn continuous_snapshots_in_tracepoint_mode() {
    continuous_in("tracepoint", "continuous_snapshots_in_tracepoint_mode");
}
