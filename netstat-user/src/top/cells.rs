//! The text of `enetstat top`'s cells, shared by the screen and the text batch output:
//! columns, their headers and widths, and numbers in a few characters. Names of processes
//! are escaped by the one rule ([`crate::render::escape`]).

use std::{net::IpAddr, time::Duration};

use super::{
    columns::{Column, ConnColumn},
    keys::View,
    model::{Frame, Key, Row, Socket, per_second},
};
use crate::{
    event::{Endpoint, Owner},
    render::{escape_comm, snapshot::text::short_duration, transition::text::pid_text},
    resolve::Resolver,
    sockdiag::Proto,
};

/// Host and service names, unless `--numeric`.
pub struct Names {
    resolver: Option<Resolver>,
}

impl Names {
    /// Names looked up with at most `budget` of waiting per refresh; `None`: numbers only.
    pub fn new(budget: Option<Duration>) -> Self {
        Self {
            resolver: budget.map(Resolver::new),
        }
    }

    /// Looks up what `rows` and `sockets` will show.
    pub fn prepare(&mut self, rows: &[Row], sockets: &[Socket]) {
        let Some(r) = &mut self.resolver else { return };
        let addrs = rows
            .iter()
            .filter_map(|row| match &row.key {
                Key::Remote(e) => Some(e.addr),
                _ => None,
            })
            .chain(sockets.iter().map(|s| s.remote.addr));
        let ports = rows.iter().filter_map(|row| match row.key {
            Key::LocalPort(p) => Some((p, Proto::Tcp)),
            _ => None,
        });
        r.prepare(addrs, ports);
    }

    fn host(&self, addr: IpAddr) -> Option<&str> {
        self.resolver.as_ref()?.host(addr)
    }

    fn service(&self, port: u16) -> Option<&str> {
        self.resolver.as_ref()?.service(port, Proto::Tcp)
    }

    /// `host:port`, `[v6]:port`, `*` for a port left out.
    pub fn endpoint(&self, e: &Endpoint) -> String {
        let port = e.port.map_or_else(|| "*".to_owned(), |p| p.to_string());
        match (self.host(e.addr), e.addr) {
            (Some(host), _) => format!("{}:{port}", escape_comm(host)),
            (None, IpAddr::V6(a)) => format!("[{a}]:{port}"),
            (None, IpAddr::V4(a)) => format!("{a}:{port}"),
        }
    }
}

/// `PID COMM`, or `-` when no owner is known; `PID*` when the process has exited (the
/// socket's last owner), as `watch` and snapshots mark it.
pub fn owner(o: Option<&Owner>) -> String {
    match o {
        Some(o) => format!("{} {}", pid_text(o), escape_comm(&o.comm)),
        None => "-".to_owned(),
    }
}

/// A container cell: the 12-digit short id `docker ps` and `crictl ps` show, blank when none
/// is known.
pub fn container(c: Option<&str>) -> String {
    let id = c.map_or("", |c| c.rsplit_once("://").map_or(c, |(_, id)| id));
    escape_comm(&id.chars().take(12).collect::<String>()).into_owned()
}

/// The first cell of a grouped row: `!` marks a jump in failures or resets.
pub fn name(row: &Row, names: &Names) -> String {
    let mark = if row.jumped { "!" } else { "" };
    let name = match &row.key {
        Key::Process(o) => owner(
            o.as_ref()
                .map(|o| Owner {
                    exited: row.exited,
                    ..o.clone()
                })
                .as_ref(),
        ),
        Key::Remote(e) => names.endpoint(e),
        Key::LocalPort(p) => match names.service(*p) {
            Some(s) => format!("{p} ({})", escape_comm(s)),
            None => p.to_string(),
        },
    };
    format!("{mark}{name}")
}

/// `text` in at most `width` characters: cut with `…`. An endpoint (`keep_port`) keeps its
/// port and loses the end of its host instead.
pub fn fit(text: &str, width: usize, keep_port: bool) -> String {
    let len = text.chars().count();
    if len <= width || width == 0 {
        return text.to_owned();
    }
    if keep_port && let Some(colon) = text.rfind(':') {
        let port = &text[colon..];
        let room = width.saturating_sub(port.chars().count() + 1);
        if room > 0 {
            let host: String = text[..colon].chars().take(room).collect();
            return format!("{host}…{port}");
        }
    }
    let cut: String = text.chars().take(width - 1).collect();
    format!("{cut}…")
}

/// The totals line above every view, on the screen and in batch text: what is open now, and
/// the rates of opens, accepts, failures and resets over the frame's interval.
pub fn totals(frame: &Frame) -> String {
    let t = frame.total();
    let r = |n| rate(per_second(n, frame.interval));
    format!(
        "active {}  conn {}/s  accept {}/s  failed {}/s  reset in {}/s out {}/s",
        t.active,
        r(t.active_opens),
        r(t.passive_opens),
        r(t.failed()),
        r(t.resets_in),
        r(t.resets_out),
    )
}

/// A rate in at most 5 characters: `0`, `0.5`, `12.5`, `350`, `1234`, `45k`, `1.2M`.
pub fn rate(per_s: f64) -> String {
    match per_s {
        r if r <= 0.0 => "0".to_owned(),
        r if r < 100.0 => {
            let s = format!("{r:.1}");
            s.strip_suffix(".0").map_or(s.clone(), str::to_owned)
        }
        r if r < 10_000.0 => format!("{r:.0}"),
        r if r < 1e6 => format!("{:.0}k", r / 1e3),
        r => format!("{:.1}M", r / 1e6),
    }
}

