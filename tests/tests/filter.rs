//! The filter expression end to end: `enetstat watch EXPRESSION` against one real loopback
//! connection keeps exactly the transitions the expression names, in JSON and in CSV, and a
//! malformed expression fails before anything is attached, pointing at the mistake.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use enetstat_tests::{
    Peer, PortReservation, Signal, State, Summary, Tracer, Transition, enetstat_bin, require_root,
};

use State::{Close, CloseWait, Established, FinWait1, FinWait2, LastAck, Listen, SynRecv, SynSent};

/// Which socket of the connection a transition belongs to, told by its ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Role {
    Listener,
    Client,
    Accepted,
}

type Seen = Vec<(Role, State, State)>;

fn role(server: SocketAddr, lport: Option<u16>, rport: Option<u16>) -> Role {
    if rport == Some(server.port()) {
        Role::Client
    } else if lport == Some(server.port()) && rport.is_some() {
        Role::Accepted
    } else {
        Role::Listener
    }
}

fn sorted(mut v: Seen) -> Seen {
    v.sort();
    v
}

/// One connection to `server`: a listener and a client in two peers; the client closes first.
fn one_connection(server: SocketAddr) {
    let (mut serve, _) = Peer::serve(server, 1);
    let mut client = Peer::connect(server, 1);
    client.wait_success();
    serve.wait_success();
}

/// Waits for `expected` lines, then for quiet, and stops the tracer.
fn finish(tracer: Tracer, expected: usize) -> enetstat_tests::Finished {
    tracer.wait_for_lines(expected, Duration::from_secs(15));
    tracer.settle(Duration::from_secs(1));
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    finished
}

/// The expressions, and what each must keep of one connection to port `p` (every socket of
/// which belongs to an enetstat-peer process).
fn cases(p: u16) -> Vec<(String, Seen)> {
    use Role::*;
    vec![
        (
            format!("dport = :{p} and state established"),
            vec![(Client, SynSent, Established)],
        ),
        (
            format!("dst 127.0.0.1:{p} state syn-sent"),
            vec![(Client, Close, SynSent)],
        ),
        (
            format!("sport eq {p} and (state syn-recv or state close)"),
            vec![
                (Listener, Listen, Close),
                (Accepted, Listen, SynRecv),
                (Accepted, LastAck, Close),
            ],
        ),
        (
            format!("port = :{p} && from established"),
            vec![
                (Client, Established, FinWait1),
                (Accepted, Established, CloseWait),
            ],
        ),
        (
            format!("port {p} and comm 'enetstat-*' and state synchronized and not state estab"),
            vec![
                (Client, Established, FinWait1),
                (Client, FinWait1, FinWait2),
                (Accepted, Established, CloseWait),
                (Accepted, CloseWait, LastAck),
            ],
        ),
        (
            format!("src 127.0.0.0/8 and sport >= {p} and sport <= {p} and !state teardown"),
            vec![
                (Listener, Close, Listen),
                (Listener, Listen, Close),
                (Accepted, Listen, SynRecv),
                (Accepted, SynRecv, Established),
                (Accepted, LastAck, Close),
            ],
        ),
    ]
}

