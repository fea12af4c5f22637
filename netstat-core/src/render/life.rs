//! Lifecycle lines for `enetstat life`: one per connection when it ends.

use std::{
    borrow::Cow,
    io::{self, Write},
};

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use super::{
    escape_comm, millis,
    transition::json::{cgroup_fields, known_cgroup},
    transition::text::{pid_text, short_ms},
};
use crate::{cgroup::Cgroup, end::End, event::Family, life::Lifecycle, state::TcpState};

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

impl<'a> JsonLifecycle<'a, String> {
    /// The CSV row: the same fields, `states` as one cell.
    fn csv(l: &'a Lifecycle, time: DateTime<Utc>, cgroup: Option<&'a Cgroup>) -> Self {
        let states = l
            .states
            .iter()
            .map(|(state, d)| format!("{state}:{}", millis(*d)))
            .collect::<Vec<_>>()
            .join(";");
        let mut row = JsonLifecycle::with_states(l, time, cgroup, states);
        // CSV has no escapes of its own: the one rule of `super::escape`, as text shows them.
        row.comm = super::escape::escape_field(row.comm);
        row.cgroup_path = super::escape::escape_field(row.cgroup_path);
        row
    }
}

impl<'a, S> JsonLifecycle<'a, S> {
    fn with_states(
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
    super::escape::json_to_writer(&mut *out, &JsonLifecycle::new(l, time, cgroup))?;
    out.write_all(b"\n")
}

/// The CSV columns: the JSON fields, with `states` flattened to `SYN_SENT:0.09;ESTABLISHED:1.2`.
pub const CSV_FIELDS: [&str; 24] = [
    "time",
    "cookie",
    "pid",
    "comm",
    "owner_exited",
    "family",
    "laddr",
    "lport",
    "raddr",
    "rport",
    "lifetime_ms",
    "connect_ms",
    "states",
    "bytes_sent",
    "bytes_received",
    "retransmits",
    "srtt_us",
    "end",
    "complete",
    "netns",
    "cgroup",
    "cgroup_path",
    "container",
    "id",
];

fn csv_writer(out: &mut impl Write) -> csv::Writer<&mut impl Write> {
    csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out)
}

pub fn write_csv_header(out: &mut impl Write) -> io::Result<()> {
    let mut w = csv_writer(out);
    w.write_record(CSV_FIELDS).map_err(io::Error::other)?;
    w.flush()
}

pub fn write_csv(
    out: &mut impl Write,
    l: &Lifecycle,
    time: DateTime<Utc>,
    cgroup: Option<&Cgroup>,
) -> io::Result<()> {
    let mut w = csv_writer(out);
    w.serialize(JsonLifecycle::csv(l, time, cgroup))
        .map_err(io::Error::other)?;
    w.flush()
}

pub const TEXT_HEADER: &str = "PID     COMM        LOCAL                  REMOTE                 LIFE_MS CONN_MS  TX_BYTES   RX_BYTES RETR RTT_MS END            STATES (ms in each)";

/// One human line: who, both ends, lifetime, connect latency, bytes, retransmits, RTT, how it
/// ended, then the states in order with the milliseconds spent in each.
pub fn write_text(out: &mut impl Write, l: &Lifecycle) -> io::Result<()> {
    let (pid, comm) = match &l.owner {
        Some(o) => (pid_text(o), escape_comm(&o.comm).into_owned()),
        None => ("-".into(), "-".into()),
    };
    let states = l
        .states
        .iter()
        .map(|(s, d)| format!("{s} {}", short_ms(millis(*d))))
        .collect::<Vec<_>>()
        .join(" > ");
    let connect = l
        .connect
        .map_or_else(|| "-".to_owned(), |d| short_ms(millis(d)));
    writeln!(
        out,
        "{pid:<7} {comm:<11} {local:<22} {remote:<22} {lifetime:>7} {connect:>7} {tx:>9} {rx:>10} {retr:>4} {rtt:>6} {end:<14} {partial}{states}",
        local = l.local.to_string(),
        remote = l.remote.to_string(),
        lifetime = short_ms(millis(l.lifetime())),
        tx = known(l, l.bytes_sent.to_string()),
        rx = known(l, l.bytes_received.to_string()),
        retr = known(l, l.retransmits.to_string()),
        rtt = known(l, short_ms(f64::from(l.srtt_us) / 1000.0)),
        end = l.end.map_or("-", End::name),
        partial = if l.complete {
            ""
        } else {
            "(open before tracing) "
        },
    )
}

