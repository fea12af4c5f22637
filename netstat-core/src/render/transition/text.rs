//! The human-readable event log, one aligned line per transition.
//!
//! Two layouts. The default fits 80 columns (then, on a transition into CLOSE that was not an
//! orderly close, how it ended: at most 95 columns in all): seconds-resolution time, the local port only
//! (the local address is nearly always this host's), the remote endpoint shortened from the
//! left when it is longer than an IPv4 one (IPv6), ESTABLISHED shortened to ESTAB, process
//! names cut at 8 characters and a compact MS. `--wide` shows everything: microsecond time,
//! both full endpoints, full state names and process names.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use chrono::{Local, Utc};

use crate::end::End;

use crate::render::{Line, escape_comm, millis};
use crate::state::TcpState;

/// Which clock the TIME column shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Local,
    Utc,
}

/// What the TIME column shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Time {
    /// Wall-clock time of day.
    Wall(Zone),
    /// Seconds since `start_ns` (kernel monotonic nanoseconds, when tracing began).
    Relative { start_ns: u64 },
    /// No TIME column.
    Hidden,
}

/// How text lines look.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TextStyle {
    /// The full layout instead of the 80-column one.
    pub wide: bool,
    pub time: Time,
}

impl Default for TextStyle {
    fn default() -> Self {
        Self {
            wide: false,
            time: Time::Wall(Zone::Local),
        }
    }
}

/// Width of the compact layout's columns; they add up to 80 with the single spaces between.
const TIME_W: usize = 8;
const PID_W: usize = 7;
const COMM_W: usize = 8;
const LPORT_W: usize = 5;
/// The longest IPv4 endpoint, `255.255.255.255:65535`.
const REMOTE_W: usize = 21;
/// `FIN_WAIT2>TIME_WAIT`, `CLOSE_WAIT>LAST_ACK`.
const STATES_W: usize = 19;
const MS_W: usize = 6;
/// The widest a compact line gets.
pub const COMPACT_WIDTH: usize = TIME_W + PID_W + COMM_W + LPORT_W + REMOTE_W + STATES_W + MS_W + 6;

/// Wide layout, after the time: the columns as they have always been.
const WIDE_TIME_W: usize = 15;

pub fn write_header(out: &mut impl Write, style: &TextStyle) -> io::Result<()> {
    let (time_w, rest) = if style.wide {
        (
            WIDE_TIME_W,
            "PID     COMM        LOCAL                  REMOTE                 OLD          -> NEW          MS".to_owned(),
        )
    } else {
        (
            TIME_W,
            format!(
                "{:<PID_W$} {:<COMM_W$} {:<LPORT_W$} {:<REMOTE_W$} {:<STATES_W$} MS",
                "PID", "COMM", "LPORT", "REMOTE", "OLD>NEW"
            ),
        )
    };
    match style.time {
        Time::Hidden => writeln!(out, "{rest}"),
        _ => writeln!(out, "{:<time_w$} {rest}", "TIME"),
    }
}

pub fn write_line(out: &mut impl Write, line: &Line<'_>, style: &TextStyle) -> io::Result<()> {
    write_time(out, line, style)?;
    if style.wide {
        wide(out, line)
    } else {
        compact(out, line)
    }
}

