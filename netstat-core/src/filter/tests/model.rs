//! The property test: random expressions over random transitions, checked against a
//! brute-force model with its own tree, its own printer (in every spelling the language
//! accepts) and its own evaluator, written from the documentation, not from the parser.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use netstat_common::{AF_INET, AF_INET6, KernelFilter};
use proptest::prelude::*;

use super::{Case, parse, services};
use crate::{
    event::{Endpoint, Family, Owner},
    filter::Observed,
    state::TcpState,
};

const V4: [u32; 4] = [0x7f00_0001, 0x0a00_0005, 0x0a01_0203, 0xc0a8_0101];
const V6: [u128; 3] = [1, 0xfe80 << 112 | 1, 0x2001_0db8 << 96 | 5];
const PORTS: [u16; 7] = [0, 22, 80, 443, 1024, 40000, 65535];
const PIDS: [u32; 3] = [1, 4242, 777];
const COMMS: [&str; 6] = ["curl", "nginx: worker", "python3", "and", "x*y", "é"];
const PATTERNS: [&str; 6] = ["cu*", "*", "?url", "nginx*", "*3", "x?y"];
const NETNS: [u32; 2] = [1, 4_026_531_840];
const COOKIES: [u64; 2] = [1, 77];

/// State spellings and the netstat names each stands for.
const STATE_WORDS: [(&str, &[&str]); 24] = [
    ("established", &["ESTABLISHED"]),
    ("ESTABLISHED", &["ESTABLISHED"]),
    ("estab", &["ESTABLISHED"]),
    ("syn-sent", &["SYN_SENT"]),
    ("SYN_SENT", &["SYN_SENT"]),
    ("syn-recv", &["SYN_RECV"]),
    ("fin-wait-1", &["FIN_WAIT1"]),
    ("FIN_WAIT2", &["FIN_WAIT2"]),
    ("time-wait", &["TIME_WAIT"]),
    ("closed", &["CLOSE"]),
    ("close", &["CLOSE"]),
    ("close-wait", &["CLOSE_WAIT"]),
    ("last-ack", &["LAST_ACK"]),
    ("listening", &["LISTEN"]),
    ("LISTEN", &["LISTEN"]),
    ("closing", &["CLOSING"]),
    ("new-syn-recv", &["NEW_SYN_RECV"]),
    (
        "all",
        &[
            "ESTABLISHED",
            "SYN_SENT",
            "SYN_RECV",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "TIME_WAIT",
            "CLOSE",
            "CLOSE_WAIT",
            "LAST_ACK",
            "LISTEN",
            "CLOSING",
            "NEW_SYN_RECV",
            "UNKNOWN",
        ],
    ),
    (
        "connected",
        &[
            "ESTABLISHED",
            "SYN_SENT",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "CLOSE_WAIT",
            "LAST_ACK",
            "CLOSING",
        ],
    ),
    (
        "synchronized",
        &[
            "ESTABLISHED",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "CLOSE_WAIT",
            "LAST_ACK",
            "CLOSING",
        ],
    ),
    ("bucket", &["SYN_RECV", "TIME_WAIT", "NEW_SYN_RECV"]),
    (
        "big",
        &[
            "ESTABLISHED",
            "SYN_SENT",
            "FIN_WAIT1",
            "FIN_WAIT2",
            "CLOSE",
            "CLOSE_WAIT",
            "LAST_ACK",
            "LISTEN",
            "CLOSING",
        ],
    ),
    ("opening", &["SYN_SENT", "SYN_RECV", "NEW_SYN_RECV"]),
    (
        "teardown",
        &[
            "FIN_WAIT1",
            "FIN_WAIT2",
            "TIME_WAIT",
            "CLOSE_WAIT",
            "LAST_ACK",
            "CLOSING",
        ],
    ),
];

