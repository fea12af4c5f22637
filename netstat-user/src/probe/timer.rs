//! A one-shot timer with microsecond precision, as an async fd.
//!
//! tokio's timers tick in whole milliseconds, which would add up to a millisecond of latency
//! to the follow-up poll of the ring buffer; a `timerfd` fires when asked.

use std::{
    io,
    os::fd::{AsFd, AsRawFd, RawFd},
    time::Duration,
};

use nix::sys::{
    time::TimeSpec,
    timerfd::{ClockId, Expiration, TimerFd, TimerFlags, TimerSetTimeFlags},
};
use tokio::io::{Interest, unix::AsyncFd};

pub struct Timer {
    fd: AsyncFd<Fd>,
}

/// The timer as tokio's readiness wants it: by raw descriptor.
struct Fd(TimerFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0.as_fd().as_raw_fd()
    }
}

impl Timer {
    pub fn new() -> io::Result<Self> {
        let timer = TimerFd::new(
            ClockId::CLOCK_MONOTONIC,
            TimerFlags::TFD_NONBLOCK | TimerFlags::TFD_CLOEXEC,
        )?;
        // SAFETY: the TimerFd owns its descriptor and keeps it open and unchanged for as long
        // as the AsyncFd holds it.
        let fd = unsafe { AsyncFd::register_with_interest(Fd(timer), Interest::READABLE) }?;
        Ok(Self { fd })
    }

    /// Fires once, `after` from now (replacing any earlier arming).
    pub fn arm(&self, after: Duration) -> io::Result<()> {
        // A zero it_value would disarm the timer; fire after at least a nanosecond.
        let after = after.max(Duration::from_nanos(1));
        self.fd.get_ref().0.set(
            Expiration::OneShot(TimeSpec::from_duration(after)),
            TimerSetTimeFlags::empty(),
        )?;
        Ok(())
    }

    /// Waits until the timer fires. Cancel-safe.
    pub async fn fired(&self) -> io::Result<()> {
        loop {
            let mut guard = self.fd.readable().await?;
            let mut expirations = [0u8; 8];
            // Not ready after all (WouldBlock): the guard clears readiness, and we wait again.
            if let Ok(read) = guard.try_io(|fd| {
                nix::unistd::read(fd.get_ref().0.as_fd(), &mut expirations).map_err(io::Error::from)
            }) {
                return read.map(drop);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;

    #[tokio::test]
    async fn fires_once_after_the_delay() {
        let timer = Timer::new().unwrap();
        let start = Instant::now();
        timer.arm(Duration::from_micros(300)).unwrap();
        timer.fired().await.unwrap();
        assert!(start.elapsed() >= Duration::from_micros(300));
    }
}
