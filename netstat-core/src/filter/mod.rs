//! Which sockets and transitions the user asked for: one filter language for the event log,
//! the socket table and whatever comes next, in the spirit of ss's.
//!
//! ```text
//! enetstat watch 'dport = :443 and (state syn-sent or state established) and not src 10.0.0.0/8'
//! ```
//!
//! The grammar is in [`parser`]; the state groups in [`groups`]. For a transition, `state X`
//! tests the state the socket entered (the new state), so `state established` shows the moment
//! a connection is established and `state close` the moment it ends; `from X` tests the state
//! it left. Port conditions compare an unassigned port as 0, as ss and the kernel do.
//!
//! The whole expression runs in userspace on every decoded transition (or table entry, through
//! [`Subject`]). Its cheap necessary part also runs in the kernel to save ring-buffer traffic;
//! see [`Filter::kernel_part`]. The kernel part may keep more than asked, never less.

mod ast;
mod error;
mod eval;
pub mod groups;
mod kernel;
mod lexer;
pub mod parser;
pub mod services;

use std::fmt;

use netstat_common::KernelFilter;

pub use self::{
    ast::{AddrMatch, CmpOp, Expr, Net, Pattern, Side, Term},
    error::{ParseError, Problem},
    eval::{Observed, Subject},
    groups::{Group, StateSel},
    parser::{MAX_DEPTH, MAX_LEN},
};
use crate::event::Family;

/// The user's filter: an expression over sockets.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    expr: Expr,
}

impl Filter {
    /// Parses a filter expression with a given service lookup; the empty string matches
    /// everything. Cgroups are taken by id only: a path needs the cgroup tree
    /// ([`Filter::parse_with_cgroups`]). For tests and the fuzz target; enetstat itself parses
    /// with netstat-user's `filter::parse`, which looks both up on the system.
    pub fn parse_with(
        text: &str,
        services: &dyn Fn(&str) -> Option<u16>,
    ) -> Result<Self, ParseError> {
        Self::parse_with_cgroups(text, services, &|_| None)
    }

    /// Parses a filter expression, looking service names (`:https`) up with `services` and
    /// cgroup paths (`cgroup /system.slice/x.service`) with `cgroups`.
    pub fn parse_with_cgroups(
        text: &str,
        services: &dyn Fn(&str) -> Option<u16>,
        cgroups: &dyn Fn(&str) -> Option<u64>,
    ) -> Result<Self, ParseError> {
        parser::parse(text, services, cgroups).map(Self::from)
    }

    /// Both filters.
    pub fn and(self, other: Filter) -> Filter {
        let mut items = Vec::new();
        for e in [self.expr, other.expr] {
            match e {
                Expr::True => {}
                Expr::And(more) => items.extend(more),
                e => items.push(e),
            }
        }
        match items.len() {
            0 => Filter::default(),
            1 => Filter::from(items.remove(0)),
            _ => Filter::from(Expr::And(items)),
        }
    }

    /// Sockets of this family (as shown).
    pub fn family(family: Family) -> Filter {
        Filter::from(Expr::Term(Term::Family(family)))
    }

    /// Sockets with a port on `side` equal to one of `ports`; everything when `ports` is
    /// empty. This is what `--lport`, `--rport` and `--port` mean.
    pub fn ports(side: Side, ports: &[u16]) -> Filter {
        let mut items: Vec<Expr> = ports
            .iter()
            .map(|&port| {
                Expr::Term(Term::Port {
                    side,
                    op: CmpOp::Eq,
                    port,
                })
            })
            .collect();
        match items.len() {
            0 => Filter::default(),
            1 => Filter::from(items.remove(0)),
            _ => Filter::from(Expr::Or(items)),
        }
    }

    /// Whether the filter matches everything.
    pub fn is_all(&self) -> bool {
        self.expr == Expr::True
    }

    pub fn expr(&self) -> &Expr {
        &self.expr
    }

    /// Whether `subject` passes.
    pub fn matches<S: Subject + ?Sized>(&self, subject: &S) -> bool {
        eval::eval(&self.expr, subject)
    }

    /// The most work one evaluation can take, in units of one condition tested (a glob a
    /// unit more per four of its characters): what the daemon charges a subscriber per event.
    pub fn cost(&self) -> u64 {
        fn cost(e: &Expr) -> u64 {
            match e {
                Expr::True => 1,
                Expr::Term(Term::Comm(p)) if p.is_glob() => 1 + p.as_str().len() as u64 / 4,
                Expr::Term(_) => 1,
                Expr::Not(inner) => 1 + cost(inner),
                Expr::And(items) | Expr::Or(items) => 1 + items.iter().map(cost).sum::<u64>(),
            }
        }
        cost(&self.expr)
    }

    /// The part of the filter the kernel applies.
    pub fn kernel_part(&self) -> KernelFilter {
        kernel::kernel_part(&self.expr)
    }
}

impl From<Expr> for Filter {
    fn from(expr: Expr) -> Self {
        Self { expr }
    }
}

impl fmt::Display for Filter {
    /// The canonical text of the expression, which parses back to the same filter.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.expr)
    }
}

#[cfg(test)]
mod tests;
