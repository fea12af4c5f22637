//! Snapshots in netstat's shape: its title, its columns in its order, its address style
//! (`addr:port`, `*` for no port, truncated to the column unless wide), plus enetstat's
//! additions: the socket cookie, network namespace and cgroup (or container) with `-e`, and
//! AGE while tracing.

use std::{
    io::{self, Write},
    time::Duration,
};

use super::Row;
use crate::render::escape_comm;

/// Which columns a text snapshot has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Columns {
    /// `-e`: User and Inode where netstat puts them (before PID/Program name), then enetstat's
    /// own Cookie, Netns and Cgroup at the end (Cgroup last, as it has no fixed width).
    pub extend: bool,
    /// `-p`: PID/Program name.
    pub programs: bool,
    /// While tracing: AGE, after netstat's columns and before the `-e` columns of enetstat's
    /// own, so netstat's columns keep netstat's places whatever the flags.
    pub age: bool,
    /// `-w`: addresses are never truncated.
    pub wide: bool,
}

/// Which sockets the title says are shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Title {
    /// `-a`
    All,
    /// `-l`
    Servers,
    /// the default
    Connections,
}

const ADDR_WIDTH: usize = 23;

/// `host:port` as netstat prints it: no brackets around IPv6, `*` for no port, the host part
/// cut so the whole fits the column unless `wide`.
pub fn address(host: &str, port: &str, wide: bool) -> String {
    let room = ADDR_WIDTH.saturating_sub(port.len() + 1);
    if !wide && host.chars().count() > room {
        let cut: String = host.chars().take(room).collect();
        format!("{cut}:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A duration in a few characters: `850us`, `12.3ms`, `4.2s`, `3m07s`, `2h13m`, `3d04h`.
pub fn short_duration(d: Duration) -> String {
    let us = d.as_micros();
    let s = d.as_secs();
    match () {
        () if us < 1_000 => format!("{us}us"),
        () if us < 1_000_000 => format!("{:.1}ms", us as f64 / 1_000.0),
        () if s < 60 => format!("{:.1}s", d.as_secs_f64()),
        () if s < 3_600 => format!("{}m{:02}s", s / 60, s % 60),
        () if s < 86_400 => format!("{}h{:02}m", s / 3_600, (s % 3_600) / 60),
        () => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3_600),
    }
}

/// Text for one row: the cells that need names, already turned into text by the caller.
pub struct TextRow<'a> {
    pub row: &'a Row,
    pub local: &'a str,
    pub remote: &'a str,
    /// `-e` only.
    pub user: &'a str,
    /// `-e` only: the container (`docker://4f1e2d3c4b5a`), else the cgroup path, else `-`.
    pub cgroup: &'a str,
}

/// AGE's width when a column follows it: the longest [`short_duration`], `999.9ms`.
const AGE_WIDTH: usize = 7;

pub fn write_title(out: &mut impl Write, title: Title) -> io::Result<()> {
    let which = match title {
        Title::All => "servers and established",
        Title::Servers => "only servers",
        Title::Connections => "w/o servers",
    };
    writeln!(out, "Active Internet connections ({which})")
}

pub fn write_header(out: &mut impl Write, cols: Columns) -> io::Result<()> {
    let mut line = format!(
        "Proto Recv-Q Send-Q {:<w$} {:<w$} {:<11}",
        "Local Address",
        "Foreign Address",
        "State",
        w = ADDR_WIDTH
    );
    if cols.extend {
        line.push_str(&format!(" {:<10} {:<10}", "User", "Inode"));
    }
    if cols.programs {
        line.push_str(&format!(" {:<22}", "PID/Program name"));
    }
    if cols.age {
        line.push_str(&format!(" {:<AGE_WIDTH$}", "AGE"));
    }
    if cols.extend {
        line.push_str(&format!(" {:<18} {:<10} Cgroup", "Cookie", "Netns"));
    }
    writeln!(out, "{}", line.trim_end())
}

pub fn write_row(out: &mut impl Write, r: &TextRow<'_>, cols: Columns) -> io::Result<()> {
    let mut line = String::new();
    row_line(&mut line, r, cols);
    out.write_all(line.as_bytes())
}

/// Appends `s` left-aligned in `width` characters, as `{:<width$}` does.
fn push_left(line: &mut String, s: &str, width: usize) {
    line.push_str(s);
    let n = if s.is_ascii() {
        s.len()
    } else {
        s.chars().count()
    };
    for _ in n..width {
        line.push(' ');
    }
}

/// Appends `n` in decimal, right-aligned in `width`, as `{:>width$}` does.
fn push_right(line: &mut String, n: u64, width: usize) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut v = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for _ in digits.len() - i..width {
        line.push(' ');
    }
    // Only ASCII digits were written.
    line.push_str(std::str::from_utf8(&digits[i..]).unwrap_or_default());
}

