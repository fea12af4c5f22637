//! The filter expression as a tree, and its canonical text form.
//!
//! `Display` prints an expression in a form [`super::parser`] reads back to the same tree, so
//! a filter can be shown, logged and stored as text.

use std::{fmt, net::IpAddr};

use super::groups::StateSel;
use crate::event::Family;

/// A filter expression.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Expr {
    /// Matches everything: the empty expression.
    #[default]
    True,
    Term(Term),
    Not(Box<Expr>),
    /// All of these (at least two).
    And(Vec<Expr>),
    /// Any of these (at least two).
    Or(Vec<Expr>),
}

/// Which end of the connection a port or address condition looks at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// `sport`, `src`: this host's end.
    Local,
    /// `dport`, `dst`: the peer's end.
    Remote,
    /// `port`: either end.
    Either,
}

/// A comparison operator for ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Gt,
    Le,
    Ge,
}

impl CmpOp {
    pub const ALL: [CmpOp; 6] = [
        CmpOp::Eq,
        CmpOp::Ne,
        CmpOp::Lt,
        CmpOp::Gt,
        CmpOp::Le,
        CmpOp::Ge,
    ];

    pub fn symbol(self) -> &'static str {
        match self {
            CmpOp::Eq => "=",
            CmpOp::Ne => "!=",
            CmpOp::Lt => "<",
            CmpOp::Gt => ">",
            CmpOp::Le => "<=",
            CmpOp::Ge => ">=",
        }
    }

    pub fn holds(self, left: u16, right: u16) -> bool {
        match self {
            CmpOp::Eq => left == right,
            CmpOp::Ne => left != right,
            CmpOp::Lt => left < right,
            CmpOp::Gt => left > right,
            CmpOp::Le => left <= right,
            CmpOp::Ge => left >= right,
        }
    }
}

/// An address with a prefix length: `10.0.0.0/8`, `::1/128`. A plain address has the full
/// length.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Net {
    pub addr: IpAddr,
    pub prefix: u8,
}

impl Net {
    /// Whether `addr` is inside. An IPv4 network never holds an IPv6 address and the other
    /// way round; addresses are compared as shown (v4-mapped IPv6 as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(net), IpAddr::V4(a)) => prefix_eq(
                u128::from(net.to_bits()) << 96,
                u128::from(a.to_bits()) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(a)) => prefix_eq(net.to_bits(), a.to_bits(), self.prefix),
            _ => false,
        }
    }

    pub fn max_prefix(addr: IpAddr) -> u8 {
        match addr {
            IpAddr::V4(_) => 32,
            IpAddr::V6(_) => 128,
        }
    }

    pub fn family(&self) -> Family {
        match self.addr {
            IpAddr::V4(_) => Family::Ipv4,
            IpAddr::V6(_) => Family::Ipv6,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
    a & mask == b & mask
}

/// An address condition: `src 10.0.0.0/8`, `dst [::1]:443`, `src *:80`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AddrMatch {
    /// `None` for `*`: any address.
    pub net: Option<Net>,
    /// `None`: any port.
    pub port: Option<u16>,
}

/// A process-name pattern: exact unless it holds `*` (any run of characters) or `?` (any one
/// character). Compiled once, when parsed: matching allocates nothing, and a pattern that
/// needs more characters than a name has fails at once, so its cost per event is bounded by
/// the name's length (a `comm` is at most 15 bytes), not the pattern's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    /// The glob's characters with runs of `*` collapsed; `None` for an exact name.
    glob: Option<Box<[char]>>,
    /// Characters a name needs at least (every one but `*`).
    min_chars: usize,
}

impl Pattern {
    pub fn new(text: impl Into<String>) -> Self {
        let text = text.into();
        let glob = text.contains(['*', '?']).then(|| {
            let mut chars: Vec<char> = Vec::with_capacity(text.len());
            for c in text.chars() {
                if !(c == '*' && chars.last() == Some(&'*')) {
                    chars.push(c);
                }
            }
            chars.into_boxed_slice()
        });
        let min_chars = text.chars().filter(|c| *c != '*').count();
        Pattern {
            text,
            glob,
            min_chars,
        }
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn is_glob(&self) -> bool {
        self.glob.is_some()
    }

    pub fn matches(&self, name: &str) -> bool {
        let Some(pat) = &self.glob else {
            return self.text == name;
        };
        // A name is short: its characters go on the stack.
        let mut buf = ['\0'; 64];
        let mut n = 0;
        for c in name.chars() {
            if n == buf.len() {
                // Longer than any comm; rare enough to allocate.
                let text: Vec<char> = name.chars().collect();
                return text.len() >= self.min_chars && glob(pat, &text);
            }
            buf[n] = c;
            n += 1;
        }
        n >= self.min_chars && glob(pat, &buf[..n])
    }
}

/// Iterative wildcard matching with single-star backtracking: linear in practice, never
/// exponential.
fn glob(pat: &[char], text: &[char]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pat.len() && (pat[p] == '?' || (pat[p] != '*' && pat[p] == text[t])) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == '*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pat[p..].iter().all(|c| *c == '*')
}

/// One condition.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Term {
    /// `state NAME`: the state the socket is in (for a transition: the new state).
    State(StateSel),
    /// `from NAME`: the state a transition left. Never matches a socket-table entry.
    From(StateSel),
    /// `sport`/`dport`/`port OP PORT`. An unassigned port compares as 0, as in ss and the
    /// kernel.
    Port { side: Side, op: CmpOp, port: u16 },
    /// `src`/`dst ADDR[/LEN][:PORT]`.
    Addr { side: Side, addr: AddrMatch },
    /// `pid N`: some owner of the socket has this process id.
    Pid(u32),
    /// `comm NAME`: some owner of the socket has this process name (or matches this glob).
    Comm(Pattern),
    /// `family ipv4|ipv6`, as shown (v4-mapped IPv6 sockets are IPv4).
    Family(Family),
    /// `netns INODE`.
    Netns(u32),
    /// `cgroup ID` or `cgroup PATH` (the path is turned into its id when parsed).
    Cgroup(u64),
    /// `cookie N`: one socket.
    Cookie(u64),
}

