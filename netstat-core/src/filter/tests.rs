//! The filter language, condition by condition, then the errors, the kernel part and a
//! property test against a brute-force model.

use std::net::IpAddr;

use netstat_common::{AF_INET6, KernelFilter};

use super::*;
use crate::{
    event::{Cookie, Endpoint, Owner, Task, Transition},
    state::TcpState::{self, *},
};

mod model;

/// The services the tests know, so they do not depend on /etc/services.
fn services(name: &str) -> Option<u16> {
    match name {
        "https" => Some(443),
        "http" | "www" => Some(80),
        "ssh" => Some(22),
        _ => None,
    }
}

fn parse(text: &str) -> Filter {
    Filter::parse_with(text, &services).unwrap_or_else(|e| panic!("{text:?}: {e}"))
}

fn error(text: &str) -> String {
    Filter::parse_with(text, &services)
        .expect_err(text)
        .to_string()
}

/// A transition plus its owner: what the filter sees.
#[derive(Clone, Debug)]
struct Case {
    t: Transition,
    owner: Option<Owner>,
}

impl Case {
    fn new(local: &str, remote: &str, old: TcpState, new: TcpState) -> Self {
        let (l, r) = (endpoint(local), endpoint(remote));
        let family = match l.addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        };
        Case {
            t: Transition {
                ts_ns: 0,
                cookie: Cookie(77),
                family,
                local: l,
                remote: r,
                old,
                new,
                netns: 4_026_531_840,
                cgroup: 0,
                task: Task {
                    pid: 1,
                    tid: 1,
                    comm: "swapper/0".into(),
                },
                fin: None,
            },
            owner: Some(Owner::new(4242, "curl")),
        }
    }

    fn owner(mut self, owner: Option<(u32, &str)>) -> Self {
        self.owner = owner.map(|(pid, comm)| Owner::new(pid, comm));
        self
    }

    fn matches(&self, text: &str) -> bool {
        parse(text).matches(&Observed {
            transition: &self.t,
            owner: self.owner.as_ref(),
        })
    }
}

/// `10.0.0.5:40000`, `[::1]:80`, `10.0.0.5:*`.
fn endpoint(s: &str) -> Endpoint {
    let (addr, port) = s.rsplit_once(':').unwrap();
    let addr = addr.trim_matches(['[', ']']).parse().unwrap();
    Endpoint::new(addr, port.parse().unwrap_or(0))
}

/// A client connection from 10.0.0.5:40000 to 93.184.216.34:443 becoming established.
fn client() -> Case {
    Case::new("10.0.0.5:40000", "93.184.216.34:443", SynSent, Established)
}

fn check(case: &Case, yes: &[&str], no: &[&str]) {
    for e in yes {
        assert!(case.matches(e), "{e:?} should match {case:?}");
    }
    for e in no {
        assert!(!case.matches(e), "{e:?} should not match {case:?}");
    }
}

#[test]
fn empty_expression_matches_everything() {
    let f = parse("  ");
    assert!(f.is_all());
    assert_eq!(f.kernel_part(), KernelFilter::default());
    check(&client(), &["", " "], &[]);
}

#[test]
fn state_tests_the_new_state_and_from_the_old() {
    check(
        &client(),
        &[
            "state established",
            "state ESTABLISHED",
            "state estab",
            "from syn-sent",
            "from SYN_SENT",
            "state established from syn-sent",
        ],
        &["state syn-sent", "from established", "state listen"],
    );
    for s in TcpState::ALL {
        let case = Case::new("10.0.0.5:1", "10.0.0.6:2", Close, s);
        assert!(
            case.matches(&format!("state {}", groups::ss_name(s))),
            "{s}"
        );
        assert!(case.matches(&format!("state {}", s.name())), "{s}");
        assert!(case.matches("from closed"));
    }
    let case = Case::new("10.0.0.5:1", "10.0.0.6:2", Listen, Close);
    check(
        &case,
        &["state closed", "from listening"],
        &["state listening"],
    );
}

