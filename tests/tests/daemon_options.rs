//! Daemon options the README promises: `--keep-closed` forgets closed connections after that
//! long, `--keep-capabilities` keeps every capability, and `--event-log` is written as the
//! `--user` user, whose name the error gives when that user may not write there.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
    os::unix::fs::{MetadataExt, PermissionsExt},
    process::{Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use enetstat_tests::{
    Peer, PortReservation, Signal,
    daemon::{Daemon, TempDir},
    enetstat_bin, require_root,
};
use serde_json::{Value, json};

/// The closed connections on `port` a `recent_ms` snapshot shows, by cookie, each with when
/// it closed: the snapshot's own `closed_ago_ms` counted back from a moment before the request,
/// so never later than the real close.
fn closed_on(daemon: &Daemon, port: u16) -> BTreeMap<u64, Instant> {
    let asked = Instant::now();
    let reply = daemon.connect().request(&json!({
        "v": 1, "op": "snapshot", "filter": format!("port = :{port}"), "recent_ms": 3_600_000
    }));
    let v: Value = serde_json::from_str(reply["output"].as_str().expect("output")).unwrap();
    v["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["closed"] == true)
        .map(|s| {
            let ago = s["closed_ago_ms"].as_f64().expect("closed_ago_ms");
            let closed = asked
                .checked_sub(Duration::from_secs_f64(ago / 1000.0))
                .expect("a close after the test began");
            (s["cookie"].as_u64().expect("a cookie"), closed)
        })
        .collect()
}

#[test]
fn daemon_keep_closed_forgets_closed_connections_after_that_long() {
    if !require_root("daemon_keep_closed_forgets_closed_connections_after_that_long") {
        return;
    }
    const KEEP: Duration = Duration::from_secs(5);
    let daemon = Daemon::start("keep", &["--keep-closed", "5s", "--reconcile", "200ms"]);
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (mut churn, _) = Peer::churn(reservation.addr(), 3);
    churn.wait_success();
    // Both sides of the three connections (and the churn's listener), asked for an hour
    // back, once the daemon has applied their last transitions.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut closed = BTreeMap::new();
    while closed.len() < 6 {
        assert!(
            Instant::now() < deadline,
            "only {} closed sockets showed",
            closed.len()
        );
        thread::sleep(Duration::from_millis(20));
        closed = closed_on(&daemon, reservation.port());
    }
    // Each is forgotten once older than --keep-closed (expiry runs at each reconciliation),
    // never before: by when it closed as the daemon tells it, not by when the test saw it.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !closed.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} closed connections kept for 30 s",
            closed.len()
        );
        thread::sleep(Duration::from_millis(200));
        let shown = closed_on(&daemon, reservation.port());
        let now = Instant::now();
        for (cookie, at) in &closed {
            if !shown.contains_key(cookie) {
                let age = now - *at;
                assert!(
                    age >= KEEP,
                    "cookie {cookie} forgotten {age:?} after it closed, before --keep-closed 5s"
                );
            }
        }
        closed.retain(|cookie, _| shown.contains_key(cookie));
    }
    reservation.release();
}

/// `CapEff` of every thread of `pid`.
fn thread_cap_eff(pid: u32) -> Vec<String> {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .unwrap_or_default()
                .trim()
                .to_owned()
        })
        .collect()
}

#[test]
fn daemon_keep_capabilities_keeps_every_capability() {
    if !require_root("daemon_keep_capabilities_keeps_every_capability") {
        return;
    }
    let ours = thread_cap_eff(std::process::id())[0].clone();
    let kept = Daemon::start("keepcaps", &["--keep-capabilities"]);
    let caps = thread_cap_eff(kept.pid());
    assert!(caps.len() > 1, "the daemon runs threads");
    assert!(caps.iter().all(|c| *c == ours), "{caps:?}, ours {ours}");
    // Without the flag, every thread drops to CAP_SYS_PTRACE and CAP_DAC_READ_SEARCH.
    let dropped = Daemon::start("dropcaps", &[]);
    let caps = thread_cap_eff(dropped.pid());
    assert!(caps.iter().all(|c| c == "0000000000080004"), "{caps:?}");
}

