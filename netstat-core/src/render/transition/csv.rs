//! CSV: a header row, then one row per transition. The columns are the JSON fields, in the
//! same order and with the same names; a null is an empty field. The process name and cgroup
//! path are escaped by the one rule of [`crate::render::escape`] (a terminal shows CSV too), then
//! quoted as CSV needs.

use std::io::{self, Write};

use super::json::JsonTransition;
use crate::render::{
    Line,
    csv_columns::{CGROUP, SOCKET, join},
};

/// The header row: the JSON field names.
pub const FIELDS: [&str; 20] = join(&[
    &["time", "ts_ns"],
    &SOCKET,
    &["old", "new", "ms_in_old", "netns", "end"],
    &CGROUP,
]);

/// A writer whose `flush` does nothing: the csv crate flushes its sink after every record,
/// and the event log flushes once per batch.
struct NoFlush<W>(W);

impl<W: Write> Write for NoFlush<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn writer<W: Write>(out: W) -> ::csv::Writer<NoFlush<W>> {
    ::csv::WriterBuilder::new()
        .has_headers(false)
        .buffer_capacity(512)
        .from_writer(NoFlush(out))
}

fn to_io(e: ::csv::Error) -> io::Error {
    match e.into_kind() {
        ::csv::ErrorKind::Io(e) => e,
        other => io::Error::other(format!("{other:?}")),
    }
}

pub fn write_header(out: &mut impl Write) -> io::Result<()> {
    let mut w = writer(out);
    w.write_record(FIELDS).map_err(to_io)?;
    w.flush()
}

pub fn write_line(out: &mut impl Write, line: &Line<'_>) -> io::Result<()> {
    let mut w = writer(out);
    w.serialize(JsonTransition::new(line).escaped())
        .map_err(to_io)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use std::{
        net::{IpAddr, Ipv4Addr},
        time::Duration,
    };

    use chrono::{TimeZone, Utc};
    use serde_json::Value;

    use super::*;
    use crate::{
        event::{Cookie, Endpoint, Family, Owner, Task, Transition},
        state::TcpState,
    };

    fn transition() -> Transition {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Transition {
            ts_ns: 7,
            cookie: Cookie(42),
            family: Family::Ipv4,
            local: Endpoint::new(lo, 0),
            remote: Endpoint::new(lo, 5432),
            old: TcpState::Close,
            new: TcpState::SynSent,
            netns: 4_026_531_840,
            cgroup: 0,
            task: Task {
                pid: 1,
                tid: 1,
                comm: "".into(),
            },
            fin: None,
        }
    }

    #[test]
    fn header_and_rows_read_back_with_a_csv_reader() {
        let t = transition();
        let owner = Owner::new(4410, "ps,q\"l\n\x1b");
        let time = Utc.with_ymd_and_hms(2026, 11, 26, 9, 9, 47).unwrap();
        let first = Line {
            transition: &t,
            time,
            owner: Some(&owner),
            in_old: None,
            end: None,
            cgroup: None,
        };
        let second = Line {
            owner: None,
            in_old: Some(Duration::from_micros(1500)),
            end: None,
            ..first
        };
        let mut out = Vec::new();
        write_header(&mut out).unwrap();
        write_line(&mut out, &first).unwrap();
        write_line(&mut out, &second).unwrap();
        assert!(
            !out.iter()
                .any(|b| b.is_ascii_control() && !b"\r\n".contains(b)),
            "no raw control byte reaches a terminal"
        );

        let mut reader = ::csv::Reader::from_reader(out.as_slice());
        assert_eq!(reader.headers().unwrap(), FIELDS.as_slice());
        let rows: Vec<::csv::StringRecord> = reader.records().map(Result::unwrap).collect();
        assert_eq!(rows.len(), 2);
        assert_eq!(
            rows[0].iter().collect::<Vec<_>>(),
            [
                "2026-11-26T09:09:47.000000Z",
                "7",
                "42",
                "4410",
                // Quoted as CSV needs; control characters escaped by the one rule.
                "ps,q\"l\\x0a\\x1b",
                "false",
                "ipv4",
                "127.0.0.1",
                "",
                "127.0.0.1",
                "5432",
                "CLOSE",
                "SYN_SENT",
                "",
                "4026531840",
                "",
                // cgroup 0: not known, so empty.
                "",
                "",
                "",
                "42"
            ]
        );
        assert_eq!(&rows[1][3], "");
        assert_eq!(&rows[1][4], "");
        assert_eq!(&rows[1][13], "1.5");
    }

    #[test]
    fn columns_are_the_json_fields_in_order() {
        let t = transition();
        let line = Line {
            transition: &t,
            time: Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap(),
            owner: None,
            in_old: None,
            end: None,
            cgroup: None,
        };
        let json = serde_json::to_string(&JsonTransition::new(&line)).unwrap();
        // serde_json keeps declaration order with preserve_order off for structs.
        let keys: Vec<String> = json
            .trim_matches(['{', '}'])
            .split(',')
            .map(|kv| kv.split(':').next().unwrap().trim_matches('"').to_owned())
            .collect();
        assert_eq!(keys, FIELDS);
        let v: Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v.as_object().unwrap().len(), FIELDS.len());
    }
}
