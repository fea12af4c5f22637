//! `enetstat life` and the `end` field, end to end: every way a connection can end, produced
//! for real and reported the same way on the lifecycle line and on the transition into CLOSE;
//! exact byte counts and state sequences for a 1 MiB exchange; JSON and CSV read back with
//! serde_json and the `csv` crate; a process name full of escape characters printed escaped.
//!
//! The connections are made by `enetstat-ender` children (src/bin/enetstat-ender.rs), so every
//! lifecycle can be checked against a known pid. Loopback tests filter the tracers by a
//! reserved port; the timeout and abort tests run the client in a network namespace of their
//! own (with a SYN-dropping host behind a veth pair, see `scenario::DropNet`) and filter
//! the tracers by that namespace, so each test sees only its own sockets.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::process::Command;
use std::time::Duration;

use enetstat_tests::life::{LIFE_KEYS, Life};
use enetstat_tests::scenario::{Child, DropNet, Netns};
use enetstat_tests::{
    Finished, PortReservation, Signal, State, Tracer, Transition, current_netns, ender_bin,
    require_root,
};

use State::{CloseWait, Established, FinWait1, FinWait2, LastAck, SynRecv, SynSent};

/// Bytes each way in the transfer test.
const MIB: u64 = 1_048_576;
/// How long a child may take to say its next line (the timeout test needs ~3 s).
const CHILD_TIMEOUT: Duration = Duration::from_secs(60);
/// The comm of every `enetstat-ender`.
const ENDER: &str = "enetstat-ender";
/// A process name with an escape sequence and a bell in it.
const EVIL: &str = "ev\x1b[31mil\x07";
/// How it must look on a terminal.
const EVIL_ESCAPED: &str = r"ev\x1b[31mil\x07";

/// One line of `life -o json`, every documented key checked present.
fn parse_life(line: &str) -> Life {
    Life::parse(line).unwrap_or_else(|e| panic!("{e}"))
}

/// Problems found, reported all at once with the output they were found in.
#[derive(Default)]
struct Problems {
    list: Vec<String>,
}

impl Problems {
    fn check(&mut self, ok: bool, what: impl FnOnce() -> String) {
        if !ok {
            self.list.push(what());
        }
    }

    fn finish(self, output: &[&[String]]) {
        if self.list.is_empty() {
            return;
        }
        let mut dump = String::new();
        for lines in output {
            for line in *lines {
                dump.push_str(line);
                dump.push('\n');
            }
            dump.push_str("--\n");
        }
        panic!(
            "{} problem(s):\n- {}\n\noutput:\n{dump}",
            self.list.len(),
            self.list.join("\n- ")
        );
    }
}

/// `enetstat-ender ARGS`, in the test's namespace.
fn ender(args: &[&str]) -> Child {
    let mut cmd = Command::new(ender_bin());
    cmd.args(args);
    Child::spawn(cmd, &format!("enetstat-ender {}", args.join(" ")))
}

/// `enetstat-ender ARGS` inside `ns` (`ip netns exec` execs it, so the pid is the ender's).
fn ender_in(ns: &Netns, args: &[&str]) -> Child {
    let mut cmd = ns.command(ender_bin());
    cmd.args(args);
    Child::spawn(
        cmd,
        &format!("enetstat-ender {} (in {})", args.join(" "), ns.name),
    )
}

/// Reads the child's next line and checks it starts with `prefix`; returns the rest.
fn expect_line(child: &mut Child, prefix: &str) -> String {
    let (_, line) = child.line(CHILD_TIMEOUT);
    line.strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{}: expected `{prefix}...`, got `{line}`", child.name))
        .trim()
        .to_owned()
}

