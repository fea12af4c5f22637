//! `-c` snapshots (the live table, traced): one shape whether a daemon serves them or enetstat
//! traces itself; netstat's column order with `-e` and `-p`, every row under its header; and
//! the `errno` a connection closed with, non-zero where it failed (a refused connect, a
//! connect that timed out), in the daemon's snapshot and in a standalone `-c --recent` one.
//! (The same connections' `end` in `watch`/`life` JSON is checked in life.rs.)

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::unix::net::UnixStream,
    path::Path,
    process::Command,
    thread,
    time::{Duration, Instant},
};

use enetstat_tests::{
    Peer, PortReservation,
    daemon::{Conn, Daemon, TempDir},
    ender_bin, enetstat_bin, require_root,
    scenario::{Child, DropNet, Netns, unix_now, unix_seconds},
};
use serde_json::{Value, json};

/// Runs enetstat to its end; its stdout.
fn run(args: &[&str]) -> String {
    let out = Command::new(enetstat_bin())
        .args(args)
        .output()
        .expect("run enetstat");
    assert!(
        out.status.success(),
        "enetstat {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8")
}

/// The daemon's sockets matching `filter`, closed ones of the last minute included.
fn daemon_sockets(socket: &Path, filter: &str) -> Vec<Value> {
    let reply = Conn::connect(socket).request(&json!({
        "v": 1, "op": "snapshot", "filter": filter, "recent_ms": 60_000, "servers": "include"
    }));
    let output = reply["output"]
        .as_str()
        .unwrap_or_else(|| panic!("no output: {reply}"));
    let v: Value = serde_json::from_str(output).expect("a JSON snapshot");
    v["sockets"].as_array().expect("sockets").clone()
}

/// Asks the daemon until a closed socket matching `filter` and `is_it` shows (the daemon has
/// applied its close), at most 30 s.
fn daemon_closed(socket: &Path, filter: &str, is_it: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let found: Vec<Value> = daemon_sockets(socket, filter)
            .into_iter()
            .filter(|s| s["closed"] == true && is_it(s))
            .collect();
        match found.as_slice() {
            [one] => return one.clone(),
            [] => {}
            many => panic!("more than one closed socket for {filter}: {many:#?}"),
        }
        if Instant::now() >= deadline {
            // Say what the daemon did see, for the next one to read.
            let all = daemon_sockets(socket, filter);
            let stats = Conn::connect(socket).request(&json!({"v": 1, "op": "stats"}));
            panic!(
                "no closed socket for {filter} in the daemon's snapshot after 30 s; it has \
                 {all:#?}; its stats: {stats}"
            );
        }
        thread::sleep(Duration::from_millis(50));
    }
}

/// `enetstat daemon` inside `ns` (its table is that namespace's), once it answers `stats`.
fn daemon_in(ns: &Netns, socket: &Path) -> Child {
    let mut cmd = ns.command(enetstat_bin());
    cmd.args(["daemon", "--socket", socket.to_str().expect("UTF-8")]);
    let mut daemon = Child::spawn(cmd, "enetstat daemon (in a namespace)");
    let deadline = Instant::now() + Duration::from_secs(60);
    while UnixStream::connect(socket).is_err() {
        if let Some(status) = daemon.exited() {
            panic!("the daemon exited ({status}); its stderr is above");
        }
        assert!(
            Instant::now() < deadline,
            "the daemon did not serve in 60 s"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let stats = Conn::connect(socket).request(&json!({"v": 1, "op": "stats"}));
    assert!(stats["stats"].is_object(), "{stats}");
    daemon
}

/// Reads a `-c -o json` enetstat's snapshots until one taken after `after` (Unix seconds, by
/// the snapshot's own `time`) holds a closed socket for which `is_it` is true.
fn standalone_closed(tracer: &mut Child, after: f64, is_it: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "no closed socket in enetstat -c's snapshots for 30 s"
        );
        let (_, line) = tracer.line(left);
        let snapshot: Value = serde_json::from_str(&line).expect("a JSON snapshot");
        let time = unix_seconds(snapshot["time"].as_str().expect("a snapshot has a time"));
        if time <= after {
            continue;
        }
        let found: Vec<&Value> = snapshot["sockets"]
            .as_array()
            .expect("sockets")
            .iter()
            .filter(|s| s["closed"] == true && is_it(s))
            .collect();
        match found.as_slice() {
            [one] => return (*one).clone(),
            [] => {}
            many => panic!("more than one matching closed socket: {many:#?}"),
        }
    }
}

