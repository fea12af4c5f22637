//! Sockets not followed because the socket map was full, counted once each.
//!
//! Every record of a socket that is not followed finds no memory of it, so counting records
//! would count a connection once per transition. The sockets refused are remembered, bounded,
//! until they close or are followed after all.

use rustc_hash::FxHashSet;

use crate::event::Cookie;

/// Most refused sockets remembered at once. Past it a socket may be counted again at each of
/// its records, so the count can only be too high, never too low.
const REMEMBERED: usize = 1 << 16;

#[derive(Debug, Default)]
pub(super) struct Refused {
    cookies: FxHashSet<Cookie>,
    count: u64,
}

impl Refused {
    /// The socket `cookie` could not be followed.
    pub(super) fn refuse(&mut self, cookie: Cookie) {
        let first = if self.cookies.len() < REMEMBERED {
            self.cookies.insert(cookie)
        } else {
            !self.cookies.contains(&cookie)
        };
        self.count += u64::from(first);
    }

    /// The socket `cookie` is followed after all, or has closed.
    pub(super) fn forget(&mut self, cookie: Cookie) {
        // Empty unless the map has been full: the usual case costs no lookup.
        if !self.cookies.is_empty() {
            self.cookies.remove(&cookie);
        }
    }

    /// Sockets refused so far.
    pub(super) fn count(&self) -> u64 {
        self.count
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_socket_is_counted_once_until_it_closes() {
        let mut r = Refused::default();
        r.refuse(Cookie(1));
        r.refuse(Cookie(1));
        r.refuse(Cookie(2));
        assert_eq!(r.count(), 2);
        r.forget(Cookie(1));
        r.refuse(Cookie(1));
        assert_eq!(
            r.count(),
            3,
            "refused again after it was followed or closed"
        );
    }
}