/// A `TcpExt` counter of `ns` (`/proc/net/netstat` as seen from inside it).
fn tcpext_in(ns: &Netns, counter: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", &ns.name, "cat", "/proc/net/netstat"])
        .output()
        .expect("cannot read /proc/net/netstat");
    let text = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<Vec<&str>> = text
        .lines()
        .filter(|l| l.starts_with("TcpExt:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let [names, values] = rows.as_slice() else {
        panic!("unexpected /proc/net/netstat in {}:\n{text}", ns.name)
    };
    let i = names
        .iter()
        .position(|n| *n == counter)
        .unwrap_or_else(|| panic!("no TcpExt counter {counter}"));
    values[i].parse().expect("a counter")
}

/// What two or more tracers printed while a test's traffic ran.
struct Traced {
    transitions: Vec<Transition>,
    lives: Vec<Life>,
    watch_lines: Vec<String>,
    life_lines: Vec<String>,
}

/// Stops a tracer that saw everything, checks it exited cleanly, and returns its output.
fn stop(tracer: Tracer, json: bool) -> Finished {
    tracer.settle(Duration::from_secs(1));
    let finished = tracer.stop(Signal::Int);
    finished.assert_success();
    if json {
        let summary = finished.summary();
        assert_eq!(summary.lost, 0, "records lost: {summary:?}");
    }
    finished
}

/// Runs `body` under `watch -o json FILTER` and `life -o json FILTER`; waits for `lives`
/// lifecycle lines, then stops both.
fn trace(filter: &[&str], lives: usize, body: impl FnOnce()) -> Traced {
    let watch = Tracer::watch_json(filter);
    let mut args = vec!["life", "-o", "json"];
    args.extend_from_slice(filter);
    let life = Tracer::start(&args);
    body();
    life.wait_for_lines(lives, Duration::from_secs(30));
    let life = stop(life, true);
    let watch = stop(watch, true);
    Traced {
        transitions: watch.transitions(),
        lives: life.stdout.iter().map(|l| parse_life(l)).collect(),
        watch_lines: watch.stdout,
        life_lines: life.stdout,
    }
}

/// What a test knows about one connection of its own.
struct Want<'a> {
    /// Which end: found by its local port, or the only lifecycle whose remote port this is.
    local_port: Option<u16>,
    remote: SocketAddr,
    pid: u32,
    comm: &'a str,
    netns: u64,
    states: &'a [State],
    end: &'a str,
    /// Bytes each way.
    bytes: u64,
}