#[test]
fn every_state_group() {
    let table: [(&str, &[TcpState]); 7] = [
        ("all", &TcpState::ALL),
        (
            "connected",
            &[
                Established,
                SynSent,
                FinWait1,
                FinWait2,
                CloseWait,
                LastAck,
                Closing,
            ],
        ),
        (
            "synchronized",
            &[Established, FinWait1, FinWait2, CloseWait, LastAck, Closing],
        ),
        ("bucket", &[SynRecv, TimeWait, NewSynRecv]),
        (
            "big",
            &[
                Established,
                SynSent,
                FinWait1,
                FinWait2,
                Close,
                CloseWait,
                LastAck,
                Listen,
                Closing,
            ],
        ),
        ("opening", &[SynSent, SynRecv, NewSynRecv]),
        (
            "teardown",
            &[FinWait1, FinWait2, TimeWait, CloseWait, LastAck, Closing],
        ),
    ];
    for (group, members) in table {
        for s in TcpState::ALL {
            let case = Case::new("10.0.0.5:1", "10.0.0.6:2", s, s);
            let want = members.contains(&s);
            assert_eq!(case.matches(&format!("state {group}")), want, "{group} {s}");
            assert_eq!(case.matches(&format!("from {group}")), want, "{group} {s}");
        }
    }
    // `closing` is the CLOSING state, as in ss.
    let case = Case::new("10.0.0.5:1", "10.0.0.6:2", FinWait1, Closing);
    check(&case, &["state closing"], &[]);
    let case = Case::new("10.0.0.5:1", "10.0.0.6:2", Established, FinWait1);
    check(&case, &["state teardown"], &["state closing"]);
}

#[test]
fn every_port_operator_in_every_spelling() {
    let case = client(); // sport 40000, dport 443
    let table = [
        ("=", "eq", 443, true),
        ("==", "eq", 80, false),
        ("!=", "neq", 80, true),
        ("!=", "ne", 443, false),
        ("<", "lt", 444, true),
        ("<", "lt", 443, false),
        (">", "gt", 442, true),
        (">", "gt", 443, false),
        ("<=", "le", 443, true),
        ("<=", "le", 442, false),
        (">=", "ge", 443, true),
        (">=", "ge", 444, false),
    ];
    for (sym, word, port, want) in table {
        for text in [
            format!("dport {sym} :{port}"),
            format!("dport {sym} {port}"),
            format!("dport{sym}:{port}"),
            format!("dport {word} :{port}"),
            format!("rport {word} {port}"),
        ] {
            assert_eq!(case.matches(&text), want, "{text}");
        }
    }
    check(
        &case,
        &[
            "dport :443",
            "dport 443",
            "dport = :https",
            "dport https",
            "sport = :40000",
            "lport > 1024",
            "port = :443",
            "port = :40000",
            "port ge 40000",
        ],
        &[
            "sport = :443",
            "dport = :http",
            "port = :80",
            "port > 40000",
        ],
    );
}

#[test]
fn an_unassigned_port_compares_as_zero() {
    let case = Case::new("10.0.0.5:*", "10.0.0.6:80", Close, SynSent);
    check(
        &case,
        &["sport = 0", "sport < 1", "sport != :80", "not sport = :80"],
        &["sport = :80", "sport > 0"],
    );
}

#[test]
fn addresses_and_networks() {
    let case = client();
    check(
        &case,
        &[
            "src 10.0.0.5",
            "src 10.0.0.0/8",
            "src 10.0.0.5/32",
            "src 0.0.0.0/0",
            "src 10.0.0.5:40000",
            "src 10.0.0.0/8:40000",
            "src *:40000",
            "src *",
            "dst 93.184.216.34:https",
            "dst 93.184.0.0/16",
            "src = 10.0.0.5",
            "src != 10.1.0.0/16",
            "dst eq 93.184.216.34",
            "src ::ffff:10.0.0.5",
            "src ::ffff:10.0.0.0/104",
        ],
        &[
            "src 10.0.0.6",
            "src 11.0.0.0/8",
            "src 10.0.0.5:80",
            "dst 10.0.0.0/8",
            "src != 10.0.0.0/8",
            "src ::/0",
            "src *:443",
        ],
    );
    let v6 = Case::new("[::1]:8080", "[2001:db8::7]:443", Listen, SynRecv);
    check(
        &v6,
        &[
            "src ::1",
            "src ::1/128",
            "src [::1]",
            "src [::1]:8080",
            "src [::]/0:8080",
            "dst 2001:db8::/32",
            "dst [2001:db8::]/32:443",
            "dst [2001:db8::7]:https",
            "src ::/0",
        ],
        &[
            "src ::2",
            "src [::1]:80",
            "dst 2001:db9::/32",
            "src 0.0.0.0/0",
        ],
    );
}

#[test]
fn owner_family_namespace_and_cookie() {
    let case = client();
    check(
        &case,
        &[
            "pid 4242",
            "pid = 4242",
            "pid != 1",
            "comm curl",
            "comm = \"curl\"",
            "comm 'cu*'",
            "comm c?rl",
            "comm *",
            "comm != wget",
            "family ipv4",
            "family inet",
            "family = 4",
            "netns 4026531840",
            "cookie 77",
            "cookie = 77",
        ],
        &[
            "pid 1",
            "comm swapper/0",
            "comm cur",
            "comm Curl",
            "family ipv6",
            "netns 1",
            "cookie 78",
        ],
    );
    // An unknown owner matches no pid or comm; its negation matches.
    let unknown = client().owner(None);
    check(
        &unknown,
        &["not pid 4242", "pid != 4242"],
        &["pid 4242", "comm *"],
    );
    let spaced = client().owner(Some((1, "nginx: worker")));
    check(
        &spaced,
        &["comm \"nginx: worker\"", "comm 'nginx:*'"],
        &["comm nginx"],
    );
    let keyword = client().owner(Some((1, "and")));
    check(&keyword, &["comm \"and\""], &[]);
}

