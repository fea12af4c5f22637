//! The human-readable event log, one aligned line per transition.

use std::io::{self, Write};

use chrono::{Local, Utc};

use super::{Line, escape_comm, millis};

/// Which clock the TIME column shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zone {
    Local,
    Utc,
}

pub const HEADER: &str = "TIME            PID     COMM        LOCAL                  REMOTE                 OLD          -> NEW          MS";

pub fn write_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{HEADER}")
}

pub fn write_line(out: &mut impl Write, line: &Line<'_>, zone: Zone) -> io::Result<()> {
    let t = line.transition;
    let time = match zone {
        Zone::Local => line.time.with_timezone(&Local).format("%H:%M:%S%.6f"),
        Zone::Utc => line.time.with_timezone(&Utc).format("%H:%M:%S%.6f"),
    };
    let (pid, comm) = match line.owner {
        Some(o) => (o.pid.to_string(), escape_comm(&o.comm)),
        None => ("-".to_owned(), "-".into()),
    };
    write!(
        out,
        "{time} {pid:<7} {comm:<11} {local:<22} {remote:<22} {old:<12} -> {new:<12}",
        local = t.local.to_string(),
        remote = t.remote.to_string(),
        old = t.old,
        new = t.new,
    )?;
    match line.in_old {
        Some(d) => writeln!(out, " {:.3}", millis(d)),
        None => writeln!(out),
    }
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
            task: Task {
                pid: 1,
                tid: 1,
                comm: "swapper".into(),
            },
            fin: None,
        }
    }

    fn render(line: &Line<'_>) -> String {
        let mut out = Vec::new();
        write_line(&mut out, line, Zone::Utc).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_the_documented_columns() {
        let t = transition();
        let owner = Owner {
            pid: 11467,
            comm: "curl".into(),
        };
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 11, 26, 9, 9, 47).unwrap()
                + Duration::from_micros(123456),
            owner: Some(&owner),
            in_old: Some(Duration::from_micros(12087)),
        };
        assert_eq!(
            render(&line),
            "09:09:47.123456 11467   curl        10.0.0.5:35124         93.184.216.34:443      SYN_SENT     -> ESTABLISHED  12.087\n"
        );
        assert_eq!(HEADER.find("PID"), Some(16));
        assert_eq!(HEADER.find("LOCAL"), Some(36));
    }

    #[test]
    fn unknown_owner_and_first_transition_print_dashes_and_blank() {
        let t = transition();
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            owner: None,
            in_old: None,
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
        let owner = Owner {
            pid: 1,
            comm: "evil\x1b[2J".into(),
        };
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            owner: Some(&owner),
            in_old: None,
        };
        let text = render(&line);
        assert!(!text.contains('\x1b'));
        assert!(text.contains("evil\\x1b[2J"));
    }
}
