//! The wire protocol: one JSON object per line (NDJSON) each way. See the module docs of
//! netstat-user's `daemon` for the full description; this file parses requests and builds replies,
//! with no I/O, so the parser is unit-tested (and fuzzed by its property test) without a socket.

use serde::{Deserialize, Serialize};

/// A reply's format and a subscription's stream: the renderers' own types, whose names are
/// the wire's names.
pub use crate::render::{Format, Stream};
/// Which sockets by role: the selection's own type, whose names are the wire's names.
pub use crate::table::select::Servers;

use std::time::Duration;

use crate::{
    diag::Proto,
    event::Family,
    snapshot::SnapshotOptions,
    state::TcpState,
    table::{
        Limits,
        select::{Matcher, Selection},
    },
};

/// The protocol version this build speaks. A request with another `v` gets an error reply.
pub const VERSION: u32 = 1;

/// Longest request line accepted, newline included. Longer lines get an error reply and the
/// rest of the line is skipped.
pub const MAX_REQUEST: usize = 64 * 1024;

/// One request, as sent by a client.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// One netstat-style snapshot of the live table, rendered by the daemon.
    Snapshot(SnapshotRequest),
    /// A stream of transitions or lifecycles, until the client goes away or lags.
    Subscribe(SubscribeRequest),
    /// The daemon's counters.
    Stats,
}

/// A request with its version, as it travels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Envelope<'a> {
    pub v: u32,
    #[serde(flatten)]
    pub request: &'a Request,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SnapshotRequest {
    /// A filter expression (the `watch` language) every socket must match; empty for all.
    pub filter: String,
    /// Also closed connections from the last `recent_ms` milliseconds.
    pub recent_ms: Option<u64>,
    /// `"tcp"`, `"udp"`; empty for both.
    pub protos: Vec<String>,
    pub servers: Servers,
    /// `"ipv4"` or `"ipv6"`; absent for both.
    pub family: Option<String>,
    /// Only sockets in these states (netstat or ss names); empty for any.
    pub states: Vec<String>,
    pub format: Format,
    pub numeric: bool,
    pub programs: bool,
    pub extend: bool,
    pub wide: bool,
    /// CSV: write the header line (a client refreshing with `-c` asks only the first time).
    pub header: bool,
}

impl Default for SnapshotRequest {
    fn default() -> Self {
        Self {
            filter: String::new(),
            recent_ms: None,
            protos: Vec::new(),
            servers: Servers::Exclude,
            family: None,
            states: Vec::new(),
            format: Format::Json,
            numeric: false,
            programs: false,
            extend: false,
            wide: false,
            header: true,
        }
    }
}

impl SnapshotRequest {
    /// How to show the snapshot this request asks for: the one conversion from the wire's
    /// words to options. The daemon answers requests with it, and standalone flags come
    /// through it too (flags, then a request, then options), so the two cannot disagree.
    /// `limits` bound the live table; `extra` is the compiled `filter` (compiling it needs
    /// the system's service names and cgroup tree, which the caller has).
    pub fn options(
        &self,
        limits: Limits,
        extra: Option<Matcher>,
    ) -> Result<SnapshotOptions, String> {
        let mut protos = Vec::new();
        for p in &self.protos {
            protos.push(match p.to_ascii_lowercase().as_str() {
                "tcp" => Proto::Tcp,
                "udp" => Proto::Udp,
                other => {
                    return Err(format!(
                        "unknown protocol {other:?}; use \"tcp\" or \"udp\""
                    ));
                }
            });
        }
        if protos.is_empty() {
            protos = vec![Proto::Tcp, Proto::Udp];
        }
        let family = match self.family.as_deref() {
            None => None,
            Some("ipv4") => Some(Family::Ipv4),
            Some("ipv6") => Some(Family::Ipv6),
            Some(other) => return Err(format!("unknown family {other:?}; use ipv4 or ipv6")),
        };
        let states = self
            .states
            .iter()
            .map(|s| s.parse::<TcpState>().map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SnapshotOptions {
            select: Selection {
                protos,
                servers: self.servers,
                family,
                states,
                extra,
            },
            format: self.format,
            numeric: self.numeric,
            programs: self.programs,
            extend: self.extend,
            wide: self.wide,
            recent: self.recent_ms.map(Duration::from_millis),
            limits,
            ..SnapshotOptions::default()
        })
    }
}

