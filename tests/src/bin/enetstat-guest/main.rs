//! `enetstat-guest`: the end-to-end checks of `cargo xtask matrix`, run as the last step of a
//! QEMU guest's init on one of Debian's kernels.
//!
//! The checks are the host suite's own, with its own definition of correct (the harness in
//! `src/`): exact transition sequences for a listener, a client and an accepted socket on
//! 127.0.0.1 and ::1, a refused connect, `life` with exact byte counts and owners, a snapshot
//! equal to the kernel's own socket dump (`ss`), the daemon serving a snapshot and a
//! subscription, `-c --recent` showing closed and live connections, each line's cookie being the one sock_diag reports for the socket, the mode enetstat picked (`-v` and the daemon's `stats`) being the row's
//! expected one (`ENETSTAT_GUEST_MODE`), every transition of a fast multi-threaded churn
//! exactly once, and nothing left attached at the end. The guest is quiet (no other TCP
//! traffic), so one `watch` and one `life` tracer serve every scenario, each scenario told
//! apart by its own reserved port.
//!
//! Each check prints one line on stdout, which the host parses into its table:
//!
//! ```text
//! PLAN <name> <name> ...
//! CHECK <name> ok
//! CHECK <name> FAIL <first line of the reason>
//! ```
//!
//! The `PLAN` line comes first and names every check, so the host can tell a check that
//! printed nothing (the guest crashed or hung) from one that does not exist.
//!
//! The whole reason (a failed assertion's message) goes to stderr, which the guest's init sends
//! to the serial console too, so the host's log of the guest has it. The exit status is 0 when
//! every check passed, else 1.
//!
//! It expects `ENETSTAT_BIN`, `ENETSTAT_PEER_BIN`, `ENETSTAT_SOCKETS_BIN` and
//! `ENETSTAT_ENDER_BIN` to name the binaries (the guest's init sets them), `ss` and `bpftool`
//! on PATH, and the sock_diag modules loaded.

mod churn;
mod mode;
mod progs;
mod report;
mod snapshot;
mod tracing;
mod traffic;

use std::collections::BTreeSet;
use std::process::ExitCode;

use enetstat_tests::Signal;
use enetstat_tests::daemon::Daemon;

use crate::progs::{Progs, bpftool_progs, check_detached};
use crate::report::{Report, install_panic_hook, print_line};
use crate::snapshot::{snapshot_standalone, snapshot_via_daemon};
use crate::tracing::{
    check_life, check_lifecycle, check_prefork, check_refused, daemon_watch, trace_scenarios,
};

/// Every check, in the order they run.
pub(crate) const PLAN: [&str; 17] = [
    "modules",
    "tracing",
    "watch_ipv4",
    "watch_ipv6",
    "refused",
    "life",
    "prefork",
    "cookies",
    "continuous",
    "churn",
    "snapshot",
    "daemon_start",
    "daemon_snapshot",
    "daemon_watch",
    "expected_mode",
    "daemon_stop",
    "detached",
];

fn main() -> ExitCode {
    install_panic_hook();

    print_line(&format!("PLAN {}", PLAN.join(" ")));
    let mut report = Report::default();
    // The programs loaded before any enetstat runs: none of the others may outlive the checks.
    let baseline: Result<BTreeSet<u64>, String> =
        bpftool_progs().map(|progs| progs.iter().filter_map(|p| p["id"].as_u64()).collect());
    report.run("modules", check_modules);

    // One watch and one life tracer for every scenario.
    let mut held = Progs::default();
    let traced = report.run_value("tracing", || trace_scenarios(&mut held));
    report.after("watch_ipv4", &traced, |t| check_lifecycle(t, &t.v4));
    report.after("watch_ipv6", &traced, |t| check_lifecycle(t, &t.v6));
    report.after("refused", &traced, check_refused);
    report.after("life", &traced, check_life);
    report.after("prefork", &traced, check_prefork);
    // Before the daemon, whose socket dumps would give the cookie-field mode's sockets their
    // cookies early.
    report.run("cookies", mode::check_cookies);
    report.run("continuous", mode::check_continuous);
    report.run("churn", || churn::check_churn(&mut held));

    // The snapshot's sockets stay up for the daemon's snapshot.
    let mut sockets = None;
    report.run("snapshot", || snapshot_standalone(&mut sockets));
    let daemon = report.run_value("daemon_start", || {
        let daemon = Daemon::start("guest", &[]);
        held.add("enetstat daemon", daemon.pid());
        daemon
    });
    match (&daemon, &sockets) {
        (Ok(daemon), Some(_)) => report.run("daemon_snapshot", || snapshot_via_daemon(daemon)),
        (Ok(_), None) => {
            report.skip_after("daemon_snapshot", "the snapshot's sockets are not there")
        }
        (Err(_), _) => report.skip_after("daemon_snapshot", "the daemon did not start"),
    }
    report.after("daemon_watch", &daemon, daemon_watch);
    match (&traced, &daemon) {
        (Ok(traced), Ok(daemon)) => {
            report.run("expected_mode", || {
                mode::check_mode(traced.mode.as_deref(), traced.accepts.as_deref(), daemon)
            });
        }
        (Err(_), _) => report.skip_after("expected_mode", "the tracers did not run"),
        (_, Err(_)) => report.skip_after("expected_mode", "the daemon did not start"),
    }
    match daemon {
        Ok(daemon) => report.run("daemon_stop", || {
            let (finished, _dir, _socket) = daemon.stop(Signal::Term);
            finished.assert_success();
        }),
        Err(_) => report.skip_after("daemon_stop", "the daemon did not start"),
    }
    drop(sockets);
    report.run("detached", || {
        check_detached(&held, baseline.as_ref().unwrap_or_else(|e| panic!("{e}")));
    });

    if report.failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The modules a snapshot needs on Debian's kernels.
const DIAG_MODULES: [&str; 3] = ["inet_diag", "tcp_diag", "udp_diag"];

fn check_modules() {
    let loaded = std::fs::read_to_string("/proc/modules").unwrap_or_default();
    let missing: Vec<&str> = DIAG_MODULES
        .iter()
        .copied()
        .filter(|m| {
            let module = loaded.lines().any(|l| l.split(' ').next() == Some(*m));
            let builtin = std::path::Path::new("/sys/module").join(m).exists();
            !(module || builtin)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "sock_diag modules not loaded: {missing:?} (the guest's init loads them; see the log)"
    );
}