/// The TIME column and its space. Wall time is formatted once per second (chrono parses the
/// format and finds the local offset on every call, a large part of a line's cost under
/// churn); the wide layout's microseconds are appended.
fn write_time(out: &mut impl Write, line: &Line<'_>, style: &TextStyle) -> io::Result<()> {
    let width = if style.wide { WIDE_TIME_W } else { TIME_W };
    let zone = match style.time {
        Time::Hidden => return Ok(()),
        Time::Wall(zone) => zone,
        Time::Relative { start_ns } => {
            let secs = line.transition.ts_ns.saturating_sub(start_ns) as f64 / 1e9;
            return match (style.wide, secs < 10_000.0) {
                (true, _) => write!(out, "{secs:>width$.6} "),
                (false, true) => write!(out, "{secs:>width$.3} "),
                (false, false) => write!(out, "{secs:>width$.0} "),
            };
        }
    };
    thread_local! {
        /// The second and zone last formatted, and `HH:MM:SS` for them.
        static SECOND: std::cell::RefCell<(i64, Option<Zone>, String)> =
            const { std::cell::RefCell::new((0, None, String::new())) };
    }
    let nanos = line.time.timestamp_subsec_nanos();
    if nanos >= 1_000_000_000 {
        // A leap second: chrono's own rendering.
        let wall = if style.wide {
            "%H:%M:%S%.6f"
        } else {
            "%H:%M:%S"
        };
        return match zone {
            Zone::Local => write!(out, "{} ", line.time.with_timezone(&Local).format(wall)),
            Zone::Utc => write!(out, "{} ", line.time.with_timezone(&Utc).format(wall)),
        };
    }
    let second = line.time.timestamp();
    SECOND.with_borrow_mut(|(cached, cached_zone, text)| {
        if *cached != second || *cached_zone != Some(zone) {
            text.clear();
            let _ = match zone {
                Zone::Local => std::fmt::Write::write_fmt(
                    text,
                    format_args!("{}", line.time.with_timezone(&Local).format("%H:%M:%S")),
                ),
                Zone::Utc => std::fmt::Write::write_fmt(
                    text,
                    format_args!("{}", line.time.with_timezone(&Utc).format("%H:%M:%S")),
                ),
            };
            *cached = second;
            *cached_zone = Some(zone);
        }
        if style.wide {
            write!(out, "{text}.{:06} ", nanos / 1_000)
        } else {
            write!(out, "{text} ")
        }
    })
}

/// The PID column: `*` after the pid of an owner that has ended (its last owner), as
/// snapshots mark an owner that no longer holds the socket.
pub fn pid_text(o: &crate::event::Owner) -> String {
    if o.exited {
        format!("{}*", o.pid)
    } else {
        o.pid.to_string()
    }
}

fn owner<'a>(line: &Line<'a>) -> (String, Cow<'a, str>) {
    match line.owner {
        Some(o) => (pid_text(o), escape_comm(&o.comm)),
        None => ("-".to_owned(), "-".into()),
    }
}

fn wide(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    let t = line.transition;
    let (pid, comm) = owner(line);
    write!(
        out,
        "{pid:<7} {comm:<11} {local:<22} {remote:<22} {old:<12} -> {new:<12}",
        local = t.local.to_string(),
        remote = t.remote.to_string(),
        old = t.old,
        new = t.new,
    )?;
    if let Some(d) = line.in_old {
        write!(out, " {:.3}", millis(d))?;
    }
    writeln!(out, "{}", end_note(line))
}

/// ` refused`, ` timeout`...: how a connection ended, after a transition into CLOSE that was
/// not an orderly close. Orderly closes print nothing, to keep the common line short.
fn end_note(line: &Line<'_>) -> String {
    match line.end {
        Some(end) if end != End::Normal => format!(" {end}"),
        _ => String::new(),
    }
}

fn compact(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    let t = line.transition;
    let (pid, comm) = owner(line);
    let lport = t
        .local
        .port
        .map_or_else(|| "*".to_owned(), |p| p.to_string());
    let states = format!("{}>{}", short_state(t.old), short_state(t.new));
    let ms = line.in_old.map(|d| short_ms(millis(d))).unwrap_or_default();
    let text = format!(
        "{pid:<PID_W$} {comm:<COMM_W$} {lport:<LPORT_W$} {remote:<REMOTE_W$} {states:<STATES_W$} {ms}",
        comm = keep_start(&comm, COMM_W),
        remote = keep_end(&t.remote.to_string(), REMOTE_W),
        states = keep_start(&states, STATES_W),
    );
    writeln!(out, "{}{}", text.trim_end(), end_note(line))
}

/// netstat's name, but ESTAB for ESTABLISHED (as ss prints it) to fit 80 columns.
fn short_state(s: TcpState) -> &'static str {
    match s {
        TcpState::Established => "ESTAB",
        s => s.name(),
    }
}

/// Milliseconds in at most six characters: `0.052`, `12.087`, `1234.5`, `654321`, `12345s`,
/// `41.7h`.
pub fn short_ms(ms: f64) -> String {
    if ms < 100.0 {
        format!("{ms:.3}")
    } else if ms < 10_000.0 {
        format!("{ms:.1}")
    } else if ms < 999_999.5 {
        format!("{ms:.0}")
    } else if ms < 99_999_500.0 {
        format!("{:.0}s", ms / 1e3)
    } else {
        format!("{:.1}h", ms / 3.6e6)
    }
}

