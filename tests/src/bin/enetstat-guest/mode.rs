//! The checks that depend on the row's mode. `expected_mode`: the mode enetstat picked by
//! probing this kernel, as `-v` and the daemon's `stats` say it, is the one the matrix expects
//! of this row (`enetstat.mode=` on the kernel command line, exported by the guest's init as
//! `ENETSTAT_GUEST_MODE`); a kernel that wrongly fell back to a lesser mode would pass every
//! other check. `cookies`: each line's cookie is sock_diag's, as far as that mode can tell.
//! `continuous`: `-c --recent` in that mode.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use enetstat_tests::PortReservation;
use enetstat_tests::cookies::accepted_cookies_are_sock_diags;
use enetstat_tests::daemon::{Conn, Daemon};
use enetstat_tests::recent::continuous_shows_closed_and_live;
use serde_json::json;

use crate::report::print_line;

/// The mode the matrix expects of this kernel.
fn expected() -> String {
    std::env::var("ENETSTAT_GUEST_MODE").unwrap_or_else(|_| {
        panic!("ENETSTAT_GUEST_MODE is not set: the host passes enetstat.mode= to every guest")
    })
}

/// The `cookies` check: an accepted connection's lines carry the cookie sock_diag reports
/// for it, as this row's mode can (the host suite's `cookies` tests, on this kernel).
pub(crate) fn check_cookies() {
    accepted_cookies_are_sock_diags(IpAddr::V4(Ipv4Addr::LOCALHOST), &expected(), &[]);
}

/// The `continuous` check: `-c --recent -o json` in this row's mode shows a closed
/// connection's two ends and the live listener joined to the kernel's dump (the host suite's
/// `continuous_snapshots_in_*_mode`, on this kernel).
pub(crate) fn check_continuous() {
    let reservation = PortReservation::new(IpAddr::V4(Ipv4Addr::LOCALHOST));
    continuous_shows_closed_and_live(
        &expected(),
        reservation.port(),
        &|bin| Command::new(bin),
        &[],
    );
    reservation.release();
}

/// The mode `-v` named in stderr (`tracing in mode <mode>`), if it did.
pub(crate) fn logged_mode(stderr: &[String]) -> Option<String> {
    const SAID: &str = "tracing in mode ";
    stderr.iter().find_map(|line| {
        let rest = &line[line.find(SAID)? + SAID.len()..];
        let mode: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        (!mode.is_empty()).then_some(mode)
    })
}

/// The hook `-v` said the accept program is attached to (`accepts followed at <hook>`).
pub(crate) fn logged_accepts(stderr: &[String]) -> Option<String> {
    const SAID: &str = "accepts followed at ";
    stderr.iter().find_map(|line| {
        let rest = &line[line.find(SAID)? + SAID.len()..];
        Some(rest.split_whitespace().next()?.to_owned())
    })
}

/// Where the mode's kernels let enetstat follow accepts: the exit of `inet_csk_accept` (an
/// fexit program, with the loads in place of `tp_btf`), the accept system calls' (the
/// cookie-field kernels, 5.8-5.11), or nowhere (no BTF: no task layout).
fn expected_accepts(mode: &str) -> Option<&'static str> {
    match mode {
        "tp_btf" => Some("inet_csk_accept"),
        "tp_btf_cookie_field" => Some("sys_exit_accept"),
        _ => None,
    }
}

/// Compares the modes `-v` (of the scenarios' `watch`) and the daemon's `stats` said with the
/// expected one, and prints the `MODE` line the host's table shows; and where `-v` said
/// accepts are followed with where this mode should follow them.
pub(crate) fn check_mode(logged: Option<&str>, accepts: Option<&str>, daemon: &Daemon) {
    let stats = Conn::connect(&daemon.socket).request(&json!({"v": 1, "op": "stats"}));
    let served = stats["stats"]["mode"].as_str().map(str::to_owned);
    if let Some(mode) = served.as_deref().or(logged) {
        print_line(&format!("MODE {mode}"));
    }
    let expected = expected();
    assert_eq!(
        logged,
        Some(expected.as_str()),
        "`enetstat watch -v` should say `tracing in mode {expected}` on this kernel"
    );
    assert_eq!(
        served.as_deref(),
        Some(expected.as_str()),
        "the daemon's stats should say mode {expected}: {stats}"
    );
    if let Some(accepts) = accepts {
        print_line(&format!("ACCEPTS {accepts}"));
    }
    assert_eq!(
        accepts,
        expected_accepts(&expected),
        "`enetstat watch -v` should say where it follows accepts on this kernel"
    );
}