/// Appends `n` in decimal.
fn push_num(line: &mut String, n: u64) {
    push_right(line, n, 0);
}

/// Appends `n` in decimal left-aligned in `width`, or `-` when there is none.
fn push_left_num(line: &mut String, n: Option<u64>, width: usize) {
    let at = line.len();
    match n {
        Some(n) => push_num(line, n),
        None => line.push('-'),
    }
    for _ in line.len() - at..width {
        line.push(' ');
    }
}

/// Replaces `buf` with the numeric `addr:port` of an endpoint as [`address`] writes it
/// (`*` for no port), without allocating once `buf` has room.
pub fn numeric_address(buf: &mut String, addr: std::net::IpAddr, port: Option<u16>, wide: bool) {
    use std::fmt::Write as _;
    buf.clear();
    match addr {
        std::net::IpAddr::V4(a) => {
            for (i, o) in a.octets().into_iter().enumerate() {
                if i > 0 {
                    buf.push('.');
                }
                push_num(buf, u64::from(o));
            }
        }
        std::net::IpAddr::V6(a) => {
            let _ = write!(buf, "{a}");
        }
    }
    let host_len = buf.len();
    let port_len = match port {
        None => 1,
        Some(p) => p.checked_ilog10().unwrap_or(0) as usize + 1,
    };
    let room = ADDR_WIDTH.saturating_sub(port_len + 1);
    if !wide && host_len > room {
        buf.truncate(room);
    }
    buf.push(':');
    match port {
        None => buf.push('*'),
        Some(p) => push_num(buf, u64::from(p)),
    }
}

