//! How a snapshot is shown: which sockets, in which format, with which columns. Standalone
//! flags and a daemon's snapshot request both arrive here through one conversion,
//! [`SnapshotRequest::options`](crate::protocol::SnapshotRequest::options).

use std::time::Duration;

use crate::{
    render::Format,
    table::{Limits, select::Selection},
};

/// How to show a snapshot.
#[derive(Clone, Debug)]
pub struct SnapshotOptions {
    pub select: Selection,
    pub format: Format,
    /// `-n`: no name lookups.
    pub numeric: bool,
    /// `-p`: PID/Program name.
    pub programs: bool,
    /// `-e`: user, inode, cookie.
    pub extend: bool,
    /// `-w`: no truncated addresses.
    pub wide: bool,
    /// `--recent`: closed connections from this window (while tracing).
    pub recent: Option<Duration>,
    pub limits: Limits,
    /// Longest wait for host names per refresh.
    pub resolve_budget: Duration,
}

impl Default for SnapshotOptions {
    fn default() -> Self {
        Self {
            select: Selection::default(),
            format: Format::Text,
            numeric: false,
            programs: false,
            extend: false,
            wide: false,
            recent: None,
            limits: Limits::default(),
            resolve_budget: Duration::from_secs(1),
        }
    }
}
