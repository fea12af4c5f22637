//! `enetstat top` driven as a person would: on a real terminal (tmux), with keys, while a known
//! process churns connections to a known loopback port; standalone as root and through a
//! daemon as a non-root member of its group; and its batch JSON against the churn's own count.
//! A process whose connections start being refused is highlighted (in colour, and without
//! with NO_COLOR), and a process in a container is shown with it.

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    process::{Command, Stdio},
    sync::Mutex,
    time::Duration,
};

use enetstat_tests::{
    Cgroup, Peer, PortReservation, Tmux, daemon::Daemon, enetstat_bin, require_program,
    require_root, skip,
};
use serde_json::Value;

/// The tests take turns: each runs a churn at full speed, and the machine may have two cores.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// How long the screen may take to show what the churn does, once it is drawn.
const SHOWS_WITHIN: Duration = Duration::from_secs(3);

fn prerequisites(test: &str) -> bool {
    require_root(test)
        && require_program(test, "tmux", "tmux").is_some()
        && require_program(test, "setpriv", "util-linux").is_some()
}

/// A churn (listener and clients in one `enetstat-peer`) to a reserved loopback port, for
/// `seconds`.
fn churn(server: SocketAddr, seconds: u32) -> Peer {
    let peer = Peer::spawn(&[
        "churn",
        "--addr",
        &server.to_string(),
        "--seconds",
        &seconds.to_string(),
    ]);
    peer.wait_line("listening ");
    peer
}

/// The row of the table whose first cell is `name`, split into cells.
fn row<'a>(screen: &'a [String], name: &str) -> Option<Vec<&'a str>> {
    screen.iter().find_map(|l| {
        let l = l.strip_prefix('!').unwrap_or(l);
        l.starts_with(name)
            .then(|| l[name.len()..].split_whitespace().collect::<Vec<_>>())
    })
}

/// The rows' first cells, in order, among those starting with `prefix`.
fn names<'a>(screen: &'a [String], prefix: &str) -> Vec<&'a str> {
    screen
        .iter()
        .map(|l| l.strip_prefix('!').unwrap_or(l))
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

