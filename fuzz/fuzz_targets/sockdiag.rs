//! Fuzz target `sockdiag`: the sock_diag reply parser, `netstat_core::diag::parse_datagram`,
//! which reads the kernel's bytes with hand-written offsets (`cargo xtask fuzz`).
//!
//! The first byte picks the protocol and the family the dump asked for; the rest is the
//! datagram. Beyond "never panics", it checks that no more sockets come out than whole
//! messages fit in the datagram (a 16-byte header and a 72-byte `inet_diag_msg` each).

#![no_main]

use libfuzzer_sys::fuzz_target;
use netstat_core::diag::{AF_INET, AF_INET6, Proto, parse_datagram};

fuzz_target!(|data: &[u8]| {
    let Some((&pick, datagram)) = data.split_first() else {
        return;
    };
    let proto = if pick & 1 == 0 {
        Proto::Tcp
    } else {
        Proto::Udp
    };
    let family = if pick & 2 == 0 { AF_INET } else { AF_INET6 };
    let mut sockets = 0usize;
    let _ = parse_datagram(datagram, proto, family, &mut |s| {
        sockets += 1;
        let _ = format!("{:?} {} {}", s.state, s.local.addr, s.remote.addr);
    });
    assert!(sockets <= datagram.len() / (16 + 72), "{sockets} sockets");
});
