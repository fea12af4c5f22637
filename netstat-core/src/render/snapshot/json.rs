//! Snapshots as JSON for scripts: one object per snapshot, one line each, so `-c` gives
//! NDJSON. Addresses and ports are always numeric; field names are a stable interface,
//! documented in the README.

use std::io::{self, Write};

use serde::Serialize;

use super::Row;
use crate::{
    cgroup::Cgroup,
    diag::Proto,
    event::Family,
    render::{millis, transition::json::cgroup_fields},
    state::TcpState,
};

/// One socket as JSON.
#[derive(Debug, Serialize)]
pub struct JsonSocket<'a> {
    /// `tcp`, `tcp6`, `udp`, `udp6`.
    pub proto: &'static str,
    pub transport: Proto,
    pub family: Family,
    pub local_addr: String,
    pub local_port: Option<u16>,
    pub remote_addr: String,
    pub remote_port: Option<u16>,
    /// The kernel's state; for UDP, ESTABLISHED (connected) or CLOSE (not connected).
    pub state: TcpState,
    pub recv_q: u32,
    pub send_q: u32,
    pub pid: Option<u32>,
    pub program: Option<&'a str>,
    /// False when the named process no longer holds the socket (its last owner).
    pub holds: Option<bool>,
    pub uid: Option<u32>,
    pub inode: u64,
    /// The socket cookie; null where the kernel cannot give it.
    pub cookie: Option<u64>,
    /// Milliseconds in the current state, when a transition showed when it began.
    pub age_ms: Option<f64>,
    pub closed: bool,
    /// For a closed connection: milliseconds from birth to close, when the birth was seen.
    pub lifetime_ms: Option<f64>,
    /// For a closed connection: milliseconds since it closed.
    pub closed_ago_ms: Option<f64>,
    /// For a closed connection: the errno it closed with (0: none).
    pub errno: Option<i32>,
    /// The network namespace's inode (as `ls -L -i /proc/PID/ns/net` shows it).
    pub netns: Option<u32>,
    /// cgroup v2 id (the inode of its /sys/fs/cgroup directory); null when not known.
    pub cgroup: Option<u64>,
    /// The cgroup's path under the cgroup root, when it (still) exists.
    pub cgroup_path: Option<&'a str>,
    /// The container, `runtime://id` as Kubernetes writes a `containerID`, when the cgroup
    /// path is a known runtime's.
    pub container: Option<String>,
}

impl<'a> JsonSocket<'a> {
    /// `cgroup` is what `r.cgroup` names, looked up by the caller.
    pub fn new(r: &'a Row, cgroup: Option<&'a Cgroup>) -> Self {
        let (cgroup_path, container) = cgroup_fields(cgroup);
        Self {
            proto: r.proto_name(),
            transport: r.proto,
            family: r.family,
            local_addr: r.local_addr.to_string(),
            local_port: r.local_port,
            remote_addr: r.remote_addr.to_string(),
            remote_port: r.remote_port,
            state: r.closed.map_or(r.state, |c| c.last_state),
            recv_q: r.recv_q,
            send_q: r.send_q,
            pid: r.owner.as_ref().map(|o| o.pid),
            program: r.owner.as_ref().map(|o| o.comm.as_str()),
            holds: r.owner.as_ref().map(|o| o.holds),
            uid: r.uid,
            inode: r.inode,
            cookie: r.cookie.known(),
            age_ms: r.age.map(millis),
            closed: r.closed.is_some(),
            lifetime_ms: r.closed.and_then(|c| c.lifetime).map(millis),
            closed_ago_ms: r.closed.map(|c| millis(c.ago)),
            errno: r.closed.map(|c| c.errno),
            netns: r.netns,
            cgroup: Some(r.cgroup).filter(|&c| c != 0),
            cgroup_path,
            container,
        }
    }
}

/// One snapshot as JSON.
#[derive(Debug, Serialize)]
pub struct JsonSnapshot<'a, C: Serialize> {
    /// RFC 3339, UTC.
    pub time: String,
    /// True while enetstat traces (`-c`): AGE and closed connections are known.
    pub tracing: bool,
    pub sockets: Vec<JsonSocket<'a>>,
    /// What the table counted (corrections, overflow, lost records).
    pub counters: C,
}

pub fn write_json<C: Serialize>(
    out: &mut impl Write,
    snap: &JsonSnapshot<'_, C>,
) -> io::Result<()> {
    crate::render::escape::json_to_writer(&mut *out, snap)?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::{super::fixture::row, *};
    use crate::render::snapshot::ClosedInfo;

    #[test]
    fn json_schema() {
        let r = row();
        let v: Value = serde_json::to_value(JsonSocket::new(&r, None)).unwrap();
        assert_eq!(
            v,
            json!({
                "proto": "tcp6", "transport": "tcp", "family": "ipv6",
                "local_addr": "::1", "local_port": 5432,
                "remote_addr": "::1", "remote_port": 40000,
                "state": "ESTABLISHED", "recv_q": 3, "send_q": 4,
                "pid": 7, "program": "pg,\"x\"", "holds": true, "uid": 1000,
                "inode": 99, "cookie": 5, "age_ms": 1.5, "closed": false,
                "lifetime_ms": null, "closed_ago_ms": null, "errno": null,
                "netns": 4_026_531_840u32, "cgroup": null, "cgroup_path": null,
                "container": null
            })
        );
        let mut r = row();
        r.cgroup = 42;
        let pod = Cgroup::new(format!(
            "/kubepods.slice/x/cri-containerd-{}.scope",
            "ab".repeat(32)
        ));
        let v: Value = serde_json::to_value(JsonSocket::new(&r, Some(&pod))).unwrap();
        assert_eq!(v["cgroup"], 42);
        assert_eq!(v["cgroup_path"], pod.path);
        assert_eq!(v["container"], format!("containerd://{}", "ab".repeat(32)));
        let mut closed = row();
        closed.closed = Some(ClosedInfo {
            lifetime: Some(Duration::from_micros(250)),
            ago: Duration::from_millis(2),
            last_state: TcpState::LastAck,
            errno: 0,
        });
        let v: Value = serde_json::to_value(JsonSocket::new(&closed, None)).unwrap();
        assert_eq!(v["state"], "LAST_ACK");
        assert_eq!(v["closed"], true);
        assert_eq!(v["lifetime_ms"], 0.25);
    }
}
