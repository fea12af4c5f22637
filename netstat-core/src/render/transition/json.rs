//! NDJSON: one object per transition. The field names are a stable interface for scripts
//! and are documented in the README.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use chrono::SecondsFormat;
use serde::Serialize;

use crate::render::{Line, json_line::JsonLine, millis};
use crate::{end::End, event::Family, state::TcpState};

/// A cgroup id as JSON and CSV show it: null (empty) for 0, which no cgroup has (the root's
/// id is 1) and which records carry when the id is not known.
pub fn known_cgroup(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

/// The path of a socket's cgroup and its container (`runtime://id`), when known: the JSON
/// fields `cgroup_path` and `container` of transitions, lifecycles and snapshots.
pub fn cgroup_fields(c: Option<&crate::cgroup::Cgroup>) -> (Option<&str>, Option<String>) {
    (
        c.map(|c| c.path.as_str()),
        c.and_then(|c| c.container.as_ref())
            .map(ToString::to_string),
    )
}

/// One transition as JSON.
#[derive(Debug, Serialize)]
pub struct JsonTransition<'a> {
    /// RFC 3339, UTC, microseconds.
    pub time: String,
    /// Kernel monotonic nanoseconds (`bpf_ktime_get_ns`), for exact ordering and deltas.
    pub ts_ns: u64,
    /// The socket cookie; null where the kernel cannot give it.
    pub cookie: Option<u64>,
    pub pid: Option<u32>,
    pub comm: Option<Cow<'a, str>>,
    /// True when `pid` has ended: it is the socket's last owner, not a current one.
    pub owner_exited: bool,
    pub family: Family,
    pub laddr: String,
    pub lport: Option<u16>,
    pub raddr: String,
    pub rport: Option<u16>,
    pub old: TcpState,
    pub new: TcpState,
    /// Milliseconds spent in `old`; null on the first transition seen for the socket.
    pub ms_in_old: Option<f64>,
    /// Network namespace inode; null where the kernel cannot give it.
    pub netns: Option<u32>,
    /// How the connection ended (`normal`, `refused`, `timeout`, `reset_received`,
    /// `reset_sent`, `aborted`) on a transition into CLOSE; null otherwise.
    pub end: Option<End>,
    /// cgroup v2 id of the socket (the inode of its /sys/fs/cgroup directory); null where
    /// not known (always without BTF: the classic tracepoint cannot reach the socket).
    pub cgroup: Option<u64>,
    /// The cgroup's path under the cgroup root, when it (still) exists.
    pub cgroup_path: Option<Cow<'a, str>>,
    /// The container, `runtime://id` as Kubernetes writes a `containerID`, when the cgroup
    /// path is a known runtime's.
    pub container: Option<String>,
    /// The socket's id in this run: its cookie where known, else a number enetstat gave it
    /// (with the top bit set, so never a cookie). Lines of one socket share it.
    pub id: u64,
}

impl<'a> JsonTransition<'a> {
    pub fn new(line: &Line<'a>) -> Self {
        let t = line.transition;
        let (cgroup_path, container) = cgroup_fields(line.cgroup);
        Self {
            time: line.time.to_rfc3339_opts(SecondsFormat::Micros, true),
            ts_ns: t.ts_ns,
            cookie: t.cookie.known(),
            pid: line.owner.map(|o| o.pid),
            comm: line.owner.map(|o| Cow::Borrowed(&*o.comm)),
            owner_exited: line.owner.is_some_and(|o| o.exited),
            family: t.family,
            laddr: t.local.addr.to_string(),
            lport: t.local.port,
            raddr: t.remote.addr.to_string(),
            rport: t.remote.port,
            old: t.old,
            new: t.new,
            ms_in_old: line.in_old.map(millis),
            netns: (t.netns != 0).then_some(t.netns),
            end: line.end,
            cgroup: known_cgroup(t.cgroup),
            cgroup_path: cgroup_path.map(Cow::Borrowed),
            container,
            id: t.cookie.0,
        }
    }

    /// For CSV, which has no escapes of its own: the process name and cgroup path escaped
    /// by the one rule ([`crate::render::escape`]), as text shows them.
    pub fn escaped(mut self) -> Self {
        self.comm = crate::render::escape::escape_field(self.comm);
        self.cgroup_path = crate::render::escape::escape_field(self.cgroup_path);
        self
    }
}

