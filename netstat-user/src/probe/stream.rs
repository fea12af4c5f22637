//! The ring buffer as an async source of records, read on userspace's own schedule.
//!
//! A wakeup from the kernel is an IPI to our CPU, and on a virtual machine every IPI is an
//! exit to the hypervisor: woken per event, a fast reader costs the traced host a good part of
//! its throughput under connection churn. So the kernel wakes us only when we ask (see
//! `wakeup.rs` in the kernel crate):
//!
//! - **Polling.** After a drain that found records we read again after `poll_interval`, on our
//!   own timer; records that come meanwhile send no wakeup.
//! - **A trickle.** A drain of fewer than [`TRICKLE`] records goes back to sleep at once: at
//!   a few events at a time a wakeup each costs little, and polling would hold each one for a
//!   poll interval.
//! - **Per-CPU rings.** Each CPU writes to a ring of its own (see `ring.rs` in the kernel
//!   crate); [`EventStream::drain`] merges them by record time. "The ring" below is all of
//!   them: any of them wakes us, and we sleep only when all are empty.
//! - **Going to sleep.** A poll that finds the ring empty sets the kernel's `READER_ASLEEP`
//!   flag, then drains once more and looks at the ring's positions ([`Ring::pending`]). A program
//!   commits its record (the kernel's commit is a full barrier, after the reservation
//!   published the position), then reads the flag; we set the flag, then (after a full
//!   barrier) look. So either the program sees the flag and wakes us, or we see its record,
//!   and look again shortly instead of sleeping. Only an empty ring with nothing reserved lets
//!   us sleep until the first record's wakeup.
//!
//! - **Busy.** While records come at [`FULL_BATCH`] or more per `poll_interval` (256k events/s
//!   at 250 µs) the interval doubles, up to [`MAX_STRETCH`] times `poll_interval`; below half
//!   that rate it halves back.
//!   Each poll is a context switch (and on a VM timer exits), and on this project's VM each
//!   cost the reader about 20 µs, its caches refilled after the load's threads ran: at 400k
//!   events/s, stretching to 1 ms cost `watch -o json` 400 ns of CPU a transition, to 4 ms
//!   345 (the daemon 225 and 183); 8 ms gave no more. Records wait at most the longer interval
//!   only when they come that fast; at 10k events/s the interval stays.
//!
//! An idle host costs no wakeups; a busy one one timer per poll interval and no IPIs. With
//! `poll_interval` zero (`--wakeup-us 0`) the kernel wakes us on every event it finds us
//! caught up for, as its default does.
//!
//! (A short fixed sleep after setting the flag, the first design, lost a wakeup when the
//! program's vCPU was descheduled by the hypervisor between reading the flag and committing:
//! the record then waited for the next one, forever on a quiet host.)

use std::{
    future::poll_fn,
    os::fd::{AsFd, AsRawFd, RawFd},
    task::Poll,
    time::Duration,
};

use aya::maps::{Array, MapData};
use netstat_common::record_ts;
use tokio::io::{Interest, unix::AsyncFd};

use super::{
    ProbeError,
    ring::{Ring, Slot},
    timer::Timer,
};
use crate::identity::{Identities, PENDING_MAX_NS};

/// Records per `poll_interval` (the rate, whatever the interval in use) at which the interval
/// doubles; below half of it, it halves back.
const FULL_BATCH: usize = 64;

/// A drain with fewer records than this sleeps again at once instead of polling.
const TRICKLE: usize = 4;

/// The longest poll interval, in multiples of `poll_interval`.
const MAX_STRETCH: u32 = 16;

/// The most records one drain hands on. A reader slower than the kernel would otherwise never
/// come back from a drain, and its front end (keys in `top`, clients of the daemon, Ctrl-C)
/// would wait; the rest is read right after, on the next turn of the loop.
const DRAIN_MAX: usize = 16_384;

/// How soon to look again at a record a program has reserved but not yet committed: programs
/// take microseconds, unless their CPU is preempted.
const RESERVED_RECHECK: Duration = Duration::from_micros(200);

/// Where the reader is in its cycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Records came: read again when the timer fires.
    Polling,
    /// The ring was empty: set the flag, then look once more.
    Idle,
    /// Flag set: looking at the ring; a record reserved and not committed brings us back
    /// after [`RESERVED_RECHECK`].
    Looking,
    /// Sleeping until the kernel wakes us.
    Asleep,
}

/// A ring buffer map as tokio's readiness wants it: by raw descriptor.
struct RingFd(MapData);

impl AsRawFd for RingFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.fd().as_fd().as_raw_fd()
    }
}

/// One per-CPU ring: its records, and its descriptor for the kernel's wakeups.
struct Source {
    ring: Ring,
    fd: AsyncFd<RingFd>,
}

