//! Output formats. Renderers take decoded transitions plus what the tracker knows and write
//! lines; they never reach back into the kernel.

pub mod csv;
pub mod escape;
pub mod json;
mod json_writer;
pub mod life;
pub mod netstat;
pub mod table_data;
pub mod text;

pub use escape::escape_comm;

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{cgroup::Cgroup, end::End, event::Owner, event::Transition};

/// Everything a renderer shows about one transition.
#[derive(Clone, Copy, Debug)]
pub struct Line<'a> {
    pub transition: &'a Transition,
    pub time: DateTime<Utc>,
    pub owner: Option<&'a Owner>,
    pub in_old: Option<Duration>,
    /// How the connection ended, on a transition into CLOSE.
    pub end: Option<End>,
    /// What the socket's cgroup id names, when it names anything.
    pub cgroup: Option<&'a Cgroup>,
}

/// Milliseconds with microsecond precision, as the MS column and `ms_in_old` show them.
pub fn millis(d: Duration) -> f64 {
    (d.as_nanos() as f64 / 1_000.0).round() / 1_000.0
}
