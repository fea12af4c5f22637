//! `enetstat-guest`: the end-to-end checks of `cargo xtask matrix`, run as the last step of a
//! QEMU guest's init on one of Debian's kernels.
//!
//! The checks are the host suite's own, with its own definition of correct (the harness in
//! `src/`): exact transition sequences for a listener, a client and an accepted socket on
//! 127.0.0.1 and ::1, a refused connect, `life` with exact byte counts and owners, a snapshot
//! equal to the kernel's own socket dump (`ss`), the daemon serving a snapshot and a
//! subscription, and nothing left attached at the end. The guest is quiet (no other TCP
//! traffic), so one `watch` and one `life` tracer serve every scenario, each scenario told
//! apart by its own reserved port.
//!
//! Each check prints one line on stdout, which the host parses into its table:
//!
//! ```text
//! PLAN <name> <name> ...
//! CHECK <name> ok
//! CHECK <name> FAIL <first line of the reason>
//! ```
//!
//! The `PLAN` line comes first and names every check, so the host can tell a check that
//! printed nothing (the guest crashed or hung) from one that does not exist.
//!
//! The whole reason (a failed assertion's message) goes to stderr, which the guest's init sends
//! to the serial console too, so the host's log of the guest has it. The exit status is 0 when
//! every check passed, else 1.
//!
//! It expects `ENETSTAT_BIN`, `ENETSTAT_PEER_BIN`, `ENETSTAT_SOCKETS_BIN` and
//! `ENETSTAT_ENDER_BIN` to name the binaries (the guest's init sets them), `ss` and `bpftool`
//! on PATH, and the sock_diag modules loaded.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::panic::{self, AssertUnwindSafe};
use std::path::PathBuf;
use std::process::{Command, ExitCode};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use enetstat_tests::daemon::Daemon;
use enetstat_tests::life::Life;
use enetstat_tests::scenario::{
    Child, Full, Holder, differences, enetstat_rows, owners_right, sockets_bin, ss_here,
};
use enetstat_tests::{
    Checker, Expect, Peer, PortReservation, REFUSED, Signal, State, Tracer, Transition,
    current_netns, enetstat_bin, prog_ids_held_by, wait_progs_gone,
};
use serde_json::Value;

use State::{CloseWait, Established, FinWait1, FinWait2, LastAck, SynRecv, SynSent};

/// Bytes each way in the transfer.
const MIB: u64 = 1_048_576;
/// `enetstat-peer connect` exits with this when the connection is refused.
const EXIT_REFUSED: i32 = 3;
/// The modules a snapshot needs on Debian's kernels.
const DIAG_MODULES: [&str; 3] = ["inet_diag", "tcp_diag", "udp_diag"];
/// The states a client that closes first leaves, in order.
const ACTIVE_CLOSE: [State; 4] = [SynSent, Established, FinWait1, FinWait2];
/// The states the accepted socket of such a client leaves, in order.
const PASSIVE_CLOSE: [State; 4] = [SynRecv, Established, CloseWait, LastAck];
/// How long a helper may take to say its next line (TCG is slow).
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// How long to wait for lines the traffic should have made (they come within milliseconds;
/// when some never come, the check fails after this).
const LINES_TIMEOUT: Duration = Duration::from_secs(15);
/// Quiet time after the traffic, for lines still on their way.
const SETTLE: Duration = Duration::from_secs(1);

/// Every check, in the order they run.
const PLAN: [&str; 12] = [
    "modules",
    "tracing",
    "watch_ipv4",
    "watch_ipv6",
    "refused",
    "life",
    "snapshot",
    "daemon_start",
    "daemon_snapshot",
    "daemon_watch",
    "daemon_stop",
    "detached",
];

/// The message of the last panic, taken by [`Report::run_value`].
static PANIC: Mutex<Option<String>> = Mutex::new(None);

