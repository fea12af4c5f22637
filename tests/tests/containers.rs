//! Containers: a server started in a cgroup laid out as Docker lays out a container's shows
//! that container (and its cgroup and network namespace) in `-e` snapshots, JSON and CSV
//! snapshots, every transition of its sockets, and its connections' lifecycles; a client
//! outside the cgroup does not.

use std::{
    net::{IpAddr, Ipv4Addr},
    process::Command,
    time::Duration,
};

use enetstat_tests::{
    Cgroup, Peer, PortReservation, Signal, Tracer, current_netns, enetstat_bin, require_root, skip,
};
use serde_json::Value;

/// A container id no real runtime will have: 64 hex digits from this test's pid and time.
fn container_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:032x}{:032x}", u128::from(std::process::id()), nanos)
}

fn enetstat(args: &[&str]) -> String {
    let out = Command::new(enetstat_bin())
        .args(args)
        .output()
        .expect("cannot run enetstat");
    assert!(
        out.status.success(),
        "enetstat {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn json_lines(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

#[test]
fn a_containers_sockets_name_it_in_snapshots_events_and_lifecycles() {
    if !require_root("a_containers_sockets_name_it_in_snapshots_events_and_lifecycles") {
        return;
    }
    let id = container_id();
    let rel = format!("enetstat-test-{}/docker-{id}.scope", std::process::id());
    let Some(cg) = Cgroup::create(&rel) else {
        skip(
            "a_containers_sockets_name_it_in_snapshots_events_and_lifecycles",
            "no cgroup v2 is mounted",
        );
        return;
    };
    let docker = format!("docker://{id}");
    let netns = current_netns();
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let port = reservation.port();
    let filter = format!("port = :{port}");
    let watch = Tracer::start(&["watch", "--standalone", "-o", "json", &filter]);
    let life = Tracer::start(&["life", "--standalone", "-o", "json", &filter]);

    let addr = reservation.addr().to_string();
    let mut server = Peer::spawn_in(&cg, &["serve", "--addr", &addr, "--accept", "1"]);
    server.wait_line("listening ");

    // `-e` text: the Netns and Cgroup columns, the container by its short id.
    let text = enetstat(&["-tlne", "--standalone"]);
    let header = text.lines().nth(1).unwrap();
    let row = text
        .lines()
        .find(|l| l.contains(&format!("127.0.0.1:{port} ")))
        .unwrap_or_else(|| panic!("no row for port {port}:\n{text}"));
    assert!(
        row.ends_with(&format!(" {netns} docker://{}", &id[..12])),
        "{header}\n{row}"
    );
    assert_eq!(
        header.find("Cgroup"),
        row.find("docker://"),
        "{header}\n{row}"
    );
    assert_eq!(
        header.find("Netns"),
        row.find(&netns.to_string()),
        "{header}\n{row}"
    );

    // JSON and CSV: the full container id, the cgroup's id and path.
    let snap: Value = serde_json::from_str(&enetstat(&["-tln", "--standalone", "-o", "json"]))
        .expect("a JSON snapshot");
    let sock = snap["sockets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["local_port"] == port)
        .unwrap_or_else(|| panic!("no socket on port {port}: {snap}"));
    assert_eq!(sock["container"], docker.as_str(), "{sock}");
    assert_eq!(sock["cgroup"], cg.id(), "{sock}");
    assert_eq!(sock["cgroup_path"], cg.rel(), "{sock}");
    assert_eq!(sock["netns"], netns, "{sock}");
    let csv = enetstat(&["-tln", "--standalone", "-o", "csv"]);
    let mut reader = csv::Reader::from_reader(csv.as_bytes());
    let headers = reader.headers().unwrap().clone();
    let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
    let row = reader
        .records()
        .map(Result::unwrap)
        .find(|r| r[col("local_port")] == port.to_string())
        .unwrap_or_else(|| panic!("no CSV row for port {port}:\n{csv}"));
    assert_eq!(&row[col("container")], docker, "{csv}");
    assert_eq!(&row[col("cgroup_path")], cg.rel(), "{csv}");

    // One connection from outside the container.
    let mut client = Peer::connect(reservation.addr(), 1);
    client.wait_success();
    server.wait_success();
    watch.settle(Duration::from_millis(500));
    life.settle(Duration::from_millis(500));
    let events = json_lines(&watch.stop(Signal::Int).stdout);
    let lives = json_lines(&life.stop(Signal::Int).stdout);

    // Server side: LISTEN's two transitions plus the accepted socket's five, all in the
    // container; the client's five come from outside it.
    let (inside, outside): (Vec<&Value>, Vec<&Value>) =
        events.iter().partition(|e| e["lport"] == port);
    assert_eq!(inside.len(), 7, "{events:#?}");
    assert_eq!(outside.len(), 5, "{events:#?}");
    for e in &inside {
        assert_eq!(e["container"], docker.as_str(), "{e}");
        assert_eq!(e["cgroup"], cg.id(), "{e}");
        assert_eq!(e["cgroup_path"], cg.rel(), "{e}");
    }
    for e in &outside {
        assert_ne!(e["container"], docker.as_str(), "{e}");
        assert_ne!(e["cgroup"], cg.id(), "{e}");
    }
    assert_eq!(lives.len(), 2, "{lives:#?}");
    let served = lives
        .iter()
        .find(|l| l["lport"] == port)
        .expect("the server's lifecycle");
    assert_eq!(served["container"], docker.as_str(), "{served}");
    assert_eq!(served["netns"], netns, "{served}");
    let made = lives
        .iter()
        .find(|l| l["rport"] == port)
        .expect("the client's lifecycle");
    assert_ne!(made["container"], docker.as_str(), "{made}");

    drop(server);
    drop(client);
    drop(cg);
    reservation.release();
}
