//! Every line of a socket carries the cookie sock_diag reports for it (`ss -e`'s `sk:`),
//! the accepted socket's LISTEN>SYN_RECV included; in the fallback modes (forced with
//! `ENETSTAT_PROBE_MODE`), one id per socket and never a cookie that is not the socket's.
//! The kernel matrix runs the same check on every kernel (the guest's `cookies`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use enetstat_tests::cookies::accepted_cookies_are_sock_diags;
use enetstat_tests::{require_program, require_root};

fn check(test: &str, ip: IpAddr, mode: &str) {
    if !require_root(test) || require_program(test, "ss", "iproute2").is_none() {
        return;
    }
    accepted_cookies_are_sock_diags(ip, mode, &[("ENETSTAT_PROBE_MODE", mode)]);
}

#[test]
fn cookies_are_sock_diags_from_syn_recv_on_ipv4() {
    check(
        "cookies_are_sock_diags_from_syn_recv_on_ipv4",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "tp_btf",
    );
}

#[test]
fn cookies_are_sock_diags_from_syn_recv_on_ipv6() {
    check(
        "cookies_are_sock_diags_from_syn_recv_on_ipv6",
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        "tp_btf",
    );
}

#[test]
fn cookie_field_mode_shows_no_cookie_but_sock_diags() {
    check(
        "cookie_field_mode_shows_no_cookie_but_sock_diags",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "tp_btf_cookie_field",
    );
}

#[test]
fn tracepoint_mode_shows_no_cookie() {
    check(
        "tracepoint_mode_shows_no_cookie",
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        "tracepoint",
    );
}