#[test]
fn daemon_event_log_is_written_as_the_user_it_runs_as() {
    if !require_root("daemon_event_log_is_written_as_the_user_it_runs_as") {
        return;
    }
    // The log's directory belongs to nobody, as the README asks.
    let logs = TempDir::new("userlog");
    std::os::unix::fs::chown(&logs.path, Some(65534), Some(65534)).unwrap();
    std::fs::set_permissions(&logs.path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let log = logs.path.join("events.ndjson");
    let dir = TempDir::new("userlogsock");
    let socket = dir.path.join("run").join("enetstat.sock");
    let daemon = Daemon::start_at(
        dir,
        socket,
        &["--user", "nobody", "--event-log", log.to_str().unwrap()],
    );
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (mut churn, _) = Peer::churn(reservation.addr(), 2);
    churn.wait_success();
    let (finished, _dir, _) = daemon.stop(Signal::Term);
    finished.assert_success();
    let meta = std::fs::metadata(&log).expect("the event log exists");
    assert_eq!(
        (meta.uid(), meta.gid()),
        (65534, 65534),
        "owner of {}",
        log.display()
    );
    let ours = std::fs::read_to_string(&log)
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("\"lport\":{}", reservation.port())))
        .count();
    assert!(ours > 0, "the log holds the test's transitions");
    reservation.release();
}

/// With `--user`, the log is opened once the daemon is that user: a directory only root may
/// write to refuses it, and the error names the user and what to do, not a bare EACCES.
#[test]
fn daemon_event_log_refused_to_the_user_names_the_user() {
    if !require_root("daemon_event_log_refused_to_the_user_names_the_user") {
        return;
    }
    let logs = TempDir::new("rootlog");
    let log = logs.path.join("events.ndjson");
    let dir = TempDir::new("rootlogsock");
    let socket = dir.path.join("enetstat.sock");
    let mut child = Command::new(enetstat_bin())
        .args(["daemon", "--socket", socket.to_str().unwrap()])
        .args(["--user", "nobody", "--event-log", log.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the daemon");
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the daemon ran for 60 s with an event log nobody may write");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let dir_text = logs.path.display().to_string();
    assert!(
        stderr.contains(&format!("cannot open the event log {}", log.display()))
            && stderr.contains("as user nobody (--user nobody)")
            && stderr.contains(&format!("`chown nobody {dir_text}`")),
        "{stderr}"
    );
    assert!(!log.exists(), "no log made");
    assert!(!socket.exists(), "the socket is removed on the way out");
}

/// Through the daemon, `watch` ends with the standalone summary (seen, shown, lost), refuses
/// the in-process tracing flags rather than ignore them, and a protocol subscription with
/// `"time":"relative"` counts from the subscription, not from boot.
#[test]
fn watch_through_the_daemon_summarises_refuses_tracing_flags_and_counts_relative_time() {
    if !require_root(
        "watch_through_the_daemon_summarises_refuses_tracing_flags_and_counts_relative_time",
    ) {
        return;
    }
    let daemon = Daemon::start("viawatch", &[]);
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let port = reservation.port().to_string();
    let tracer = enetstat_tests::Tracer::start(&[
        "watch", "-o", "json", "--socket", &socket, "--port", &port,
    ]);
    // A protocol subscriber, relative time, no start_ns.
    let mut sub = daemon.connect();
    let subscribed = Instant::now();
    let ack = sub.request(&json!({
        "v": 1, "op": "subscribe", "format": "text", "time": "relative", "header": false,
        "filter": format!("port = :{port}")
    }));
    assert_eq!(ack["ok"], true, "{ack}");
    let (mut churn, _) = Peer::churn(reservation.addr(), 1);
    churn.wait_success();
    // Listener 2 + connection 10.
    let first = sub.line().expect("a line");
    let seconds: f64 = first
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap_or_else(|_| panic!("TIME is not seconds: {first}"));
    let most = subscribed.elapsed().as_secs_f64();
    assert!(
        (0.0..=most + 1.0).contains(&seconds),
        "relative time {seconds} s, but the subscription is {most} s old: {first}"
    );
    assert!(tracer.wait_for_lines(12, Duration::from_secs(30)));
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    let summary = finished.summary();
    assert_eq!(summary.shown, 12, "{summary:?}");
    assert!(summary.seen >= 12, "{summary:?}");
    assert!(
        finished
            .stderr
            .iter()
            .any(|l| *l == format!("enetstat: served by the daemon at {socket}")),
        "{:?}",
        finished.stderr
    );
    for flag in [["--ring-size", "16M"], ["--wakeup-us", "0"]] {
        let out = std::process::Command::new(enetstat_tests::enetstat_bin())
            .args(["watch", "--socket", &socket])
            .args(flag)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag:?}: {stderr}");
        assert!(stderr.contains("Add --standalone"), "{flag:?}: {stderr}");
    }
    reservation.release();
}