/// A socket as the model sees it: addresses as integers, 0 for an unassigned port.
#[derive(Clone, Debug)]
pub struct Sample {
    v6: bool,
    laddr: u128,
    lport: u16,
    raddr: u128,
    rport: u16,
    old: TcpState,
    new: TcpState,
    owner: Option<(u32, &'static str)>,
    netns: u32,
    cookie: u64,
    /// An IPv4 socket may be a v4-mapped AF_INET6 one in the kernel.
    kernel_af6: bool,
}

fn ip(v6: bool, bits: u128) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::from_bits(bits))
    } else {
        IpAddr::V4(Ipv4Addr::from_bits(bits as u32))
    }
}

impl Sample {
    fn case(&self) -> Case {
        let mut c = Case::new("10.0.0.5:1", "10.0.0.6:2", self.old, self.new);
        c.t.family = if self.v6 { Family::Ipv6 } else { Family::Ipv4 };
        c.t.local = Endpoint::new(ip(self.v6, self.laddr), self.lport);
        c.t.remote = Endpoint::new(ip(self.v6, self.raddr), self.rport);
        c.t.netns = self.netns;
        c.t.cookie = crate::event::Cookie(self.cookie);
        c.owner = self.owner.map(|(pid, comm)| Owner::new(pid, comm));
        c
    }
}

fn state() -> impl Strategy<Value = TcpState> {
    prop_oneof![
        10 => proptest::sample::select(TcpState::ALL.to_vec()),
        1 => Just(TcpState::Unknown(99)),
    ]
}

prop_compose! {
    fn sample()(
        v6 in any::<bool>(),
        l in 0..4usize, r in 0..4usize,
        lport in proptest::sample::select(PORTS.to_vec()),
        rport in proptest::sample::select(PORTS.to_vec()),
        old in state(), new in state(),
        owner in proptest::option::of((proptest::sample::select(PIDS.to_vec()),
                                       proptest::sample::select(COMMS.to_vec()))),
        netns in proptest::sample::select(NETNS.to_vec()),
        cookie in proptest::sample::select(COOKIES.to_vec()),
        kernel_af6 in any::<bool>(),
    ) -> Sample {
        let pick = |i: usize| if v6 { V6[i % 3] } else { u128::from(V4[i]) };
        Sample { v6, laddr: pick(l), lport, raddr: pick(r), rport, old, new, owner, netns,
                 cookie, kernel_af6 }
    }
}

/// A condition, with how it is spelled.
#[derive(Clone, Debug)]
pub enum T {
    State {
        from: bool,
        word: usize,
    },
    Port {
        key: &'static str,
        op: &'static str,
        port: u16,
        spelling: u8,
    },
    Addr {
        dst: bool,
        eq: &'static str,
        any: bool,
        v6: bool,
        bits: u128,
        prefix: u8,
        port: Option<u16>,
        explicit_prefix: bool,
        bracket: bool,
    },
    Pid {
        eq: &'static str,
        pid: u32,
    },
    Comm {
        eq: &'static str,
        pattern: &'static str,
        quote: u8,
    },
    Family {
        eq: &'static str,
        v6: bool,
        word: u8,
    },
    Netns {
        eq: &'static str,
        n: u32,
    },
    Cookie {
        eq: &'static str,
        n: u64,
    },
}

/// An expression, with how it is spelled.
#[derive(Clone, Debug)]
pub enum M {
    T(T),
    Not(Box<M>, u8),
    And(Vec<M>, u8),
    Or(Vec<M>, u8),
    Paren(Box<M>),
}

const EQ: [&str; 7] = ["", "=", "==", "eq", "!=", "neq", "ne"];
const CMP: [&str; 13] = [
    "", "=", "==", "!=", "<", ">", "<=", ">=", "eq", "neq", "lt", "ge", "le",
];

fn eq_op() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(EQ.to_vec())
}