/// Everything a person checks on the screen, with `command` running `enetstat top`.
fn drive(command: &str, pid: u32, port: u16) {
    let tmux = Tmux::start(command, 100, 30);
    tmux.wait_for(Duration::from_secs(30), "the top screen", |s| {
        s.first().is_some_and(|l| l.starts_with("enetstat top - "))
    });

    // The churning process, with a connection rate that is not zero.
    let comm = format!("{pid} enetstat-peer");
    let screen = tmux.wait_for(SHOWS_WITHIN, "the churn's process with a rate", |s| {
        row(s, &comm).is_some_and(|cells| cells.get(1).is_some_and(|conn| *conn != "0"))
    });
    assert!(screen[1].contains("[1 Processes]"), "{}", screen.join("\n"));
    assert!(screen[3].starts_with("PID COMM"), "{}", screen.join("\n"));

    // Tab: the remote endpoints. The churn's clients connect to the port; its accepted side
    // counts for the clients' address, without a port.
    tmux.keys(&["Tab"]);
    let to_port = format!("127.0.0.1:{port}");
    let screen = tmux.wait_for(SHOWS_WITHIN, "the remote view with the port", |s| {
        s[1].contains("[2 Remote endpoints]")
            && row(s, &to_port).is_some()
            && row(s, "127.0.0.1:*").is_some()
    });
    assert!(screen[3].starts_with("REMOTE"), "{}", screen.join("\n"));
    // Sorted by connects: the port the clients connect to comes first.
    assert_eq!(
        names(&screen, "127.0.0.1:"),
        [to_port.as_str(), "127.0.0.1:*"],
        "{}",
        screen.join("\n")
    );
    // `s` sorts by the next column, accepts: the accepted side comes first.
    tmux.keys(&["s"]);
    let screen = tmux.wait_for(SHOWS_WITHIN, "the order by accepts", |s| {
        s[3].contains("ACPT▼")
    });
    assert_eq!(
        names(&screen, "127.0.0.1:"),
        ["127.0.0.1:*", to_port.as_str()],
        "{}",
        screen.join("\n")
    );
    // `r` reverses it.
    tmux.keys(&["r"]);
    let screen = tmux.wait_for(SHOWS_WITHIN, "the reversed order", |s| {
        s[3].contains("ACPT▲")
    });
    assert_eq!(
        names(&screen, "127.0.0.1:"),
        [to_port.as_str(), "127.0.0.1:*"],
        "{}",
        screen.join("\n")
    );

    // Tab: the local port, with its accepts.
    tmux.keys(&["Tab"]);
    let port_text = port.to_string();
    let screen = tmux.wait_for(SHOWS_WITHIN, "the local port with accepts", |s| {
        s[1].contains("[3 Local ports]")
            && row(s, &port_text).is_some_and(|c| c.get(2).is_some_and(|acpt| *acpt != "0"))
    });
    assert!(screen[3].starts_with("PORT"), "{}", screen.join("\n"));

    // Tab: the connections, with their state and age.
    tmux.keys(&["Tab"]);
    tmux.wait_for(SHOWS_WITHIN, "the connections view", |s| {
        s[1].contains("[4 Connections]") && s[3].contains("AGE▼")
    });

    // A bad filter: the error with a caret under the offending word; the old filter stays.
    tmux.keys(&["/"]);
    tmux.keys(&["C-u"]);
    tmux.type_text("dport = :80 bogus");
    tmux.keys(&["Enter"]);
    let screen = tmux.wait_for(SHOWS_WITHIN, "the filter error", |s| {
        s.iter().any(|l| l.starts_with("invalid filter:"))
    });
    let at = screen
        .iter()
        .position(|l| l.starts_with("invalid filter:"))
        .unwrap();
    let shown = &screen[at + 1];
    let caret = &screen[at + 2];
    assert_eq!(
        caret.find('^'),
        shown.find("bogus"),
        "the caret is not under `bogus`:\n{}",
        screen.join("\n")
    );
    assert_eq!(caret.trim(), "^^^^^", "{}", screen.join("\n"));
    assert!(screen[at - 1].starts_with("/dport = :80 bogus"));
    tmux.keys(&["Escape"]);
    tmux.wait_for(SHOWS_WITHIN, "the key line again", |s| {
        s.last().is_some_and(|l| l.starts_with("q quit"))
    });

    // `q`: exit 0, and the terminal as it was: the main screen, cooked mode, a cursor.
    tmux.keys(&["q"]);
    let screen = tmux.wait_for(Duration::from_secs(10), "the exit status", |s| {
        s.iter().any(|l| l.starts_with("stty:"))
    });
    let text = screen.join("\n");
    assert!(text.contains("exited 0"), "{text}");
    assert!(text.contains("stty: icanon echo"), "{text}");
    assert!(
        !text.contains("enetstat top -"),
        "the alternate screen stayed:\n{text}"
    );
    assert_eq!(tmux.format("#{alternate_on}"), "0");
    assert_eq!(tmux.format("#{cursor_flag}"), "1");
}

#[test]
fn top_on_a_terminal_standalone() {
    if !prerequisites("top_on_a_terminal_standalone") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let peer = churn(server, 60);
    let command = format!(
        "{} --standalone top --numeric 'port = {}'",
        enetstat_bin().display(),
        server.port()
    );
    drive(&command, peer.pid(), server.port());
    drop(peer);
    reservation.release();
}

#[test]
fn top_through_the_daemon_as_a_group_member() {
    if !prerequisites("top_through_the_daemon_as_a_group_member") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // gid 4 (adm on Debian): nobody is not in it, so it gets in only as we say.
    let daemon = Daemon::start("top", &["--socket-group", "4"]);
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let peer = churn(server, 60);
    let command = format!(
        "setpriv --reuid=65534 --regid=65534 --groups=4 {} --socket {} top --numeric 'port = {}'",
        enetstat_bin().display(),
        daemon.socket.display(),
        server.port()
    );
    drive(&command, peer.pid(), server.port());
    drop(peer);
    reservation.release();
}

