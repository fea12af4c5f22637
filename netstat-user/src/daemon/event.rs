//! One transition as the daemon hands it out: built once by the engine, shared by every
//! subscriber whose filter it matches and by the event log. Its own module so that the
//! engine, which makes events, and the writers, which take them, do not import each other.

use std::{sync::Arc, time::Duration};

use chrono::{DateTime, Utc};

use crate::{
    cgroup::Cgroup,
    end::End,
    event::{Owner, Transition},
    life::Lifecycle,
    render::Line,
};

/// One transition with everything the renderers need, shared by every subscriber it matches.
#[derive(Clone, Debug)]
pub struct Event {
    pub transition: Transition,
    pub time: DateTime<Utc>,
    pub owner: Option<Owner>,
    pub in_old: Option<Duration>,
    pub end: Option<End>,
    /// The finished connection, when this transition closed one.
    pub life: Option<Lifecycle>,
    /// What the socket's cgroup id names (path, container), when it names anything.
    pub cgroup: Option<Arc<Cgroup>>,
}

impl Event {
    /// What a renderer shows of it: subscriptions and the event log write the same line.
    pub fn line(&self) -> Line<'_> {
        Line {
            transition: &self.transition,
            time: self.time,
            owner: self.owner.as_ref(),
            in_old: self.in_old,
            end: self.end,
            cgroup: self.cgroup.as_deref(),
        }
    }
}