/// Checks one connection's lifecycle and its transitions; returns the lifecycle.
fn check_connection<'a>(p: &mut Problems, traced: &'a Traced, want: &Want<'_>) -> Option<&'a Life> {
    let found: Vec<&Life> = traced
        .lives
        .iter()
        .filter(|l| {
            l.raddr == want.remote.ip()
                && l.rport == Some(want.remote.port())
                && want.local_port.is_none_or(|port| l.lport == Some(port))
        })
        .collect();
    let [life] = found.as_slice() else {
        p.check(false, || {
            format!(
                "expected one lifecycle to {} (local port {:?}), got {}",
                want.remote,
                want.local_port,
                found.len()
            )
        });
        return None;
    };
    let who = format!("lifecycle {}", life.raw);
    let family = if want.remote.is_ipv4() {
        "ipv4"
    } else {
        "ipv6"
    };
    p.check(life.family == family, || {
        format!("{who}: family should be {family}")
    });
    p.check(life.pid == Some(want.pid), || {
        format!("{who}: pid should be {}", want.pid)
    });
    p.check(life.comm.as_deref() == Some(want.comm), || {
        format!("{who}: comm should be {:?}", want.comm)
    });
    p.check(life.netns == Some(want.netns), || {
        format!("{who}: netns should be {}", want.netns)
    });
    p.check(life.state_names() == want.states, || {
        format!("{who}: states should be {:?}", want.states)
    });
    p.check(life.end.as_deref() == Some(want.end), || {
        format!("{who}: end should be {}", want.end)
    });
    p.check(life.complete, || format!("{who}: complete should be true"));
    p.check(
        life.bytes_sent == Some(want.bytes) && life.bytes_received == Some(want.bytes),
        || {
            format!(
                "{who}: bytes_sent and bytes_received should be {}",
                want.bytes
            )
        },
    );
    p.check(life.time.ends_with('Z'), || {
        format!("{who}: time should be UTC")
    });
    // Each value is rounded to the microsecond, so the sum may be off by half a microsecond
    // per term.
    let sum: f64 = life.states.iter().map(|s| s.ms).sum();
    let tolerance = 0.0005 * (life.states.len() + 1) as f64 + 1e-9;
    p.check((life.lifetime_ms - sum).abs() <= tolerance, || {
        format!("{who}: lifetime_ms should be the sum of the states' ms ({sum:.4})")
    });
    p.check(life.states.iter().all(|s| s.ms >= 0.0), || {
        format!("{who}: negative ms")
    });
    let active = want.states.first() == Some(&SynSent);
    let connected = active && want.states.get(1) == Some(&Established);
    let synchronized = want.states.contains(&Established);
    p.check(life.srtt_us.is_some_and(|s| s > 0) == synchronized, || {
        format!("{who}: srtt_us should be measured exactly when the connection was established")
    });
    if connected {
        p.check(life.connect_ms == Some(life.states[0].ms), || {
            format!("{who}: connect_ms should be the SYN_SENT time")
        });
    } else {
        p.check(life.connect_ms.is_none(), || {
            format!("{who}: connect_ms should be null (passive, or never connected)")
        });
    }

    // The same socket in the event log: the states it left are the lifecycle's states, the
    // transition into CLOSE carries the same `end`, and no other transition has one.
    let seq: Vec<&Transition> = traced
        .transitions
        .iter()
        .filter(|t| t.cookie == life.cookie)
        .collect();
    let olds: Vec<State> = seq.iter().map(|t| t.old).collect();
    let from_first = seq.first().map(|t| t.old);
    let olds_after_birth = olds.get(1..).unwrap_or_default();
    p.check(olds_after_birth == want.states, || {
        format!(
            "watch: cookie {} left {olds:?}, the lifecycle lists {:?}",
            life.cookie, want.states
        )
    });
    let born_from = if active { State::Close } else { State::Listen };
    p.check(from_first == Some(born_from), || {
        format!(
            "watch: cookie {} should start from {born_from}",
            life.cookie
        )
    });
    match seq.split_last() {
        Some((last, rest)) => {
            p.check(
                last.new == State::Close && last.end.as_deref() == Some(want.end),
                || {
                    format!(
                        "watch: the last transition should be into CLOSE with end {:?}: {last}",
                        want.end
                    )
                },
            );
            for t in rest {
                p.check(t.end.is_none(), || {
                    format!("watch: end should be null: {t}")
                });
            }
        }
        None => p.check(false, || {
            format!("watch: no transitions for cookie {}", life.cookie)
        }),
    }
    Some(life)
}

/// `enetstat-ender pair --end ENDING` on loopback; checks both ends' endings.
fn pair(test: &str, ip: IpAddr, ending: &str, client: (&[State], &str), server: (&[State], &str)) {
    if !require_root(test) {
        return;
    }
    let reservation = PortReservation::new(ip);
    let addr = reservation.addr();
    let port = addr.port().to_string();
    let mut child = None;
    let mut client_port = 0;
    let traced = trace(&["--port", &port], 2, || {
        let mut c = ender(&["pair", "--addr", &addr.to_string(), "--end", ending]);
        expect_line(&mut c, "listening ");
        client_port = expect_line(&mut c, "client ").parse().expect("a port");
        expect_line(&mut c, "done");
        child = Some(c);
    });
    let pid = child.as_ref().expect("the ender ran").pid();
    let netns = current_netns();
    let mut p = Problems::default();
    p.check(traced.lives.len() == 2, || {
        format!(
            "expected 2 lifecycles (the listener has none), got {}",
            traced.lives.len()
        )
    });
    check_connection(
        &mut p,
        &traced,
        &Want {
            local_port: Some(client_port),
            remote: addr,
            pid,
            comm: ENDER,
            netns,
            states: client.0,
            end: client.1,
            bytes: 0,
        },
    );
    check_connection(
        &mut p,
        &traced,
        &Want {
            local_port: Some(addr.port()),
            remote: SocketAddr::new(ip, client_port),
            pid,
            comm: ENDER,
            netns,
            states: server.0,
            end: server.1,
            bytes: 0,
        },
    );
    p.finish(&[&traced.life_lines, &traced.watch_lines]);
    reservation.release();
}

const ACTIVE_CLOSE: [State; 4] = [SynSent, Established, FinWait1, FinWait2];
const PASSIVE_CLOSE: [State; 4] = [SynRecv, Established, CloseWait, LastAck];