/// What the TIME column of text output shows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WireTime {
    #[default]
    Wall,
    Relative,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubscribeRequest {
    pub stream: Stream,
    /// A filter expression; empty for everything.
    pub filter: String,
    pub format: Format,
    /// Text: the wide layout.
    pub wide: bool,
    /// Text: the TIME column.
    pub time: WireTime,
    /// Text: UTC instead of local time.
    pub utc: bool,
    /// Text with `time: relative`: the kernel monotonic time (ns) that is time zero; 0 (the
    /// default) counts from the subscription.
    pub start_ns: u64,
    /// Text and CSV: send the header line first (`enetstat watch` writes its own).
    pub header: bool,
}

impl Default for SubscribeRequest {
    fn default() -> Self {
        Self {
            stream: Stream::Transitions,
            filter: String::new(),
            format: Format::Json,
            wide: false,
            time: WireTime::Wall,
            utc: false,
            start_ns: 0,
            header: true,
        }
    }
}

/// Why a request line was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("request too long: over {MAX_REQUEST} bytes")]
    TooLong,
    #[error("request is not UTF-8")]
    NotUtf8,
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("request has no \"v\"; this daemon speaks protocol version {VERSION}")]
    NoVersion,
    #[error("protocol version {0} is not supported; this daemon speaks version {VERSION}")]
    Version(u64),
    #[error("request ended without a newline (truncated)")]
    Truncated,
}

/// Parses one request line (without its newline).
pub fn parse_request(line: &[u8]) -> Result<Request, RequestError> {
    if line.len() >= MAX_REQUEST {
        return Err(RequestError::TooLong);
    }
    let text = std::str::from_utf8(line).map_err(|_| RequestError::NotUtf8)?;
    if let Some(key) = duplicate_key(text) {
        return Err(RequestError::Malformed(format!(
            "the key {key:?} appears twice in one object"
        )));
    }
    let mut value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| RequestError::Malformed(e.to_string()))?;
    let Some(obj) = value.as_object_mut() else {
        return Err(RequestError::Malformed("not a JSON object".into()));
    };
    // A field the daemon does not know is refused, not ignored: a misspelt option would
    // otherwise silently do nothing. `v` is checked here; the rest by serde.
    if obj.get("op").and_then(|op| op.as_str()) == Some("stats")
        && let Some(extra) = obj.keys().find(|k| !matches!(k.as_str(), "v" | "op"))
    {
        return Err(RequestError::Malformed(format!(
            "unknown field `{extra}`: `stats` takes none"
        )));
    }
    match obj.remove("v") {
        None => return Err(RequestError::NoVersion),
        Some(ref v) => match v.as_u64() {
            Some(n) if n == u64::from(VERSION) => {}
            Some(n) => return Err(RequestError::Version(n)),
            None => return Err(RequestError::Malformed("\"v\" is not a number".into())),
        },
    }
    serde_json::from_value(value).map_err(|e| RequestError::Malformed(e.to_string()))
}

/// The first key that appears twice in one JSON object of `text`, if any (JSON parsers
/// disagree on which one wins, so a request that has one is refused). `None` also for text
/// that is not JSON: the parse that follows reports that.
fn duplicate_key(text: &str) -> Option<String> {
    use serde::de::{Deserializer as _, MapAccess, SeqAccess, Visitor};

    /// Walks any JSON value, failing with the duplicate key's name.
    struct Walk;

    impl<'de> Visitor<'de> for Walk {
        type Value = ();

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("any JSON value")
        }

        fn visit_bool<E>(self, _: bool) -> Result<(), E> {
            Ok(())
        }
        fn visit_i64<E>(self, _: i64) -> Result<(), E> {
            Ok(())
        }
        fn visit_u64<E>(self, _: u64) -> Result<(), E> {
            Ok(())
        }
        fn visit_f64<E>(self, _: f64) -> Result<(), E> {
            Ok(())
        }
        fn visit_str<E>(self, _: &str) -> Result<(), E> {
            Ok(())
        }
        fn visit_unit<E>(self) -> Result<(), E> {
            Ok(())
        }
        fn visit_none<E>(self) -> Result<(), E> {
            Ok(())
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
            while seq.next_element_seed(WalkSeed)?.is_some() {}
            Ok(())
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if !seen.insert(key.clone()) {
                    // The error carries the key out; the parse stops here.
                    return Err(serde::de::Error::custom(format!("\u{0}{key}")));
                }
                map.next_value_seed(WalkSeed)?;
            }
            Ok(())
        }
    }

    struct WalkSeed;

    impl<'de> serde::de::DeserializeSeed<'de> for WalkSeed {
        type Value = ();

        fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_any(Walk)
        }
    }

    let mut de = serde_json::Deserializer::from_str(text);
    match (&mut de).deserialize_any(Walk) {
        Err(e) => {
            let msg = e.to_string();
            let key = msg.strip_prefix('\u{0}')?;
            // serde_json appends " at line L column C".
            let key = key.rsplit_once(" at line ").map_or(key, |(k, _)| k);
            Some(key.to_owned())
        }
        Ok(()) => None,
    }
}

