//! 2,000 connections as fast as one process can make them: every transition is reported, in
//! order, with nothing lost. (Speed is measured by `cargo xtask bench`, never asserted here.)

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::Duration;

use enetstat_tests::{
    Checker, Expect, Peer, PortReservation, Signal, Tracer, current_netns, require_root,
};

const CONNECTIONS: usize = 2000;

/// One churn at a time: two at full speed beside each other, each with its tracer, hold both
/// CPUs of a small VM, and a tracer that waits for a CPU while its ring fills loses records for
/// a reason that is the test's, not the tracer's.
static ONE_CHURN: Mutex<()> = Mutex::new(());

#[test]
fn churn_2000_connections_ipv4_exact() {
    if !require_root("churn_2000_connections_ipv4_exact") {
        return;
    }
    churn_exact(&[], CONNECTIONS);
}

/// The same churn through a ring small enough to wrap around its end several times: the
/// reader maps the ring's data once and joins a record that wraps from its two parts
/// (`probe/ring.rs`), and every one of them must still decode to the right transition.
#[test]
fn churn_through_a_small_ring_that_wraps_stays_exact() {
    if !require_root("churn_through_a_small_ring_that_wraps_stays_exact") {
        return;
    }
    // Two rings of 1 MiB: about 7,300 records a lap each, for some 40,000 records, so each
    // ring wraps two or three times. Rings of 512 KiB (20,000 records) overflowed now and then
    // on a slow VM: a burst from one CPU while the reader waited for a CPU.
    churn_exact(&["--ring-size", "2M"], 2 * CONNECTIONS);
}

/// `connections` connections churned past `watch -o json` (with `extra` arguments): every
/// transition of each, in order, and nothing lost.
fn churn_exact(extra: &[&str], connections: usize) {
    let _alone = ONE_CHURN
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let port = server.port().to_string();
    let mut args = vec!["--port", port.as_str()];
    args.extend_from_slice(extra);
    let tracer = Tracer::watch_json(&args);

    let (mut churn, listening) = Peer::churn(server, connections as u64);
    assert_eq!(listening, server.port());
    let done = churn.wait_line("done ");
    assert_eq!(
        done.split_whitespace().next(),
        Some(connections.to_string().as_str())
    );
    churn.wait_success();

    tracer.settle(Duration::from_secs(1));
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    let summary = finished.summary();
    let transitions = finished.transitions();

    let pid = churn.pid();
    let mut check = Checker::new(Expect {
        server,
        netns: current_netns(),
        server_pid: pid,
        client_pid: pid,
        comm: "enetstat-peer",
    });
    check.check(summary.lost == 0, || {
        format!("the summary should say 0 lost: {summary:?}")
    });
    check.connections(&transitions, connections);
    check.finish();
    reservation.release();
}
