//! The part of a filter the kernel applies before an event reaches the ring buffer.
//!
//! The kernel can drop by family (IPv6 only) and by port lists. It may keep more than the
//! expression asks for, never less, so only necessary conditions are taken: the top-level
//! AND-ed conditions. Each of those that is a port equality, an OR of port equalities, a family,
//! or an address that fixes the family or a port, narrows the kernel filter; everything else is
//! left to userspace, which evaluates the whole expression anyway.

use std::net::IpAddr;

use netstat_common::{AF_INET6, KernelFilter, MAX_FILTER_PORTS};

use super::ast::{CmpOp, Expr, Side, Term};
use crate::event::Family;

/// A condition the kernel can check: the socket shows as IPv6, or a port on `side` is in a set.
enum Need {
    Ipv6,
    Ports(Side, Vec<u16>),
}

/// What a conjunct implies that the kernel can check, if anything.
fn need(e: &Expr) -> Option<Need> {
    match e {
        Expr::Term(t) => need_term(t),
        // `sport = :80 or sport = :443` needs lport in {80, 443}; `sport = :80 or dport = :80`
        // needs either port in {80}.
        Expr::Or(items) => {
            let mut side = None;
            let mut ports = Vec::new();
            for item in items {
                let Some(Need::Ports(s, p)) = need(item) else {
                    return None;
                };
                side = Some(match side {
                    None => s,
                    Some(prev) if prev == s => s,
                    Some(_) => Side::Either,
                });
                ports.extend(p);
            }
            ports.sort_unstable();
            ports.dedup();
            Some(Need::Ports(side?, ports))
        }
        _ => None,
    }
}

fn need_term(t: &Term) -> Option<Need> {
    match t {
        Term::Family(Family::Ipv6) => Some(Need::Ipv6),
        Term::Port {
            side,
            op: CmpOp::Eq,
            port,
        } => Some(Need::Ports(*side, vec![*port])),
        Term::Addr { side, addr } => match (addr.net, addr.port) {
            (_, Some(port)) => Some(Need::Ports(*side, vec![port])),
            // A non-mapped IPv6 address only ever shows on an AF_INET6 socket.
            (Some(net), None) if matches!(net.addr, IpAddr::V6(_)) => Some(Need::Ipv6),
            _ => None,
        },
        _ => None,
    }
}

/// The top-level AND-ed conditions of `e`.
fn conjuncts(e: &Expr, out: &mut Vec<Expr>) {
    match e {
        Expr::And(items) => items.iter().for_each(|i| conjuncts(i, out)),
        Expr::True => {}
        other => out.push(other.clone()),
    }
}

/// The kernel half of `e`.
pub fn kernel_part(e: &Expr) -> KernelFilter {
    let mut k = KernelFilter::default();
    let mut items = Vec::new();
    conjuncts(e, &mut items);
    for item in &items {
        match need(item) {
            Some(Need::Ipv6) => k.family = AF_INET6,
            Some(Need::Ports(side, ports)) => {
                let (slot, n) = match side {
                    Side::Local => (&mut k.lports, &mut k.n_lports),
                    Side::Remote => (&mut k.rports, &mut k.n_rports),
                    Side::Either => (&mut k.ports, &mut k.n_ports),
                };
                // Any one necessary list is enough; the first that fits wins.
                if *n == 0 && !ports.is_empty() && ports.len() <= MAX_FILTER_PORTS {
                    slot[..ports.len()].copy_from_slice(&ports);
                    *n = ports.len() as u16;
                }
            }
            None => {}
        }
    }
    k
}
