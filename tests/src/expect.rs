//! The transitions a test expects, and the checks that compare them with what enetstat printed.
//!
//! A [`Checker`] sorts a test's sockets into roles by their first transition (listener, client,
//! accepted socket), checks every line of every socket against what the test knows (addresses,
//! ports, owner, namespace, durations), and collects every problem before failing, so one run
//! shows everything that is wrong.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use crate::transition::{State, Transition};

use State::{Close, CloseWait, Established, FinWait1, FinWait2, LastAck, Listen, SynRecv, SynSent};

/// A listener: `listen()`, then `close()`.
pub const LISTENER: [(State, State); 2] = [(Close, Listen), (Listen, Close)];
/// A client that connects and closes first; the server then closes.
pub const CLIENT: [(State, State); 5] = [
    (Close, SynSent),
    (SynSent, Established),
    (Established, FinWait1),
    (FinWait1, FinWait2),
    (FinWait2, Close),
];
/// The server side of [`CLIENT`]: accepted, reads the client's FIN, closes.
pub const ACCEPTED: [(State, State); 5] = [
    (Listen, SynRecv),
    (SynRecv, Established),
    (Established, CloseWait),
    (CloseWait, LastAck),
    (LastAck, Close),
];
/// A client whose connect is refused (RST in reply to its SYN).
pub const REFUSED: [(State, State); 2] = [(Close, SynSent), (SynSent, Close)];

/// Most kinds of problem listed in one failure message.
const MAX_KINDS: usize = 25;
/// How far `ms_in_old` may be from the `ts_ns` difference (printing rounds to the microsecond).
const MS_TOLERANCE: f64 = 0.002;

/// Transitions grouped by cookie, each group in printed order, groups in order of first line.
pub fn group_by_cookie(transitions: &[Transition]) -> Vec<(u64, Vec<&Transition>)> {
    let mut index: BTreeMap<u64, usize> = BTreeMap::new();
    let mut groups: Vec<(u64, Vec<&Transition>)> = Vec::new();
    for t in transitions {
        let i = *index.entry(t.cookie).or_insert_with(|| {
            groups.push((t.cookie, Vec::new()));
            groups.len() - 1
        });
        groups[i].1.push(t);
    }
    groups
}

/// What a test knows about its own sockets.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The listener's address: every socket of the test has it on one side.
    pub server: SocketAddr,
    /// The network namespace inode of every socket; 0 where the tracer's mode cannot give it
    /// (the classic tracepoint), and every line must then say null.
    pub netns: u64,
    /// Owner of the listener and of the sockets it accepts.
    pub server_pid: u32,
    /// Owner of the client sockets.
    pub client_pid: u32,
    /// The owners' command name.
    pub comm: &'static str,
}

/// A test's sockets sorted by role.
#[derive(Default)]
pub struct Roles<'a> {
    pub listeners: Vec<Vec<&'a Transition>>,
    pub clients: Vec<Vec<&'a Transition>>,
    pub accepted: Vec<Vec<&'a Transition>>,
}

/// Checks transitions against an [`Expect`], collecting problems; [`Checker::finish`] fails
/// the test with all of them.
pub struct Checker {
    expect: Expect,
    problems: Vec<String>,
}

impl Checker {
    pub fn new(expect: Expect) -> Self {
        Checker {
            expect,
            problems: Vec::new(),
        }
    }

    /// Records a problem.
    pub fn problem(&mut self, message: String) {
        self.problems.push(message);
    }

    /// Records a problem when `ok` is false.
    pub fn check(&mut self, ok: bool, message: impl FnOnce() -> String) {
        if !ok {
            self.problems.push(message());
        }
    }

