//! The daemon's `snapshot` op as the README documents it: `filter`, `servers`, `protos`,
//! `states`, `recent_ms`, and the `json`, `text` and `csv` formats, on sockets the test knows
//! exactly; and the per-socket fields `age_ms`, `uid`, `pid`, `program`, `closed_ago_ms`,
//! `lifetime_ms` and `errno`.

use std::{
    net::{IpAddr, Ipv4Addr, UdpSocket},
    thread,
    time::{Duration, Instant},
};

use enetstat_tests::{Peer, PortReservation, daemon::Daemon, require_root, scenario::unix_now};
use serde_json::{Value, json};

/// Waits, by the daemon's own counter, for two reconciliations from now: the second dump
/// started after everything before this call, so sockets have their inode and uid.
fn two_reconciliations(daemon: &Daemon) {
    let count = |d: &Daemon| {
        d.connect().request(&json!({"v":1,"op":"stats"}))["stats"]["reconciliations"]
            .as_u64()
            .unwrap()
    };
    let at = count(daemon);
    let deadline = Instant::now() + Duration::from_secs(30);
    while count(daemon) < at + 2 {
        assert!(Instant::now() < deadline, "no reconciliation in 30 s");
        thread::sleep(Duration::from_millis(100));
    }
}

/// One `snapshot` request: the `output` text.
fn snapshot(daemon: &Daemon, request: Value) -> String {
    let mut request = request;
    request["v"] = json!(1);
    request["op"] = json!("snapshot");
    let reply = daemon.connect().request(&request);
    reply["output"]
        .as_str()
        .unwrap_or_else(|| panic!("no output for {request}: {reply}"))
        .to_owned()
}

fn sockets(output: &str) -> Vec<Value> {
    let v: Value = serde_json::from_str(output).expect("a JSON snapshot");
    v["sockets"].as_array().expect("sockets").clone()
}

