//! A lifecycle as one aligned line for people.

use std::io::{self, Write};

use crate::{
    end::End,
    life::Lifecycle,
    render::{
        escape_comm, millis,
        transition::text::{pid_text, short_ms},
    },
};

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
    use super::{super::fixture::*, *};

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
