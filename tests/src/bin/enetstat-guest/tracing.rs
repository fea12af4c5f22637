//! `watch` and `life` on every scenario of [`crate::traffic`], checked with the end-to-end
//! suite's [`Checker`]; and a subscription through the daemon, checked the same way.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use enetstat_tests::daemon::Daemon;
use enetstat_tests::life::Life;
use enetstat_tests::{
    Checker, Expect, PortReservation, REFUSED, Signal, State, Tracer, Transition, current_netns,
};

use State::{CloseWait, Established, FinWait1, FinWait2, LastAck, SynRecv, SynSent};

use crate::progs::Progs;
use crate::traffic::{
    Connection, MIB, Prefork, Refused, Transfer, connection, connection_on, prefork, refused,
    transfer,
};

/// The states a client that closes first leaves, in order.
const ACTIVE_CLOSE: [State; 4] = [SynSent, Established, FinWait1, FinWait2];

/// The states the accepted socket of such a client leaves, in order.
const PASSIVE_CLOSE: [State; 4] = [SynRecv, Established, CloseWait, LastAck];

/// How long to wait for lines the traffic should have made (they come within milliseconds;
/// when some never come, the check fails after this).
const LINES_TIMEOUT: Duration = Duration::from_secs(15);

/// Quiet time after the traffic, for lines still on their way.
const SETTLE: Duration = Duration::from_secs(1);

/// What the watch and life tracers printed while every scenario ran.
pub(crate) struct Traced {
    transitions: Vec<Transition>,
    lives: Vec<Life>,
    netns: u64,
    /// The mode the `watch` tracer named with `-v`.
    pub(crate) mode: Option<String>,
    /// Where it said it follows accepts (`-v`).
    pub(crate) accepts: Option<String>,
    pub(crate) v4: Connection,
    pub(crate) v6: Connection,
    pub(crate) refused: Refused,
    pub(crate) transfer: Transfer,
    pub(crate) prefork: Prefork,
}

