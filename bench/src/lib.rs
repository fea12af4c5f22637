//! enetstat's benchmark tools.
//!
//! - [`churn`]: the loopback load generator behind `enetstat-loadgen churn`: workers that open,
//!   use and close TCP connections, each making a known number of state transitions, so a
//!   tracer's output can be checked for loss exactly.
//! - [`hold`]: `enetstat-loadgen hold`, many established loopback connections held open, for
//!   the scale benchmark.
//! - [`floor`]: `enetstat-loadgen floor`, the least a tracer that delivers every transition
//!   can cost: the overhead benchmark's delivery floor.
//! - [`records`]: ring-buffer records for the replay benchmark (`benches/replay.rs`), made up
//!   or converted from a real `enetstat watch -o json` capture.
//!
//! `cargo xtask bench` drives all of them; docs/performance.md has the results.

// The replay benchmark's dev-dependencies, which the library's tests do not use.
#[cfg(test)]
use criterion as _;
#[cfg(test)]
use enetstat as _;

pub mod churn;
pub mod floor;
pub mod hold;
pub mod limits;
pub mod placement;
pub mod records;

/// TCP state transitions one churn connection makes, both ends together. Client:
/// CLOSE->SYN_SENT->ESTABLISHED->FIN_WAIT1->FIN_WAIT2->CLOSE (TIME_WAIT is a separate,
/// untraced kind of socket); server: LISTEN->SYN_RECV->ESTABLISHED->CLOSE_WAIT->LAST_ACK->CLOSE.
pub const TRANSITIONS_PER_CONNECTION: u64 = 10;

/// Transitions of one listener: CLOSE->LISTEN at `listen()`, LISTEN->CLOSE when it closes.
pub const TRANSITIONS_PER_LISTENER: u64 = 2;
