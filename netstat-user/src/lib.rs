//! enetstat: netstat rebuilt on eBPF.
//!
//! Data flows one way: the kernel program writes a record per TCP state transition into a
//! ring buffer; [`probe`] (the only module that touches aya) loads and attaches the program
//! and hands records on through [`identity`], which joins the records of one socket where
//! the kernel could not; [`decode`] turns them into plain [`event::Transition`]s; [`sockets`]
//! remembers per socket what a single record cannot tell (time in the previous state, the
//! owner, the connection's lifecycle); [`filter`] picks what the user asked for; [`render`] prints it. The `enetstat`
//! binary wires these together.
//!
//! The pure steps (decode, sockets, life, pipeline, table, filter, render, the daemon's wire
//! protocol) are the `netstat-core` crate, which builds on stable without the eBPF build;
//! this crate re-exports them at their old paths and does all the I/O. `docs/architecture.md`
//! maps both.

// The binary's own dependencies (command line, man pages and completions, logging), which
// the library does not use: named so that `unused_crate_dependencies`, which looks at one
// target at a time, keeps its eye on the library's.
use anyhow as _;
use clap as _;
use clap_complete as _;
use clap_mangen as _;
use tracing_subscriber as _;

// The pure modules live in netstat-core (stable toolchain, no kernel); these keep their
// paths (`enetstat::table`, `crate::event`, ...) for the rest of the crate and its users.
pub use netstat_core::{decode, end, event, identity, life, owner, render, sockets, state, table};

pub mod btf;
pub mod cgroup;
pub mod client;
pub mod clock;
pub mod daemon;
pub mod fd_limit;
pub mod filter;
pub mod latency;
pub mod live;
pub mod mem;
pub mod netns;
pub mod pids;
pub mod pipeline;
pub mod probe;
pub mod resolve;
pub mod snapshot;
pub mod sockdiag;
pub mod source;
#[cfg(test)]
mod test_skip;
pub mod top;
pub mod watch;
