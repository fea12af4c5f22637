//! `enetstat top -b`: each refresh printed for scripts, as one JSON object per line or as
//! text tables. The JSON field names are a stable interface, documented in the README.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use serde::Serialize;

use super::{
    cells::{self, Names},
    columns::{Column, ConnColumn, sort_rows, sort_sockets},
    keys::View,
    model::{Frame, Key, Row, Socket, per_second},
};
use crate::{render::millis, state::TcpState};

/// One group of a view, counts over the interval and the same per second.
#[derive(Debug, Serialize)]
pub struct JsonRow<'a> {
    /// Process view: the owner (null when unknown).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<Option<u32>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub comm: Option<Option<Cow<'a, str>>>,
    /// Process view: the process has exited (the row counts its last sockets).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_exited: Option<bool>,
    /// Process view: the container of its sockets (`runtime://id`), null when unknown.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Option<&'a str>>,
    /// Remote view: the address, and the port (null for the clients of a local service).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<String>,
    /// Remote view: the remote port; local-port view: the local port.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub port: Option<Option<u16>>,
    pub active: u64,
    pub connects: u64,
    pub accepts: u64,
    pub refused: u64,
    pub timeouts: u64,
    pub resets_in: u64,
    pub resets_out: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub connects_per_s: f64,
    pub accepts_per_s: f64,
    pub failed_per_s: f64,
    pub resets_in_per_s: f64,
    pub resets_out_per_s: f64,
    pub bytes_in_per_s: f64,
    pub bytes_out_per_s: f64,
    pub connect_p50_ms: Option<f64>,
    pub connect_p99_ms: Option<f64>,
    pub jumped: bool,
}

impl<'a> JsonRow<'a> {
    fn new(r: &'a Row, frame: &Frame) -> Self {
        let per_s = |n: u64| (per_second(n, frame.interval) * 1000.0).round() / 1000.0;
        let (mut pid, mut comm, mut addr, mut port) = (None, None, None, None);
        let (mut owner_exited, mut container) = (None, None);
        match &r.key {
            Key::Process(o) => {
                pid = Some(o.as_ref().map(|o| o.pid));
                comm = Some(o.as_ref().map(|o| Cow::Borrowed(&*o.comm)));
                owner_exited = Some(r.exited);
                container = Some(r.container.as_deref());
            }
            Key::Remote(e) => {
                addr = Some(e.addr.to_string());
                port = Some(e.port);
            }
            Key::LocalPort(p) => port = Some(Some(*p)),
        }
        Self {
            pid,
            comm,
            owner_exited,
            container,
            addr,
            port,
            active: r.active,
            connects: r.active_opens,
            accepts: r.passive_opens,
            refused: r.refused,
            timeouts: r.timeouts,
            resets_in: r.resets_in,
            resets_out: r.resets_out,
            bytes_in: r.bytes_in,
            bytes_out: r.bytes_out,
            connects_per_s: per_s(r.active_opens),
            accepts_per_s: per_s(r.passive_opens),
            failed_per_s: per_s(r.failed()),
            resets_in_per_s: per_s(r.resets_in),
            resets_out_per_s: per_s(r.resets_out),
            bytes_in_per_s: per_s(r.bytes_in),
            bytes_out_per_s: per_s(r.bytes_out),
            connect_p50_ms: r.connect_p50.map(millis),
            connect_p99_ms: r.connect_p99.map(millis),
            jumped: r.jumped,
        }
    }
}

/// One live connection.
#[derive(Debug, Serialize)]
pub struct JsonSocket<'a> {
    pub pid: Option<u32>,
    pub comm: Option<&'a str>,
    pub owner_exited: bool,
    pub laddr: String,
    pub lport: Option<u16>,
    pub raddr: String,
    pub rport: Option<u16>,
    pub state: TcpState,
    /// Milliseconds in the current state, when known.
    pub age_ms: Option<f64>,
    /// `runtime://id`, when the socket's cgroup is a container's.
    pub container: Option<&'a str>,
}

impl<'a> JsonSocket<'a> {
    fn new(s: &'a Socket) -> Self {
        Self {
            pid: s.owner.as_ref().map(|o| o.pid),
            comm: s.owner.as_ref().map(|o| &*o.comm),
            owner_exited: s.owner.as_ref().is_some_and(|o| o.exited),
            laddr: s.local.addr.to_string(),
            lport: s.local.port,
            raddr: s.remote.addr.to_string(),
            rport: s.remote.port,
            state: s.state,
            age_ms: s.age.map(millis),
            container: s.container.as_deref(),
        }
    }
}

