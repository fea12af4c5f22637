//! A lifecycle as a CSV row: the JSON fields ([`super::json::JsonLifecycle`]), in the same
//! order, with `states` flattened to one cell.

use std::io::{self, Write};

use chrono::{DateTime, Utc};

use super::json::JsonLifecycle;
use crate::{
    cgroup::Cgroup,
    life::Lifecycle,
    render::{
        csv_columns::{CGROUP, SOCKET, join},
        millis,
    },
};

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
        // CSV has no escapes of its own: the one rule of `crate::render::escape`, as text shows them.
        row.comm = crate::render::escape::escape_field(row.comm);
        row.cgroup_path = crate::render::escape::escape_field(row.cgroup_path);
        row
    }
}

/// The CSV columns: the JSON fields, with `states` flattened to `SYN_SENT:0.09;ESTABLISHED:1.2`.
pub const CSV_FIELDS: [&str; 24] = join(&[
    &["time"],
    &SOCKET,
    &[
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
    ],
    &CGROUP,
]);

fn csv_writer(out: &mut impl Write) -> ::csv::Writer<&mut impl Write> {
    ::csv::WriterBuilder::new()
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

#[cfg(test)]
mod tests {
    use super::{super::fixture::*, *};

    #[test]
    fn csv_parses_back() {
        let mut out = Vec::new();
        write_csv_header(&mut out).unwrap();
        let id = "cd".repeat(32);
        let pod = Cgroup::new(format!("/kubepods/besteffort/pod1/{id}"));
        write_csv(&mut out, &lifecycle(), time(), Some(&pod)).unwrap();
        let mut r = ::csv::Reader::from_reader(out.as_slice());
        let headers = r.headers().unwrap().clone();
        // The header names the serialized fields, in order.
        let mut named = ::csv::Writer::from_writer(Vec::new());
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
}
