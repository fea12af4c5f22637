//! How the running kernel lets us trace, found by probing it at load time, never read off
//! its version number (distributions backport features, and custom kernels leave them out).

use std::fmt;

use serde::Serialize;

/// The environment variable that forces a mode, for testing the fallbacks on a kernel that
/// would not need them: `tp_btf`, `tp_btf_cookie_field` or `tracepoint`.
pub const FORCE_ENV: &str = "ENETSTAT_PROBE_MODE";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// BTF tracepoints with `bpf_get_socket_cookie` (Linux 5.12+ with BTF): everything.
    TpBtf,
    /// BTF tracepoints without the cookie helper (Linux 5.8 to 5.11): a socket born while
    /// tracing has no cookie until a sock_diag dump asks for one.
    TpBtfCookieField,
    /// The classic `sock:inet_sock_set_state` tracepoint, for kernels without BTF: no
    /// cookies, network namespaces, cgroups, counters at CLOSE, or reset endings.
    Tracepoint,
}

impl Mode {
    /// The programs to load, as (program, tracepoint): the state programs first.
    pub fn programs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Mode::TpBtf => &[
                ("inet_sock_set_state", "inet_sock_set_state"),
                ("inet_sock_set_state_nested", "inet_sock_set_state"),
            ],
            Mode::TpBtfCookieField => &[
                ("inet_sock_set_state_cookie_field", "inet_sock_set_state"),
                (
                    "inet_sock_set_state_nested_cookie_field",
                    "inet_sock_set_state",
                ),
            ],
            Mode::Tracepoint => &[("inet_sock_set_state_classic", "inet_sock_set_state")],
        }
    }

    /// The reset programs, as (program, tracepoint); they only refine how connections ended.
    pub fn reset_programs(self) -> &'static [(&'static str, &'static str)] {
        match self {
            Mode::TpBtf => &[
                ("tcp_send_reset", "tcp_send_reset"),
                ("tcp_receive_reset", "tcp_receive_reset"),
            ],
            Mode::TpBtfCookieField => &[
                ("tcp_send_reset_cookie_field", "tcp_send_reset"),
                ("tcp_receive_reset_cookie_field", "tcp_receive_reset"),
            ],
            Mode::Tracepoint => &[],
        }
    }

    /// What this mode cannot give, for the one warning that says so; `None` for a full mode.
    pub fn lacks(self) -> Option<&'static str> {
        match self {
            Mode::TpBtf => None,
            Mode::TpBtfCookieField => Some(
                "this kernel has no bpf_get_socket_cookie for tracing programs (added in Linux \
                 5.12), so sockets born while tracing show `cookie` null (they are still told \
                 apart, by their kernel address)",
            ),
            Mode::Tracepoint => Some(
                "this kernel has no BTF (/sys/kernel/btf/vmlinux; CONFIG_DEBUG_INFO_BTF=y), so \
                 enetstat traces with the classic sock:inet_sock_set_state tracepoint. It \
                 cannot give cookies, network namespaces, cgroups, the byte, retransmit and RTT \
                 counters at CLOSE, or endings by reset: those show as null (empty in CSV, `-` in text)",
            ),
        }
    }

    /// The mode forced by [`FORCE_ENV`], if any.
    pub fn forced() -> Result<Option<Mode>, String> {
        match std::env::var(FORCE_ENV) {
            Err(_) => Ok(None),
            Ok(v) => match v.as_str() {
                "tp_btf" => Ok(Some(Mode::TpBtf)),
                "tp_btf_cookie_field" => Ok(Some(Mode::TpBtfCookieField)),
                "tracepoint" => Ok(Some(Mode::Tracepoint)),
                "" => Ok(None),
                other => Err(format!(
                    "{FORCE_ENV}={other:?} is not a mode; use tp_btf, tp_btf_cookie_field or \
                     tracepoint"
                )),
            },
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Mode::TpBtf => "tp_btf",
            Mode::TpBtfCookieField => "tp_btf_cookie_field",
            Mode::Tracepoint => "tracepoint",
        })
    }
}