fn main() -> ExitCode {
    panic::set_hook(Box::new(|info| {
        let message = if let Some(s) = info.payload().downcast_ref::<&str>() {
            (*s).to_owned()
        } else if let Some(s) = info.payload().downcast_ref::<String>() {
            s.clone()
        } else {
            "a panic without a message".to_owned()
        };
        let at = info
            .location()
            .map(|l| format!(" (at {}:{})", l.file(), l.line()))
            .unwrap_or_default();
        eprintln!("enetstat-guest: {message}{at}");
        *PANIC
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(message);
    }));

    print_line(&format!("PLAN {}", PLAN.join(" ")));
    let mut report = Report::default();
    // The programs loaded before any enetstat runs: none of the others may outlive the checks.
    let baseline: Result<BTreeSet<u64>, String> =
        bpftool_progs().map(|progs| progs.iter().filter_map(|p| p["id"].as_u64()).collect());
    report.run("modules", check_modules);

    // One watch and one life tracer for every scenario.
    let mut held = Progs::default();
    let traced = report.run_value("tracing", || trace_scenarios(&mut held));
    report.after("watch_ipv4", &traced, |t| check_lifecycle(t, &t.v4));
    report.after("watch_ipv6", &traced, |t| check_lifecycle(t, &t.v6));
    report.after("refused", &traced, check_refused);
    report.after("life", &traced, check_life);

    // The snapshot's sockets stay up for the daemon's snapshot.
    let mut sockets = None;
    report.run("snapshot", || snapshot_standalone(&mut sockets));
    let daemon = report.run_value("daemon_start", || {
        let daemon = Daemon::start("guest", &[]);
        held.add("enetstat daemon", daemon.pid());
        daemon
    });
    match (&daemon, &sockets) {
        (Ok(daemon), Some(_)) => report.run("daemon_snapshot", || snapshot_via_daemon(daemon)),
        (Ok(_), None) => {
            report.skip_after("daemon_snapshot", "the snapshot's sockets are not there")
        }
        (Err(_), _) => report.skip_after("daemon_snapshot", "the daemon did not start"),
    }
    report.after("daemon_watch", &daemon, daemon_watch);
    match daemon {
        Ok(daemon) => report.run("daemon_stop", || {
            let (finished, _dir, _socket) = daemon.stop(Signal::Term);
            finished.assert_success();
        }),
        Err(_) => report.skip_after("daemon_stop", "the daemon did not start"),
    }
    drop(sockets);
    report.run("detached", || {
        check_detached(&held, baseline.as_ref().unwrap_or_else(|e| panic!("{e}")));
    });

    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The check lines printed so far, and how many failed.
#[derive(Default)]
struct Report {
    failed: usize,
}

impl Report {
    /// Runs one check, catching its panic, and prints its line.
    fn run(&mut self, name: &str, check: impl FnOnce()) {
        let _ = self.run_value(name, check);
    }

    /// Runs one check that produces something later checks use.
    fn run_value<T>(&mut self, name: &str, check: impl FnOnce() -> T) -> Result<T, String> {
        let started = Instant::now();
        eprintln!("enetstat-guest: running {name}");
        let result = panic::catch_unwind(AssertUnwindSafe(check)).map_err(|_| {
            PANIC
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .take()
                .unwrap_or_else(|| "panicked".to_owned())
        });
        eprintln!(
            "enetstat-guest: {name} took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        match &result {
            Ok(_) => self.line(name, "ok"),
            Err(message) => self.fail(name, &one_line(message)),
        }
        result
    }

    /// A check on what an earlier check produced; fails with its reason if there is nothing.
    fn after<T>(&mut self, name: &str, input: &Result<T, String>, check: impl FnOnce(&T)) {
        match input {
            Ok(value) => self.run(name, || check(value)),
            Err(reason) => self.fail(name, &format!("not run: {}", one_line(reason))),
        }
    }

    /// A check that cannot run because an earlier one failed.
    fn skip_after(&mut self, name: &str, why: &str) {
        self.fail(name, &format!("not run: {why}"));
    }

    fn fail(&mut self, name: &str, reason: &str) {
        self.failed += 1;
        self.line(name, &format!("FAIL {reason}"));
    }

    fn line(&self, name: &str, result: &str) {
        debug_assert!(PLAN.contains(&name), "{name} is not in PLAN");
        print_line(&format!("CHECK {name} {result}"));
    }
}

/// One line on stdout in one write, so that the helpers' output echoed on the same console
/// cannot land inside it.
fn print_line(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// A failure message on one line: for a [`Checker`]'s report its headline and the headline
/// of each kind of problem; for a tracer that did not start its error and the verifier's
/// verdict; else the first line, with the list it opens if it ends with `[`.
fn one_line(message: &str) -> String {
    let lines: Vec<&str> = message
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let kinds: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| l.starts_with('[') && l.contains("x] "))
        .collect();
    let stderr = quoted_lines(&lines);
    let mut out = if !kinds.is_empty() {
        format!("{} {}", lines[0], kinds.join(" "))
    } else if let Some(error) = stderr.iter().find(|l| l.starts_with("enetstat: error:")) {
        // A tracer that did not start: its error, and the verifier's verdict if it gave one
        // (the line before its statistics).
        let verdict = stderr
            .iter()
            .position(|l| l.starts_with("verification time"))
            .and_then(|i| i.checked_sub(1))
            .map(|i| format!(" [verifier: {}]", stderr[i]))
            .unwrap_or_default();
        format!("{error}{verdict}")
    } else if lines.first().is_some_and(|l| l.ends_with('[')) {
        // `...; stderr: [` then the lines of a `{:#?}` list.
        format!("{} {}]", lines[0], stderr.join(" | "))
    } else {
        lines.first().copied().unwrap_or_default().to_owned()
    };
    const MAX: usize = 500;
    if out.len() > MAX {
        let mut end = MAX;
        while !out.is_char_boundary(end) {
            end -= 1;
        }
        out.truncate(end);
        out.push_str("...");
    }
    if out.is_empty() {
        "(no message)".to_owned()
    } else {
        out
    }
}

/// The lines of a `{:#?}`-printed list of strings (a tracer's stderr in its panic message).
fn quoted_lines(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix('"'))
        .filter_map(|l| l.strip_suffix("\",").or_else(|| l.strip_suffix('"')))
        .map(|l| l.replace("\\\"", "\"").replace("\\\\", "\\"))
        .collect()
}