#[test]
fn connectives_precedence_and_implicit_and() {
    let case = client();
    check(
        &case,
        &[
            "state established and dport = :443",
            "state established && dport = :443",
            "state established & dport = :443",
            "state established dport = :443",
            "state listen or dport = :443",
            "state listen || dport = :443",
            "state listen | dport = :443",
            "not state listen",
            "! state listen",
            "!state listen",
            "not not state established",
            "(state listen or state established) and dport = :443",
            "dport = :443 (state listen or state established)",
            // `and` binds tighter than `or`.
            "state established or state listen and dport = :80",
            "STATE Established AND NOT Src 10.1.0.0/16",
            "dport = :443 and (state syn-sent or state established) and not src 10.1.0.0/16",
        ],
        &[
            "state listen and dport = :443",
            "(state established or state listen) and dport = :80",
            "not (state established or state listen)",
            "!(dport = :443)",
            "dport = :443 and (state syn-sent or state close) and not src 10.0.0.0/8",
        ],
    );
}

#[test]
fn canonical_text_parses_back_to_the_same_filter() {
    for text in [
        "state established",
        "dport = :443 and (state syn-sent or state established) and not src 10.0.0.0/8",
        "(sport > 1024 or dport le https) and (comm 'a\"b' or not (pid 1 and pid 2))",
        "(state listen and state close) and state all",
        "src [::1]/64:80 or dst *:22 or src 10.0.0.1:80 or family ipv6 or netns 5 or cookie 9",
        "!(!state bucket) from teardown",
        "src ::ffff:10.0.0.0/104",
    ] {
        let f = parse(text);
        let again = parse(&f.to_string());
        assert_eq!(again, f, "{text} -> {f}");
    }
    assert_eq!(
        parse("dport eq https (state syn-sent || state estab) && ! src 10.0.0.0/8").to_string(),
        "dport = :443 and (state syn-sent or state established) and not src 10.0.0.0/8"
    );
    assert_eq!(
        parse("src ::ffff:10.0.0.0/104").to_string(),
        "src 10.0.0.0/8"
    );
}

#[test]
fn errors_quote_the_expression_and_point_at_the_problem() {
    assert_eq!(
        error("dport = and state established"),
        "invalid filter: expected a port (:443, 443 or :https) after `dport =`, found `and`\n  \
         dport = and state established\n          ^^^"
    );
    assert_eq!(
        error("state established and"),
        "invalid filter: expected a condition after `and`, found the end of the expression\n  \
         state established and\n                       ^"
    );
    assert_eq!(
        error("(state listen or dport = :80"),
        "invalid filter: expected `)` to close the `(` at column 1, found the end of the \
         expression\n  (state listen or dport = :80\n                              ^"
    );
    assert_eq!(
        error("state listen)"),
        "invalid filter: `)` without a matching `(`\n  state listen)\n              ^"
    );
    assert_eq!(
        error("sport = :80 and dest 10.0.0.1"),
        "invalid filter: unknown condition `dest`; expected a condition: state, from, sport, \
         dport, port, src, dst, pid, comm, family, netns, cgroup, cookie, `not`, `!` or `(`\n  \
         sport = :80 and dest 10.0.0.1\n                  ^^^^"
    );
    assert_eq!(
        error("dport = :htps"),
        "invalid filter: unknown port `:htps`: not a number (0-65535) nor a TCP service in \
         /etc/services\n  dport = :htps\n          ^^^^^"
    );
    assert_eq!(
        error("src 10.0.0.0/33"),
        "invalid filter: prefix length /33 is longer than the 32 bits of the address\n  \
         src 10.0.0.0/33\n      ^^^^^^^^^^^"
    );
    assert_eq!(
        error("src < 10.0.0.1"),
        "invalid filter: `<` cannot compare addresses; use `=` or `!=`\n  src < 10.0.0.1\n      ^"
    );
    assert_eq!(
        error("comm \"abc"),
        "invalid filter: unclosed quote: no closing \"\n  comm \"abc\n       ^"
    );
    assert_eq!(
        error("pid x"),
        "invalid filter: expected a process id after `pid`, found `x`\n  pid x\n      ^"
    );
    let e = error("state establisht");
    assert!(
        e.starts_with(
            "invalid filter: unknown state `establisht`; expected a state (established, syn-sent,"
        ),
        "{e}"
    );
    assert!(
        e.ends_with("\n  state establisht\n        ^^^^^^^^^^"),
        "{e}"
    );
    // Multi-byte characters and tabs do not shift the caret.
    assert_eq!(
        error("comm 'é'\tand = 1"),
        "invalid filter: expected a condition after `and`, found `=`\n  \
         comm 'é' and = 1\n               ^"
    );
    for bad in [
        "",
        "dport",
        "dport =",
        "dport = :99999",
        "src",
        "src 10.0.0.1:",
        "src 300.0.0.1",
        "src [::1",
        "state",
        "and state listen",
        "or",
        "()",
        "not",
        "family ipx",
        "comm",
        "cookie -1",
        "state listen = 3",
        "\"state\" listen",
    ] {
        if !bad.is_empty() {
            let e = error(bad);
            assert!(e.starts_with("invalid filter: "), "{bad}: {e}");
            assert_eq!(e.lines().count(), 3, "{bad}: {e}");
            assert!(
                e.lines().nth(2).unwrap().trim_start().starts_with('^'),
                "{e}"
            );
        }
    }
}