#[test]
fn end_normal_both_sides_ipv4() {
    pair(
        "end_normal_both_sides_ipv4",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "normal",
        (&ACTIVE_CLOSE, "normal"),
        (&PASSIVE_CLOSE, "normal"),
    );
}

#[test]
fn end_client_resets_ipv4() {
    pair(
        "end_client_resets_ipv4",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "client-reset",
        (&[SynSent, Established], "reset_sent"),
        (&[SynRecv, Established], "reset_received"),
    );
}

#[test]
fn end_server_resets_ipv4() {
    pair(
        "end_server_resets_ipv4",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "server-reset",
        (&[SynSent, Established], "reset_received"),
        (&[SynRecv, Established], "reset_sent"),
    );
}

#[test]
fn end_server_resets_ipv6() {
    pair(
        "end_server_resets_ipv6",
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        "server-reset",
        (&[SynSent, Established], "reset_received"),
        (&[SynRecv, Established], "reset_sent"),
    );
}

fn refused(test: &str, ip: IpAddr) {
    if !require_root(test) {
        return;
    }
    // Bound, never listening: connecting to it is refused.
    let reservation = PortReservation::new(ip);
    let closed = reservation.addr();
    let port = closed.port().to_string();
    let text = Tracer::start(&["watch", "--port", &port]);
    let mut child = None;
    let traced = trace(&["--port", &port], 1, || {
        let mut c = ender(&["refuse", "--addr", &closed.to_string()]);
        expect_line(&mut c, "refused");
        child = Some(c);
    });
    let text = stop(text, false);
    let pid = child.as_ref().expect("the ender ran").pid();
    let mut p = Problems::default();
    p.check(traced.lives.len() == 1, || {
        format!("expected 1 lifecycle, got {}", traced.lives.len())
    });
    check_connection(
        &mut p,
        &traced,
        &Want {
            local_port: None,
            remote: closed,
            pid,
            comm: ENDER,
            netns: current_netns(),
            states: &[SynSent],
            end: "refused",
            bytes: 0,
        },
    );
    // Text: the SYN_SENT>CLOSE line says why.
    let closes: Vec<&String> = text
        .stdout
        .iter()
        .filter(|l| l.contains("SYN_SENT>CLOSE"))
        .collect();
    p.check(closes.len() == 1 && closes[0].ends_with(" refused"), || {
        format!("text: expected one SYN_SENT>CLOSE line ending in ` refused`, got {closes:?}")
    });
    p.finish(&[&traced.life_lines, &traced.watch_lines, &text.stdout]);
    reservation.release();
}

#[test]
fn end_refused_ipv4() {
    refused("end_refused_ipv4", IpAddr::V4(Ipv4Addr::LOCALHOST));
}

#[test]
fn end_refused_ipv6() {
    refused("end_refused_ipv6", IpAddr::V6(Ipv6Addr::LOCALHOST));
}

/// The SYN is never answered; the kernel's retries run out.
#[test]
fn end_timeout_in_a_namespace() {
    if !require_root("end_timeout_in_a_namespace") {
        return;
    }
    let net = DropNet::new("life-timeout");
    let netns = net.ns.inode();
    let target = net.target();
    let filter = format!("netns {netns}");
    let mut child = None;
    let traced = trace(&[&filter], 1, || {
        let mut c = ender_in(&net.ns, &["timeout", "--addr", &target.to_string()]);
        expect_line(&mut c, "timed_out");
        child = Some(c);
    });
    let pid = child.as_ref().expect("the ender ran").pid();
    let syn_retrans = tcpext_in(&net.ns, "TCPSynRetrans");
    let mut p = Problems::default();
    p.check(traced.lives.len() == 1, || {
        format!("expected 1 lifecycle, got {}", traced.lives.len())
    });
    if let Some(life) = check_connection(
        &mut p,
        &traced,
        &Want {
            local_port: None,
            remote: target,
            pid,
            comm: ENDER,
            netns,
            states: &[SynSent],
            end: "timeout",
            bytes: 0,
        },
    ) {
        // The namespace is the test's own: every SYN retransmitted in it was this socket's.
        p.check(
            syn_retrans > 0 && life.retransmits.map(u64::from) == Some(syn_retrans),
            || {
                format!(
                    "retransmits should be {syn_retrans} (the namespace's TCPSynRetrans): {}",
                    life.raw
                )
            },
        );
    }
    p.finish(&[&traced.life_lines, &traced.watch_lines]);
}

