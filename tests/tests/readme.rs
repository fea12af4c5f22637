//! The README's own examples, run. Every `enetstat` command the README shows (after `$ ` in a
//! code block, on its own line in a `sh` block, or in the Commands table) must have a check
//! here, and every check must still be in the README: a new example without a check fails,
//! and so does a check whose example is gone. Each check runs the command with the traffic it
//! needs and compares its output with the shape the README shows: the header lines as
//! printed, the error text word for word, the summary line's form.
//!
//! What the checks change, and why: tracing commands get `--standalone` (or a temporary
//! `--socket`), so they never talk to a daemon on the default socket, which other tests must
//! not see; commands that run until Ctrl-C get SIGINT once their output is in; the daemon's
//! fixed metrics port becomes a free one, and `--socket-group netops` a group the test makes.
//! `socat` is not installed, so the stats request is sent by the test itself.

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, TcpStream},
    os::unix::net::UnixStream,
    process::{Command, Stdio},
    time::Duration,
};

use enetstat_tests::{
    Peer, PortReservation, Signal, Tmux, Tracer,
    daemon::{Daemon, TempDir},
    enetstat_bin, require_program, require_root,
};

const README: &str = include_str!("../../README.md");

/// One example: the command as written, and the output lines shown after it (if any).
#[derive(Debug)]
struct Example {
    command: String,
    output: Vec<String>,
}

/// The command without `sudo`, a trailing `&` or a `# comment`.
fn normalize(line: &str) -> String {
    let line = match line.find("  #") {
        Some(i) => &line[..i],
        None => line,
    };
    let line = line.trim().trim_end_matches('&').trim();
    line.strip_prefix("sudo ").unwrap_or(line).to_owned()
}

/// Every example in the README.
fn examples() -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut block: Option<String> = None;
    let mut current: Option<Example> = None;
    for line in README.lines() {
        if let Some(info) = line.strip_prefix("```") {
            if block.is_some() {
                out.extend(current.take());
                block = None;
            } else {
                block = Some(info.to_owned());
            }
            continue;
        }
        match &block {
            Some(info) => {
                if let Some(command) = line.strip_prefix("$ ") {
                    out.extend(current.take());
                    current = Some(Example {
                        command: normalize(command),
                        output: Vec::new(),
                    });
                } else if let Some(example) = &mut current {
                    example.output.push(line.to_owned());
                } else if info == "sh"
                    && (line.starts_with("enetstat ") || line.starts_with("printf "))
                {
                    out.push(Example {
                        command: normalize(line),
                        output: Vec::new(),
                    });
                }
            }
            None => {
                // The Commands table: | `command` | what | `example` |
                if line.starts_with("| `enetstat ") {
                    let cells: Vec<&str> = line.split(" | ").collect();
                    let example = cells[cells.len() - 1]
                        .trim_end_matches(" |")
                        .trim_matches('`');
                    out.push(Example {
                        command: normalize(example),
                        output: Vec::new(),
                    });
                }
            }
        }
    }
    out
}

/// Shell words, with '...' and "..." quoting (all the README uses).
fn words(command: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quote: Option<char> = None;
    let mut any = false;
    for c in command.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => word.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (None, ' ') => {
                if any || !word.is_empty() {
                    out.push(std::mem::take(&mut word));
                }
                any = false;
            }
            (None, c) => {
                word.push(c);
                any = true;
            }
        }
    }
    if any || !word.is_empty() {
        out.push(word);
    }
    out
}

/// The words after `enetstat`.
fn args(command: &str) -> Vec<String> {
    let w = words(command);
    assert_eq!(w[0], "enetstat", "{command}");
    w[1..].to_vec()
}

fn squeeze(line: &str) -> String {
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What every check needs: a free port with a listener to make connections to.
struct Traffic {
    reservation: PortReservation,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            reservation: PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        }
    }

    /// One connection (12 transitions), the client closing first.
    fn connection(&self) {
        let (mut churn, _) = Peer::churn(self.reservation.addr(), 1);
        churn.wait_success();
    }

    /// One refused connection.
    fn refused(&self) {
        let p = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
        let addr = p.addr();
        p.release();
        assert!(TcpStream::connect(addr).is_err());
    }
}

