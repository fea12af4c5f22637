//! Which transitions the user asked for.
//!
//! The whole filter runs here, in userspace, on every decoded transition. Its cheap part
//! (family, port lists that fit) also runs in the kernel to save ring-buffer traffic; see
//! [`Filter::kernel_part`]. The kernel part may keep more than asked, never less.

use netstat_common::{AF_INET6, KernelFilter, MAX_FILTER_PORTS};

use crate::event::{Family, Transition};

/// The user's filter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this family (as shown: v4-mapped IPv6 counts as IPv4).
    pub family: Option<Family>,
    /// Local port is one of these (empty: any).
    pub lports: Vec<u16>,
    /// Remote port is one of these (empty: any).
    pub rports: Vec<u16>,
    /// Either port is one of these (empty: any).
    pub ports: Vec<u16>,
}

fn any_of(set: &[u16], port: Option<u16>) -> bool {
    set.is_empty() || port.is_some_and(|p| set.contains(&p))
}

impl Filter {
    pub fn matches(&self, t: &Transition) -> bool {
        self.family.is_none_or(|f| f == t.family)
            && any_of(&self.lports, t.local.port)
            && any_of(&self.rports, t.remote.port)
            && (self.ports.is_empty()
                || any_of(&self.ports, t.local.port)
                || any_of(&self.ports, t.remote.port))
    }

    /// The part of the filter the kernel applies. Port lists longer than the kernel holds are
    /// left to userspace.
    pub fn kernel_part(&self) -> KernelFilter {
        let mut k = KernelFilter {
            family: match self.family {
                Some(Family::Ipv6) => AF_INET6,
                // IPv4 as shown includes v4-mapped AF_INET6 sockets; only userspace can tell.
                _ => 0,
            },
            ..KernelFilter::default()
        };
        let fill = |src: &[u16], dst: &mut [u16; MAX_FILTER_PORTS], n: &mut u16| {
            if !src.is_empty() && src.len() <= MAX_FILTER_PORTS {
                dst[..src.len()].copy_from_slice(src);
                *n = src.len() as u16;
            }
        };
        fill(&self.lports, &mut k.lports, &mut k.n_lports);
        fill(&self.rports, &mut k.rports, &mut k.n_rports);
        fill(&self.ports, &mut k.ports, &mut k.n_ports);
        k
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::{
        event::{Cookie, Endpoint, Task},
        state::TcpState,
    };

    fn t(family: Family, lport: u16, rport: u16) -> Transition {
        let addr = match family {
            Family::Ipv4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
            Family::Ipv6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
        };
        Transition {
            ts_ns: 0,
            cookie: Cookie(1),
            family,
            local: Endpoint::new(addr, lport),
            remote: Endpoint::new(addr, rport),
            old: TcpState::SynSent,
            new: TcpState::Established,
            netns: 0,
            task: Task {
                pid: 1,
                tid: 1,
                comm: String::new(),
            },
            fin: None,
        }
    }

    #[test]
    fn empty_filter_matches_everything() {
        assert!(Filter::default().matches(&t(Family::Ipv6, 1, 2)));
        assert_eq!(Filter::default().kernel_part(), KernelFilter::default());
    }

    #[test]
    fn family_and_port_lists() {
        let f = Filter {
            family: Some(Family::Ipv4),
            lports: vec![80, 443],
            ..Filter::default()
        };
        assert!(f.matches(&t(Family::Ipv4, 443, 5)));
        assert!(!f.matches(&t(Family::Ipv4, 8080, 5)));
        assert!(!f.matches(&t(Family::Ipv6, 443, 5)));
        let f = Filter {
            ports: vec![5432],
            ..Filter::default()
        };
        assert!(f.matches(&t(Family::Ipv4, 5432, 1)));
        assert!(f.matches(&t(Family::Ipv4, 1, 5432)));
        assert!(!f.matches(&t(Family::Ipv4, 1, 2)));
    }

    #[test]
    fn unassigned_local_port_never_matches_a_local_port_list() {
        let f = Filter {
            lports: vec![0],
            ..Filter::default()
        };
        assert!(!f.matches(&t(Family::Ipv4, 0, 80)));
    }

    #[test]
    fn kernel_part_keeps_ipv4_mapped_and_leaves_long_lists_to_userspace() {
        let f = Filter {
            family: Some(Family::Ipv4),
            rports: (1..=20).collect(),
            lports: vec![80],
            ..Filter::default()
        };
        let k = f.kernel_part();
        assert_eq!(k.family, 0);
        assert_eq!(k.n_rports, 0);
        assert_eq!((k.n_lports, k.lports[0]), (1, 80));
        let k = Filter {
            family: Some(Family::Ipv6),
            ..Filter::default()
        }
        .kernel_part();
        assert_eq!(k.family, AF_INET6);
    }
}