fn term() -> impl Strategy<Value = T> {
    let port = proptest::sample::select(PORTS.to_vec());
    prop_oneof![
        3 => (any::<bool>(), 0..STATE_WORDS.len()).prop_map(|(from, word)| T::State { from, word }),
        3 => (proptest::sample::select(vec!["sport", "lport", "dport", "rport", "port"]),
              proptest::sample::select(CMP.to_vec()), port.clone(), 0..3u8)
            // `< 0` and `> 65535` can never hold, and the parser refuses them.
            .prop_filter("a comparison that can hold", |(_, op, port, _)| {
                !matches!((*op, *port), ("<" | "lt", 0) | (">", 65535))
            })
            .prop_map(|(key, op, port, spelling)| T::Port { key, op, port, spelling }),
        3 => (any::<bool>(), eq_op(), prop::bool::weighted(0.1), any::<bool>(), 0..4usize,
              any::<u8>(), proptest::option::of(port), any::<bool>(), any::<bool>())
            .prop_map(|(dst, eq, any, v6, i, p, port, explicit_prefix, bracket)| {
                let (bits, max) = if v6 { (V6[i % 3], 128) } else { (u128::from(V4[i]), 32) };
                // Mostly whole or round prefixes, so conditions often hold.
                let prefix = match p % 4 { 0 => max, 1 => 0, 2 => max / 4 * (p / 4 % 4), _ => p % (max + 1) };
                T::Addr { dst, eq: if eq.contains('q') && eq != "eq" { "!=" } else { eq },
                          any, v6, bits, prefix, port, explicit_prefix, bracket }
            }),
        1 => (eq_op(), proptest::sample::select(PIDS.to_vec())).prop_map(|(eq, pid)| T::Pid { eq, pid }),
        2 => (eq_op(), proptest::sample::select([COMMS, PATTERNS].concat()), 0..3u8)
            .prop_map(|(eq, pattern, quote)| T::Comm { eq, pattern, quote }),
        1 => (eq_op(), any::<bool>(), 0..3u8).prop_map(|(eq, v6, word)| T::Family { eq, v6, word }),
        1 => (eq_op(), proptest::sample::select(NETNS.to_vec())).prop_map(|(eq, n)| T::Netns { eq, n }),
        1 => (eq_op(), proptest::sample::select(COOKIES.to_vec())).prop_map(|(eq, n)| T::Cookie { eq, n }),
    ]
}

pub fn expr() -> impl Strategy<Value = M> {
    term().prop_map(M::T).prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            (inner.clone(), 0..4u8).prop_map(|(e, s)| M::Not(Box::new(e), s)),
            (proptest::collection::vec(inner.clone(), 2..4), 0..5u8)
                .prop_map(|(v, s)| M::And(v, s)),
            (proptest::collection::vec(inner.clone(), 2..4), 0..4u8).prop_map(|(v, s)| M::Or(v, s)),
            inner.prop_map(|e| M::Paren(Box::new(e))),
        ]
    })
}

// ---- printing -------------------------------------------------------------------------

fn v4_text(bits: u128) -> String {
    Ipv4Addr::from_bits(bits as u32).to_string()
}

fn bare_ok(s: &str) -> bool {
    !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || "()!&|=<>\"'".contains(c))
        && ![
            "and", "or", "not", "eq", "neq", "ne", "lt", "gt", "le", "ge",
        ]
        .contains(&s)
}

