//! The accepting process owns its connection in every view, not only in a standalone `watch`
//! (issue 11): a pre-fork server (`enetstat-peer serve --fork`: the parent listens, a forked
//! child accepts) seen through the daemon's subscription, its `-p` snapshots, and a standalone
//! `-c --recent`, with the closed connection showing its last owner marked `*`. Everything
//! runs in a namespace of the test's own, so the snapshots hold only its sockets.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use enetstat_tests::daemon::{Conn, TempDir};
use enetstat_tests::scenario::{Child, Netns};
use enetstat_tests::{
    Signal, State, Tracer, Transition, ender_bin, enetstat_bin, peer_bin, require_root,
};
use serde_json::{Value, json};

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
        std::thread::sleep(Duration::from_millis(50));
    }
    let stats = Conn::connect(socket).request(&json!({"v": 1, "op": "stats"}));
    assert!(stats["stats"].is_object(), "{stats}");
    daemon
}

/// The text after `prefix` on `child`'s next line.
fn next(child: &mut Child, prefix: &str) -> String {
    let (_, line) = child.line(Duration::from_secs(30));
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}: expected `{prefix}...`, got `{line}`", child.name))
        .trim()
        .to_owned()
}

fn enetstat(args: &[&str]) -> String {
    let out = Command::new(enetstat_bin())
        .args(args)
        .output()
        .expect("cannot run enetstat");
    assert!(
        out.status.success(),
        "enetstat {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The sockets of a JSON snapshot (one object) between `port` and `client`.
fn rows(snapshot: &Value, port: u16, client: u16) -> Vec<Value> {
    snapshot["sockets"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|s| s["local_port"] == port && s["remote_port"] == client)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_pre_fork_acceptor_owns_its_connection_through_the_daemon_and_in_snapshots() {
    const TEST: &str =
        "a_pre_fork_acceptor_owns_its_connection_through_the_daemon_and_in_snapshots";
    if !require_root(TEST) {
        return;
    }
    let ns = Netns::new("prefork");
    let dir = TempDir::new("prefork");
    let socket_path = dir.path.join("enetstat.sock");
    let _daemon = daemon_in(&ns, &socket_path);
    let socket = socket_path.to_str().expect("UTF-8").to_owned();
    let port: u16 = 7072;
    let server = format!("127.0.0.1:{port}");
    let p = port.to_string();
    let subscription = Tracer::watch_json(&["--port", &p, "--socket", &socket]);
    let mut standalone = {
        let mut cmd = ns.command(enetstat_bin());
        cmd.args([
            "--standalone",
            "-tanp",
            "-o",
            "json",
            "-c",
            "200ms",
            "--recent",
            "60s",
        ]);
        Child::spawn(cmd, "enetstat --standalone -c --recent (in a namespace)")
    };
    // Its first snapshot: it traces from now on.
    let _ = standalone.json(Duration::from_secs(60));

    let mut serve = {
        let mut cmd = ns.command(peer_bin());
        cmd.args(["serve", "--addr", &server, "--accept", "1", "--fork"]);
        Child::spawn(cmd, "enetstat-peer serve --fork (in a namespace)")
    };
    next(&mut serve, "listening ");
    let acceptor: u32 = next(&mut serve, "acceptor ").parse().expect("a pid");
    let listener = serve.pid();
    let mut client = {
        let mut cmd = ns.command(ender_bin());
        cmd.args(["hold-connect", "--addr", &server]);
        Child::spawn(cmd, "enetstat-ender hold-connect (in a namespace)")
    };
    let client_port: u16 = next(&mut client, "connected ").parse().expect("a port");
    assert_eq!(next(&mut serve, "accepted "), client_port.to_string());

    // While it is open: `-p` through the daemon (`--recent` asks the daemon's live table; a
    // plain snapshot is the caller's own) names the acceptor from its accept on, and as
    // holding it once the daemon's socket dump has the socket (its inode; until then the
    // traced socket has no holder known from /proc).
    let live = |snapshot: &Value| {
        rows(snapshot, port, client_port)
            .into_iter()
            .find(|s| s["state"] == "ESTABLISHED" && s["closed"] == false)
    };
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let through: Value = serde_json::from_str(
            enetstat(&["--socket", &socket, "-tanp", "--recent", "1m", "-o", "json"]).trim(),
        )
        .expect("one JSON snapshot");
        let row = live(&through)
            .unwrap_or_else(|| panic!("no live server-side row through the daemon: {through}"));
        assert_eq!(row["pid"], acceptor, "through the daemon: {row}");
        if row["inode"].as_u64().is_some_and(|i| i != 0) {
            assert_eq!(row["holds"], true, "through the daemon: {row}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never joined the socket to its dump: {row}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // The client goes (its exit closes the socket); the acceptor reads the end and closes.
    drop(client);
    assert_eq!(next(&mut serve, "done "), "1");

    // The subscription: the listener's maker before accept, the acceptor from accept on.
    subscription.wait_for_lines(12, Duration::from_secs(15));
    subscription.settle(Duration::from_secs(1));
    let finished = subscription.stop(Signal::Int);
    finished.assert_success();
    let server_side: Vec<Transition> = finished
        .transitions()
        .into_iter()
        .filter(|t| t.lport == Some(port) && t.rport == Some(client_port))
        .collect();
    let states: Vec<(State, State)> = server_side.iter().map(Transition::states).collect();
    assert_eq!(
        states,
        [
            (State::Listen, State::SynRecv),
            (State::SynRecv, State::Established),
            (State::Established, State::CloseWait),
            (State::CloseWait, State::LastAck),
            (State::LastAck, State::Close),
        ],
        "{server_side:#?}"
    );
    for t in &server_side {
        let want = match t.old {
            State::Listen | State::SynRecv => listener,
            _ => acceptor,
        };
        assert_eq!(
            t.pid,
            Some(want),
            "through the daemon, listener made by {listener}, accepted by {acceptor}: {t}"
        );
    }

    // Closed, and both processes gone: the last owner, marked, through the daemon and in a
    // standalone `-c`.
    let closed = |snapshot: &Value| {
        rows(snapshot, port, client_port)
            .into_iter()
            .find(|s| s["closed"] == true)
    };
    let through: Value = serde_json::from_str(
        enetstat(&["--socket", &socket, "-tanp", "--recent", "1m", "-o", "json"]).trim(),
    )
    .expect("one JSON snapshot");
    let row = closed(&through)
        .unwrap_or_else(|| panic!("no closed server-side row through the daemon: {through}"));
    assert_eq!(
        (&row["pid"], &row["holds"]),
        (&Value::from(acceptor), &Value::Bool(false)),
        "through the daemon: {row}"
    );
    let text = enetstat(&["--socket", &socket, "-tanp", "--recent", "1m"]);
    let ours = format!("127.0.0.1:{port} ");
    let theirs = format!("127.0.0.1:{client_port} ");
    let line = text
        .lines()
        .find(|l| matches!((l.find(&ours), l.find(&theirs)), (Some(a), Some(b)) if a < b))
        .unwrap_or_else(|| panic!("no row of the connection:\n{text}"));
    assert!(
        line.contains(&format!("{acceptor}/enetstat-peer*")),
        "the last owner, marked `*`: {line}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let snapshot = standalone.json(Duration::from_secs(30));
        if let Some(row) = closed(&snapshot) {
            assert_eq!(
                (&row["pid"], &row["holds"]),
                (&Value::from(acceptor), &Value::Bool(false)),
                "standalone -c: {row}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "standalone -c: no closed server-side row within 30 s: {snapshot}"
        );
    }
}