/// One transition as an NDJSON line: the bytes serde writes for [`JsonTransition`], written
/// by hand (see [`crate::render::json_writer`] for why), in a fixed array when the line is
/// an ordinary one ([`crate::render::json_line`]).
pub fn write_line(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    // Built in one buffer and handed on in one write: dozens of small writes into a
    // `BufWriter` cost more than the line.
    thread_local! {
        static FAST: std::cell::RefCell<JsonLine> = std::cell::RefCell::default();
        static BUF: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    let done = FAST.with_borrow_mut(|fast| {
        fast.clear();
        match build_fast(fast, line) {
            Some(()) => out.write_all(fast.as_bytes()).map(|()| true),
            None => Ok(false),
        }
    })?;
    if done {
        return Ok(());
    }
    BUF.with_borrow_mut(|buf| {
        buf.clear();
        build_line(buf, line)?;
        out.write_all(buf)
    })
}

/// [`build_line`] for a line [`JsonLine`] takes; `None` for one it does not.
fn build_fast(out: &mut JsonLine, line: &Line<'_>) -> Option<()> {
    let t = line.transition;
    out.raw(b"{\"time\":")?;
    out.time(&line.time)?;
    out.raw(b",\"ts_ns\":")?;
    out.u64(t.ts_ns)?;
    out.raw(b",\"cookie\":")?;
    out.opt_u64(t.cookie.known())?;
    out.raw(b",\"pid\":")?;
    out.opt_u64(line.owner.map(|o| u64::from(o.pid)))?;
    out.raw(b",\"comm\":")?;
    out.opt_string(line.owner.map(|o| &*o.comm))?;
    if line.owner.is_some_and(|o| o.exited) {
        out.raw(b",\"owner_exited\":true,\"family\":")?;
    } else {
        out.raw(b",\"owner_exited\":false,\"family\":")?;
    }
    match t.family {
        Family::Ipv4 => out.raw(b"\"ipv4\",\"laddr\":")?,
        Family::Ipv6 => out.raw(b"\"ipv6\",\"laddr\":")?,
    }
    out.addr(t.local.addr)?;
    out.raw(b",\"lport\":")?;
    out.opt_u64(t.local.port.map(u64::from))?;
    out.raw(b",\"raddr\":")?;
    out.addr(t.remote.addr)?;
    out.raw(b",\"rport\":")?;
    out.opt_u64(t.remote.port.map(u64::from))?;
    out.raw(b",\"old\":")?;
    out.string(t.old.name())?;
    out.raw(b",\"new\":")?;
    out.string(t.new.name())?;
    out.raw(b",\"ms_in_old\":")?;
    out.opt_millis(line.in_old)?;
    out.raw(b",\"netns\":")?;
    out.opt_u64((t.netns != 0).then_some(u64::from(t.netns)))?;
    out.raw(b",\"end\":")?;
    out.opt_string(line.end.map(End::name))?;
    out.raw(b",\"cgroup\":")?;
    out.opt_u64(known_cgroup(t.cgroup))?;
    out.raw(b",\"cgroup_path\":")?;
    out.opt_string(line.cgroup.map(|c| c.path.as_str()))?;
    out.raw(b",\"container\":")?;
    match line.cgroup.and_then(|c| c.container.as_ref()) {
        // `runtime://id`, as its `Display` writes it.
        Some(c) => out.quoted(&[c.runtime.name(), "://", &c.id])?,
        None => out.raw(b"null")?,
    }
    out.raw(b",\"id\":")?;
    out.u64(t.cookie.0)?;
    out.raw(b"}\n")
}

fn build_line(out: &mut Vec<u8>, line: &Line<'_>) -> io::Result<()> {
    use crate::render::json_writer as w;
    let t = line.transition;
    out.write_all(b"{\"time\":")?;
    w::time(out, &line.time)?;
    out.write_all(b",\"ts_ns\":")?;
    w::u64(out, t.ts_ns)?;
    out.write_all(b",\"cookie\":")?;
    w::opt_u64(out, t.cookie.known())?;
    out.write_all(b",\"pid\":")?;
    w::opt_u64(out, line.owner.map(|o| u64::from(o.pid)))?;
    out.write_all(b",\"comm\":")?;
    w::opt_string(out, line.owner.map(|o| &*o.comm))?;
    out.write_all(b",\"owner_exited\":")?;
    w::bool(out, line.owner.is_some_and(|o| o.exited))?;
    out.write_all(b",\"family\":")?;
    w::string(out, t.family.name())?;
    out.write_all(b",\"laddr\":")?;
    w::addr(out, t.local.addr)?;
    out.write_all(b",\"lport\":")?;
    w::opt_u64(out, t.local.port.map(u64::from))?;
    out.write_all(b",\"raddr\":")?;
    w::addr(out, t.remote.addr)?;
    out.write_all(b",\"rport\":")?;
    w::opt_u64(out, t.remote.port.map(u64::from))?;
    out.write_all(b",\"old\":")?;
    w::string(out, t.old.name())?;
    out.write_all(b",\"new\":")?;
    w::string(out, t.new.name())?;
    out.write_all(b",\"ms_in_old\":")?;
    w::opt_f64(out, line.in_old.map(millis))?;
    out.write_all(b",\"netns\":")?;
    w::opt_u64(out, (t.netns != 0).then_some(u64::from(t.netns)))?;
    out.write_all(b",\"end\":")?;
    w::opt_string(out, line.end.map(End::name))?;
    out.write_all(b",\"cgroup\":")?;
    w::opt_u64(out, known_cgroup(t.cgroup))?;
    out.write_all(b",\"cgroup_path\":")?;
    w::opt_string(out, line.cgroup.map(|c| c.path.as_str()))?;
    out.write_all(b",\"container\":")?;
    match line.cgroup.and_then(|c| c.container.as_ref()) {
        Some(c) => w::display_string(out, c)?,
        None => out.write_all(b"null")?,
    }
    out.write_all(b",\"id\":")?;
    w::u64(out, t.cookie.0)?;
    out.write_all(b"}\n")
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv6Addr},
        time::Duration,
    };

    use chrono::{TimeZone, Utc};
    use serde_json::{Value, json};

    use super::*;
    use crate::event::{Cookie, Endpoint, Owner, Task, Transition};

    #[test]
    fn schema_has_the_documented_fields_and_types() {
        let t = Transition {
            ts_ns: 5_000,
            cookie: Cookie(i64::MAX as u64),
            family: Family::Ipv6,
            local: Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0),
            remote: Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 8080),
            old: TcpState::Close,
            new: TcpState::SynSent,
            netns: 4_026_531_840,
            cgroup: 0,
            task: Task {
                pid: 1,
                tid: 1,
                comm: "x".into(),
            },
            fin: None,
        };
        let owner = Owner::new(4410, "psql\n");
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 11, 26, 9, 9, 47).unwrap() + Duration::from_micros(1),
            owner: Some(&owner),
            in_old: None,
            end: None,
            cgroup: None,
        };
        let mut out = Vec::new();
        write_line(&mut out, &line).unwrap();
        assert_eq!(
            out.iter().filter(|&&b| b == b'\n').count(),
            1,
            "one line per object"
        );
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(
            v,
            json!({
                "time": "2026-11-26T09:09:47.000001Z",
                "ts_ns": 5000,
                "cookie": i64::MAX as u64,
                "pid": 4410,
                "comm": "psql\n",
                "owner_exited": false,
                "family": "ipv6",
                "laddr": "::1",
                "lport": null,
                "raddr": "::1",
                "rport": 8080,
                "old": "CLOSE",
                "new": "SYN_SENT",
                "ms_in_old": null,
                "netns": 4_026_531_840u32,
                "end": null,
                "cgroup": null,
                "cgroup_path": null,
                "container": null,
                "id": i64::MAX as u64,
            })
        );

        let line = Line {
            owner: None,
            in_old: Some(Duration::from_nanos(12_087_400)),
            end: None,
            ..line
        };
        let mut out = Vec::new();
        write_line(&mut out, &line).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["pid"], Value::Null);
        assert_eq!(v["comm"], Value::Null);
        assert_eq!(v["ms_in_old"], json!(12.087));
    }

    #[test]
    fn an_unknown_cookie_and_netns_are_null_never_the_address() {
        let t = Transition {
            ts_ns: 1,
            cookie: Cookie::of_address(0xffff_8880_1234_5678),
            family: Family::Ipv4,
            local: Endpoint::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 80),
            remote: Endpoint::new(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9),
            old: TcpState::Established,
            new: TcpState::FinWait1,
            netns: 0,
            cgroup: 0,
            task: Task {
                pid: 1,
                tid: 1,
                comm: "x".into(),
            },
            fin: None,
        };
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 11, 26, 9, 9, 47).unwrap(),
            owner: None,
            in_old: None,
            end: None,
            cgroup: None,
        };
        let mut out = Vec::new();
        write_line(&mut out, &line).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["cookie"], Value::Null);
        assert_eq!(v["netns"], Value::Null);
    }

    /// The hand-written line is the bytes serde writes for [`JsonTransition`], whatever the
    /// fields hold.
    #[test]
    fn the_written_line_is_what_serde_writes() {
        let comms = [
            "nginx",
            "psql\n",
            "a\"b\\c",
            "\u{202e}evil",
            "caf\u{e9}",
            "del\u{7f}",
            "c1\u{9b}x",
            "\u{fffd}\u{1b}[2J",
            "",
        ];
        let cgroups = [
            None,
            Some(crate::cgroup::Cgroup::new(
                "/system.slice/nginx.service".into(),
            )),
            Some(crate::cgroup::Cgroup::new(format!(
                "/system.slice/docker-{}.scope",
                "4f".repeat(32)
            ))),
            Some(crate::cgroup::Cgroup::new("/odd\u{1b}path\\x".into())),
        ];
        let times = [
            Utc.with_ymd_and_hms(2026, 11, 26, 9, 9, 47).unwrap(),
            Utc.with_ymd_and_hms(2026, 11, 26, 23, 59, 59).unwrap()
                + Duration::from_nanos(999_999_999),
            Utc.with_ymd_and_hms(2026, 11, 27, 0, 0, 0).unwrap() + Duration::from_micros(1),
            Utc.with_ymd_and_hms(1969, 12, 31, 23, 59, 58).unwrap()
                + Duration::from_micros(123_456),
            Utc.with_ymd_and_hms(2024, 2, 29, 12, 0, 0).unwrap(),
        ];
        let (mut n, mut fast_lines) = (0, 0);
        for (i, comm) in comms.iter().enumerate() {
            for (j, cgroup) in cgroups.iter().enumerate() {
                let time = times[(i + j) % times.len()];
                let v6 = (i + j) % 2 == 0;
                let t = Transition {
                    ts_ns: (i * 1_000_003 + j) as u64,
                    cookie: if i == 3 {
                        Cookie::of_address(0xffff_8880_0000_1000)
                    } else {
                        Cookie(i as u64 * 77 + 1)
                    },
                    family: if v6 { Family::Ipv6 } else { Family::Ipv4 },
                    local: if v6 {
                        Endpoint::new(IpAddr::V6(Ipv6Addr::LOCALHOST), (i * 1000) as u16)
                    } else {
                        Endpoint::new(
                            IpAddr::V4(std::net::Ipv4Addr::new(10, 0, j as u8 * 85, 1)),
                            443,
                        )
                    },
                    remote: Endpoint::new(
                        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, j as u16)),
                        0,
                    ),
                    old: TcpState::Established,
                    new: if j % 2 == 0 {
                        TcpState::Close
                    } else {
                        TcpState::FinWait1
                    },
                    netns: 4_026_531_840 / 3 * j as u32,
                    cgroup: j as u64 * 9,
                    task: Task {
                        pid: 7,
                        tid: 8,
                        comm: "t".into(),
                    },
                    fin: None,
                };
                let mut owner = Owner::new(i as u32 * 31, *comm);
                owner.exited = j == 2;
                let line = Line {
                    transition: &t,
                    time,
                    owner: (i % 4 != 1).then_some(&owner),
                    in_old: (j != 0).then(|| Duration::from_nanos((i * 7_919_111 + j) as u64)),
                    end: (j % 2 == 0).then_some(crate::end::End::ResetSent),
                    cgroup: cgroup.as_ref(),
                };
                let mut ours = Vec::new();
                write_line(&mut ours, &line).unwrap();
                let mut theirs = Vec::new();
                crate::render::escape::json_to_writer(&mut theirs, &JsonTransition::new(&line))
                    .unwrap();
                theirs.push(b'\n');
                assert_eq!(
                    String::from_utf8_lossy(&ours),
                    String::from_utf8_lossy(&theirs)
                );
                // An ordinary line takes the fixed array, and the line that gives is the same.
                let plain = |s: &str| {
                    s.bytes()
                        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
                };
                let mut fast = JsonLine::default();
                let ordinary =
                    (i % 4 == 1 || plain(comm)) && cgroup.as_ref().is_none_or(|c| plain(&c.path));
                assert_eq!(
                    build_fast(&mut fast, &line).is_some(),
                    ordinary,
                    "{comm:?} {cgroup:?}"
                );
                if ordinary {
                    fast_lines += 1;
                    assert_eq!(
                        String::from_utf8_lossy(fast.as_bytes()),
                        String::from_utf8_lossy(&theirs)
                    );
                }
                n += 1;
            }
        }
        assert_eq!(n, comms.len() * cgroups.len());
        assert!(fast_lines >= 10, "{fast_lines} lines took the fixed array");
    }
}
