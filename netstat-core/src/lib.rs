//! enetstat's pure core: everything between a kernel record's bytes and the text a user
//! reads, with no kernel, no netlink, no /proc and no async runtime. It builds and tests on
//! the stable toolchain (`cargo +stable test -p netstat-core`), without the eBPF build.
//!
//! Data flows one way: [`decode`] turns a record into a plain [`event::Transition`] (or a
//! reset, accept or exit); [`sockets`] remembers per socket what one record cannot tell (time
//! in the previous state, the [`owner`], the connection's [`life`] so far);
//! [`pipeline`] is that one path, which every front end calls; [`table`] is the live socket
//! table, seeded and reconciled from [`diag`] sockets; [`filter`] picks what the user asked
//! for; [`render`] prints it; [`protocol`] is the daemon's wire format. netstat-user brings
//! the records in (its `probe`) and does all the I/O.

pub mod cgroup;
pub mod decode;
pub mod diag;
pub mod end;
pub mod event;
pub mod filter;
pub mod http;
pub mod identity;
pub mod life;
pub mod owner;
pub mod pipeline;
pub mod protocol;
pub mod render;
pub mod snapshot;
pub mod sockets;
pub mod state;
pub mod table;
