//! The columns of `enetstat top`'s views and the orders they sort in: numbers largest
//! first, names in order, ties broken the same way every refresh so rows do not jump about.

use std::time::Duration;

use super::model::{GroupBy, Row, Socket};

/// A column of the grouped views.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Column {
    Name,
    Active,
    Connects,
    Accepts,
    Failed,
    ResetsIn,
    ResetsOut,
    P50,
    P99,
    BytesIn,
    BytesOut,
    /// The process view's only: the container its sockets are in. Last, so a terminal too
    /// narrow for it loses it and nothing else.
    Container,
}

impl Column {
    /// Every column, in the order the process view shows them.
    pub const ALL: [Column; 12] = [
        Column::Name,
        Column::Active,
        Column::Connects,
        Column::Accepts,
        Column::Failed,
        Column::ResetsIn,
        Column::ResetsOut,
        Column::P50,
        Column::P99,
        Column::BytesIn,
        Column::BytesOut,
        Column::Container,
    ];

    /// The columns of the view grouped `by`, in order (a container names a process's
    /// sockets, not a remote endpoint's or a port's).
    pub fn of(by: GroupBy) -> &'static [Column] {
        match by {
            GroupBy::Process => &Column::ALL,
            GroupBy::Remote | GroupBy::LocalPort => &Column::ALL[..Column::ALL.len() - 1],
        }
    }

    fn value(self, r: &Row) -> u64 {
        let us = |d: Option<Duration>| d.map_or(0, |d| d.as_micros() as u64 + 1);
        match self {
            Column::Name | Column::Container => 0,
            Column::Active => r.active,
            Column::Connects => r.active_opens,
            Column::Accepts => r.passive_opens,
            Column::Failed => r.failed(),
            Column::ResetsIn => r.resets_in,
            Column::ResetsOut => r.resets_out,
            Column::P50 => us(r.connect_p50),
            Column::P99 => us(r.connect_p99),
            Column::BytesIn => r.bytes_in,
            Column::BytesOut => r.bytes_out,
        }
    }
}

/// Sorts rows by `column`: numbers largest first, names in order (rows with no container
/// after those with one); `reverse` turns it round. Ties go by pid, address or port, so the
/// order is stable from one refresh to the next.
pub fn sort_rows(rows: &mut [Row], column: Column, reverse: bool) {
    rows.sort_by(|a, b| {
        let primary = match column {
            Column::Name => a.key.cmp_for_ties(&b.key),
            Column::Container => {
                let k = |r: &Row| (r.container.is_none(), r.container.clone());
                k(a).cmp(&k(b))
            }
            c => c.value(b).cmp(&c.value(a)),
        };
        let primary = if reverse { primary.reverse() } else { primary };
        primary.then_with(|| a.key.cmp_for_ties(&b.key))
    });
}

/// A column of the connections view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnColumn {
    Process,
    Local,
    Remote,
    State,
    Age,
}

impl ConnColumn {
    pub const ALL: [ConnColumn; 5] = [
        ConnColumn::Process,
        ConnColumn::Local,
        ConnColumn::Remote,
        ConnColumn::State,
        ConnColumn::Age,
    ];
}

/// Sorts live sockets by `column`: ages oldest first, the rest in order; `reverse` turns it
/// round. Ties go by local then remote endpoint.
pub fn sort_sockets(sockets: &mut [Socket], column: ConnColumn, reverse: bool) {
    let ends = |s: &Socket| (s.local.addr, s.local.port, s.remote.addr, s.remote.port);
    sockets.sort_by(|a, b| {
        let primary = match column {
            ConnColumn::Process => {
                let k = |s: &Socket| s.owner.as_ref().map(|o| (o.comm.clone(), o.pid));
                k(a).cmp(&k(b))
            }
            ConnColumn::Local => (a.local.addr, a.local.port).cmp(&(b.local.addr, b.local.port)),
            ConnColumn::Remote => {
                (a.remote.addr, a.remote.port).cmp(&(b.remote.addr, b.remote.port))
            }
            ConnColumn::State => a.state.name().cmp(b.state.name()),
            ConnColumn::Age => b.age.cmp(&a.age),
        };
        let primary = if reverse { primary.reverse() } else { primary };
        primary.then_with(|| ends(a).cmp(&ends(b)))
    });
}