fn quoted(s: &str, q: char) -> String {
    let mut out = String::from(q);
    for c in s.chars() {
        if c == q || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push(q);
    out
}

fn port_text(port: u16, spelling: u8) -> String {
    match (spelling, port) {
        (2, 443) => ":https".into(),
        (2, 80) => "http".into(),
        (1, p) => p.to_string(),
        (_, p) => format!(":{p}"),
    }
}

fn with_eq(key: &str, eq: &str, value: &str) -> String {
    if eq.is_empty() {
        format!("{key} {value}")
    } else {
        format!("{key} {eq} {value}")
    }
}

impl T {
    fn print(&self) -> String {
        match self {
            T::State { from, word } => {
                format!(
                    "{} {}",
                    if *from { "from" } else { "state" },
                    STATE_WORDS[*word].0
                )
            }
            T::Port {
                key,
                op,
                port,
                spelling,
            } => with_eq(key, op, &port_text(*port, *spelling)),
            T::Addr {
                dst,
                eq,
                any,
                v6,
                bits,
                prefix,
                port,
                explicit_prefix,
                bracket,
            } => {
                let max = if *v6 { 128 } else { 32 };
                let mut s = if *any {
                    "*".to_owned()
                } else {
                    let addr = if *v6 {
                        Ipv6Addr::from_bits(*bits).to_string()
                    } else {
                        v4_text(*bits)
                    };
                    let pre = if *prefix != max || *explicit_prefix {
                        format!("/{prefix}")
                    } else {
                        String::new()
                    };
                    if *v6 && (*bracket || port.is_some()) {
                        format!("[{addr}]{pre}")
                    } else {
                        format!("{addr}{pre}")
                    }
                };
                if let Some(p) = port {
                    s.push_str(&format!(":{p}"));
                }
                with_eq(if *dst { "dst" } else { "src" }, eq, &s)
            }
            T::Pid { eq, pid } => with_eq("pid", eq, &pid.to_string()),
            T::Comm { eq, pattern, quote } => {
                let value = match quote {
                    0 if bare_ok(pattern) => pattern.to_string(),
                    1 => quoted(pattern, '\''),
                    _ => quoted(pattern, '"'),
                };
                with_eq("comm", eq, &value)
            }
            T::Family { eq, v6, word } => {
                let w = match (v6, word) {
                    (false, 0) => "ipv4",
                    (false, 1) => "inet",
                    (false, _) => "4",
                    (true, 0) => "ipv6",
                    (true, 1) => "INET6",
                    (true, _) => "6",
                };
                with_eq("family", eq, w)
            }
            T::Netns { eq, n } => with_eq("netns", eq, &n.to_string()),
            T::Cookie { eq, n } => with_eq("cookie", eq, &n.to_string()),
        }
    }
}

impl M {
    pub fn print(&self) -> String {
        let child = |e: &M, parens: bool| {
            if parens {
                format!("({})", e.print())
            } else {
                e.print()
            }
        };
        match self {
            M::T(t) => t.print(),
            M::Paren(e) => format!("({})", e.print()),
            M::Not(e, s) => {
                let word = ["not ", "NOT ", "!", "! "][*s as usize];
                format!("{word}{}", child(e, matches!(**e, M::And(..) | M::Or(..))))
            }
            M::And(items, s) => {
                let sep = [" and ", " && ", " & ", " AND ", " "][*s as usize];
                let parts: Vec<String> = items
                    .iter()
                    .map(|e| child(e, matches!(e, M::And(..) | M::Or(..))))
                    .collect();
                parts.join(sep)
            }
            M::Or(items, s) => {
                let sep = [" or ", " || ", " | ", " OR "][*s as usize];
                let parts: Vec<String> = items
                    .iter()
                    .map(|e| child(e, matches!(e, M::Or(..))))
                    .collect();
                parts.join(sep)
            }
        }
    }

    // ---- brute-force evaluation ---------------------------------------------------------

    pub fn eval(&self, s: &Sample) -> bool {
        match self {
            M::T(t) => t.eval(s),
            M::Paren(e) => e.eval(s),
            M::Not(e, _) => !e.eval(s),
            M::And(items, _) => items.iter().all(|e| e.eval(s)),
            M::Or(items, _) => items.iter().any(|e| e.eval(s)),
        }
    }
}

fn compare(op: &str, a: u16, b: u16) -> bool {
    match op {
        "" | "=" | "==" | "eq" => a == b,
        "!=" | "neq" | "ne" => a != b,
        "<" | "lt" => a < b,
        ">" | "gt" => a > b,
        "<=" | "le" => a <= b,
        ">=" | "ge" => a >= b,
        _ => unreachable!("{op}"),
    }
}

fn negated(eq: &str) -> bool {
    matches!(eq, "!=" | "neq" | "ne")
}

/// Naive recursive wildcard matching.
fn glob(p: &[char], t: &[char]) -> bool {
    match (p.first(), t.first()) {
        (None, None) => true,
        (Some('*'), _) => glob(&p[1..], t) || (!t.is_empty() && glob(p, &t[1..])),
        (Some('?'), Some(_)) => glob(&p[1..], &t[1..]),
        (Some(a), Some(b)) if a == b => glob(&p[1..], &t[1..]),
        _ => false,
    }
}

fn same_network(v6: bool, a: u128, b: u128, prefix: u8) -> bool {
    let bits = if v6 { 128 } else { 32 };
    prefix == 0 || (a ^ b) >> (bits - u32::from(prefix)) == 0
}

impl T {
    fn eval(&self, s: &Sample) -> bool {
        match self {
            T::State { from, word } => {
                let st = if *from { s.old } else { s.new };
                STATE_WORDS[*word].1.contains(&st.name())
            }
            T::Port { key, op, port, .. } => {
                let ends: &[u16] = match *key {
                    "sport" | "lport" => &[s.lport],
                    "dport" | "rport" => &[s.rport],
                    _ => &[s.lport, s.rport],
                };
                ends.iter().any(|p| compare(op, *p, *port))
            }
            T::Addr {
                dst,
                eq,
                any,
                v6,
                bits,
                prefix,
                port,
                ..
            } => {
                let (addr, p) = if *dst {
                    (s.raddr, s.rport)
                } else {
                    (s.laddr, s.lport)
                };
                let addr_ok = *any || (*v6 == s.v6 && same_network(*v6, *bits, addr, *prefix));
                let hit = addr_ok && port.is_none_or(|want| want == p);
                hit != negated(eq)
            }
            T::Pid { eq, pid } => s.owner.is_some_and(|(p, _)| p == *pid) != negated(eq),
            T::Comm { eq, pattern, .. } => {
                let p: Vec<char> = pattern.chars().collect();
                let hit = s.owner.is_some_and(|(_, c)| {
                    if pattern.contains(['*', '?']) {
                        glob(&p, &c.chars().collect::<Vec<_>>())
                    } else {
                        c == *pattern
                    }
                });
                hit != negated(eq)
            }
            T::Family { eq, v6, .. } => (s.v6 == *v6) != negated(eq),
            T::Netns { eq, n } => (s.netns == *n) != negated(eq),
            T::Cookie { eq, n } => (s.cookie == *n) != negated(eq),
        }
    }
}

/// The kernel program's own test, shared from netstat-common.
fn kernel_keeps(k: &KernelFilter, s: &Sample) -> bool {
    let family = if s.v6 || s.kernel_af6 {
        AF_INET6
    } else {
        AF_INET
    };
    k.keeps(family, s.lport, s.rport)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn filter_agrees_with_the_model(m in expr(), samples in proptest::collection::vec(sample(), 24)) {
        let text = m.print();
        let f = super::Filter::parse_with(&text, &services)
            .map_err(|e| TestCaseError::fail(format!("{text:?} does not parse:\n{e}")))?;
        // The canonical text reads back to the same filter.
        prop_assert_eq!(&parse(&f.to_string()), &f, "canonical form of {:?}: {}", text, f);
        let kernel = f.kernel_part();
        for s in &samples {
            let case = s.case();
            let got = f.matches(&Observed { transition: &case.t, owner: case.owner.as_ref() });
            let want = m.eval(s);
            prop_assert_eq!(got, want, "{:?} on {:?}", text, s);
            if want {
                prop_assert!(kernel_keeps(&kernel, s), "kernel drops a match: {:?} {:?} {:?}", text, kernel, s);
            }
        }
    }
}