/// The line that encodes `request` (with its newline).
pub fn request_line(request: &Request) -> String {
    let mut s = serde_json::to_string(&Envelope {
        v: VERSION,
        request,
    })
    .unwrap_or_default();
    s.push('\n');
    s
}

/// An error reply line (with its newline).
pub fn error_line(message: &str) -> String {
    let mut s = serde_json::json!({ "error": message }).to_string();
    s.push('\n');
    s
}

/// The reply that cuts off a subscriber that read too slowly.
pub fn lagged_line(dropped: u64) -> String {
    let mut s = serde_json::json!({
        "error": format!("lagged: {dropped} events dropped"),
        "lagged": dropped,
    })
    .to_string();
    s.push('\n');
    s
}

/// The acknowledgement that starts a subscription.
pub fn subscribed_line(stream: Stream) -> String {
    let mut s = serde_json::json!({ "v": VERSION, "ok": true, "subscribed": stream }).to_string();
    s.push('\n');
    s
}

/// A snapshot reply: the rendered output, exactly what standalone `enetstat` would print.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotReply {
    pub v: u32,
    pub output: String,
}

/// Any reply line, as a client reads it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub struct ReplyProbe {
    pub error: Option<String>,
    pub lagged: Option<u64>,
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::Stats,
            Request::Snapshot(SnapshotRequest {
                filter: "dport = :443".into(),
                recent_ms: Some(5000),
                ..SnapshotRequest::default()
            }),
            Request::Subscribe(SubscribeRequest {
                stream: Stream::Lifecycles,
                filter: "state close".into(),
                format: Format::Text,
                ..SubscribeRequest::default()
            }),
        ];
        for r in reqs {
            let line = request_line(&r);
            assert!(line.ends_with('\n'));
            assert_eq!(parse_request(line.trim_end().as_bytes()), Ok(r));
        }
    }

    #[test]
    fn short_forms_from_the_docs_parse() {
        assert_eq!(
            parse_request(br#"{"v":1,"op":"stats"}"#),
            Ok(Request::Stats)
        );
        let Ok(Request::Snapshot(s)) =
            parse_request(br#"{"v":1,"op":"snapshot","filter":"sport = :22","recent_ms":1000}"#)
        else {
            panic!("not a snapshot")
        };
        assert_eq!(s.filter, "sport = :22");
        assert_eq!(s.recent_ms, Some(1000));
        assert!(s.header);
        let Ok(Request::Subscribe(s)) =
            parse_request(br#"{"v":1,"op":"subscribe","stream":"lifecycles"}"#)
        else {
            panic!("not a subscription")
        };
        assert_eq!(s.stream, Stream::Lifecycles);
        assert_eq!(s.format, Format::Json);
    }

    #[test]
    fn bad_requests_say_why() {
        assert_eq!(
            parse_request(br#"{"op":"stats"}"#),
            Err(RequestError::NoVersion)
        );
        assert_eq!(
            parse_request(br#"{"v":2,"op":"stats"}"#),
            Err(RequestError::Version(2))
        );
        assert!(matches!(
            parse_request(br#"{"v":1,"op":"reboot"}"#),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(br#"{"v":1,"op":"snap"#),
            Err(RequestError::Malformed(_))
        ));
        assert!(matches!(
            parse_request(b"[1,2]"),
            Err(RequestError::Malformed(_))
        ));
        assert_eq!(parse_request(b"\xff\xfe"), Err(RequestError::NotUtf8));
        assert_eq!(
            parse_request(br#"{"v":1,"op":"snapshot","filter":"a","filter":"b"}"#),
            Err(RequestError::Malformed(
                "the key \"filter\" appears twice in one object".into()
            ))
        );
        assert_eq!(
            parse_request(br#"{"v":1,"op":"stats","x":{"k":1,"k":2}}"#),
            Err(RequestError::Malformed(
                "the key \"k\" appears twice in one object".into()
            ))
        );
        // One key in two objects of an array is no duplicate: the request is refused for its
        // unknown field, not for a duplicate key.
        assert_eq!(
            parse_request(br#"{"v":1,"op":"stats","x":[{"k":1},{"k":2}]}"#),
            Err(RequestError::Malformed(
                "unknown field `x`: `stats` takes none".into()
            ))
        );
        assert_eq!(
            parse_request(&vec![b' '; MAX_REQUEST]),
            Err(RequestError::TooLong)
        );
        let lag: serde_json::Value = serde_json::from_str(&lagged_line(7)).unwrap();
        assert_eq!(lag["error"], "lagged: 7 events dropped");
        // Unknown fields are refused, naming the field, in every op.
        for line in [
            &br#"{"v":1,"op":"snapshot","fliter":"port = :22"}"#[..],
            br#"{"v":1,"op":"subscribe","fromat":"text"}"#,
            br#"{"v":1,"op":"stats","verbose":true}"#,
        ] {
            let Err(RequestError::Malformed(why)) = parse_request(line) else {
                panic!("accepted {}", String::from_utf8_lossy(line))
            };
            assert!(why.contains("unknown field"), "{why}");
        }
        // `servers` takes netstat's three choices.
        for (word, servers) in [
            ("exclude", Servers::Exclude),
            ("only", Servers::Only),
            ("include", Servers::Include),
        ] {
            let line = format!(r#"{{"v":1,"op":"snapshot","servers":"{word}"}}"#);
            let Ok(Request::Snapshot(r)) = parse_request(line.as_bytes()) else {
                panic!("{line}")
            };
            assert_eq!(r.servers, servers);
        }
        assert_eq!(lag["lagged"], 7);
    }

    proptest! {
        /// The parser never panics, whatever arrives.
        #[test]
        fn parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse_request(&bytes);
        }

        /// Nor on JSON-shaped input with the right version and odd fields.
        #[test]
        fn parser_never_panics_on_json(op in "[a-z_]{0,12}", key in "[a-z_]{0,10}", val in ".{0,20}") {
            let line = serde_json::json!({"v": 1, "op": op, key: val}).to_string();
            let _ = parse_request(line.as_bytes());
        }
    }

    #[test]
    fn a_snapshot_request_becomes_the_options_its_words_say() {
        let r = SnapshotRequest {
            protos: vec!["TCP".into()],
            servers: Servers::Only,
            family: Some("ipv6".into()),
            states: vec!["time-wait".into(), "LISTEN".into()],
            format: Format::Csv,
            recent_ms: Some(1500),
            wide: true,
            ..SnapshotRequest::default()
        };
        let o = r.options(Limits::default(), None).unwrap();
        assert_eq!(o.select.protos, [Proto::Tcp]);
        assert_eq!(o.select.servers, Servers::Only);
        assert_eq!(o.select.family, Some(Family::Ipv6));
        assert_eq!(o.select.states, [TcpState::TimeWait, TcpState::Listen]);
        assert_eq!(o.format, Format::Csv);
        assert_eq!(o.recent, Some(Duration::from_millis(1500)));
        assert!(o.wide && !o.numeric && o.select.extra.is_none());
        // No protocol named: both.
        let o = SnapshotRequest::default()
            .options(Limits::default(), None)
            .unwrap();
        assert_eq!(o.select.protos, [Proto::Tcp, Proto::Udp]);
        for (bad, why) in [
            (
                SnapshotRequest {
                    protos: vec!["sctp".into()],
                    ..SnapshotRequest::default()
                },
                "unknown protocol",
            ),
            (
                SnapshotRequest {
                    family: Some("ipx".into()),
                    ..SnapshotRequest::default()
                },
                "unknown family",
            ),
            (
                SnapshotRequest {
                    states: vec!["NAPPING".into()],
                    ..SnapshotRequest::default()
                },
                "unknown TCP state",
            ),
        ] {
            let e = bad.options(Limits::default(), None).unwrap_err();
            assert!(e.starts_with(why), "{e}");
        }
    }
}