#[test]
fn daemon_snapshot_op_applies_every_documented_field() {
    if !require_root("daemon_snapshot_op_applies_every_documented_field") {
        return;
    }
    let daemon = Daemon::start("snapop", &["--reconcile", "200ms"]);
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let port = server.port();
    // A listener (it waits for a second connection that never comes), one connection to it
    // that has closed (the client first: its side goes to TIME_WAIT), and a UDP socket on the
    // same port number.
    let listened = unix_now();
    let (serve, _) = Peer::serve(server, 2);
    let mut client = Peer::connect(server, 1);
    client.wait_success();
    let udp = UdpSocket::bind(server).expect("bind UDP");
    two_reconciliations(&daemon);
    let filter = format!("port = :{port}");

    // protos and servers: the UDP socket alone, unconnected (CLOSE).
    let udp_only = sockets(&snapshot(
        &daemon,
        json!({"filter": filter, "protos": ["udp"], "servers": "include", "programs": true}),
    ));
    assert_eq!(udp_only.len(), 1, "{udp_only:#?}");
    assert_eq!(udp_only[0]["proto"], "udp");
    assert_eq!(udp_only[0]["transport"], "udp");
    assert_eq!(udp_only[0]["state"], "CLOSE");
    assert_eq!(udp_only[0]["pid"], std::process::id());

    // states: the listener alone, with its owner, uid and age.
    let listeners = sockets(&snapshot(
        &daemon,
        json!({"filter": filter, "protos": ["tcp"], "servers": "include", "states": ["LISTEN"], "programs": true}),
    ));
    assert_eq!(listeners.len(), 1, "{listeners:#?}");
    let l = &listeners[0];
    assert_eq!(l["local_port"], port);
    assert_eq!(l["pid"], serve.pid(), "{l}");
    assert_eq!(l["program"], "enetstat-peer", "{l}");
    assert_eq!(l["holds"], true, "{l}");
    assert_eq!(l["uid"], 0, "{l}");
    assert_ne!(l["inode"], 0, "{l}");
    let age = l["age_ms"]
        .as_f64()
        .unwrap_or_else(|| panic!("no age_ms: {l}"));
    let since = (unix_now() - listened) * 1000.0;
    assert!(age > 0.0 && age <= since, "age_ms {age} of {since} ms: {l}");
    assert_eq!(l["closed"], false);
    assert!(l["closed_ago_ms"].is_null() && l["errno"].is_null(), "{l}");

    // The default servers: exclude (netstat without -l): no listener; the client's TIME_WAIT.
    let connections = sockets(&snapshot(
        &daemon,
        json!({"filter": filter, "protos": ["tcp"]}),
    ));
    assert_eq!(connections.len(), 1, "{connections:#?}");
    assert_eq!(connections[0]["state"], "TIME_WAIT");
    assert_eq!(connections[0]["remote_port"], port);
    // servers: only is the listener alone.
    let only = sockets(&snapshot(
        &daemon,
        json!({"filter": filter, "protos": ["tcp"], "servers": "only"}),
    ));
    assert_eq!(only.len(), 1, "{only:#?}");
    assert_eq!(only[0]["state"], "LISTEN");

    // recent_ms: also the closed connection's two sockets, with how long ago they closed,
    // how long they lived and how (errno 0: an orderly close).
    let closed_by = unix_now();
    let with_recent = sockets(&snapshot(
        &daemon,
        json!({"filter": filter, "protos": ["tcp"], "recent_ms": 60_000}),
    ));
    let closed: Vec<&Value> = with_recent.iter().filter(|s| s["closed"] == true).collect();
    assert_eq!(closed.len(), 2, "{with_recent:#?}");
    for c in &closed {
        let ago = c["closed_ago_ms"].as_f64().unwrap_or_else(|| panic!("{c}"));
        let most = (unix_now() - listened) * 1000.0;
        assert!(
            ago > 0.0 && ago <= most,
            "closed_ago_ms {ago} of {most}: {c}"
        );
        let life = c["lifetime_ms"].as_f64().unwrap_or_else(|| panic!("{c}"));
        assert!(life > 0.0 && life <= (closed_by - listened) * 1000.0, "{c}");
        assert_eq!(c["errno"], 0, "{c}");
    }
    assert!(
        closed.iter().any(|c| c["local_port"] == port),
        "the accepted side"
    );
    assert!(
        closed.iter().any(|c| c["remote_port"] == port),
        "the client side"
    );

    // format text: netstat's layout; csv: a header of JSON's column names, then the rows.
    let text = snapshot(
        &daemon,
        json!({"filter": filter, "protos": ["tcp"], "servers": "only", "format": "text", "numeric": true}),
    );
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0], "Active Internet connections (only servers)",
        "{text}"
    );
    assert!(
        lines[1].starts_with("Proto Recv-Q Send-Q Local Address"),
        "{text}"
    );
    assert!(
        lines[2].starts_with("tcp ") && lines[2].contains(&format!("127.0.0.1:{port} ")),
        "{text}"
    );
    let csv = snapshot(
        &daemon,
        json!({"filter": filter, "protos": ["tcp"], "servers": "only", "format": "csv"}),
    );
    let mut rows = csv.lines();
    let header: Vec<&str> = rows.next().expect("a header").split(',').collect();
    let mut json_keys: Vec<String> = listeners[0].as_object().unwrap().keys().cloned().collect();
    json_keys.insert(0, "time".into());
    let mut sorted_header = header.clone();
    sorted_header.sort_unstable();
    json_keys.sort_unstable();
    assert_eq!(sorted_header, json_keys, "CSV has JSON's columns");
    let row: Vec<&str> = rows.next().expect("a row").split(',').collect();
    assert_eq!(row.len(), header.len());
    let field = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(field("state"), "LISTEN");
    assert_eq!(field("local_port"), port.to_string());
    assert!(rows.next().is_none(), "{csv}");

    drop(udp);
    drop(serve);
    drop(daemon);
}
