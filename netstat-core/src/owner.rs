//! Which process owns a socket.
//!
//! `inet_sock_set_state` often fires in softirq context, where the "current" task is whoever
//! happened to be on the CPU. That is why `tcpstates` prints the wrong PID so often. The
//! owner is taken only from facts made in the owner's own process context, and kept per
//! socket (by [`crate::sockets`]):
//!
//! 1. the transitions a system call makes ([`in_owner_context`]): `connect()`, `listen()`,
//!    `close()`/`shutdown()`;
//! 2. `accept()`: the process that takes a socket from its listener's queue serves it, which
//!    is what tells pre-fork workers (nginx, Apache, gunicorn, PostgreSQL) apart;
//! 3. before `accept()`, a process that holds the listener: the one that called `listen()`,
//!    or one seen accepting from it, or one a `/proc` scan found holding it;
//! 4. process exits: an owner that ended is never shown as current. A socket it owned keeps
//!    it as its last owner, marked [`Owner::exited`]; a listener's ended holder is dropped.

use std::{collections::VecDeque, sync::Arc};

use rustc_hash::{FxHashMap, FxHashSet};

use crate::{
    event::{AcceptEvent, Comm, Owner, Task, Transition},
    state::TcpState,
};

/// True when the transition runs in the system call of the process that owns the socket:
/// `connect()` (CLOSE -> SYN_SENT), `listen()` (CLOSE -> LISTEN), and `close()`/`shutdown()`
/// (ESTABLISHED -> FIN_WAIT1, CLOSE_WAIT -> LAST_ACK, LISTEN -> CLOSE).
pub fn in_owner_context(old: TcpState, new: TcpState) -> bool {
    use TcpState::*;
    matches!(
        (old, new),
        (Close, SynSent | Listen)
            | (Established, FinWait1)
            | (CloseWait, LastAck)
            | (Listen, Close)
    )
}

/// Where a socket's owner came from, which decides what happens when it ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Source {
    /// The socket's own process-context fact (a system call on it, an accept), or a `/proc`
    /// scan: the owner stays as the socket's last owner after it ends.
    Own,
    /// Its listener's holder, before anyone accepted it: replaced by another live holder
    /// when it ends.
    Listener,
}

/// How many holders are kept per listener: enough for any pre-fork pool to be represented
/// by a live one, bounded against a listener shared by thousands of processes.
const HOLDERS_PER_LISTENER: usize = 16;

/// How many ended processes are remembered. Pids are reused only after the pid space wraps,
/// and a pid seen alive again (in a system call or an accept) is forgotten at once.
const EXITED_CAPACITY: usize = 1 << 16;

/// Listeners' holders and ended processes.
#[derive(Debug, Default)]
pub struct Owners {
    /// Holders of each listening port, by (network namespace, port), most recent first.
    listeners: FxHashMap<(u32, u16), Vec<Owner>>,
    exited: FxHashSet<u32>,
    exited_order: VecDeque<u32>,
    /// Process names of multi-threaded processes, whose threads may have other names.
    names: FxHashMap<u32, Arc<str>>,
}

impl Owners {
    /// The owner a process-context fact names: the task's process (thread group) under the
    /// process's own name.
    ///
    /// A process that makes a socket (`born`: connect, listen) is alive, whatever was
    /// recorded before: its pid was reused. One that closes one may be ending: a process's
    /// files are closed after its exit is traced, so those closes name it as ended.
    pub fn of_task(&mut self, task: &Task, born: bool) -> Owner {
        if born {
            self.alive(task.pid);
        }
        let comm = if task.tid != task.pid && task.tid != 0 {
            self.process_name(task.pid, task.comm)
        } else {
            task.comm.name()
        };
        self.current(Owner::new(task.pid, comm))
    }

    /// The name of process `pid`, from `/proc` once, or `thread_comm` if it cannot be read.
    fn process_name(&mut self, pid: u32, thread_comm: Comm) -> Arc<str> {
        if let Some(name) = self.names.get(&pid) {
            return name.clone();
        }
        let name = std::fs::read_to_string(format!("/proc/{pid}/comm")).map_or_else(
            |_| thread_comm.name(),
            |s| Arc::from(s.trim_end_matches('\n')),
        );
        self.names.insert(pid, name.clone());
        name
    }

    fn alive(&mut self, pid: u32) {
        if !self.exited.is_empty() {
            self.exited.remove(&pid);
        }
    }

    /// Whether `pid` has ended.
    pub fn has_exited(&self, pid: u32) -> bool {
        !self.exited.is_empty() && self.exited.contains(&pid)
    }

    /// `owner` as it stands now: marked if its process ended.
    pub fn current(&self, owner: Owner) -> Owner {
        if self.has_exited(owner.pid) && !owner.exited {
            Owner {
                exited: true,
                ..owner
            }
        } else {
            owner
        }
    }

