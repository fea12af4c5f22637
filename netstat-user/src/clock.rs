//! Kernel monotonic timestamps to wall-clock time.

use chrono::{DateTime, Utc};

fn now(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: a valid clock id and a valid out pointer.
    unsafe { libc::clock_gettime(clock, &raw mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// Kernel monotonic nanoseconds now, the clock `bpf_ktime_get_ns()` reads.
pub fn monotonic_ns() -> u64 {
    now(libc::CLOCK_MONOTONIC) as u64
}

/// Maps `bpf_ktime_get_ns()` values to wall-clock time. The offset between the two clocks moves
/// when the wall clock is stepped, so callers [`refresh`](Self::refresh) it now and then.
#[derive(Clone, Copy, Debug)]
pub struct WallClock {
    offset_ns: i128,
}

impl WallClock {
    pub fn new() -> Self {
        let mut c = Self { offset_ns: 0 };
        c.refresh();
        c
    }

    pub fn refresh(&mut self) {
        self.offset_ns = now(libc::CLOCK_REALTIME) - now(libc::CLOCK_MONOTONIC);
    }

    /// The wall-clock time of a kernel monotonic timestamp.
    pub fn wall(&self, ts_ns: u64) -> DateTime<Utc> {
        let ns = i128::from(ts_ns) + self.offset_ns;
        DateTime::from_timestamp_nanos(ns as i64)
    }
}

impl Default for WallClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_in_monotonic_maps_to_now_in_wall_time() {
        let clock = WallClock::new();
        let wall = clock.wall(monotonic_ns());
        let drift = (Utc::now() - wall).num_milliseconds().abs();
        assert!(drift < 1000, "drift {drift} ms");
    }
}