/// close() while the connect is still pending.
#[test]
fn end_aborted_in_a_namespace() {
    if !require_root("end_aborted_in_a_namespace") {
        return;
    }
    let net = DropNet::new("life-abort");
    let netns = net.ns.inode();
    let target = net.target();
    let filter = format!("netns {netns}");
    let mut child = None;
    let traced = trace(&[&filter], 1, || {
        let mut c = ender_in(&net.ns, &["abort", "--addr", &target.to_string()]);
        expect_line(&mut c, "aborted");
        child = Some(c);
    });
    let pid = child.as_ref().expect("the ender ran").pid();
    let mut p = Problems::default();
    p.check(traced.lives.len() == 1, || {
        format!("expected 1 lifecycle, got {}", traced.lives.len())
    });
    check_connection(
        &mut p,
        &traced,
        &Want {
            local_port: None,
            remote: target,
            pid,
            comm: ENDER,
            netns,
            states: &[SynSent],
            end: "aborted",
            bytes: 0,
        },
    );
    p.finish(&[&traced.life_lines, &traced.watch_lines]);
}

/// Splits `SYN_SENT:0.09;ESTABLISHED:1.2` into states and milliseconds.
fn csv_states(field: &str) -> Result<Vec<(String, f64)>, String> {
    if field.is_empty() {
        return Ok(Vec::new());
    }
    field
        .split(';')
        .map(|s| {
            let (name, ms) = s
                .split_once(':')
                .ok_or_else(|| format!("no `:` in {s:?}"))?;
            let ms: f64 = ms.parse().map_err(|_| format!("bad ms in {s:?}"))?;
            Ok((name.to_owned(), ms))
        })
        .collect()
}

