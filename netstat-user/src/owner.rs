//! Which process owns a socket.
//!
//! `inet_sock_set_state` often fires in softirq context, where the "current" task is whoever
//! happened to be on the CPU. That is why `tcpstates` prints the wrong PID so often. Only a
//! few transitions are made by a system call of the socket's owner; we take the owner from
//! those alone and remember it per socket. An accepted socket is born in softirq, so it takes
//! its listener's owner until one of its own process-context transitions says otherwise.

use std::collections::HashMap;

use crate::{
    event::{Owner, Transition},
    state::TcpState,
};

/// True when the transition runs in the system call of the process that owns the socket:
/// `connect()` (CLOSE -> SYN_SENT), `listen()` (CLOSE -> LISTEN), and `close()`/`shutdown()`
/// (ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK, LISTEN -> CLOSE).
pub fn in_owner_context(old: TcpState, new: TcpState) -> bool {
    use TcpState::*;
    matches!(
        (old, new),
        (Close, SynSent)
            | (Close, Listen)
            | (Established, FinWait1)
            | (CloseWait, LastAck)
            | (Listen, Close)
    )
}

/// Owners of listening sockets by (network namespace, port), so accepted sockets, which are
/// born in softirq context, can inherit them.
#[derive(Debug, Default)]
pub struct Listeners {
    by_port: HashMap<(u32, u16), Owner>,
}

impl Listeners {
    /// Learns from a transition of a listening socket.
    pub fn observe(&mut self, t: &Transition, owner: Option<&Owner>) {
        let Some(port) = t.local.port else { return };
        match (t.old, t.new) {
            (_, TcpState::Listen) => {
                if let Some(owner) = owner {
                    self.by_port.insert((t.netns, port), owner.clone());
                }
            }
            (TcpState::Listen, TcpState::Close) => {
                self.by_port.remove(&(t.netns, port));
            }
            _ => {}
        }
    }

    /// The owner of the listener an accepted socket came from.
    pub fn owner_for_accepted(&self, t: &Transition) -> Option<&Owner> {
        self.by_port.get(&(t.netns, t.local.port?))
    }

    pub fn len(&self) -> usize {
        self.by_port.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_port.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    #[test]
    fn only_syscall_transitions_name_the_owner() {
        assert!(in_owner_context(Close, SynSent));
        assert!(in_owner_context(Close, Listen));
        assert!(in_owner_context(Established, FinWait1));
        assert!(in_owner_context(CloseWait, LastAck));
        // Driven by packets, in softirq: the task on the CPU is anybody.
        assert!(!in_owner_context(SynSent, Established));
        assert!(!in_owner_context(Listen, SynRecv));
        assert!(!in_owner_context(Established, CloseWait));
        assert!(!in_owner_context(FinWait2, Close));
        assert!(!in_owner_context(LastAck, Close));
    }
}
