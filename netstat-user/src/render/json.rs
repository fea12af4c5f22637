//! NDJSON: one object per transition. The field names are a stable interface for scripts
//! and are documented in the README.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use chrono::SecondsFormat;
use serde::Serialize;

use super::{Line, millis};
use crate::{end::End, event::Family, state::TcpState};

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
    /// cgroup v2 id of the socket (the inode of its /sys/fs/cgroup directory); 0 if unknown.
    pub cgroup: u64,
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
            comm: line.owner.map(|o| Cow::Borrowed(o.comm.as_str())),
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
            cgroup: t.cgroup,
            cgroup_path: cgroup_path.map(Cow::Borrowed),
            container,
            id: t.cookie.0,
        }
    }

    /// For CSV, which has no escapes of its own: the process name and cgroup path escaped
    /// by the one rule ([`super::escape`]), as text shows them.
    pub fn escaped(mut self) -> Self {
        self.comm = super::escape::escape_field(self.comm);
        self.cgroup_path = super::escape::escape_field(self.cgroup_path);
        self
    }
}

pub fn write_line(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    super::escape::json_to_writer(&mut *out, &JsonTransition::new(line))?;
    out.write_all(b"\n")
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
            netns: 4026531840,
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
                "netns": 4026531840u32,
                "end": null,
                "cgroup": 0,
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
}
