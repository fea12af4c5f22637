//! TCP states by netstat's names.

use std::{fmt, str::FromStr};

use netstat_common::tcp_state as k;
use serde::{Serialize, Serializer};

/// A TCP socket state. `Display` prints the name netstat uses (`FIN_WAIT1`, not `FIN-WAIT-1`).
/// The default is CLOSE, the state of a socket the kernel has just made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TcpState {
    Established,
    SynSent,
    SynRecv,
    FinWait1,
    FinWait2,
    TimeWait,
    #[default]
    Close,
    CloseWait,
    LastAck,
    Listen,
    Closing,
    NewSynRecv,
    /// A number this version does not know; keeps the raw value for display.
    Unknown(u8),
}

impl TcpState {
    /// Every named state, in the kernel's numbering order.
    pub const ALL: [TcpState; 12] = [
        TcpState::Established,
        TcpState::SynSent,
        TcpState::SynRecv,
        TcpState::FinWait1,
        TcpState::FinWait2,
        TcpState::TimeWait,
        TcpState::Close,
        TcpState::CloseWait,
        TcpState::LastAck,
        TcpState::Listen,
        TcpState::Closing,
        TcpState::NewSynRecv,
    ];

    /// The state for a kernel state number.
    pub fn from_kernel(n: u8) -> Self {
        match n {
            k::ESTABLISHED => Self::Established,
            k::SYN_SENT => Self::SynSent,
            k::SYN_RECV => Self::SynRecv,
            k::FIN_WAIT1 => Self::FinWait1,
            k::FIN_WAIT2 => Self::FinWait2,
            k::TIME_WAIT => Self::TimeWait,
            k::CLOSE => Self::Close,
            k::CLOSE_WAIT => Self::CloseWait,
            k::LAST_ACK => Self::LastAck,
            k::LISTEN => Self::Listen,
            k::CLOSING => Self::Closing,
            k::NEW_SYN_RECV => Self::NewSynRecv,
            other => Self::Unknown(other),
        }
    }

    /// netstat's name for the state.
    pub fn name(self) -> &'static str {
        match self {
            Self::Established => "ESTABLISHED",
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::FinWait1 => "FIN_WAIT1",
            Self::FinWait2 => "FIN_WAIT2",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::Listen => "LISTEN",
            Self::Closing => "CLOSING",
            Self::NewSynRecv => "NEW_SYN_RECV",
            Self::Unknown(_) => "UNKNOWN",
        }
    }
}

impl fmt::Display for TcpState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl Serialize for TcpState {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// The error for a string that names no TCP state.
#[derive(Debug, thiserror::Error)]
#[error(
    "unknown TCP state {0:?}; expected one of ESTABLISHED, SYN_SENT, SYN_RECV, FIN_WAIT1, FIN_WAIT2, TIME_WAIT, CLOSE, CLOSE_WAIT, LAST_ACK, LISTEN, CLOSING, NEW_SYN_RECV"
)]
pub struct UnknownState(pub String);

impl FromStr for TcpState {
    type Err = UnknownState;

    /// Accepts netstat's names and ss's spellings (`syn-sent`, `fin-wait-1`), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let norm: String = s
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        Self::ALL
            .into_iter()
            .find(|st| st.name().replace('_', "") == norm)
            .ok_or_else(|| UnknownState(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_numbers_round_trip_to_netstat_names() {
        let names: Vec<_> = (1..=12).map(|n| TcpState::from_kernel(n).name()).collect();
        assert_eq!(
            names,
            [
                "ESTABLISHED",
                "SYN_SENT",
                "SYN_RECV",
                "FIN_WAIT1",
                "FIN_WAIT2",
                "TIME_WAIT",
                "CLOSE",
                "CLOSE_WAIT",
                "LAST_ACK",
                "LISTEN",
                "CLOSING",
                "NEW_SYN_RECV"
            ]
        );
        assert_eq!(TcpState::from_kernel(0).name(), "UNKNOWN");
        assert_eq!(TcpState::from_kernel(99), TcpState::Unknown(99));
    }

    #[test]
    fn parses_netstat_and_ss_spellings() {
        assert_eq!("FIN_WAIT1".parse::<TcpState>().unwrap(), TcpState::FinWait1);
        assert_eq!(
            "fin-wait-1".parse::<TcpState>().unwrap(),
            TcpState::FinWait1
        );
        assert_eq!("syn-sent".parse::<TcpState>().unwrap(), TcpState::SynSent);
        assert!("bogus".parse::<TcpState>().is_err());
    }
}
