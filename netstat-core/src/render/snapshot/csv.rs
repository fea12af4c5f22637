//! Snapshots as CSV for scripts: one header, one line per socket, the JSON socket's fields
//! ([`super::json::JsonSocket`]) in its order. Addresses and ports are always numeric.

use std::io::{self, Write};

use super::{Row, ShownOwner, json::JsonSocket};
use crate::{cgroup::Cgroup, render::escape_comm};

/// The JSON socket's fields, in its order, after the snapshot's `time`.
pub const CSV_HEADER: &str = "time,proto,transport,family,local_addr,local_port,remote_addr,remote_port,state,recv_q,send_q,pid,program,holds,uid,inode,cookie,age_ms,closed,lifetime_ms,closed_ago_ms,errno,netns,cgroup,cgroup_path,container";

pub fn write_csv_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(out, "{CSV_HEADER}")
}

/// A CSV field, quoted when it needs to be (RFC 4180).
fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_default()
}

pub fn write_csv_row(
    out: &mut impl Write,
    time: &str,
    r: &Row,
    cgroup: Option<&Cgroup>,
) -> io::Result<()> {
    let j = JsonSocket::new(r, cgroup);
    let (pid, program, holds) = match &r.owner {
        Some(ShownOwner { pid, comm, holds }) => (
            pid.to_string(),
            csv_field(&escape_comm(comm)),
            holds.to_string(),
        ),
        None => Default::default(),
    };
    writeln!(
        out,
        "{time},{},{},{},{},{},{},{},{},{},{},{pid},{program},{holds},{},{},{},{},{},{},{},{},{},{},{},{}",
        j.proto,
        j.transport,
        j.family,
        j.local_addr,
        opt(j.local_port),
        j.remote_addr,
        opt(j.remote_port),
        j.state,
        j.recv_q,
        j.send_q,
        opt(j.uid),
        j.inode,
        opt(j.cookie),
        opt(j.age_ms),
        j.closed,
        opt(j.lifetime_ms),
        opt(j.closed_ago_ms),
        opt(j.errno),
        opt(j.netns),
        opt(j.cgroup),
        j.cgroup_path
            .map(|p| csv_field(&escape_comm(p)))
            .unwrap_or_default(),
        opt(j.container),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::{super::fixture::row, *};

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let mut out = Vec::new();
        write_csv_row(&mut out, "T", &row(), Some(&Cgroup::new("/a,b".into()))).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "T,tcp6,tcp,ipv6,::1,5432,::1,40000,ESTABLISHED,3,4,7,\"pg,\"\"x\"\"\",true,1000,99,5,1.5,\
             false,,,,4026531840,,\"/a,b\",\n"
        );
    }

    /// CSV has JSON's columns, in JSON's order (after the snapshot's `time`).
    #[test]
    fn csv_has_the_json_columns() {
        let v: Value = serde_json::to_value(JsonSocket::new(&row(), None)).unwrap();
        let json: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut csv: Vec<&str> = CSV_HEADER.split(',').skip(1).collect();
        let mut sorted_json = json.clone();
        sorted_json.sort_unstable();
        csv.sort_unstable();
        assert_eq!(csv, sorted_json);
    }
}