/// Runs a tracing example until `lines` stdout lines are in, then stops it with SIGINT.
fn traced(
    args: &[String],
    extra: &[&str],
    lines: usize,
    traffic: impl FnOnce(),
) -> enetstat_tests::Finished {
    let mut all: Vec<&str> = args.iter().map(String::as_str).collect();
    all.extend_from_slice(extra);
    let tracer = Tracer::start(&all);
    traffic();
    assert!(
        tracer.wait_for_lines(lines, Duration::from_secs(30)),
        "{all:?}: fewer than {lines} lines"
    );
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    finished
}

/// The example's shown output, from its first line, must head `got` (whitespace squeezed,
/// up to `n` lines).
fn same_head(example: &Example, got: &[String], n: usize) {
    for (i, want) in example.output.iter().take(n).enumerate() {
        assert_eq!(
            got.get(i).map(|g| squeeze(g)),
            Some(squeeze(want)),
            "`{}`: line {i}; got {got:#?}",
            example.command
        );
    }
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(enetstat_bin())
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("cannot run enetstat")
}

fn stdout_lines(out: &std::process::Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// A group named `name` for the daemon's socket, made (and removed) by the test if missing.
struct Group {
    made: bool,
    name: &'static str,
}

impl Group {
    fn ensure(name: &'static str) -> Group {
        let exists = Command::new("getent")
            .args(["group", name])
            .output()
            .is_ok_and(|o| o.status.success());
        if !exists {
            let ok = Command::new("groupadd")
                .args(["--system", name])
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "cannot make the group {name}");
        }
        Group {
            made: !exists,
            name,
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        if self.made {
            let _ = Command::new("groupdel").arg(self.name).status();
        }
    }
}

fn check(example: &Example, traffic: &Traffic) {
    let a = args(&example.command);
    let port = traffic.reservation.port().to_string();
    match example.command.as_str() {
        "enetstat watch" if example.output.first().is_some_and(|l| l.contains("error")) => {
            let out = Command::new("setpriv")
                .args(["--reuid=65534", "--regid=65534", "--clear-groups"])
                .arg(enetstat_bin())
                .args(&a)
                .arg("--standalone")
                .stdin(Stdio::null())
                .output()
                .unwrap();
            assert!(!out.status.success());
            let got: Vec<String> = String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(got, example.output, "{}", example.command);
        }
        "enetstat watch" | "enetstat watch -w" => {
            let f = traced(&a, &["--standalone", "--port", &port], 13, || {
                traffic.connection()
            });
            same_head(example, &f.stdout, 1);
            // The body: a time first, then the rest of the columns.
            for line in &f.stdout[1..] {
                let time = line.split_whitespace().next().unwrap();
                assert!(time.len() >= 8 && time.as_bytes()[2] == b':', "{line}");
            }
            if example
                .output
                .last()
                .is_some_and(|l| l.starts_with("enetstat: "))
            {
                let summary = enetstat_tests::Summary::find(&f.stderr)
                    .unwrap_or_else(|| panic!("no summary line: {:?}", f.stderr));
                assert_eq!(summary.shown as usize, f.stdout.len() - 1, "{summary:?}");
            }
        }
        "enetstat life" => {
            let f = traced(&a, &["--standalone", "--port", &port], 3, || {
                traffic.connection()
            });
            same_head(example, &f.stdout, 1);
            assert_eq!(f.stdout.len(), 3, "{:#?}", f.stdout);
        }
        "enetstat -tanp" | "enetstat -tlne" => {
            let got = stdout_lines(&run(&a.iter().map(String::as_str).collect::<Vec<_>>()));
            // The title and the column header, as shown.
            same_head(example, &got, 2);
            let title = if a[0].contains('l') {
                "Active Internet connections (only servers)"
            } else {
                "Active Internet connections (servers and established)"
            };
            assert_eq!(got[0], title);
        }
        "enetstat -c 1 --recent 10s -tn" => {
            let mut all: Vec<&str> = a.iter().map(String::as_str).collect();
            all.extend(["--standalone", "--refreshes", "2"]);
            traffic.connection();
            let got = stdout_lines(&run(&all));
            let titles = got
                .iter()
                .filter(|l| l.starts_with("Active Internet connections"))
                .count();
            assert_eq!(titles, 2, "{got:#?}");
        }
        "enetstat watch 'dport = :443'"
        | "enetstat watch 'dport = :443 and (state syn-sent or state established) and not dst 10.0.0.0/8'"
        | "enetstat watch state close and from syn-sent"
        | "enetstat life 'comm nginx* and sport = :https'" => {
            // The expression parses and the command runs; the output starts with its header.
            let mut all: Vec<&str> = a.iter().map(String::as_str).collect();
            all.extend(["--standalone", "--duration", "500ms"]);
            let got = stdout_lines(&run(&all));
            assert!(
                got[0].starts_with("TIME ") || got[0].starts_with("PID "),
                "{got:#?}"
            );
        }
        "enetstat top" => {
            // On a real 80x24 terminal: the tabs, the column headers and the key line as
            // shown, and `q` gives the terminal back.
            if require_program("readme_examples_run_and_look_as_shown", "tmux", "tmux").is_none() {
                return;
            }
            let command = format!("{} --standalone top", enetstat_bin().display());
            let tmux = Tmux::start(&command, 80, 24);
            let screen = tmux.wait_for(Duration::from_secs(30), "the top screen", |s| {
                s.len() > 3 && s[3].starts_with("PID COMM")
            });
            let out = &example.output;
            assert!(screen[0].starts_with("enetstat top - "), "{screen:#?}");
            assert_eq!(screen[1].trim_end(), out[1]);
            assert_eq!(screen[3].trim_end(), out[3]);
            assert_eq!(
                screen.last().map(|l| l.trim_end()),
                out.last().map(String::as_str)
            );
            assert_eq!(screen.len(), out.len(), "{screen:#?}");
            tmux.keys(&["q"]);
            tmux.wait_for(Duration::from_secs(10), "the exit", |s| {
                s.iter().any(|l| l == "exited 0")
            });
        }
        "enetstat top -b -n 3 -o json" => {
            // Three refreshes, one JSON object each, with every view.
            let mut all: Vec<&str> = a.iter().map(String::as_str).collect();
            all.extend(["--standalone", "-d", "300ms", "port", "=", &port]);
            let got = stdout_lines(&run(&all));
            assert_eq!(got.len(), 3, "{got:#?}");
            for line in &got {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
                assert!(v["interval_s"].as_f64().is_some_and(|s| s > 0.2), "{v}");
                for view in ["processes", "remotes", "local_ports", "connections"] {
                    assert!(v[view].is_array(), "{view}: {v}");
                }
            }
        }
        "enetstat life -o json 'from syn-sent'" => {
            let f = traced(&a, &["--standalone"], 1, || traffic.refused());
            for line in &f.stdout {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
                assert!(
                    v["lifetime_ms"].is_number() && v["states"][0]["state"] == "SYN_SENT",
                    "{v}"
                );
            }
        }
        "enetstat watch 'dport = and state established'" => {
            let out = run(&a.iter().map(String::as_str).collect::<Vec<_>>());
            assert_eq!(out.status.code(), Some(1));
            let got: Vec<String> = String::from_utf8_lossy(&out.stderr)
                .lines()
                .map(str::to_owned)
                .collect();
            assert_eq!(got, example.output);
        }
        other => panic!("the README example `{other}` has no check in tests/tests/readme.rs"),
    }
}

/// The daemon examples run together: the daemon, a member's `--recent` snapshot and watch,
/// and the stats request.
fn check_daemon(daemon_example: &Example) {
    let group = Group::ensure("netops");
    let metrics = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let mut a = args(&daemon_example.command);
    assert_eq!(a[..3], ["daemon", "--socket-group", "netops"]);
    let at = a
        .iter()
        .position(|w| w == "127.0.0.1:9977")
        .expect("the metrics address");
    a[at] = metrics.addr().to_string();
    let daemon = Daemon::start(
        "readme",
        &a[1..].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let socket = daemon.socket.to_str().unwrap().to_owned();
    let body = {
        let mut s = TcpStream::connect(metrics.addr()).unwrap();
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut text = String::new();
        std::io::Read::read_to_string(&mut s, &mut text).unwrap();
        text
    };
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    // `enetstat -tn --recent 1h`, as a member of netops without root.
    let Some(setpriv) = require_program(
        "readme_examples_run_and_look_as_shown",
        "setpriv",
        "util-linux",
    ) else {
        return;
    };
    let out = Command::new(setpriv)
        .args(["--reuid=65534", "--regid=65534"])
        .arg(format!("--groups={}", group.name))
        .arg(enetstat_bin())
        .args(["-tn", "--recent", "1h", "--socket", &socket])
        .output()
        .unwrap();
    let got = stdout_lines(&out);
    assert_eq!(
        got[0], "Active Internet connections (w/o servers)",
        "{got:#?}"
    );
    // `enetstat watch 'dport = :5432'`, served by the daemon: the filter is the example's, the
    // traffic goes to port 5432 in a namespace of the test's own.
    let tracer = Tracer::start(&[
        "watch",
        "dport = :5432",
        "--socket",
        &socket,
        "--count",
        "3",
    ]);
    let ns = enetstat_tests::scenario::Netns::new("readme");
    let mut serve = ns.command(enetstat_tests::peer_bin());
    serve.args(["churn", "--addr", "127.0.0.1:5432", "--connections", "1"]);
    assert!(serve.status().unwrap().success());
    let finished = tracer.wait_exit();
    finished.assert_success();
    assert!(
        finished.stdout[0].starts_with("TIME "),
        "{:?}",
        finished.stdout
    );
    assert_eq!(finished.stdout.len(), 4, "{:?}", finished.stdout);
    // printf '{"v":1,"op":"stats"}\n' | socat - UNIX-CONNECT:..., the same bytes.
    let mut conn = UnixStream::connect(&socket).unwrap();
    conn.write_all(b"{\"v\":1,\"op\":\"stats\"}\n").unwrap();
    let mut reply = String::new();
    BufReader::new(conn).read_line(&mut reply).unwrap();
    let v: serde_json::Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(v["v"], 1);
    assert!(v["stats"]["pid"].is_u64(), "{v}");
    drop(daemon);
    drop(ns);
}

/// `enetstat daemon --user nobody --socket-group netops`, and the `grep` after it, whose
/// output `shown` is.
fn check_daemon_user(example: &Example, shown_by_grep: &Example) {
    let _group = Group::ensure("netops");
    let a = args(&example.command);
    let dir = TempDir::new("readmeuser");
    let socket = dir.path.join("run").join("enetstat.sock");
    let daemon = Daemon::start_at(
        dir,
        socket,
        &a[1..].iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", daemon.pid())).unwrap();
    let shown: Vec<String> = status
        .lines()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("CapEff:"))
        .map(squeeze)
        .collect();
    assert!(
        shown_by_grep.command.starts_with("grep -E '^(Uid|CapEff)'"),
        "{shown_by_grep:?}"
    );
    let want: Vec<String> = shown_by_grep
        .output
        .iter()
        .filter(|l| l.starts_with("Uid:") || l.starts_with("CapEff:"))
        .map(|l| squeeze(l))
        .collect();
    assert_eq!(shown, want);
}

#[test]
fn readme_examples_run_and_look_as_shown() {
    if !require_root("readme_examples_run_and_look_as_shown") {
        return;
    }
    let all = examples();
    let commands: BTreeSet<&str> = all.iter().map(|e| e.command.as_str()).collect();
    println!("README examples: {commands:#?}");
    assert!(
        all.len() >= 15,
        "the README's examples were not found: {all:#?}"
    );
    let traffic = Traffic::new();
    let mut daemon_done = false;
    let mut i = 0;
    while i < all.len() {
        let example = &all[i];
        i += 1;
        println!("README: {}", example.command);
        match example.command.as_str() {
            "enetstat daemon --socket-group netops --metrics 127.0.0.1:9977" => {
                if !daemon_done {
                    check_daemon(example);
                    daemon_done = true;
                }
            }
            "enetstat -tn --recent 1h" | "enetstat watch 'dport = :5432'" => {
                assert!(daemon_done, "checked with the daemon example before it");
            }
            "enetstat daemon --user nobody --socket-group netops" => {
                let grep = all.get(i).expect("the grep after it");
                check_daemon_user(example, grep);
                i += 1;
            }
            c if c.starts_with("printf '{\"v\":1,\"op\":\"stats\"}\\n' | socat") => {
                assert!(daemon_done, "checked with the daemon example");
            }
            _ => check(example, &traffic),
        }
    }
    traffic.reservation.release();
}

#[test]
fn shell_words_split_as_sh_does() {
    assert_eq!(
        words("enetstat watch 'dport = :443' -w"),
        ["enetstat", "watch", "dport = :443", "-w"]
    );
    assert_eq!(
        normalize("enetstat -tn --recent 1h          # as any member"),
        "enetstat -tn --recent 1h"
    );
    assert_eq!(
        normalize("sudo enetstat daemon --user nobody &"),
        "enetstat daemon --user nobody"
    );
}

/// The rows (header and rule included) of the first Markdown table after the line `heading`.
fn table_after<'a>(text: &'a str, heading: &str) -> Vec<&'a str> {
    let rows: Vec<&str> = text
        .lines()
        .skip_while(|l| *l != heading)
        .skip_while(|l| !l.starts_with('|'))
        .take_while(|l| l.starts_with('|'))
        .collect();
    assert!(rows.len() > 2, "no table after {heading:?}");
    rows
}

