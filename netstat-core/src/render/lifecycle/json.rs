//! A lifecycle as one JSON object a line. The field names are a stable interface,
//! documented in the README; the CSV row ([`super::csv`]) uses the same ones.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::{
    cgroup::Cgroup,
    end::End,
    event::Family,
    life::Lifecycle,
    render::{
        millis,
        transition::json::{cgroup_fields, known_cgroup},
    },
    state::TcpState,
};

/// One state of a lifecycle and the milliseconds spent in it.
#[derive(Debug, Serialize)]
pub struct JsonState {
    pub state: TcpState,
    pub ms: f64,
}

/// A lifecycle as JSON (`S` = `Vec<JsonState>`) or as a CSV row (`S` = `String`, the states
/// flattened to `SYN_SENT:0.09;ESTABLISHED:1.2`): one list of fields for both. The field
/// names are a stable interface, documented in the README.
#[derive(Debug, Serialize)]
pub struct JsonLifecycle<'a, S = Vec<JsonState>> {
    /// When the connection ended: RFC 3339, UTC, microseconds.
    pub time: String,
    /// The socket cookie; null where the kernel cannot give it.
    pub cookie: Option<u64>,
    pub pid: Option<u32>,
    pub comm: Option<Cow<'a, str>>,
    /// True when `pid` has ended: it was the connection's last owner.
    pub owner_exited: bool,
    pub family: Family,
    pub laddr: String,
    pub lport: Option<u16>,
    pub raddr: String,
    pub rport: Option<u16>,
    pub lifetime_ms: f64,
    /// SYN_SENT -> ESTABLISHED; null for passive sockets.
    pub connect_ms: Option<f64>,
    pub states: S,
    /// The counters at CLOSE; null where the kernel cannot give them (no BTF).
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub retransmits: Option<u32>,
    pub srtt_us: Option<u32>,
    /// Null where the kernel cannot say (no BTF).
    pub end: Option<End>,
    /// False when the connection was already open when tracing began: `lifetime_ms` and
    /// `states` then start at the first transition seen.
    pub complete: bool,
    /// Network namespace inode; null where the kernel cannot give it.
    pub netns: Option<u32>,
    /// cgroup v2 id at the close; null if not known (always without BTF).
    pub cgroup: Option<u64>,
    /// The cgroup's path under the cgroup root, when it (still) exists.
    pub cgroup_path: Option<Cow<'a, str>>,
    /// The container, `runtime://id`, when the cgroup path is a known runtime's.
    pub container: Option<String>,
    /// The socket's id in this run, as in `watch -o json`: its cookie where known.
    pub id: u64,
}

impl<'a> JsonLifecycle<'a> {
    /// `cgroup` is what `l.cgroup` names, looked up by the caller.
    pub fn new(l: &'a Lifecycle, time: DateTime<Utc>, cgroup: Option<&'a Cgroup>) -> Self {
        let states = l
            .states
            .iter()
            .map(|(state, d)| JsonState {
                state: *state,
                ms: millis(*d),
            })
            .collect();
        JsonLifecycle::with_states(l, time, cgroup, states)
    }
}

impl<'a, S> JsonLifecycle<'a, S> {
    /// The fields JSON and CSV share, so their names and order cannot drift apart;
    /// `states` is the one field each format writes its own way.
    pub(super) fn with_states(
        l: &'a Lifecycle,
        time: DateTime<Utc>,
        cgroup: Option<&'a Cgroup>,
        states: S,
    ) -> Self {
        let (cgroup_path, container) = cgroup_fields(cgroup);
        Self {
            time: time.to_rfc3339_opts(SecondsFormat::Micros, true),
            cookie: l.cookie.known(),
            pid: l.owner.as_ref().map(|o| o.pid),
            comm: l.owner.as_ref().map(|o| Cow::Borrowed(&*o.comm)),
            owner_exited: l.owner.as_ref().is_some_and(|o| o.exited),
            family: l.family,
            laddr: l.local.addr.to_string(),
            lport: l.local.port,
            raddr: l.remote.addr.to_string(),
            rport: l.remote.port,
            lifetime_ms: millis(l.lifetime()),
            connect_ms: l.connect.map(millis),
            states,
            bytes_sent: l.counters.then_some(l.bytes_sent),
            bytes_received: l.counters.then_some(l.bytes_received),
            retransmits: l.counters.then_some(l.retransmits),
            srtt_us: l.counters.then_some(l.srtt_us),
            end: l.end,
            complete: l.complete,
            netns: (l.netns != 0).then_some(l.netns),
            cgroup: known_cgroup(l.cgroup),
            cgroup_path: cgroup_path.map(Cow::Borrowed),
            container,
            id: l.cookie.0,
        }
    }
}

pub fn write_json(
    out: &mut impl Write,
    l: &Lifecycle,
    time: DateTime<Utc>,
    cgroup: Option<&Cgroup>,
) -> io::Result<()> {
    crate::render::escape::json_to_writer(&mut *out, &JsonLifecycle::new(l, time, cgroup))?;
    out.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::{super::fixture::*, *};

    #[test]
    fn json_has_the_documented_names() {
        let mut out = Vec::new();
        write_json(&mut out, &lifecycle(), time(), None).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["lifetime_ms"], json!(1200.12));
        assert_eq!(v["connect_ms"], json!(0.09));
        assert_eq!(
            v["states"],
            json!([
                {"state": "SYN_SENT", "ms": 0.09},
                {"state": "ESTABLISHED", "ms": 1200.0},
                {"state": "FIN_WAIT1", "ms": 0.02},
                {"state": "FIN_WAIT2", "ms": 0.01},
            ])
        );
        assert_eq!(v["end"], json!("normal"));
        for key in [
            "pid",
            "comm",
            "family",
            "laddr",
            "lport",
            "raddr",
            "rport",
            "cookie",
            "lifetime_ms",
            "connect_ms",
            "states",
            "bytes_sent",
            "bytes_received",
            "retransmits",
            "srtt_us",
            "end",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
    }
}