#[test]
fn expressions_keep_exactly_the_matching_transitions() {
    if !require_root("expressions_keep_exactly_the_matching_transitions") {
        return;
    }
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let cases = cases(server.port());
    // One tracer per expression, all watching the same connection.
    let tracers: Vec<Tracer> = cases
        .iter()
        .map(|(expr, _)| Tracer::watch_json(&[expr.as_str()]))
        .collect();
    one_connection(server);

    let mut problems = BTreeMap::new();
    for ((expr, want), tracer) in cases.iter().zip(tracers) {
        let finished = finish(tracer, want.len());
        finished.summary();
        let got: Seen = finished
            .transitions()
            .iter()
            .map(|t: &Transition| (role(server, t.lport, t.rport), t.old, t.new))
            .collect();
        if sorted(got.clone()) != sorted(want.clone()) {
            problems.insert(
                expr.clone(),
                format!(
                    "expected {want:?}\n    got {got:?}\n    lines: {:#?}",
                    finished.stdout
                ),
            );
        }
    }
    reservation.release();
    assert!(
        problems.is_empty(),
        "{} expressions kept the wrong transitions:\n{}",
        problems.len(),
        problems
            .iter()
            .map(|(e, p)| format!("  `{e}`: {p}"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// The words of an unquoted expression are joined as ss joins them, and the flags AND in.
#[test]
fn expression_words_and_flags_combine() {
    if !require_root("expression_words_and_flags_combine") {
        return;
    }
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let p = server.port().to_string();
    let tracer = Tracer::start(&[
        "watch",
        "-o",
        "json",
        "-4",
        "--port",
        &p,
        "state",
        "fin-wait-2",
        "or",
        "state",
        "close-wait",
    ]);
    let ipv6_only = Tracer::start(&["watch", "-o", "json", "-6", "--port", &p, "state", "all"]);
    one_connection(server);
    let finished = finish(tracer, 2);
    finished.summary();
    let got: Seen = finished
        .transitions()
        .iter()
        .map(|t| (role(server, t.lport, t.rport), t.old, t.new))
        .collect();
    assert_eq!(
        sorted(got),
        vec![
            (Role::Client, FinWait1, FinWait2),
            (Role::Accepted, Established, CloseWait)
        ],
        "lines: {:#?}",
        finished.stdout
    );
    let none = finish(ipv6_only, 0);
    assert!(
        none.stdout.is_empty(),
        "-6 kept IPv4 lines: {:#?}",
        none.stdout
    );
    reservation.release();
}

/// `-o csv`: a header of the JSON field names, then one row per matching transition, read
/// back with a CSV reader.
#[test]
fn csv_rows_read_back_with_a_csv_reader() {
    if !require_root("csv_rows_read_back_with_a_csv_reader") {
        return;
    }
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let server = reservation.addr();
    let expr = format!("port = :{} and state synchronized", server.port());
    let tracer = Tracer::start(&["watch", "-o", "csv", &expr]);
    one_connection(server);
    // The header and six rows.
    let finished = finish(tracer, 7);
    reservation.release();

    let text = finished.stdout.join("\n");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("a header row")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "time",
            "ts_ns",
            "cookie",
            "pid",
            "comm",
            "owner_exited",
            "family",
            "laddr",
            "lport",
            "raddr",
            "rport",
            "old",
            "new",
            "ms_in_old",
            "netns",
            "end",
            "cgroup",
            "cgroup_path",
            "container",
            "id"
        ],
        "CSV header"
    );
    let column = |name: &str| header.iter().position(|h| h == name).unwrap();
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .collect::<Result<_, _>>()
        .unwrap_or_else(|e| panic!("bad CSV ({e}): {text}"));
    let state = |s: &str| -> State {
        serde_json::from_value(serde_json::Value::String(s.to_owned()))
            .unwrap_or_else(|e| panic!("bad state {s:?}: {e}"))
    };
    let port = |s: &str| s.parse::<u16>().ok();
    let got: Seen = rows
        .iter()
        .map(|r| {
            (
                role(server, port(&r[column("lport")]), port(&r[column("rport")])),
                state(&r[column("old")]),
                state(&r[column("new")]),
            )
        })
        .collect();
    use Role::*;
    assert_eq!(
        sorted(got),
        sorted(vec![
            (Client, SynSent, Established),
            (Client, Established, FinWait1),
            (Client, FinWait1, FinWait2),
            (Accepted, SynRecv, Established),
            (Accepted, Established, CloseWait),
            (Accepted, CloseWait, LastAck),
        ]),
        "CSV: {text}"
    );
    for r in &rows {
        assert_eq!(&r[column("comm")], "enetstat-peer", "CSV: {text}");
        assert_eq!(&r[column("family")], "ipv4", "CSV: {text}");
        assert_eq!(&r[column("laddr")], "127.0.0.1", "CSV: {text}");
    }
    let summary = Summary::find(&finished.stderr).expect("a summary line");
    assert_eq!(summary.shown, rows.len() as u64, "summary vs rows");
}

/// A malformed expression is reported before anything is loaded, with a caret under the
/// offending word.
#[test]
fn a_malformed_expression_fails_with_a_caret() {
    if !require_root("a_malformed_expression_fails_with_a_caret") {
        return;
    }
    let out = Command::new(enetstat_bin())
        .args(["watch", "dport", "=", "and", "state", "established"])
        .output()
        .expect("cannot run enetstat");
    assert_eq!(out.status.code(), Some(1));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr,
        "enetstat: error: invalid filter: expected a port (:443, 443 or :https) after \
         `dport =`, found `and`\n  dport = and state established\n          ^^^\n"
    );
}

/// Every transition of one connection, by socket, the client closing first.
fn whole_connection() -> Seen {
    use Role::*;
    vec![
        (Listener, Close, Listen),
        (Listener, Listen, Close),
        (Client, Close, SynSent),
        (Client, SynSent, Established),
        (Client, Established, FinWait1),
        (Client, FinWait1, FinWait2),
        (Client, FinWait2, Close),
        (Accepted, Listen, SynRecv),
        (Accepted, SynRecv, Established),
        (Accepted, Established, CloseWait),
        (Accepted, CloseWait, LastAck),
        (Accepted, LastAck, Close),
    ]
}

/// The kernel-side filter leaves out in the kernel what the expression drops, and nothing it
/// keeps: every record that reaches userspace is shown (`seen - filtered - lost == shown`), a
/// connection on another port is counted as filtered, and every transition on the watched
/// port is there (none wrongly dropped). A kernel filter that keeps everything fails here.
#[test]
fn the_kernel_filter_drops_exactly_what_the_expression_drops() {
    if !require_root("the_kernel_filter_drops_exactly_what_the_expression_drops") {
        return;
    }
    let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let watched = PortReservation::new(lo);
    let other = PortReservation::new(lo);
    let server = watched.addr();
    let dir = enetstat_tests::daemon::TempDir::new("kfilter");
    let stats_path = dir.path.join("stats.json");
    let expr = format!("port = :{}", server.port());
    let tracer = Tracer::start(&[
        "-v",
        "watch",
        "-o",
        "json",
        "--stats-json",
        stats_path.to_str().unwrap(),
        &expr,
    ]);
    // Twelve transitions on another port, which the kernel must leave out, then the watched
    // connection.
    one_connection(other.addr());
    one_connection(server);
    let want = whole_connection();
    let finished = finish(tracer, want.len());
    let summary = finished.summary();
    let got: Seen = finished
        .transitions()
        .iter()
        .map(|t| (role(server, t.lport, t.rport), t.old, t.new))
        .collect();
    assert_eq!(
        sorted(got),
        sorted(want),
        "the watched connection's transitions (none may be dropped); lines: {:#?}",
        finished.stdout
    );

    let stats: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats_path).expect("--stats-json file"))
            .expect("--stats-json writes JSON");
    let n = |k: &str| {
        stats[k]
            .as_u64()
            .unwrap_or_else(|| panic!("no {k} in {stats}"))
    };
    let (seen, filtered, lost, received) = (n("seen"), n("filtered"), n("lost"), n("received"));
    assert_eq!(seen, summary.seen, "--stats-json and the summary disagree");
    assert_eq!(lost, 0, "events lost: {stats}");
    assert!(
        filtered >= 12,
        "the other port's 12 transitions were not left out in the kernel: {stats}"
    );
    assert_eq!(
        seen - filtered,
        received,
        "every record the kernel kept reached userspace: {stats}"
    );
    assert_eq!(
        received, summary.shown,
        "the kernel passed records the expression drops (it should have left them out): {stats}"
    );
    // `-v` says the same.
    let line = format!(
        "enetstat: kernel filter: {filtered} of {seen} transitions left out in the kernel, {} \
         passed to userspace",
        seen - filtered
    );
    assert!(
        finished.stderr.contains(&line),
        "-v printed no `{line}`; stderr: {:#?}",
        finished.stderr
    );
    watched.release();
    other.release();
}
