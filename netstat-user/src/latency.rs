//! Event latency: from the kernel's timestamp on a record to the moment userspace has applied
//! it. Measured on request (`--stats-json`) for the benchmarks; the histogram keeps every
//! sample at microsecond resolution in constant memory.

use hdrhistogram::Histogram;
use serde::Serialize;

#[derive(Clone, Debug)]
pub struct Latency {
    histogram: Histogram<u64>,
}

/// Percentiles in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct LatencyReport {
    pub count: u64,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn new() -> Self {
        Self {
            // 1 ns to 100 s, 3 significant digits.
            histogram: Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("valid bounds"),
        }
    }

    pub fn record(&mut self, ns: u64) {
        self.histogram.saturating_record(ns.max(1));
    }

    pub fn report(&self) -> LatencyReport {
        let us = |ns: u64| ns as f64 / 1_000.0;
        LatencyReport {
            count: self.histogram.len(),
            p50: us(self.histogram.value_at_quantile(0.50)),
            p99: us(self.histogram.value_at_quantile(0.99)),
            max: us(self.histogram.max()),
        }
    }
}

impl Default for Latency {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_in_microseconds() {
        let mut l = Latency::new();
        for i in 1..=100 {
            l.record(i * 1_000);
        }
        let r = l.report();
        assert_eq!(r.count, 100);
        assert!((r.p50 - 50.0).abs() < 0.1, "{r:?}");
        assert!((r.p99 - 99.0).abs() < 0.1, "{r:?}");
        assert!((r.max - 100.0).abs() < 0.1, "{r:?}");
    }
}
