//! A connection that ends by a timeout after accept (issue 11): the accepting process owns it
//! to the end, though the timeout fires in the kernel's timer, where the task on the CPU is
//! anybody. The server and the client each live in a namespace of the test's own, joined by a
//! veth pair; once the connection is up the client's namespace routes everything back to the
//! server into a blackhole, so the server's data goes unacknowledged and its
//! `TCP_USER_TIMEOUT` (1 s) ends the connection: ESTABLISHED>CLOSE, `end` `timeout`.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use enetstat_tests::scenario::{Child, Netns};
use enetstat_tests::{Signal, State, Tracer, Transition, ender_bin, life::Life, require_root};

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run ip {args:?}: {e}"));
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The text after `prefix` on `child`'s next line.
fn next(child: &mut Child, prefix: &str) -> String {
    let (_, line) = child.line(Duration::from_secs(30));
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}: expected `{prefix}...`, got `{line}`", child.name))
        .trim()
        .to_owned()
}

#[test]
fn a_connection_that_times_out_after_accept_keeps_the_accepting_process() {
    const TEST: &str = "a_connection_that_times_out_after_accept_keeps_the_accepting_process";
    if !require_root(TEST) {
        return;
    }
    let server_ns = Netns::new("tos");
    let client_ns = Netns::new("toc");
    let n = std::process::id() % 250 + 1;
    let (near, far) = (format!("198.19.{n}.1"), format!("198.19.{n}.2"));
    ip(&[
        "-n",
        &server_ns.name,
        "link",
        "add",
        "tos0",
        "type",
        "veth",
        "peer",
        "name",
        "toc0",
        "netns",
        &client_ns.name,
    ]);
    ip(&[
        "-n",
        &server_ns.name,
        "addr",
        "add",
        &format!("{near}/24"),
        "dev",
        "tos0",
    ]);
    ip(&[
        "-n",
        &client_ns.name,
        "addr",
        "add",
        &format!("{far}/24"),
        "dev",
        "toc0",
    ]);
    ip(&["-n", &server_ns.name, "link", "set", "tos0", "up"]);
    ip(&["-n", &client_ns.name, "link", "set", "toc0", "up"]);

    // The port is the namespace's own: nothing else listens there.
    let server: SocketAddr = format!("{near}:7071").parse().unwrap();
    let port = server.port().to_string();
    let watch = Tracer::start(&["watch", "-o", "json", "--port", &port]);
    let life = Tracer::start(&["life", "-o", "json", "--port", &port]);

    let mut cmd = server_ns.command(ender_bin());
    cmd.args([
        "stall-serve",
        "--addr",
        &server.to_string(),
        "--user-timeout-ms",
        "1000",
    ]);
    let mut serve = Child::spawn(cmd, "enetstat-ender stall-serve");
    next(&mut serve, "listening ");
    let mut cmd = client_ns.command(ender_bin());
    cmd.args(["hold-connect", "--addr", &server.to_string()]);
    let mut client = Child::spawn(cmd, "enetstat-ender hold-connect");
    let client_port: u16 = next(&mut client, "connected ").parse().expect("a port");
    assert_eq!(next(&mut serve, "accepted "), client_port.to_string());
    std::thread::sleep(Duration::from_millis(300));
    // The client vanishes: nothing it sends reaches the server any more.
    ip(&[
        "-n",
        &client_ns.name,
        "route",
        "add",
        "blackhole",
        &format!("{near}/32"),
    ]);
    let (_, ended) = serve.line(Duration::from_secs(60));
    assert_eq!(ended, "timed_out", "the server's writes time out");
    let acceptor = serve.pid();

    watch.settle(Duration::from_secs(1));
    life.settle(Duration::from_millis(300));
    let watch = watch.stop(Signal::Int);
    let life = life.stop(Signal::Int);
    watch.assert_success();
    life.assert_success();
    let lines: Vec<Transition> = watch
        .transitions()
        .into_iter()
        .filter(|t| t.lport == Some(server.port()) && t.rport == Some(client_port))
        .collect();
    let states: Vec<(State, State)> = lines.iter().map(Transition::states).collect();
    assert_eq!(
        states,
        [
            (State::Listen, State::SynRecv),
            (State::SynRecv, State::Established),
            (State::Established, State::Close),
        ],
        "the server side: {lines:#?}"
    );
    let end = &lines[2];
    assert_eq!(end.end.as_deref(), Some("timeout"), "{end}");
    assert_eq!(end.pid, Some(acceptor), "the accepting process: {end}");
    assert_eq!(
        end.comm.as_deref(),
        Some("enetstat-ender"),
        "the accepting process: {end}"
    );
    let lives: Vec<Life> = life
        .stdout
        .iter()
        .map(|l| Life::parse(l).unwrap())
        .filter(|l| l.lport == Some(server.port()) && l.rport == Some(client_port))
        .collect();
    let [record] = lives.as_slice() else {
        panic!(
            "one life record of the server side, not {}: {lives:#?}",
            lives.len()
        );
    };
    assert_eq!(record.pid, Some(acceptor), "{}", record.raw);
    assert_eq!(record.end.as_deref(), Some("timeout"), "{}", record.raw);
    drop(client);
}
