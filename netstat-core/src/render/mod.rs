//! Output formats. Renderers take decoded transitions plus what the tracker knows and write
//! lines; they never reach back into the kernel.

mod csv_columns;
pub mod escape;
mod json_line;
mod json_writer;
pub mod lifecycle;
pub mod snapshot;
mod stream;
pub mod transition;

pub use escape::escape_comm;
pub use stream::{Renderer, Stream};

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::{cgroup::Cgroup, end::End, event::Owner, event::Transition};

/// How output is written, whatever it shows: the event log, the connection log, a snapshot,
/// and (by these names on the wire) what a daemon client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// Aligned columns for people.
    Text,
    /// JSON objects, one a line.
    Json,
    /// A header row, then one row a line.
    Csv,
}

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