impl fmt::Display for Term {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Term::State(s) => write!(f, "state {s}"),
            Term::From(s) => write!(f, "from {s}"),
            Term::Port { side, op, port } => {
                let key = match side {
                    Side::Local => "sport",
                    Side::Remote => "dport",
                    Side::Either => "port",
                };
                write!(f, "{key} {} :{port}", op.symbol())
            }
            Term::Addr { side, addr } => {
                let key = match side {
                    Side::Remote => "dst",
                    _ => "src",
                };
                write!(f, "{key} {addr}")
            }
            Term::Pid(p) => write!(f, "pid {p}"),
            Term::Comm(p) => write!(f, "comm {}", quote(p.as_str())),
            Term::Family(Family::Ipv4) => f.write_str("family ipv4"),
            Term::Family(Family::Ipv6) => f.write_str("family ipv6"),
            Term::Netns(n) => write!(f, "netns {n}"),
            Term::Cgroup(c) => write!(f, "cgroup {c}"),
            Term::Cookie(c) => write!(f, "cookie {c}"),
        }
    }
}

impl fmt::Display for AddrMatch {
    /// `10.0.0.0/8`, `10.0.0.1:80`, `[::1]/128:80`, `*:80`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.net {
            None => f.write_str("*")?,
            Some(net) => {
                let full = net.prefix == Net::max_prefix(net.addr);
                match net.addr {
                    IpAddr::V4(a) => write!(f, "{a}")?,
                    IpAddr::V6(a) => write!(f, "[{a}]")?,
                }
                if !full {
                    write!(f, "/{}", net.prefix)?;
                }
            }
        }
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

/// A double-quoted string with `"` and `\` escaped.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::True => Ok(()),
            Expr::Term(t) => write!(f, "{t}"),
            Expr::Not(inner) => match **inner {
                Expr::Term(_) | Expr::Not(_) => write!(f, "not {inner}"),
                _ => write!(f, "not ({inner})"),
            },
            Expr::And(items) => join(f, items, " and ", |e| {
                matches!(e, Expr::And(_) | Expr::Or(_))
            }),
            Expr::Or(items) => join(f, items, " or ", |e| matches!(e, Expr::Or(_))),
        }
    }
}

fn join(
    f: &mut fmt::Formatter<'_>,
    items: &[Expr],
    sep: &str,
    needs_parens: impl Fn(&Expr) -> bool,
) -> fmt::Result {
    for (i, e) in items.iter().enumerate() {
        if i > 0 {
            f.write_str(sep)?;
        }
        if needs_parens(e) {
            write!(f, "({e})")?;
        } else {
            write!(f, "{e}")?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str, prefix: u8) -> Net {
        Net {
            addr: s.parse().unwrap(),
            prefix,
        }
    }

    #[test]
    fn cidr_membership() {
        let ten = net("10.0.0.0", 8);
        assert!(ten.contains("10.255.1.2".parse().unwrap()));
        assert!(!ten.contains("11.0.0.1".parse().unwrap()));
        assert!(!ten.contains("::ffff:10.0.0.1".parse().unwrap()));
        assert!(net("0.0.0.0", 0).contains("1.2.3.4".parse().unwrap()));
        assert!(!net("0.0.0.0", 0).contains("::1".parse().unwrap()));
        assert!(net("fe80::", 10).contains("fe80::1".parse().unwrap()));
        assert!(net("fe80::", 10).contains("febf::1".parse().unwrap()));
        assert!(!net("fe80::", 10).contains("fec0::1".parse().unwrap()));
        assert!(net("::1", 128).contains("::1".parse().unwrap()));
        assert!(!net("::1", 128).contains("::2".parse().unwrap()));
    }

    #[test]
    fn globs() {
        let p = |s: &str| Pattern::new(s);
        assert!(p("nginx").matches("nginx"));
        assert!(!p("nginx").matches("nginx: worker"));
        assert!(p("nginx*").matches("nginx: worker"));
        assert!(p("*").matches(""));
        assert!(p("py?hon*").matches("python3"));
        assert!(!p("py?hon").matches("pyhon"));
        assert!(p("*a*b*c").matches("xxaxxbxxc"));
        assert!(!p("*a*b*c").matches("xxaxxcxxb"));
        assert!(p("a**b").matches("ab") && p("a**b").matches("axyb"));
        let long = format!("*{}", "a".repeat(60_000));
        assert!(
            !p(&long).matches("aaaa"),
            "more characters than the name has"
        );
        assert!(p(&"*".repeat(5000)).matches("nginx"));
        assert!(
            p("?*").matches(&"é".repeat(100)),
            "names longer than the stack buffer"
        );
    }

    #[test]
    fn addresses_print_in_the_form_the_parser_reads() {
        let a = |net: Option<Net>, port| AddrMatch { net, port }.to_string();
        assert_eq!(a(Some(net("10.0.0.0", 8)), None), "10.0.0.0/8");
        assert_eq!(a(Some(net("10.0.0.1", 32)), Some(80)), "10.0.0.1:80");
        assert_eq!(a(Some(net("::1", 128)), Some(80)), "[::1]:80");
        assert_eq!(a(Some(net("fe80::", 10)), None), "[fe80::]/10");
        assert_eq!(a(None, Some(80)), "*:80");
        assert_eq!(quote("a\"b\\c"), r#""a\"b\\c""#);
    }
}
