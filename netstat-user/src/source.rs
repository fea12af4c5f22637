//! Where records come from: the one seam between the kernel and everything after it.
//!
//! The daemon's engine reads records through [`RecordSource`], not the ring buffer itself, so
//! its fan-out, lag handling and live table can be driven by recorded records in unit tests,
//! without root or kernel programs. [`crate::probe::EventStream`] is the real source.

use std::future::Future;

// The error module, not `crate::probe`: the probe's stream implements this trait, so naming
// the probe here would tie the two into an import cycle.
use crate::probe::error::ProbeError;

pub trait RecordSource {
    /// Waits until records may be waiting. Cancel-safe: it sits in `select!`s beside signals
    /// and client commands.
    fn ready(&mut self) -> impl Future<Output = Result<(), ProbeError>> + Send;

    /// Hands on a batch of the records waiting (bounded: the caller's loop comes back for
    /// more). Returns how many.
    fn drain(&mut self, f: impl FnMut(&[u8])) -> usize;

    /// Hands on every record waiting, however many: for a catch-up that must see them all.
    fn drain_all(&mut self, f: impl FnMut(&[u8])) -> usize;
}
