//! Evaluates an expression against anything that looks like a socket: a transition from the
//! event log, or (through the same trait) an entry of a socket table.

use super::ast::{Expr, Side, Term};
use crate::{
    event::{Cookie, Endpoint, Family, Owner, Transition},
    state::TcpState,
};

/// What a filter can ask about a socket.
pub trait Subject {
    /// Family as shown (v4-mapped IPv6 counts as IPv4).
    fn family(&self) -> Family;
    fn local(&self) -> Endpoint;
    fn remote(&self) -> Endpoint;
    /// The state `state` conditions test: a transition's new state, a table entry's state.
    fn state(&self) -> TcpState;
    /// The state `from` conditions test: the state a transition left. `None` (the default)
    /// for subjects without one, such as table entries; `from` never matches them.
    fn old_state(&self) -> Option<TcpState> {
        None
    }
    /// The processes owning the socket (empty when unknown); `pid` and `comm` match if any
    /// owner does.
    fn owners(&self) -> &[Owner];
    /// Network namespace inode, when known.
    fn netns(&self) -> Option<u32>;
    fn cookie(&self) -> Option<Cookie>;
    /// cgroup v2 id, when known (`None` by default, and for id 0).
    fn cgroup(&self) -> Option<u64> {
        None
    }
}

/// A transition together with the owner the tracker attributed to it.
#[derive(Clone, Copy, Debug)]
pub struct Observed<'a> {
    pub transition: &'a Transition,
    pub owner: Option<&'a Owner>,
}

impl Subject for Observed<'_> {
    fn family(&self) -> Family {
        self.transition.family
    }

    fn local(&self) -> Endpoint {
        self.transition.local
    }

    fn remote(&self) -> Endpoint {
        self.transition.remote
    }

    fn state(&self) -> TcpState {
        self.transition.new
    }

    fn old_state(&self) -> Option<TcpState> {
        Some(self.transition.old)
    }

    fn owners(&self) -> &[Owner] {
        self.owner.map_or(&[], std::slice::from_ref)
    }

    fn netns(&self) -> Option<u32> {
        Some(self.transition.netns)
    }

    fn cookie(&self) -> Option<Cookie> {
        Some(self.transition.cookie)
    }

    fn cgroup(&self) -> Option<u64> {
        Some(self.transition.cgroup).filter(|c| *c != 0)
    }
}

/// Whether `s` satisfies `e`.
pub fn eval<S: Subject + ?Sized>(e: &Expr, s: &S) -> bool {
    match e {
        Expr::True => true,
        Expr::Term(t) => term(t, s),
        Expr::Not(inner) => !eval(inner, s),
        Expr::And(items) => items.iter().all(|i| eval(i, s)),
        Expr::Or(items) => items.iter().any(|i| eval(i, s)),
    }
}

/// The endpoints a port or address condition looks at.
fn ends<S: Subject + ?Sized>(side: Side, s: &S) -> impl Iterator<Item = Endpoint> {
    let pair = match side {
        Side::Local => [Some(s.local()), None],
        Side::Remote => [Some(s.remote()), None],
        Side::Either => [Some(s.local()), Some(s.remote())],
    };
    pair.into_iter().flatten()
}

fn term<S: Subject + ?Sized>(t: &Term, s: &S) -> bool {
    match t {
        Term::State(sel) => sel.contains(s.state()),
        Term::From(sel) => s.old_state().is_some_and(|old| sel.contains(old)),
        Term::Port { side, op, port } => {
            // An unassigned port is 0 here, as in the kernel and in ss.
            ends(*side, s).any(|e| op.holds(e.port.unwrap_or(0), *port))
        }
        Term::Addr { side, addr } => ends(*side, s).any(|e| {
            addr.net.is_none_or(|n| n.contains(e.addr))
                && addr.port.is_none_or(|p| e.port.unwrap_or(0) == p)
        }),
        Term::Pid(pid) => s.owners().iter().any(|o| o.pid == *pid),
        Term::Comm(p) => s.owners().iter().any(|o| p.matches(&o.comm)),
        Term::Family(f) => s.family() == *f,
        Term::Netns(n) => s.netns() == Some(*n),
        Term::Cgroup(c) => s.cgroup() == Some(*c),
        Term::Cookie(c) => s.cookie() == Some(Cookie(*c)),
    }
}