#[test]
fn sigterm_gives_the_terminal_back() {
    if !prerequisites("sigterm_gives_the_terminal_back") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let command = format!("{} --standalone top", enetstat_bin().display());
    let tmux = Tmux::start(&command, 80, 24);
    tmux.wait_for(Duration::from_secs(30), "the top screen", |s| {
        s.first().is_some_and(|l| l.starts_with("enetstat top - "))
    });
    assert_eq!(tmux.format("#{alternate_on}"), "1");
    let pid = tmux.child_pid();
    // SAFETY: kill() on a process we started (through tmux).
    assert_eq!(
        unsafe { libc::kill(libc::pid_t::try_from(pid).unwrap(), libc::SIGTERM) },
        0
    );
    let screen = tmux.wait_for(Duration::from_secs(10), "the exit status", |s| {
        s.iter().any(|l| l.starts_with("stty:"))
    });
    let text = screen.join("\n");
    assert!(text.contains("exited 0"), "{text}");
    assert!(text.contains("stty: icanon echo"), "{text}");
    assert_eq!(tmux.format("#{alternate_on}"), "0");
    assert_eq!(tmux.format("#{cursor_flag}"), "1");
}

#[test]
fn batch_json_counts_match_the_churn() {
    if !require_root("batch_json_counts_match_the_churn") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CONNECTIONS: u64 = 2000;
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let filter = format!("port = {}", server.port());
    let mut cmd = Command::new(enetstat_bin());
    cmd.arg("--standalone");
    let mut top = BatchTop::spawn(cmd, 6, &filter);
    // The first refresh says top is tracing; the churn then falls inside the others.
    top.next();
    let (mut peer, _) = Peer::churn(server, CONNECTIONS);
    let done = peer.wait_line("done ");
    peer.wait_success();
    let frames = top.finish();

    let pid = u64::from(peer.pid());
    let (mut connects, mut accepts, mut from_rates) = (0u64, 0u64, 0f64);
    for f in &frames {
        assert_eq!(f["lost_events"].as_u64(), Some(0), "{f}");
        let interval = f["interval_s"].as_f64().unwrap();
        assert!(interval > 0.5 && interval < 2.0, "{f}");
        for p in f["processes"].as_array().unwrap() {
            assert_eq!(
                p["pid"].as_u64(),
                Some(pid),
                "a process other than the churn: {p}"
            );
            assert_eq!(p["comm"], "enetstat-peer");
            connects += p["connects"].as_u64().unwrap();
            accepts += p["accepts"].as_u64().unwrap();
            from_rates += p["connects_per_s"].as_f64().unwrap() * interval;
            assert_eq!(p["refused"].as_u64(), Some(0), "{p}");
        }
    }
    let within = |n: f64| (n - CONNECTIONS as f64).abs() <= CONNECTIONS as f64 * 0.1;
    assert!(
        within(connects as f64) && within(accepts as f64) && within(from_rates),
        "the churn made {CONNECTIONS} connections ({done}); top counted {connects} connects, \
         {accepts} accepts, {from_rates:.1} from its rates"
    );
    // The local port and the remote port both show, in their own views.
    let port = u64::from(server.port());
    let accepted_on_port: u64 = frames
        .iter()
        .flat_map(|f| f["local_ports"].as_array().unwrap().clone())
        .filter(|r| r["port"].as_u64() == Some(port))
        .map(|r| r["accepts"].as_u64().unwrap())
        .sum();
    let connects_to_port: u64 = frames
        .iter()
        .flat_map(|f| f["remotes"].as_array().unwrap().clone())
        .filter(|r| r["port"].as_u64() == Some(port) && r["addr"] == "127.0.0.1")
        .map(|r| r["connects"].as_u64().unwrap())
        .sum();
    assert_eq!((accepted_on_port, connects_to_port), (accepts, connects));
    reservation.release();
}

/// Whether `screen` (with escapes) sets a foreground or background colour anywhere: SGR 30-37,
/// 38, 40-47, 48 or 90-107.
fn has_colour(screen: &str) -> bool {
    screen.split("\x1b[").skip(1).any(|seq| {
        let params = seq.split('m').next().unwrap_or("");
        params.split(';').any(|p| {
            p.parse::<u32>()
                .is_ok_and(|n| matches!(n, 30..=38 | 40..=48 | 90..=107))
        })
    })
}

