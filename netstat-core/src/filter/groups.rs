//! State names and state groups, as `state NAME` and `from NAME` accept them.
//!
//! The groups are ss's (`ss state connected`), with ss's definitions, plus two of our own for
//! the two halves of a connection's life:
//!
//! | group          | states                                                                 |
//! |----------------|------------------------------------------------------------------------|
//! | `all`          | every state, including ones this version does not know                 |
//! | `connected`    | every state but LISTEN, CLOSE, SYN_RECV, NEW_SYN_RECV and TIME_WAIT    |
//! | `synchronized` | `connected` without SYN_SENT                                           |
//! | `bucket`       | the kernel's mini-sockets: SYN_RECV, NEW_SYN_RECV, TIME_WAIT           |
//! | `big`          | every named state but those in `bucket`                                |
//! | `opening`      | SYN_SENT, SYN_RECV, NEW_SYN_RECV                                       |
//! | `teardown`     | FIN_WAIT1, FIN_WAIT2, CLOSING, TIME_WAIT, CLOSE_WAIT, LAST_ACK         |
//!
//! `closing` is not a group: as in ss it names the single state CLOSING (both sides sent FIN
//! at once). ss also spells CLOSE and LISTEN as `closed` and `listening`; both are accepted.

use std::{fmt, str::FromStr};

use crate::state::TcpState;

/// A named set of states.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Group {
    All,
    Connected,
    Synchronized,
    Bucket,
    Big,
    Opening,
    Teardown,
}

impl Group {
    pub const ALL: [Group; 7] = [
        Group::All,
        Group::Connected,
        Group::Synchronized,
        Group::Bucket,
        Group::Big,
        Group::Opening,
        Group::Teardown,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Group::All => "all",
            Group::Connected => "connected",
            Group::Synchronized => "synchronized",
            Group::Bucket => "bucket",
            Group::Big => "big",
            Group::Opening => "opening",
            Group::Teardown => "teardown",
        }
    }

    /// Whether `state` belongs to the group.
    pub fn contains(self, state: TcpState) -> bool {
        use TcpState::*;
        let bucket = matches!(state, SynRecv | NewSynRecv | TimeWait);
        match self {
            Group::All => true,
            Group::Connected => !bucket && !matches!(state, Listen | Close | Unknown(_)),
            Group::Synchronized => {
                !bucket && !matches!(state, Listen | Close | SynSent | Unknown(_))
            }
            Group::Bucket => bucket,
            Group::Big => !bucket && !matches!(state, Unknown(_)),
            Group::Opening => matches!(state, SynSent | SynRecv | NewSynRecv),
            Group::Teardown => matches!(
                state,
                FinWait1 | FinWait2 | Closing | TimeWait | CloseWait | LastAck
            ),
        }
    }
}

/// What `state` or `from` names: one state or a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StateSel {
    One(TcpState),
    Group(Group),
}

impl StateSel {
    pub fn contains(self, state: TcpState) -> bool {
        match self {
            StateSel::One(s) => s == state,
            StateSel::Group(g) => g.contains(state),
        }
    }
}

/// The error for a word that names neither a state nor a group.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown state `{0}`")]
pub struct UnknownStateName(pub String);

impl FromStr for StateSel {
    type Err = UnknownStateName;

    /// A group name, a netstat name (`SYN_SENT`), an ss name (`syn-sent`, `closed`,
    /// `listening`); any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        if let Some(g) = Group::ALL.into_iter().find(|g| g.name() == lower) {
            return Ok(StateSel::Group(g));
        }
        let state = match lower.as_str() {
            "closed" => TcpState::Close,
            "listening" => TcpState::Listen,
            "estab" => TcpState::Established,
            _ => s
                .parse::<TcpState>()
                .map_err(|_| UnknownStateName(s.to_owned()))?,
        };
        Ok(StateSel::One(state))
    }
}

impl fmt::Display for StateSel {
    /// ss's spelling: `syn-sent`, `fin-wait-1`, `connected`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateSel::Group(g) => f.write_str(g.name()),
            StateSel::One(s) => f.write_str(&ss_name(*s)),
        }
    }
}

/// ss's name of a state: lower case, dashes, digits set apart (`fin-wait-1`).
pub fn ss_name(state: TcpState) -> String {
    let mut out = String::new();
    for c in state.name().chars() {
        match c {
            '_' => out.push('-'),
            c if c.is_ascii_digit() => {
                out.push('-');
                out.push(c);
            }
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// The names `state` accepts, for error messages.
pub fn accepted_names() -> String {
    let states: Vec<String> = TcpState::ALL.into_iter().map(ss_name).collect();
    let groups: Vec<&str> = Group::ALL.into_iter().map(Group::name).collect();
    format!(
        "a state ({}) or a group ({})",
        states.join(", "),
        groups.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    fn members(g: Group) -> Vec<TcpState> {
        TcpState::ALL
            .into_iter()
            .filter(|s| g.contains(*s))
            .collect()
    }

    #[test]
    fn groups_hold_the_documented_states() {
        assert_eq!(members(Group::All), TcpState::ALL.to_vec());
        assert!(Group::All.contains(Unknown(99)));
        assert_eq!(
            members(Group::Connected),
            [
                Established,
                SynSent,
                FinWait1,
                FinWait2,
                CloseWait,
                LastAck,
                Closing
            ]
        );
        assert_eq!(
            members(Group::Synchronized),
            [Established, FinWait1, FinWait2, CloseWait, LastAck, Closing]
        );
        assert_eq!(members(Group::Bucket), [SynRecv, TimeWait, NewSynRecv]);
        assert_eq!(
            members(Group::Big),
            [
                Established,
                SynSent,
                FinWait1,
                FinWait2,
                Close,
                CloseWait,
                LastAck,
                Listen,
                Closing
            ]
        );
        assert_eq!(members(Group::Opening), [SynSent, SynRecv, NewSynRecv]);
        assert_eq!(
            members(Group::Teardown),
            [FinWait1, FinWait2, TimeWait, CloseWait, LastAck, Closing]
        );
        // Every group but `all`.
        for g in &Group::ALL[1..] {
            assert!(!g.contains(Unknown(99)), "{g:?}");
        }
    }

    #[test]
    fn names_in_every_spelling() {
        for (text, want) in [
            ("established", StateSel::One(Established)),
            ("ESTABLISHED", StateSel::One(Established)),
            ("estab", StateSel::One(Established)),
            ("syn-sent", StateSel::One(SynSent)),
            ("SYN_SENT", StateSel::One(SynSent)),
            ("fin-wait-1", StateSel::One(FinWait1)),
            ("closed", StateSel::One(Close)),
            ("close", StateSel::One(Close)),
            ("listening", StateSel::One(Listen)),
            ("closing", StateSel::One(Closing)),
            ("Connected", StateSel::Group(Group::Connected)),
            ("bucket", StateSel::Group(Group::Bucket)),
        ] {
            assert_eq!(text.parse::<StateSel>(), Ok(want), "{text}");
        }
        assert!("bogus".parse::<StateSel>().is_err());
    }

    #[test]
    fn display_uses_ss_names_and_parses_back() {
        for s in TcpState::ALL {
            let sel = StateSel::One(s);
            assert_eq!(sel.to_string().parse::<StateSel>(), Ok(sel));
        }
        assert_eq!(StateSel::One(FinWait2).to_string(), "fin-wait-2");
        assert_eq!(StateSel::One(NewSynRecv).to_string(), "new-syn-recv");
    }
}
