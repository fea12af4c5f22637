//! The one path every record takes after the probe's stream: decode, then what the socket's
//! earlier records add ([`Sockets`]: time in the old state, owner, and the connection's
//! lifecycle on its close), then the live table when there is one.
//!
//! `watch`, the daemon's engine, live snapshots and the replay benchmark all feed records
//! through [`Pipeline::feed`], so what one front end shows cannot drift from another, and the
//! benchmark measures the shipped path rather than a copy. Seeding owners from a `/proc`
//! scan is I/O, so it is netstat-user's (`pipeline::SeedOwners`).

pub use crate::sockets::Context;
use crate::{
    decode::decode_record,
    event::{Record, Transition},
    sockets::Sockets,
    table::Table,
};

/// A transition with everything the pipeline learned about it.
#[derive(Clone, Debug, Default)]
pub struct Step {
    pub transition: Transition,
    /// What the socket's earlier records add: time in the old state, owner, how it ended and
    /// the connection's whole life.
    pub context: Context,
}

/// Per-socket state for the records of one stream.
#[derive(Debug)]
pub struct Pipeline {
    pub sockets: Sockets,
    /// The last transition's step, overwritten in place by the next: [`Pipeline::feed`] lends
    /// it out rather than moving 360 bytes through every front end's per-record path.
    step: Step,
    /// Records that could not be decoded (skipped, never fatal).
    pub undecodable: u64,
    /// Records received: transitions and resets, not owner facts (accepts, process exits),
    /// so it compares with the kernel's `seen` count.
    pub received: u64,
}

impl Pipeline {
    /// Follows at most `capacity` sockets at once.
    pub fn new(capacity: usize) -> Self {
        Self {
            sockets: Sockets::new(capacity),
            step: Step::default(),
            undecodable: 0,
            received: 0,
        }
    }

    /// Sockets that could not be followed because `capacity` sockets were, each counted once.
    pub fn untracked(&self) -> u64 {
        self.sockets.untracked()
    }

    /// Decodes one record and applies it, to `table` too when given. A transition comes
    /// back with what was learned, until the next call; other records (resets, accepts,
    /// exits) only change what later transitions get.
    pub fn feed(&mut self, bytes: &[u8], table: Option<&mut Table>) -> Option<&Step> {
        self.received += u64::from(!crate::decode::is_owner_fact(bytes));
        match decode_record(bytes) {
            Ok(Record::Transition(t)) => {
                let step = &mut self.step;
                step.transition = t;
                self.sockets
                    .apply_to(&mut step.transition, &mut step.context);
                if let Some(table) = table {
                    table.apply(&step.transition, step.context.owner.as_ref());
                }
                Some(step)
            }
            Ok(Record::Reset(r)) => {
                self.sockets.on_reset(&r);
                None
            }
            Ok(Record::Accept(a)) => {
                self.sockets.on_accept(&a);
                if let Some(table) = table {
                    table.set_owner(a.cookie, &a.owner);
                }
                None
            }
            Ok(Record::Exit(e)) => {
                self.sockets.on_exit(&e);
                None
            }
            Err(e) => {
                self.undecodable += 1;
                tracing::debug!("skipping a record: {e}");
                None
            }
        }
    }
}