    /// Sorts sockets into roles by their first transition: CLOSE->LISTEN on the server port is
    /// a listener, LISTEN->SYN_RECV on it an accepted socket, CLOSE->SYN_SENT towards it a
    /// client. Any other socket is a problem.
    pub fn sort<'a>(&mut self, transitions: &'a [Transition]) -> Roles<'a> {
        let port = Some(self.expect.server.port());
        let mut roles = Roles::default();
        for (cookie, seq) in group_by_cookie(transitions) {
            let first = seq[0];
            match first.states() {
                (Close, Listen) if first.lport == port => roles.listeners.push(seq),
                (Listen, SynRecv) if first.lport == port => roles.accepted.push(seq),
                (Close, SynSent) if first.rport == port => roles.clients.push(seq),
                _ => self.problem(format!(
                    "a socket this test did not make, or one whose first transition is \
                     missing:\n  cookie {cookie}:\n{}",
                    show(&seq)
                )),
            }
        }
        roles
    }

    /// Checks a listener: [`LISTENER`], its address, the server's owner.
    pub fn listener(&mut self, seq: &[&Transition]) {
        self.sequence("listener", seq, &LISTENER);
        self.common("listener", seq);
        self.owner("listener", seq, self.expect.server_pid);
        let server = self.expect.server;
        for t in seq {
            self.local_is_server("listener", t);
            self.check(t.raddr.is_none_or(|a| a.is_unspecified()), || {
                format!("listener: raddr should be null or unspecified:\n{t}")
            });
            self.check(matches!(t.rport, None | Some(0)), || {
                format!("listener on {server}: rport should be null or 0:\n{t}")
            });
        }
    }

    /// Checks a client socket against `expected` ([`CLIENT`] or [`REFUSED`]): addresses, one
    /// local port throughout (null allowed only on CLOSE->SYN_SENT), the client's owner.
    /// Returns its local port.
    pub fn client(&mut self, seq: &[&Transition], expected: &[(State, State)]) -> Option<u16> {
        self.sequence("client", seq, expected);
        self.common("client", seq);
        self.owner("client", seq, self.expect.client_pid);
        let server = self.expect.server;
        let port = seq.iter().skip(1).find_map(|t| t.lport);
        for (i, t) in seq.iter().enumerate() {
            self.check(t.laddr == Some(server.ip()), || {
                format!("client: laddr should be {} (loopback):\n{t}", server.ip())
            });
            self.check(
                t.raddr == Some(server.ip()) && t.rport == Some(server.port()),
                || format!("client: remote should be {server}:\n{t}"),
            );
            let opening = i == 0 && t.states() == (Close, SynSent);
            match t.lport {
                None if opening => {}
                None => self.problem(format!(
                    "client: lport is null on a line after CLOSE->SYN_SENT (the port is \
                     assigned by then):\n{t}"
                )),
                Some(0) => self.problem(format!("client: lport 0 (should be the port):\n{t}")),
                Some(p) => self.check(Some(p) == port, || {
                    format!("client: lport changes within a socket:\n{t}\n  port: {port:?}")
                }),
            }
        }
        self.check(port.is_some(), || {
            format!("client: no line carries its port:\n{}", show(seq))
        });
        port
    }

    /// Checks an accepted socket: [`ACCEPTED`], local address = server, remote address = server
    /// (loopback) and one remote port on every line, the listener's owner. Returns its remote
    /// port (the client's port).
    ///
    /// It holds on every kernel of the matrix, LISTEN->SYN_RECV included. Debian's 6.1 and 6.12
    /// set the new socket's SYN_RECV in `inet_csk_clone_lock()` before copying its ports and
    /// cookie in, so the kernel's record of that line carries the listener's identity; enetstat
    /// holds it until the socket's next record and gives it the socket's own (`identity.rs`),
    /// which the matrix's 6.1 and 6.12 rows check with this.
    pub fn accepted(&mut self, seq: &[&Transition]) -> Option<u16> {
        self.sequence("accepted", seq, &ACCEPTED);
        self.common("accepted", seq);
        self.owner("accepted (listener's owner)", seq, self.expect.server_pid);
        let server = self.expect.server;
        let port = seq.iter().find_map(|t| t.rport);
        for t in seq {
            self.local_is_server("accepted", t);
            self.check(t.raddr == Some(server.ip()), || {
                format!("accepted: raddr should be {} (loopback):\n{t}", server.ip())
            });
            self.check(t.rport.is_some_and(|p| p != 0) && t.rport == port, || {
                format!(
                    "accepted: rport should be the client's port on every line:\n{t}\n  port: \
                     {port:?}"
                )
            });
        }
        port
    }

    /// Checks the whole output of a test that made `connections` ordinary connections (client
    /// closes first) to one listener: exactly one listener, `connections` clients and as many
    /// accepted sockets, nothing else, each socket checked by role, and the clients' ports
    /// equal to the accepted sockets' remote ports (as multisets: a port may be reused).
    /// Returns the clients' ports in order.
    pub fn connections(&mut self, transitions: &[Transition], connections: usize) -> Vec<u16> {
        let expected_lines = LISTENER.len() + connections * (CLIENT.len() + ACCEPTED.len());
        self.check(transitions.len() == expected_lines, || {
            format!(
                "expected exactly {expected_lines} transitions ({connections} connections x 10 + 2 \
                 for the listener) but got {}",
                transitions.len()
            )
        });
        let roles = self.sort(transitions);
        self.check(roles.listeners.len() == 1, || {
            format!("expected 1 listener, got {}", roles.listeners.len())
        });
        self.check(roles.clients.len() == connections && roles.accepted.len() == connections, || {
            format!(
                "expected {connections} client and {connections} accepted sockets, got {} and {}",
                roles.clients.len(),
                roles.accepted.len()
            )
        });
        for listener in &roles.listeners {
            self.listener(listener);
        }
        let client_ports: Vec<u16> = roles
            .clients
            .iter()
            .filter_map(|c| self.client(c, &CLIENT))
            .collect();
        let mut remote_ports: Vec<u16> = roles
            .accepted
            .iter()
            .filter_map(|a| self.accepted(a))
            .collect();
        let mut sorted_clients = client_ports.clone();
        sorted_clients.sort_unstable();
        remote_ports.sort_unstable();
        self.check(sorted_clients == remote_ports, || {
            format!(
                "the clients' ports and the accepted sockets' remote ports differ: {} clients                  ports vs {} remote ports",
                sorted_clients.len(),
                remote_ports.len()
            )
        });
        client_ports
    }

    /// Fails the test with every problem recorded, if any: each kind of problem (its first
    /// line) once, with how often it happened and its first example.
    pub fn finish(self) {
        if self.problems.is_empty() {
            return;
        }
        let mut kinds: Vec<(&str, usize, &str)> = Vec::new();
        for problem in &self.problems {
            let (headline, detail) = problem.split_once('\n').unwrap_or((problem, ""));
            match kinds.iter_mut().find(|(h, _, _)| *h == headline) {
                Some((_, count, _)) => *count += 1,
                None => kinds.push((headline, 1, detail)),
            }
        }
        let report: Vec<String> = kinds
            .iter()
            .take(MAX_KINDS)
            .map(|(headline, count, detail)| {
                format!("[{count}x] {headline}\n  first example:\n{detail}")
            })
            .collect();
        panic!(
            "{} problem(s) of {} kind(s) with enetstat's output (server {}):\n\n{}",
            self.problems.len(),
            kinds.len(),
            self.expect.server,
            report.join("\n\n")
        );
    }

    fn sequence(&mut self, role: &str, seq: &[&Transition], expected: &[(State, State)]) {
        let got: Vec<(State, State)> = seq.iter().map(|t| t.states()).collect();
        self.check(got == expected, || {
            format!(
                "{role}: transitions {} but expected {}:\n{}",
                arrows(&got),
                arrows(expected),
                show(seq)
            )
        });
    }

    /// Family, namespace, timestamps and durations: the same for every role.
    fn common(&mut self, role: &str, seq: &[&Transition]) {
        let family = if self.expect.server.is_ipv4() {
            "ipv4"
        } else {
            "ipv6"
        };
        let netns = self.expect.netns;
        for (i, t) in seq.iter().enumerate() {
            self.check(t.family == family, || {
                format!("{role}: family should be {family}:\n{t}")
            });
            self.check(t.netns == (netns != 0).then_some(netns), || {
                format!("{role}: netns should be {netns} (this namespace):\n{t}")
            });
            if i == 0 {
                self.check(t.ms_in_old.is_none(), || {
                    format!("{role}: ms_in_old should be null on a cookie's first line:\n{t}")
                });
                continue;
            }
            let prev = seq[i - 1];
            self.check(t.ts_ns >= prev.ts_ns, || {
                format!("{role}: ts_ns goes backwards within a cookie:\n{prev}\n{t}")
            });
            let elapsed_ms = t.ts_ns.saturating_sub(prev.ts_ns) as f64 / 1e6;
            match t.ms_in_old {
                Some(ms) if ms >= 0.0 && (ms - elapsed_ms).abs() <= MS_TOLERANCE => {}
                _ => self.problem(format!(
                    "{role}: ms_in_old should be the time since the previous transition \
                     (by ts_ns):\n{prev}\n{t}\n  by ts_ns: {elapsed_ms:.6} ms"
                )),
            }
        }
    }

    fn owner(&mut self, role: &str, seq: &[&Transition], pid: u32) {
        let comm = self.expect.comm;
        for t in seq {
            self.check(
                t.pid == Some(pid) && t.comm.as_deref() == Some(comm),
                || format!("{role}: owner should be pid {pid} comm {comm}:\n{t}"),
            );
        }
    }

    fn local_is_server(&mut self, role: &str, t: &Transition) {
        let server = self.expect.server;
        self.check(
            t.laddr == Some(server.ip()) && t.lport == Some(server.port()),
            || format!("{role}: local address should be {server}:\n{t}"),
        );
    }
}

fn arrows(states: &[(State, State)]) -> String {
    let mut out = String::new();
    for (i, (old, new)) in states.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push_str(&format!("{old}->{new}"));
    }
    if out.is_empty() {
        "(none)".to_owned()
    } else {
        out
    }
}

/// The raw lines of a socket, one per line, for messages.
pub fn show(seq: &[&Transition]) -> String {
    seq.iter()
        .map(|t| format!("  {t}"))
        .collect::<Vec<_>>()
        .join("\n")
}