/// `s` cut to `width` characters, ending in `…` when cut.
fn keep_start(s: &str, width: usize) -> Cow<'_, str> {
    if s.chars().count() <= width {
        return Cow::Borrowed(s);
    }
    let mut out: String = s.chars().take(width - 1).collect();
    out.push('…');
    Cow::Owned(out)
}

/// `s` cut to its last `width` characters, starting with `…` when cut: the end of an
/// endpoint (the port, the host part) says most.
fn keep_end(s: &str, width: usize) -> Cow<'_, str> {
    let n = s.chars().count();
    if n <= width {
        return Cow::Borrowed(s);
    }
    let mut out = String::from('…');
    out.extend(s.chars().skip(n - (width - 1)));
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr},
        time::Duration,
    };

    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::{
        event::{Cookie, Endpoint, Family, Owner, Task, Transition},
        state::TcpState,
    };

    fn transition() -> Transition {
        Transition {
            ts_ns: 0,
            cookie: Cookie(1),
            family: Family::Ipv4,
            local: Endpoint::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 5)), 35124),
            remote: Endpoint::new(IpAddr::V4(Ipv4Addr::new(93, 184, 216, 34)), 443),
            old: TcpState::SynSent,
            new: TcpState::Established,
            netns: 0,
            cgroup: 0,
            task: Task {
                pid: 1,
                tid: 1,
                comm: "swapper".into(),
            },
            fin: None,
        }
    }

    const WIDE_UTC: TextStyle = TextStyle {
        wide: true,
        time: Time::Wall(Zone::Utc),
    };
    const COMPACT_UTC: TextStyle = TextStyle {
        wide: false,
        time: Time::Wall(Zone::Utc),
    };

    fn render_with(line: &Line<'_>, style: &TextStyle) -> String {
        let mut out = Vec::new();
        write_line(&mut out, line, style).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn render(line: &Line<'_>) -> String {
        render_with(line, &WIDE_UTC)
    }

    fn header(style: &TextStyle) -> String {
        let mut out = Vec::new();
        write_header(&mut out, style).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn curl() -> Owner {
        Owner::new(11467, "curl")
    }

    fn at(t: &Transition, in_old: Option<Duration>) -> Line<'_> {
        Line {
            transition: t,
            time: Utc.with_ymd_and_hms(2026, 11, 26, 9, 9, 47).unwrap()
                + Duration::from_micros(123_456),
            owner: None,
            in_old,
            end: None,
            cgroup: None,
        }
    }

    #[test]
    fn compact_layout_fits_80_columns() {
        let t = transition();
        let owner = curl();
        let line = Line {
            owner: Some(&owner),
            ..at(&t, Some(Duration::from_micros(12087)))
        };
        let h = header(&COMPACT_UTC);
        assert_eq!(
            h,
            "TIME     PID     COMM     LPORT REMOTE                OLD>NEW             MS\n"
        );
        assert_eq!(
            render_with(&line, &COMPACT_UTC),
            "09:09:47 11467   curl     35124 93.184.216.34:443     SYN_SENT>ESTAB      12.087\n"
        );
        // Every column at its widest still fits.
        let mut t = transition();
        t.remote = Endpoint::new(IpAddr::V4(Ipv4Addr::BROADCAST), 65535);
        t.old = TcpState::FinWait2;
        t.new = TcpState::TimeWait;
        let long = Owner::new(4_194_304, "systemd-resolve");
        let line = Line {
            owner: Some(&long),
            ..at(&t, Some(Duration::from_secs(99_999)))
        };
        let text = render_with(&line, &COMPACT_UTC);
        assert_eq!(
            text,
            "09:09:47 4194304 systemd… 35124 255.255.255.255:65535 FIN_WAIT2>TIME_WAIT 99999s\n"
        );
        assert_eq!(text.trim_end().chars().count(), COMPACT_WIDTH);
        assert_eq!(COMPACT_WIDTH, 80);
    }

    #[test]
    fn compact_layout_shortens_ipv6_from_the_left_and_wide_shows_it_all() {
        let mut t = transition();
        t.family = Family::Ipv6;
        t.remote = Endpoint::new("2001:db8:85a3::8a2e:370:7334".parse().unwrap(), 443);
        t.local.port = None;
        let line = at(&t, None);
        let text = render_with(&line, &COMPACT_UTC);
        assert_eq!(
            text,
            "09:09:47 -       -        *     …::8a2e:370:7334]:443 SYN_SENT>ESTAB\n"
        );
        assert!(render(&line).contains("[2001:db8:85a3::8a2e:370:7334]:443"));
    }

    #[test]
    fn relative_and_hidden_time() {
        let mut t = transition();
        t.ts_ns = 2_500_000_000 + 1_234_567_890;
        let line = at(&t, None);
        let relative = Time::Relative {
            start_ns: 2_500_000_000,
        };
        let style = TextStyle {
            wide: false,
            time: relative,
        };
        assert!(render_with(&line, &style).starts_with("   1.235 -"));
        let style = TextStyle {
            wide: true,
            time: relative,
        };
        assert!(render_with(&line, &style).starts_with("       1.234568 -"));
        let style = TextStyle {
            wide: false,
            time: Time::Hidden,
        };
        assert!(render_with(&line, &style).starts_with("-       -        35124"));
        assert!(header(&style).starts_with("PID "));
    }

    #[test]
    fn short_milliseconds() {
        assert_eq!(short_ms(0.052), "0.052");
        assert_eq!(short_ms(12.0874), "12.087");
        assert_eq!(short_ms(1234.56), "1234.6");
        assert_eq!(short_ms(654_321.0), "654321");
        assert_eq!(short_ms(12_345_678.0), "12346s");
        assert_eq!(short_ms(150_000_000.0), "41.7h");
    }

    #[test]
    fn renders_the_documented_columns() {
        let t = transition();
        let owner = Owner::new(11467, "curl");
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 11, 26, 9, 9, 47).unwrap()
                + Duration::from_micros(123_456),
            owner: Some(&owner),
            in_old: Some(Duration::from_micros(12087)),
            end: None,
            cgroup: None,
        };
        assert_eq!(
            render(&line),
            "09:09:47.123456 11467   curl        10.0.0.5:35124         93.184.216.34:443      SYN_SENT     -> ESTABLISHED  12.087\n"
        );
        let h = header(&WIDE_UTC);
        assert_eq!(h.find("PID"), Some(16));
        assert_eq!(h.find("LOCAL"), Some(36));
    }

    #[test]
    fn unknown_owner_and_first_transition_print_dashes_and_blank() {
        let t = transition();
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            owner: None,
            in_old: None,
            end: None,
            cgroup: None,
        };
        let text = render(&line);
        assert!(
            text.starts_with("00:00:00.000000 -       -           10.0.0.5"),
            "{text}"
        );
        assert!(text.ends_with("ESTABLISHED \n"), "{text:?}");
    }

    #[test]
    fn hostile_process_names_are_escaped() {
        let t = transition();
        let owner = Owner::new(1, "evil\x1b[2J");
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            owner: Some(&owner),
            in_old: None,
            end: None,
            cgroup: None,
        };
        let text = render(&line);
        assert!(!text.contains('\x1b'));
        assert!(text.contains("evil\\x1b[2J"));
    }

    /// The cached TIME column is what chrono writes, across seconds, zones and layouts.
    #[test]
    fn the_time_column_is_what_chrono_writes() {
        let t = transition();
        let base = Utc.with_ymd_and_hms(2026, 11, 26, 23, 59, 58).unwrap();
        for step_us in [
            0u64,
            1,
            999_999,
            1_000_000,
            1_500_000,
            2_000_001,
            86_400_000_000,
        ] {
            let time = base + Duration::from_micros(step_us);
            for zone in [Zone::Local, Zone::Utc, Zone::Local] {
                for wide in [false, true] {
                    let line = Line {
                        transition: &t,
                        time,
                        owner: None,
                        in_old: None,
                        end: None,
                        cgroup: None,
                    };
                    let style = TextStyle {
                        wide,
                        time: Time::Wall(zone),
                    };
                    let mut ours = Vec::new();
                    write_time(&mut ours, &line, &style).unwrap();
                    let wall = if wide { "%H:%M:%S%.6f" } else { "%H:%M:%S" };
                    let theirs = match zone {
                        Zone::Local => time.with_timezone(&Local).format(wall).to_string(),
                        Zone::Utc => time.format(wall).to_string(),
                    };
                    assert_eq!(String::from_utf8(ours).unwrap(), format!("{theirs} "));
                }
            }
        }
    }
}