/// One refresh.
#[derive(Debug, Serialize)]
pub struct JsonFrame<'a> {
    /// RFC 3339, UTC.
    pub time: String,
    /// Seconds the counts cover.
    pub interval_s: f64,
    /// Groups left out because a view had too many (see the README).
    pub dropped_groups: u64,
    /// Events not counted since top started: lost to a full ring buffer, undecodable, or
    /// dropped by the daemon because this client read too slowly.
    pub lost_events: u64,
    pub processes: Vec<JsonRow<'a>>,
    pub remotes: Vec<JsonRow<'a>>,
    pub local_ports: Vec<JsonRow<'a>>,
    pub connections: Vec<JsonSocket<'a>>,
}

/// Sorts every view as it first shows.
fn sort_all(frame: &mut Frame) {
    for view in [View::Processes, View::Remotes, View::LocalPorts] {
        let ui = super::keys::Ui::new(view, String::new());
        if let Some(by) = view.group_by() {
            sort_rows(frame.rows_mut(by), ui.column(), false);
        }
    }
    sort_sockets(&mut frame.connections, ConnColumn::Age, false);
}

/// One refresh as one line of JSON.
pub fn write_json(
    out: &mut impl Write,
    frame: &mut Frame,
    time: String,
    lost_events: u64,
) -> io::Result<()> {
    sort_all(frame);
    json_frame(out, frame, time, lost_events)
}

fn json_frame<'a>(
    out: &mut impl Write,
    frame: &'a Frame,
    time: String,
    lost_events: u64,
) -> io::Result<()> {
    let rows = |rows: &'a [Row]| -> Vec<JsonRow<'a>> {
        rows.iter().map(|r| JsonRow::new(r, frame)).collect()
    };
    let json = JsonFrame {
        time,
        interval_s: frame.interval.as_secs_f64(),
        dropped_groups: frame.dropped,
        lost_events,
        processes: rows(&frame.processes),
        remotes: rows(&frame.remotes),
        local_ports: rows(&frame.local_ports),
        connections: frame.connections.iter().map(JsonSocket::new).collect(),
    };
    crate::render::escape::json_to_writer(&mut *out, &json)?;
    out.write_all(b"\n")
}

/// One refresh as text: a title, the totals, and the view's table, then a blank line.
pub fn write_text(
    out: &mut impl Write,
    frame: &mut Frame,
    view: View,
    names: &mut Names,
    title: &str,
) -> io::Result<()> {
    sort_all(frame);
    writeln!(out, "{title}")?;
    writeln!(out, "{}", cells::totals(frame))?;
    match view.group_by() {
        Some(by) => {
            let rows = frame.rows(by);
            let columns = Column::of(by);
            names.prepare(rows, &[]);
            let cells: Vec<Vec<String>> = rows
                .iter()
                .map(|row| cells::row_cells(row, columns, frame.interval, names, 0))
                .collect();
            let name_width = cells
                .iter()
                .map(|c| c[0].chars().count())
                .chain([cells::width(Column::Name).into()])
                .max()
                .unwrap_or(0);
            let line = |cells: &mut dyn Iterator<Item = (Column, String)>| {
                let mut s = String::new();
                for (c, text) in cells {
                    let w = usize::from(cells::width(c));
                    match c {
                        Column::Name => s.push_str(&format!("{text:<name_width$}")),
                        Column::Container => s.push_str(&format!(" {text:<w$}")),
                        _ => s.push_str(&format!(" {text:>w$}")),
                    }
                }
                s.trim_end().to_owned()
            };
            let header = line(
                &mut columns
                    .iter()
                    .map(|&c| (c, cells::header(view, c).to_owned())),
            );
            writeln!(out, "{header}")?;
            for row in cells {
                writeln!(out, "{}", line(&mut columns.iter().copied().zip(row)))?;
            }
        }
        None => {
            names.prepare(&[], &frame.connections);
            let line = |cells: &mut dyn Iterator<Item = (ConnColumn, String)>| {
                let mut s = String::new();
                for (c, text) in cells {
                    s.push_str(&format!(
                        "{text:<w$} ",
                        w = usize::from(cells::conn_width(c))
                    ));
                }
                s.trim_end().to_owned()
            };
            let header = line(
                &mut ConnColumn::ALL
                    .into_iter()
                    .map(|c| (c, cells::conn_header(c).to_owned())),
            );
            writeln!(out, "{header}")?;
            for s in &frame.connections {
                let cells = cells::socket_cells(s, names);
                writeln!(out, "{}", line(&mut ConnColumn::ALL.into_iter().zip(cells)))?;
            }
        }
    }
    writeln!(out)
}
