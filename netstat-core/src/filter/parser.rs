//! Reads a filter expression into an [`Expr`].
//!
//! ```text
//! expr    := and (("or" | "||" | "|") and)*
//! and     := unary (("and" | "&&" | "&")? unary)*      adjacent conditions are AND-ed, as in ss
//! unary   := ("not" | "!") unary | "(" expr ")" | condition
//! condition :=
//!     "state" STATE | "from" STATE                     STATE: a state or a group (see groups)
//!   | ("sport" | "lport" | "dport" | "rport" | "port") [CMP] PORT
//!   | ("src" | "dst") [EQ] ADDR
//!   | "pid" [EQ] N | "comm" [EQ] NAME | "family" [EQ] (ipv4 | ipv6)
//!   | "netns" [EQ] N | "cookie" [EQ] N | "cgroup" [EQ] (ID | PATH)
//! CMP  := "=" | "==" | "!=" | "<" | ">" | "<=" | ">=" | eq | neq | ne | lt | gt | le | ge
//! EQ   := "=" | "==" | "!=" | eq | neq | ne
//! PORT := 443 | :443 | :https                           a name is looked up in /etc/services
//! ADDR := 10.0.0.1 | 10.0.0.0/8 | 10.0.0.1:80 | ::1 | ::1/128 | [::1] | [::1]:80
//!       | [fe80::]/10:80 | * | *:80
//! NAME := a word or a "quoted string"; `*` and `?` are wildcards
//! ```
//!
//! Keywords are case-insensitive. A quoted string is never a keyword, so `comm "and"` names a
//! process called `and`.

use std::{
    net::{IpAddr, Ipv4Addr},
    ops::Range,
};

use super::{
    ast::{AddrMatch, CmpOp, Expr, Net, Pattern, Side, Term},
    error::{ParseError, Problem},
    groups::{StateSel, accepted_names},
    lexer::{Tok, Token, lex},
};
use crate::event::Family;

type Result<T> = std::result::Result<T, (Problem, Range<usize>)>;

/// Parses `text`, looking service names up with `services` and cgroup paths with `cgroups`.
/// The empty expression matches everything.
pub fn parse(
    text: &str,
    services: &dyn Fn(&str) -> Option<u16>,
    cgroups: &dyn Fn(&str) -> Option<u64>,
) -> std::result::Result<Expr, ParseError> {
    let run = || -> Result<Expr> {
        if text.len() > MAX_LEN {
            return Err((
                Problem::TooLong {
                    len: text.len(),
                    max: MAX_LEN,
                },
                MAX_LEN..text.len(),
            ));
        }
        let toks = lex(text)?;
        let mut p = Parser {
            text,
            toks,
            pos: 0,
            depth: 0,
            services,
            cgroups,
        };
        if p.toks.is_empty() {
            return Ok(Expr::True);
        }
        let expr = p.or()?;
        match p.peek() {
            None => Ok(expr),
            Some(t) if t.tok == Tok::RParen => Err((Problem::UnmatchedClose, t.span.clone())),
            Some(t) => Err((
                Problem::Expected {
                    what: "`and`, `or` or the end of the expression".into(),
                    found: p.describe(Some(t)),
                },
                t.span.clone(),
            )),
        }
    };
    run().map_err(|(problem, span)| ParseError::new(problem, text, span))
}

/// Longest filter expression accepted, in bytes. Far above any filter a person writes, and
/// it bounds what one filter can cost per event.
pub const MAX_LEN: usize = 4096;

/// Deepest nesting of `(`, `not` and `!` accepted. The parser, the evaluator and the printer
/// recurse once per level, so this bounds their stack: 2,500 `(` used to overflow it.
pub const MAX_DEPTH: usize = 64;

struct Parser<'a> {
    text: &'a str,
    toks: Vec<Token>,
    pos: usize,
    /// How deep in `(`, `not` and `!` the parser is.
    depth: usize,
    services: &'a dyn Fn(&str) -> Option<u16>,
    cgroups: &'a dyn Fn(&str) -> Option<u64>,
}

fn is_word(t: &Token, w: &str) -> bool {
    matches!(&t.tok, Tok::Word(s) if s.eq_ignore_ascii_case(w))
}