/// Starts `watch -o json -v` (`-v` names the mode) and `life -o json`, runs every scenario, stops both tracers and
/// checks they exited cleanly, printed their summary and lost nothing.
pub(crate) fn trace_scenarios(progs: &mut Progs) -> Traced {
    let watch = Tracer::watch_json(&["-v"]);
    progs.add("enetstat watch", watch.pid());
    let life = Tracer::start(&["life", "-o", "json", "-v"]);
    progs.add("enetstat life", life.pid());

    let (v4, r1) = connection(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (v6, r2) = connection(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let (refused, r3) = refused(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (transfer, r4) = transfer(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (prefork, r5) = prefork(IpAddr::V4(Ipv4Addr::LOCALHOST));

    // 12 lines per connection (the transfer and the pre-fork one too), 2 for the refused
    // connect; a lifecycle per connected socket and one for the refused one.
    watch.wait_for_lines(4 * 12 + 2, LINES_TIMEOUT);
    life.wait_for_lines(4 * 2 + 1, LINES_TIMEOUT);
    let mut finished = Vec::new();
    for tracer in [watch, life] {
        tracer.settle(SETTLE);
        let done = tracer.stop(Signal::Int);
        done.assert_success();
        let summary = done.summary();
        assert_eq!(
            summary.lost,
            0,
            "`{}` lost records: {summary:?}; its stderr:\n{}",
            done.command,
            done.stderr.join("\n")
        );
        finished.push(done);
    }
    for reservation in [r1, r2, r3, r4, r5] {
        reservation.release();
    }
    let lives = finished[1]
        .stdout
        .iter()
        .map(|l| Life::parse(l))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    // How far each program took this kernel's verifier (`-v`, Linux 5.16+): the console log
    // then shows how near a change brings a program to the limit, before one fails.
    for line in &finished[0].stderr {
        if let Some(at) = line.find("verifier: ") {
            crate::report::print_line(&format!("VERIFIER {}", &line[at + "verifier: ".len()..]));
        }
    }
    let (transitions, lives) = without_discarded_twins(finished[0].transitions(), lives);
    Traced {
        mode: crate::mode::logged_mode(&finished[0].stderr),
        accepts: crate::mode::logged_accepts(&finished[0].stderr),
        transitions,
        lives,
        // Without BTF enetstat cannot read the socket's namespace: every line says null.
        netns: if no_btf() { 0 } else { current_netns() },
        v4,
        v6,
        refused,
        transfer,
        prefork,
    }
}

/// The pre-fork server: before accept the listener's maker (its only known holder) owns the
/// accepted socket; from accept on, the acceptor, also where the client's FIN makes the
/// transition in softirq. Without BTF the accept cannot be traced (no task layout): there the
/// acceptor is known from its own close on.
pub(crate) fn check_prefork(traced: &Traced) {
    let p = &traced.prefork;
    let server_side: Vec<&Transition> = traced
        .transitions
        .iter()
        .filter(|t| t.lport == Some(p.server.port()) && t.rport == Some(p.client_port))
        .collect();
    let states: Vec<(State, State)> = server_side.iter().map(|t| t.states()).collect();
    assert_eq!(
        states,
        [
            (State::Listen, SynRecv),
            (SynRecv, Established),
            (Established, CloseWait),
            (CloseWait, LastAck),
            (LastAck, State::Close),
        ],
        "{server_side:?}"
    );
    for t in server_side {
        let want = match t.old {
            State::Listen | SynRecv => p.listener_pid,
            Established if no_btf() => p.listener_pid,
            _ => p.acceptor_pid,
        };
        assert_eq!(
            t.pid,
            Some(want),
            "listener made by {}, accepted by {}: {t}",
            p.listener_pid,
            p.acceptor_pid
        );
    }
    let life = traced
        .lives
        .iter()
        .find(|l| l.lport == Some(p.server.port()) && l.rport == Some(p.client_port))
        .unwrap_or_else(|| panic!("no life record of the pre-fork server's connection"));
    assert_eq!(life.pid, Some(p.acceptor_pid), "{}", life.raw);
}

/// Leaves out an accepted socket the kernel made twice and threw one away: on Linux 6.1,
/// under TCG, the ACK completing a handshake was now and then taken by two CPUs at once, each
/// making the child socket; the one that loses the race goes LISTEN>SYN_RECV>CLOSE (a reset
/// sent) while its twin, with the same ports, is accepted. enetstat reports both truly; the
/// checks count connections, so the discarded twin (seen by its one-state lifecycle, and only
/// where a twin completed) is set aside here, and said on stderr.
fn without_discarded_twins(
    transitions: Vec<Transition>,
    lives: Vec<Life>,
) -> (Vec<Transition>, Vec<Life>) {
    let twin_of = |l: &Life| {
        l.states.len() == 1
            && l.states[0].state == SynRecv
            && l.end.as_deref() == Some("reset_sent")
            && lives.iter().any(|o| {
                o.cookie != l.cookie
                    && o.lport == l.lport
                    && o.rport == l.rport
                    && o.raddr == l.raddr
                    && o.states.len() > 1
            })
    };
    let discarded: Vec<u64> = lives
        .iter()
        .filter(|l| twin_of(l))
        .map(|l| l.cookie)
        .collect();
    for id in &discarded {
        eprintln!("enetstat-guest: the kernel discarded a twin accepted socket (id {id})");
    }
    (
        transitions
            .into_iter()
            .filter(|t| !discarded.contains(&t.cookie))
            .collect(),
        lives
            .into_iter()
            .filter(|l| !discarded.contains(&l.cookie))
            .collect(),
    )
}

/// The transitions on `port` (either end), as a `--port` filter would show them.
fn on_port(transitions: &[Transition], port: u16) -> Vec<Transition> {
    transitions
        .iter()
        .filter(|t| t.lport == Some(port) || t.rport == Some(port))
        .cloned()
        .collect()
}

pub(crate) fn check_lifecycle(traced: &Traced, c: &Connection) {
    let transitions = on_port(&traced.transitions, c.server.port());
    let mut check = Checker::new(Expect {
        server: c.server,
        netns: traced.netns,
        server_pid: c.server_pid,
        client_pid: c.client_pid,
        comm: "enetstat-peer",
    });
    let ports = check.connections(&transitions, 1);
    check.check(ports == [c.client_port], || {
        format!(
            "the client's port should be {} (what connect() got), got {ports:?}",
            c.client_port
        )
    });
    check.finish();
}

pub(crate) fn check_refused(traced: &Traced) {
    let r = &traced.refused;
    let transitions = on_port(&traced.transitions, r.closed.port());
    let mut check = Checker::new(Expect {
        server: r.closed,
        netns: traced.netns,
        server_pid: 0,
        client_pid: r.client_pid,
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
}

/// What one lifecycle must say.
struct Want<'a> {
    local_port: Option<u16>,
    remote: SocketAddr,
    pub(crate) pid: u32,
    comm: &'a str,
    states: &'a [State],
    end: &'a str,
    bytes: u64,
}

pub(crate) fn check_life(traced: &Traced) {
    let mut problems = Vec::new();
    let mut want = |w: Want<'_>| {
        let found: Vec<&Life> = traced
            .lives
            .iter()
            .filter(|l| {
                l.raddr == w.remote.ip()
                    && l.rport == Some(w.remote.port())
                    && w.local_port.is_none_or(|p| l.lport == Some(p))
            })
            .collect();
        let [life] = found.as_slice() else {
            problems.push(format!(
                "expected one lifecycle to {} (local port {:?}), got {}",
                w.remote,
                w.local_port,
                found.len()
            ));
            return;
        };
        let family = if w.remote.is_ipv4() { "ipv4" } else { "ipv6" };
        let mut wrong = Vec::new();
        if life.family != family {
            wrong.push(format!("family should be {family}"));
        }
        if life.pid != Some(w.pid) || life.comm.as_deref() != Some(w.comm) {
            wrong.push(format!("owner should be pid {} comm {}", w.pid, w.comm));
        }
        let classic = no_btf();
        if life.netns != (traced.netns != 0).then_some(traced.netns) {
            wrong.push(format!("netns should be {}", traced.netns));
        }
        if life.state_names() != w.states {
            wrong.push(format!("states should be {:?}", w.states));
        }
        // Without BTF there is no socket error nor reset to tell how it ended.
        let end = (!classic).then_some(w.end);
        if life.end.as_deref() != end {
            wrong.push(format!("end should be {end:?}"));
        }
        if !life.complete {
            wrong.push("complete should be true".to_owned());
        }
        let bytes = (!classic).then_some(w.bytes);
        if life.bytes_sent != bytes || life.bytes_received != bytes {
            wrong.push(format!("bytes_sent and bytes_received should be {bytes:?}"));
        }
        if !wrong.is_empty() {
            problems.push(format!(
                "{}:{} -> {}: {}",
                life.laddr,
                life.lport.unwrap_or(0),
                w.remote,
                wrong.join(", ")
            ));
        }
    };
    for c in [&traced.v4, &traced.v6] {
        want(Want {
            local_port: Some(c.client_port),
            remote: c.server,
            pid: c.client_pid,
            comm: "enetstat-peer",
            states: &ACTIVE_CLOSE,
            end: "normal",
            bytes: 0,
        });
        want(Want {
            local_port: Some(c.server.port()),
            remote: SocketAddr::new(c.server.ip(), c.client_port),
            pid: c.server_pid,
            comm: "enetstat-peer",
            states: &PASSIVE_CLOSE,
            end: "normal",
            bytes: 0,
        });
    }
    let t = &traced.transfer;
    want(Want {
        local_port: Some(t.client_port),
        remote: t.server,
        pid: t.client_pid,
        comm: "enetstat-ender",
        states: &ACTIVE_CLOSE,
        end: "normal",
        bytes: MIB,
    });
    want(Want {
        local_port: Some(t.server.port()),
        remote: SocketAddr::new(t.server.ip(), t.client_port),
        pid: t.server_pid,
        comm: "enetstat-ender",
        states: &PASSIVE_CLOSE,
        end: "normal",
        bytes: MIB,
    });
    let r = &traced.refused;
    want(Want {
        local_port: None,
        remote: r.closed,
        pid: r.client_pid,
        comm: "enetstat-peer",
        states: &[SynSent],
        end: "refused",
        bytes: 0,
    });
    // Two per connection (the pre-fork one too, checked in `check_prefork`), one refused.
    let expected = 9;
    if traced.lives.len() != expected {
        problems.push(format!(
            "expected {expected} lifecycles, got {}",
            traced.lives.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with `life -o json`: {}\nall lifecycles:\n{}",
        problems.len(),
        problems.join("; "),
        traced
            .lives
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// A subscription through the daemon: `enetstat --socket S watch -o json --port P` sees one
/// connection's exact transitions.
pub(crate) fn daemon_watch(daemon: &Daemon) {
    let socket = daemon.socket.to_str().expect("a UTF-8 path");
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let port = reservation.port().to_string();
    let tracer = Tracer::watch_json(&["--port", &port, "--socket", socket]);
    let (c, inner) = connection_on(reservation);
    tracer.wait_for_lines(12, LINES_TIMEOUT);
    tracer.settle(SETTLE);
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    let transitions = finished.transitions();
    let mut check = Checker::new(Expect {
        server: c.server,
        netns: if no_btf() { 0 } else { current_netns() },
        server_pid: c.server_pid,
        client_pid: c.client_pid,
        comm: "enetstat-peer",
    });
    let ports = check.connections(&transitions, 1);
    check.check(ports == [c.client_port], || {
        format!(
            "the client's port should be {}, got {ports:?}",
            c.client_port
        )
    });
    check.finish();
    inner.release();
}

/// Whether this guest runs without BTF (`enetstat.nobtf` on the kernel command line): then
/// enetstat traces with the classic tracepoint and has no namespaces, counters or endings.
pub(crate) fn no_btf() -> bool {
    std::env::var_os("ENETSTAT_GUEST_NOBTF").is_some()
}