/// Bytes per second in at most 5 characters: `0`, `512`, `9.5K`, `120K`, `3.4M`, `1.2G`.
pub fn bytes(per_s: f64) -> String {
    let units = [(1u64 << 30, 'G'), (1 << 20, 'M'), (1 << 10, 'K')];
    for (size, unit) in units {
        let n = per_s / size as f64;
        if n >= 1.0 {
            return if n < 10.0 {
                format!("{n:.1}{unit}")
            } else {
                format!("{n:.0}{unit}")
            };
        }
    }
    format!("{per_s:.0}")
}

/// A connect latency: `-` when none was measured.
pub fn latency(d: Option<Duration>) -> String {
    d.map_or_else(|| "-".to_owned(), short_duration)
}

/// A grouped view's headers.
pub fn header(view: View, column: Column) -> &'static str {
    match column {
        Column::Name => match view {
            View::Remotes => "REMOTE",
            View::LocalPorts => "PORT",
            _ => "PID COMM",
        },
        Column::Active => "ACT",
        Column::Connects => "CONN",
        Column::Accepts => "ACPT",
        Column::Failed => "FAIL",
        Column::ResetsIn => "RSTin",
        Column::ResetsOut => "RSTout",
        Column::P50 => "P50",
        Column::P99 => "P99",
        Column::BytesIn => "RX",
        Column::BytesOut => "TX",
        Column::Container => "CONTAINER",
    }
}

/// The widths of the grouped views' columns (the name takes what is left, at least this):
/// each header fits with the sort arrow after it.
pub fn width(column: Column) -> u16 {
    match column {
        Column::Name => 15,
        Column::Active
        | Column::Connects
        | Column::Accepts
        | Column::Failed
        | Column::BytesIn
        | Column::BytesOut => 5,
        Column::ResetsOut => 7,
        Column::Container => 12,
        _ => 6,
    }
}

/// The cells of a grouped row, one per column of `columns`, the name in at most
/// `name_width` characters (0: whole).
pub fn row_cells(
    row: &Row,
    columns: &[Column],
    interval: Duration,
    names: &Names,
    name_width: usize,
) -> Vec<String> {
    let r = |n: u64| rate(per_second(n, interval));
    let keep_port = matches!(row.key, Key::Remote(_));
    columns
        .iter()
        .map(|c| match c {
            Column::Name => fit(&name(row, names), name_width, keep_port),
            Column::Active => row.active.to_string(),
            Column::Connects => r(row.active_opens),
            Column::Accepts => r(row.passive_opens),
            Column::Failed => r(row.failed()),
            Column::ResetsIn => r(row.resets_in),
            Column::ResetsOut => r(row.resets_out),
            Column::P50 => latency(row.connect_p50),
            Column::P99 => latency(row.connect_p99),
            Column::BytesIn => bytes(per_second(row.bytes_in, interval)),
            Column::BytesOut => bytes(per_second(row.bytes_out, interval)),
            Column::Container => container(row.container.as_deref()),
        })
        .collect()
}

pub fn conn_header(column: ConnColumn) -> &'static str {
    match column {
        ConnColumn::Process => "PID COMM",
        ConnColumn::Local => "LOCAL",
        ConnColumn::Remote => "REMOTE",
        ConnColumn::State => "STATE",
        ConnColumn::Age => "AGE",
    }
}

pub fn conn_width(column: ConnColumn) -> u16 {
    match column {
        ConnColumn::Process => 14,
        ConnColumn::Local | ConnColumn::Remote => 22,
        ConnColumn::State => 11,
        ConnColumn::Age => 7,
    }
}

/// The cells of a connection, in [`ConnColumn::ALL`] order.
pub fn socket_cells(s: &Socket, names: &Names) -> Vec<String> {
    ConnColumn::ALL
        .iter()
        .map(|c| match c {
            ConnColumn::Process => owner(s.owner.as_ref()),
            ConnColumn::Local => Names::new(None).endpoint(&s.local),
            ConnColumn::Remote => names.endpoint(&s.remote),
            ConnColumn::State => s.state.name().to_owned(),
            ConnColumn::Age => s.age.map_or_else(|| "-".to_owned(), short_duration),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_fit_their_columns() {
        for r in [0.04, 99.95, 9999.4, 999_499.0, 99e6] {
            assert!(rate(r).chars().count() <= 5, "{r}: {}", rate(r));
        }
        assert_eq!(rate(0.0), "0");
        assert_eq!(rate(0.5), "0.5");
        assert_eq!(rate(12.0), "12");
        assert_eq!(rate(350.4), "350");
        assert_eq!(rate(45_300.0), "45k");
        assert_eq!(rate(1_234_567.0), "1.2M");
        assert_eq!(bytes(512.0), "512");
        assert_eq!(bytes(9.5 * 1024.0), "9.5K");
        assert_eq!(bytes(3.4 * 1024.0 * 1024.0), "3.4M");
        for c in Column::ALL.into_iter().skip(1) {
            // The header and the sort arrow.
            let h = header(View::Processes, c).chars().count() + 1;
            assert!(h <= usize::from(width(c)), "{c:?}");
        }
    }

    #[test]
    fn endpoints_keep_their_port_when_cut() {
        assert_eq!(fit("localhost:8080", 12, true), "localh…:8080");
        assert_eq!(fit("localhost:8080", 14, true), "localhost:8080");
        assert_eq!(fit("20519 enetstat-peer", 12, false), "20519 enets…");
        assert_eq!(fit("[2001:db8::1]:443", 10, true), "[2001…:443");
    }

    #[test]
    fn hostile_names_are_escaped() {
        let o = Owner::new(7, "a\x1b[2Jb");
        assert_eq!(owner(Some(&o)), "7 a\\x1b[2Jb");
        let e = Endpoint::new("::1".parse().unwrap(), 443);
        assert_eq!(Names::new(None).endpoint(&e), "[::1]:443");
    }
}