/// 1 MiB each way between two processes: exact byte counts, the states in order, connect
/// latency only on the client, owners; and the same lifecycles read back from CSV. The server
/// closes `close_delay_ms` after the client's EOF.
fn transfer(test: &str, ip: IpAddr, close_delay_ms: u64) {
    if !require_root(test) {
        return;
    }
    let reservation = PortReservation::new(ip);
    let addr = reservation.addr();
    let port = addr.port().to_string();
    let csv_tracer = Tracer::start(&["life", "-o", "csv", "--port", &port]);
    let bytes = MIB.to_string();
    let delay = close_delay_ms.to_string();
    let mut children = None;
    let mut client_port = 0;
    let traced = trace(&["--port", &port], 2, || {
        let mut server = ender(&[
            "transfer-serve",
            "--addr",
            &addr.to_string(),
            "--bytes",
            &bytes,
            "--close-delay-ms",
            &delay,
        ]);
        expect_line(&mut server, "listening ");
        let mut client = ender(&[
            "transfer-connect",
            "--addr",
            &addr.to_string(),
            "--bytes",
            &bytes,
        ]);
        client_port = expect_line(&mut client, "connected ")
            .parse()
            .expect("a port");
        expect_line(&mut client, "done");
        expect_line(&mut server, "done");
        children = Some((server, client));
    });
    csv_tracer.wait_for_lines(3, Duration::from_secs(30));
    let csv_out = stop(csv_tracer, false);
    let (server, client) = children.expect("the enders ran");
    let netns = current_netns();
    let mut p = Problems::default();
    p.check(traced.lives.len() == 2, || {
        format!("expected 2 lifecycles, got {}", traced.lives.len())
    });
    check_connection(
        &mut p,
        &traced,
        &Want {
            local_port: Some(client_port),
            remote: addr,
            pid: client.pid(),
            comm: ENDER,
            netns,
            states: &ACTIVE_CLOSE,
            end: "normal",
            bytes: MIB,
        },
    );
    check_connection(
        &mut p,
        &traced,
        &Want {
            local_port: Some(addr.port()),
            remote: SocketAddr::new(ip, client_port),
            pid: server.pid(),
            comm: ENDER,
            netns,
            states: &PASSIVE_CLOSE,
            end: "normal",
            bytes: MIB,
        },
    );

    // The CSV tracer saw the same two connections (its own timestamps, so times differ).
    let text = csv_out.stdout.join("\n");
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let headers: Vec<String> = reader
        .headers()
        .map(|h| h.iter().map(str::to_owned).collect())
        .unwrap_or_default();
    p.check(headers == LIFE_KEYS, || {
        format!("CSV header should be {LIFE_KEYS:?}, got {headers:?}")
    });
    let rows: Vec<BTreeMap<String, String>> = reader
        .records()
        .map(|r| {
            let r = r.unwrap_or_else(|e| panic!("a CSV row does not parse ({e}):\n{text}"));
            headers
                .iter()
                .cloned()
                .zip(r.iter().map(str::to_owned))
                .collect()
        })
        .collect();
    p.check(rows.len() == 2, || {
        format!("expected 2 CSV rows, got {}", rows.len())
    });
    for row in &rows {
        let get = |k: &str| row.get(k).cloned().unwrap_or_default();
        let Some(life) = traced.lives.iter().find(|l| {
            l.real_cookie
                .is_some_and(|c| get("cookie") == c.to_string())
        }) else {
            p.check(false, || format!("CSV row with no JSON lifecycle: {row:?}"));
            continue;
        };
        let opt = |v: Option<String>| v.unwrap_or_default();
        let same = [
            ("pid", opt(life.pid.map(|v| v.to_string()))),
            ("comm", opt(life.comm.clone())),
            ("family", life.family.clone()),
            ("laddr", life.laddr.to_string()),
            ("lport", opt(life.lport.map(|v| v.to_string()))),
            ("raddr", life.raddr.to_string()),
            ("rport", opt(life.rport.map(|v| v.to_string()))),
            ("bytes_sent", opt(life.bytes_sent.map(|v| v.to_string()))),
            (
                "bytes_received",
                opt(life.bytes_received.map(|v| v.to_string())),
            ),
            ("retransmits", opt(life.retransmits.map(|v| v.to_string()))),
            ("srtt_us", opt(life.srtt_us.map(|v| v.to_string()))),
            ("end", opt(life.end.clone())),
            ("complete", life.complete.to_string()),
            ("netns", opt(life.netns.map(|v| v.to_string()))),
        ];
        for (key, want) in same {
            p.check(get(key) == want, || {
                format!("CSV {key} is {:?}, JSON says {want:?}: {row:?}", get(key))
            });
        }
        p.check(get("time").ends_with('Z'), || {
            format!("CSV time not UTC: {row:?}")
        });
        match csv_states(&get("states")) {
            Ok(states) => {
                let names: Vec<String> = states.iter().map(|(n, _)| n.clone()).collect();
                let want: Vec<String> = life.states.iter().map(|s| s.state.to_string()).collect();
                p.check(names == want, || {
                    format!("CSV states {names:?}, JSON {want:?}")
                });
                let sum: f64 = states.iter().map(|(_, ms)| ms).sum();
                let lifetime: f64 = get("lifetime_ms").parse().unwrap_or(f64::NAN);
                let tolerance = 0.0005 * (states.len() + 1) as f64 + 1e-9;
                p.check((lifetime - sum).abs() <= tolerance, || {
                    format!("CSV lifetime_ms {lifetime} is not the sum of its states {sum}")
                });
                let connect = get("connect_ms");
                if life.connect_ms.is_some() {
                    p.check(
                        connect.parse::<f64>().ok() == states.first().map(|s| s.1),
                        || format!("CSV connect_ms should be the SYN_SENT time: {row:?}"),
                    );
                } else {
                    p.check(connect.is_empty(), || {
                        format!("CSV connect_ms should be empty for a passive socket: {row:?}")
                    });
                }
            }
            Err(e) => p.check(false, || format!("CSV states do not parse ({e}): {row:?}")),
        }
    }
    p.finish(&[&traced.life_lines, &csv_out.stdout, &traced.watch_lines]);
    reservation.release();
}