/// The README's escaping table is the one in `render::escape`'s doc, which a unit test there
/// walks against `needs_escape`: what the README says is what the code does.
#[test]
fn the_escaping_table_is_the_one_the_code_is_tested_against() {
    let doc: Vec<&str> = include_str!("../../netstat-core/src/render/escape.rs")
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter(|l| l.starts_with('|'))
        .collect();
    assert_eq!(table_after(README, "### Escaping"), doc);
}

/// `n` with a comma every three digits, as the README writes numbers.
fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// The README's limits table states the limits in force: each default is what `daemon
/// --help` shows for its flag, each fixed limit is its constant, and the help states the
/// fixed ones too.
#[test]
fn the_limits_table_states_the_limits_in_force() {
    use enetstat::{
        daemon::{http, limits, protocol},
        filter::{MAX_DEPTH, MAX_LEN},
    };
    let out = run(&["daemon", "--help"]);
    assert!(out.status.success());
    // Words, as the help may wrap anywhere between them.
    let help = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let rows: Vec<Vec<&str>> = table_after(README, "### Limits")
        .iter()
        .skip(2)
        .map(|r| r.split('|').map(str::trim).collect())
        .collect();
    let default_of = |limit: &str| {
        rows.iter()
            .find(|r| r[1].starts_with(limit))
            .unwrap_or_else(|| panic!("no {limit:?} row in the README's limits table"))[2]
    };
    let mut flags = 0;
    for row in &rows {
        let (default, flag) = (row[2], row[3]);
        let Some(flag) = flag.strip_prefix('`').and_then(|f| f.strip_suffix('`')) else {
            continue;
        };
        let after = help
            .split_once(&format!("{flag} <"))
            .unwrap_or_else(|| panic!("{flag} is not in `daemon --help`"))
            .1;
        let shown = after
            .split_once("[default: ")
            .and_then(|(_, d)| d.split_once(']'))
            .unwrap_or_else(|| panic!("no default for {flag} in `daemon --help`"))
            .0;
        assert_eq!(default.replace(',', ""), shown, "{flag}");
        flags += 1;
    }
    assert_eq!(flags, 5, "{rows:?}");
    let write = limits::WRITE_TIMEOUT.as_secs();
    let head = (http::MAX_HEAD / 1024, http::CLIENT_TIMEOUT.as_secs());
    assert_eq!(default_of("time a write"), format!("{write} s"));
    assert_eq!(
        default_of("filter length"),
        format!("{} bytes", thousands(MAX_LEN))
    );
    assert_eq!(default_of("filter nesting"), format!("{MAX_DEPTH} deep"));
    assert_eq!(
        default_of("request line"),
        format!("{} KiB", protocol::MAX_REQUEST / 1024)
    );
    assert_eq!(
        default_of("metrics request head"),
        format!("{} KiB, {} s", head.0, head.1)
    );
    for said in [
        format!("or does not read for {write} s, is cut off"),
        format!(
            "a filter is at most {MAX_LEN} bytes and nests (, not and ! at most {MAX_DEPTH} deep"
        ),
        format!(
            "a request line is at most {} KiB",
            protocol::MAX_REQUEST / 1024
        ),
        format!(
            "a metrics request head at most {} KiB, sent within {} s",
            head.0, head.1
        ),
    ] {
        assert!(help.contains(&said), "{said:?} is not in: {help}");
    }
}