/// Replaces `line` with one row as text, newline included: netstat's columns, each padded
/// in place (no string per cell).
pub fn row_line(line: &mut String, text: &TextRow<'_>, cols: Columns) {
    let row = text.row;
    line.clear();
    push_left(line, row.proto_name(), 5);
    line.push(' ');
    push_right(line, u64::from(row.recv_q), 6);
    line.push(' ');
    push_right(line, u64::from(row.send_q), 6);
    line.push(' ');
    push_left(line, text.local, ADDR_WIDTH);
    line.push(' ');
    push_left(line, text.remote, ADDR_WIDTH);
    line.push(' ');
    push_left(line, row.state_text(), 11);
    if cols.extend {
        line.push(' ');
        push_left(line, text.user, 10);
        line.push(' ');
        push_left_num(line, Some(row.inode).filter(|&i| i != 0), 10);
    }
    if cols.programs {
        line.push(' ');
        match &row.owner {
            Some(o) => {
                let text = format!(
                    "{}/{}{}",
                    o.pid,
                    escape_comm(&o.comm),
                    if o.holds { "" } else { "*" }
                );
                push_left(line, &text, 22);
            }
            None => push_left(line, "-", 22),
        }
    }
    if cols.age {
        line.push(' ');
        let age = match (&row.closed, row.age) {
            (Some(c), _) => c.lifetime,
            (None, a) => a,
        };
        match age {
            Some(a) => push_left(line, &short_duration(a), AGE_WIDTH),
            None => push_left(line, "-", AGE_WIDTH),
        }
    }
    if cols.extend {
        line.push(' ');
        let cookie = row.cookie.known().map(|c| format!("{c:#x}"));
        push_left(line, cookie.as_deref().unwrap_or("-"), 18);
        line.push(' ');
        push_left_num(line, row.netns.map(u64::from), 10);
        line.push(' ');
        line.push_str(text.cgroup);
    }
    let end = line.trim_end().len();
    line.truncate(end);
    line.push('\n');
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

    use super::*;
    use crate::{
        diag::Proto,
        event::{Cookie, Family},
        render::snapshot::{ClosedInfo, ShownOwner},
        state::TcpState,
    };

    fn row() -> Row {
        Row {
            proto: Proto::Tcp,
            family: Family::Ipv4,
            local_addr: IpAddr::V4(Ipv4Addr::LOCALHOST),
            local_port: Some(48898),
            remote_addr: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            remote_port: None,
            state: TcpState::Listen,
            recv_q: 0,
            send_q: 128,
            owner: Some(ShownOwner {
                pid: 812,
                comm: "nginx".into(),
                holds: true,
            }),
            uid: Some(0),
            inode: 4242,
            cookie: Cookie(0x2a),
            netns: Some(4_026_531_840),
            cgroup: 77,
            age: Some(Duration::from_secs(2 * 3600 + 13 * 60)),
            closed: None,
        }
    }

    fn text(r: &Row, local: &str, remote: &str, cols: Columns) -> String {
        let mut out = Vec::new();
        let tr = TextRow {
            row: r,
            local,
            remote,
            user: "root",
            cgroup: "docker://4f1e2d3c4b5a",
        };
        write_row(&mut out, &tr, cols).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn rows_line_up_under_netstats_header() {
        let cols = Columns {
            programs: true,
            age: true,
            ..Columns::default()
        };
        let mut out = Vec::new();
        write_title(&mut out, Title::All).unwrap();
        write_header(&mut out, cols).unwrap();
        let head = String::from_utf8(out).unwrap();
        let line = text(&row(), "localhost:48898", "0.0.0.0:*", cols);
        assert_eq!(
            head,
            "Active Internet connections (servers and established)\n\
             Proto Recv-Q Send-Q Local Address           Foreign Address         State       PID/Program name       AGE\n"
        );
        assert_eq!(
            line,
            "tcp        0    128 localhost:48898         0.0.0.0:*               LISTEN      812/nginx              2h13m\n"
        );
        let h = head.lines().nth(1).unwrap();
        assert_eq!(h.find("State"), line.find("LISTEN"));
        assert_eq!(h.find("PID"), line.find("812"));
        assert_eq!(h.find("AGE"), line.find("2h13m"));
    }

    #[test]
    fn udp_closed_orphans_and_extended_columns() {
        let mut r = row();
        r.proto = Proto::Udp;
        r.state = TcpState::Close;
        assert_eq!(r.state_text(), "");
        r.proto = Proto::Tcp;
        r.state = TcpState::TimeWait;
        r.inode = 0;
        r.owner.as_mut().unwrap().holds = false;
        let cols = Columns {
            extend: true,
            programs: true,
            ..Columns::default()
        };
        let line = text(&r, "a:1", "b:2", cols);
        assert!(
            line.contains(
                "TIME_WAIT   root       -          812/nginx*             0x2a               4026531840 docker://4f1e2d3c4b5a\n"
            ),
            "{line}"
        );
        r.closed = Some(ClosedInfo {
            lifetime: Some(Duration::from_micros(420)),
            ago: Duration::from_secs(1),
            last_state: TcpState::FinWait2,
            errno: 0,
        });
        let line = text(&r, "a:1", "b:2", Columns { age: true, ..cols });
        assert!(
            line.contains("CLOSED") && line.contains(" 812/nginx*             420us   0x2a "),
            "{line}"
        );
        let mut out = Vec::new();
        write_header(&mut out, Columns { age: true, ..cols }).unwrap();
        let head = String::from_utf8(out).unwrap();
        // netstat's columns in netstat's order, then enetstat's: AGE, then -e's own.
        let names = [
            "Proto",
            "Recv-Q",
            "Send-Q",
            "Local Address",
            "Foreign Address",
            "State",
            "User",
            "Inode",
            "PID/Program name",
            "AGE",
            "Cookie",
            "Netns",
            "Cgroup",
        ];
        let at: Vec<usize> = names.iter().map(|n| head.find(n).unwrap()).collect();
        assert!(at.is_sorted(), "{head}");
        assert_eq!(head.find("State"), line.find("CLOSED"));
        assert_eq!(head.find("User"), line.find("root"));
        assert_eq!(head.find("PID/Program name"), line.find("812/nginx*"));
        assert_eq!(head.find("AGE"), line.find("420us"));
        assert_eq!(head.find("Cookie"), line.find("0x2a"));
        assert_eq!(head.find("Netns"), line.find("4026531840"));
        assert_eq!(head.find("Cgroup"), line.find("docker://"));
    }

    #[test]
    fn addresses_are_cut_to_the_column_unless_wide() {
        let v6 = Ipv6Addr::new(
            0x2001, 0xdb8, 0x1234, 0x5678, 0x9abc, 0xdef0, 0x1234, 0x5678,
        );
        let a = address(&v6.to_string(), "443", false);
        assert_eq!(a.len(), 23);
        assert!(a.ends_with(":443"));
        assert_eq!(address(&v6.to_string(), "443", true), format!("{v6}:443"));
        assert_eq!(address("::", "*", false), ":::*");
    }

    #[test]
    fn short_durations() {
        assert_eq!(short_duration(Duration::from_micros(850)), "850us");
        assert_eq!(short_duration(Duration::from_micros(12_340)), "12.3ms");
        assert_eq!(short_duration(Duration::from_millis(4_200)), "4.2s");
        assert_eq!(short_duration(Duration::from_secs(187)), "3m07s");
        assert_eq!(
            short_duration(Duration::from_secs(3 * 86_400 + 4 * 3600)),
            "3d04h"
        );
    }
}