    /// Learns from a transition of a listening socket and its owner.
    pub fn observe_listener(&mut self, t: &Transition, owner: Option<&Owner>) {
        let Some(port) = t.local.port else { return };
        match (t.old, t.new) {
            (_, TcpState::Listen) => {
                if let Some(owner) = owner {
                    self.hold((t.netns, port), owner.clone());
                }
            }
            (TcpState::Listen, TcpState::Close) => {
                self.listeners.remove(&(t.netns, port));
            }
            _ => {}
        }
    }

    /// A process accepted from the listener on (`netns`, `lport`): it holds the listener.
    pub fn on_accept(&mut self, a: &AcceptEvent) {
        self.alive(a.owner.pid);
        self.hold((a.netns, a.lport), a.owner.clone());
    }

    /// Records that `owner` holds the listener on `key`, found by a `/proc` scan.
    pub fn seed_listener(&mut self, netns: u32, port: u16, owner: Owner) {
        self.hold((netns, port), owner);
    }

    fn hold(&mut self, key: (u32, u16), owner: Owner) {
        let holders = self.listeners.entry(key).or_default();
        if holders.first() == Some(&owner) {
            return; // the common case: the same worker accepting again
        }
        holders.retain(|h| h.pid != owner.pid);
        holders.insert(0, owner);
        holders.truncate(HOLDERS_PER_LISTENER);
    }

    /// Process `pid` ended.
    pub fn on_exit(&mut self, pid: u32) {
        self.names.remove(&pid);
        for holders in self.listeners.values_mut() {
            holders.retain(|h| h.pid != pid);
        }
        if self.exited.insert(pid) {
            self.exited_order.push_back(pid);
            if self.exited_order.len() > EXITED_CAPACITY
                && let Some(oldest) = self.exited_order.pop_front()
            {
                self.exited.remove(&oldest);
            }
        }
    }

    /// A live process holding the listener an accepted socket came from, if one is known.
    pub fn listener_holder(&self, netns: u32, port: Option<u16>) -> Option<&Owner> {
        self.listeners
            .get(&(netns, port?))?
            .iter()
            .find(|h| !self.has_exited(h.pid))
    }

    /// A remembered owner as it stands now: a listener's holder that ended gives way to
    /// another live holder of the listener on (`netns`, `port`); any other owner that ended
    /// is kept, marked as ended.
    pub(crate) fn standing(
        &self,
        owner: Option<Owner>,
        source: Source,
        netns: u32,
        port: Option<u16>,
    ) -> Option<Owner> {
        match owner {
            Some(o) if source == Source::Listener && self.has_exited(o.pid) => {
                self.listener_holder(netns, port).cloned()
            }
            Some(o) => Some(self.current(o)),
            None => None,
        }
    }

    /// Listening ports with a known holder.
    pub fn listeners(&self) -> usize {
        self.listeners.len()
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

    fn accept(pid: u32, port: u16) -> AcceptEvent {
        AcceptEvent {
            ts_ns: 1,
            cookie: crate::event::Cookie(7),
            netns: 1,
            lport: port,
            owner: Owner::new(pid, format!("w{pid}")),
        }
    }

    #[test]
    fn a_listeners_holder_is_the_latest_live_one_never_one_that_ended() {
        let mut o = Owners::default();
        o.seed_listener(1, 80, Owner::new(10, "launcher"));
        assert_eq!(o.listener_holder(1, Some(80)).unwrap().pid, 10);
        o.on_accept(&accept(11, 80));
        o.on_accept(&accept(12, 80));
        assert_eq!(o.listener_holder(1, Some(80)).unwrap().pid, 12);
        o.on_exit(12);
        assert_eq!(o.listener_holder(1, Some(80)).unwrap().pid, 11);
        o.on_exit(11);
        o.on_exit(10);
        assert_eq!(
            o.listener_holder(1, Some(80)),
            None,
            "all ended: nobody, not a dead pid"
        );
        assert_eq!(o.listener_holder(1, Some(81)), None);
    }

    #[test]
    fn an_owner_that_ended_is_marked_until_its_pid_acts_again() {
        let mut o = Owners::default();
        o.on_exit(42);
        let marked = o.current(Owner::new(42, "nginx"));
        assert!(marked.exited);
        let task = Task {
            pid: 42,
            tid: 42,
            comm: "reused".into(),
        };
        assert!(
            o.of_task(&task, false).exited,
            "closing its files as it ends"
        );
        assert!(
            !o.of_task(&task, true).exited,
            "a new process under the reused pid"
        );
        assert!(!o.current(Owner::new(42, "reused")).exited);
    }

    #[test]
    fn a_thread_is_named_by_its_process() {
        let mut o = Owners::default();
        let me = std::process::id();
        let own_name = std::fs::read_to_string("/proc/self/comm").unwrap();
        let task = Task {
            pid: me,
            tid: me + 1,
            comm: "worker-3".into(),
        };
        let owner = o.of_task(&task, true);
        assert_eq!(owner.pid, me);
        assert_eq!(&*owner.comm, own_name.trim_end());
    }
}
