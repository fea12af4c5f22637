//! One line of `enetstat watch -o json`, parsed and checked against the output contract.

use std::fmt;
use std::net::IpAddr;

use serde::Deserialize;

/// A TCP state as enetstat names it (netstat's names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
pub enum State {
    #[serde(rename = "ESTABLISHED")]
    Established,
    #[serde(rename = "SYN_SENT")]
    SynSent,
    #[serde(rename = "SYN_RECV")]
    SynRecv,
    #[serde(rename = "FIN_WAIT1")]
    FinWait1,
    #[serde(rename = "FIN_WAIT2")]
    FinWait2,
    #[serde(rename = "TIME_WAIT")]
    TimeWait,
    #[serde(rename = "CLOSE")]
    Close,
    #[serde(rename = "CLOSE_WAIT")]
    CloseWait,
    #[serde(rename = "LAST_ACK")]
    LastAck,
    #[serde(rename = "LISTEN")]
    Listen,
    #[serde(rename = "CLOSING")]
    Closing,
    #[serde(rename = "NEW_SYN_RECV")]
    NewSynRecv,
    #[serde(rename = "UNKNOWN")]
    Unknown,
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            State::Established => "ESTABLISHED",
            State::SynSent => "SYN_SENT",
            State::SynRecv => "SYN_RECV",
            State::FinWait1 => "FIN_WAIT1",
            State::FinWait2 => "FIN_WAIT2",
            State::TimeWait => "TIME_WAIT",
            State::Close => "CLOSE",
            State::CloseWait => "CLOSE_WAIT",
            State::LastAck => "LAST_ACK",
            State::Listen => "LISTEN",
            State::Closing => "CLOSING",
            State::NewSynRecv => "NEW_SYN_RECV",
            State::Unknown => "UNKNOWN",
        };
        f.write_str(name)
    }
}

/// Every key the contract promises on every line (values may be null where it says so).
pub const CONTRACT_KEYS: [&str; 20] = [
    "time",
    "ts_ns",
    "cookie",
    "pid",
    "comm",
    "owner_exited",
    "family",
    "laddr",
    "lport",
    "raddr",
    "rport",
    "old",
    "new",
    "ms_in_old",
    "netns",
    "end",
    "cgroup",
    "cgroup_path",
    "container",
    "id",
];

/// One state transition as printed by `enetstat watch -o json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Transition {
    /// Wall-clock time, RFC 3339 UTC (`2026-11-26T09:09:47.123456Z`).
    pub time: String,
    /// Kernel timestamp in nanoseconds.
    pub ts_ns: u64,
    /// The socket's id (`id`): its cookie where the kernel gives one, else enetstat's own
    /// number. One socket, one id; tests group lines by it.
    #[serde(rename = "id")]
    pub cookie: u64,
    /// The cookie itself: null where the kernel cannot give it.
    #[serde(rename = "cookie")]
    pub real_cookie: Option<u64>,
    /// The socket's owner, when known.
    pub pid: Option<u32>,
    /// The owner's command name, when known.
    pub comm: Option<String>,
    /// `ipv4` or `ipv6`.
    pub family: String,
    pub laddr: Option<IpAddr>,
    pub lport: Option<u16>,
    pub raddr: Option<IpAddr>,
    pub rport: Option<u16>,
    pub old: State,
    pub new: State,
    /// Milliseconds spent in `old`; null on the first transition seen for a cookie.
    pub ms_in_old: Option<f64>,
    /// Inode of the socket's network namespace.
    pub netns: Option<u64>,
    /// How the connection ended (`normal`, `refused`, `timeout`, `reset_received`,
    /// `reset_sent`, `aborted`) on a transition into CLOSE; null (or absent) otherwise.
    #[serde(default)]
    pub end: Option<String>,
    /// The line as printed, for messages.
    #[serde(skip)]
    pub raw: String,
}

