//! Snapshots against the kernel's own socket dump (`ss`): standalone with owners (`-p`), and
//! through the daemon.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use enetstat_tests::daemon::Daemon;
use enetstat_tests::enetstat_bin;
use enetstat_tests::scenario::{
    Child, Full, Holder, differences, enetstat_rows, owners_right, sockets_bin, ss_here,
};
use serde_json::Value;

use crate::traffic::CHILD_TIMEOUT;

/// The held sockets of the snapshot scenario: an `enetstat-sockets` server and client per
/// family, holding listeners, established, half-closed, orphaned, TIME_WAIT and UDP sockets.
pub(crate) struct Sockets {
    children: Vec<Child>,
}

impl Sockets {
    pub(crate) fn start() -> Sockets {
        let mut children = Vec::new();
        for addr in [
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
        ] {
            let mut cmd = Command::new(sockets_bin());
            cmd.args(["server", "--addr", &addr.to_string(), "--listeners", "3"]);
            let mut server = Child::spawn(cmd, "enetstat-sockets server");
            let ready = server.json(CHILD_TIMEOUT);
            let ports: Vec<String> = ready["ports"]
                .as_array()
                .expect("ports")
                .iter()
                .map(Value::to_string)
                .collect();
            let mut cmd = Command::new(sockets_bin());
            cmd.args(["client", "--addr", &addr.to_string()])
                .args(["--ports", &ports.join(",")])
                .args(["--closer", &ready["closer"].to_string()])
                .args([
                    "--established",
                    "6",
                    "--half-closed",
                    "3",
                    "--orphaned",
                    "2",
                ])
                .args(["--time-wait", "4", "--udp", "4"]);
            let mut client = Child::spawn(cmd, "enetstat-sockets client");
            client.json(CHILD_TIMEOUT);
            children.push(server);
            children.push(client);
        }
        Sockets { children }
    }

    pub(crate) fn holders(&mut self) -> Vec<Holder> {
        self.children
            .iter_mut()
            .map(|c| {
                c.send("report");
                let v = c.json(CHILD_TIMEOUT);
                Holder {
                    pid: u32::try_from(v["pid"].as_u64().expect("pid")).expect("pid fits"),
                    held: v["held"]
                        .as_array()
                        .expect("held")
                        .iter()
                        .map(|k| {
                            let s = |i: usize| k[i].as_str().expect("a string").to_owned();
                            let norm = |a: &str| {
                                let a: SocketAddr = a.parse().expect("an address");
                                let ip = match a.ip() {
                                    IpAddr::V6(v6) => {
                                        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
                                    }
                                    v4 => v4,
                                };
                                let ip = if ip.is_unspecified() {
                                    "*".to_owned()
                                } else {
                                    ip.to_string()
                                };
                                format!("{ip}|{}", a.port())
                            };
                            (s(0), norm(&s(1)), norm(&s(2)))
                        })
                        .collect(),
                }
            })
            .collect()
    }
}

/// `enetstat ARGS` (one-shot), parsed as one JSON snapshot.
fn enetstat_json(args: &[&str]) -> Value {
    let out = Command::new(enetstat_bin())
        .args(args)
        .output()
        .expect("cannot run enetstat");
    assert!(
        out.status.success(),
        "enetstat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("enetstat -o json prints one JSON object")
}

/// `ss` twice with `take` in between, until `ss` shows the same both times.
fn stable(mut take: impl FnMut() -> Value) -> (Vec<Full>, Value) {
    for _ in 0..20 {
        let before = ss_here();
        let value = take();
        if before == ss_here() {
            return (before, value);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!("the guest's sockets never settled");
}

fn assert_same(what: &str, ours: &[Full], theirs: &[Full]) {
    let (only_ours, only_ss) = differences(ours, theirs);
    assert!(
        only_ours.is_empty() && only_ss.is_empty(),
        "{what}: {} sockets only in enetstat, {} only in ss (of {} in ss): only in enetstat \
         {:?}; only in ss {:?}",
        only_ours.len(),
        only_ss.len(),
        theirs.len(),
        &only_ours[..only_ours.len().min(5)],
        &only_ss[..only_ss.len().min(5)]
    );
}

fn assert_owners(what: &str, snapshot: &Value, sockets: &mut Sockets) {
    let holders = sockets.holders();
    let (right, total, wrong) = owners_right(snapshot, &holders);
    assert!(
        right == total && total > 0,
        "{what}: -p names the right process for {right} of {total} held sockets: {wrong:?}"
    );
}

/// A one-shot snapshot equal to `ss`, with the right owner for every held socket. The sockets
/// are left in `keep` for the daemon's snapshot.
pub(crate) fn snapshot_standalone(keep: &mut Option<Sockets>) {
    let sockets = keep.insert(Sockets::start());
    let (theirs, snapshot) = stable(|| enetstat_json(&["-tuanp", "-o", "json", "--standalone"]));
    assert!(
        theirs.len() >= 40,
        "the scenario made only {} sockets",
        theirs.len()
    );
    assert_same("enetstat -tuanp", &enetstat_rows(&snapshot), &theirs);
    assert_owners("enetstat -tuanp", &snapshot, sockets);
}

/// The daemon's snapshot equal to `ss`. A plain snapshot reads sock_diag itself whether or
/// not a daemon runs; `--recent` (closed connections, which only the daemon keeps) is served
/// by the daemon, and its live rows must equal `ss` (the closed ones are left out).
pub(crate) fn snapshot_via_daemon(daemon: &Daemon) {
    let socket = daemon.socket.to_str().expect("a UTF-8 path");
    let (theirs, snapshot) =
        stable(|| enetstat_json(&["-tuan", "-o", "json", "--recent", "10s", "--socket", socket]));
    assert_eq!(
        snapshot["tracing"], true,
        "the snapshot did not come from the daemon"
    );
    assert_same(
        "enetstat --socket ... -tuan",
        &enetstat_rows(&snapshot),
        &theirs,
    );
}
