//! Snapshots (`enetstat` without a subcommand) against `ss`, on 1,000+ sockets in mixed
//! states, one-shot and live while tracing; owners with `-p`; and short-lived connections
//! that only the live table catches (`--recent`).
//!
//! Every socket lives in a network namespace the test makes, and enetstat runs inside it, so
//! each comparison covers exactly the test's own sockets.

use std::{
    collections::HashSet,
    thread,
    time::{Duration, Instant},
};

use enetstat_tests::{
    enetstat_bin, require_root,
    scenario::{
        Child, Mix, Netns, Scenario, census, differences, enetstat_json, enetstat_rows,
        owners_right, sockets_bin, unix_now, unix_seconds,
    },
};
use serde_json::Value;

fn assert_same(
    what: &str,
    ours: &[enetstat_tests::scenario::Full],
    theirs: &[enetstat_tests::scenario::Full],
) {
    let (only_ours, only_ss) = differences(ours, theirs);
    println!(
        "{what}: enetstat {} sockets, ss {} sockets",
        ours.len(),
        theirs.len()
    );
    for ((proto, state), n) in census(theirs) {
        println!("  {proto:<4} {state:<12} {n}");
    }
    for r in only_ours.iter().take(20) {
        println!("  only in enetstat: {r:?}");
    }
    for r in only_ss.iter().take(20) {
        println!("  only in ss:       {r:?}");
    }
    assert!(
        only_ours.is_empty() && only_ss.is_empty(),
        "{what}: {} sockets only in enetstat, {} only in ss (see above)",
        only_ours.len(),
        only_ss.len()
    );
}

fn assert_owners(what: &str, snapshot: &Value, scenario: &mut Scenario) {
    let holders = scenario.holders();
    let (right, total, wrong) = owners_right(snapshot, &holders);
    println!("{what}: -p names the right process for {right} of {total} held sockets");
    for w in &wrong {
        println!("  {w}");
    }
    assert!(total >= 900, "{what}: only {total} held sockets reported");
    // Every holder is known exactly, so every one must be named, with its program.
    assert_eq!(
        right, total,
        "{what}: -p names the right pid and program for only {right} of {total} held sockets"
    );
}

#[test]
fn one_shot_snapshot_agrees_with_ss_on_1000_sockets() {
    if !require_root("one_shot_snapshot_agrees_with_ss_on_1000_sockets") {
        return;
    }
    let mut scenario = Scenario::start(Mix::BIG);
    let (theirs, snapshot) =
        scenario.stable(|| enetstat_json(&scenario.ns, &["-tuanp", "-o", "json"]));
    assert!(
        theirs.len() >= 1000,
        "the scenario made only {} sockets",
        theirs.len()
    );
    let states: HashSet<&str> = theirs.iter().map(|r| r.1.as_str()).collect();
    for s in [
        "LISTEN",
        "ESTABLISHED",
        "CLOSE_WAIT",
        "FIN_WAIT2",
        "TIME_WAIT",
        "SYN_SENT",
        "CLOSE",
    ] {
        assert!(states.contains(s), "the scenario has no {s} socket");
    }
    assert_eq!(snapshot["tracing"], false);
    assert_same("one-shot", &enetstat_rows(&snapshot), &theirs);
    // Every socket here existed before enetstat started.
    assert_owners("one-shot", &snapshot, &mut scenario);
}

/// Reads a `-c` enetstat's output until a snapshot taken after `after` (Unix seconds, by the
/// snapshot's own `time`, not by when the test read it) arrives.
fn snapshot_after(tracer: &mut Child, after: f64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no snapshot from enetstat -c in 30 s");
        let (_, line) = tracer.line(left);
        let snapshot: Value =
            serde_json::from_str(&line).expect("enetstat -c -o json prints JSON lines");
        let time = snapshot["time"].as_str().expect("a snapshot has a time");
        if unix_seconds(time) > after {
            return snapshot;
        }
    }
}

#[test]
fn live_table_agrees_with_ss_after_churn_while_tracing() {
    if !require_root("live_table_agrees_with_ss_after_churn_while_tracing") {
        return;
    }
    let mut scenario = Scenario::start(Mix::BIG);
    let mut cmd = scenario.ns.command(enetstat_bin());
    cmd.args(["-tuanp", "-o", "json", "-c", "0.5", "--reconcile", "2"]);
    let mut tracer = Child::spawn(cmd, "enetstat -c");
    let first = snapshot_after(&mut tracer, 0.0);
    assert_eq!(first["tracing"], true);

    // Churn while tracing: new connections (accepted ones included), new TIME_WAIT sockets,
    // resets.
    for client in &mut scenario.clients {
        client.send("more 100");
        client.json(Duration::from_secs(60));
    }
    // Wait, by the snapshots' own counters, for two reconciliations after the churn: the
    // second dump started after the churn ended, so every socket has been compared once.
    let churned = snapshot_after(&mut tracer, unix_now());
    let at_churn = churned["counters"]["reconciliations"].as_u64().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(Instant::now() < deadline, "no reconciliation in 60 s");
        let s = snapshot_after(&mut tracer, unix_now());
        if s["counters"]["reconciliations"].as_u64().unwrap() >= at_churn + 2 {
            break;
        }
    }
    let (theirs, snapshot) = scenario.stable(|| snapshot_after(&mut tracer, unix_now()));
    let c = &snapshot["counters"];
    println!(
        "live: {} transitions, {} lost, {} reconciliations, corrections {}",
        c["transitions"], c["lost"], c["reconciliations"], c["corrections"]
    );
    // The dumps found nothing the transitions had not already told: the live table is right
    // by tracing alone (a dump would hide broken tracing, so it must not have had to).
    assert_eq!(c["lost"], 0, "counters: {c}");
    for kind in ["added", "removed", "state"] {
        assert_eq!(
            c["corrections"][kind], 0,
            "reconciliation had to correct the live table ({kind}): {c}"
        );
    }
    assert!(
        theirs.len() >= 1000,
        "only {} sockets after churn",
        theirs.len()
    );
    assert!(
        c["transitions"].as_u64().unwrap() >= 400,
        "transitions: {c}"
    );
    assert_same("live after churn", &enetstat_rows(&snapshot), &theirs);
    assert_owners("live after churn", &snapshot, &mut scenario);
    // While tracing, an orphaned FIN_WAIT2 shows its last owner (marked as not holding).
    let orphans_with_last_owner = snapshot["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["inode"] == 0 && s["pid"].is_u64() && s["holds"] == false)
        .count();
    println!("live: {orphans_with_last_owner} unheld sockets shown with their last owner");
    assert!(orphans_with_last_owner > 0);
}