fn is_connective(t: &Token) -> bool {
    ["and", "or", "not"].iter().any(|w| is_word(t, w))
}

impl Parser<'_> {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += usize::from(t.is_some());
        t
    }

    /// Span of the end of the expression, for problems found there.
    fn end(&self) -> Range<usize> {
        self.text.len()..self.text.len()
    }

    fn span_of(&self, t: Option<&Token>) -> Range<usize> {
        t.map_or_else(|| self.end(), |t| t.span.clone())
    }

    fn describe(&self, t: Option<&Token>) -> String {
        match t {
            None => "the end of the expression".into(),
            Some(t) => format!("`{}`", &self.text[t.span.clone()]),
        }
    }

    /// The text from byte `start` to the end of the last token read.
    fn since(&self, start: usize) -> String {
        let end = self.toks[..self.pos].last().map_or(start, |t| t.span.end);
        self.text[start..end].to_owned()
    }

    fn expected_after(&self, what: impl Into<String>, start: usize) -> (Problem, Range<usize>) {
        let found = self.peek();
        (
            Problem::ExpectedAfter {
                what: what.into(),
                after: self.since(start),
                found: self.describe(found),
            },
            self.span_of(found),
        )
    }

    fn or(&mut self) -> Result<Expr> {
        let mut items = vec![self.and()?];
        while let Some(t) = self.peek() {
            if t.tok == Tok::OrOr || is_word(t, "or") {
                self.next();
                items.push(self.and()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr> {
        let mut items = vec![self.unary()?];
        while let Some(t) = self.peek() {
            if t.tok == Tok::AndAnd || is_word(t, "and") {
                self.next();
                items.push(self.unary()?);
            } else if matches!(t.tok, Tok::LParen | Tok::Bang)
                || (matches!(t.tok, Tok::Word(_)) && !is_word(t, "or"))
            {
                items.push(self.unary()?);
            } else {
                break;
            }
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn unary(&mut self) -> Result<Expr> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.missing_condition());
        };
        let nests = matches!(t.tok, Tok::Bang | Tok::LParen) || is_word(&t, "not");
        if !nests {
            return self.unary_at(t);
        }
        if self.depth >= MAX_DEPTH {
            return Err((Problem::TooDeep { max: MAX_DEPTH }, t.span.clone()));
        }
        self.depth += 1;
        let e = self.unary_at(t);
        self.depth -= 1;
        e
    }

    /// A unary expression starting with `t` (the next token, not yet consumed).
    fn unary_at(&mut self, t: Token) -> Result<Expr> {
        match &t.tok {
            Tok::Bang => {
                self.next();
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("not") => {
                self.next();
                Ok(Expr::Not(Box::new(self.unary()?)))
            }
            Tok::LParen => {
                self.next();
                let inner = self.or()?;
                match self.peek() {
                    Some(c) if c.tok == Tok::RParen => {
                        self.next();
                        Ok(inner)
                    }
                    found => Err((
                        Problem::UnclosedParen {
                            column: self.text[..t.span.start].chars().count() + 1,
                            found: self.describe(found),
                        },
                        self.span_of(found),
                    )),
                }
            }
            Tok::Word(w) if !is_word(&t, "and") && !is_word(&t, "or") => {
                let key = w.to_ascii_lowercase();
                self.next();
                self.condition(&key, t.span.start)
            }
            _ => Err(self.missing_condition()),
        }
    }

    /// The error for a place where a condition should start but does not.
    fn missing_condition(&self) -> (Problem, Range<usize>) {
        let found = self.peek();
        let prev = self.pos.checked_sub(1).map(|i| &self.toks[i]);
        match prev {
            Some(p) => (
                Problem::ExpectedAfter {
                    what: "a condition".into(),
                    after: self.text[p.span.clone()].to_owned(),
                    found: self.describe(found),
                },
                self.span_of(found),
            ),
            None => (
                Problem::Expected {
                    what: super::error::CONDITIONS.into(),
                    found: self.describe(found),
                },
                self.span_of(found),
            ),
        }
    }

    fn condition(&mut self, key: &str, start: usize) -> Result<Expr> {
        let port_side = match key {
            "sport" | "lport" => Some(Side::Local),
            "dport" | "rport" => Some(Side::Remote),
            "port" => Some(Side::Either),
            _ => None,
        };
        if let Some(side) = port_side {
            let op = self.cmp_op().unwrap_or(CmpOp::Eq);
            let port_start = self.span_of(self.peek()).start;
            let port = self.port_value(start)?;
            if matches!((op, port), (CmpOp::Gt, u16::MAX) | (CmpOp::Lt, 0)) {
                return Err((
                    Problem::NeverMatches {
                        what: self.since(start),
                    },
                    port_start..self.span_of(self.toks.get(self.pos - 1)).end,
                ));
            }
            return Ok(Expr::Term(Term::Port { side, op, port }));
        }
        let (term, negated) = match key {
            "state" => (Term::State(self.state(start)?), false),
            "from" => (Term::From(self.state(start)?), false),
            "src" | "dst" => {
                let negated = self.eq_op("addresses")?;
                let side = if key == "src" {
                    Side::Local
                } else {
                    Side::Remote
                };
                let addr = self.address(start)?;
                (Term::Addr { side, addr }, negated)
            }
            "pid" => {
                let negated = self.eq_op("process ids")?;
                (Term::Pid(self.number(start, "a process id")?), negated)
            }
            "netns" => {
                let negated = self.eq_op("network namespaces")?;
                let n = self.number(start, "a network namespace inode")?;
                (Term::Netns(n), negated)
            }
            "cgroup" => {
                let negated = self.eq_op("cgroups")?;
                let id = match self.peek() {
                    Some(t) if is_connective(t) => None,
                    Some(Token {
                        tok: Tok::Word(s) | Tok::Quoted(s),
                        ..
                    }) => s.parse::<u64>().ok().or_else(|| (self.cgroups)(s)),
                    _ => None,
                };
                let Some(id) = id else {
                    return Err(self.expected_after(
                        "a cgroup id or the path of an existing cgroup (e.g. \
                         /system.slice/nginx.service)",
                        start,
                    ));
                };
                self.next();
                (Term::Cgroup(id), negated)
            }
            "cookie" => {
                let negated = self.eq_op("socket cookies")?;
                (
                    Term::Cookie(self.number(start, "a socket cookie")?),
                    negated,
                )
            }
            "comm" => {
                let negated = self.eq_op("process names")?;
                let name = match self.peek() {
                    Some(t) if is_connective(t) => None,
                    Some(Token {
                        tok: Tok::Word(s) | Tok::Quoted(s),
                        ..
                    }) => Some(s.clone()),
                    _ => None,
                };
                let Some(name) = name else {
                    return Err(self.expected_after("a process name", start));
                };
                self.next();
                (Term::Comm(Pattern::new(name)), negated)
            }
            "family" => {
                let negated = self.eq_op("families")?;
                let family = match self.peek().map(|t| &t.tok) {
                    Some(Tok::Word(s)) => match s.to_ascii_lowercase().as_str() {
                        "ipv4" | "inet" | "4" => Some(Family::Ipv4),
                        "ipv6" | "inet6" | "6" => Some(Family::Ipv6),
                        _ => None,
                    },
                    _ => None,
                };
                let Some(family) = family else {
                    return Err(self.expected_after("`ipv4` or `ipv6`", start));
                };
                self.next();
                (Term::Family(family), negated)
            }
            _ => {
                self.pos -= 1;
                let found = self.describe(self.peek());
                return Err((
                    Problem::UnknownCondition { found },
                    self.span_of(self.peek()),
                ));
            }
        };
        let expr = Expr::Term(term);
        Ok(if negated {
            Expr::Not(Box::new(expr))
        } else {
            expr
        })
    }

    /// An optional comparison operator (symbol or word).
    fn cmp_op(&mut self) -> Option<CmpOp> {
        let t = self.peek()?;
        let op = match &t.tok {
            Tok::Op(s) => *s,
            Tok::Word(w) => match w.to_ascii_lowercase().as_str() {
                "eq" => "=",
                "neq" | "ne" => "!=",
                "lt" => "<",
                "gt" => ">",
                "le" => "<=",
                "ge" => ">=",
                _ => return None,
            },
            _ => return None,
        };
        let op = CmpOp::ALL.into_iter().find(|o| o.symbol() == op)?;
        self.next();
        Some(op)
    }

    /// An optional `=` or `!=`; true for `!=`. Ordering operators are an error.
    fn eq_op(&mut self, what: &'static str) -> Result<bool> {
        let span = self.span_of(self.peek());
        match self.cmp_op() {
            None | Some(CmpOp::Eq) => Ok(false),
            Some(CmpOp::Ne) => Ok(true),
            Some(op) => Err((
                Problem::BadOperator {
                    op: op.symbol().into(),
                    what,
                },
                span,
            )),
        }
    }

    /// The next token if it is a bare word other than `and`, `or`, `not`: a value.
    fn word(&self) -> Option<(String, Range<usize>)> {
        match self.peek() {
            Some(
                t @ Token {
                    tok: Tok::Word(w),
                    span,
                },
            ) if !is_connective(t) => Some((w.clone(), span.clone())),
            _ => None,
        }
    }

    fn state(&mut self, start: usize) -> Result<StateSel> {
        let (name, span) = match self.peek() {
            Some(
                t @ Token {
                    tok: Tok::Word(w) | Tok::Quoted(w),
                    span,
                },
            ) if !is_connective(t) => (w.clone(), span.clone()),
            _ => return Err(self.expected_after(accepted_names(), start)),
        };
        let sel = name.parse::<StateSel>().map_err(|_| {
            (
                Problem::UnknownState {
                    name,
                    accepted: accepted_names(),
                },
                span,
            )
        })?;
        self.next();
        Ok(sel)
    }

    fn port_value(&mut self, start: usize) -> Result<u16> {
        let Some((word, span)) = self.word() else {
            return Err(self.expected_after("a port (:443, 443 or :https)", start));
        };
        let port = self
            .port_text(&word)
            .ok_or((Problem::UnknownPort(word), span))?;
        self.next();
        Ok(port)
    }

    /// `443`, `:443`, `https`, `:https`.
    fn port_text(&self, text: &str) -> Option<u16> {
        let t = text.strip_prefix(':').unwrap_or(text);
        if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
            return t.parse().ok();
        }
        (self.services)(t)
    }

    fn number<T: std::str::FromStr>(&mut self, start: usize, what: &str) -> Result<T> {
        match self.word().and_then(|(w, _)| w.parse().ok()) {
            Some(n) => {
                self.next();
                Ok(n)
            }
            None => Err(self.expected_after(what, start)),
        }
    }

    fn address(&mut self, start: usize) -> Result<AddrMatch> {
        let Some((word, span)) = self.word() else {
            return Err(self.expected_after(
                "an address (10.0.0.1, 10.0.0.0/8, 10.0.0.1:80, ::1, [::1]:80, *:80)",
                start,
            ));
        };
        let addr = self.address_text(&word).map_err(|p| (p, span))?;
        self.next();
        Ok(addr)
    }

    fn address_text(&self, word: &str) -> std::result::Result<AddrMatch, Problem> {
        let bad = || Problem::BadAddress(word.to_owned());
        // The address, then a tail of "", "/LEN", ":PORT" or "/LEN:PORT".
        let (addr, tail) = if let Some(inner) = word.strip_prefix('[') {
            inner.split_once(']').ok_or_else(bad)?
        } else if let Some(tail) = word.strip_prefix('*') {
            ("*", tail)
        } else if word.parse::<IpAddr>().is_ok() {
            (word, "")
        } else if let Some(i) = word.find('/') {
            word.split_at(i)
        } else if let Some((addr, _)) = word.rsplit_once(':')
            && addr.parse::<Ipv4Addr>().is_ok()
        {
            // `10.0.0.1:80`; a bare IPv6 address takes no port: write `[::1]:80`.
            word.split_at(addr.len())
        } else {
            return Err(bad());
        };
        let (prefix, port) = match tail.strip_prefix('/') {
            Some(rest) => match rest.split_once(':') {
                Some((prefix, port)) => (Some(prefix), Some(port)),
                None => (Some(rest), None),
            },
            None if tail.is_empty() => (None, None),
            None => (None, Some(tail.strip_prefix(':').ok_or_else(bad)?)),
        };
        let port = match port {
            None => None,
            Some(p) => Some(
                self.port_text(p)
                    .ok_or_else(|| Problem::UnknownPort(p.to_owned()))?,
            ),
        };
        if addr == "*" {
            if prefix.is_some() {
                return Err(bad());
            }
            return Ok(AddrMatch { net: None, port });
        }
        let mut ip: IpAddr = addr.parse().map_err(|_| bad())?;
        let max = Net::max_prefix(ip);
        let mut prefix = match prefix {
            None => max,
            Some(p) => {
                let n: u16 = p.parse().map_err(|_| bad())?;
                if n > u16::from(max) {
                    return Err(Problem::PrefixTooLong {
                        prefix: p.to_owned(),
                        max,
                    });
                }
                n as u8
            }
        };
        // Addresses are shown, and so compared, with v4-mapped IPv6 as IPv4.
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = v6.to_ipv4_mapped()
            && prefix >= 96
        {
            ip = IpAddr::V4(v4);
            prefix -= 96;
        }
        Ok(AddrMatch {
            net: Some(Net { addr: ip, prefix }),
            port,
        })
    }
}

#[cfg(test)]
mod limits {
    use super::*;
    use crate::filter::Filter;

    fn problem(text: &str) -> Problem {
        Filter::parse_with(text, &|_| None)
            .expect_err(text)
            .problem()
            .clone()
    }

    #[test]
    fn nesting_is_refused_past_the_limit_not_by_the_stack() {
        let ok = format!(
            "{}state close{}",
            "(".repeat(MAX_DEPTH),
            ")".repeat(MAX_DEPTH)
        );
        assert!(Filter::parse_with(&ok, &|_| None).is_ok());
        let max = MAX_DEPTH;
        for deep in [
            format!("{}state close{}", "(".repeat(max + 1), ")".repeat(max + 1)),
            format!("{}state close", "!".repeat(max + 1)),
            format!("{}state close", "not ".repeat(max + 1)),
            format!("{}state close", "!(".repeat(max)),
        ] {
            assert_eq!(problem(&deep), Problem::TooDeep { max }, "{deep}");
        }
        // What crashed the daemon (2,500 `(`) and the CLI (10,000 `(`, 50,000 `!`).
        assert_eq!(
            problem(&format!("{}x{}", "(".repeat(2_500), ")".repeat(2_500))),
            Problem::TooLong {
                len: 5_001,
                max: MAX_LEN
            }
        );
        assert!(problem(&"!".repeat(50_000)).is_limit());
    }

    #[test]
    fn length_is_refused_past_the_limit_with_a_short_error() {
        let long = format!("comm \"{}\"", "é".repeat(3_000));
        let e = Filter::parse_with(&long, &|_| None).unwrap_err();
        assert!(matches!(e.problem(), Problem::TooLong { len: 6_007, .. }));
        assert!(e.to_string().len() < 600, "{e}");
        let fits = format!("comm \"{}\"", "a".repeat(MAX_LEN - 7));
        assert!(Filter::parse_with(&fits, &|_| None).is_ok());
    }

    #[test]
    fn errors_show_no_control_or_bidi_characters() {
        for text in ["comm \u{202e}x\u{1b} banana", "state syn-sen\u{7}\u{1}te"] {
            let e = Filter::parse_with(text, &|_| None).unwrap_err();
            let shown = e.to_string();
            assert!(
                !shown
                    .chars()
                    .any(|c| c != '\n' && crate::render::escape::needs_escape(c)),
                "{shown:?}"
            );
        }
    }

    #[test]
    fn comparisons_that_can_never_hold_are_refused() {
        for text in ["dport > 65535", "sport lt 0", "port < :0"] {
            assert!(
                matches!(problem(text), Problem::NeverMatches { .. }),
                "{text}"
            );
        }
        assert!(Filter::parse_with("dport >= 65535", &|_| None).is_ok());
        assert!(Filter::parse_with("dport > 65534", &|_| None).is_ok());
    }
}