impl Transition {
    /// Parses one stdout line, checking that every contract key is present and that the
    /// time stamp is RFC 3339 UTC.
    pub fn parse(line: &str) -> Result<Transition, String> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("not JSON ({e}): {line}"))?;
        let object = value
            .as_object()
            .ok_or_else(|| format!("not a JSON object: {line}"))?;
        let missing: Vec<&str> = CONTRACT_KEYS
            .iter()
            .copied()
            .filter(|k| !object.contains_key(*k))
            .collect();
        if !missing.is_empty() {
            return Err(format!("missing keys {missing:?}: {line}"));
        }
        let mut transition: Transition = serde_json::from_value(value)
            .map_err(|e| format!("does not match the contract ({e}): {line}"))?;
        if !is_rfc3339_utc(&transition.time) {
            return Err(format!("`time` is not RFC 3339 UTC: {line}"));
        }
        if transition
            .real_cookie
            .is_some_and(|cookie| cookie != transition.cookie)
        {
            return Err(format!(
                "`id` is not the cookie where the cookie is known: {line}"
            ));
        }
        if transition.family != "ipv4" && transition.family != "ipv6" {
            return Err(format!("`family` is neither ipv4 nor ipv6: {line}"));
        }
        transition.raw = line.to_owned();
        Ok(transition)
    }

    /// Parses every line, panicking with all the bad ones.
    pub fn parse_all(lines: &[String]) -> Vec<Transition> {
        let mut good = Vec::with_capacity(lines.len());
        let mut bad = Vec::new();
        for line in lines {
            match Transition::parse(line) {
                Ok(t) => good.push(t),
                Err(e) => bad.push(e),
            }
        }
        assert!(
            bad.is_empty(),
            "{} of {} stdout lines break the JSON output contract:\n{}",
            bad.len(),
            lines.len(),
            bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
        );
        good
    }

    /// `(old, new)`.
    pub fn states(&self) -> (State, State) {
        (self.old, self.new)
    }
}

impl fmt::Display for Transition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

/// `YYYY-MM-DDTHH:MM:SS[.fraction]Z`.
fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| {
        b.get(range)
            .is_some_and(|d| d.iter().all(u8::is_ascii_digit))
    };
    let at = |i: usize, c: u8| b.get(i) == Some(&c);
    let head = digits(0..4)
        && at(4, b'-')
        && digits(5..7)
        && at(7, b'-')
        && digits(8..10)
        && at(10, b'T')
        && digits(11..13)
        && at(13, b':')
        && digits(14..16)
        && at(16, b':')
        && digits(17..19);
    let tail = match b.get(19..) {
        Some([b'Z']) => true,
        Some([b'.', rest @ .., b'Z']) => !rest.is_empty() && rest.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    head && tail
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"time":"2026-11-26T09:09:47.123456Z","ts_ns":123,"cookie":4242,"pid":1234,"comm":"enetstat-peer","owner_exited":false,"family":"ipv4","laddr":"127.0.0.1","lport":35124,"raddr":"127.0.0.1","rport":443,"old":"SYN_SENT","new":"ESTABLISHED","ms_in_old":12.087,"netns":4026531840,"end":null,"cgroup":1,"cgroup_path":"/","container":null,"id":4242}"#;

    #[test]
    fn parses_the_contract_example() {
        let t = Transition::parse(LINE).unwrap();
        assert_eq!(t.cookie, 4242);
        assert_eq!(t.states(), (State::SynSent, State::Established));
        assert_eq!(t.lport, Some(35124));
        assert_eq!(t.ms_in_old, Some(12.087));
        assert_eq!(t.netns, Some(4_026_531_840));
    }

    #[test]
    fn rejects_a_missing_key() {
        let line = LINE.replace(r#""ms_in_old":12.087,"#, "");
        assert!(Transition::parse(&line).unwrap_err().contains("ms_in_old"));
    }

    #[test]
    fn rejects_an_unknown_state() {
        assert!(Transition::parse(&LINE.replace("SYN_SENT", "SYN-SENT")).is_err());
    }

    #[test]
    fn checks_the_time_format() {
        assert!(is_rfc3339_utc("2026-11-26T09:09:47Z"));
        assert!(is_rfc3339_utc("2026-11-26T09:09:47.1Z"));
        assert!(!is_rfc3339_utc("2026-11-26 09:09:47.1Z"));
        assert!(!is_rfc3339_utc("2026-11-26T09:09:47.Z"));
        assert!(!is_rfc3339_utc("2026-11-26T09:09:47.123+00:00"));
    }
}
