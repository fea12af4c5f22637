//! How a connection ended, from the socket's error at its transition into CLOSE, the state it
//! left, and the resets traced on it.

use serde::Serialize;

use crate::{event::ResetDirection, state::TcpState};

/// How a connection ended. The JSON names are a stable interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum End {
    /// Both sides closed with FINs (or a listener was closed).
    Normal,
    /// The peer answered our SYN with a reset: nothing listens there.
    Refused,
    /// SYN or data retransmissions ran out.
    Timeout,
    /// The peer reset an established connection.
    ResetReceived,
    /// We reset it: `close()` with `SO_LINGER` 0, or with unread data, or an abort.
    ResetSent,
    /// The application gave up before the connection was established, or the kernel was
    /// told to kill it (`ss -K`).
    Aborted,
}

impl End {
    /// Every way a connection ends, in the order the docs list them.
    pub const ALL: [End; 6] = [
        End::Normal,
        End::Refused,
        End::Timeout,
        End::ResetReceived,
        End::ResetSent,
        End::Aborted,
    ];

    /// The end a JSON name names (as a daemon's lines carry it).
    pub fn named(name: &str) -> Option<End> {
        End::ALL.into_iter().find(|e| e.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            End::Normal => "normal",
            End::Refused => "refused",
            End::Timeout => "timeout",
            End::ResetReceived => "reset_received",
            End::ResetSent => "reset_sent",
            End::Aborted => "aborted",
        }
    }
}

impl std::fmt::Display for End {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Classifies a transition into CLOSE.
///
/// `errno` is `sk_err` at the transition. The kernel sets it *before* closing for what the
/// peer or the timers did (refused, reset, timeout), but sets ECONNRESET only *after* closing
/// when we abort, and traces the reset we send after the transition too. So a socket that
/// leaves a synchronized state straight for CLOSE with no error is one we reset ourselves.
/// `reset` is the last reset traced on the socket before the transition, if any.
pub fn classify(old: TcpState, errno: i32, reset: Option<ResetDirection>) -> End {
    use TcpState::*;
    match errno {
        libc::ECONNREFUSED => return End::Refused,
        libc::ETIMEDOUT => return End::Timeout,
        libc::ECONNABORTED => return End::Aborted,
        libc::ECONNRESET | libc::EPIPE => return End::ResetReceived,
        _ => {}
    }
    if reset == Some(ResetDirection::Received) {
        return End::ResetReceived;
    }
    match old {
        SynSent => End::Aborted,
        Established | CloseWait | SynRecv | FinWait1 => End::ResetSent,
        _ if reset == Some(ResetDirection::Sent) => End::ResetSent,
        _ => End::Normal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use TcpState::*;

    #[test]
    fn every_end_reads_back_from_its_json_name() {
        for end in End::ALL {
            let json = serde_json::to_string(&end).unwrap();
            assert_eq!(json, format!("\"{}\"", end.name()));
            assert_eq!(End::named(end.name()), Some(end));
        }
        assert_eq!(End::named("Normal"), None);
    }

    #[test]
    fn orderly_closes_are_normal() {
        assert_eq!(classify(LastAck, 0, None), End::Normal);
        assert_eq!(classify(FinWait2, 0, None), End::Normal);
        assert_eq!(classify(Closing, 0, None), End::Normal);
        assert_eq!(classify(Listen, 0, None), End::Normal);
    }

    #[test]
    fn errors_set_by_the_peer_or_timers_win() {
        assert_eq!(classify(SynSent, libc::ECONNREFUSED, None), End::Refused);
        assert_eq!(classify(SynSent, libc::ETIMEDOUT, None), End::Timeout);
        assert_eq!(classify(Established, libc::ETIMEDOUT, None), End::Timeout);
        assert_eq!(
            classify(Established, libc::ECONNRESET, None),
            End::ResetReceived
        );
        assert_eq!(classify(CloseWait, libc::EPIPE, None), End::ResetReceived);
        assert_eq!(
            classify(Established, libc::ECONNABORTED, None),
            End::Aborted
        );
    }

    #[test]
    fn leaving_a_synchronized_state_without_error_is_our_reset() {
        assert_eq!(classify(Established, 0, None), End::ResetSent);
        assert_eq!(classify(CloseWait, 0, None), End::ResetSent);
        assert_eq!(classify(SynRecv, 0, None), End::ResetSent);
        assert_eq!(classify(SynSent, 0, None), End::Aborted);
        assert_eq!(
            classify(LastAck, 0, Some(ResetDirection::Sent)),
            End::ResetSent
        );
        assert_eq!(
            classify(FinWait2, 0, Some(ResetDirection::Received)),
            End::ResetReceived
        );
    }
}
