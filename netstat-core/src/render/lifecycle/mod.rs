//! Lifecycle lines for `enetstat life`: one per connection when it ends, in each
//! [`Format`]. JSON and CSV share one list of fields ([`json::JsonLifecycle`]).
//!
//! [`Format`]: super::Format

pub mod csv;
pub mod json;
pub mod text;

/// One finished connection and a time, which the tests of every format render.
#[cfg(test)]
mod fixture {
    use std::{
        net::{IpAddr, Ipv4Addr},
        time::Duration,
    };

    use chrono::{DateTime, TimeZone, Utc};

    use crate::{
        end::End,
        event::{Cookie, Endpoint, Family, Owner},
        life::Lifecycle,
        state::TcpState,
    };

    pub fn lifecycle() -> Lifecycle {
        let lo = IpAddr::V4(Ipv4Addr::LOCALHOST);
        Lifecycle {
            cookie: Cookie(9),
            family: Family::Ipv4,
            local: Endpoint::new(lo, 40000),
            remote: Endpoint::new(lo, 443),
            owner: Some(Owner::new(7, "curl")),
            netns: 1,
            cgroup: 0,
            start_ns: 0,
            end_ns: 1_200_120_000,
            connect: Some(Duration::from_micros(90)),
            states: vec![
                (TcpState::SynSent, Duration::from_micros(90)),
                (TcpState::Established, Duration::from_millis(1200)),
                (TcpState::FinWait1, Duration::from_micros(20)),
                (TcpState::FinWait2, Duration::from_micros(10)),
            ],
            complete: true,
            bytes_sent: 1_048_576,
            bytes_received: 1_048_576,
            retransmits: 0,
            srtt_us: 52,
            counters: true,
            end: Some(End::Normal),
        }
    }

    pub fn time() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 26, 9, 0, 0).unwrap()
    }
}
