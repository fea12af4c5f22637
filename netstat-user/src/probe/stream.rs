//! The ring buffer as an async source of records.
//!
//! While we are behind, the kernel program wakes us at most once per wakeup interval (see
//! `wakeup_flags` in the kernel crate); a record that finds we had read everything wakes us at
//! once, as we may be asleep. After every drain that found something we also poll once more
//! after `poll_interval`, to pick up what came while we were draining without waiting for a
//! wakeup; when a poll finds the ring empty we sleep until the kernel wakes us. An idle host
//! costs no wakeups at all, a busy one about one per interval instead of one per event.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::io::{Interest, unix::AsyncFd};

use super::{ProbeError, timer::Timer};
use crate::identity::{Identities, PENDING_MAX_NS};

pub struct EventStream {
    ring: AsyncFd<RingBuf<MapData>>,
    /// Joins the records of one socket where the kernel could not (see [`crate::identity`]).
    identities: Identities,
    poll_interval: Duration,
    /// Fires the follow-up poll; armed after every drain that found records.
    timer: Timer,
    poll_armed: bool,
}

impl EventStream {
    pub(super) fn new(ring: RingBuf<MapData>, poll_interval: Duration) -> Result<Self, ProbeError> {
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the
        // AsyncFd (and with it the RingBuf) is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| ProbeError::Poll(e.into()))?;
        Ok(Self {
            ring,
            identities: Identities::new(),
            poll_interval,
            timer: Timer::new().map_err(ProbeError::Poll)?,
            poll_armed: false,
        })
    }

    /// Waits until records may be waiting: the kernel woke us, or a follow-up poll is due.
    /// Cancel-safe, so it can sit in a `select!` beside signals.
    pub async fn ready(&mut self) -> Result<(), ProbeError> {
        let poll_armed = self.poll_armed;
        let ring = &mut self.ring;
        let timer = &self.timer;
        let readable = async move {
            let mut guard = ring.readable_mut().await.map_err(ProbeError::Poll)?;
            // Clearing before the drain is safe: whatever arrives after this point is either
            // drained below or raises readiness again.
            guard.clear_ready();
            Ok::<(), ProbeError>(())
        };
        if poll_armed {
            tokio::select! {
                r = readable => r?,
                r = timer.fired() => r.map_err(ProbeError::Poll)?,
            }
        } else {
            readable.await?;
        }
        self.poll_armed = false;
        Ok(())
    }

    /// Hands every waiting record to `f`, until the ring is empty. Returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let identities = &mut self.identities;
        let mut n = 0;
        while let Some(item) = ring.next() {
            identities.feed(&item, &mut f);
            n += 1;
        }
        if identities.has_pending() {
            identities.expire(crate::clock::monotonic_ns(), &mut f);
        }
        // A record waiting for its socket's next one needs us back soon, even from an idle ring.
        let pending = identities.has_pending();
        let interval = if pending && self.poll_interval.is_zero() {
            Duration::from_nanos(PENDING_MAX_NS)
        } else {
            self.poll_interval
        };
        if (n > 0 || pending) && !interval.is_zero() {
            match self.timer.arm(interval) {
                Ok(()) => self.poll_armed = true,
                Err(e) => tracing::warn!("cannot arm the ring-buffer poll timer: {e}"),
            }
        }
        n
    }

    /// [`drain`](Self::drain), then hands on every record still waiting for its socket's next
    /// one: for the last read before stopping.
    pub fn drain_to_end(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let n = self.drain(&mut f);
        self.identities.expire(u64::MAX, &mut f);
        n
    }

    /// Records of accepted sockets that went out without their own identity (see
    /// [`crate::identity`]), and sockets without a cookie beyond what can be followed.
    pub fn identity_counters(&self) -> (u64, u64) {
        (self.identities.unmatched, self.identities.overflow)
    }
}