pub struct EventStream {
    /// The per-CPU rings (see `ring.rs` in the kernel crate), merged by record time.
    sources: Vec<Source>,
    /// The kernel's `READER_ASLEEP` flag; `None` for wake-per-event.
    asleep: Option<Array<MapData, u32>>,
    /// Joins the records of one socket where the kernel could not (see [`crate::identity`]).
    identities: Identities,
    poll_interval: Duration,
    /// The interval in use: `poll_interval`, stretched while batches are full.
    interval: Duration,
    /// Fires the next poll (or the end of the grace sleep).
    timer: Timer,
    state: State,
}

impl EventStream {
    /// Reads the ring maps `rings`, each of `ring_size` bytes.
    pub(super) fn new(
        rings: Vec<MapData>,
        ring_size: usize,
        asleep: Option<Array<MapData, u32>>,
        poll_interval: Duration,
    ) -> Result<Self, ProbeError> {
        let mut sources = Vec::with_capacity(rings.len());
        for map in rings {
            let ring = Ring::new(map.fd().as_fd(), ring_size).map_err(ProbeError::poll)?;
            // SAFETY: the MapData owns its descriptor, which stays open and unchanged until
            // the AsyncFd (and with it the MapData) is dropped.
            let fd = unsafe { AsyncFd::register_with_interest(RingFd(map), Interest::READABLE) }
                .map_err(|e| ProbeError::poll(e.into()))?;
            sources.push(Source { ring, fd });
        }
        Ok(Self {
            sources,
            asleep,
            identities: Identities::new(),
            poll_interval,
            interval: poll_interval,
            timer: Timer::new().map_err(ProbeError::poll)?,
            state: State::Idle,
        })
    }

    fn set_asleep(&mut self, value: u32) -> Result<(), ProbeError> {
        if let Some(flag) = self.asleep.as_mut() {
            flag.set(0, &value, 0).map_err(|cause| ProbeError::Map {
                name: "READER_ASLEEP",
                cause,
            })?;
        }
        Ok(())
    }

    /// Waits until records may be waiting: the kernel woke us, or a poll is due. Cancel-safe,
    /// so it can sit in a `select!` beside signals.
    pub async fn ready(&mut self) -> Result<(), ProbeError> {
        if self.asleep.is_none() && self.state != State::Polling {
            self.state = State::Asleep;
        }
        match self.state {
            State::Idle => {
                self.set_asleep(1)?;
                self.state = State::Looking;
                // Drain once more before sleeping: a record may have come before the flag.
                return Ok(());
            }
            State::Looking => {
                self.timer.arm(RESERVED_RECHECK).map_err(ProbeError::poll)?;
                self.wait(true).await?;
            }
            State::Polling => self.wait(true).await?,
            State::Asleep => self.wait(false).await?,
        }
        Ok(())
    }

    /// Waits for a wakeup from the kernel on any ring, or with `timer` for the timer too.
    async fn wait(&mut self, timer: bool) -> Result<(), ProbeError> {
        let sources = &mut self.sources;
        let readable = poll_fn(move |cx| {
            for source in sources.iter_mut() {
                if let Poll::Ready(r) = source.fd.poll_read_ready_mut(cx) {
                    let mut guard = r.map_err(ProbeError::poll)?;
                    // Clearing before the drain is safe: whatever arrives after this point is
                    // either drained next or raises readiness again.
                    guard.clear_ready();
                    return Poll::Ready(Ok::<(), ProbeError>(()));
                }
            }
            Poll::Pending
        });
        if timer {
            tokio::select! {
                r = readable => r?,
                r = self.timer.fired() => r.map_err(ProbeError::poll)?,
            }
        } else {
            readable.await?;
        }
        Ok(())
    }

    /// Hands on up to `max` records in time order across the rings, and gives their space
    /// back to the kernel. Returns how many.
    ///
    /// Each ring holds one CPU's records in the order they were reserved, and a socket's
    /// transitions may come from different CPUs, so the rings are merged by record time (taken
    /// just before the reservation, see `ring.rs` in the kernel crate): the next record handed
    /// on is the earliest at the head of any ring. An empty ring bounds what may go: a record
    /// of the same socket as one handed on, reserved there after we looked, would be the
    /// earlier of the two and committed before the later one began, so records after `bound`
    /// (read before we looked) wait for the next look, which comes at once. A ring whose next
    /// record is still being written stops the merge until it is committed.
    fn merge(&mut self, max: usize, f: &mut impl FnMut(&[u8])) -> usize {
        let Self {
            sources,
            identities,
            ..
        } = self;
        let mut n = 0;
        while n < max {
            let bound = crate::clock::monotonic_ns();
            for source in sources.iter_mut() {
                source.ring.refresh();
            }
            let before = n;
            while n < max {
                let mut next: Option<(usize, u64)> = None;
                let mut empty = false;
                let mut busy = false;
                for (i, source) in sources.iter_mut().enumerate() {
                    match source.ring.peek() {
                        Slot::Record(data) => {
                            // A kind without a time (never written by our programs) goes
                            // first, to be counted as undecodable.
                            let ts = record_ts(data).unwrap_or(0);
                            if next.is_none_or(|(_, t)| ts < t) {
                                next = Some((i, ts));
                            }
                        }
                        Slot::Busy => busy = true,
                        Slot::Empty => empty = true,
                    }
                }
                let Some((i, ts)) = next else { break };
                if busy || (empty && ts > bound) {
                    break;
                }
                let ring = &mut sources[i].ring;
                let Slot::Record(data) = ring.peek() else {
                    break;
                };
                let len = data.len();
                identities.feed(data, &mut *f);
                ring.advance(len);
                n += 1;
            }
            if n == before {
                break;
            }
        }
        for source in sources.iter_mut() {
            source.ring.publish();
        }
        n
    }

