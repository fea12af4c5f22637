//! Bytes that live connections moved, for `enetstat top`: RX and TX
//! count a long transfer while it runs, not only when its connection closes.
//!
//! Why this is cheap enough: top already dumps the kernel's socket table once per refresh (to
//! see moves out of the connection states that no event shows); asking that same dump for
//! each socket's `tcp_info` ([`crate::sockdiag::dump_connections_with_bytes`]) adds its byte
//! counters at about three times the dump's bytes, once per refresh, and nothing per event (a
//! closing connection costs
//! one hash removal). What each socket had moved at its last sample is kept; a sample counts
//! the difference, and a close (whose record carries the connection's totals, counted the
//! same way) counts what was left since. So every byte counts once, in the interval it moved
//! in (to within a refresh).
//!
//! Through a daemon, top makes the same dump itself (it needs no privilege) and samples the
//! sockets of the daemon's table by cookie.

use rustc_hash::FxHashMap;

use crate::{event::Cookie, sockdiag::TcpBytes};

/// The byte counters of live sockets already counted.
#[derive(Debug, Default)]
pub struct LiveBytes {
    /// Per socket: what was counted for it so far, and the refresh that last sampled it.
    counted: FxHashMap<Cookie, (TcpBytes, u64)>,
    refresh: u64,
}

fn less(a: TcpBytes, b: TcpBytes) -> TcpBytes {
    TcpBytes {
        sent: a.sent.saturating_sub(b.sent),
        received: a.received.saturating_sub(b.received),
    }
}

impl LiveBytes {
    pub fn new() -> Self {
        Self::default()
    }

    /// A socket as the dump at start found it: what it moved before top started is not
    /// counted.
    pub fn baseline(&mut self, cookie: Cookie, now: TcpBytes) {
        self.counted.insert(cookie, (now, self.refresh));
    }

    /// A live socket sampled at this refresh: what it moved since it was last counted (all it
    /// moved, for a socket new since the last refresh).
    pub fn moved(&mut self, cookie: Cookie, now: TcpBytes) -> TcpBytes {
        let before = self
            .counted
            .insert(cookie, (now, self.refresh))
            .map(|(b, _)| b)
            .unwrap_or_default();
        less(now, before)
    }

    /// A connection closed having moved `total` in all: what is left to count.
    pub fn closed(&mut self, cookie: Cookie, total: TcpBytes) -> TcpBytes {
        let before = self.counted.remove(&cookie).map(|(b, _)| b);
        less(total, before.unwrap_or_default())
    }

    /// Ends a refresh. A socket no dump has shown for two refreshes is gone (its close was
    /// lost, or it is in TIME_WAIT, which has no counters): forgotten.
    pub fn end_refresh(&mut self) {
        let refresh = self.refresh;
        self.counted.retain(|_, (_, at)| *at + 2 > refresh);
        self.refresh += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(sent: u64, received: u64) -> TcpBytes {
        TcpBytes { sent, received }
    }

    #[test]
    fn every_byte_counts_once_in_the_interval_it_moved() {
        let mut l = LiveBytes::new();
        // Open before top started, with 1000 bytes sent: not counted.
        l.baseline(Cookie(1), b(1000, 10));
        l.end_refresh();
        assert_eq!(l.moved(Cookie(1), b(1500, 10)), b(500, 0));
        // New since the last refresh: all of it.
        assert_eq!(l.moved(Cookie(2), b(0, 4096)), b(0, 4096));
        l.end_refresh();
        // Closed: what moved since the last sample (the FIN the sample had counted as a
        // received byte is not taken off twice).
        assert_eq!(l.closed(Cookie(1), b(1700, 10)), b(200, 0));
        assert_eq!(l.closed(Cookie(2), b(0, 4096)), b(0, 0));
        // Born and closed between two refreshes: all of it, at the close.
        assert_eq!(l.closed(Cookie(3), b(5, 6)), b(5, 6));
    }

    #[test]
    fn sockets_no_dump_shows_are_forgotten() {
        let mut l = LiveBytes::new();
        l.baseline(Cookie(1), b(10, 10));
        l.baseline(Cookie(2), b(10, 10));
        for _ in 0..3 {
            l.end_refresh();
            l.moved(Cookie(2), b(10, 10));
        }
        assert_eq!(l.counted.len(), 1);
        // Its close came after all: counted whole, rather than kept for ever.
        assert_eq!(l.closed(Cookie(1), b(10, 10)), b(10, 10));
    }
}
