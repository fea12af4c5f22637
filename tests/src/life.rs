//! One line of `enetstat life -o json`, parsed and checked against the output contract.

use std::net::IpAddr;

use serde::Deserialize;

use crate::transition::State;

/// Every key a lifecycle object carries.
pub const LIFE_KEYS: [&str; 24] = [
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

/// One state of a lifecycle and the milliseconds spent in it.
#[derive(Clone, Debug, Deserialize)]
pub struct StateMs {
    pub state: State,
    pub ms: f64,
}

/// One line of `enetstat life -o json`.
#[derive(Clone, Debug, Deserialize)]
pub struct Life {
    pub time: String,
    /// The socket's id (`id`): its cookie where the kernel gives one.
    #[serde(rename = "id")]
    pub cookie: u64,
    /// The cookie itself: null where the kernel cannot give it.
    #[serde(rename = "cookie")]
    pub real_cookie: Option<u64>,
    pub pid: Option<u32>,
    pub comm: Option<String>,
    pub family: String,
    pub laddr: IpAddr,
    pub lport: Option<u16>,
    pub raddr: IpAddr,
    pub rport: Option<u16>,
    pub lifetime_ms: f64,
    pub connect_ms: Option<f64>,
    pub states: Vec<StateMs>,
    /// The counters at CLOSE: null where the kernel cannot give them (no BTF).
    pub bytes_sent: Option<u64>,
    pub bytes_received: Option<u64>,
    pub retransmits: Option<u32>,
    pub srtt_us: Option<u32>,
    /// How it ended: null where the kernel cannot say (no BTF).
    pub end: Option<String>,
    pub complete: bool,
    /// Null where the kernel cannot give it (no BTF).
    pub netns: Option<u64>,
    /// The line as printed, for messages.
    #[serde(skip)]
    pub raw: String,
}

impl Life {
    /// Parses one stdout line, checking that every contract key is present.
    pub fn parse(line: &str) -> Result<Life, String> {
        let value: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| format!("a `life -o json` line is not JSON ({e}): {line}"))?;
        let missing: Vec<&str> = LIFE_KEYS
            .iter()
            .copied()
            .filter(|k| value.get(k).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(format!("missing keys {missing:?}: {line}"));
        }
        let mut life: Life = serde_json::from_value(value)
            .map_err(|e| format!("a lifecycle breaks the schema ({e}): {line}"))?;
        line.clone_into(&mut life.raw);
        Ok(life)
    }

    /// The states in order.
    pub fn state_names(&self) -> Vec<State> {
        self.states.iter().map(|s| s.state).collect()
    }
}
