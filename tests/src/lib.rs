//! The end-to-end test harness for enetstat.
//!
//! The tests in `tests/*.rs` run the real `enetstat` binary as root against the real kernel and
//! watch real sockets on loopback, made by a child process (`enetstat-peer`, in `src/bin`) so
//! that owner attribution can be checked against a known pid. Everything here is RAII: a
//! [`Tracer`] or [`Peer`] that goes out of scope kills its process, and a [`PortReservation`]
//! gives its port back, so a failing test leaves nothing behind.
//!
//! Tests may run in parallel, so a test never assumes it is the only tracer or the only source
//! of traffic: it reserves its own port, filters the tracer by it, and checks only its own
//! sockets.
//!
//! When not run as root, or when a tool a test needs is missing, the test prints a `SKIPPED`
//! line naming what is missing and passes; under CI (`CI=true`) it fails instead. See
//! [`require_root`] and [`skip`].
//!
//! Run them with `cargo xtask test` (as root), which builds the release binary and names it in
//! `ENETSTAT_BIN`; or by hand:
//!
//! ```text
//! ENETSTAT_BIN=target/release/enetstat cargo +nightly-2026-07-01 test --release -p enetstat-tests
//! ```
//!
//! The exit tests also need `bpftool` (installed by `cargo xtask setup`).

mod binaries;
mod bpf;
mod cgroup;
pub mod cookies;
pub mod daemon;
mod expect;
pub mod life;
mod lines;
mod netns;
mod peer;
mod port;
pub mod recent;
mod root;
pub mod scenario;
mod summary;
mod tmux;
mod tracer;
mod transition;

pub use binaries::{ender_bin, enetstat_bin, peer_bin};
pub use bpf::{foreign_tracing_progs, prog_exists, prog_ids_held_by, wait_progs_gone};
pub use cgroup::{Cgroup, cgroup2_root};
pub use expect::{
    ACCEPTED, CLIENT, Checker, Expect, LISTENER, REFUSED, Roles, group_by_cookie, show,
};
pub use netns::current_netns;
pub use peer::Peer;
pub use port::PortReservation;
pub use root::{require_program, require_root, skip, under_ci};
pub use summary::Summary;
pub use tmux::Tmux;
pub use tracer::{Finished, READY_PREFIX, Signal, Tracer};
pub use transition::{State, Transition};
