//! The ring buffer as an async source of records.
//!
//! The kernel program wakes us at most once per wakeup interval while events keep coming
//! (see `wakeup_flags` in the kernel crate), so a record can sit in the ring unannounced. After
//! every drain that found something we therefore poll once more after `poll_interval`; when a
//! poll finds the ring empty we go back to sleeping until the kernel wakes us. An idle host
//! costs no wakeups at all, a busy one costs about one per interval instead of one per event.

use std::time::Duration;

use aya::maps::{MapData, RingBuf};
use tokio::{
    io::{Interest, unix::AsyncFd},
    time::Instant,
};

use super::ProbeError;

pub struct EventStream {
    ring: AsyncFd<RingBuf<MapData>>,
    poll_interval: Duration,
    next_poll: Option<Instant>,
}

impl EventStream {
    pub(super) fn new(ring: RingBuf<MapData>, poll_interval: Duration) -> Result<Self, ProbeError> {
        // SAFETY: the RingBuf owns its map fd, which stays open and unchanged until the
        // AsyncFd (and with it the RingBuf) is dropped.
        let ring = unsafe { AsyncFd::register_with_interest(ring, Interest::READABLE) }
            .map_err(|e| ProbeError::Poll(e.into()))?;
        Ok(Self {
            ring,
            poll_interval,
            next_poll: None,
        })
    }

    /// Waits until records may be waiting: the kernel woke us, or a follow-up poll is due.
    /// Cancel-safe, so it can sit in a `select!` beside signals.
    pub async fn ready(&mut self) -> Result<(), ProbeError> {
        let next_poll = self.next_poll;
        let ring = &mut self.ring;
        let readable = async move {
            let mut guard = ring.readable_mut().await.map_err(ProbeError::Poll)?;
            // Clearing before the drain is safe: whatever arrives after this point is either
            // drained below or raises readiness again.
            guard.clear_ready();
            Ok::<(), ProbeError>(())
        };
        match next_poll {
            Some(at) => {
                tokio::select! {
                    r = readable => r?,
                    () = tokio::time::sleep_until(at) => {}
                }
            }
            None => readable.await?,
        }
        self.next_poll = None;
        Ok(())
    }

    /// Hands every waiting record to `f`, until the ring is empty. Returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let ring = self.ring.get_mut();
        let mut n = 0;
        while let Some(item) = ring.next() {
            f(&item);
            n += 1;
        }
        if n > 0 && !self.poll_interval.is_zero() {
            self.next_poll = Some(Instant::now() + self.poll_interval);
        }
        n
    }
}
