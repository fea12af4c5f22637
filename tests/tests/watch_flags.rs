//! `watch` and `life` flags the README promises, end to end: `--duration` ends the run by
//! itself, `--utc` prints UTC wall times whatever the local zone, a connection already open
//! when tracing began ends in a `life` line with `complete: false` and its owner, and an
//! unprivileged user gets the README's error text.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use enetstat_tests::{Peer, PortReservation, Tracer, enetstat_bin, require_program, require_root};

#[test]
fn watch_duration_ends_the_run_with_its_summary() {
    if !require_root("watch_duration_ends_the_run_with_its_summary") {
        return;
    }
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let port = reservation.port().to_string();
    for mode in ["watch", "life"] {
        let tracer = Tracer::start(&[mode, "-o", "json", "--duration", "1", "--port", &port]);
        let finished = tracer.wait_exit();
        finished.assert_success();
        if mode == "watch" {
            let summary = finished.summary();
            assert_eq!(summary.shown, 0, "{mode}: {summary:?}");
        } else {
            assert!(finished.stdout.is_empty(), "{mode}: {:?}", finished.stdout);
        }
    }
    reservation.release();
}

/// Seconds since midnight, UTC, of the `HH:MM:SS` TIME column.
fn clock_seconds(hms: &str) -> i64 {
    let parts: Vec<i64> = hms
        .split(':')
        .map(|p| p.parse().unwrap_or_else(|_| panic!("not HH:MM:SS: {hms}")))
        .collect();
    parts[0] * 3600 + parts[1] * 60 + parts[2]
}

/// How far apart two times of day are, in seconds, across midnight.
fn apart(a: i64, b: i64) -> i64 {
    let d = (a - b).rem_euclid(86_400);
    d.min(86_400 - d)
}

#[test]
fn watch_utc_prints_utc_times_whatever_the_local_zone() {
    if !require_root("watch_utc_prints_utc_times_whatever_the_local_zone") {
        return;
    }
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let port = server.port().to_string();
    // A zone 5 h 30 min east of UTC, spelled POSIX-style so no tzdata is needed.
    let zone = [("TZ", "XST-5:30")];
    let utc = Tracer::start_with_env(&["watch", "--utc", "--port", &port, "--count", "1"], &zone);
    let local = Tracer::start_with_env(&["watch", "--port", &port, "--count", "1"], &zone);
    let (mut serve, _) = Peer::serve(server, 1);
    let mut client = Peer::connect(server, 1);
    client.wait_success();
    serve.wait_success();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
        % 86_400;
    let time_of = |finished: &enetstat_tests::Finished| {
        finished.assert_success();
        assert_eq!(finished.stdout.len(), 2, "{:?}", finished.stdout);
        assert!(
            finished.stdout[0].starts_with("TIME "),
            "{:?}",
            finished.stdout
        );
        let time = finished.stdout[1]
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned();
        clock_seconds(&time)
    };
    let utc_time = time_of(&utc.wait_exit());
    let local_time = time_of(&local.wait_exit());
    assert!(
        apart(utc_time, now) < 120,
        "--utc printed {utc_time} s past midnight, UTC is {now}"
    );
    assert!(
        apart(local_time, now + 5 * 3600 + 1800) < 120,
        "without --utc the time is in TZ (UTC+5:30): {local_time}, UTC is {now}"
    );
    reservation.release();
}

#[test]
fn life_of_a_connection_older_than_the_tracer_is_not_complete_and_names_its_owner() {
    if !require_root(
        "life_of_a_connection_older_than_the_tracer_is_not_complete_and_names_its_owner",
    ) {
        return;
    }
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    // Opened by this process before the tracer starts.
    reservation.release();
    let listener = TcpListener::bind(server).expect("listen");
    let mut client = TcpStream::connect(server).expect("connect");
    let (mut accepted, _) = listener.accept().expect("accept");
    let filter = format!("port = :{}", server.port());
    let tracer = Tracer::start(&["life", "-o", "json", "--count", "2", &filter]);
    client.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    accepted.read_exact(&mut buf).unwrap();
    drop(client);
    assert_eq!(accepted.read(&mut buf).unwrap(), 0, "EOF");
    drop(accepted);
    drop(listener);
    let finished = tracer.wait_exit();
    finished.assert_success();
    let me = u64::from(std::process::id());
    let lives: Vec<serde_json::Value> = finished
        .stdout
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON"))
        .collect();
    assert_eq!(lives.len(), 2, "{:?}", finished.stdout);
    let states = |life: &serde_json::Value| -> Vec<String> {
        life["states"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["state"].as_str().unwrap().to_owned())
            .collect()
    };
    let client_port = lives
        .iter()
        .find(|l| l["rport"] == server.port())
        .unwrap_or_else(|| panic!("no client connection: {lives:?}"));
    let accepted = lives
        .iter()
        .find(|l| l["lport"] == server.port())
        .unwrap_or_else(|| panic!("no accepted connection: {lives:?}"));
    for life in &lives {
        assert_eq!(life["complete"], false, "{life}");
        assert_eq!(life["pid"], me, "the owner: {life}");
        assert_eq!(life["end"], "normal", "{life}");
        assert!(life["connect_ms"].is_null(), "{life}");
    }
    // Only the states tracing saw whole: the time in ESTABLISHED began before it.
    assert_eq!(
        states(client_port),
        ["FIN_WAIT1", "FIN_WAIT2"],
        "{client_port}"
    );
    assert_eq!(states(accepted), ["CLOSE_WAIT", "LAST_ACK"], "{accepted}");
    // The byte counts are the socket's own, from before tracing too.
    assert_eq!(client_port["bytes_sent"], 5, "{client_port}");
    assert_eq!(accepted["bytes_received"], 5, "{accepted}");
}

#[test]
fn watch_as_an_unprivileged_user_prints_the_readme_error() {
    const TEST: &str = "watch_as_an_unprivileged_user_prints_the_readme_error";
    if !require_root(TEST) {
        return;
    }
    let Some(setpriv) = require_program(TEST, "setpriv", "util-linux") else {
        return;
    };
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
        .args(["--inh-caps=-all", "--bounding-set=-all"])
        .arg(enetstat_bin())
        .args(["watch", "--standalone"])
        .stdin(Stdio::null())
        .output()
        .expect("cannot run setpriv");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "enetstat: error: enetstat needs root, or the CAP_BPF and CAP_PERFMON capabilities, to \
         load its eBPF programs (not root, and missing CAP_BPF and CAP_PERFMON). Run it as root \
         (sudo enetstat ...), or grant the capabilities once: setcap cap_bpf,cap_perfmon+ep \
         \"$(command -v enetstat)\""
    );
}