#[test]
fn resize_and_no_color() {
    if !prerequisites("resize_and_no_color") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let bin = enetstat_bin();
    let top_screen = |s: &[String]| s.first().is_some_and(|l| l.starts_with("enetstat top - "));

    // With colour, the title is coloured; with NO_COLOR, nothing is (bold and reverse stay).
    let tmux = Tmux::start(&format!("{} --standalone top", bin.display()), 100, 30);
    tmux.wait_for(Duration::from_secs(30), "the top screen", top_screen);
    assert!(
        has_colour(&tmux.screen_with_escapes()),
        "{}",
        tmux.screen_with_escapes()
    );
    drop(tmux);
    let tmux = Tmux::start(
        &format!("NO_COLOR=1 {} --standalone top", bin.display()),
        100,
        30,
    );
    tmux.wait_for(Duration::from_secs(30), "the top screen", top_screen);
    let escaped = tmux.screen_with_escapes();
    assert!(
        !has_colour(&escaped),
        "colour with NO_COLOR set:\n{escaped:?}"
    );

    // Resized down to 80x24 and back: the whole screen is redrawn at each size, the key
    // line last.
    for (w, h) in [(80u16, 24usize), (120, 40), (80, 24)] {
        tmux.resize(w, h as u16);
        let screen = tmux.wait_for(SHOWS_WITHIN, "the screen at the new size", |s| {
            s.len() == h
                && top_screen(s)
                && s[h - 1].starts_with("q quit")
                && s[3].starts_with("PID COMM")
        });
        assert!(screen.iter().all(|l| l.chars().count() <= usize::from(w)));
    }
    tmux.keys(&["q"]);
    let screen = tmux.wait_for(Duration::from_secs(10), "the exit status", |s| {
        s.iter().any(|l| l.starts_with("stty:"))
    });
    assert!(
        screen.iter().any(|l| l == "exited 0"),
        "{}",
        screen.join("\n")
    );
}

/// The SGR parameters a line of `capture-pane -e` sets, and its text without the escapes.
fn sgr(line: &str) -> (Vec<u32>, String) {
    let (mut params, mut text) = (Vec::new(), String::new());
    let mut rest = line;
    while let Some(at) = rest.find("\x1b[") {
        text.push_str(&rest[..at]);
        let seq = &rest[at + 2..];
        let end = seq
            .find(|c: char| c.is_ascii_alphabetic())
            .unwrap_or(seq.len());
        if seq[end..].starts_with('m') {
            params.extend(seq[..end].split(';').filter_map(|p| p.parse::<u32>().ok()));
        }
        rest = seq.get(end + 1..).unwrap_or("");
    }
    text.push_str(rest);
    (params, text)
}

/// A process connects to a port every 20 ms under `enetstat top` (with `env` before it);
/// then the server goes away and its connections are refused. Returns the process's row,
/// with its escapes, once top marks the jump in its failures.
fn row_when_refusals_begin(test: &str, env: &str) -> String {
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let addr = reservation.addr().to_string();
    let server = Peer::spawn(&["serve", "--addr", &addr, "--accept", "1000000"]);
    server.wait_line("listening ");
    let knocker = Peer::spawn(&["knock", "--addr", &addr, "--seconds", "120"]);
    knocker.wait_line("connected");
    // Two-second refreshes: the marked refresh stays on the screen long enough to read.
    let command = format!(
        "{env}{} --standalone top --numeric -d 2 'port = {}'",
        enetstat_bin().display(),
        reservation.port()
    );
    let tmux = Tmux::start(&command, 100, 30);
    let name = format!("{} enetstat-peer", knocker.pid());
    let screen = tmux.wait_for(Duration::from_secs(30), "the knocker connecting", |s| {
        row(s, &name).is_some_and(|cells| cells.get(1).is_some_and(|conn| *conn != "0"))
    });
    let line = screen.iter().find(|l| l.contains(&name)).unwrap();
    assert!(
        !line.starts_with('!'),
        "{test}: marked before any refusal:\n{line}"
    );

    drop(server);
    knocker.wait_line("refused");
    let marked = format!("!{name}");
    let screen = tmux.wait_for_escaped(Duration::from_secs(8), "the knocker marked", |s| {
        s.iter().any(|l| sgr(l).1.starts_with(&marked))
    });
    let line = screen
        .iter()
        .find(|l| sgr(l).1.starts_with(&marked))
        .unwrap()
        .clone();
    tmux.keys(&["q"]);
    tmux.wait_for(Duration::from_secs(10), "the exit", |s| {
        s.iter().any(|l| l == "exited 0")
    });
    drop(knocker);
    reservation.release();
    line
}

