//! Every way enetstat stops (SIGINT, SIGTERM, `--count N`) exits 0, prints its summary, and
//! leaves nothing attached: every eBPF program it held is gone afterwards.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use enetstat_tests::{
    Checker, Expect, Finished, Peer, PortReservation, Signal, Tracer, current_netns,
    prog_ids_held_by, require_root, wait_progs_gone,
};

/// How the tracer is made to stop.
enum Stop {
    Signal(Signal),
    Count(usize),
}

/// Starts a tracer on a reserved port, notes its programs, makes one connection (12
/// transitions), stops it as `how` says, and checks that it exited cleanly and detached.
/// Returns what it printed, what the test knows about its sockets, and the port reservation
/// (to release once the caller is done).
fn run(how: &Stop) -> (Finished, Expect, PortReservation) {
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let port = server.port().to_string();
    let count;
    let mut args = vec!["--port", port.as_str()];
    if let Stop::Count(n) = how {
        count = n.to_string();
        args.extend(["--count", count.as_str()]);
    }
    let tracer = Tracer::watch_json(&args);

    let progs: BTreeSet<u32> = prog_ids_held_by(tracer.pid());
    assert!(
        !progs.is_empty(),
        "found no eBPF programs held by enetstat (pid {}) while it traces",
        tracer.pid()
    );

    let (mut serve, _) = Peer::serve(server, 1);
    let mut client = Peer::connect(server, 1);
    client.wait_success();
    serve.wait_success();

    let finished = match how {
        Stop::Signal(signal) => {
            tracer.settle(Duration::from_secs(1));
            tracer.stop(*signal)
        }
        Stop::Count(_) => tracer.wait_exit(),
    };
    finished.assert_success();
    finished.summary();

    let left = wait_progs_gone(&progs, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "eBPF programs {left:?} of the {} enetstat held ({progs:?}) still exist after it exited",
        progs.len()
    );
    let expect = Expect {
        server,
        netns: current_netns(),
        server_pid: serve.pid(),
        client_pid: client.pid(),
        comm: "enetstat-peer",
    };
    (finished, expect, reservation)
}

#[test]
fn sigint_exits_0_and_detaches() {
    if !require_root("sigint_exits_0_and_detaches") {
        return;
    }
    run(&Stop::Signal(Signal::Int));
}

#[test]
fn sigterm_exits_0_and_detaches() {
    if !require_root("sigterm_exits_0_and_detaches") {
        return;
    }
    run(&Stop::Signal(Signal::Term));
}

#[test]
fn count_exits_0_and_detaches() {
    if !require_root("count_exits_0_and_detaches") {
        return;
    }
    run(&Stop::Count(5));
}

/// `--count 7` on a connection that makes 12 transitions prints exactly 7, all of them lines
/// of the test's own sockets, and says so in its summary.
#[test]
fn count_prints_exactly_n() {
    if !require_root("count_prints_exactly_n") {
        return;
    }
    const N: usize = 7;
    let (finished, expect, reservation) = run(&Stop::Count(N));
    assert_eq!(
        finished.stdout.len(),
        N,
        "`--count {N}` printed {} lines:\n{}",
        finished.stdout.len(),
        finished.stdout.join("\n")
    );
    assert_eq!(finished.summary().shown, N as u64);
    let transitions = finished.transitions();
    let port = expect.server.port();
    let mut check = Checker::new(expect);
    for t in &transitions {
        check.check(t.lport == Some(port) || t.rport == Some(port), || {
            format!("a line that is not on port {port}:\n{t}")
        });
    }
    check.finish();
    reservation.release();
}