/// A counter's text, or `-` where the kernel could not give the counters.
fn known(l: &Lifecycle, text: String) -> String {
    if l.counters { text } else { "-".to_owned() }
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr},
        time::Duration,
    };

    use chrono::TimeZone;
    use serde_json::{Value, json};

    use super::*;
    use crate::event::{Cookie, Endpoint, Owner};

    fn lifecycle() -> Lifecycle {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Lifecycle {
            cookie: Cookie(9),
            family: Family::Ipv4,
            local: Endpoint::new(lo, 40000),
            remote: Endpoint::new(lo, 443),
            owner: Some(Owner::new(7, "curl")),
            netns: 1,
            cgroup: 0,
            start_ns: 0,
            end_ns: 1_200_120_000,
            connect: Some(Duration::from_micros(90)),
            states: vec![
                (TcpState::SynSent, Duration::from_micros(90)),
                (TcpState::Established, Duration::from_millis(1200)),
                (TcpState::FinWait1, Duration::from_micros(20)),
                (TcpState::FinWait2, Duration::from_micros(10)),
            ],
            complete: true,
            bytes_sent: 1_048_576,
            bytes_received: 1_048_576,
            retransmits: 0,
            srtt_us: 52,
            counters: true,
            end: Some(End::Normal),
        }
    }

    fn time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap()
    }

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

    #[test]
    fn csv_parses_back() {
        let mut out = Vec::new();
        write_csv_header(&mut out).unwrap();
        let id = "cd".repeat(32);
        let pod = Cgroup::new(format!("/kubepods/besteffort/pod1/{id}"));
        write_csv(&mut out, &lifecycle(), time(), Some(&pod)).unwrap();
        let mut r = csv::Reader::from_reader(out.as_slice());
        let headers = r.headers().unwrap().clone();
        // The header names the serialized fields, in order.
        let mut named = csv::Writer::from_writer(Vec::new());
        let l = lifecycle();
        named
            .serialize(JsonLifecycle::csv(&l, time(), None))
            .unwrap();
        let named = String::from_utf8(named.into_inner().unwrap()).unwrap();
        assert_eq!(named.lines().next(), Some(CSV_FIELDS.join(",").as_str()));
        assert_eq!(headers.iter().collect::<Vec<_>>(), CSV_FIELDS);
        let row = r.records().next().unwrap().unwrap();
        let get = |k: &str| {
            row.get(headers.iter().position(|h| h == k).unwrap())
                .unwrap()
                .to_owned()
        };
        assert_eq!(get("bytes_sent"), "1048576");
        assert_eq!(
            get("states"),
            "SYN_SENT:0.09;ESTABLISHED:1200;FIN_WAIT1:0.02;FIN_WAIT2:0.01"
        );
        assert_eq!(get("end"), "normal");
        assert_eq!(get("connect_ms"), "0.09");
        assert_eq!(get("cgroup_path"), pod.path);
        assert_eq!(get("container"), format!("kubernetes://{id}"));
    }

    #[test]
    fn text_lists_states_in_order() {
        let mut out = Vec::new();
        write_text(&mut out, &lifecycle()).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(
            line.contains(
                "SYN_SENT 0.090 > ESTABLISHED 1200.0 > FIN_WAIT1 0.020 > FIN_WAIT2 0.010"
            ),
            "{line}"
        );
        assert!(
            line.starts_with("7       curl        127.0.0.1:40000        127.0.0.1:443"),
            "{line}"
        );
        assert_eq!(line.find("127.0.0.1:443"), TEXT_HEADER.find("REMOTE"));
        assert_eq!(
            line.find("1200.1").map(|i| i + 6),
            TEXT_HEADER.find(" CONN_MS")
        );
    }
}