#[test]
fn refusals_that_begin_are_highlighted_in_colour() {
    if !prerequisites("refusals_that_begin_are_highlighted_in_colour") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let line = row_when_refusals_begin("refusals_that_begin_are_highlighted_in_colour", "");
    let (params, text) = sgr(&line);
    // Bold red (tmux writes red as SGR 31, or as colour 1 of 256: 38;5;1), and the FAIL
    // column not zero.
    let red = params.contains(&31) || params.windows(3).any(|w| w == [38, 5, 1]);
    assert!(params.contains(&1) && red, "{line:?}");
    let fail = text.split_whitespace().nth(5);
    assert!(fail.is_some_and(|f| f != "0"), "{text}");
}

#[test]
fn refusals_that_begin_are_highlighted_without_colour_under_no_color() {
    if !prerequisites("refusals_that_begin_are_highlighted_without_colour_under_no_color") {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let line = row_when_refusals_begin(
        "refusals_that_begin_are_highlighted_without_colour_under_no_color",
        "NO_COLOR=1 ",
    );
    let (params, _) = sgr(&line);
    assert!(params.contains(&1), "not bold: {line:?}");
    assert!(!has_colour(&line), "colour with NO_COLOR set: {line:?}");
}

/// A container id no real runtime will have: 64 hex digits from this test's pid and time.
fn container_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{:032x}{:032x}", u128::from(std::process::id()), nanos)
}

/// `top -b -o json FILTER`, read a refresh at a time.
struct BatchTop {
    child: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    frames: Vec<Value>,
    want: usize,
}

impl BatchTop {
    /// Runs `top -b -n FRAMES -o json FILTER` after the global arguments `cmd` already has.
    fn spawn(mut cmd: Command, frames: usize, filter: &str) -> BatchTop {
        let mut child = cmd
            .args(["top", "-b", "-n", &frames.to_string(), "-o", "json", filter])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start enetstat top");
        let stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        BatchTop {
            child,
            stdout,
            frames: Vec::new(),
            want: frames,
        }
    }

    /// Reads the next refresh.
    fn next(&mut self) {
        let mut line = String::new();
        std::io::BufRead::read_line(&mut self.stdout, &mut line).expect("cannot read top's output");
        assert!(!line.is_empty(), "top ended early");
        self.frames
            .push(serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}")));
    }

    /// Reads the rest, and asserts top exited 0.
    fn finish(mut self) -> Vec<Value> {
        while self.frames.len() < self.want {
            self.next();
        }
        let status = self.child.wait().unwrap();
        assert!(status.success(), "top failed: {status}");
        self.frames
    }
}