/// The eBPF programs held by the enetstat processes the checks started.
#[derive(Default)]
struct Progs {
    ids: BTreeSet<u32>,
    holders: Vec<String>,
}

impl Progs {
    fn add(&mut self, who: &str, pid: u32) {
        let ids = prog_ids_held_by(pid);
        assert!(
            !ids.is_empty(),
            "{who} (pid {pid}) holds no eBPF program while it traces"
        );
        self.ids.extend(ids);
        self.holders.push(format!("{who} (pid {pid})"));
    }
}

/// `bpftool -j prog show`: every eBPF program loaded.
fn bpftool_progs() -> Result<Vec<Value>, String> {
    let out = Command::new("bpftool")
        .args(["-j", "prog", "show"])
        .output()
        .map_err(|e| format!("cannot run bpftool: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`bpftool -j prog show` failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let progs: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("`bpftool -j prog show` printed no JSON: {e}"))?;
    Ok(progs.as_array().cloned().unwrap_or_default())
}

fn check_modules() {
    let loaded = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let missing: Vec<&str> = DIAG_MODULES
        .iter()
        .copied()
        .filter(|m| {
            let module = loaded.lines().any(|l| l.split(' ').next() == Some(*m));
            let builtin = std::path::Path::new("/sys/module").join(m).exists();
            !(module || builtin)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "sock_diag modules not loaded: {missing:?} (the guest's init loads them; see the log)"
    );
}

/// A helper binary: `$VAR`, else next to this executable.
fn helper(var: &str, name: &str) -> PathBuf {
    if let Some(path) = std::env::var_os(var) {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("cannot find this executable");
    exe.with_file_name(name)
}

/// One connection between two `enetstat-peer`s: what the test knows about it.
struct Connection {
    server: SocketAddr,
    server_pid: u32,
    client_pid: u32,
    client_port: u16,
}

/// The refused connect.
struct Refused {
    closed: SocketAddr,
    client_pid: u32,
}

/// The 1 MiB transfer between two `enetstat-ender`s.
struct Transfer {
    server: SocketAddr,
    server_pid: u32,
    client_pid: u32,
    client_port: u16,
}

/// What the watch and life tracers printed while every scenario ran.
struct Traced {
    transitions: Vec<Transition>,
    lives: Vec<Life>,
    netns: u64,
    v4: Connection,
    v6: Connection,
    refused: Refused,
    transfer: Transfer,
}

/// `serve` and `connect` on a reserved port of `ip`. The reservation is returned so that it
/// lives until the tracers stop.
fn connection(ip: IpAddr) -> (Connection, PortReservation) {
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let (mut serve, listening) = Peer::serve(server, 1);
    assert_eq!(listening, server.port(), "the peer listens elsewhere");
    let mut client = Peer::connect(server, 1);
    let client_port: u16 = client.wait_line("connected ").parse().expect("a port");
    client.wait_success();
    serve.wait_success();
    let connection = Connection {
        server,
        server_pid: serve.pid(),
        client_pid: client.pid(),
        client_port,
    };
    (connection, reservation)
}

fn refused(ip: IpAddr) -> (Refused, PortReservation) {
    let reservation = PortReservation::new(ip);
    let closed = reservation.addr();
    let mut client = Peer::connect(closed, 1);
    let status = client.wait();
    assert_eq!(
        status.code(),
        Some(EXIT_REFUSED),
        "connect to {closed} should be refused"
    );
    let refused = Refused {
        closed,
        client_pid: client.pid(),
    };
    (refused, reservation)
}

fn expect_line(child: &mut Child, prefix: &str) -> String {
    let (_, line) = child.line(CHILD_TIMEOUT);
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}: expected `{prefix}...`, got `{line}`", child.name))
        .trim()
        .to_owned()
}

fn transfer(ip: IpAddr) -> (Transfer, PortReservation) {
    let reservation = PortReservation::new(ip);
    let server = reservation.addr();
    let ender = helper("ENETSTAT_ENDER_BIN", "enetstat-ender");
    let bytes = MIB.to_string();
    let mut cmd = Command::new(&ender);
    cmd.args(["transfer-serve", "--addr", &server.to_string()])
        .args(["--bytes", &bytes]);
    let mut serve = Child::spawn(cmd, "enetstat-ender transfer-serve");
    expect_line(&mut serve, "listening ");
    let mut cmd = Command::new(&ender);
    cmd.args(["transfer-connect", "--addr", &server.to_string()])
        .args(["--bytes", &bytes]);
    let mut client = Child::spawn(cmd, "enetstat-ender transfer-connect");
    let client_port = expect_line(&mut client, "connected ")
        .parse()
        .expect("a port");
    expect_line(&mut client, "done");
    expect_line(&mut serve, "done");
    let transfer = Transfer {
        server,
        server_pid: serve.pid(),
        client_pid: client.pid(),
        client_port,
    };
    (transfer, reservation)
}

/// Starts `watch -o json` and `life -o json`, runs every scenario, stops both tracers and
/// checks they exited cleanly, printed their summary and lost nothing.
fn trace_scenarios(progs: &mut Progs) -> Traced {
    let watch = Tracer::watch_json(&[]);
    progs.add("enetstat watch", watch.pid());
    let life = Tracer::start(&["life", "-o", "json"]);
    progs.add("enetstat life", life.pid());

    let (v4, r1) = connection(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (v6, r2) = connection(IpAddr::V6(Ipv6Addr::LOCALHOST));
    let (refused, r3) = refused(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let (transfer, r4) = transfer(IpAddr::V4(Ipv4Addr::LOCALHOST));

    // 12 lines per connection (the transfer too), 2 for the refused connect; a lifecycle
    // per connected socket and one for the refused one.
    watch.wait_for_lines(3 * 12 + 2, LINES_TIMEOUT);
    life.wait_for_lines(3 * 2 + 1, LINES_TIMEOUT);
    let mut finished = Vec::new();
    for tracer in [watch, life] {
        tracer.settle(SETTLE);
        let done = tracer.stop(Signal::Int);
        done.assert_success();
        let summary = done.summary();
        assert_eq!(
            summary.lost, 0,
            "`{}` lost records: {summary:?}",
            done.command
        );
        finished.push(done);
    }
    for reservation in [r1, r2, r3, r4] {
        reservation.release();
    }
    let lives = finished[1]
        .stdout
        .iter()
        .map(|l| Life::parse(l))
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("{e}"));
    Traced {
        transitions: finished[0].transitions(),
        lives,
        netns: current_netns(),
        v4,
        v6,
        refused,
        transfer,
    }
}

/// The transitions on `port` (either end), as a `--port` filter would show them.
fn on_port(transitions: &[Transition], port: u16) -> Vec<Transition> {
    transitions
        .iter()
        .filter(|t| t.lport == Some(port) || t.rport == Some(port))
        .cloned()
        .collect()
}

fn check_lifecycle(traced: &Traced, c: &Connection) {
    let transitions = on_port(&traced.transitions, c.server.port());
    let mut check = Checker::new(Expect {
        server: c.server,
        netns: traced.netns,
        server_pid: c.server_pid,
        client_pid: c.client_pid,
        comm: "enetstat-peer",
    });
    let ports = check.connections(&transitions, 1);
    check.check(ports == [c.client_port], || {
        format!(
            "the client's port should be {} (what connect() got), got {ports:?}",
            c.client_port
        )
    });
    check.finish();
}

fn check_refused(traced: &Traced) {
    let r = &traced.refused;
    let transitions = on_port(&traced.transitions, r.closed.port());
    let mut check = Checker::new(Expect {
        server: r.closed,
        netns: traced.netns,
        server_pid: 0,
        client_pid: r.client_pid,
        comm: "enetstat-peer",
    });
    check.check(transitions.len() == REFUSED.len(), || {
        format!(
            "expected exactly {} transitions, got {}",
            REFUSED.len(),
            transitions.len()
        )
    });
    let roles = check.sort(&transitions);
    check.check(
        roles.clients.len() == 1 && roles.listeners.is_empty() && roles.accepted.is_empty(),
        || "expected one client socket and nothing else".to_owned(),
    );
    for seq in &roles.clients {
        check.client(seq, &REFUSED);
    }
    check.finish();
}

/// What one lifecycle must say.
struct Want<'a> {
    local_port: Option<u16>,
    remote: SocketAddr,
    pid: u32,
    comm: &'a str,
    states: &'a [State],
    end: &'a str,
    bytes: u64,
}

fn check_life(traced: &Traced) {
    let mut problems = Vec::new();
    let mut want = |w: Want<'_>| {
        let found: Vec<&Life> = traced
            .lives
            .iter()
            .filter(|l| {
                l.raddr == w.remote.ip()
                    && l.rport == Some(w.remote.port())
                    && w.local_port.is_none_or(|p| l.lport == Some(p))
            })
            .collect();
        let [life] = found.as_slice() else {
            problems.push(format!(
                "expected one lifecycle to {} (local port {:?}), got {}",
                w.remote,
                w.local_port,
                found.len()
            ));
            return;
        };
        let family = if w.remote.is_ipv4() { "ipv4" } else { "ipv6" };
        let mut wrong = Vec::new();
        if life.family != family {
            wrong.push(format!("family should be {family}"));
        }
        if life.pid != Some(w.pid) || life.comm.as_deref() != Some(w.comm) {
            wrong.push(format!("owner should be pid {} comm {}", w.pid, w.comm));
        }
        if life.netns != traced.netns {
            wrong.push(format!("netns should be {}", traced.netns));
        }
        if life.state_names() != w.states {
            wrong.push(format!("states should be {:?}", w.states));
        }
        if life.end != w.end {
            wrong.push(format!("end should be {}", w.end));
        }
        if !life.complete {
            wrong.push("complete should be true".to_owned());
        }
        if life.bytes_sent != w.bytes || life.bytes_received != w.bytes {
            wrong.push(format!(
                "bytes_sent and bytes_received should be {}",
                w.bytes
            ));
        }
        if !wrong.is_empty() {
            problems.push(format!(
                "{}:{} -> {}: {}",
                life.laddr,
                life.lport.unwrap_or(0),
                w.remote,
                wrong.join(", ")
            ));
        }
    };
    for c in [&traced.v4, &traced.v6] {
        want(Want {
            local_port: Some(c.client_port),
            remote: c.server,
            pid: c.client_pid,
            comm: "enetstat-peer",
            states: &ACTIVE_CLOSE,
            end: "normal",
            bytes: 0,
        });
        want(Want {
            local_port: Some(c.server.port()),
            remote: SocketAddr::new(c.server.ip(), c.client_port),
            pid: c.server_pid,
            comm: "enetstat-peer",
            states: &PASSIVE_CLOSE,
            end: "normal",
            bytes: 0,
        });
    }
    let t = &traced.transfer;
    want(Want {
        local_port: Some(t.client_port),
        remote: t.server,
        pid: t.client_pid,
        comm: "enetstat-ender",
        states: &ACTIVE_CLOSE,
        end: "normal",
        bytes: MIB,
    });
    want(Want {
        local_port: Some(t.server.port()),
        remote: SocketAddr::new(t.server.ip(), t.client_port),
        pid: t.server_pid,
        comm: "enetstat-ender",
        states: &PASSIVE_CLOSE,
        end: "normal",
        bytes: MIB,
    });
    let r = &traced.refused;
    want(Want {
        local_port: None,
        remote: r.closed,
        pid: r.client_pid,
        comm: "enetstat-peer",
        states: &[SynSent],
        end: "refused",
        bytes: 0,
    });
    let expected = 7;
    if traced.lives.len() != expected {
        problems.push(format!(
            "expected {expected} lifecycles, got {}",
            traced.lives.len()
        ));
    }
    assert!(
        problems.is_empty(),
        "{} problem(s) with `life -o json`: {}\nall lifecycles:\n{}",
        problems.len(),
        problems.join("; "),
        traced
            .lives
            .iter()
            .map(|l| l.raw.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The held sockets of the snapshot scenario: an `enetstat-sockets` server and client per
/// family, holding listeners, established, half-closed, orphaned, TIME_WAIT and UDP sockets.
struct Sockets {
    children: Vec<Child>,
}

impl Sockets {
    fn start() -> Sockets {
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

    fn holders(&mut self) -> Vec<Holder> {
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
fn snapshot_standalone(keep: &mut Option<Sockets>) {
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

/// The daemon's snapshot (`enetstat --socket S`) equal to `ss`.
fn snapshot_via_daemon(daemon: &Daemon) {
    let socket = daemon.socket.to_str().expect("a UTF-8 path");
    let (theirs, snapshot) = stable(|| enetstat_json(&["-tuan", "-o", "json", "--socket", socket]));
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

/// A subscription through the daemon: `enetstat --socket S watch -o json --port P` sees one
/// connection's exact transitions.
fn daemon_watch(daemon: &Daemon) {
    let socket = daemon.socket.to_str().expect("a UTF-8 path");
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let port = reservation.port().to_string();
    let tracer = Tracer::watch_json(&["--port", &port, "--socket", socket]);
    let (c, inner) = connection_on(reservation);
    tracer.wait_for_lines(12, LINES_TIMEOUT);
    tracer.settle(SETTLE);
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    let transitions = finished.transitions();
    let mut check = Checker::new(Expect {
        server: c.server,
        netns: current_netns(),
        server_pid: c.server_pid,
        client_pid: c.client_pid,
        comm: "enetstat-peer",
    });
    let ports = check.connections(&transitions, 1);
    check.check(ports == [c.client_port], || {
        format!(
            "the client's port should be {}, got {ports:?}",
            c.client_port
        )
    });
    check.finish();
    inner.release();
}

/// [`connection`] on a port already reserved.
fn connection_on(reservation: PortReservation) -> (Connection, PortReservation) {
    let server = reservation.addr();
    let (mut serve, _) = Peer::serve(server, 1);
    let mut client = Peer::connect(server, 1);
    let client_port: u16 = client.wait_line("connected ").parse().expect("a port");
    client.wait_success();
    serve.wait_success();
    let c = Connection {
        server,
        server_pid: serve.pid(),
        client_pid: client.pid(),
        client_port,
    };
    (c, reservation)
}

/// Every program the tracers and the daemon held is gone, and no program that was not there
/// before the checks is left (this holds, and is checked, even where nothing could load).
fn check_detached(held: &Progs, baseline: &BTreeSet<u64>) {
    let left = wait_progs_gone(&held.ids, Duration::from_secs(10));
    assert!(
        left.is_empty(),
        "eBPF programs {left:?} of {} still exist after they exited",
        held.holders.join(", ")
    );
    let new: Vec<String> = bpftool_progs()
        .unwrap_or_else(|e| panic!("{e}"))
        .iter()
        .filter(|p| p["id"].as_u64().is_some_and(|id| !baseline.contains(&id)))
        .map(|p| format!("{} ({})", p["name"], p["type"]))
        .collect();
    assert!(
        new.is_empty(),
        "programs loaded during the checks are still there: {new:?}"
    );
}