/// A refused connect closes with ECONNREFUSED and a connect whose SYNs go unanswered with
/// ETIMEDOUT: the snapshot's `errno`, through the daemon and standalone, says which; an
/// orderly close says 0. Everything runs in a namespace of the test's own (the tables are
/// per namespace), so no one else's sockets get in the way.
#[test]
fn closed_connections_carry_their_errno_in_every_snapshot() {
    if !require_root("closed_connections_carry_their_errno_in_every_snapshot") {
        return;
    }
    let dir = TempDir::new("errno");
    let net = DropNet::new("errno");
    let socket = dir.path.join("enetstat.sock");
    let _daemon = daemon_in(&net.ns, &socket);
    let mut cmd = net.ns.command(enetstat_bin());
    cmd.args(["-tan", "-o", "json", "-c", "200ms", "--recent", "60s"]);
    let mut standalone = Child::spawn(cmd, "enetstat -c --recent (in a namespace)");
    // Its first snapshot: it traces from now on.
    let _ = standalone.line(Duration::from_secs(60));

    let ender = |args: &[&str], says: &[&str]| {
        let mut cmd = net.ns.command(ender_bin());
        cmd.args(args);
        let mut child = Child::spawn(cmd, &format!("enetstat-ender {}", args.join(" ")));
        let lines: Vec<String> = says
            .iter()
            .map(|want| {
                let (_, line) = child.line(Duration::from_secs(60));
                assert!(
                    line.starts_with(want),
                    "{}: `{line}`, not `{want}...`",
                    child.name
                );
                line
            })
            .collect();
        lines
    };
    // Refused: nothing listens in the fresh namespace.
    let refused: SocketAddr = "127.0.0.1:1".parse().unwrap();
    ender(&["refuse", "--addr", &refused.to_string()], &["refused"]);
    // Timed out: SYNs to a host that drops them.
    let target = net.target();
    ender(&["timeout", "--addr", &target.to_string()], &["timed_out"]);
    // An orderly close, for the 0.
    let orderly: SocketAddr = "127.0.0.1:7070".parse().unwrap();
    ender(
        &["pair", "--addr", &orderly.to_string(), "--end", "normal"],
        &["listening", "client", "done"],
    );
    let done = unix_now();

    let to = |addr: SocketAddr| {
        move |s: &Value| {
            s["remote_port"] == addr.port() && s["remote_addr"] == addr.ip().to_string()
        }
    };
    let cases = [
        ("refused", refused, libc::ECONNREFUSED),
        ("timed out", target, libc::ETIMEDOUT),
        ("closed in order", orderly, 0),
    ];
    for (what, addr, errno) in cases {
        let s = daemon_closed(&socket, &format!("dport = :{}", addr.port()), to(addr));
        assert_eq!(s["errno"], errno, "{what}, through the daemon: {s}");
        assert!(s["lifetime_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{s}");
        if errno != 0 {
            assert_eq!(
                s["state"], "SYN_SENT",
                "{what}: the state it closed from: {s}"
            );
        }
    }
    for (what, addr, errno) in cases {
        let s = standalone_closed(&mut standalone, done, to(addr));
        assert_eq!(s["errno"], errno, "{what}, standalone: {s}");
    }
}

/// The columns of `-c -tanpe`, in order: netstat's (with `-e`'s User and Inode and `-p`'s
/// PID/Program name where netstat puts them), then enetstat's: AGE, Cookie, Netns, Cgroup.
const COLUMNS: [&str; 13] = [
    "Proto",
    "Recv-Q",
    "Send-Q",
    "Local Address",
    "Foreign Address",
    "State",
    "User",
    "Inode",
    "PID/Program name",
    "AGE",
    "Cookie",
    "Netns",
    "Cgroup",
];

/// Every left-aligned cell of `row` starts where its column's name starts in `header`.
fn assert_under_header(header: &str, row: &str) {
    for name in &COLUMNS[3..] {
        let at = header.find(name).expect("the column is in the header");
        let bytes = row.as_bytes();
        assert!(
            bytes.get(at - 1) == Some(&b' ') && bytes.get(at).is_some_and(|c| *c != b' '),
            "{name} is not under its header:\n{header}\n{row}"
        );
    }
}

/// `-c` gives the same output shape whether a daemon serves it or enetstat traces itself:
/// the same title, header and footer in text, the same keys in JSON, the same CSV header; and
/// the text columns are in netstat's order with every row under its header.
#[test]
fn continuous_snapshots_have_one_shape_through_a_daemon_or_not() {
    if !require_root("continuous_snapshots_have_one_shape_through_a_daemon_or_not") {
        return;
    }
    let daemon = Daemon::start("shape", &["--reconcile", "200ms"]);
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    // A listener (waiting for a second connection that never comes) and one closed
    // connection: a TIME_WAIT, and through the daemon, two CLOSED rows.
    let (_serve, _) = Peer::serve(server, 2);
    let mut client = Peer::connect(server, 1);
    client.wait_success();
    let ours = format!(":{} ", server.port());

    let socket = daemon.socket.to_str().expect("UTF-8").to_owned();
    let ways: [(&str, Vec<&str>); 2] = [
        ("through the daemon", vec!["--socket", &socket]),
        ("standalone", vec!["--standalone"]),
    ];
    let common = [
        "-tanpe",
        "-c",
        "200ms",
        "--refreshes",
        "2",
        "--recent",
        "60s",
    ];
    let output = |way: &[&str], extra: &[&str]| {
        let mut args = way.to_vec();
        args.extend_from_slice(&common);
        args.extend_from_slice(extra);
        run(&args)
    };

    // Text.
    let mut headers = Vec::new();
    for (what, way) in &ways {
        let text = output(way, &[]);
        let lines: Vec<&str> = text.lines().collect();
        let count = |prefix: &str| lines.iter().filter(|l| l.starts_with(prefix)).count();
        assert_eq!(
            (
                count("Active Internet connections (servers and established)"),
                count("Proto "),
                count("-- tracing: ")
            ),
            (2, 2, 2),
            "{what}: a title, a header and a footer per refresh:\n{text}"
        );
        let header = *lines.iter().find(|l| l.starts_with("Proto ")).unwrap();
        let at: Vec<usize> = COLUMNS
            .iter()
            .map(|c| {
                header
                    .find(c)
                    .unwrap_or_else(|| panic!("{what}: no {c}: {header}"))
            })
            .collect();
        assert!(at.is_sorted(), "{what}: columns out of order: {header}");
        let rows: Vec<&&str> = lines.iter().filter(|l| l.contains(&ours)).collect();
        assert!(
            rows.len() >= 2,
            "{what}: the listener and the TIME_WAIT:\n{text}"
        );
        for row in rows {
            assert_under_header(header, row);
        }
        for line in &lines {
            assert!(
                line.starts_with("Active ")
                    || line.starts_with("Proto ")
                    || line.starts_with("-- tracing: ")
                    || line.starts_with("tcp")
                    // The legend of an owner marked `*`, printed when a row has one.
                    || line.starts_with("* the process that last owned the socket"),
                "{what}: a line of no known kind: {line:?}"
            );
        }
        headers.push(header.to_owned());
    }
    assert_eq!(headers[0], headers[1], "the text headers differ");

    // JSON: the same keys, in the same order, at every level.
    let keys = |v: &Value| -> Vec<String> {
        v.as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    };
    let mut shapes = Vec::new();
    for (what, way) in &ways {
        let text = output(way, &["-o", "json"]);
        let snapshot: Value =
            serde_json::from_str(text.lines().last().expect("a snapshot")).expect("JSON");
        assert_eq!(snapshot["tracing"], true, "{what}: {snapshot}");
        let sockets = snapshot["sockets"].as_array().expect("sockets");
        let mine = sockets
            .iter()
            .find(|s| s["local_port"] == server.port())
            .unwrap_or_else(|| panic!("{what}: no listener in {snapshot}"));
        shapes.push((keys(&snapshot), keys(&snapshot["counters"]), keys(mine)));
    }
    assert_eq!(shapes[0], shapes[1], "the JSON shapes differ");

    // CSV: the same header.
    let csv: Vec<String> = ways
        .iter()
        .map(|(_, way)| {
            output(way, &["-o", "csv"])
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert!(csv[0].starts_with("time,proto,"), "{}", csv[0]);
    assert_eq!(csv[0], csv[1], "the CSV headers differ");
    reservation.release();
}