#[test]
fn recent_shows_every_short_connection_that_ss_misses() {
    if !require_root("recent_shows_every_short_connection_that_ss_misses") {
        return;
    }
    const N: u64 = 500;
    let ns = Netns::new("recent");
    let mut cmd = ns.command(sockets_bin());
    cmd.args(["server", "--addr", "127.0.0.1", "--listeners", "1"]);
    let mut server = Child::spawn(cmd, "enetstat-sockets server");
    let ready = server.json(Duration::from_secs(30));
    let port = ready["ports"][0].as_u64().unwrap();
    let mut cmd = ns.command(sockets_bin());
    cmd.args([
        "client",
        "--addr",
        "127.0.0.1",
        "--ports",
        &port.to_string(),
    ])
    .args(["--closer", &ready["closer"].to_string()]);
    let mut client = Child::spawn(cmd, "enetstat-sockets client");
    client.json(Duration::from_secs(30));

    let mut cmd = ns.command(enetstat_bin());
    cmd.args(["-tn", "-o", "json", "-c", "1", "--recent", "10s"]);
    let mut tracer = Child::spawn(cmd, "enetstat -c --recent");
    snapshot_after(&mut tracer, 0.0);

    // `ss` polled once a second over the same run, as a poller would.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let poller = {
        let stop = stop.clone();
        let ns_name = ns.name.clone();
        thread::spawn(move || {
            let mut seen = HashSet::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let out = std::process::Command::new("ip")
                    .args(["netns", "exec", &ns_name, "ss", "-tanH"])
                    .output()
                    .expect("ss");
                for l in String::from_utf8_lossy(&out.stdout).lines() {
                    let f: Vec<&str> = l.split_whitespace().collect();
                    if f.len() >= 5 && f[4].ends_with(&format!(":{port}")) {
                        seen.insert(f[3].to_owned());
                    }
                }
                thread::sleep(Duration::from_secs(1));
            }
            seen.len()
        })
    };
    let started = unix_now();
    client.send(&format!("burst {N} {port}"));
    let burst = client.json(Duration::from_secs(60));
    let done = unix_now();
    assert_eq!(burst["burst"], N);
    // A snapshot taken after the burst ended; records still on their way from the kernel
    // when it was taken show in the next one (at most two more are read).
    let ours = |s: &Value| {
        s["sockets"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["closed"] == true && s["remote_port"] == port)
            .count() as u64
    };
    let mut snapshot = snapshot_after(&mut tracer, done);
    for _ in 0..2 {
        if ours(&snapshot) >= N {
            break;
        }
        snapshot = snapshot_after(&mut tracer, done);
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let ss_saw = poller.join().unwrap();
    let burst_ms = (done - started) * 1000.0;

    let closed: Vec<&Value> = snapshot["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["closed"] == true && s["remote_port"] == port)
        .collect();
    let cookies: HashSet<u64> = closed
        .iter()
        .map(|s| s["cookie"].as_u64().unwrap())
        .collect();
    let short = closed
        .iter()
        .filter(|s| s["lifetime_ms"].as_f64().is_some_and(|ms| ms < 1.0))
        .count();
    println!(
        "--recent: enetstat showed {} of {N} short connections as closed ({short} lived < 1 ms); \
         ss polled once a second saw {ss_saw}; the burst took {burst_ms:.0} ms",
        cookies.len()
    );
    // Each connection lived within the burst: a lifetime, positive and no longer than it.
    for s in &closed {
        let ms = s["lifetime_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("no lifetime: {s}"));
        assert!(
            ms > 0.0 && ms <= burst_ms,
            "lifetime {ms} ms of {burst_ms} ms: {s}"
        );
    }
    // A poller misses what lives between its polls: ss, once a second, saw at most the
    // connections open at some poll, never all of them.
    assert!(
        (ss_saw as u64) < N,
        "ss saw {ss_saw} of {N}: the burst was not short enough to show anything"
    );
    assert_eq!(
        cookies.len() as u64,
        N,
        "every short connection shows as closed"
    );
    assert!(
        closed
            .iter()
            .all(|s| s["pid"].as_u64() == Some(u64::from(client.pid()))),
        "closed connections name the client as their last owner"
    );
    drop(tracer);
    drop(client);
    drop(server);
    drop(ns);
}
