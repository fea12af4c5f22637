//! Connections that closed, oldest first, bounded: what a poller never sees.

use std::{collections::VecDeque, time::Duration};

use super::Entry;
use crate::{event::Final, state::TcpState};

/// A connection that reached CLOSE.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Closed {
    /// The socket as last known, in the state it closed from.
    pub entry: Entry,
    /// The state it left for CLOSE.
    pub last_state: TcpState,
    /// Kernel time of the close.
    pub closed_ns: u64,
    /// What the kernel knew at the close (errno, bytes, retransmits, RTT).
    pub fin: Option<Final>,
}

impl Closed {
    /// From birth (connect, listen or accept) to close, when the birth was seen.
    pub fn lifetime(&self) -> Option<Duration> {
        self.entry
            .opened_ns()
            .map(|o| Duration::from_nanos(self.closed_ns.saturating_sub(o)))
    }
}

/// The most records reserved up front; a larger history grows as it fills.
const RESERVED_MAX: usize = 1 << 20;

/// The bounded history of closed connections.
#[derive(Debug)]
pub struct History {
    closed: VecDeque<Closed>,
    capacity: usize,
    overflow: u64,
}

impl History {
    pub fn new(capacity: usize) -> Self {
        Self {
            // Reserved at once (address space: pages cost only once written), so a daemon
            // started under churn does not copy its history at every doubling while it fills.
            closed: VecDeque::with_capacity(capacity.min(RESERVED_MAX)),
            capacity,
            overflow: 0,
        }
    }

    /// Adds a closed connection; when full, the oldest one goes and is counted.
    pub fn push(&mut self, c: Closed) {
        if self.capacity == 0 {
            self.overflow += 1;
            return;
        }
        if self.closed.len() >= self.capacity {
            self.closed.pop_front();
            self.overflow += 1;
        }
        self.closed.push_back(c);
    }

    /// Forgets connections closed before `before_ns` (not counted: they aged out).
    pub fn expire(&mut self, before_ns: u64) {
        while self.closed.front().is_some_and(|c| c.closed_ns < before_ns) {
            self.closed.pop_front();
        }
    }

    /// Connections that closed at or after `since_ns`, oldest first.
    pub fn since(&self, since_ns: u64) -> impl Iterator<Item = &Closed> {
        // Nearly sorted (records from different CPUs may interleave), so filter, not search.
        self.closed.iter().filter(move |c| c.closed_ns >= since_ns)
    }

    /// Closed connections dropped because the history was full.
    pub fn overflow(&self) -> u64 {
        self.overflow
    }

    pub fn len(&self) -> usize {
        self.closed.len()
    }

    pub fn is_empty(&self) -> bool {
        self.closed.is_empty()
    }
}