    /// Hands every waiting record to `f`, until the ring is empty. Returns how many there were.
    pub fn drain(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let n = self.merge(DRAIN_MAX, &mut f);
        let identities = &mut self.identities;
        if identities.has_pending() {
            identities.expire(crate::clock::monotonic_ns(), &mut f);
        }
        // A record waiting for its socket's next one needs us back soon, even from an idle ring.
        let pending = identities.has_pending();
        if n > 0 && n < TRICKLE && !pending && self.asleep.is_some() {
            // A trickle: back to sleep at once, and the next record wakes us. Polling pays
            // when records come faster than wakeups cost; for a few at a time it only holds
            // each for a poll interval or two (what the latency at 1k events/s was).
            self.state = State::Idle;
            self.interval = self.poll_interval;
            return n;
        }
        if n > 0 || pending {
            if matches!(self.state, State::Looking | State::Asleep)
                && let Err(e) = self.set_asleep(0)
            {
                tracing::warn!("{e}");
            }
            self.state = State::Polling;
            // The rate, as records per `poll_interval`, decides: stretched at 64 (256k events/s
            // at 250 µs), back at 32, so 100k events/s keeps the short interval.
            if !self.poll_interval.is_zero() {
                let per_base = (n as u128 * self.poll_interval.as_nanos()
                    / self.interval.as_nanos().max(1)) as usize;
                if per_base >= FULL_BATCH {
                    self.interval = (self.interval * 2).min(self.poll_interval * MAX_STRETCH);
                } else if per_base < FULL_BATCH / 2 {
                    self.interval = (self.interval / 2).max(self.poll_interval);
                }
            }
            let interval = if n == DRAIN_MAX {
                // More waiting: back as soon as the loop has looked at everything else.
                Duration::from_micros(1)
            } else if self.poll_interval.is_zero() {
                Duration::from_nanos(PENDING_MAX_NS)
            } else {
                self.interval
            };
            if (!self.poll_interval.is_zero() || pending || n == DRAIN_MAX)
                && let Err(e) = self.timer.arm(interval)
            {
                tracing::warn!("cannot arm the ring-buffer poll timer: {e}");
            }
        } else {
            self.state = match self.state {
                State::Looking
                    if self.asleep.is_some() && self.sources.iter().any(|s| s.ring.pending()) =>
                {
                    State::Looking
                }
                State::Looking => State::Asleep,
                // A wakeup that brought nothing (one for records already read): set the flag
                // again rather than trust it is still set.
                State::Polling | State::Idle | State::Asleep => State::Idle,
            };
        }
        n
    }

    /// [`drain`](Self::drain), then hands on every record still waiting for its socket's next
    /// one: for the last read before stopping.
    pub fn drain_to_end(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let n = self.drain_all(&mut f);
        self.identities.expire(u64::MAX, &mut f);
        n
    }

    /// [`drain`](Self::drain) until the ring is empty, however many that takes: for a catch-up
    /// that must see every record before it goes on (a dump merged after the transitions
    /// that preceded it).
    pub fn drain_all(&mut self, mut f: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        loop {
            let batch = self.drain(&mut f);
            n += batch;
            if batch < DRAIN_MAX {
                return n;
            }
        }
    }
}

impl Drop for EventStream {
    /// Says what [`crate::identity`] could not do, so it is never silent.
    fn drop(&mut self) {
        let (unmatched, overflow) = (self.identities.unmatched, self.identities.overflow);
        if unmatched > 0 {
            tracing::warn!(
                "{unmatched} accepted socket(s) showed their listener's identity on \
                 LISTEN>SYN_RECV: the socket's next record never came"
            );
        }
        if overflow > 0 {
            tracing::warn!(
                "{overflow} socket(s) without a cookie were not followed (too many at once): \
                 their lines may not share one id"
            );
        }
    }
}

impl crate::source::RecordSource for EventStream {
    fn ready(&mut self) -> impl std::future::Future<Output = Result<(), ProbeError>> + Send {
        EventStream::ready(self)
    }

    fn drain(&mut self, f: impl FnMut(&[u8])) -> usize {
        EventStream::drain(self, f)
    }

    fn drain_all(&mut self, f: impl FnMut(&[u8])) -> usize {
        EventStream::drain_all(self, f)
    }
}