fn top_batch(args: &[&str]) -> Vec<String> {
    let out = Command::new(enetstat_bin())
        .args(["--standalone", "top", "-b"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run enetstat top");
    assert!(
        out.status.success(),
        "enetstat top {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn a_process_in_a_container_is_shown_with_it() {
    const TEST: &str = "a_process_in_a_container_is_shown_with_it";
    if !require_root(TEST) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let id = container_id();
    let rel = format!("enetstat-test-{}/docker-{id}.scope", std::process::id());
    let Some(cg) = Cgroup::create(&rel) else {
        skip(TEST, "no cgroup v2 is mounted");
        return;
    };
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let addr = reservation.addr().to_string();
    let filter = format!("port = {}", reservation.port());
    let churn = Peer::spawn_in(&cg, &["churn", "--addr", &addr, "--seconds", "60"]);
    churn.wait_line("listening ");
    let pid = u64::from(churn.pid());
    let docker = format!("docker://{id}");

    // JSON: the process row and its live connections carry the full id.
    let frames = top_batch(&["-n", "2", "-o", "json", "-d", "500ms", &filter]);
    let (mut rows, mut owned_connections) = (0, 0);
    for line in &frames {
        let f: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        for p in f["processes"].as_array().unwrap() {
            // The row of no process: handshakes the kernel still holds as request sockets
            // (no process, and no cgroup in the socket dump), and bytes a socket moved
            // before its accept was attributed.
            if p["pid"].is_null() {
                continue;
            }
            assert_eq!(p["pid"].as_u64(), Some(pid), "another process: {p}");
            assert_eq!(p["container"], docker.as_str(), "{p}");
            assert_eq!(p["owner_exited"], false, "{p}");
            rows += 1;
        }
        for c in f["connections"].as_array().unwrap() {
            // A handshake the kernel still holds as a request socket (SYN_RECV) belongs to no
            // process, and the socket dump gives request sockets no cgroup; every other
            // connection carries the container.
            if c["pid"].is_null() && c["state"] == "SYN_RECV" {
                continue;
            }
            assert_eq!(c["container"], docker.as_str(), "{c}");
            owned_connections += 1;
        }
        // The other views have no container column.
        for r in f["remotes"].as_array().unwrap() {
            assert!(r.get("container").is_none(), "{r}");
        }
    }
    assert!(rows > 0, "the churn never showed: {frames:#?}");
    assert!(
        owned_connections > 0,
        "no connection of the churn showed: {frames:#?}"
    );

    // Text: the CONTAINER column, last, with the short id under it.
    let text = top_batch(&["-n", "1", "-o", "text", "--numeric", &filter]);
    let header = text.iter().find(|l| l.starts_with("PID COMM")).unwrap();
    let name = format!("{pid} enetstat-peer");
    let row = text
        .iter()
        .find(|l| l.starts_with(&name))
        .unwrap_or_else(|| panic!("no row for the churn:\n{}", text.join("\n")));
    assert!(header.ends_with("CONTAINER"), "{header}");
    assert!(row.ends_with(&id[..12]), "{header}\n{row}");
    assert_eq!(
        header.find("CONTAINER"),
        row.find(&id[..12]),
        "{header}\n{row}"
    );

    drop(churn);
    reservation.release();
    drop(cg);
}

/// A long transfer counts in RX and TX while its connection is still open, each byte once:
/// standalone, and through a daemon, where top samples the sockets of the daemon's table in
/// the kernel's socket dump itself. Both ends are this process, and the connection outlives
/// top, so only the live samples can have counted its bytes.
fn live_bytes_count_while_the_connection_is_open(test: &str, through_daemon: bool) {
    use std::io::{Read as _, Write as _};
    if !require_root(test) {
        return;
    }
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    const CHUNK: usize = 64 << 10;
    const CHUNKS: usize = 16;
    const FRAMES: usize = 5;
    let daemon = through_daemon.then(|| Daemon::start("top-bytes", &[]));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let filter = format!("port = {port}");
    let mut cmd = Command::new(enetstat_bin());
    match &daemon {
        Some(d) => cmd.arg("--socket").arg(&d.socket),
        None => cmd.arg("--standalone"),
    };
    let mut top = BatchTop::spawn(cmd, FRAMES, &filter);
    // The connection opens after the first refresh, and moves 1 MiB over about 1.6 s.
    top.next();
    let mut client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let (mut server, _) = listener.accept().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = vec![0u8; CHUNK * CHUNKS];
        server.read_exact(&mut got).unwrap();
        server
    });
    for _ in 0..CHUNKS {
        client.write_all(&[7; CHUNK]).unwrap();
        std::thread::sleep(Duration::from_millis(100));
    }
    let server = reader.join().unwrap();
    let frames = top.finish();
    let me = u64::from(std::process::id());
    let (mut sent, mut received) = (0, 0);
    for f in &frames {
        for p in f["processes"].as_array().unwrap() {
            if p["pid"].as_u64() == Some(me) {
                sent += p["bytes_out"].as_u64().unwrap();
                received += p["bytes_in"].as_u64().unwrap();
            }
        }
    }
    let moved = (CHUNK * CHUNKS) as u64;
    assert_eq!(
        (sent, received),
        (moved, moved),
        "the open connection moved {moved} bytes each way (sent by one end, received by the \
         other); top's frames counted: {frames:#?}"
    );
    drop((client, server));
}

#[test]
fn live_bytes_count_while_the_connection_is_open_standalone() {
    live_bytes_count_while_the_connection_is_open(
        "live_bytes_count_while_the_connection_is_open_standalone",
        false,
    );
}

#[test]
fn live_bytes_count_while_the_connection_is_open_through_the_daemon() {
    live_bytes_count_while_the_connection_is_open(
        "live_bytes_count_while_the_connection_is_open_through_the_daemon",
        true,
    );
}
