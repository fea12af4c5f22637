//! Cookie -> position in the table's slab of entries: open addressing with linear probing,
//! 8 bytes a slot (the position and the cookie's low 32 bits, which tell cookies apart
//! before the entry itself is read). A `HashMap<u64, u32>` takes 16 bytes a slot.

use super::Entry;

/// An empty slot: never a real one, as positions stay below `u32::MAX`.
const EMPTY: u64 = u64::MAX;

#[derive(Debug, Default)]
pub(super) struct Index {
    slots: Vec<u64>,
    len: usize,
}

fn slot(cookie: u64, pos: u32) -> u64 {
    u64::from(cookie as u32) << 32 | u64::from(pos)
}

fn pos(slot: u64) -> u32 {
    slot as u32
}

fn fingerprint(slot: u64) -> u32 {
    (slot >> 32) as u32
}

impl Index {
    fn mask(&self) -> usize {
        self.slots.len() - 1
    }

    /// Where a cookie's probe starts, from its low 32 bits (the slot's fingerprint), so that
    /// moving slots never reads the entries (a cache miss each): Fibonacci hashing, as
    /// cookies are a counter.
    fn home(&self, fingerprint: u32) -> usize {
        let bits = self.slots.len().trailing_zeros();
        (u64::from(fingerprint).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - bits)) as usize
    }

    /// The slot holding `cookie`, and its position.
    pub(super) fn find(&self, live: &[Entry], cookie: u64) -> Option<Found> {
        if self.slots.is_empty() {
            return None;
        }
        let mut i = self.home(cookie as u32);
        loop {
            let s = self.slots[i];
            if s == EMPTY {
                return None;
            }
            if fingerprint(s) == cookie as u32 && live[pos(s) as usize].cookie.0 == cookie {
                return Some(Found {
                    slot: i,
                    pos: pos(s),
                });
            }
            i = (i + 1) & self.mask();
        }
    }

    pub(super) fn get(&self, live: &[Entry], cookie: u64) -> Option<u32> {
        self.find(live, cookie).map(|f| f.pos)
    }

    /// Adds `cookie` (not in the index) at `pos`.
    pub(super) fn insert(&mut self, cookie: u64, pos: u32) {
        if (self.len + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        self.put(slot(cookie, pos));
        self.len += 1;
    }

    fn put(&mut self, s: u64) {
        let mut i = self.home(fingerprint(s));
        while self.slots[i] != EMPTY {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = s;
    }

    fn grow(&mut self) {
        let size = (self.slots.len() * 2).max(16);
        let old = std::mem::replace(&mut self.slots, vec![EMPTY; size]);
        for s in old.into_iter().filter(|&s| s != EMPTY) {
            self.put(s);
        }
    }

    /// The entry of `cookie` moved from `from` to `to` (the slab's last entry filling a hole).
    pub(super) fn moved(&mut self, cookie: u64, from: u32, to: u32) {
        let mut i = self.home(cookie as u32);
        while self.slots[i] != slot(cookie, from) {
            i = (i + 1) & self.mask();
        }
        self.slots[i] = slot(cookie, to);
    }

    /// Removes what [`Index::find`] found (nothing else has changed the index since).
    pub(super) fn remove(&mut self, found: Found) {
        let mut hole = found.slot;
        // Backward-shift deletion: later slots of the same probe run move up into the hole,
        // so no probe ever stops early at it.
        let mask = self.mask();
        let mut j = hole;
        loop {
            j = (j + 1) & mask;
            let s = self.slots[j];
            if s == EMPTY {
                break;
            }
            let home = self.home(fingerprint(s));
            // Whether `home` lies cyclically in (hole, j]: if not, the entry may move.
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                self.slots[hole] = s;
                hole = j;
            }
        }
        self.slots[hole] = EMPTY;
        self.len -= 1;
    }
}

/// Where [`Index::find`] found a cookie: its slot, and its position in the slab.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found {
    slot: usize,
    pub(super) pos: u32,
}