#[test]
fn kernel_part_takes_only_necessary_conditions() {
    let k = |text: &str| parse(text).kernel_part();
    let k1 = k("dport = :443 and state established and family ipv6");
    assert_eq!((k1.n_rports, k1.rports[0], k1.family), (1, 443, AF_INET6));
    let k2 = k("(sport = :80 or sport = :443) and not src 10.0.0.0/8");
    assert_eq!((k2.n_lports, &k2.lports[..2]), (2, &[80, 443][..]));
    let k3 = k("sport = :80 or dport = :8080");
    assert_eq!((k3.n_ports, &k3.ports[..2]), (2, &[80, 8080][..]));
    assert_eq!((k3.n_lports, k3.n_rports), (0, 0));
    let k4 = k("dst [::1]:5432");
    assert_eq!((k4.n_rports, k4.rports[0]), (1, 5432));
    assert_eq!(k("src 2001:db8::/32").family, AF_INET6);
    // IPv4 as shown includes v4-mapped AF_INET6 sockets: nothing to drop by family.
    assert_eq!(k("family ipv4 and src 10.0.0.1").family, 0);
    // Nothing necessary: everything stays.
    for text in [
        "dport = :443 or state listen",
        "not dport = :443",
        "dport != :443",
        "dport > 1024",
        "state established",
        "pid 5",
    ] {
        assert_eq!(k(text), KernelFilter::default(), "{text}");
    }
    // Longer lists than the kernel holds stay in userspace.
    let many: Vec<String> = (1..=9).map(|p| format!("dport = {p}")).collect();
    assert_eq!(k(&many.join(" or ")).n_rports, 0);
}

#[test]
fn flags_combine_with_the_expression() {
    let f = parse("state established")
        .and(Filter::family(Family::Ipv6))
        .and(Filter::ports(Side::Local, &[80, 443]))
        .and(Filter::ports(Side::Remote, &[]));
    assert_eq!(
        f.to_string(),
        "state established and family ipv6 and (sport = :80 or sport = :443)"
    );
    let k = f.kernel_part();
    assert_eq!((k.family, k.n_lports, k.n_rports), (AF_INET6, 2, 0));
    assert!(Filter::default().and(Filter::default()).is_all());
    let case = client();
    let only_443 = Filter::ports(Side::Remote, &[443]);
    assert!(only_443.matches(&Observed {
        transition: &case.t,
        owner: None
    }));
}

#[test]
fn cgroup_by_id_or_path() {
    let mut case = client();
    case.t.cgroup = 1234;
    check(
        &case,
        &[
            "cgroup 1234",
            "cgroup = 1234",
            "cgroup != 99",
            "not cgroup 99",
        ],
        &["cgroup 99", "cgroup != 1234"],
    );
    // An unknown cgroup (0) matches no id.
    case.t.cgroup = 0;
    check(&case, &["not cgroup 0"], &["cgroup 0"]);
    let f = parse("cgroup 1234 and state established");
    assert_eq!(parse(&f.to_string()), f);
    let err = error("cgroup /no/such/cgroup/anywhere");
    assert!(err.contains("a cgroup id or the path"), "{err}");
    let cgroups = |path: &str| (path == "/system.slice/x.service").then_some(1234);
    assert_eq!(
        Filter::parse_with_cgroups("cgroup /system.slice/x.service", &services, &cgroups).unwrap(),
        parse("cgroup 1234")
    );
}