#[test]
fn transfer_one_mib_each_way_ipv4() {
    transfer(
        "transfer_one_mib_each_way_ipv4",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        0,
    );
}

/// The server closes half a second after the client's EOF (longer than any delayed ACK), so
/// the closed client leaves FIN_WAIT2 for TIME_WAIT on the bare ACK of its FIN, before the
/// server's FIN arrives: its byte count must not lose a byte for a FIN it never got.
#[test]
fn transfer_one_mib_peer_closes_late_ipv4() {
    transfer(
        "transfer_one_mib_peer_closes_late_ipv4",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        500,
    );
}

#[test]
fn transfer_one_mib_each_way_ipv6() {
    transfer(
        "transfer_one_mib_each_way_ipv6",
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        0,
    );
}

/// A process named `ev<ESC>[31mil<BEL>`: text output (watch, watch -w, life) shows `\x1b` and
/// `\x07`, never the raw bytes; JSON carries the raw name, escaped by JSON.
#[test]
fn escaped_process_name() {
    if !require_root("escaped_process_name") {
        return;
    }
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let addr = reservation.addr();
    let port = addr.port().to_string();
    let compact = Tracer::start(&["watch", "--port", &port]);
    let wide = Tracer::start(&["watch", "-w", "--port", &port]);
    let life_text = Tracer::start(&["life", "--port", &port]);
    let mut child = None;
    let traced = trace(&["--port", &port], 2, || {
        let mut c = ender(&[
            "--name",
            EVIL,
            "pair",
            "--addr",
            &addr.to_string(),
            "--end",
            "normal",
        ]);
        expect_line(&mut c, "listening ");
        expect_line(&mut c, "client ");
        expect_line(&mut c, "done");
        child = Some(c);
    });
    let compact = stop(compact, false).stdout;
    let wide = stop(wide, false).stdout;
    let life_text = stop(life_text, false).stdout;
    let pid = child.as_ref().expect("the ender ran").pid();
    let mut p = Problems::default();

    // JSON: the raw name, as a JSON string (the control characters escaped by JSON).
    let ours: Vec<&Transition> = traced
        .transitions
        .iter()
        .filter(|t| t.pid == Some(pid))
        .collect();
    p.check(!ours.is_empty(), || {
        "watch: no transitions of the ender".into()
    });
    for t in &ours {
        p.check(t.comm.as_deref() == Some(EVIL), || {
            format!("watch JSON comm: {t}")
        });
    }
    p.check(traced.lives.len() == 2, || {
        format!("expected 2 lifecycles, got {}", traced.lives.len())
    });
    for l in &traced.lives {
        p.check(
            l.comm.as_deref() == Some(EVIL) && l.pid == Some(pid),
            || format!("life JSON comm/pid: {}", l.raw),
        );
    }
    for line in traced.watch_lines.iter().chain(&traced.life_lines) {
        p.check(!line.chars().any(char::is_control), || {
            format!("raw control character in a JSON line: {line:?}")
        });
    }

    // Text: never a raw control character; the name escaped on every line of the ender.
    for (what, lines) in [
        ("watch", &compact),
        ("watch -w", &wide),
        ("life", &life_text),
    ] {
        for line in lines.iter() {
            p.check(!line.chars().any(char::is_control), || {
                format!("{what}: raw control character: {line:?}")
            });
        }
    }
    let count =
        |lines: &[String], needle: &str| lines.iter().filter(|l| l.contains(needle)).count();
    // The 80-column layout cuts names at 8 characters.
    p.check(count(&compact, r"ev\x1b") == ours.len(), || {
        format!("watch: expected {} lines showing `ev\\x1b`", ours.len())
    });
    p.check(count(&wide, EVIL_ESCAPED) == ours.len(), || {
        format!(
            "watch -w: expected {} lines showing `{EVIL_ESCAPED}`",
            ours.len()
        )
    });
    p.check(count(&life_text, EVIL_ESCAPED) == 2, || {
        format!("life: expected 2 lines showing `{EVIL_ESCAPED}`")
    });
    p.finish(&[
        &compact,
        &wide,
        &life_text,
        &traced.watch_lines,
        &traced.life_lines,
    ]);
    reservation.release();
}
